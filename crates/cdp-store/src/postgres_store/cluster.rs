//! Several `cdp serve` processes ("nodes") writing one database (`[store] cluster = true`).
//!
//! **One writer at a time, handed over.** A node writes only while it holds the *write turn*,
//! a PostgreSQL advisory lock ([`TURN_LOCK`]). It takes the turn when a request wants to
//! write, keeps it while requests keep coming (their batches form groups as on one node), and
//! lets go once its queue is empty and nothing came for [`LINGER`], or after [`MAX_HOLD`] when
//! it stays busy, so that a waiting node gets its turn (PostgreSQL grants a lock to the
//! sessions waiting for it in order). Before it lets go, everything it committed is in the
//! database; a node taking the turn reads the last sequence number there, numbers its next
//! batch after it, and, when another node wrote meanwhile, starts a new *generation*: the
//! engine drops what it cached of the graph and reads the other node's messages into its
//! de-duplication window ([`crate::WriteTurn`]).
//!
//! Why not finer locks: an event's resolution reads an open-ended part of the graph (every
//! component its identifiers touch, recomputed when they merge), so per-identifier locks would
//! have to be taken, and proven sufficient, as the graph is walked; one turn makes every
//! node's resolution exactly the single-node one, at the price that writes do not run on two
//! nodes at the same instant (reads, audiences, exports, indexing and the HTTP work do).
//!
//! **Fencing.** The turn is a session lock: a node whose session breaks loses it, and another
//! node may take it while the first one's applier still retries a group. Each group's
//! transaction therefore locks the sequence-number row and checks that it holds the number
//! before the group's first; a node whose check fails stops writing (its unacknowledged
//! batches are refused), never overwrites the other node's writes.
//!
//! **Following.** Every node polls the last committed sequence number ([`POLL`]) and
//! publishes it as durable, so its indexer follows the other nodes' changes from the shared
//! change feed. The feed is trimmed only through the lowest position of the nodes' indexers
//! seen within a day (`cdp_followers`); one further behind finds the gap and rebuilds its
//! index.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_executor::block_on;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::connection::{Failure, Pool, pg_error};
use crate::commit_queue::CommitQueue;
use crate::encoding::prefixed;
use crate::meta::LAST_SEQ_KEY;
use crate::store::{TurnRelease, WriteTurn};
use crate::{Keyspace, StoreError};

/// The advisory lock whose holder writes.
const TURN_LOCK: i64 = 0x0cd9_5707_e000_0002;
/// An idle node lets go of the turn after this long without a request wanting it.
const LINGER: Duration = Duration::from_millis(2);
/// A busy node lets go after this long (once its queue is empty), so that others get a turn.
const MAX_HOLD: Duration = Duration::from_millis(50);
/// How long a node waits for the turn before the request fails with 503.
const TURN_TIMEOUT_SECS: u32 = 30;
/// How often a node reads the last committed sequence number of the others.
pub(super) const POLL: Duration = Duration::from_millis(100);
/// Followers of the feed not seen for this long no longer hold its trimming back.
const FOLLOWER_EXPIRY: &str = "1 day";

pub(super) const CREATE_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS cdp_followers (node text PRIMARY KEY, seq bigint NOT NULL, seen timestamptz NOT NULL)";

