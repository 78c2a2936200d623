//! The embedded backends (sled, fjall) through the conformance suite (`conformance/`).

// Tests fail by panicking; helpers unwrap like the tests they serve.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod conformance;

use std::path::Path;
use std::sync::Arc;

use cdp_store::{
    DataDir, FjallStore, FjallStoreOptions, Keyspace, PostgresStore, PostgresStoreOptions,
    SledStore, SledStoreOptions, Store, StoreEngine, StoreError, StoreHealth, StoreOptions,
    Verification, WriteBatch, engine_of, open_store,
};

struct Sled;

impl conformance::Backend for Sled {
    fn open(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
        let store: Arc<dyn Store> =
            SledStore::open(&DataDir::new(dir), &SledStoreOptions::default())?;
        Ok(store)
    }

    fn poke_raw(dir: &Path, key: &[u8], value: &[u8]) {
        let db = sled::open(dir.join("store")).unwrap();
        db.insert(key, value).unwrap();
        db.flush().unwrap();
    }

    fn read_raw(dir: &Path, key: &[u8]) -> Option<Vec<u8>> {
        let db = sled::open(dir.join("store")).unwrap();
        db.get(key).unwrap().map(|v| v.to_vec())
    }

    fn main_file(dir: &Path) -> std::path::PathBuf {
        dir.join("store/db")
    }

    fn main_file_name() -> &'static str {
        "store/db"
    }
}

mod sled_store {
    use super::Sled;

    conformance_suite!(Sled);
    file_damage_suite!(Sled);
}

struct Fjall;

fn fjall_data(dir: &Path) -> (fjall::Database, fjall::Keyspace) {
    let db = fjall::Database::builder(dir.join("lsm")).open().unwrap();
    let data = db
        .keyspace("cdp", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    (db, data)
}

impl conformance::Backend for Fjall {
    /// Verifying at open, as the suite's damage checks expect a refusal from `open`; the
    /// default, verification in the background, has its own test below.
    fn open(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
        let options = FjallStoreOptions {
            verification: Verification::AtOpen,
            ..FjallStoreOptions::default()
        };
        let store: Arc<dyn Store> = FjallStore::open(&DataDir::new(dir), &options)?;
        Ok(store)
    }

    fn poke_raw(dir: &Path, key: &[u8], value: &[u8]) {
        let (db, data) = fjall_data(dir);
        data.insert(key, value).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }

    fn read_raw(dir: &Path, key: &[u8]) -> Option<Vec<u8>> {
        let (_db, data) = fjall_data(dir);
        data.get(key).unwrap().map(|v| v.to_vec())
    }

    fn main_file(dir: &Path) -> std::path::PathBuf {
        // The largest table: a clean close writes the memtable out, so the data lives in
        // tables (the journal's records are then older than the tables and skipped at open).
        // Without a table (a store that was never closed cleanly), the largest file.
        let mut files = Vec::new();
        let mut stack = vec![dir.join("lsm")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push((std::fs::metadata(&path).unwrap().len(), path));
                }
            }
        }
        files.sort();
        let is_table = |path: &Path| path.parent().is_some_and(|dir| dir.ends_with("tables"));
        match files.iter().rposition(|(_, path)| is_table(path)) {
            Some(table) => files.swap_remove(table).1,
            None => files.pop().unwrap().1,
        }
    }

    fn main_file_name() -> &'static str {
        "lsm"
    }

    /// fjall preallocates its journal: the data ends at the last non-zero byte (a table ends
    /// with its trailer, never in zeros).
    fn used_len(file: &Path) -> usize {
        let bytes = std::fs::read(file).unwrap();
        bytes
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |last| last + 1)
    }
}

mod fjall_store {
    use super::Fjall;

    conformance_suite!(Fjall);
    file_damage_suite!(Fjall);
}

/// The PostgreSQL backend against the cluster `scripts/test` starts (`CDP_TEST_POSTGRES`):
/// each test directory stands for a database of its own.
struct Postgres;

mod postgres {
    use std::path::{Path, PathBuf};

