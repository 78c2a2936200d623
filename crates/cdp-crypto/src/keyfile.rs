//! The key file format and how it is written.
//!
//! ```toml
//! format = "cdp-keyring/1"
//!
//! [[key]]
//! version = 1
//! created_at = "2026-11-22T10:00:00Z"
//! material = "<32 bytes, standard base64>"
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::KeyringError;
use crate::keyring::{KeySource, KeyVersion, Keyring, MASTER_KEY_ENV, MasterKey};

pub(crate) const FORMAT: &str = "cdp-keyring/1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileDocument {
    format: String,
    #[serde(rename = "key", default)]
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    version: u32,
    created_at: Option<String>,
    material: Zeroizing<String>,
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn decode_material(text: &str) -> Result<Zeroizing<[u8; 32]>, String> {
    let bytes = Zeroizing::new(
        BASE64
            .decode(text.trim())
            .map_err(|_| "key material is not valid base64".to_string())?,
    );
    if bytes.len() != 32 {
        return Err(format!(
            "key material must be 32 bytes, found {}",
            bytes.len()
        ));
    }
    let mut material = Zeroizing::new([0u8; 32]);
    material.copy_from_slice(&bytes);
    Ok(material)
}

/// The permission bits a secret file may not have, as PostgreSQL rules for its TLS key: a file
/// owned by anyone but root is for its owner alone (0600 or less); a file root owns may also
/// be read by its group (0640 or less), which is how a read-only mount hands a key to a
/// service that is not root (a Kubernetes secret with `fsGroup`, a container's key mounted
/// `root:cdp 0440`, `/etc/cdp/master.key` as `root:cdp 0640`), and root's own commands
/// (`cdp keys rotate`, `cdp audit verify`) read the same file. Never readable by others,
/// never group-writable.
#[cfg(unix)]
fn forbidden_bits(metadata: &fs::Metadata) -> u32 {
    use std::os::unix::fs::MetadataExt;
    forbidden_bits_for(metadata.uid())
}

/// [`forbidden_bits`] for a file owned by `file_uid`.
fn forbidden_bits_for(file_uid: u32) -> u32 {
    if file_uid == 0 { 0o037 } else { 0o077 }
}

#[cfg(test)]
mod permission_tests {
    use super::forbidden_bits_for;

    #[test]
    fn group_may_read_only_a_root_owned_key() {
        // A service's own file (or anyone's but root's): 0600 or less.
        assert_eq!(forbidden_bits_for(999), 0o077);
        assert_ne!(0o640 & forbidden_bits_for(999), 0);
        // Root's file: its group may read it (0640, 0440), nobody else, never write.
        assert_eq!(0o640 & forbidden_bits_for(0), 0);
        assert_eq!(0o440 & forbidden_bits_for(0), 0);
        assert_ne!(0o644 & forbidden_bits_for(0), 0);
        assert_ne!(0o660 & forbidden_bits_for(0), 0);
    }
}

/// Reads a secret file, refusing one that other users can read.
pub(crate) fn read_private_file(path: &Path) -> Result<Zeroizing<String>, KeyringError> {
    let read_error = |source| KeyringError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = fs::metadata(path).map_err(read_error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & forbidden_bits(&metadata) != 0 {
            return Err(KeyringError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = metadata;
    Ok(Zeroizing::new(
        fs::read_to_string(path).map_err(read_error)?,
    ))
}

pub(crate) fn load(path: &Path) -> Result<Keyring, KeyringError> {
    let text = read_private_file(path)?;
    parse_document(&text, path)
}

/// A TOML parse error of a secret file, as the file and line only: toml's Display quotes the
/// offending line, which could be key material.
pub(crate) fn parse_error(path: &Path, text: &str, error: &toml::de::Error) -> KeyringError {
    let line = error
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
        .unwrap_or(1);
    KeyringError::Parse {
        path: path.to_path_buf(),
        line,
        message: error.message().to_string(),
    }
}

fn parse_document(text: &str, path: &Path) -> Result<Keyring, KeyringError> {
    let document: KeyFileDocument =
        toml::from_str(text).map_err(|error| parse_error(path, text, &error))?;
    let invalid = |message: String| KeyringError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if document.format != FORMAT {
        return Err(invalid(format!(
            "unknown format {:?}; this build reads {FORMAT:?}",
            document.format
        )));
    }
    if document.keys.is_empty() {
        return Err(invalid("holds no [[key]] entry".to_string()));
    }
    let mut masters = BTreeMap::new();
    for entry in &document.keys {
        let version = KeyVersion::new(entry.version)
            .ok_or_else(|| invalid("key version 0 is not allowed; versions start at 1".into()))?;
        let material = decode_material(&entry.material)
            .map_err(|message| invalid(format!("key version {version}: {message}")))?;
        let master = MasterKey {
            created_at: entry.created_at.clone(),
            material,
        };
        if masters.insert(version, master).is_some() {
            return Err(invalid(format!("key version {version} appears twice")));
        }
    }
    Ok(Keyring::from_masters(
        masters,
        KeySource::File(path.to_path_buf()),
    )?)
}

pub(crate) fn parse_environment(value: &str) -> Result<Keyring, KeyringError> {
    let invalid = |message: String| KeyringError::Environment {
        variable: MASTER_KEY_ENV,
        message,
    };
    let mut masters = BTreeMap::new();
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid("is empty".into()));
    }
    let entries: Vec<&str> = value.split(',').map(str::trim).collect();
    for (index, entry) in entries.iter().enumerate() {
        let (version, material) = match entry.split_once(':') {
            Some((version, material)) => {
                let version = version
                    .parse::<u32>()
                    .ok()
                    .and_then(KeyVersion::new)
                    .ok_or_else(|| {
                        invalid(format!(
                            "entry {}: version must be a number >= 1",
                            index + 1
                        ))
                    })?;
                (version, material)
            }
            None if entries.len() == 1 => (KeyVersion::FIRST, *entry),
            None => {
                return Err(invalid(format!(
                    "entry {}: use VERSION:BASE64 when giving several keys",
                    index + 1
                )));
            }
        };
        let material = decode_material(material)
            .map_err(|message| invalid(format!("key version {version}: {message}")))?;
        let master = MasterKey {
            created_at: None,
            material,
        };
        if masters.insert(version, master).is_some() {
            return Err(invalid(format!("key version {version} appears twice")));
        }
    }
    Ok(Keyring::from_masters(masters, KeySource::Environment)?)
}

fn render(keyring: &Keyring) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::new());
    text.push_str(
        "# cdp master keyring: the key-encryption keys of one CDP installation. SECRET.\n\
         # Keep this file mode 0600 and back it up apart from the data directory: without it the\n\
         # data cannot be read. Add versions with `cdp keys rotate`; never remove a version that\n\
         # data may still be sealed with (`cdp serve` refuses to start if one is missing).\n",
    );
    text.push_str(&format!("format = \"{FORMAT}\"\n"));
    for (version, master) in keyring.masters() {
        text.push_str(&format!("\n[[key]]\nversion = {version}\n"));
        if let Some(created_at) = &master.created_at {
            text.push_str(&format!("created_at = \"{created_at}\"\n"));
        }
        let encoded = Zeroizing::new(BASE64.encode(master.material.as_ref()));
        text.push_str("material = \"");
        text.push_str(&encoded);
        text.push_str("\"\n");
    }
    text
}