thread_local! {
    /// The turns this thread holds: (store, depth). Turns nest on a thread.
    static HELD: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// The write turn of one node.
pub(super) struct Turns {
    id: usize,
    pool: Arc<Pool>,
    queue: Arc<CommitQueue>,
    state: Mutex<TurnState>,
    changed: Condvar,
    /// Set once the store has closed (its queue is empty): the keeper lets go and ends.
    stopping: AtomicBool,
    /// How far the other nodes' keys are in this node's absent-key filters (the change feed
    /// read through this sequence number; keys from before open come from the filters'
    /// scan). Its lock orders the readers of the feed that add them.
    absorbed: Mutex<u64>,
}

struct TurnState {
    /// The session that takes the turn lock (it holds it while `held`).
    client: Option<Client>,
    held: bool,
    acquiring: bool,
    /// Threads inside a turn.
    open: usize,
    held_since: Instant,
    last_left: Instant,
    /// Held long enough: no new turns start until it has been let go.
    draining: bool,
    generation: u64,
    synced_seq: u64,
    /// Turns entered (outermost) since the write turn was taken, and when the last left.
    sections: u64,
    /// What this node's caches reflect: the last sequence number it wrote or synced to.
    own_seq: u64,
}

impl Turns {
    pub(super) fn new(pool: Arc<Pool>, queue: Arc<CommitQueue>, last_seq: u64) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            pool,
            queue,
            state: Mutex::new(TurnState {
                client: None,
                held: false,
                acquiring: false,
                open: 0,
                held_since: now,
                last_left: now,
                draining: false,
                generation: 0,
                sections: 0,
                synced_seq: last_seq,
                own_seq: last_seq,
            }),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            absorbed: Mutex::new(last_seq),
        })
    }

    fn lock(&self) -> MutexGuard<'_, TurnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters a turn: at once when this thread holds one or the node holds it, else once the
    /// node has taken it.
    pub(super) fn enter(self: &Arc<Self>) -> Result<WriteTurn, StoreError> {
        let nested = HELD.with(|held| {
            let mut held = held.borrow_mut();
            match held.iter_mut().find(|(id, _)| *id == self.id) {
                Some((_, depth)) => {
                    *depth += 1;
                    true
                }
                None => false,
            }
        });
        let mut state = self.lock();
        if nested {
            state.open += 1;
            return Ok(self.turn(&state));
        }
        loop {
            if state.held && !state.draining {
                state.open += 1;
                state.sections += 1;
                HELD.with(|held| held.borrow_mut().push((self.id, 1)));
                return Ok(self.turn(&state));
            }
            if !state.held && !state.acquiring {
                state.acquiring = true;
                let client = state.client.take();
                drop(state);
                let taken = self.take(client);
                state = self.lock();
                state.acquiring = false;
                self.changed.notify_all();
                let (client, db_seq) = taken?;
                state.client = Some(client);
                state.held = true;
                state.draining = false;
                state.held_since = Instant::now();
                state.last_left = state.held_since;
                if db_seq != state.own_seq {
                    state.generation += 1;
                    tracing::debug!(
                        from = state.own_seq,
                        to = db_seq,
                        "another node wrote since this one's last turn"
                    );
                }
                state.synced_seq = db_seq;
                state.own_seq = db_seq;
                continue;
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if self.stopping.load(Ordering::Relaxed) {
                return Err(StoreError::Unavailable("the store is closed".into()));
            }
        }
    }

    fn turn(self: &Arc<Self>, state: &TurnState) -> WriteTurn {
        WriteTurn::shared(state.generation, state.synced_seq, self.clone())
    }

    /// Takes the turn lock and reads how far the database is: (the session, its last
    /// sequence number).
    fn take(&self, client: Option<Client>) -> Result<(Client, u64), StoreError> {
        let location = &self.pool.location;
        // Nothing of this node may still be queued: it would be numbered before the next
        // node's writes. (Only after a lost session; a turn is let go with an empty queue.)
        self.queue.in_flight.wait_through(u64::MAX);
        self.queue.check_writable()?;
        let client = match client {
            Some(client) if !client.is_closed() => client,
            _ => {
                let client = self
                    .pool
                    .connect()
                    .map_err(|failure| failure.into_error(location))?;
                block_on(client.batch_execute(&format!(
                    "SET lock_timeout = '{TURN_TIMEOUT_SECS}s'; SET application_name = 'cdp write turn'"
                )))
                .map_err(|e| pg_error(location, &e))?;
                client
            }
        };
        let waited = Instant::now();
        let locked = block_on(client.execute("SELECT pg_advisory_lock($1)", &[&TURN_LOCK]));
        tracing::debug!(
            wait_us = u64::try_from(waited.elapsed().as_micros()).unwrap_or(u64::MAX),
            "write turn taken"
        );
        if let Err(error) = locked {
            if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Err(StoreError::Unavailable(format!(
                    "another node of {location} kept the write turn for over {TURN_TIMEOUT_SECS} s; try again"
                )));
            }
            return Err(pg_error(location, &error));
        }
        let db_seq = match read_last_seq(&client, location) {
            Ok(seq) => seq,
            Err(error) => {
                let _ = block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&TURN_LOCK]));
                return Err(error);
            }
        };
        let own = self.queue.last_seq();
        if db_seq < own {
            let _ = block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&TURN_LOCK]));
            return Err(StoreError::Database {
                location: location.clone(),
                problem: format!(
                    "the database's last change is #{db_seq} but this node wrote #{own}: it was restored or rolled back under a running node; restart the nodes"
                ),
            });
        }
        // Before any read of the turn: the filters must know every key written until now.
        self.absorb_feed(db_seq);
        self.queue.resume_at(db_seq);
        Ok((client, db_seq))
    }

    /// Whether this thread holds a turn of this store: then the absent-key filters hold every
    /// key that exists (none is written but by this node meanwhile).
    pub(super) fn held_by_this_thread(&self) -> bool {
        HELD.with(|held| held.borrow().iter().any(|(id, _)| *id == self.id))
    }

    /// How far the feed is read into the filters (a position the feed is not trimmed past).
    pub(super) fn absorbed(&self) -> u64 {
        *self.absorbed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the keys the feed lists through `through` (other nodes' writes, and this node's,
    /// which are in already) to the absent-key filters. A feed that can no longer be read
    /// (trimmed past this node: it should not be) turns the filters off.
    pub(super) fn absorb_feed(&self, through: u64) {
        let mut absorbed = self.absorbed.lock().unwrap_or_else(|p| p.into_inner());
        while *absorbed < through {
            let changes = match super::read_changes(&self.pool, *absorbed, 1000) {
                Ok(changes) => changes,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the change feed into the absent-key filters; they are off until restart");
                    self.queue.absent.give_up();
                    *absorbed = through;
                    return;
                }
            };
            if changes.is_empty() {
                break;
            }
            for change in changes {
                for (keyspace, op, key) in &change.keys {
                    if *op == crate::ChangeOp::Put {
                        self.queue.absent.insert(*keyspace, key);
                    }
                }
                *absorbed = change.seq;
            }
        }
    }

    /// Ends the keeper, which lets go of the turn (call once nothing is queued).
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }

    /// The keeper: lets go of the turn when the node is idle ([`LINGER`]) or has held it for
    /// [`MAX_HOLD`] and its queue has emptied; notices a session that broke.
    pub(super) fn keep(&self) {
        let mut state = self.lock();
        while !self.stopping.load(Ordering::Relaxed) {
            if !state.held {
                state = self
                    .changed
                    .wait_timeout(state, Duration::from_millis(100))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
            if state.held_since.elapsed() >= MAX_HOLD {
                state.draining = true;
            }
            let broken = state.client.as_ref().is_none_or(Client::is_closed);
            let idle = state.open == 0 && self.queue.in_flight.is_empty();
            if broken {
                // The session went, and the lock with it: another node may write now. Batches
                // of this node still queued are fenced off by their transaction's check.
                tracing::warn!(location = %self.pool.location, "the session holding the write turn broke; the turn is lost");
                state.client = None;
                state.held = false;
                state.draining = false;
                self.changed.notify_all();
            } else if idle && (state.draining || state.last_left.elapsed() >= LINGER) {
                let own = self.queue.last_seq();
                if let Some(client) = &state.client
                    && block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&TURN_LOCK]))
                        .is_err()
                {
                    state.client = None;
                }
                tracing::debug!(
                    held_us =
                        u64::try_from(state.held_since.elapsed().as_micros()).unwrap_or(u64::MAX),
                    draining = state.draining,
                    sections = state.sections,
                    idle_us =
                        u64::try_from(state.last_left.elapsed().as_micros()).unwrap_or(u64::MAX),
                    "write turn let go"
                );
                state.held = false;
                state.draining = false;
                state.sections = 0;
                state.own_seq = own;
                self.changed.notify_all();
                continue;
            }
            drop(state);
            std::thread::sleep(Duration::from_millis(1));
            state = self.lock();
        }
        if state.held
            && let Some(client) = state.client.take()
        {
            let _ = block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&TURN_LOCK]));
        }
        state.held = false;
        self.changed.notify_all();
    }
}

