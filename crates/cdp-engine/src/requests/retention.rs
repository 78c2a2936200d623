//! Retention (PIPL Art 19, 47; GDPR Art 5(1)(e)): per data category, from the policies.
//!
//! For each person, the jurisdictions that apply give the retention of their events
//! (`events` in fields.yaml -> `user.behavior.browsing`) and of the person as a whole (`user`):
//! events older than the shortest applicable retention are deleted; a person inactive for
//! longer than theirs is erased (crypto-shredding, as an erasure request does); export files
//! past their expiry are deleted with their keys. Runs on a
//! schedule in `serve` and on `cdp retention run [--dry-run]`; every run and every erasure is
//! audited.

use cdp_core::ProfileId;
use cdp_store::{Keyspace, WriteBatch};
use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::{Engine, EngineError};

/// What a run did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    pub people_checked: u64,
    pub events_deleted: u64,
    pub people_erased: u64,
    /// Export files past their expiry, deleted with their keys.
    pub export_files_deleted: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub ran_at: OffsetDateTime,
}

const DAY: i64 = 86_400;

impl Engine {
    /// The shortest retention in days for `category` among `jurisdictions`.
    fn retention_days(&self, facts: &cdp_policy::SubjectFacts, category: &str) -> Option<i64> {
        let policies = self.policies();
        policies
            .jurisdictions_for(facts)
            .0
            .iter()
            .filter_map(|j| {
                let mut current = Some(category);
                while let Some(candidate) = current {
                    if let Some(rule) = j.retention.get(candidate) {
                        return Some(i64::from(rule.days));
                    }
                    current = candidate.rsplit_once('.').map(|(p, _)| p);
                }
                None
            })
            .min()
    }

    /// One retention pass over every person.
    pub fn run_retention(
        &self,
        dry_run: bool,
        actor: &str,
    ) -> Result<RetentionReport, EngineError> {
        let now = OffsetDateTime::now_utc();
        let mut report = RetentionReport {
            dry_run,
            people_checked: 0,
            events_deleted: 0,
            people_erased: 0,
            export_files_deleted: 0,
            ran_at: now,
        };
        let events_category = self
            .policies()
            .category_of("events")
            .unwrap_or("user.behavior")
            .to_string();
        let ids: Vec<ProfileId> = self
            .store()
            .scan_prefix(Keyspace::Profiles, &[])
            .filter_map(|item| item.ok())
            .filter_map(|(key, _)| <[u8; 16]>::try_from(key.as_slice()).ok())
            .map(ProfileId::from_bytes)
            .collect();
        for id in ids {
            let Some(record) = self.load_profile(id)? else {
                continue;
            };
            report.people_checked += 1;
            let consents = self.consent_records(&id)?;
            let facts = self.subject_facts(&record, &consents)?;
            let last_seen = record
                .channels
                .values()
                .map(|c| c.last_seen)
                .max()
                .unwrap_or(record.created_at);
            if let Some(days) = self.retention_days(&facts, "user")
                && (now - last_seen).whole_seconds() > days * DAY
            {
                report.people_erased += 1;
                if !dry_run {
                    self.erase(id, "retention", actor)?;
                }
                continue;
            }
            let Some(days) = self.retention_days(&facts, &events_category) else {
                continue;
            };
            let cutoff_micros = (now.unix_timestamp() - days * DAY).saturating_mul(1_000_000);
            let cutoff = ((cutoff_micros as u64) ^ (1 << 63)).to_be_bytes();
            let mut batch = WriteBatch::default();
            for item in self.store().scan_prefix(Keyspace::Events, id.as_bytes()) {
                let (key, _) = item?;
                // Event keys are profile id + sortable time: no need to open them.
                if key.get(16..24).is_some_and(|time| time < cutoff.as_slice()) {
                    report.events_deleted += 1;
                    batch.delete(Keyspace::Events, key);
                }
            }
            if !dry_run && !batch.is_empty() {
                self.store().commit(batch)?.wait_durable()?;
            }
        }
        report.export_files_deleted = self.withdraw_expired_exports(dry_run)?;
        self.audit(&[AuditRecord {
            actor: actor.to_string(),
            action: if dry_run {
                "retention.dry_run"
            } else {
                "retention.run"
            }
            .into(),
            purpose: None,
            person: None,
            decision: "done".into(),
            rules: vec![
                format!("checked={}", report.people_checked),
                format!("events_deleted={}", report.events_deleted),
                format!("people_erased={}", report.people_erased),
                format!("export_files_deleted={}", report.export_files_deleted),
            ],
        }])?
        .wait_durable()?;
        Ok(report)
    }
}
