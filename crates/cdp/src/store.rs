//! `cdp store stats`: entries and bytes per keyspace of a data directory's store (sealed bytes,
//! no key needed, names no one).
//! `cdp store copy`: moves a data directory's store to another engine (offline: the server
//! must be stopped; the source's lock refuses otherwise). The sealed bytes are copied as they
//! are, so no key is needed; the keys and sealed export files of the data directory go along,
//! the search index is rebuilt by the first start.
//! `cdp store verify`: reads every block of the store (offline), checking its checksum; clears
//! the damage report of an earlier verification when the store reads clean.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cdp_store::{
    DataDir, StoreEngine, StoreError, StoreOptions, Verification, copy_store, engine_of,
    open_store, store_summary,
};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a whole store into a new data directory (on another engine, default fjall) or
    /// into an empty PostgreSQL database. The password of a `postgres://` URL comes from
    /// CDP_STORE_PASSWORD_FILE when the URL has none.
    Copy {
        /// The data directory or `postgres://` URL to copy (its servers stopped).
        #[arg(long)]
        from: String,
        /// A new data directory (nothing in it yet), or a `postgres://` URL of an empty database.
        #[arg(long)]
        to: String,
        /// The engine of a data directory copy: fjall or sled.
        #[arg(long, default_value = "fjall")]
        engine: StoreEngine,
        /// With a PostgreSQL target: the data directory the servers on it will use; the key
        /// and export files of the source directory are copied there (it must hold no store).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Entries and bytes per keyspace, and the files' size on disk (the server must be
    /// stopped). Reads sealed bytes only: no key is needed and nothing personal is shown.
    Stats {
        /// The data directory (default ./data).
        #[arg(long, env = "CDP_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read every block of the store and check its checksum (the server must be stopped). A
    /// store that reads clean loses the damage report of an earlier verification, so that
    /// `serve` starts again; damage is named and recorded.
    Verify {
        /// The data directory (default ./data).
        #[arg(long, env = "CDP_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
    },
}

pub fn run(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Copy {
            from,
            to,
            engine,
            data_dir,
        } => copy(&from, &to, engine, data_dir.as_deref()),
        StoreCommand::Stats { data_dir, json } => stats(&data_dir, json),
        StoreCommand::Verify { data_dir } => verify(&data_dir),
    }
}

/// The store of `data_dir` on `engine` (with the default options: verified at open).
/// Opens a store for a command that reads all of it anyway (the engine checks every block
/// it reads), so no verification runs beside it.
fn open_on(
    data_dir: &DataDir,
    engine: StoreEngine,
) -> Result<std::sync::Arc<dyn cdp_store::Store>, cdp_store::StoreError> {
    open_store(
        data_dir,
        &StoreOptions {
            engine: Some(engine),
            verification: Verification::Off,
            ..StoreOptions::default()
        },
    )
}