impl TurnRelease for Turns {
    fn leave(&self) {
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if let Some(at) = held.iter().position(|(id, _)| *id == self.id) {
                held[at].1 -= 1;
                if held[at].1 == 0 {
                    held.swap_remove(at);
                }
            }
        });
        let mut state = self.lock();
        state.open = state.open.saturating_sub(1);
        state.last_left = Instant::now();
    }
}

/// The last committed sequence number.
pub(super) fn read_last_seq(client: &Client, location: &str) -> Result<u64, StoreError> {
    let row = block_on(client.query_opt(
        "SELECT v FROM cdp_store WHERE k = $1",
        &[&prefixed(Keyspace::Meta, LAST_SEQ_KEY)],
    ))
    .map_err(|e| pg_error(location, &e))?;
    match row {
        None => Ok(0),
        Some(row) => <[u8; 8]>::try_from(row.get::<_, Vec<u8>>(0).as_slice())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Database {
                location: location.to_string(),
                problem: "the sequence-number record is malformed".into(),
            }),
    }
}

/// The follower: publishes the other nodes' committed changes as durable here, and adds
/// their keys to the absent-key filters.
pub(super) fn follow(pool: &Arc<Pool>, turns: &Turns, closing: &AtomicBool) {
    let queue = &turns.queue;
    while !closing.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        let seq = pool
            .get()
            .map_err(|failure: Failure| failure.into_error(&pool.location))
            .and_then(|conn| read_last_seq(&conn.client, &pool.location));
        if let Ok(seq) = seq {
            if seq > queue.durability.durable() {
                queue.durability.mark_durable(seq);
            }
            turns.absorb_feed(seq);
        }
    }
}