    /// The superuser URL of the test cluster; its absence fails the test with what to run.
    pub fn admin_url() -> String {
        std::env::var("CDP_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!(
                "CDP_TEST_POSTGRES is not set: these tests need PostgreSQL. Run the suite with \
                 ./scripts/test (it installs PostgreSQL if missing and starts a throw-away \
                 cluster), or set CDP_TEST_POSTGRES=postgres://USER:PASSWORD@127.0.0.1:PORT/postgres"
            )
        })
    }

    /// The URL of `database` on the test cluster.
    pub fn url_of(database: &str) -> String {
        let admin = admin_url();
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        format!("{base}/{database}")
    }

    /// Runs SQL on a database of the test cluster.
    pub fn sql(database: &str, statements: &str) {
        let url = if database == "postgres" {
            admin_url()
        } else {
            url_of(database)
        };
        runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client.batch_execute(statements).await.unwrap();
        });
    }

    pub fn query_bytes(database: &str, statement: &str, key: &[u8]) -> Option<Vec<u8>> {
        runtime().block_on(async {
            let (client, connection) =
                tokio_postgres::connect(&url_of(database), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            client
                .query_opt(statement, &[&key])
                .await
                .unwrap()
                .map(|row| row.get::<_, Vec<u8>>(0))
        })
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A database per test directory, created on first use.
    pub fn database_of(dir: &Path) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        dir.hash(&mut hasher);
        let name = format!("cdp_test_{:016x}", hasher.finish());
        let marker = dir.join(".postgres-database");
        if !marker.exists() {
            sql("postgres", &format!("CREATE DATABASE {name}"));
            std::fs::write(&marker, &name).unwrap();
        }
        name
    }

    pub fn database_oid(database: &str) -> u32 {
        runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .query_one(
                    "SELECT oid FROM pg_database WHERE datname = $1",
                    &[&database],
                )
                .await
                .unwrap()
                .get::<_, u32>(0)
        })
    }

    pub fn data_dir() -> PathBuf {
        PathBuf::from(std::env::var("CDP_TEST_POSTGRES_DATA").expect(
            "CDP_TEST_POSTGRES_DATA names the test cluster's data directory (./scripts/test sets it)",
        ))
    }
}

impl conformance::Backend for Postgres {
    fn open(dir: &Path) -> Result<Arc<dyn Store>, StoreError> {
        let database = postgres::database_of(dir);
        let store: Arc<dyn Store> =
            PostgresStore::open(&PostgresStoreOptions::new(postgres::url_of(&database)))?;
        Ok(store)
    }

    fn poke_raw(dir: &Path, key: &[u8], value: &[u8]) {
        let database = postgres::database_of(dir);
        postgres::sql(
            &database,
            "CREATE TABLE IF NOT EXISTS cdp_store (k bytea PRIMARY KEY, v bytea NOT NULL)",
        );
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        postgres::sql(
            &database,
            &format!(
                "INSERT INTO cdp_store (k, v) VALUES ('\\x{}', '\\x{}') ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                hex(key),
                hex(value)
            ),
        );
    }

    fn read_raw(dir: &Path, key: &[u8]) -> Option<Vec<u8>> {
        postgres::query_bytes(
            &postgres::database_of(dir),
            "SELECT v FROM cdp_store WHERE k = $1",
            key,
        )
    }

    /// The test database's files and the cluster's WAL, after a checkpoint wrote the tables'
    /// pages (the WAL holds every write before that).
    fn disk_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
        postgres::sql("postgres", "CHECKPOINT");
        let oid = postgres::database_oid(&postgres::database_of(dir));
        let data = postgres::data_dir();
        vec![data.join("base").join(oid.to_string()), data.join("pg_wal")]
    }

    fn main_file(_dir: &Path) -> std::path::PathBuf {
        unreachable!("PostgreSQL runs no file damage checks")
    }

    fn main_file_name() -> &'static str {
        "PostgreSQL"
    }
}

mod postgres_store {
    use super::Postgres;

    conformance_suite!(Postgres);
}

