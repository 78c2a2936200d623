//! The conformance suite of [`Store`] backends: every implementation runs every check here
//! (`conformance_suite!` below), through the public interface, plus what only the backend can
//! do to its own files (foreign records, damage). Issue 2 items 5, 8, 9; issue 23 item 2.

use std::path::Path;
use std::sync::Arc;

use cdp_core::{IdentifierType, ProfileId};
use cdp_crypto::Keyring;
use cdp_store::{ChangeOp, DataDir, Keyspace, Store, StoreError, Vault, WriteBatch};

/// What the suite needs of a backend beyond the [`Store`] trait.
pub trait Backend {
    /// Opens (or creates) the store of the data directory `dir`.
    fn open(dir: &Path) -> Result<Arc<dyn Store>, StoreError>;
    /// Writes a raw key (keyspace tag first) behind the store's back, as another program or
    /// an older version would have: the store must be closed.
    fn poke_raw(dir: &Path, key: &[u8], value: &[u8]);
    /// Reads a raw key behind the store's back (the store must be closed).
    fn read_raw(dir: &Path, key: &[u8]) -> Option<Vec<u8>>;
    /// The directories where the backend's data lands on disk (after it made its writes
    /// reach them), for the scan for clear personal data.
    fn disk_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
        vec![dir.to_path_buf()]
    }
    /// The file that holds most of the data (damage tests cut and corrupt it).
    fn main_file(dir: &Path) -> std::path::PathBuf;
    /// How errors about that file name it.
    fn main_file_name() -> &'static str;
    /// How much of that file holds data (a journal may be preallocated: cutting or damaging
    /// its zeros tests nothing).
    fn used_len(file: &Path) -> usize {
        usize::try_from(std::fs::metadata(file).unwrap().len()).unwrap()
    }
}

/// The damage checks of a backend that keeps its own files (the embedded engines; PostgreSQL
/// checks its own files, and a database server is not cut in half under a running store).
macro_rules! file_damage_suite {
    ($backend:ty) => {
        #[test]
        fn a_truncated_store_file_is_refused_with_its_name() {
            $crate::conformance::a_truncated_store_file_is_refused_with_its_name::<$backend>();
        }
        #[test]
        fn a_corrupted_store_file_is_refused_never_served_or_panicking() {
            $crate::conformance::a_corrupted_store_file_is_refused_never_served_or_panicking::<
                $backend,
            >();
        }
        #[test]
        fn a_damaged_commit_mark_is_named() {
            $crate::conformance::a_damaged_commit_mark_is_named::<$backend>();
        }
    };
}

/// Runs every check of the suite against a backend: `conformance_suite!(Sled);`.
macro_rules! conformance_suite {
    ($backend:ty) => {
        #[test]
        fn batches_are_atomic_across_keyspaces_and_survive_reopen() {
            $crate::conformance::batches_are_atomic_across_keyspaces_and_survive_reopen::<$backend>();
        }
        #[test]
        fn the_last_operation_on_a_key_in_a_batch_wins() {
            $crate::conformance::the_last_operation_on_a_key_in_a_batch_wins::<$backend>();
        }
        #[test]
        fn reserved_keys_cannot_be_written() {
            $crate::conformance::reserved_keys_cannot_be_written::<$backend>();
        }
        #[test]
        fn change_feed_lists_each_batch_in_order_and_can_be_trimmed() {
            $crate::conformance::change_feed_lists_each_batch_in_order_and_can_be_trimmed::<$backend>();
        }
        #[test]
        fn concurrent_writers_share_flushes() {
            $crate::conformance::concurrent_writers_share_flushes::<$backend>();
        }
        #[test]
        fn a_second_process_cannot_open_the_same_directory() {
            $crate::conformance::a_second_process_cannot_open_the_same_directory::<$backend>();
        }
        #[test]
        fn newer_unknown_and_foreign_stores_are_refused() {
            $crate::conformance::newer_unknown_and_foreign_stores_are_refused::<$backend>();
        }
        #[test]
        fn an_older_schema_is_migrated_at_open() {
            $crate::conformance::an_older_schema_is_migrated_at_open::<$backend>();
        }
        #[test]
        fn vault_refuses_a_keyring_missing_a_version_or_holding_another_key() {
            $crate::conformance::vault_refuses_a_keyring_missing_a_version_or_holding_another_key::<$backend>();
        }
        #[test]
        fn person_records_are_sealed_and_shredded_with_their_key() {
            $crate::conformance::person_records_are_sealed_and_shredded_with_their_key::<$backend>();
        }
        #[test]
        fn no_personal_data_in_clear_on_disk() {
            $crate::conformance::no_personal_data_in_clear_on_disk::<$backend>();
        }
        #[test]
        fn a_cursor_reads_ascending_selections_like_lookups_and_scans() {
            $crate::conformance::a_cursor_reads_ascending_selections_like_lookups_and_scans::<$backend>();
        }
    };
}

