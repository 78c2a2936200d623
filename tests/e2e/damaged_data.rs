//! Damaged store files: `serve` refuses to start, names the file and the problem, never panics.

use crate::support::{Server, temp_dir};

fn populated_data_dir() -> tempfile::TempDir {
    let dir = temp_dir();
    // Start and stop a few times so the store holds several flushed batches.
    for _ in 0..3 {
        let server = Server::start(dir.path(), &[], &[]).unwrap();
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
    let dir = populated_data_dir();
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
    let dir = populated_data_dir();
    std::fs::write(dir.path().join("store/db"), b"").unwrap();
    assert_refused(dir.path(), &["store/db"]);
}

#[test]
fn a_corrupted_store_file_is_refused() {
    let dir = populated_data_dir();
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
    let dir = populated_data_dir();
    std::fs::write(dir.path().join("store.commit-mark"), b"garbage").unwrap();
    assert_refused(dir.path(), &["store.commit-mark"]);
}
