//! `cdp keys ...` and how `serve` finds its keyring.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use cdp_crypto::{Keyring, MASTER_KEY_ENV};
use cdp_store::DataDir;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new key file (mode 0600) holding key version 1. Never overwrites.
    Init(KeyFileArgs),
    /// Add a new key version; new writes use it, data sealed under older versions stays readable.
    Rotate(KeyFileArgs),
    /// List the key versions of a key file (never the keys).
    List(KeyFileArgs),
    /// Re-seal everything sealed under older key versions with the current one: people's data
    /// keys, records that belong to no person, export file keys (server stopped).
    Rewrap(StoreKeyArgs),
    /// Drop a key version from the key file once nothing in the store is sealed under it
    /// (after `cdp keys rewrap`; server stopped).
    Retire {
        #[command(flatten)]
        store: StoreKeyArgs,
        /// The version to retire (`cdp keys list`).
        #[arg(long)]
        version: u32,
    },
}

#[derive(Debug, Args)]
pub struct StoreKeyArgs {
    /// The key file (a rewrap and a retirement change the store and the file together).
    #[arg(long, env = "CDP_KEY_FILE")]
    key_file: PathBuf,
    /// The data directory (default ./data). The server must be stopped.
    #[arg(long, env = "CDP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The store in PostgreSQL (`postgres://...`; the password from CDP_STORE_PASSWORD_FILE),
    /// with every node stopped.
    #[arg(long, env = "CDP_STORE")]
    store: Option<String>,
}

impl StoreKeyArgs {
    /// The store opened offline with the key file's keyring (no search index needed).
    fn open(&self) -> anyhow::Result<cdp_engine::Engine> {
        let data_dir = DataDir::new(
            self.data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR)),
        );
        let postgres = crate::config::postgres_options(self.store.clone(), None, None, None)?;
        if postgres.is_none() && !data_dir.holds_store() {
            bail!("{} holds no store", data_dir.root().display());
        }
        let keyring = std::sync::Arc::new(Keyring::load_file(&self.key_file)?);
        cdp_engine::Engine::open(
            cdp_engine::EngineConfig::new(
                data_dir.root(),
                keyring,
                std::sync::Arc::new(crate::policy::load(None)?),
            )
            .with_index(cdp_engine::IndexMode::Absent)
            .with_store(cdp_store::StoreOptions {
                postgres,
                ..cdp_store::StoreOptions::default()
            }),
        )
        .context("cannot open the store")
    }
}

/// Who ran an offline key command, for the audit log.
fn operator() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

#[derive(Debug, Args)]
pub struct KeyFileArgs {
    /// The key file. Defaults to DATA_DIR/keys/master.key when --data-dir is given.
    #[arg(long, env = "CDP_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Use the development key file inside this data directory.
    #[arg(long, env = "CDP_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl KeyFileArgs {
    fn path(&self) -> anyhow::Result<PathBuf> {
        match (&self.key_file, &self.data_dir) {
            (Some(path), _) => Ok(path.clone()),
            (None, Some(dir)) => Ok(DataDir::new(dir).dev_key_file()),
            (None, None) => {
                bail!("give --key-file PATH (or --data-dir DIR for its development key)")
            }
        }
    }
}

pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Init(args) => {
            let path = args.path()?;
            create_parent(&path)?;
            let keyring = Keyring::generate()?;
            keyring.create_file(&path)?;
            println!("created {} with key version 1 (mode 0600)", path.display());
            println!("back it up apart from the data: without it the data cannot be read");
        }
        KeysCommand::Rotate(args) => {
            let path = args.path()?;
            let mut keyring = Keyring::load_file(&path)?;
            let version = keyring.rotate()?;
            keyring.replace_file(&path)?;
            println!(
                "added key version {version} to {}; new writes use it, older versions stay for reading",
                path.display()
            );
        }
        KeysCommand::Rewrap(args) => {
            let engine = args.open()?;
            let started = std::time::Instant::now();
            let done = engine.rewrap_master_keys(&operator());
            engine.close().context("flushing the store failed")?;
            let done = done?;
            println!(
                "rewrapped {} data keys, {} records and {} export file keys under version {} in {:.1} s",
                done.data_keys,
                done.records,
                done.file_keys,
                Keyring::load_file(&args.key_file)?.current_version(),
                started.elapsed().as_secs_f64()
            );
        }
        KeysCommand::Retire { store, version } => {
            let version = cdp_crypto::KeyVersion::new(version)
                .ok_or_else(|| anyhow::anyhow!("key versions start at 1"))?;
            let engine = store.open()?;
            let retired = engine.retire_key_version(version, &operator());
            engine.close().context("flushing the store failed")?;
            retired?;
            // The store no longer asks for the version; now the file forgets it.
            let mut keyring = Keyring::load_file(&store.key_file)?;
            keyring.retire(version)?;
            keyring.replace_file(&store.key_file)?;
            println!(
                "retired key version {version}: removed from {} and no longer needed by the store; backups taken before the rewrap still need it",
                store.key_file.display()
            );
        }
        KeysCommand::List(args) => {
            let path = args.path()?;
            let keyring = Keyring::load_file(&path)?;
            let current = keyring.current_version();
            for info in keyring.versions() {
                let marker = if info.version == current {
                    " (current)"
                } else {
                    ""
                };
                println!(
                    "version {}{marker}  created {}",
                    info.version,
                    info.created_at.as_deref().unwrap_or("unknown")
                );
            }
        }
    }
    Ok(())
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if parent.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", parent.display()))?;
    }
    Ok(())
}

