//! What each source sent lately, for the console's event debugger and the overview's rates:
//! the types and names of accepted messages (`track` "Order Completed", `page` "Home"),
//! never ids, traits or properties. Kept in memory on the node that ingested them (a few
//! kilobytes per source), so with several nodes each shows its own share.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use cdp_core::segment::{Message, MessageType};
use serde::Serialize;
use time::OffsetDateTime;

/// Messages kept per source for the debugger.
const RECENT: usize = 50;
/// Minutes of per-minute counts kept per source.
const MINUTES: usize = 60;
/// Longest name shown (names are Segment event and page names, not free text about people).
const MAX_NAME: usize = 80;

/// One accepted message, as the debugger shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RecentMessage {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A source's recent activity.
#[derive(Debug, Clone, Serialize)]
pub struct SourceActivityView {
    pub source: String,
    /// Newest first.
    pub recent: Vec<RecentMessage>,
    /// Accepted messages per minute, oldest first, for the last hour (minutes without any
    /// are left out).
    pub per_minute: Vec<MinuteCount>,
    /// Accepted messages per second over the last full minute.
    pub events_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MinuteCount {
    #[serde(with = "time::serde::rfc3339")]
    pub minute: OffsetDateTime,
    pub messages: u64,
}

#[derive(Debug, Default)]
struct SourceLog {
    recent: VecDeque<RecentMessage>,
    minutes: VecDeque<(i64, u64)>,
}

#[derive(Debug, Default)]
pub(crate) struct SourceActivity {
    logs: Mutex<HashMap<String, SourceLog>>,
}

/// What the debugger keeps of a message, taken before the message is consumed.
#[derive(Debug)]
pub(crate) struct Seen {
    kind: &'static str,
    name: Option<String>,
}

fn kind_name(kind: MessageType) -> &'static str {
    match kind {
        MessageType::Identify => "identify",
        MessageType::Track => "track",
        MessageType::Page => "page",
        MessageType::Screen => "screen",
        MessageType::Group => "group",
        MessageType::Alias => "alias",
    }
}

/// The debugger's view of the first messages of a request (the rest are only counted).
pub(crate) fn seen(messages: &[Message]) -> Vec<Seen> {
    messages
        .iter()
        .take(RECENT)
        .map(|message| Seen {
            kind: kind_name(message.kind),
            name: message
                .event
                .as_deref()
                .or(message.name.as_deref())
                .map(|name| {
                    name.chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_NAME)
                        .collect()
                }),
        })
        .collect()
}

impl SourceActivity {
    /// Notes what a request of `source` had accepted.
    pub(crate) fn record(&self, source: &str, seen: Vec<Seen>, accepted: u64) {
        if accepted == 0 {
            return;
        }
        let now = OffsetDateTime::now_utc();
        let minute = now.unix_timestamp().div_euclid(60);
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let log = logs.entry(source.to_string()).or_default();
        for seen in seen {
            if log.recent.len() == RECENT {
                log.recent.pop_back();
            }
            log.recent.push_front(RecentMessage {
                at: now,
                kind: seen.kind,
                name: seen.name,
            });
        }
        match log.minutes.back_mut() {
            Some((last, count)) if *last == minute => *count += accepted,
            _ => log.minutes.push_back((minute, accepted)),
        }
        while log
            .minutes
            .front()
            .is_some_and(|(m, _)| *m <= minute - MINUTES as i64)
        {
            log.minutes.pop_front();
        }
    }

    pub(crate) fn view(&self, source: &str) -> SourceActivityView {
        let now_minute = OffsetDateTime::now_utc().unix_timestamp().div_euclid(60);
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let log = logs.get(source);
        let per_minute: Vec<MinuteCount> = log
            .map(|log| {
                log.minutes
                    .iter()
                    .filter(|(m, _)| *m > now_minute - MINUTES as i64)
                    .map(|(m, count)| MinuteCount {
                        minute: OffsetDateTime::from_unix_timestamp(m * 60)
                            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                        messages: *count,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let last_full = log
            .and_then(|log| log.minutes.iter().find(|(m, _)| *m == now_minute - 1))
            .map_or(0, |(_, count)| *count);
        SourceActivityView {
            source: source.to_string(),
            recent: log
                .map(|log| log.recent.iter().cloned().collect())
                .unwrap_or_default(),
            per_minute,
            events_per_second: last_full as f64 / 60.0,
        }
    }
}

impl crate::Engine {
    /// The recent activity of a source (this node's share).
    pub fn source_activity(&self, source: &str) -> SourceActivityView {
        self.activity.view(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_messages_and_counts_per_minute() {
        let activity = SourceActivity::default();
        for i in 0..60 {
            activity.record(
                "src_a",
                vec![Seen {
                    kind: "track",
                    name: Some(format!("Event {i}")),
                }],
                1,
            );
        }
        let view = activity.view("src_a");
        assert_eq!(view.recent.len(), RECENT);
        assert_eq!(view.recent[0].name.as_deref(), Some("Event 59"));
        assert_eq!(view.per_minute.iter().map(|m| m.messages).sum::<u64>(), 60);
        assert!(activity.view("src_b").recent.is_empty());
    }
}

/// What the console's overview shows of the platform: no personal data, only counts.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// People in the search index.
    pub people: u64,
    /// The change the index has applied, and the last durable one: the difference is what
    /// audiences do not reflect yet.
    pub indexed_seq: u64,
    pub durable_seq: u64,
    /// When tiers and RFM scores were last recomputed against the whole population.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub refreshed_at: Option<OffsetDateTime>,
    /// Accepted messages per second over the last full minute, per source (this node's).
    pub sources: Vec<SourceRate>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceRate {
    pub source: String,
    pub name: String,
    pub channel: String,
    pub events_per_second: f64,
    /// Accepted messages in the last hour.
    pub last_hour: u64,
}

impl crate::Engine {
    /// The console's overview.
    pub fn overview(&self) -> Result<Overview, crate::EngineError> {
        let (people, progress) = match &self.index {
            Some(index) => {
                let progress = index
                    .payload()
                    .map_err(crate::indexer::index_error)?
                    .and_then(|text| serde_json::from_str::<crate::IndexProgress>(&text).ok());
                (index.len(), progress)
            }
            None => (0, None),
        };
        let mut sources = Vec::new();
        for source in self.sources()? {
            let view = self.activity.view(&source.id);
            sources.push(SourceRate {
                source: source.id.clone(),
                name: source.name.clone(),
                channel: source.channel.as_str().to_string(),
                events_per_second: view.events_per_second,
                last_hour: view.per_minute.iter().map(|m| m.messages).sum(),
            });
        }
        Ok(Overview {
            people,
            indexed_seq: progress.as_ref().map_or(0, |p| p.seq),
            durable_seq: self.durable_seq(),
            refreshed_at: progress
                .filter(|p| p.refreshed_at > 0)
                .and_then(|p| OffsetDateTime::from_unix_timestamp(p.refreshed_at).ok()),
            sources,
        })
    }
}
