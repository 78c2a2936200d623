//! Ingestion's commits in the order of the write lock, with a request's graph records sealed
//! after the lock (embedded stores).
//!
//! The writer's lock serialises resolution: while one request holds it, every other waits.
//! Sealing the nodes, evidence and profiles a request changed (encoding, LZ4, AES-GCM: about a
//! seventh of the lock's time, `perf` at 200k people) needs nothing the next request changes,
//! so it runs after the lock, beside the next request's resolution. The next request must still
//! read what this one wrote: its decoded graph records stay readable in the writer's state
//! ([`Unsealed`]) and its other writes in an overlay layer, until committed. Commits keep the
//! lock's order: each request takes a place under the lock and commits only after the places
//! before it ([`Pipeline::commit_at`]), so the store receives the batches in the order they
//! were resolved in, each request still one atomic batch.
//!
//! A failure between a place and its commit (the store refused the batch: it is failed or
//! closed) leaves the writer's state ahead of the store, with later requests built on it: the
//! pipeline stops, every later write is refused and the store's health says so (`Failed`), as
//! for the store's own failures, until the store is reopened (`cdp serve` does it by itself
//! once the data directory takes writes again, or at a restart) with a new engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use cdp_core::ProfileId;
use cdp_crypto::DataKey;
use cdp_store::{Staging, StoreError, WriteBatch};

use crate::records::{EvidenceId, EvidenceRecord, NodeKey, NodeRecord, ProfileRecord};
use crate::{Engine, EngineError};

#[derive(Debug, Default)]
struct State {
    /// The last place handed out.
    issued: u64,
    /// Every place up to this one has committed (or failed).
    done: u64,
    failure: Option<String>,
}

/// The order of ingestion's commits (see the module).
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    state: Mutex<State>,
    moved: Condvar,
}

/// A place in the commit order, taken under the write lock. Dropped without
/// [`Pipeline::commit_at`], it stops the pipeline.
#[must_use = "commit at this place, or the pipeline stops"]
pub(crate) struct Place<'a> {
    pipeline: &'a Pipeline,
    place: u64,
    used: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.pipeline.finish(
                self.place,
                Some("a request failed between its resolution and its commit".into()),
            );
        }
    }
}

impl Place<'_> {
    pub(crate) fn number(&self) -> u64 {
        self.place
    }
}

impl Pipeline {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopped(failure: &str) -> EngineError {
        EngineError::Store(StoreError::Unavailable(format!(
            "ingestion stopped after a failed commit ({failure}) until the store is reopened"
        )))
    }