pub fn batches_are_atomic_across_keyspaces_and_survive_reopen<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = B::open(dir.path()).unwrap();
        let mut batch = WriteBatch::new();
        batch
            .put(Keyspace::Profiles, b"p1".to_vec(), b"profile".to_vec())
            .put(Keyspace::Identifiers, b"bi1".to_vec(), b"p1".to_vec())
            .put(Keyspace::Events, b"p1/0001".to_vec(), b"event".to_vec());
        store.commit(batch).unwrap().wait_durable().unwrap();
        // An invalid batch is refused whole: nothing of it is written.
        let mut bad = WriteBatch::new();
        bad.put(Keyspace::Profiles, b"p2".to_vec(), b"x".to_vec())
            .put(Keyspace::Events, vec![b'k'; 600], b"too long key".to_vec());
        assert!(matches!(store.commit(bad), Err(StoreError::Limit { .. })));
        assert_eq!(store.get(Keyspace::Profiles, b"p2").unwrap(), None);
        store.close().unwrap();
    }
    let store = B::open(dir.path()).unwrap();
    assert_eq!(
        store.get(Keyspace::Profiles, b"p1").unwrap().as_deref(),
        Some(&b"profile"[..])
    );
    assert_eq!(
        store.get(Keyspace::Identifiers, b"bi1").unwrap().as_deref(),
        Some(&b"p1"[..])
    );
    // Keyspaces are separate: the same key in another keyspace is absent.
    assert_eq!(store.get(Keyspace::Consents, b"p1").unwrap(), None);
    // Several keys at once answer as one at a time, in the order asked, a key asked twice
    // twice, a batch not yet applied included.
    let mut later = WriteBatch::new();
    later.put(Keyspace::Identifiers, b"bi2".to_vec(), b"p2".to_vec());
    let ticket = store.commit(later).unwrap();
    assert_eq!(
        store
            .get_many(
                Keyspace::Identifiers,
                &[b"bi2".as_slice(), b"none", b"bi1", b"bi2"]
            )
            .unwrap(),
        vec![
            Some(b"p2".to_vec()),
            None,
            Some(b"p1".to_vec()),
            Some(b"p2".to_vec())
        ]
    );
    ticket.wait_durable().unwrap();
    let events: Vec<_> = store
        .scan_prefix(Keyspace::Events, b"p1/")
        .map(Result::unwrap)
        .collect();
    assert_eq!(events, vec![(b"p1/0001".to_vec(), b"event".to_vec())]);
    assert_eq!(store.stats().last_seq, 2);
}

/// A batch may name a key more than once, its operations in any key order: the last one on
/// each key is what the store holds, before the batch is applied and after a reopen.
pub fn the_last_operation_on_a_key_in_a_batch_wins<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let expected: [(&[u8], Option<&[u8]>); 4] = [
        (b"a", Some(b"second")),
        (b"b", None),
        (b"c", Some(b"again")),
        (b"z", Some(b"only")),
    ];
    let check = |store: &dyn Store| {
        for (key, value) in expected {
            let found = store.get(Keyspace::Exports, key).unwrap();
            assert_eq!(
                found.as_deref(),
                value,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    };
    {
        let store = B::open(dir.path()).unwrap();
        let mut batch = WriteBatch::with_capacity(7);
        batch
            .put(Keyspace::Exports, b"z".to_vec(), b"only".to_vec())
            .put(Keyspace::Exports, b"a".to_vec(), b"first".to_vec())
            .put(Keyspace::Exports, b"b".to_vec(), b"gone".to_vec())
            .delete(Keyspace::Exports, b"c".to_vec())
            .put(Keyspace::Exports, b"a".to_vec(), b"second".to_vec())
            .delete(Keyspace::Exports, b"b".to_vec())
            .put(Keyspace::Exports, b"c".to_vec(), b"again".to_vec());
        let ticket = store.commit(batch).unwrap();
        check(store.as_ref());
        ticket.wait_durable().unwrap();
        let listed: Vec<Vec<u8>> = (store.scan_prefix(Keyspace::Exports, b""))
            .map(|entry| entry.unwrap().0)
            .collect();
        assert_eq!(listed, vec![b"a".to_vec(), b"c".to_vec(), b"z".to_vec()]);
        store.close().unwrap();
    }
    check(B::open(dir.path()).unwrap().as_ref());
}

pub fn reserved_keys_cannot_be_written<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open(dir.path()).unwrap();
    let mut batch = WriteBatch::new();
    batch.put(Keyspace::Changes, b"x".to_vec(), b"y".to_vec());
    assert!(matches!(store.commit(batch), Err(StoreError::Reserved(_))));
    let mut batch = WriteBatch::new();
    batch.put(Keyspace::Meta, b"store/last_seq".to_vec(), b"y".to_vec());
    assert!(matches!(store.commit(batch), Err(StoreError::Reserved(_))));
}

