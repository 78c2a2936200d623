//! Work that runs once across the nodes of a cluster (several `cdp serve` on one PostgreSQL
//! database), held by a lease: a record naming the node that does it and until when.
//!
//! A lease is claimed and renewed within a write turn of the store (`cdp-store` `WriteTurn`),
//! so two nodes never both hold one. A node that dies stops renewing; once the lease has
//! expired another node takes the work over. On a single node the same leases let a job left
//! running by a crash be resumed after a restart.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use cdp_store::{Keyspace, WriteBatch};

use crate::{Engine, EngineError};

/// How long a lease holds without renewal: a job whose node died is taken over after it.
pub const LEASE: time::Duration = time::Duration::seconds(30);
/// How often a running job renews its lease.
pub(crate) const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Who does a piece of work, and until when without renewing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLease {
    pub node: String,
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
}

impl JobLease {
    pub(crate) fn held_by(&self, node: &str) -> bool {
        self.node == node
    }

    pub(crate) fn expired(&self, now: OffsetDateTime) -> bool {
        self.until <= now
    }
}

fn singleton_key(name: &str) -> Vec<u8> {
    [b"lease/".as_slice(), name.as_bytes()].concat()
}

impl Engine {
    /// The name this node goes by among the nodes of its database (`local` alone).
    pub fn node_name(&self) -> &str {
        &self.node
    }

    /// A lease of this node's for `until`.
    pub(crate) fn lease_until(&self, until: OffsetDateTime) -> JobLease {
        JobLease {
            node: self.node.clone(),
            until,
        }
    }

    /// Claims the cluster-wide work `name` (e.g. the retention sweep) for `hold`: true when
    /// this node may do it now (nobody held it, the holder's lease expired, or it is this
    /// node's), false when another node holds it.
    pub fn claim_singleton(&self, name: &str, hold: time::Duration) -> Result<bool, EngineError> {
        let _turn = self.store().write_turn()?;
        let key = singleton_key(name);
        let now = OffsetDateTime::now_utc();
        if let Some(lease) = self.get_system::<JobLease>(Keyspace::Meta, &key)?
            && !lease.held_by(&self.node)
            && !lease.expired(now)
        {
            return Ok(false);
        }
        let lease = self.lease_until(now + hold);
        let mut batch = WriteBatch::default();
        batch.put(
            Keyspace::Meta,
            key.clone(),
            self.seal_system(Keyspace::Meta, &key, &lease)?,
        );
        self.store().commit(batch)?.wait_durable()?;
        Ok(true)
    }
}
