//! The export file at rest: `[u32 length][sealed chunk]`..., chunks of 1 MiB of plaintext
//! sealed under the file's own data key, chunk `i` bound to (export id, i) so that chunks
//! cannot be reordered, dropped from the middle or moved between files. The writer hashes the
//! plaintext on the way (the manifest's SHA-256); the reader is the only way to get it back.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cdp_crypto::DataKey;
use cdp_store::{Keyspace, Vault};

use crate::EngineError;

/// Plaintext bytes per sealed chunk.
const CHUNK: usize = 1 << 20;

fn chunk_aad(id: &str, chunk: u32) -> Vec<u8> {
    [id.as_bytes(), &chunk.to_be_bytes()].concat()
}

/// Writes an export file sealed in chunks.
pub(super) struct SealedFileWriter<'k> {
    vault: &'k Vault,
    key: &'k DataKey,
    id: String,
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    buffer: Vec<u8>,
    chunk: u32,
    hash: cdp_crypto::Sha256Stream,
    bytes: u64,
}

impl<'k> SealedFileWriter<'k> {
    pub(super) fn create(
        vault: &'k Vault,
        key: &'k DataKey,
        id: &str,
        path: PathBuf,
    ) -> Result<Self, EngineError> {
        let file = std::fs::File::create(&path)
            .map_err(|source| EngineError::io("cannot create the export file", source))?;
        Ok(Self {
            vault,
            key,
            id: id.to_string(),
            path,
            file: std::io::BufWriter::new(file),
            buffer: Vec::with_capacity(CHUNK),
            chunk: 0,
            hash: cdp_crypto::Sha256Stream::default(),
            bytes: 0,
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<(), EngineError> {
        let aad = chunk_aad(&self.id, self.chunk);
        let sealed = self
            .vault
            .seal_person(self.key, Keyspace::Exports, &aad, &self.buffer)?;
        let length =
            u32::try_from(sealed.len()).map_err(|_| EngineError::Corrupt("export chunk".into()))?;
        self.file
            .write_all(&length.to_be_bytes())
            .and_then(|()| self.file.write_all(&sealed))
            .map_err(|source| EngineError::io("cannot write the export file", source))?;
        self.buffer.clear();
        self.chunk += 1;
        Ok(())
    }

    /// Removes the file (an export refused after rows were written).
    pub(super) fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
    }

    /// Seals the last chunk and syncs the file; returns the plaintext's SHA-256 and length.
    pub(super) fn finish(mut self) -> Result<(String, u64), EngineError> {
        if !self.buffer.is_empty() || self.chunk == 0 {
            self.flush_chunk()?;
        }
        self.file
            .flush()
            .and_then(|()| self.file.get_ref().sync_all())
            .map_err(|source| EngineError::io("cannot write the export file", source))?;
        Ok((self.hash.finish_hex(), self.bytes))
    }
}

/// The plaintext of the sealed file at `path` (`expected_bytes`: its length, from the
/// manifest). A missing file is `NotFound`; a cut, damaged or reordered one is `Corrupt` or a
/// failed authentication, never partial content.
pub(super) fn read_sealed_file(
    vault: &Vault,
    key: &DataKey,
    id: &str,
    path: &Path,
    expected_bytes: u64,
) -> Result<Vec<u8>, EngineError> {
    let sealed = std::fs::read(path)
        .map_err(|_| EngineError::NotFound(format!("the file of export {id}")))?;
    let mut out = Vec::with_capacity(usize::try_from(expected_bytes).unwrap_or(0));
    let mut rest = sealed.as_slice();
    let mut chunk = 0u32;
    while !rest.is_empty() {
        let length = rest
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| EngineError::Corrupt(format!("export file {id}")))?
            as usize;
        let body = rest
            .get(4..4 + length)
            .ok_or_else(|| EngineError::Corrupt(format!("export file {id}")))?;
        out.extend(vault.open_person(key, Keyspace::Exports, &chunk_aad(id, chunk), body)?);
        rest = &rest[4 + length..];
        chunk += 1;
    }
    if out.len() as u64 != expected_bytes {
        return Err(EngineError::Corrupt(format!("export file {id}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use cdp_crypto::Keyring;
    use cdp_store::{DataDir, SledStore, SledStoreOptions, Store};

    use super::*;

    /// A file of three chunks (2.5 MiB), written and read back; then damaged three ways.
    #[test]
    fn a_sealed_file_reads_back_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = DataDir::new(dir.path().join("data"));
        let store: Arc<dyn Store> =
            SledStore::open(&data_dir, &SledStoreOptions::default()).unwrap();
        let vault = Vault::open(store, Arc::new(Keyring::generate().unwrap()), &data_dir).unwrap();
        let (key, _) = vault.new_file_key(b"exp_1").unwrap();
        let path = dir.path().join("exp_1.sealed");
        let plain: Vec<u8> = (0..CHUNK * 5 / 2).map(|i| (i % 251) as u8).collect();
        let mut writer = SealedFileWriter::create(&vault, &key, "exp_1", path.clone()).unwrap();
        for part in plain.chunks(100_000) {
            writer.write(part).unwrap();
        }
        let (sha256, bytes) = writer.finish().unwrap();
        assert_eq!(bytes, plain.len() as u64);
        let mut hash = cdp_crypto::Sha256Stream::default();
        hash.update(&plain);
        assert_eq!(sha256, hash.finish_hex());
        let read = |path: &Path| read_sealed_file(&vault, &key, "exp_1", path, bytes);
        assert_eq!(read(&path).unwrap(), plain);
        // Not bound to another export's id either.
        assert!(read_sealed_file(&vault, &key, "exp_2", &path, bytes).is_err());

        let sealed = std::fs::read(&path).unwrap();
        let first = 4 + u32::from_be_bytes(sealed[..4].try_into().unwrap()) as usize;
        let second =
            first + 4 + u32::from_be_bytes(sealed[first..first + 4].try_into().unwrap()) as usize;
        let damaged = dir.path().join("damaged.sealed");
        // Cut at a chunk boundary: every chunk left authenticates, the length does not match.
        std::fs::write(&damaged, &sealed[..second]).unwrap();
        assert!(matches!(read(&damaged), Err(EngineError::Corrupt(_))));
        // Cut inside a chunk.
        std::fs::write(&damaged, &sealed[..second - 7]).unwrap();
        assert!(read(&damaged).is_err());
        // Two chunks swapped: each is bound to its position.
        let swapped = [&sealed[first..second], &sealed[..first], &sealed[second..]].concat();
        std::fs::write(&damaged, swapped).unwrap();
        assert!(read(&damaged).is_err());
        // One flipped bit.
        let mut flipped = sealed.clone();
        flipped[first + 100] ^= 1;
        std::fs::write(&damaged, flipped).unwrap();
        assert!(read(&damaged).is_err());
        // A missing file is not found, not a server error.
        assert!(matches!(
            read(&dir.path().join("none.sealed")),
            Err(EngineError::NotFound(_))
        ));
    }
}
