//! When a campaign sends by itself: once at a set time, or again and again on a cron-like
//! schedule (the expressions of scheduled exports, five fields in a fixed UTC offset) until an
//! optional end. Each scheduled send is an ordinary send: the same gates, contact pressure
//! across every campaign, the same arms (assignment is keyed by campaign, so a person stays in
//! their arm at every send), its own results.
//!
//! A node's job sweeper sends what is due (`Engine::run_due_campaigns`): the next send time is
//! advanced and saved in the same write turn that starts the send, so on several nodes a send
//! starts once; a time missed while no node was up is sent once when one comes back, not once
//! per missed time.

use cdp_destinations::CronSchedule;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::EngineError;

/// What a caller asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CampaignScheduleInput {
    /// Recurring: a five-field cron expression (`0 10 * * 1`: Mondays at 10:00)...
    pub cron: Option<String>,
    /// ...in this UTC offset (`+08:00`, default `+00:00`).
    pub utc_offset: Option<String>,
    /// Or once, at this time.
    pub at: Option<OffsetDateTime>,
    /// No scheduled send after this time.
    pub until: Option<OffsetDateTime>,
}

/// A campaign's schedule as stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSchedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    pub utc_offset: String,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<OffsetDateTime>,
    #[serde(default)]
    pub paused: bool,
    /// The next scheduled send; `None` once none is left (a one-off sent, the end passed).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_send_at: Option<OffsetDateTime>,
}

fn cron_of(text: &str, offset: &str) -> Result<CronSchedule, EngineError> {
    CronSchedule::parse(text, offset)
        .map_err(|e| EngineError::InvalidRequest(format!("schedule.cron: {e}")))
}

impl CampaignSchedule {
    /// A schedule from what the caller asked, its first send after `now`.
    pub(crate) fn new(
        input: CampaignScheduleInput,
        now: OffsetDateTime,
    ) -> Result<Self, EngineError> {
        let offset = input.utc_offset.unwrap_or_else(|| "+00:00".into());
        let (cron, utc_offset) = match (&input.cron, input.at) {
            (Some(text), None) => {
                let cron = cron_of(text, &offset)?;
                (Some(cron.text().to_string()), cron.offset_text())
            }
            (None, Some(_)) => (None, offset),
            _ => {
                return Err(EngineError::InvalidRequest(
                    "a campaign's schedule has either cron (recurring sends) or at (one send at that time)".into(),
                ));
            }
        };
        if input.at.is_some_and(|at| at <= now) {
            return Err(EngineError::InvalidRequest(
                "schedule.at is in the past: POST /v1/campaigns/{id}/send sends now".into(),
            ));
        }
        if input.until.is_some_and(|until| until <= now) {
            return Err(EngineError::InvalidRequest(
                "schedule.until is in the past".into(),
            ));
        }
        let mut schedule = Self {
            cron,
            utc_offset,
            at: input.at,
            until: input.until,
            paused: false,
            next_send_at: None,
        };
        schedule.next_send_at = match input.at {
            Some(at) => Some(at),
            None => schedule.next_after(now)?,
        };
        if schedule.next_send_at.is_none() {
            return Err(EngineError::InvalidRequest(
                "the schedule never sends: its expression gives no time before until".into(),
            ));
        }
        Ok(schedule)
    }

    /// The first recurring send after `after` (`None`: a one-off, or nothing before `until`).
    pub(crate) fn next_after(
        &self,
        after: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, EngineError> {
        let Some(text) = &self.cron else {
            return Ok(None);
        };
        let next = cron_of(text, &self.utc_offset)?.next_after(after);
        Ok(next.filter(|next| self.until.is_none_or(|until| *next <= until)))
    }

    /// Whether a send is due at `now`.
    pub(crate) fn due(&self, now: OffsetDateTime) -> bool {
        !self.paused && self.next_send_at.is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn a_weekly_schedule_in_local_time_stops_at_its_end() {
        let now = at("2026-12-02T00:00:00Z");
        let schedule = CampaignSchedule::new(
            CampaignScheduleInput {
                cron: Some("0 10 * * 1".into()),
                utc_offset: Some("+08:00".into()),
                at: None,
                until: Some(at("2026-12-15T00:00:00Z")),
            },
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Monday 7 December, 10:00 in Shanghai.
        assert_eq!(schedule.next_send_at, Some(at("2026-12-07T02:00:00Z")));
        assert!(
            !schedule.due(at("2026-12-07T01:59:59Z")) && schedule.due(at("2026-12-07T02:00:00Z"))
        );
        let second = schedule
            .next_after(at("2026-12-07T02:00:00Z"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(second, Some(at("2026-12-14T02:00:00Z")));
        let third = schedule
            .next_after(at("2026-12-14T02:00:00Z"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(third, None, "after until");
    }

    #[test]
    fn a_one_off_sends_once_and_bad_schedules_are_refused() {
        let now = at("2026-12-02T00:00:00Z");
        let once = CampaignSchedule::new(
            CampaignScheduleInput {
                at: Some(at("2026-12-24T02:00:00Z")),
                ..CampaignScheduleInput::default()
            },
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(once.next_send_at, Some(at("2026-12-24T02:00:00Z")));
        assert_eq!(once.next_after(at("2026-12-24T02:00:00Z")).ok(), Some(None));
        for bad in [
            CampaignScheduleInput::default(),
            CampaignScheduleInput {
                cron: Some("0 10 * * 1".into()),
                at: Some(at("2026-12-24T02:00:00Z")),
                ..CampaignScheduleInput::default()
            },
            CampaignScheduleInput {
                at: Some(at("2026-12-01T02:00:00Z")),
                ..CampaignScheduleInput::default()
            },
            CampaignScheduleInput {
                cron: Some("every monday".into()),
                ..CampaignScheduleInput::default()
            },
            CampaignScheduleInput {
                cron: Some("0 10 * * 1".into()),
                until: Some(at("2026-12-01T00:00:00Z")),
                ..CampaignScheduleInput::default()
            },
        ] {
            assert!(
                matches!(
                    CampaignSchedule::new(bad.clone(), now),
                    Err(EngineError::InvalidRequest(_))
                ),
                "{bad:?}"
            );
        }
    }
}
