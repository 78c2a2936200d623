use cdp_core::ProfileId;
use ring::rand::{SecureRandom, SystemRandom};

use crate::CryptoError;

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CryptoError::RandomFailed)?;
    Ok(bytes)
}

/// A fresh profile id: 128 random bits, so ids reveal nothing (not even creation order).
pub fn random_profile_id() -> Result<ProfileId, CryptoError> {
    Ok(ProfileId::from_bytes(random_bytes()?))
}