/// The token key `serve` verifies management tokens with: the configured file, or
/// DATA_DIR/keys/token.key, created (mode 0600) on first start.
pub fn token_key_for_serve(
    configured: Option<&Path>,
    data_dir: &DataDir,
) -> anyhow::Result<cdp_crypto::TokenKey> {
    let path = configured
        .map(Path::to_path_buf)
        .unwrap_or_else(|| data_dir.token_key_file());
    if path.exists() {
        return Ok(cdp_crypto::TokenKey::load_file(&path)?);
    }
    if configured.is_some() {
        bail!(
            "token key file {} does not exist: create it with `cdp token init --token-key-file {}`, or remove token_key_file from the config to use {} (created on first start)",
            path.display(),
            path.display(),
            data_dir.token_key_file().display()
        );
    }
    data_dir.create()?;
    create_parent(&path)?;
    let key = cdp_crypto::TokenKey::create_file(&path)?;
    tracing::info!(token_key = %path.display(), "created the token signing key; issue tokens with `cdp token issue`");
    Ok(key)
}

/// The keyring `serve` uses: a key file, `CDP_MASTER_KEY`, the dev key inside the data
/// directory, or (first run only) a newly created dev key.
pub fn keyring_for_serve(key_file: Option<&Path>, data_dir: &DataDir) -> anyhow::Result<Keyring> {
    let from_env = std::env::var(MASTER_KEY_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty());
    match (key_file, from_env) {
        (Some(_), Some(_)) => bail!(
            "both a key file and {MASTER_KEY_ENV} are set; give exactly one master key source"
        ),
        (Some(path), None) => {
            if !path.exists() {
                bail!(
                    "key file {} does not exist; create it with `cdp keys init --key-file {}`",
                    path.display(),
                    path.display()
                );
            }
            Ok(Keyring::load_file(path)?)
        }
        (None, Some(value)) => Ok(Keyring::from_environment_value(&value)?),
        (None, None) => {
            let dev_key = data_dir.dev_key_file();
            if dev_key.exists() {
                tracing::warn!(
                    key_file = %dev_key.display(),
                    "using the DEVELOPMENT master key stored inside the data directory: anyone who \
                     copies the directory can read the data; use --key-file or CDP_MASTER_KEY in production"
                );
                return Ok(Keyring::load_file(&dev_key)?);
            }
            if data_dir.holds_store() {
                bail!(
                    "data directory {} holds a store but no master key was given and {} does not \
                     exist; give the key with --key-file or {MASTER_KEY_ENV}",
                    data_dir.root().display(),
                    dev_key.display()
                );
            }
            data_dir.create()?;
            create_parent(&dev_key)?;
            let keyring = Keyring::generate()?;
            keyring.create_file(&dev_key)?;
            for line in [
                "************************************************************************",
                "NO MASTER KEY GIVEN: created a DEVELOPMENT key inside the data directory.",
                "The key sits beside the data it protects. Fine for trying cdp out; for real",
                "personal data run `cdp keys init --key-file /secure/place/master.key` and",
                "start with --key-file (or CDP_MASTER_KEY).",
                "************************************************************************",
            ] {
                tracing::warn!(key_file = %dev_key.display(), "{line}");
            }
            Ok(Keyring::load_file(&dev_key)?)
        }
    }
}