    /// The next place in the commit order (call it under the write lock).
    pub(crate) fn issue(&self) -> Result<Place<'_>, EngineError> {
        let mut state = self.lock();
        if let Some(failure) = &state.failure {
            return Err(Self::stopped(failure));
        }
        state.issued += 1;
        Ok(Place {
            pipeline: self,
            place: state.issued,
            used: false,
        })
    }

    /// A place for a writer other than ingestion, taken under the write lock after
    /// [`Pipeline::drain`] and done when its section ends ([`Pipeline::end_direct`]): reads
    /// made before the lock while it wrote are then known to be stale (`read_ahead`).
    pub(crate) fn begin_direct(&self) -> u64 {
        let mut state = self.lock();
        state.issued += 1;
        state.issued
    }

    pub(crate) fn end_direct(&self, place: u64) {
        self.finish(place, None);
    }

    /// Every place up to this one is done.
    pub(crate) fn done(&self) -> u64 {
        self.lock().done
    }

    /// Why the pipeline stopped, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        self.lock()
            .failure
            .as_ref()
            .map(|failure| format!("ingestion stopped after a failed commit ({failure})"))
    }

    /// Waits for the places before `place`, then runs `commit` (unless an earlier one
    /// failed) and lets the next place go.
    pub(crate) fn commit_at<T>(
        &self,
        mut place: Place<'_>,
        commit: impl FnOnce() -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        place.used = true;
        let place = place.place;
        let mut state = self.lock();
        while state.done + 1 < place {
            state = self.moved.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(failure) = state.failure.clone() {
            drop(state);
            self.finish(place, None);
            return Err(Self::stopped(&failure));
        }
        // The state's lock is held across the commit on purpose: it is the commit order.
        // `commit` only hands the batch to the store's queue (the wait for durability is the
        // caller's, after this).
        let result = commit();
        let failure = result.as_ref().err().map(ToString::to_string);
        state.done = place;
        if failure.is_some() && state.failure.is_none() {
            state.failure = failure;
        }
        drop(state);
        self.moved.notify_all();
        result
    }

    fn finish(&self, place: u64, failure: Option<String>) {
        let mut state = self.lock();
        while state.done + 1 < place {
            state = self.moved.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        state.done = state.done.max(place);
        if state.failure.is_none() {
            state.failure = failure;
        }
        drop(state);
        self.moved.notify_all();
    }

    /// Waits until every place handed out has committed (call it under the write lock, so
    /// that no new one is handed out): then the store holds everything the writer's state
    /// reflects. Writers other than ingestion read the store directly and start with this.
    pub(crate) fn drain(&self) -> Result<(), EngineError> {
        let mut state = self.lock();
        while state.done < state.issued {
            state = self.moved.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        match &state.failure {
            Some(failure) => Err(Self::stopped(failure)),
            None => Ok(()),
        }
    }
}

/// What a request wrote and has not committed yet, readable by the requests after it: its
/// graph records decoded (sealed after the lock) and its other writes, sealed, as a layer.
#[derive(Debug)]
pub(crate) struct Unsealed {
    pub(crate) place: u64,
    pub(crate) staging: Arc<Staging>,
    pub(crate) nodes: BTreeMap<NodeKey, NodeRecord>,
    pub(crate) evidence: BTreeMap<EvidenceId, EvidenceRecord>,
    /// `None`: the profile no longer exists (merged away).
    pub(crate) profiles: BTreeMap<ProfileId, Option<(Arc<ProfileRecord>, DataKey)>>,
}

impl Unsealed {
    /// The graph records sealed, as `Staged::seal_graph` seals them inside the lock.
    pub(crate) fn seal_graph(&self, engine: &Engine) -> Result<WriteBatch, EngineError> {
        crate::write::apply::seal_graph(
            engine,
            &self.nodes,
            &self.evidence,
            self.profiles
                .iter()
                .map(|(id, profile)| (id, profile.as_ref().map(|(record, key)| (&**record, key)))),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn commits_run_in_the_order_places_were_taken() {
        let pipeline = Pipeline::default();
        assert_eq!(pipeline.failure(), None);
        let order = Mutex::new(Vec::new());
        let places: Vec<Place<'_>> = (0..4).map(|_| pipeline.issue().unwrap()).collect();
        std::thread::scope(|scope| {
            // The last place is ready first: it still commits last.
            for place in places.into_iter().rev() {
                let (pipeline, order) = (&pipeline, &order);
                scope.spawn(move || {
                    let number = place.number();
                    pipeline
                        .commit_at(place, || {
                            order.lock().unwrap().push(number);
                            Ok(())
                        })
                        .unwrap();
                });
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        assert_eq!(*order.lock().unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(pipeline.done(), 4);
        pipeline.drain().unwrap();
    }

    #[test]
    fn a_place_given_up_stops_every_later_commit() {
        let pipeline = Pipeline::default();
        let first = pipeline.issue().unwrap();
        let second = pipeline.issue().unwrap();
        drop(first);
        let ran = std::cell::Cell::new(false);
        let refused = pipeline.commit_at(second, || {
            ran.set(true);
            Ok(())
        });
        assert!(!ran.get(), "a commit after a failed one must not run");
        assert!(refused.unwrap_err().to_string().contains("reopened"));
        assert!(pipeline.issue().is_err());
        assert!(pipeline.drain().is_err());
    }

    #[test]
    fn a_failed_commit_stops_the_pipeline() {
        let pipeline = Pipeline::default();
        let place = pipeline.issue().unwrap();
        let failed: Result<(), EngineError> = pipeline.commit_at(place, || {
            Err(EngineError::Store(StoreError::Unavailable(
                "disk full".into(),
            )))
        });
        assert!(failed.is_err());
        let error = pipeline.issue().err().unwrap().to_string();
        assert!(error.contains("disk full"), "{error}");
        assert!(pipeline.failure().unwrap().contains("disk full"));
    }
}