/// The default verification reads the store after open, beside serving: a store with a
/// damaged table opens, then the scan finds the damage, the store refuses writes and reports
/// `Damaged`, and every later open refuses at once, naming the report, until the report is
/// cleared; a clean store ends verified.
#[test]
fn fjall_damage_found_in_the_background_refuses_writes_and_later_opens() {
    use conformance::Backend as _;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let background = FjallStoreOptions::default();
    assert_eq!(background.verification, Verification::InBackground);
    {
        let store = FjallStore::open(&data_dir, &background).unwrap();
        conformance::write_durably(store.as_ref(), 200);
        wait_for(|| store.stats().verified, "a clean store is verified");
        store.close().unwrap();
    }
    let table = Fjall::main_file(dir.path());
    let mut bytes = std::fs::read(&table).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 4096] {
        *byte ^= 0x5a;
    }
    std::fs::write(&table, &bytes).unwrap();

    let store = FjallStore::open(&data_dir, &background).unwrap();
    wait_for(
        || matches!(store.health(), StoreHealth::Damaged(_)),
        "the background verification finds the damage",
    );
    let StoreHealth::Damaged(problem) = store.health() else {
        unreachable!()
    };
    assert!(problem.contains("lsm"), "{problem}");
    assert!(!store.stats().verified);
    let mut batch = WriteBatch::new();
    batch.put(Keyspace::Profiles, b"p".to_vec(), b"v".to_vec());
    assert!(matches!(
        store.commit(batch),
        Err(StoreError::Unavailable(message)) if message.contains("damaged")
    ));
    store.close().unwrap();
    drop(store);

    let refused = FjallStore::open(&data_dir, &background).unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, StoreError::Damaged { .. }), "{message}");
    assert!(
        message.contains("store.damaged") && message.contains("lsm"),
        "{message}"
    );
    // At open, the damage itself refuses (the report cleared, as `cdp store verify` does).
    assert!(cdp_store::clear_damage_report(&data_dir).unwrap());
    let at_open = FjallStoreOptions {
        verification: Verification::AtOpen,
        ..FjallStoreOptions::default()
    };
    let message = FjallStore::open(&data_dir, &at_open)
        .unwrap_err()
        .to_string();
    assert!(message.contains("lsm"), "{message}");
}

fn wait_for(condition: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A new directory gets the configured engine (fjall by default); an existing one is opened
/// with its own engine when none is named, and refused when the other one is.
#[test]
fn a_data_directory_keeps_its_engine() {
    for engine in [StoreEngine::Sled, StoreEngine::Fjall] {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = DataDir::new(dir.path());
        let options = |engine| StoreOptions {
            engine,
            ..StoreOptions::default()
        };
        {
            let store = open_store(&data_dir, &options(Some(engine))).unwrap();
            let mut batch = WriteBatch::new();
            batch.put(Keyspace::Profiles, b"p".to_vec(), b"v".to_vec());
            store.commit(batch).unwrap().wait_durable().unwrap();
            store.close().unwrap();
        }
        assert_eq!(engine_of(&data_dir), Some(engine));
        let store = open_store(&data_dir, &options(None)).unwrap();
        assert_eq!(
            store.get(Keyspace::Profiles, b"p").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        store.close().unwrap();
        drop(store);
        let other = match engine {
            StoreEngine::Sled => StoreEngine::Fjall,
            StoreEngine::Fjall => StoreEngine::Sled,
        };
        let error = open_store(&data_dir, &options(Some(other))).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, StoreError::OtherEngine { .. }), "{message}");
        assert!(
            message.contains(&format!("holds a {} store", engine.as_str())),
            "{message}"
        );
    }
    let fresh = tempfile::tempdir().unwrap();
    let store = open_store(&DataDir::new(fresh.path()), &StoreOptions::default()).unwrap();
    store.close().unwrap();
    assert_eq!(
        engine_of(&DataDir::new(fresh.path())),
        Some(StoreEngine::Fjall)
    );
}

/// The data directory `crash_child_writes_and_exits_without_closing` writes into.
const CRASH_CHILD_DIR: &str = "CDP_STORE_TEST_CRASH_DIR";

