//! Envelope encryption, keyring and blind-index properties (issue 2, item 3 and 4).

// Tests fail by panicking; helpers unwrap like the tests they serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cdp_core::{IdentifierType, ProfileId};
use cdp_crypto::{
    CryptoError, DataKey, KeySource, KeyVersion, Keyring, KeyringError, RecordAad, open, seal,
};
use proptest::prelude::*;

fn aad(id: &[u8]) -> RecordAad<'_> {
    RecordAad::new("profiles", id)
}

#[test]
fn data_key_round_trip() {
    let key = DataKey::generate().unwrap().record_key().unwrap();
    let sealed = seal(&key, aad(b"p1"), "张伟 marker@example.com".as_bytes()).unwrap();
    assert_eq!(
        open(&key, aad(b"p1"), &sealed).unwrap(),
        "张伟 marker@example.com".as_bytes()
    );
}

#[test]
fn the_cached_key_schedule_opens_what_a_fresh_one_seals_and_so_does_a_clone() {
    let dek = DataKey::generate().unwrap();
    let sealed = seal(dek.sealing_key().unwrap(), aad(b"p1"), b"x").unwrap();
    // Opened with a freshly expanded key, with the cached one twice, and with a clone's.
    assert_eq!(
        open(&dek.record_key().unwrap(), aad(b"p1"), &sealed).unwrap(),
        b"x"
    );
    assert_eq!(
        open(dek.sealing_key().unwrap(), aad(b"p1"), &sealed).unwrap(),
        b"x"
    );
    assert_eq!(
        open(dek.sealing_key().unwrap(), aad(b"p1"), &sealed).unwrap(),
        b"x"
    );
    let clone = dek.clone();
    assert_eq!(
        open(clone.sealing_key().unwrap(), aad(b"p1"), &sealed).unwrap(),
        b"x"
    );
    // Another person's key, cached or not, opens nothing of theirs.
    let other = DataKey::generate().unwrap();
    assert!(open(other.sealing_key().unwrap(), aad(b"p1"), &sealed).is_err());
}

#[test]
fn flipping_any_byte_fails() {
    let key = DataKey::generate().unwrap().record_key().unwrap();
    let sealed = seal(&key, aad(b"p1"), &[7u8; 512]).unwrap();
    for index in 0..sealed.len() {
        for bit in [0x01u8, 0x80] {
            let mut tampered = sealed.clone();
            tampered[index] ^= bit;
            assert!(
                open(&key, aad(b"p1"), &tampered).is_err(),
                "flipping bit {bit:#x} of byte {index} went unnoticed"
            );
        }
    }
    // Truncation and extension too.
    assert!(open(&key, aad(b"p1"), &sealed[..sealed.len() - 1]).is_err());
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(open(&key, aad(b"p1"), &longer).is_err());
}

#[test]
fn ciphertext_cannot_move_to_another_record_or_keyspace() {
    let key = DataKey::generate().unwrap().record_key().unwrap();
    let sealed = seal(&key, aad(b"p1"), b"secret").unwrap();
    assert!(matches!(
        open(&key, aad(b"p2"), &sealed),
        Err(CryptoError::AuthenticationFailed)
    ));
    assert!(open(&key, RecordAad::new("events", b"p1"), &sealed).is_err());
}

#[test]
fn wrong_key_fails() {
    let key = DataKey::generate().unwrap().record_key().unwrap();
    let other = DataKey::generate().unwrap().record_key().unwrap();
    let sealed = seal(&key, aad(b"p1"), b"secret").unwrap();
    assert!(matches!(
        open(&other, aad(b"p1"), &sealed),
        Err(CryptoError::AuthenticationFailed)
    ));
    // A different keyring cannot open system records or unwrap data keys either.
    let keyring = Keyring::generate().unwrap();
    let stranger = Keyring::generate().unwrap();
    let system = keyring.seal_system(aad(b"s"), b"settings").unwrap();
    assert!(stranger.open_system(aad(b"s"), &system).is_err());
    let wrapped = keyring
        .wrap_data_key(&DataKey::generate().unwrap(), b"p1")
        .unwrap();
    assert!(stranger.unwrap_data_key(&wrapped, b"p1").is_err());
}

#[test]
fn wrapped_data_key_is_bound_to_its_owner() {
    let keyring = Keyring::generate().unwrap();
    let dek = DataKey::generate().unwrap();
    let wrapped = keyring.wrap_data_key(&dek, b"p1").unwrap();
    assert!(keyring.unwrap_data_key(&wrapped, b"p2").is_err());
    let unwrapped = keyring.unwrap_data_key(&wrapped, b"p1").unwrap();
    let sealed = seal(&dek.record_key().unwrap(), aad(b"r"), b"x").unwrap();
    assert_eq!(
        open(&unwrapped.record_key().unwrap(), aad(b"r"), &sealed).unwrap(),
        b"x"
    );
}