pub fn change_feed_lists_each_batch_in_order_and_can_be_trimmed<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open(dir.path()).unwrap();
    let mut receiver = store.subscribe_durable();
    for index in 0..5u8 {
        let mut batch = WriteBatch::new();
        batch.put(Keyspace::Profiles, vec![b'p', index], b"v".to_vec());
        // Followed keyspaces only: the event is not in the feed, the key deletion is.
        batch.put(Keyspace::Events, vec![b'e', index], b"event".to_vec());
        if index == 4 {
            batch.delete(Keyspace::Keys, b"gone".to_vec());
        }
        store.commit(batch).unwrap().wait_durable().unwrap();
    }
    assert_eq!(*receiver.borrow_and_update(), 5);
    let changes = store.changes_after(2, 100).unwrap();
    assert_eq!(
        changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(
        changes[0].keys,
        vec![(Keyspace::Profiles, ChangeOp::Put, vec![b'p', 2])]
    );
    assert_eq!(
        changes[2].keys[1],
        (Keyspace::Keys, ChangeOp::Delete, b"gone".to_vec())
    );
    assert_eq!(
        changes[2].keys.len(),
        2,
        "the event write is not in the feed"
    );
    assert_eq!(store.changes_after(0, 2).unwrap().len(), 2);
    store.trim_changes(4).unwrap();
    assert_eq!(
        store
            .changes_after(4, 100)
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect::<Vec<_>>(),
        vec![5]
    );
    // A follower behind the trimmed entries is told, never handed the rest as if whole.
    let error = store.changes_after(2, 100).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::FeedTrimmed {
                after: 2,
                trimmed: 4
            }
        ),
        "{error}"
    );
}

pub fn concurrent_writers_share_flushes<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let writers = 200u32;
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for index in 0..writers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut batch = WriteBatch::new();
                batch.put(
                    Keyspace::Events,
                    index.to_be_bytes().to_vec(),
                    vec![0u8; 512],
                );
                store.commit(batch).unwrap().durable().await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let stats = store.stats();
    assert_eq!(stats.commits, u64::from(writers));
    assert_eq!(stats.durable_seq, u64::from(writers));
    // Group commit: far fewer flushes than acknowledged writes.
    assert!(stats.flushes < u64::from(writers) / 2, "{stats:?}");
}

pub fn a_second_process_cannot_open_the_same_directory<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let _store = B::open(dir.path()).unwrap();
    let error = B::open(dir.path()).unwrap_err();
    assert!(
        matches!(error, StoreError::InUse { .. })
            || error
                .to_string()
                .contains("another process writes this database"),
        "{error}"
    );
}

pub fn newer_unknown_and_foreign_stores_are_refused<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    B::open(dir.path()).unwrap().close().unwrap();
    let mut schema_key = vec![Keyspace::Meta.tag()];
    schema_key.extend_from_slice(b"store/schema_version");
    B::poke_raw(dir.path(), &schema_key, &99u32.to_be_bytes());
    let error = B::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NewerSchema {
                found: 99,
                supported: cdp_store::SCHEMA_VERSION,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("upgrade cdp"));

    B::poke_raw(dir.path(), &schema_key, b"garbage!");
    assert!(matches!(
        B::open(dir.path()).unwrap_err(),
        StoreError::UnknownSchema { .. }
    ));

    let foreign = tempfile::tempdir().unwrap();
    B::poke_raw(foreign.path(), b"somebody else's data", b"1");
    assert!(matches!(
        B::open(foreign.path()).unwrap_err(),
        StoreError::NotACdpStore { .. }
    ));
}

