//! Damaged store files: `serve` refuses to start, names the file and the problem, never panics.

use serde_json::json;

use std::time::Duration;

use crate::support::{Server, cdp, run, temp_dir, text};

/// A data directory of `engine` that was started and stopped a few times, so that the store
/// holds several flushed batches.
fn populated_data_dir(engine: &str) -> tempfile::TempDir {
    let dir = temp_dir();
    for _ in 0..3 {
        let server = Server::start(dir.path(), &["--store-engine", engine], &[]).unwrap();
        assert!(server.stop_with("TERM").0.success());
    }
    dir
}

fn assert_refused(dir: &std::path::Path, expected: &[&str]) {
    let message = Server::start(dir, &[], &[])
        .err()
        .expect("serve must refuse damaged data");
    for needle in expected {
        assert!(
            message.contains(needle),
            "expected {needle:?} in:\n{message}"
        );
    }
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn a_truncated_store_file_is_refused() {
    let dir = populated_data_dir("sled");
    let file = dir.path().join("store/db");
    // The records sit at the start of sled's first 512 KiB segment: cut into them.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(60)
        .unwrap();
    assert_refused(dir.path(), &["store/db", "restore the data directory"]);
}

#[test]
fn an_emptied_store_file_is_refused() {
    let dir = populated_data_dir("sled");
    std::fs::write(dir.path().join("store/db"), b"").unwrap();
    assert_refused(dir.path(), &["store/db"]);
}

#[test]
fn a_corrupted_store_file_is_refused() {
    let dir = populated_data_dir("sled");
    let file = dir.path().join("store/db");
    let mut bytes = std::fs::read(&file).unwrap();
    // Damage live records (past the segment header), not the zeroed free space.
    for byte in &mut bytes[40..72] {
        *byte = !*byte;
    }
    std::fs::write(&file, bytes).unwrap();
    assert_refused(dir.path(), &["store/db"]);
}

#[test]
fn a_damaged_commit_mark_is_refused() {
    let dir = populated_data_dir("fjall");
    std::fs::write(dir.path().join("store.commit-mark"), b"garbage").unwrap();
    assert_refused(dir.path(), &["store.commit-mark"]);
}

/// A data directory of the LSM engine whose acknowledged writes live only in fjall's journal:
/// the server was killed, so its memtable was never written out as a table (a clean stop
/// does that, and then the journal holds nothing the tables lack).
fn crashed_lsm_data_dir() -> tempfile::TempDir {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &["--store-engine", "fjall"], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "web", "web");
    for batch in 0..20 {
        let messages: Vec<_> = (0..10)
            .map(|i| json!({"type": "track", "userId": format!("journal-{batch}"), "event": "Beat", "messageId": format!("j-{batch}-{i}")}))
            .collect();
        let response = server.ingest("/v1/batch", &key, &json!({ "batch": messages }));
        assert_eq!(response.status, 200, "{}", response.text());
    }
    server.kill();
    dir
}

