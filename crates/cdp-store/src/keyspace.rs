//! Keyspaces: the named sub-maps of the store.
//!
//! In the sled backend every keyspace is a one-byte prefix of one tree, because sled's
//! `apply_batch` is atomic only within one tree and its multi-tree transactions are slower.
//! Tags and names are persisted (tags in keys, names in AEAD associated data): never renumber
//! or rename one.

/// A named sub-map of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Keyspace {
    /// Store bookkeeping: schema version, sequence numbers, key versions in use.
    Meta,
    /// Profile id -> sealed profile (traits, provenance, counters).
    Profiles,
    /// Blind index -> profile id.
    Identifiers,
    /// Identity graph edges with provenance.
    IdentityEdges,
    /// Merge and split history.
    MergeLog,
    /// (profile id, time) -> sealed event.
    Events,
    /// Append-only consent ledger.
    Consents,
    /// Profile id -> wrapped data key. Deleting an entry crypto-shreds the person.
    Keys,
    Audiences,
    Recipients,
    Exports,
    /// Data-subject requests.
    Requests,
    /// Hash-chained audit log.
    Audit,
    /// Change feed: sequence number -> keys touched by that batch.
    Changes,
    /// Ingestion sources and their hashed write keys.
    Sources,
    /// (blind index, evidence id) -> (): which evidence mentions an identifier.
    Mentions,
    /// Absorbed profile id -> surviving profile id.
    Aliases,
    /// (arrival minute, random) -> digests of (source, messageId) of one request: the
    /// de-duplication window of retried messages (cdp-engine `write/dedup.rs`).
    Messages,
    /// Blind index -> sealed note: identifiers that no export may ever include.
    Suppressions,
    /// Blind index -> sealed suspect record: identifiers that kept linking different people
    /// (watched, quarantined, blocked or released; cdp-engine `suspects.rs`).
    Suspects,
    /// Console operator accounts (`acct/<name>`) and their sign-in sessions
    /// (`sess/<hash of the session token>`), sealed (cdp-engine `accounts.rs`).
    Accounts,
    /// Fuzzy identity matching (cdp-engine `matching/`): `enc/<profile id>` -> the person's
    /// keyed encodings, sealed with their data key; `blk/<pass><blocking key><profile id>` ->
    /// () (blind indexes for candidate search); `sug/<id>` -> a sealed review suggestion;
    /// `model` -> the sealed trained model.
    Matching,
}

impl Keyspace {
    pub const ALL: [Keyspace; 22] = [
        Self::Meta,
        Self::Profiles,
        Self::Identifiers,
        Self::IdentityEdges,
        Self::MergeLog,
        Self::Events,
        Self::Consents,
        Self::Keys,
        Self::Audiences,
        Self::Recipients,
        Self::Exports,
        Self::Requests,
        Self::Audit,
        Self::Changes,
        Self::Sources,
        Self::Mentions,
        Self::Aliases,
        Self::Messages,
        Self::Suppressions,
        Self::Suspects,
        Self::Accounts,
        Self::Matching,
    ];

    /// The key prefix of this keyspace in a single-tree backend.
    pub const fn tag(self) -> u8 {
        match self {
            Self::Meta => 0,
            Self::Profiles => 1,
            Self::Identifiers => 2,
            Self::IdentityEdges => 3,
            Self::MergeLog => 4,
            Self::Events => 5,
            Self::Consents => 6,
            Self::Keys => 7,
            Self::Audiences => 8,
            Self::Recipients => 9,
            Self::Exports => 10,
            Self::Requests => 11,
            Self::Audit => 12,
            Self::Changes => 13,
            Self::Sources => 14,
            Self::Mentions => 15,
            Self::Aliases => 16,
            Self::Messages => 17,
            Self::Suppressions => 18,
            Self::Suspects => 19,
            Self::Accounts => 20,
            Self::Matching => 21,
        }
    }

    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|keyspace| keyspace.tag() == tag)
    }

    /// Whether the change feed records writes to this keyspace: those derived views follow
    /// (the search index: profiles, consents, erasure through deleted keys, merges through
    /// aliases), and the messages of the de-duplication window (one record per request),
    /// which other nodes on a shared database read into theirs. Events, graph records and
    /// bookkeeping are left out, so the feed stays small.
    pub const fn followed(self) -> bool {
        matches!(
            self,
            Self::Profiles
                | Self::Keys
                | Self::Consents
                | Self::Aliases
                | Self::Audiences
                | Self::Messages
        )
    }

    /// Whether the change feed of a store that several nodes share records writes to this
    /// keyspace: the followed ones, the identity graph's records, which a node caches and
    /// must drop when another node rewrites them, and the suspects, which it holds in memory
    /// (events and bookkeeping stay out).
    pub const fn followed_by_nodes(self) -> bool {
        self.followed()
            || matches!(
                self,
                Self::Identifiers | Self::IdentityEdges | Self::Suspects
            )
    }

    /// The stable name, bound into the associated data of records sealed in this keyspace.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Profiles => "profiles",
            Self::Identifiers => "identifiers",
            Self::IdentityEdges => "identity_edges",
            Self::MergeLog => "merge_log",
            Self::Events => "events",
            Self::Consents => "consents",
            Self::Keys => "keys",
            Self::Audiences => "audiences",
            Self::Recipients => "recipients",
            Self::Exports => "exports",
            Self::Requests => "requests",
            Self::Audit => "audit",
            Self::Changes => "changes",
            Self::Sources => "sources",
            Self::Mentions => "mentions",
            Self::Aliases => "aliases",
            Self::Messages => "messages",
            Self::Suppressions => "suppressions",
            Self::Suspects => "suspects",
            Self::Accounts => "accounts",
            Self::Matching => "matching",
        }
    }
}

impl std::fmt::Display for Keyspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_names_are_unique_and_round_trip() {
        let mut tags = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for keyspace in Keyspace::ALL {
            assert!(tags.insert(keyspace.tag()));
            assert!(names.insert(keyspace.name()));
            assert_eq!(Keyspace::from_tag(keyspace.tag()), Some(keyspace));
        }
        assert_eq!(Keyspace::from_tag(200), None);
    }
}