/// A version 1 store (JSON records) and a version 2 one (text times) open and are recorded as
/// the current version, their data intact; a build that knows only an older version would now
/// refuse the store rather than misread it.
pub fn an_older_schema_is_migrated_at_open<B: Backend>() {
    assert_eq!(cdp_store::SCHEMA_VERSION, 3);
    for older in [1u32, 2] {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = B::open(dir.path()).unwrap();
            let mut batch = WriteBatch::new();
            batch.put(Keyspace::Profiles, b"p1".to_vec(), b"{\"json\":1}".to_vec());
            store.commit(batch).unwrap().wait_durable().unwrap();
            store.close().unwrap();
        }
        let mut schema_key = vec![Keyspace::Meta.tag()];
        schema_key.extend_from_slice(b"store/schema_version");
        B::poke_raw(dir.path(), &schema_key, &older.to_be_bytes());
        {
            let store = B::open(dir.path()).unwrap();
            assert_eq!(
                store.get(Keyspace::Profiles, b"p1").unwrap().as_deref(),
                Some(&b"{\"json\":1}"[..])
            );
            store.close().unwrap();
        }
        assert_eq!(
            B::read_raw(dir.path(), &schema_key).as_deref(),
            Some(&cdp_store::SCHEMA_VERSION.to_be_bytes()[..]),
            "from version {older}"
        );
    }
}

fn write_some<B: Backend>(dir: &Path, batches: u32) {
    let store = B::open(dir).unwrap();
    write_durably(store.as_ref(), batches);
    store.close().unwrap();
}

/// `batches` durable batches of one 2 KB event each (keys 0, 1, ...).
pub fn write_durably(store: &dyn Store, batches: u32) {
    for index in 0..batches {
        let mut batch = WriteBatch::new();
        batch.put(
            Keyspace::Events,
            index.to_be_bytes().to_vec(),
            vec![7u8; 2048],
        );
        store.commit(batch).unwrap().wait_durable().unwrap();
    }
}

pub fn a_truncated_store_file_is_refused_with_its_name<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    write_some::<B>(dir.path(), 200);
    let file = B::main_file(dir.path());
    let name = B::main_file_name();
    cut_in_half_and_assert_refused::<B>(dir.path(), &file, B::used_len(&file), name);
}

/// Cuts `file` to half of its `used` bytes; opening the store must then refuse, naming `name`.
pub fn cut_in_half_and_assert_refused<B: Backend>(
    dir: &Path,
    file: &Path,
    used: usize,
    name: &str,
) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(used as u64 / 2)
        .unwrap();
    let error = B::open(dir).unwrap_err();
    eprintln!("truncated: {error}");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            StoreError::LostWrites { .. } | StoreError::Corrupt { .. }
        ),
        "{message}"
    );
    assert!(message.contains(name), "{message}");
}

pub fn a_corrupted_store_file_is_refused_never_served_or_panicking<B: Backend>() {
    for (label, start_fraction) in [("middle", 2usize), ("tail", 1)] {
        let dir = tempfile::tempdir().unwrap();
        write_some::<B>(dir.path(), 200);
        let file = B::main_file(dir.path());
        let mut bytes = std::fs::read(&file).unwrap();
        let used = B::used_len(&file);
        let start = used - used / (start_fraction * 2);
        for byte in &mut bytes[start..start + 4096] {
            *byte ^= 0x5a;
        }
        std::fs::write(&file, &bytes).unwrap();
        match B::open(dir.path()) {
            Err(error) => {
                eprintln!("{label}: refused: {error}");
                assert!(
                    error.to_string().contains(B::main_file_name()),
                    "{label}: {error}"
                );
            }
            // An engine may recover past damage in data it had rewritten; then every write must
            // be there.
            Ok(store) => {
                eprintln!("{label}: opened");
                for index in 0..200u32 {
                    assert!(
                        store
                            .get(Keyspace::Events, &index.to_be_bytes())
                            .unwrap()
                            .is_some(),
                        "{label}: opened with write {index} missing"
                    );
                }
            }
        }
    }
}

pub fn a_damaged_commit_mark_is_named<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    write_some::<B>(dir.path(), 3);
    std::fs::write(dir.path().join("store.commit-mark"), b"nonsense").unwrap();
    let message = B::open(dir.path()).unwrap_err().to_string();
    assert!(message.contains("store.commit-mark"), "{message}");
}