#[allow(clippy::print_stdout)]
fn verify(dir: &Path) -> anyhow::Result<()> {
    let data_dir = DataDir::new(dir);
    let Some(engine) = engine_of(&data_dir) else {
        bail!("{} holds no store", dir.display());
    };
    let earlier = cdp_store::damage_report(&data_dir)?;
    // Out of the way of the open below; put back unless the store reads clean.
    cdp_store::clear_damage_report(&data_dir)?;
    let started = std::time::Instant::now();
    let opened = open_store(
        &data_dir,
        &StoreOptions {
            engine: Some(engine),
            verification: Verification::AtOpen,
            ..StoreOptions::default()
        },
    );
    let store = match opened {
        Ok(store) => store,
        Err(error) => {
            match (&error, &earlier) {
                (StoreError::Corrupt { .. } | StoreError::LostWrites { .. }, _) => {
                    cdp_store::record_damage(&data_dir, &error.to_string());
                }
                (_, Some(problem)) => cdp_store::record_damage(&data_dir, problem),
                _ => {}
            }
            return Err(error)
                .with_context(|| format!("cannot verify the store of {}", dir.display()));
        }
    };
    store.close()?;
    println!(
        "{} store of {}: every block read and sound ({:.1} s)",
        engine.as_str(),
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    if let Some(problem) = earlier {
        println!("removed the damage report of an earlier verification ({problem})");
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn stats(dir: &Path, json: bool) -> anyhow::Result<()> {
    let data_dir = DataDir::new(dir);
    let Some(engine) = engine_of(&data_dir) else {
        bail!("{} holds no store", dir.display());
    };
    let store = open_on(&data_dir, engine)
        .with_context(|| format!("cannot open the store of {}", dir.display()))?;
    let summary = store_summary(store.as_ref());
    store.close()?;
    let summary = summary?;
    let on_disk = crate::bench::disk_usage(&data_dir.store_location());
    let entries: u64 = summary.values().map(|k| k.entries).sum();
    let bytes: u64 = summary.values().map(|k| k.key_bytes + k.value_bytes).sum();
    if json {
        let keyspaces: serde_json::Map<String, serde_json::Value> = summary
            .iter()
            .map(|(name, k)| {
                (
                    name.to_string(),
                    serde_json::json!({
                        "entries": k.entries,
                        "key_bytes": k.key_bytes,
                        "value_bytes": k.value_bytes,
                    }),
                )
            })
            .collect();
        let out = serde_json::json!({
            "engine": engine.as_str(),
            "entries": entries,
            "bytes": bytes,
            "bytes_on_disk": on_disk,
            "keyspaces": keyspaces,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{} store of {}: {entries} entries, {bytes} bytes of keys and values, {on_disk} bytes on disk",
        engine.as_str(),
        dir.display()
    );
    println!(
        "{:<14} {:>12} {:>14} {:>16} {:>10}",
        "keyspace", "entries", "key bytes", "value bytes", "avg value"
    );
    for (name, k) in summary.iter().filter(|(_, k)| k.entries > 0) {
        println!(
            "{name:<14} {:>12} {:>14} {:>16} {:>10}",
            k.entries,
            k.key_bytes,
            k.value_bytes,
            k.value_bytes / k.entries
        );
    }
    Ok(())
}

/// Where a store lives, as `cdp store copy` names it.
enum Location {
    Dir(DataDir),
    Postgres(cdp_store::PostgresStoreOptions),
}

impl Location {
    fn parse(text: &str) -> anyhow::Result<Self> {
        if !cdp_store::is_postgres_url(text) {
            return Ok(Self::Dir(DataDir::new(text)));
        }
        let mut options = cdp_store::PostgresStoreOptions::new(text);
        if let Some(path) = std::env::var_os("CDP_STORE_PASSWORD_FILE") {
            let password = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read the PostgreSQL password file {}",
                    Path::new(&path).display()
                )
            })?;
            options.password = Some(password.trim_end_matches(['\r', '\n']).to_string());
        }
        options.ca_file = std::env::var_os("CDP_STORE_CA_FILE").map(PathBuf::from);
        Ok(Self::Postgres(options))
    }

    /// How messages name it (a URL without its password).
    fn name(&self) -> String {
        match self {
            Self::Dir(dir) => dir.root().display().to_string(),
            Self::Postgres(_) => "the PostgreSQL database".to_string(),
        }
    }

    fn open(&self, engine: StoreEngine) -> anyhow::Result<std::sync::Arc<dyn cdp_store::Store>> {
        Ok(match self {
            Self::Dir(dir) => open_on(dir, engine)?,
            Self::Postgres(options) => {
                let store: std::sync::Arc<dyn cdp_store::Store> =
                    cdp_store::PostgresStore::open(options)?;
                store
            }
        })
    }
}

#[allow(clippy::print_stdout)]
fn copy(from: &str, to: &str, engine: StoreEngine, files_dir: Option<&Path>) -> anyhow::Result<()> {
    let source = Location::parse(from)?;
    let target = Location::parse(to)?;
    let source_engine = match &source {
        Location::Dir(dir) => {
            let Some(found) = engine_of(dir) else {
                bail!("{from} holds no store");
            };
            found.as_str()
        }
        Location::Postgres(_) => "PostgreSQL",
    };
    // Where the key and export files go: the target directory, or --data-dir beside a
    // database.
    let files_target = match (&target, files_dir) {
        (Location::Dir(dir), None) => {
            if dir.holds_store() {
                bail!("{to} already holds a store: copy only into a new data directory");
            }
            Some(dir.clone())
        }
        (Location::Dir(_), Some(_)) => {
            bail!(
                "--data-dir is for a PostgreSQL target (a directory target takes the files itself)"
            )
        }
        (Location::Postgres(_), Some(dir)) => {
            let dir = DataDir::new(dir);
            if dir.holds_store() {
                bail!(
                    "{} holds a store: the servers of a PostgreSQL store need a data directory without one",
                    dir.root().display()
                );
            }
            Some(dir)
        }
        (Location::Postgres(_), None) => None,
    };
    let target_engine = match &target {
        Location::Dir(_) => engine.as_str(),
        Location::Postgres(_) => "PostgreSQL",
    };
    let source_store = source
        .open(engine_of_location(&source).unwrap_or(engine))
        .with_context(|| format!("cannot open the store of {}", source.name()))?;
    let target_store = target
        .open(engine)
        .with_context(|| format!("cannot open the store of {}", target.name()))?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!(
        "copying the {source_engine} store of {} into a {target_engine} store",
        source.name()
    ));
    let copied = copy_store(source_store.as_ref(), target_store.as_ref(), |entries| {
        bar.set_position(entries);
    });
    bar.finish_and_clear();
    let closed = target_store.close();
    source_store.close()?;
    let report = copied.context("the copy failed; delete the target")?;
    closed.context("flushing the copy failed; delete the target")?;
    let files = match (&source, &files_target) {
        (Location::Dir(from), Some(to)) => copy_files(from, to)?,
        _ => 0,
    };
    println!(
        "copied {} entries ({} bytes) from the {source_engine} store of {} into a {target_engine} store in {}; {files} key and export files; counts and digests verified:",
        report.entries,
        report.bytes,
        source.name(),
        target.name()
    );
    for (keyspace, summary) in &report.keyspaces {
        if summary.entries > 0 {
            println!(
                "  {keyspace}: {} entries, sha256 {}",
                summary.entries,
                &summary.sha256[..16]
            );
        }
    }
    match (&target, &files_target) {
        (Location::Dir(dir), _) => println!(
            "Serve the copy with `cdp serve --data-dir {}` (its search index is rebuilt at start); keep {from} until you have.",
            dir.root().display()
        ),
        (Location::Postgres(_), Some(dir)) => println!(
            "Serve it with `cdp serve --data-dir {} --store URL` (the password from CDP_STORE_PASSWORD_FILE; the search index is rebuilt at start); keep {} until you have.",
            dir.root().display(),
            source.name()
        ),
        (Location::Postgres(_), None) => println!(
            "Serve it with `cdp serve --store URL` on a data directory without a store, holding the keys (the master key by --key-file in production); keep {} until you have.",
            source.name()
        ),
    }
    Ok(())
}

fn engine_of_location(location: &Location) -> Option<StoreEngine> {
    match location {
        Location::Dir(dir) => engine_of(dir),
        Location::Postgres(_) => None,
    }
}

fn copy_files(from: &DataDir, to: &DataDir) -> anyhow::Result<usize> {
    let mut copied = 0;
    for dir in ["keys", "exports"] {
        let source = from.root().join(dir);
        if !source.exists() {
            continue;
        }
        copied += copy_dir(&source, &to.root().join(dir))?;
    }
    Ok(copied)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())?;
    let mut copied = 0;
    for entry in std::fs::read_dir(from)? {
        let path = entry?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copied += copy_dir(&path, &target)?;
        } else {
            // `fs::copy` keeps the permission bits (keys stay 0600).
            std::fs::copy(&path, &target)
                .with_context(|| format!("cannot copy {}", path.display()))?;
            copied += 1;
        }
    }
    Ok(copied)
}