fn open_private(path: &Path, create_new: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Gives the replacement of `path` the old file's owner and group, and its group-read bit:
/// `cdp keys rotate` run by root on `root:cdp 0640` (or on the service's own 0600 file) must
/// leave a file the service can still read, or the next start fails for want of its key.
#[cfg(unix)]
fn keep_owner_and_group_read(path: &Path, replacement: &File) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let old = fs::metadata(path)?;
    let new = replacement.metadata()?;
    if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
        std::os::unix::fs::fchown(replacement, Some(old.uid()), Some(old.gid()))?;
    }
    let group_read = old.mode() & 0o040;
    if group_read != 0 {
        replacement.set_permissions(fs::Permissions::from_mode(0o600 | group_read))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn keep_owner_and_group_read(_path: &Path, _replacement: &File) -> std::io::Result<()> {
    Ok(())
}

pub(crate) fn create(keyring: &Keyring, path: &Path) -> Result<(), KeyringError> {
    create_private_file(path, render(keyring).as_bytes())
}

/// Writes a new secret file with mode 0600 and syncs it; refuses to overwrite.
pub(crate) fn create_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyringError> {
    let write_error = |source| KeyringError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = open_private(path, true).map_err(|source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyringError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            write_error(source)
        }
    })?;
    file.write_all(contents).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    sync_parent(path).map_err(write_error)
}

pub(crate) fn replace(keyring: &Keyring, path: &Path) -> Result<(), KeyringError> {
    let write_error = |source| KeyringError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = Path::new(&temporary);
    let mut file = open_private(temporary, false).map_err(write_error)?;
    keep_owner_and_group_read(path, &file).map_err(write_error)?;
    let text = render(keyring);
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    drop(file);
    fs::rename(temporary, path).map_err(write_error)?;
    sync_parent(path).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_line_and_never_the_material() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=";
        let text = format!("format = \"{FORMAT}\"\n\n[[key]]\nversion = 1\nmaterial = {secret}\n");
        let error = parse_document(&text, Path::new("k.toml"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("k.toml, line 5"), "{error}");
        assert!(!error.contains("c2VjcmV0"), "{error}");
    }

    #[test]
    fn rejects_wrong_lengths_duplicates_and_formats() {
        let short = BASE64.encode([1u8; 16]);
        let good = BASE64.encode([1u8; 32]);
        let cases = [
            (
                format!("format = \"{FORMAT}\"\n[[key]]\nversion = 1\nmaterial = \"{short}\"\n"),
                "must be 32 bytes",
            ),
            (
                format!(
                    "format = \"{FORMAT}\"\n[[key]]\nversion = 1\nmaterial = \"{good}\"\n[[key]]\nversion = 1\nmaterial = \"{good}\"\n"
                ),
                "appears twice",
            ),
            (
                format!("format = \"other/9\"\n[[key]]\nversion = 1\nmaterial = \"{good}\"\n"),
                "unknown format",
            ),
            (format!("format = \"{FORMAT}\"\n"), "no [[key]]"),
            (
                format!("format = \"{FORMAT}\"\n[[key]]\nversion = 0\nmaterial = \"{good}\"\n"),
                "version 0",
            ),
            (
                format!("format = \"{FORMAT}\"\n[[key]]\nversion = 1\nmaterial = \"!!\"\n"),
                "not valid base64",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_document(&text, Path::new("k"))
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(expected),
                "{error} should contain {expected}"
            );
        }
    }

    #[test]
    fn environment_forms() {
        let a = BASE64.encode([1u8; 32]);
        let b = BASE64.encode([2u8; 32]);
        let single = parse_environment(&a).unwrap();
        assert_eq!(single.current_version(), KeyVersion::FIRST);
        let multi = parse_environment(&format!("1:{a}, 2:{b}")).unwrap();
        assert_eq!(multi.current_version().get(), 2);
        for bad in [
            "",
            "1:xx",
            &format!("{a},{b}"),
            &format!("0:{a}"),
            &format!("1:{a},1:{b}"),
        ] {
            assert!(parse_environment(bad).is_err(), "{bad}");
        }
    }
}
