use std::cell::RefCell;

use cdp_core::ProfileId;
use ring::rand::{SecureRandom, SystemRandom};

use crate::CryptoError;

/// `N` bytes from the operating system's CSPRNG. Used for keys and ids.
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

const NONCE_POOL_BYTES: usize = 4096;

/// Per-thread buffer of OS randomness that nonces are cut from: one `getrandom` call per 341
/// nonces instead of one per seal (the call cost more than the AES-GCM of a 512-byte record).
/// Nonces are public, so holding them in memory before use exposes nothing; every byte is used
/// once and the buffer is refilled from the OS, never stretched.
struct NoncePool {
    bytes: [u8; NONCE_POOL_BYTES],
    next: usize,
}

thread_local! {
    static NONCE_POOL: RefCell<NoncePool> = const {
        RefCell::new(NoncePool { bytes: [0; NONCE_POOL_BYTES], next: NONCE_POOL_BYTES })
    };
}

/// `N` random bytes that will be public (a nonce, a uniquifier in a store key), cut from the
/// per-thread pool: never for keys or ids that must stay secret or unguessable.
pub fn public_random<const N: usize>() -> Result<[u8; N], CryptoError> {
    random_nonce()
}

pub(crate) fn random_nonce<const N: usize>() -> Result<[u8; N], CryptoError> {
    NONCE_POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.next + N > NONCE_POOL_BYTES {
            SystemRandom::new()
                .fill(&mut pool.bytes)
                .map_err(|_| CryptoError::RandomFailed)?;
            pool.next = 0;
        }
        let mut nonce = [0u8; N];
        let start = pool.next;
        nonce.copy_from_slice(&pool.bytes[start..start + N]);
        // Wipe what was handed out so the same bytes can never be handed out twice.
        pool.bytes[start..start + N].fill(0);
        pool.next += N;
        Ok(nonce)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_do_not_repeat_across_refills() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5_000 {
            assert!(seen.insert(random_nonce::<12>().unwrap()));
        }
    }
}
