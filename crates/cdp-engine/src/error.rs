use cdp_store::StoreError;

/// Engine failures. Messages name fields, ids and limits, never personal values.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A message of the request is invalid; nothing of the request was stored.
    #[error("{field}: {problem}")]
    InvalidMessage {
        index: Option<usize>,
        field: String,
        problem: String,
    },
    /// Another part of the request is invalid.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("unknown write key")]
    UnknownWriteKey,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored record {0} is malformed")]
    Corrupt(String),
    /// The policies deny the request; the decision carries reasons and citations.
    #[error("denied by policy: {}", .0.denial_summary())]
    Denied(Box<cdp_policy::Decision>),
    /// An audience query that does not parse or names unknown fields.
    #[error("invalid audience query: {0}")]
    InvalidQuery(cdp_index::QueryError),
    /// The search index failed or is not open.
    #[error("{0}")]
    Index(String),
    /// A file of the data directory (export files, the index directory) could not be read
    /// or written. `context` says which; neither it nor the I/O error holds personal data.
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    /// A background job (an export, an indexing pass) could not be started or one of its
    /// threads failed.
    #[error("{0}")]
    Job(String),
    /// A purpose that is not in the taxonomy (a caller's mistake, not a denial): `allowed`
    /// lists the taxonomy's purposes.
    #[error("purpose {purpose:?} is not a purpose of the taxonomy; purposes are {}", allowed.join(", "))]
    UnknownPurpose {
        purpose: String,
        allowed: Vec<String>,
    },
    /// A read of personal data without a purpose.
    #[error("a purpose is required to read personal data")]
    PurposeRequired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        Self::Io { context, source }
    }
}

impl From<cdp_crypto::CryptoError> for EngineError {
    fn from(error: cdp_crypto::CryptoError) -> Self {
        Self::Store(StoreError::Crypto(error))
    }
}
