//! An export's members decided on both cores: two workers take small chunks of the members
//! (ascending ids, so that each worker's cursors walk the store forward) until none are left,
//! while the job's own thread puts their results back in member order, seals the rows into the
//! file and saves the progress (renewing its lease and the channel's turn) every block.
//!
//! Why chunks and not a block split in halves: with halves, a core idled whenever one half was
//! slower, and both idled while the job's thread merged the halves and saved the progress; and
//! two threads were started per block (about 500 at 1M members, each with a fresh allocator
//! heap). Now the workers live as long as the job and never wait for the saving.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};

use cdp_core::ProfileId;
use time::OffsetDateTime;

use super::plan::ExportPlan;
use super::rows::{MemberResults, RowShape};
use super::sealed_file::SealedFileWriter;
use super::{ExportCounts, ExportRecord};
use crate::{Engine, EngineError};

/// Members decided between two saves of the job's progress (each renews its lease).
const BLOCK: u64 = 4096;
/// Members a worker takes at a time: small, so that the workers end together; large enough
/// that their cursors mostly step rather than seek.
const CHUNK: usize = 256;
/// Deciding threads: the two cores of the budget machine (the job's thread writes the file).
const WORKERS: usize = 2;
/// Chunks the workers may be ahead of the file by: memory stays bounded when the job's
/// thread falls behind.
const AHEAD: usize = 16;

/// A chunk's number and what its worker made of it.
type ChunkResult = (usize, Result<MemberResults, EngineError>);

/// What the members came to.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) counts: ExportCounts,
    pub(super) transforms: BTreeMap<String, String>,
    /// The included members' pseudonyms (bytes), in member order until sorted.
    pub(super) included: Vec<[u8; 16]>,
    /// The largest minimum audience size of the members' jurisdictions.
    pub(super) strictest_k: u64,
    /// (reason, why) -> (people, citations), for the exclusion lines.
    exclusions: BTreeMap<(String, String), (u64, Vec<String>)>,
    /// A campaign send's assignments.
    pub(super) assigned: Vec<([u8; 16], u8)>,
    /// A campaign send's contact records, sealed, and stale ones to delete.
    pub(super) contacts: Vec<crate::contact::ContactWrite>,
}

impl Tally {
    /// Room for every member at once: at 1M members, growing these by doubling copied each
    /// several times into fresh memory, the largest part of a send's finishing.
    fn for_members(members: usize, campaign: bool) -> Self {
        let per_campaign = if campaign { members } else { 0 };
        Self {
            included: Vec::with_capacity(members),
            assigned: Vec::with_capacity(per_campaign),
            contacts: Vec::with_capacity(per_campaign),
            ..Self::default()
        }
    }

    /// Adds a chunk's results (its rows are in the file already).
    fn add(&mut self, part: MemberResults) {
        self.counts.considered += part.considered;
        self.counts.included += part.rows.len() as u64;
        for (reason, n) in part.excluded {
            *self.counts.excluded.entry(reason).or_default() += n;
        }
        for (key, (n, cite)) in part.exclusions {
            self.exclusions.entry(key).or_insert_with(|| (0, cite)).0 += n;
        }
        self.strictest_k = self.strictest_k.max(part.strictest_k);
        for (field, transform) in part.transforms {
            self.transforms.entry(field).or_insert(transform);
        }
        self.included.extend(part.rows.iter().map(|(tag, _)| *tag));
        self.assigned.extend(part.assigned);
        self.contacts.extend(part.contacts);
    }
}

