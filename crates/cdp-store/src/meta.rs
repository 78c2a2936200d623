//! Schema version and the store's own meta keys.

/// Meta keys under this prefix are written only by the store itself.
pub(crate) const RESERVED_PREFIX: &[u8] = b"store/";
pub(crate) const SCHEMA_KEY: &[u8] = b"store/schema_version";
pub(crate) const LAST_SEQ_KEY: &[u8] = b"store/last_seq";
pub(crate) const CREATED_KEY: &[u8] = b"store/created_unix";

/// A schema version of the on-disk layout.
pub type SchemaVersion = u32;

/// The schema this build writes. A store of a newer version is refused (no downgrade); older
/// versions are migrated at open.
///
/// 2: the plaintext inside sealed records may be MessagePack (cdp-engine `codec.rs`). Version 1
/// stores hold JSON records, which version 2 still reads, so the migration only records the
/// new number, and a build that knows only version 1 refuses the store instead of failing on
/// its records one by one.
/// 3: times in profiles and consents may be unix nanoseconds (cdp-engine `records::instant`).
/// Version 3 reads the text times of 1 and 2: again the migration only records the number.
pub const SCHEMA_VERSION: SchemaVersion = 3;

/// What an existing store's schema record says.
pub(crate) enum SchemaState {
    Current,
    /// Older than [`SCHEMA_VERSION`]: migrate (see there).
    Older(SchemaVersion),
}

/// Checks a store's schema record: newer and unreadable versions are refused.
pub(crate) fn check_schema(
    bytes: &[u8],
    path: &std::path::Path,
) -> Result<SchemaState, crate::StoreError> {
    let found = <[u8; 4]>::try_from(bytes)
        .map(u32::from_be_bytes)
        .map_err(|_| crate::StoreError::UnknownSchema {
            path: path.to_path_buf(),
        })?;
    if found > SCHEMA_VERSION {
        return Err(crate::StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    match found {
        0 => Err(crate::StoreError::UnknownSchema {
            path: path.to_path_buf(),
        }),
        SCHEMA_VERSION => Ok(SchemaState::Current),
        older => Ok(SchemaState::Older(older)),
    }
}
