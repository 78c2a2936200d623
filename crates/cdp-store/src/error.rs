use std::path::PathBuf;

/// Store failures. Messages name files, keyspaces and ids, never stored values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("data directory {path} is in use by another process (is `cdp serve` running?)")]
    InUse { path: PathBuf },
    #[error("store file {file} is damaged: {problem}; restore the data directory from a backup")]
    Corrupt { file: PathBuf, problem: String },
    #[error(
        "store file {file} is truncated or damaged: it holds writes up to #{found}, but writes up \
         to #{acknowledged} were acknowledged (recorded in {mark}); restore the data directory \
         from a backup"
    )]
    LostWrites {
        file: PathBuf,
        mark: PathBuf,
        acknowledged: u64,
        found: u64,
    },
    #[error(
        "data directory {path} has schema version {found}, newer than this build supports \
         ({supported}); upgrade cdp"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "data directory {path} has an unreadable schema version record; it is not a cdp store of a known format"
    )]
    UnknownSchema { path: PathBuf },
    #[error("{path} holds data but is not a cdp store (no schema version)")]
    NotACdpStore { path: PathBuf },
    /// The target of a copy already holds data.
    #[error(
        "the target store is not empty (keyspace {keyspace}); copy only into a new data directory"
    )]
    NotEmpty { keyspace: &'static str },
    /// A copy's target does not hold what the source does.
    #[error("the copy differs from the source in {keyspaces}; the target is incomplete, delete it")]
    CopyMismatch { keyspaces: String },
    /// The data directory holds a store of the other embedded engine.
    #[error(
        "{path} holds a {found} store, but the configured engine is {configured}: set [store] \
         engine = \"{found}\" (or CDP_STORE_ENGINE={found}) to serve it"
    )]
    OtherEngine {
        path: PathBuf,
        found: &'static str,
        configured: &'static str,
    },
    /// The store is configured in PostgreSQL, but the data directory holds an embedded one.
    #[error(
        "{path} holds a {found} store, but the store is configured in PostgreSQL: move it there \
         with `cdp store copy --from {path} --to postgres://...` (the server stopped), then move \
         or delete the data directory's store, or remove the PostgreSQL setting to serve it"
    )]
    EmbeddedBesideDatabase { path: PathBuf, found: &'static str },
    #[error(
        "the data in {data_dir} is sealed with master key version {version}, which {source_name} \
         lacks; give the key file that holds it"
    )]
    MissingKeyVersion {
        data_dir: PathBuf,
        version: u32,
        source_name: String,
    },
    #[error(
        "master key version {version} in {source_name} is not the key the data in {data_dir} was \
         sealed with"
    )]
    WrongKey {
        data_dir: PathBuf,
        version: u32,
        source_name: String,
    },
    /// Writes are refused: after a failed flush, once damage was found, or once closed.
    #[error("the store refuses writes: {0}")]
    Unavailable(String),
    /// A verification found damage (now, or at an earlier start: `report` records it).
    #[error(
        "the store is damaged: {problem} (recorded in {report}); restore the data directory from \
         a backup, or run `cdp store verify` to check the store again and remove the record if it \
         reads clean"
    )]
    Damaged { report: PathBuf, problem: String },
    #[error("{what} exceeds the limit of {max}")]
    Limit { what: &'static str, max: usize },
    #[error("reserved: {0}")]
    Reserved(&'static str),
    #[error("record {keyspace}/{record} cannot be opened: {source}")]
    Seal {
        keyspace: &'static str,
        record: String,
        source: cdp_crypto::CryptoError,
    },
    #[error(transparent)]
    Crypto(#[from] cdp_crypto::CryptoError),
    #[error("store error: {0}")]
    Backend(String),
    /// The PostgreSQL backend could not do what was asked (`location` names the server and
    /// database, never the password).
    #[error("PostgreSQL store {location}: {problem}")]
    Database { location: String, problem: String },
    /// The change feed no longer holds the entries after `after` (every follower that was
    /// alive had them, and they were forgotten): rebuild from the store.
    #[error("the change feed was trimmed through entry {trimmed}; entries after {after} are gone")]
    FeedTrimmed { after: u64, trimmed: u64 },
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
