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
pub const SCHEMA_VERSION: SchemaVersion = 2;
