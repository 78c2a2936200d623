//! Export jobs across nodes: a running job holds a lease (`jobs.rs`) that its node renews;
//! every save of the job checks, within a write turn, that the lease is still this node's
//! (a node that lost it, paused past its expiry, never overwrites the job another node took
//! over); a job whose lease expired (its node died, or this node crashed and restarted) is
//! taken over and run again from the start, into a file of its own until it finishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use time::OffsetDateTime;

use super::keys::job_key;
use super::{ExportRecord, ExportStatus};
use crate::audit::AuditRecord;
use crate::jobs::{LEASE, RENEW_EVERY};
use crate::read::access::Access;
use crate::{Engine, EngineError};
use cdp_store::{CommitTicket, Keyspace};

/// Another node took the job over: this node's run ends without saving anything.
#[derive(Debug)]
pub(super) struct LeaseLost;

impl Engine {
    /// Saves `job` (renewing its lease) if its lease is still this node's; `Ok(None)` when
    /// another node took it over. The check and the commit are one write turn.
    pub(super) fn save_if_ours(
        &self,
        job: &mut ExportRecord,
        extra: Option<super::members::Finished<'_>>,
        audit: &[AuditRecord],
        publish: Option<&dyn Fn() -> Result<(), EngineError>>,
    ) -> Result<Result<CommitTicket, LeaseLost>, EngineError> {
        let _saves = self.job_saves_lock();
        let _turn = self.store().write_turn()?;
        let stored: Option<ExportRecord> = self.get_system(Keyspace::Exports, &job_key(&job.id))?;
        let ours = stored
            .and_then(|stored| stored.lease)
            .is_some_and(|lease| lease.held_by(self.node_name()));
        if !ours {
            return Ok(Err(LeaseLost));
        }
        // A job that ends gives up its lease; a running one renews it.
        if job.status == ExportStatus::Running {
            job.lease = Some(self.lease_until(OffsetDateTime::now_utc() + LEASE));
        } else {
            job.lease = None;
        }
        // Still within the turn: no other node can take the job between this and the commit.
        if let Some(publish) = publish {
            publish()?;
        }
        Ok(Ok(self.save_export(job, extra, audit)?))
    }

    /// This node's turn at checking and saving a running job (`Engine::job_saves`).
    fn job_saves_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding it left no half-saved job (the save is one batch).
        self.job_saves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Renews the lease of job `id` every few seconds until `done` is set or the lease is
    /// lost (runs beside the job).
    fn keep_lease(&self, id: &str, done: &AtomicBool) {
        let mut waited = std::time::Duration::ZERO;
        let step = std::time::Duration::from_millis(100);
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(step);
            waited += step;
            if waited < RENEW_EVERY {
                continue;
            }
            waited = std::time::Duration::ZERO;
            let renewed = (|| -> Result<bool, EngineError> {
                let _saves = self.job_saves_lock();
                let _turn = self.store().write_turn()?;
                let Some(mut stored) = self.export(id)? else {
                    return Ok(false);
                };
                if stored.status != ExportStatus::Running
                    || !stored
                        .lease
                        .as_ref()
                        .is_some_and(|lease| lease.held_by(self.node_name()))
                {
                    return Ok(false);
                }
                stored.lease = Some(self.lease_until(OffsetDateTime::now_utc() + LEASE));
                let _pending = self.save_export(&stored, None, &[])?;
                Ok(true)
            })();
            match renewed {
                Ok(true) => {}
                Ok(false) => return,
                // The database may be away for a moment: the lease outlasts a few tries.
                Err(error) => {
                    tracing::warn!(export = %id, %error, "cannot renew the export's lease")
                }
            }
        }
    }

    /// Runs `job` on a thread of its own, its lease renewed beside it.
    pub(super) fn spawn_export(
        self: &Arc<Self>,
        job: ExportRecord,
        access: Access,
    ) -> Result<(), EngineError> {
        let engine = self.clone();
        std::thread::Builder::new()
            .name("cdp-export".into())
            .spawn(move || {
                let id = job.id.clone();
                let done = AtomicBool::new(false);
                std::thread::scope(|scope| {
                    scope.spawn(|| engine.keep_lease(&id, &done));
                    let result = engine.run_export(job, &access);
                    done.store(true, Ordering::Relaxed);
                    // A partial file: its key was never saved, remove it.
                    let _ = std::fs::remove_file(engine.partial_file_path(&id));
                    if let Err(error) = result {
                        tracing::error!(export = %id, error = %error, "export failed");
                        if let Ok(Some(mut failed)) = engine.export(&id) {
                            failed.status = ExportStatus::Failed;
                            failed.reason = Some("the export failed; see the server log".into());
                            let _ = engine.save_if_ours(&mut failed, None, &[], None);
                        }
                    }
                });
            })
            .map_err(|_| EngineError::Job("cannot start the export job".into()))?;
        Ok(())
    }

    /// Takes over the export jobs whose lease expired (their node died, or this one
    /// restarted): claims each within a write turn and runs it again from the start. Returns
    /// how many it took over. Jobs of an older version without a recorded caller are marked
    /// failed (they cannot be decided again as their caller would have been).
    pub fn resume_orphaned_exports(self: &Arc<Self>) -> Result<usize, EngineError> {
        let mut orphaned = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"job/") {
            let (key, sealed) = item?;
            let record: ExportRecord = self.open_system(Keyspace::Exports, &key, &sealed)?;
            let now = OffsetDateTime::now_utc();
            if record.status == ExportStatus::Running
                && record.lease.as_ref().is_none_or(|lease| lease.expired(now))
            {
                orphaned.push(record.id);
            }
        }
        let mut resumed = 0;
        for id in orphaned {
            let claimed = {
                let _turn = self.store().write_turn()?;
                let Some(mut job) = self.export(&id)? else {
                    continue;
                };
                let now = OffsetDateTime::now_utc();
                if job.status != ExportStatus::Running
                    || job.lease.as_ref().is_some_and(|lease| !lease.expired(now))
                {
                    continue;
                }
                let previous = job.lease.as_ref().map(|lease| lease.node.clone());
                let Some(caller) = job.caller.clone() else {
                    job.status = ExportStatus::Failed;
                    job.reason = Some(
                        "the export was interrupted (its server stopped); start it again".into(),
                    );
                    self.save_export(&job, None, &[])?.wait_durable()?;
                    continue;
                };
                job.lease = Some(self.lease_until(now + LEASE));
                job.progress = Default::default();
                self.save_export(
                    &job,
                    None,
                    &[AuditRecord {
                        actor: format!("node:{}", self.node_name()),
                        action: "export.resume".into(),
                        purpose: Some(job.purpose.clone()),
                        person: None,
                        decision: "done".into(),
                        rules: vec![
                            job.id.clone(),
                            format!("from={}", previous.unwrap_or_else(|| "-".into())),
                        ],
                    }],
                )?
                .wait_durable()?;
                tracing::warn!(export = %job.id, "export job taken over: its lease expired (its node stopped); running it again");
                self.remove_partial_files(&job.id);
                let access = Access {
                    actor: job.created_by.clone(),
                    caller,
                    purpose: Some(job.purpose.clone()),
                };
                (job, access)
            };
            self.spawn_export(claimed.0, claimed.1)?;
            resumed += 1;
        }
        Ok(resumed)
    }

    /// The partial files other runs of job `id` left (sealed under keys never saved: nobody
    /// can read them).
    fn remove_partial_files(&self, id: &str) {
        let Ok(entries) = std::fs::read_dir(&self.exports_dir) else {
            return;
        };
        let prefix = format!("{id}.");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".partial") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
