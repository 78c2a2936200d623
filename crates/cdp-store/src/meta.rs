//! Schema version and the store's own meta keys.

/// Meta keys under this prefix are written only by the store itself.
pub(crate) const RESERVED_PREFIX: &[u8] = b"store/";
pub(crate) const SCHEMA_KEY: &[u8] = b"store/schema_version";
pub(crate) const LAST_SEQ_KEY: &[u8] = b"store/last_seq";
pub(crate) const CREATED_KEY: &[u8] = b"store/created_unix";

/// A schema version of the on-disk layout.
pub type SchemaVersion = u32;

/// The schema this build writes. A store of a newer version is refused (no downgrade); older
/// versions are migrated at open once there is more than one.
pub const SCHEMA_VERSION: SchemaVersion = 1;
