//! Domain types shared by every layer of the CDP.
//!
//! This crate does no I/O and holds no secrets, so it cannot fail in surprising ways. It owns
//! the vocabulary: profile ids, identifier types, channels, Segment-spec messages ([`segment`])
//! and the [`Personal`] wrapper that keeps personal values out of logs and error messages.

mod channel;
pub mod hex;
mod identifier;
mod personal;
mod profile_id;
pub mod segment;

pub use channel::Channel;
pub use identifier::{IdentifierType, UnknownIdentifierType};
pub use personal::Personal;
pub use profile_id::{ProfileId, ProfileIdError};
