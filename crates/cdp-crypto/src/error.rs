use std::path::PathBuf;

/// Failures of sealing, opening and key handling. Messages never contain key material or
/// plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed record is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "sealed record was sealed with key version {found}, the key offered is version {expected}"
    )]
    KeyVersionMismatch { found: u32, expected: u32 },
    #[error("master key version {0} is not in the keyring")]
    MissingKeyVersion(u32),
    #[error("authentication failed: wrong key, wrong record, or the ciphertext was changed")]
    AuthenticationFailed,
    #[error("the system random number generator failed")]
    RandomFailed,
    #[error("a key could not be derived or constructed")]
    KeyDerivation,
}

/// Failures loading or writing a keyring. They name the file and the problem, never the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} already exists; refusing to overwrite a key (use `cdp keys rotate`)")]
    AlreadyExists { path: PathBuf },
    #[error("key file {path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("key file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "key file {path} can be read by other users (mode {mode:o}); run `chmod 600 {path}` (a file root owns may be 0640: readable by its group, for read-only mounts)"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("environment variable {variable}: {message}")]
    Environment {
        variable: &'static str,
        message: String,
    },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}