/// The written part of fjall's largest journal (it preallocates: the data ends at the last
/// non-zero byte).
fn lsm_journal(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>, usize) {
    let journal = std::fs::read_dir(dir.join("lsm"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jnl"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .expect("an LSM journal");
    let bytes = std::fs::read(&journal).unwrap();
    let used = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    (journal, bytes, used)
}

/// The LSM engine's journal damaged in its written part after a crash (fjall cuts a journal at
/// a batch it cannot read, issue #311; the commit mark turns that into a refusal), then cut
/// short.
#[test]
fn a_damaged_lsm_journal_is_refused() {
    for damage in ["flip", "cut"] {
        let dir = crashed_lsm_data_dir();
        let (journal, mut bytes, used) = lsm_journal(dir.path());
        match damage {
            "flip" => {
                for byte in &mut bytes[used / 2..used / 2 + 16] {
                    *byte = !*byte;
                }
            }
            _ => bytes.truncate(used / 2),
        }
        std::fs::write(&journal, bytes).unwrap();
        assert_refused(dir.path(), &["lsm"]);
    }
}

/// Flips bytes in the middle of the largest LSM table of a cleanly stopped data directory
/// (after a clean stop the data lives in tables).
fn damage_largest_lsm_table(dir: &std::path::Path) {
    let mut tables: Vec<_> = std::fs::read_dir(dir.join("lsm/keyspaces"))
        .unwrap()
        .flat_map(|keyspace| std::fs::read_dir(keyspace.unwrap().path().join("tables")))
        .flatten()
        .map(|entry| entry.unwrap().path())
        .collect();
    tables.sort_by_key(|path| std::fs::metadata(path).unwrap().len());
    let table = tables
        .pop()
        .expect("a clean stop leaves the data in an LSM table");
    let mut bytes = std::fs::read(&table).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 16] {
        *byte = !*byte;
    }
    std::fs::write(&table, bytes).unwrap();
}

/// A damaged LSM table is found by the verification the server runs beside serving (by
/// default, so that a large store is ready in seconds): the server stops with an error naming
/// the store's files, records the damage, and every later start refuses at once. `cdp store
/// verify` finds it again and keeps the record.
#[test]
fn a_damaged_lsm_table_is_found_by_the_background_verification_and_refused() {
    // Enough data that the damaged middle of the table is not a block the start reads.
    let dir = temp_dir();
    let server = Server::start(dir.path(), &["--store-engine", "fjall"], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "web", "web");
    for batch in 0..30 {
        let messages: Vec<_> = (0..100)
            .map(|i| json!({"type": "track", "userId": format!("table-{batch}-{i}"), "event": "Product Viewed", "properties": {"sku": format!("sku-{i}")}, "messageId": format!("t-{batch}-{i}")}))
            .collect();
        let response = server.ingest("/v1/batch", &key, &json!({ "batch": messages }));
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert!(server.stop_with("TERM").0.success());
    damage_largest_lsm_table(dir.path());
    match Server::start(dir.path(), &[], &[]) {
        // A small store may be read through before the server listens.
        Err(message) => panic!("the damage was found before serving:\n{message}"),
        Ok(server) => {
            let (status, logs) = server.wait_exit(Duration::from_secs(30));
            assert!(!status.success(), "{logs}");
            assert!(
                logs.contains("lsm") && logs.contains("store.damaged"),
                "{logs}"
            );
            assert!(!logs.contains("panicked"), "{logs}");
        }
    }
    assert!(dir.path().join("store.damaged").exists());
    assert_refused(dir.path(), &["lsm", "store.damaged", "cdp store verify"]);
    let output = run(cdp()
        .args(["store", "verify", "--data-dir"])
        .arg(dir.path()));
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("lsm"), "{stderr}");
    assert!(
        dir.path().join("store.damaged").exists(),
        "the record stays"
    );
}

/// With `--store-verify at-start` the damage refuses the start itself, before serving.
#[test]
fn a_damaged_lsm_table_is_refused_at_start_when_verifying_there() {
    let dir = populated_data_dir("fjall");
    damage_largest_lsm_table(dir.path());
    let message = Server::start(dir.path(), &["--store-verify", "at-start"], &[])
        .err()
        .expect("serve must refuse damaged data");
    assert!(message.contains("lsm"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
}

/// A damage report over a store that reads clean (a restored disk, a transient read error):
/// `serve` refuses until `cdp store verify` has read the store and removed the report.
#[test]
fn store_verify_clears_the_report_of_a_store_that_reads_clean() {
    let dir = populated_data_dir("fjall");
    std::fs::write(
        dir.path().join("store.damaged"),
        "store file lsm is damaged: checksum mismatch\n",
    )
    .unwrap();
    assert_refused(dir.path(), &["store.damaged", "checksum mismatch"]);
    let output = run(cdp()
        .args(["store", "verify", "--data-dir"])
        .arg(dir.path()));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.contains("every block read and sound")
            && stdout.contains("removed the damage report"),
        "{stdout}"
    );
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    assert!(server.stop_with("TERM").0.success());
}
