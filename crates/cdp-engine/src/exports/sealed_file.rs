//! The export file at rest: `[u32 length][sealed chunk]`..., chunks of 1 MiB of plaintext
//! sealed under the file's own data key, chunk `i` bound to (export id, i) so that chunks
//! cannot be reordered, dropped from the middle or moved between files. The plaintext is a
//! sequence of framed rows, `[16-byte tag][u32 length][line]`: the tag is the member's
//! pseudonym (zeros for the header and removal lines), so that an erasure can rewrite the file
//! without the person (GDPR Art 17(2)) even when the file carries no pseudonym column. What a
//! download delivers is the lines alone; the writer hashes them on the way (the manifest's
//! SHA-256). Files are created with mode 0600.

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
    /// Bytes of lines (what a download delivers).
    delivered: u64,
    /// Bytes of framed plaintext (what the chunks hold).
    framed: u64,
}

/// The tag of lines that are nobody's (the CSV header, removal lines).
pub(super) const NO_MEMBER: [u8; 16] = [0; 16];

/// What a finished file holds: the SHA-256 and length of its lines, and the length of its
/// framed plaintext (the reader checks it: a file cut at a chunk boundary is refused).
#[derive(Debug, Clone)]
pub(super) struct WrittenFile {
    pub(super) sha256: String,
    pub(super) delivered_bytes: u64,
    pub(super) framed_bytes: u64,
}

/// Creates `path` for writing, readable by this user only.
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl<'k> SealedFileWriter<'k> {
    pub(super) fn create(
        vault: &'k Vault,
        key: &'k DataKey,
        id: &str,
        path: PathBuf,
    ) -> Result<Self, EngineError> {
        let file = create_private(&path)
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
            delivered: 0,
            framed: 0,
        })
    }

    /// Appends one line of the file, tagged with the member it is about (or [`NO_MEMBER`]).
    pub(super) fn write_row(&mut self, tag: &[u8; 16], line: &[u8]) -> Result<(), EngineError> {
        let length = u32::try_from(line.len())
            .map_err(|_| EngineError::Job("an export line longer than 4 GiB".into()))?;
        self.hash.update(line);
        self.delivered += line.len() as u64;
        self.framed += (20 + line.len()) as u64;
        self.buffer.extend_from_slice(tag);
        self.buffer.extend_from_slice(&length.to_be_bytes());
        self.buffer.extend_from_slice(line);
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

    /// Seals the last chunk and syncs the file.
    pub(super) fn finish(mut self) -> Result<WrittenFile, EngineError> {
        if !self.buffer.is_empty() || self.chunk == 0 {
            self.flush_chunk()?;
        }
        self.file
            .flush()
            .and_then(|()| self.file.get_ref().sync_all())
            .map_err(|source| EngineError::io("cannot write the export file", source))?;
        Ok(WrittenFile {
            sha256: self.hash.finish_hex(),
            delivered_bytes: self.delivered,
            framed_bytes: self.framed,
        })
    }
}

/// One row of a framed plaintext: its member's tag and its line.
pub(super) type FramedRow<'a> = ([u8; 16], &'a [u8]);

/// The rows of a framed plaintext, in order.
pub(super) fn framed_rows(plain: &[u8]) -> Result<Vec<FramedRow<'_>>, EngineError> {
    let mut rows = Vec::new();
    let mut rest = plain;
    while !rest.is_empty() {
        let malformed = || EngineError::Corrupt("export file rows".into());
        let tag: [u8; 16] = rest
            .get(..16)
            .and_then(|t| t.try_into().ok())
            .ok_or_else(malformed)?;
        let length = rest
            .get(16..20)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(malformed)? as usize;
        let line = rest.get(20..20 + length).ok_or_else(malformed)?;
        rows.push((tag, line));
        rest = &rest[20 + length..];
    }
    Ok(rows)
}

/// The plaintext of the sealed file at `path` (`expected_bytes`: its length, as written). A missing file is `NotFound`; a cut, damaged or reordered one is `Corrupt` or a
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
        for (n, part) in plain.chunks(100_000).enumerate() {
            writer.write_row(&[n as u8; 16], part).unwrap();
        }
        let written = writer.finish().unwrap();
        assert_eq!(written.delivered_bytes, plain.len() as u64);
        let mut hash = cdp_crypto::Sha256Stream::default();
        hash.update(&plain);
        assert_eq!(written.sha256, hash.finish_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let bytes = written.framed_bytes;
        let read = |path: &Path| read_sealed_file(&vault, &key, "exp_1", path, bytes);
        let framed = read(&path).unwrap();
        let rows = framed_rows(&framed).unwrap();
        assert_eq!(rows.len(), plain.chunks(100_000).len());
        assert_eq!(rows[3].0, [3u8; 16]);
        assert_eq!(
            rows.iter()
                .flat_map(|(_, l)| l.iter().copied())
                .collect::<Vec<u8>>(),
            plain
        );
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
