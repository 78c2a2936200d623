//! The commit mark: the last durable sequence number, kept outside sled.
//!
//! sled's recovery treats a damaged log tail as the end of the log, so a truncated or corrupted
//! file would open "successfully" without the writes we acknowledged. After every flush we
//! record the flushed sequence number here; at open, a store whose last sequence number is
//! below the mark has lost acknowledged writes and is refused.
//!
//! Layout: `"CDPMARK1" | seq: u64 BE | !seq: u64 BE` (24 bytes, rewritten in place; the
//! complement detects a torn or damaged write).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::StoreError;

const MAGIC: &[u8; 8] = b"CDPMARK1";
const LEN: usize = 24;

#[derive(Debug)]
pub(crate) struct CommitMark {
    file: File,
    path: PathBuf,
}

impl CommitMark {
    /// Reads the mark (0 when the file does not exist yet) and opens it for updates.
    pub(crate) fn open(path: &Path) -> Result<(Self, Option<u64>), StoreError> {
        let existing = match std::fs::read(path) {
            Ok(bytes) => Some(Self::parse(&bytes).ok_or_else(|| StoreError::Corrupt {
                file: path.to_path_buf(),
                problem: format!(
                    "commit mark is not a valid 24-byte record ({} bytes)",
                    bytes.len()
                ),
            })?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(StoreError::io(
                    format!("cannot read {}", path.display()),
                    error,
                ));
            }
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(path)
            .map_err(|error| StoreError::io(format!("cannot open {}", path.display()), error))?;
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
            },
            existing,
        ))
    }

    fn parse(bytes: &[u8]) -> Option<u64> {
        if bytes.len() != LEN || &bytes[..8] != MAGIC {
            return None;
        }
        let seq = u64::from_be_bytes(bytes[8..16].try_into().ok()?);
        let complement = u64::from_be_bytes(bytes[16..24].try_into().ok()?);
        (seq == !complement).then_some(seq)
    }

    /// Records `seq` as durable. Called after the store's own flush succeeded.
    pub(crate) fn write(&self, seq: u64) -> Result<(), StoreError> {
        let mut record = [0u8; LEN];
        record[..8].copy_from_slice(MAGIC);
        record[8..16].copy_from_slice(&seq.to_be_bytes());
        record[16..24].copy_from_slice(&(!seq).to_be_bytes());
        let context = || format!("cannot write {}", self.path.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file
                .write_all_at(&record, 0)
                .map_err(|e| StoreError::io(context(), e))?;
        }
        #[cfg(not(unix))]
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut file = &self.file;
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.write_all(&record))
                .map_err(|e| StoreError::io(context(), e))?;
        }
        self.file
            .sync_data()
            .map_err(|e| StoreError::io(context(), e))
    }
}