pub fn vault_refuses_a_keyring_missing_a_version_or_holding_another_key<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let mut keyring = Keyring::generate().unwrap();
    {
        let store: Arc<dyn Store> = B::open(dir.path()).unwrap();
        Vault::open(
            store,
            Arc::new(Keyring::from_environment_value(&export(&keyring)).unwrap()),
            &data_dir,
        )
        .unwrap();
    }
    let v1_only = export(&keyring);
    keyring.rotate().unwrap();
    {
        let store: Arc<dyn Store> = B::open(dir.path()).unwrap();
        Vault::open(
            store,
            Arc::new(Keyring::from_environment_value(&export(&keyring)).unwrap()),
            &data_dir,
        )
        .unwrap();
    }
    // Only version 1 now: version 2 was recorded as in use.
    let key_path = dir.path().join("v1-only.key");
    Keyring::from_environment_value(&v1_only)
        .unwrap()
        .create_file(&key_path)
        .unwrap();
    let store: Arc<dyn Store> = B::open(dir.path()).unwrap();
    let error = Vault::open(
        store.clone(),
        Arc::new(Keyring::load_file(&key_path).unwrap()),
        &data_dir,
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, StoreError::MissingKeyVersion { version: 2, .. }),
        "{message}"
    );
    assert!(message.contains("v1-only.key"), "{message}");
    // A different key under the same version numbers.
    let mut impostor = Keyring::generate().unwrap();
    impostor.rotate().unwrap();
    let error = Vault::open(store, Arc::new(impostor), &data_dir).unwrap_err();
    assert!(matches!(error, StoreError::WrongKey { .. }), "{error}");
}

/// Test helper: the keyring as a `CDP_MASTER_KEY` value.
fn export(keyring: &Keyring) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    keyring.create_file(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut entries = Vec::new();
    let mut version = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("version = ") {
            version = v.to_string();
        }
        if let Some(m) = line.strip_prefix("material = ") {
            entries.push(format!("{version}:{}", m.trim_matches('"')));
        }
    }
    entries.join(",")
}

pub fn person_records_are_sealed_and_shredded_with_their_key<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let store: Arc<dyn Store> = B::open(dir.path()).unwrap();
    let vault = Vault::open(
        store.clone(),
        Arc::new(Keyring::generate().unwrap()),
        &data_dir,
    )
    .unwrap();
    let profile = cdp_crypto::random_profile_id().unwrap();
    let mut batch = WriteBatch::new();
    let key = vault.create_person_key(&profile, &mut batch).unwrap();
    let sealed = vault
        .seal_person(
            &key,
            Keyspace::Profiles,
            profile.as_bytes(),
            b"{\"name\":\"x\"}",
        )
        .unwrap();
    batch.put(Keyspace::Profiles, profile.as_bytes().to_vec(), sealed);
    store.commit(batch).unwrap().wait_durable().unwrap();

    let key = vault.person_key(&profile).unwrap().unwrap();
    let stored = store
        .get(Keyspace::Profiles, profile.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(
        vault
            .open_person(&key, Keyspace::Profiles, profile.as_bytes(), &stored)
            .unwrap(),
        b"{\"name\":\"x\"}"
    );
    // Not openable as another person's record.
    let other = ProfileId::from_bytes([1; 16]);
    assert!(
        vault
            .open_person(&key, Keyspace::Profiles, other.as_bytes(), &stored)
            .is_err()
    );

    let mut shred = WriteBatch::new();
    vault.destroy_person_key(&profile, &mut shred);
    store.commit(shred).unwrap().wait_durable().unwrap();
    assert!(vault.person_key(&profile).unwrap().is_none());
}

fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
    text.encode_utf16()
        .flat_map(|unit| {
            if big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            }
        })
        .collect()
}

