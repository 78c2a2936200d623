//! Damaged store files: `serve` refuses to start, names the file and the problem, never panics.

use crate::support::{Server, temp_dir};

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

/// The LSM engine's journal damaged in its written part (fjall cuts a journal at a batch it
/// cannot read; the commit mark turns that into a refusal), then cut short.
#[test]
fn a_damaged_lsm_journal_is_refused() {
    for damage in ["flip", "cut"] {
        let dir = populated_data_dir("fjall");
        let mut journals: Vec<_> = std::fs::read_dir(dir.path().join("lsm"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "jnl"))
            .collect();
        journals.sort();
        let journal = journals.pop().expect("an LSM journal");
        let mut bytes = std::fs::read(&journal).unwrap();
        // fjall preallocates its journal: the written part ends at the last non-zero byte.
        let used = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
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