impl Engine {
    /// Decides and formats the members (see the module's comment); `None` when another node
    /// took the job over meanwhile. Every included row is in the file when this returns.
    pub(super) fn decide_members(
        &self,
        plan: &ExportPlan,
        job: &mut ExportRecord,
        writer: &mut SealedFileWriter<'_>,
        turn: Option<&crate::contact::ContactTurn<'_>>,
    ) -> Result<Option<Tally>, EngineError> {
        let quintiles = self.quintiles();
        let fields = job.fields.clone();
        let shape = RowShape {
            request: &plan.request,
            fields: &fields,
            columns: &plan.columns,
            format: job.format,
            pseudonyms: &plan.pseudonyms,
            quintiles: &quintiles,
            now: OffsetDateTime::now_utc(),
            arms: plan.arms.as_ref(),
            contact: plan.contact.as_ref(),
            profile: &super::batch_profile::BatchShape::for_fields(&fields),
        };
        let chunks: Vec<&[ProfileId]> = plan.members.chunks(CHUNK).collect();
        let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
        let (sender, results) = sync_channel::<ChunkResult>(AHEAD);
        let tally = std::thread::scope(|scope| {
            // Named: `top -H` and profiles tell the deciding from the file writing.
            let workers: Vec<_> = (0..WORKERS)
                .map(|_| {
                    let (sender, shape, chunks) = (sender.clone(), &shape, &chunks);
                    let (next, stop) = (&next, &stop);
                    std::thread::Builder::new()
                        .name("cdp-export-decide".into())
                        .spawn_scoped(scope, move || {
                            while !stop.load(Ordering::Relaxed) {
                                let n = next.fetch_add(1, Ordering::Relaxed);
                                let Some(chunk) = chunks.get(n) else { break };
                                // The job's thread stopped listening: it failed or lost the job.
                                if sender.send((n, self.export_members(chunk, shape))).is_err() {
                                    break;
                                }
                            }
                        })
                })
                .collect();
            // Only the workers' senders are left: the results end when both are done.
            drop(sender);
            let collected = self.collect_members(plan, job, writer, turn, results, chunks.len());
            stop.store(true, Ordering::Relaxed);
            let mut failure = None;
            for worker in workers {
                let joined = worker
                    .map_err(|e| EngineError::Job(format!("no export worker: {e}")))
                    .and_then(|worker| {
                        (worker.join())
                            .map_err(|_| EngineError::Job("an export worker panicked".into()))
                    });
                if let Err(e) = joined {
                    failure.get_or_insert(e);
                }
            }
            // A worker that panicked also left chunks undecided: its failure says more.
            match failure {
                Some(e) => Err(e),
                None => collected,
            }
        })?;
        let Some(mut tally) = tally else {
            return Ok(None);
        };
        tally.counts.exclusions = tally
            .exclusions
            .iter()
            .map(|((reason, why), (people, cite))| super::Exclusion {
                reason: reason.clone(),
                people: *people,
                why: why.clone(),
                cite: cite.clone(),
            })
            .collect();
        // The largest first: the manifest reads as an explanation.
        tally.counts.exclusions.sort_by(|a, b| {
            b.people
                .cmp(&a.people)
                .then_with(|| a.reason.cmp(&b.reason))
        });
        Ok(Some(tally))
    }

    /// The job's thread meanwhile: the workers' results in member order, their rows into the
    /// file, the progress saved every block. Returning drops `results`: a worker still
    /// deciding then stops at its next chunk.
    fn collect_members(
        &self,
        plan: &ExportPlan,
        job: &mut ExportRecord,
        writer: &mut SealedFileWriter<'_>,
        turn: Option<&crate::contact::ContactTurn<'_>>,
        results: Receiver<ChunkResult>,
        chunks: usize,
    ) -> Result<Option<Tally>, EngineError> {
        let mut tally = Tally::for_members(plan.members.len(), plan.arms.is_some());
        // Chunks that came before an earlier one (the other worker was faster).
        let mut early: BTreeMap<usize, MemberResults> = BTreeMap::new();
        let (mut next, mut saved_at) = (0, 0);
        for (n, result) in results.iter() {
            early.insert(n, result?);
            while let Some(part) = early.remove(&next) {
                next += 1;
                for (tag, line) in &part.rows {
                    if plan.writes(tag) {
                        writer.write_row(tag, line)?;
                    }
                }
                tally.add(part);
            }
            if tally.counts.considered >= saved_at + BLOCK {
                saved_at = tally.counts.considered;
                job.progress.considered = saved_at;
                if let Some(turn) = turn {
                    turn.renew()?;
                }
                if let Ok(Err(super::lease::LeaseLost)) = self.save_if_ours(job, None, &[], None) {
                    return Ok(None);
                }
            }
        }
        if next < chunks {
            return Err(EngineError::Job(
                "an export worker stopped before its members were decided".into(),
            ));
        }
        // Everyone decided: what is left is finishing (a progress bar, the benchmark's split).
        job.progress.considered = tally.counts.considered;
        if let Ok(Err(super::lease::LeaseLost)) = self.save_if_ours(job, None, &[], None) {
            return Ok(None);
        }
        Ok(Some(tally))
    }
}