/// Scans every file under `dir` for the markers in UTF-8 and UTF-16 (both byte orders);
/// returns the bytes scanned.
fn assert_files_hold_no_marker(dir: &Path, markers: &[&str]) -> usize {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    assert!(files.len() >= 3, "{files:?}");
    let mut scanned = 0;
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        scanned += bytes.len();
        for marker in markers {
            for needle in [
                marker.as_bytes().to_vec(),
                utf16(marker, false),
                utf16(marker, true),
            ] {
                assert!(
                    memchr::memmem::find(&bytes, &needle).is_none(),
                    "{} holds a marker in clear",
                    file.display()
                );
            }
        }
    }
    scanned
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Invariant 1: no personal data in clear on disk.
pub fn no_personal_data_in_clear_on_disk<B: Backend>() {
    let markers = ["zz.marker.4711@example.com", "+8613812344711", "欧阳娜娜"];
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    {
        let store: Arc<dyn Store> = B::open(dir.path()).unwrap();
        let vault = Vault::open(
            store.clone(),
            Arc::new(Keyring::generate().unwrap()),
            &data_dir,
        )
        .unwrap();
        for index in 0..50u32 {
            let profile = cdp_crypto::random_profile_id().unwrap();
            let mut batch = WriteBatch::new();
            let key = vault.create_person_key(&profile, &mut batch).unwrap();
            let record = format!(
                "{{\"email\":\"{}\",\"phone\":\"{}\",\"name\":\"{}\",\"n\":{index}}}",
                markers[0], markers[1], markers[2]
            );
            let sealed = vault
                .seal_person(
                    &key,
                    Keyspace::Profiles,
                    profile.as_bytes(),
                    record.as_bytes(),
                )
                .unwrap();
            batch.put(Keyspace::Profiles, profile.as_bytes().to_vec(), sealed);
            for (kind, value) in [
                (IdentifierType::Email, markers[0]),
                (IdentifierType::Phone, markers[1]),
            ] {
                let index = vault.blind_index(&kind, value);
                batch.put(
                    Keyspace::Identifiers,
                    index.as_bytes().to_vec(),
                    profile.as_bytes().to_vec(),
                );
            }
            let event = vault
                .seal_person(&key, Keyspace::Events, b"e", record.as_bytes())
                .unwrap();
            batch.put(
                Keyspace::Events,
                [profile.as_bytes().as_slice(), b"/e"].concat(),
                event,
            );
            store.commit(batch).unwrap().wait_durable().unwrap();
        }
        store.flush().unwrap();
        // While the store is open its journal holds the batches (emptied or compacted later).
        for disk in B::disk_dirs(dir.path()) {
            assert_files_hold_no_marker(&disk, &markers);
        }
    }
    let scanned: usize = B::disk_dirs(dir.path())
        .iter()
        .map(|disk| assert_files_hold_no_marker(disk, &markers))
        .sum();
    assert!(
        scanned > 50 * 200,
        "only {scanned} bytes on disk: did the writes land?"
    );
}

/// A cursor answers like point lookups and prefix scans for any ascending selection: dense,
/// sparse (it seeks), keys that are absent, and neighbouring keyspaces that must not leak in.
pub fn a_cursor_reads_ascending_selections_like_lookups_and_scans<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open(dir.path()).unwrap();
    let mut batch = WriteBatch::new();
    // Profiles with even numbers exist; each has 0-2 consent records; one key in the next
    // keyspace right after the last profile.
    for n in (0u32..400).step_by(2) {
        let id = n.to_be_bytes();
        batch.put(
            Keyspace::Profiles,
            id.to_vec(),
            format!("profile {n}").into_bytes(),
        );
        for c in 0..(n % 3) {
            let mut key = id.to_vec();
            key.push(u8::try_from(c).unwrap());
            batch.put(
                Keyspace::Consents,
                key,
                format!("consent {n}/{c}").into_bytes(),
            );
        }
    }
    batch.put(
        Keyspace::Events,
        0u32.to_be_bytes().to_vec(),
        b"event".to_vec(),
    );
    store.commit(batch).unwrap().wait_durable().unwrap();

    let mut seed = 7u64;
    for stride in [1u32, 2, 3, 17, 60] {
        let wanted: Vec<u32> = (0..420)
            .filter(|n| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                n % stride == 0 || (seed >> 60) == 0
            })
            .collect();
        let mut profiles = cdp_store::Cursor::new(store.as_ref(), Keyspace::Profiles);
        let mut consents = cdp_store::Cursor::new(store.as_ref(), Keyspace::Consents);
        for n in wanted {
            let id = n.to_be_bytes();
            assert_eq!(
                profiles.get(&id).unwrap(),
                store.get(Keyspace::Profiles, &id).unwrap(),
                "profile {n} with stride {stride}"
            );
            let scanned: Vec<_> = store
                .scan_prefix(Keyspace::Consents, &id)
                .map(Result::unwrap)
                .collect();
            assert_eq!(consents.prefix(&id).unwrap(), scanned, "consents {n}");
        }
    }
}