#[test]
fn rotation_keeps_old_data_readable_and_new_writes_use_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let keyring = Keyring::generate().unwrap();
    keyring.create_file(&path).unwrap();
    let dek = DataKey::generate().unwrap();
    let wrapped_v1 = keyring.wrap_data_key(&dek, b"p1").unwrap();
    let system_v1 = keyring.seal_system(aad(b"s"), b"old").unwrap();
    assert_eq!(wrapped_v1.master_version().unwrap(), KeyVersion::FIRST);

    let mut rotated = Keyring::load_file(&path).unwrap();
    let v2 = rotated.rotate().unwrap();
    rotated.replace_file(&path).unwrap();
    let rotated = Keyring::load_file(&path).unwrap();
    assert_eq!(rotated.current_version(), v2);
    assert_eq!(rotated.versions().len(), 2);

    // Old data opens under the rotated keyring.
    assert_eq!(rotated.open_system(aad(b"s"), &system_v1).unwrap(), b"old");
    let unwrapped = rotated.unwrap_data_key(&wrapped_v1, b"p1").unwrap();
    assert_eq!(unwrapped.generation(), dek.generation());
    // New writes use version 2.
    let wrapped_v2 = rotated.wrap_data_key(&dek, b"p1").unwrap();
    assert_eq!(wrapped_v2.master_version().unwrap(), v2);
    let system_v2 = rotated.seal_system(aad(b"s"), b"new").unwrap();
    assert_eq!(cdp_crypto::sealed_key_version(&system_v2).unwrap(), v2);
    // Subkeys that name store keys stay pinned to their version across rotation.
    let pinned_before = keyring.blind_index_key(KeyVersion::FIRST).unwrap();
    let pinned_after = rotated.blind_index_key(KeyVersion::FIRST).unwrap();
    assert_eq!(
        pinned_before.index(&IdentifierType::Email, "a@b.cn"),
        pinned_after.index(&IdentifierType::Email, "a@b.cn")
    );
}

#[test]
fn a_keyring_without_the_sealing_version_says_which_is_missing() {
    let mut keyring = Keyring::generate().unwrap();
    keyring.rotate().unwrap();
    let sealed = keyring.seal_system(aad(b"s"), b"v2 data").unwrap();
    let only_v1 = Keyring::generate().unwrap();
    assert!(matches!(
        only_v1.open_system(aad(b"s"), &sealed),
        Err(CryptoError::MissingKeyVersion(2))
    ));
}

#[test]
fn destroyed_data_key_leaves_records_unopenable() {
    // The wrapped key is the only copy; once deleted, nothing in the keyring opens the record.
    let keyring = Keyring::generate().unwrap();
    let dek = DataKey::generate().unwrap();
    let mut wrapped_store = Some(keyring.wrap_data_key(&dek, b"p1").unwrap());
    let sealed = seal(
        &dek.record_key().unwrap(),
        aad(b"p1"),
        b"marker@example.com",
    )
    .unwrap();
    drop(dek);
    wrapped_store.take();
    assert!(keyring.open_system(aad(b"p1"), &sealed).is_err());
    for _ in 0..16 {
        let guess = DataKey::generate().unwrap().record_key().unwrap();
        assert!(open(&guess, aad(b"p1"), &sealed).is_err());
    }
}

#[test]
fn key_file_is_created_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let keyring = Keyring::generate().unwrap();
    keyring.create_file(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keyring::load_file(&path),
            Err(KeyringError::InsecurePermissions { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert!(matches!(
        keyring.create_file(&path),
        Err(KeyringError::AlreadyExists { .. })
    ));
    let loaded = Keyring::load_file(&path).unwrap();
    assert_eq!(loaded.source(), &KeySource::File(path.clone()));
    assert_eq!(
        loaded.key_check(KeyVersion::FIRST).unwrap(),
        keyring.key_check(KeyVersion::FIRST).unwrap()
    );
}

/// `cdp keys rotate` on a key file the service reads through its group (root:cdp 0640) must
/// leave a file the service can still read: same owner, same group, group-read kept.
#[cfg(unix)]
#[test]
fn replacing_a_key_file_keeps_its_owner_group_and_group_read() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let mut keyring = Keyring::generate().unwrap();
    keyring.create_file(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let before = std::fs::metadata(&path).unwrap();
    keyring.rotate().unwrap();
    keyring.replace_file(&path).unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(after.mode() & 0o777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    // A private file stays private.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    keyring.rotate().unwrap();
    keyring.replace_file(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn blind_index_is_deterministic_keyed_and_type_separated() {
    let keyring = Keyring::generate().unwrap();
    let key = keyring.blind_index_key(KeyVersion::FIRST).unwrap();
    let a = key.index(&IdentifierType::Email, "marker@example.com");
    assert_eq!(a, key.index(&IdentifierType::Email, "marker@example.com"));
    assert_ne!(a, key.index(&IdentifierType::UserId, "marker@example.com"));
    assert_ne!(a, key.index(&IdentifierType::Email, "marker@example.co"));
    let other = Keyring::generate()
        .unwrap()
        .blind_index_key(KeyVersion::FIRST)
        .unwrap();
    assert_ne!(a, other.index(&IdentifierType::Email, "marker@example.com"));
    // The index bytes do not contain the value.
    assert!(!a.as_bytes().windows(6).any(|w| w == b"marker"));
}

#[test]
fn subkeys_differ_by_use_and_recipient() {
    let keyring = Keyring::generate().unwrap();
    let profile = ProfileId::from_bytes([9; 16]);
    let sms = keyring.pseudonym_key(KeyVersion::FIRST, "rcp_sms").unwrap();
    let ads = keyring.pseudonym_key(KeyVersion::FIRST, "rcp_ads").unwrap();
    assert_ne!(sms.pseudonym(&profile), ads.pseudonym(&profile));
    assert_eq!(sms.pseudonym(&profile), sms.pseudonym(&profile));
    assert_eq!(sms.pseudonym(&profile).len(), 32);
    let audit = keyring.audit_key(KeyVersion::FIRST).unwrap();
    assert_ne!(audit.mac(b"entry"), audit.mac(b"entry2"));
}

proptest! {
    #[test]
    fn seal_open_round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
                            id in proptest::collection::vec(any::<u8>(), 0..64)) {
        let key = DataKey::generate().unwrap().record_key().unwrap();
        let sealed = seal(&key, aad(&id), &plaintext).unwrap();
        prop_assert_eq!(sealed.len(), plaintext.len() + cdp_crypto::SEALED_OVERHEAD);
        prop_assert_eq!(open(&key, aad(&id), &sealed).unwrap(), plaintext);
    }
}
