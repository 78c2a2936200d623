//! When to read every block of the store, and the damage report that outlives the process.
//!
//! Reading a whole store makes the engine check every block's checksum, so damage anywhere is
//! found before a request stumbles on it. At 1M profiles that read takes 47-49 s on this
//! project's machine (docs/performance.md), over the 15 s restart budget, so by default the
//! LSM backend serves first and reads everything in the background. That is safe because the
//! engine checks the checksum of every block it reads for a request too: damage is never
//! served, only found later. What the background verification adds is finding it before a
//! request does, and then: the store refuses writes, `/readyz` says so, `cdp serve` stops with
//! the damaged file named, and the report below makes every later start refuse at once until
//! the data directory is restored (or `cdp store verify` reads it clean and removes the report).

use crate::{DataDir, StoreError};
use std::io::Write as _;

/// When the store reads every block to check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// After open, beside serving (the LSM engine; sled verifies at open, as it needs the
    /// read to fill its filters before its first write).
    #[default]
    InBackground,
    /// Before open returns: a damaged store is refused before anything is served.
    AtOpen,
    /// Never (tests and benchmarks that reopen large stores).
    Off,
}

impl std::str::FromStr for Verification {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "background" => Ok(Self::InBackground),
            "at-start" => Ok(Self::AtOpen),
            "off" => Ok(Self::Off),
            other => Err(format!(
                "unknown store verification {other:?}; choose background, at-start or off"
            )),
        }
    }
}

/// Refuses to open a store whose earlier verification found damage.
pub(crate) fn refuse_if_reported(data_dir: &DataDir) -> Result<(), StoreError> {
    let path = data_dir.damage_report();
    match std::fs::read_to_string(&path) {
        Ok(problem) => Err(StoreError::Damaged {
            report: path,
            problem: problem.trim().to_string(),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StoreError::io(
            format!("cannot read the damage report {}", path.display()),
            error,
        )),
    }
}

/// Records damage found in the background, durably, for the next start. Best effort: the
/// running process refuses writes and stops either way.
pub(crate) fn write_report(data_dir: &DataDir, problem: &str) {
    let path = data_dir.damage_report();
    let written = std::fs::File::create(&path).and_then(|mut file| {
        writeln!(file, "{problem}")?;
        file.sync_all()
    });
    if let Err(error) = written {
        tracing::error!(%error, report = %path.display(), "cannot write the damage report");
    }
}

/// The problem an earlier verification recorded, if any.
pub fn damage_report(data_dir: &DataDir) -> Result<Option<String>, StoreError> {
    match refuse_if_reported(data_dir) {
        Ok(()) => Ok(None),
        Err(StoreError::Damaged { problem, .. }) => Ok(Some(problem)),
        Err(other) => Err(other),
    }
}

/// Records damage found by a verification, durably, for the next start.
pub fn record_damage(data_dir: &DataDir, problem: &str) {
    write_report(data_dir, problem);
}

/// Removes the damage report after a verification that read the whole store clean; whether
/// there was one.
pub fn clear_damage_report(data_dir: &DataDir) -> Result<bool, StoreError> {
    let path = data_dir.damage_report();
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(StoreError::io(
            format!("cannot remove the damage report {}", path.display()),
            error,
        )),
    }
}