/// Records `node`'s follower position (its index's, or its filters' when they are behind)
/// and forgets the entries every live follower has.
pub(super) fn trim(
    pool: &Arc<Pool>,
    node: &str,
    turns: &Turns,
    upto: u64,
) -> Result<(), StoreError> {
    let upto = i64::try_from(upto.min(turns.absorbed())).unwrap_or(i64::MAX);
    pool.with(|conn| {
        block_on(async {
            conn.client
                .execute(
                    "INSERT INTO cdp_followers (node, seq, seen) VALUES ($1, $2, now()) \
                     ON CONFLICT (node) DO UPDATE SET seq = EXCLUDED.seq, seen = now()",
                    &[&node, &upto],
                )
                .await?;
            let lowest: Option<i64> = conn
                .client
                .query_one(
                    &format!(
                        "SELECT min(seq) FROM cdp_followers WHERE seen > now() - interval '{FOLLOWER_EXPIRY}'"
                    ),
                    &[],
                )
                .await?
                .get(0);
            if let Some(lowest) = lowest {
                trim_through(&conn.client, lowest.max(0) as u64).await?;
            }
            Ok(())
        })
    })
}

/// Deletes the feed's entries through `upto` (a follower behind it finds the gap:
/// [`crate::StoreError::FeedTrimmed`]).
pub(super) async fn trim_through(client: &Client, upto: u64) -> Result<(), tokio_postgres::Error> {
    let start = prefixed(Keyspace::Changes, &0u64.to_be_bytes());
    let end = prefixed(Keyspace::Changes, &upto.to_be_bytes());
    client
        .execute(
            "DELETE FROM cdp_store WHERE k >= $1 AND k <= $2",
            &[&start, &end],
        )
        .await?;
    Ok(())
}