/// Half of `fjall_a_damaged_journal_after_a_crash_is_refused`, run by it as a child process:
/// durable writes, then an exit without closing (as a crash would leave the store: its data in
/// fjall's journal only, not yet in tables).
#[test]
#[ignore = "run by fjall_a_damaged_journal_after_a_crash_is_refused in a child process"]
fn crash_child_writes_and_exits_without_closing() {
    let dir = std::env::var_os(CRASH_CHILD_DIR).expect("the parent test names the directory");
    let store = <Fjall as conformance::Backend>::open(Path::new(&dir)).unwrap();
    conformance::write_durably(store.as_ref(), 200);
    std::process::exit(0);
}

/// fjall cuts a journal at a batch it cannot read (fjall issue #311): after a crash, when the
/// acknowledged writes live only in the journal, damage to it must be refused, naming the
/// store's files, never opened with the writes silently missing. (After a clean close the
/// data is in tables, which the conformance suite's damage tests cut and corrupt.)
/// A crashed store (its writes in fjall's journal only), made by the child test.
fn crashed_fjall_store() -> (tempfile::TempDir, std::path::PathBuf, usize) {
    use conformance::Backend as _;
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writes_and_exits_without_closing",
            "--ignored",
            "--nocapture",
        ])
        .env(CRASH_CHILD_DIR, dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "the child failed: {status}");
    let journal = std::fs::read_dir(dir.path().join("lsm"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jnl"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .expect("the crashed store has a journal");
    let used = Fjall::used_len(&journal);
    assert!(
        used > 200 * 2048,
        "the writes are in the journal ({used} bytes)"
    );
    (dir, journal, used)
}

#[test]
fn fjall_a_damaged_journal_after_a_crash_is_refused() {
    let (dir, journal, used) = crashed_fjall_store();
    conformance::cut_in_half_and_assert_refused::<Fjall>(dir.path(), &journal, used, "lsm");
}

/// Damage at many places of the journal (record headers and length fields among them: fjall
/// fails an assertion on a garbage length instead of returning an error): every open either
/// refuses, naming the store's files, or holds every acknowledged write; none panics.
#[test]
fn fjall_journal_damage_anywhere_is_refused_never_a_panic() {
    use conformance::Backend as _;
    let (dir, journal, used) = crashed_fjall_store();
    let original = std::fs::read(&journal).unwrap();
    let relative = journal.strip_prefix(dir.path()).unwrap().to_path_buf();
    let (mut refused, mut opened) = (0, 0);
    for step in 0..48usize {
        let copy = tempfile::tempdir().unwrap();
        copy_tree(dir.path(), copy.path());
        let mut bytes = original.clone();
        let at = step * used / 48;
        for byte in &mut bytes[at..(at + 8).min(used)] {
            *byte = 0xff;
        }
        std::fs::write(copy.path().join(&relative), &bytes).unwrap();
        match Fjall::open(copy.path()) {
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains("lsm"), "offset {at}: {message}");
                refused += 1;
            }
            Ok(store) => {
                for index in 0..200u32 {
                    assert!(
                        store
                            .get(Keyspace::Events, &index.to_be_bytes())
                            .unwrap()
                            .is_some(),
                        "offset {at}: opened with write {index} missing"
                    );
                }
                opened += 1;
            }
        }
    }
    eprintln!("{refused} refused, {opened} opened whole");
    assert!(refused > 0);

    // An item's value length made to disagree with its stored length: fjall's recovery
    // asserts they agree (a panic in debug builds) rather than returning an error.
    // Item header: ... key length u16 LE (5: the keyspace tag and the 4-byte key), value
    // length u32 LE (2048), stored length u32 LE (2048).
    let header = [5u8, 0, 0, 8, 0, 0, 0, 8, 0, 0];
    let at = memchr::memmem::find(&original, &header)
        .expect("an item header of the test's writes in the journal");
    let copy = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), copy.path());
    let mut bytes = original.clone();
    bytes[at + 2..at + 6].copy_from_slice(&0xffff_ff7au32.to_le_bytes());
    std::fs::write(copy.path().join(&relative), &bytes).unwrap();
    let message = Fjall::open(copy.path())
        .expect_err("a journal item with a garbage length is refused")
        .to_string();
    assert!(message.contains("lsm"), "{message}");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
