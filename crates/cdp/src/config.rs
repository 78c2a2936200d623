//! Settings of `cdp serve`: command line > environment > config file > defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::logging::LogFormat;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";

/// The TOML config file (`--config`). Every field is optional; see deploy/cdp.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Token signing key (see `cdp token issue`). Default: DATA_DIR/keys/token.key, created on
    /// first start.
    pub token_key_file: Option<PathBuf>,
    /// Policy directory (taxonomy, fields, roles, jurisdictions; docs/policies.md). Default:
    /// the policies built into the binary (the repository's policies/).
    pub policies: Option<PathBuf>,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub auth: AuthSection,
    /// Identity rules: limits, priorities, blocked values (docs/identity.md).
    #[serde(default)]
    pub identity: cdp_identity::IdentityRulesFile,
    /// Trait survivorship (docs/identity.md).
    #[serde(default)]
    pub survivorship: cdp_engine::SurvivorshipRules,
    /// Thresholds of computed traits (RFM, lifecycle, churn, hesitation; docs/audiences.md).
    #[serde(default)]
    pub computed: cdp_engine::computed::ComputedRules,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub index: IndexSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub retention: RetentionSection,
    #[serde(default)]
    pub exports: ExportsSection,
    #[serde(default)]
    pub consent: ConsentSection,
    /// Frequency caps and quiet hours of campaigns, across all of them (docs/campaigns.md).
    #[serde(default)]
    pub campaigns: cdp_engine::contact::ContactRules,
    /// Fuzzy identity matching: off until jurisdictions are named (docs/identity.md).
    #[serde(default)]
    pub matching: cdp_engine::matching::MatchingFile,
    #[serde(default)]
    pub log: LogSection,
}

/// Management tokens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Tokens whose lifetime (`exp - iat`) is longer are refused (default 30, at most 366).
    pub max_token_lifetime_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    pub max_body_bytes: Option<usize>,
    pub request_timeout_secs: Option<u64>,
    /// Longest a request body may take to arrive (408 after).
    pub body_timeout_secs: Option<u64>,
    pub shutdown_grace_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    /// Hours between runs of the retention sweeper (per-category retention from the
    /// policies). Default 24.
    pub interval_hours: Option<u64>,
    /// Days a finished export's file can be downloaded; the sweeper then deletes it with its
    /// key. Default 7, at most 30.
    pub export_file_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentSection {
    /// Seconds between tallies of the consent states per purpose (the trend of
    /// `GET /v1/consents/trend` and the console's consents page). Default 3600.
    pub trend_every_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportsSection {
    /// Where export files are written, sealed. Default DATA_DIR/exports. Several nodes on one
    /// PostgreSQL store share one directory (a volume every node mounts).
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Hours a (source, messageId) is remembered to recognise retries. Default 24.
    pub dedup_window_hours: Option<u64>,
    /// At most this many messages in that window (about 40 bytes of memory each). Default
    /// 5,000,000.
    pub dedup_max_messages: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSection {
    /// Hours between full refreshes of the search index (computed traits move with time;
    /// RFM quintiles are recomputed). Default 24.
    pub refresh_hours: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sled` or `fjall`, for a new data directory; an existing one keeps its engine (a
    /// mismatch is refused).
    pub engine: Option<String>,
    pub cache_capacity_mb: Option<u64>,
    /// `background` (default), `at-start` or `off`.
    pub verify: Option<String>,
    /// `postgres://user@host:port/database?sslmode=...`: the store in PostgreSQL instead of
    /// the data directory (docs/operations.md, "Scale-out").
    pub url: Option<String>,
    /// A file holding the PostgreSQL password (kept out of the URL and the config).
    pub password_file: Option<PathBuf>,
    /// PEM certificates the PostgreSQL server's certificate must chain to, with
    /// `sslmode=require` (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// Connections each server keeps to PostgreSQL for reads. Default 8.
    pub pool_size: Option<usize>,
    /// Several `cdp serve` nodes share the PostgreSQL database (they take turns at writing;
    /// docs/operations.md, "Scale-out"). Every node of the database must set it.
    pub cluster: Option<bool>,
    /// This node's name among them (default: made once and kept in DATA_DIR/node.id).
    pub node: Option<String>,
    /// The older spelling: `true` is `verify = "at-start"`, `false` is `"off"`.
    pub verify_on_open: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub format: Option<LogFormat>,
    pub level: Option<String>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|error| {
            let line = error
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            anyhow::anyhow!(
                "config file {}, line {line}: {}",
                path.display(),
                error.message()
            )
        })
    }
}

/// The resolved settings.
#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub key_file: Option<PathBuf>,
    pub token_key_file: Option<PathBuf>,
    /// The longest token lifetime accepted, in seconds.
    pub max_token_lifetime_seconds: i64,
    pub policies: Option<PathBuf>,
    pub identity: cdp_identity::IdentityRules,
    pub survivorship: cdp_engine::SurvivorshipRules,
    pub computed: cdp_engine::computed::ComputedRules,
    pub contact: cdp_engine::contact::ContactRules,
    pub matching: cdp_engine::matching::MatchingRules,
    pub index_refresh: Duration,
    pub retention_interval: Duration,
    pub consent_tally_every: Duration,
    pub export_file_lifetime: time::Duration,
    pub dedup: cdp_engine::DedupSettings,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub body_timeout: Duration,
    pub shutdown_grace: Duration,
    pub store_engine: Option<cdp_store::StoreEngine>,
    pub cache_capacity_bytes: u64,
    pub verification: cdp_store::Verification,
    pub postgres: Option<cdp_store::PostgresStoreOptions>,
    /// Several nodes share the PostgreSQL database; this one's name if configured.
    pub store_cluster: bool,
    pub store_node: Option<String>,
    pub exports_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
}

pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub policies: Option<PathBuf>,
    pub store_engine: Option<String>,
    pub store_verify: Option<String>,
    pub store_url: Option<String>,
    pub store_cluster: Option<bool>,
    pub store_node: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl Settings {
    pub fn resolve(file: ConfigFile, overrides: Overrides) -> anyhow::Result<Self> {
        let listen_text = overrides
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_text.parse().with_context(|| {
            format!("listen address {listen_text:?} is not IP:PORT (e.g. 127.0.0.1:8080)")
        })?;
        let max_body_bytes = file.http.max_body_bytes.unwrap_or(1024 * 1024);
        anyhow::ensure!(
            (1024..=64 * 1024 * 1024).contains(&max_body_bytes),
            "http.max_body_bytes must be between 1 KiB and 64 MiB"
        );
        let export_file_days = file.retention.export_file_days.unwrap_or(7);
        anyhow::ensure!(
            (1..=30).contains(&export_file_days),
            "retention.export_file_days must be between 1 and 30"
        );
        let max_token_lifetime_days = file.auth.max_token_lifetime_days.unwrap_or(30);
        anyhow::ensure!(
            (1..=366).contains(&max_token_lifetime_days),
            "auth.max_token_lifetime_days must be between 1 and 366"
        );
        Ok(Self {
            listen,
            max_token_lifetime_seconds: i64::from(max_token_lifetime_days) * 24 * 3600,
            data_dir: overrides
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            key_file: overrides.key_file.or(file.key_file),
            token_key_file: file.token_key_file,
            policies: overrides.policies.or(file.policies),
            identity: cdp_identity::IdentityRules::from_file(file.identity)?,
            survivorship: file.survivorship,
            computed: file.computed,
            contact: {
                file.campaigns
                    .validate()
                    .map_err(|e| anyhow::anyhow!("[campaigns] {e}"))?;
                file.campaigns
            },
            matching: cdp_engine::matching::MatchingRules::from_file(file.matching)
                .map_err(|e| anyhow::anyhow!("[matching] {e}"))?,
            index_refresh: Duration::from_secs(
                file.index.refresh_hours.unwrap_or(24).max(1) * 3600,
            ),
            retention_interval: Duration::from_secs(
                file.retention.interval_hours.unwrap_or(24).max(1) * 3600,
            ),
            consent_tally_every: Duration::from_secs(
                file.consent.trend_every_secs.unwrap_or(3600).max(1),
            ),
            export_file_lifetime: time::Duration::days(i64::from(export_file_days)),
            dedup: cdp_engine::DedupSettings {
                window: Duration::from_secs(
                    file.ingest
                        .dedup_window_hours
                        .unwrap_or(24)
                        .clamp(1, 24 * 366)
                        * 3600,
                ),
                max_messages: file
                    .ingest
                    .dedup_max_messages
                    .unwrap_or(cdp_engine::DedupSettings::default().max_messages)
                    .max(1_000),
            },
            max_body_bytes,
            request_timeout: Duration::from_secs(
                file.http.request_timeout_secs.unwrap_or(30).max(1),
            ),
            body_timeout: Duration::from_secs(file.http.body_timeout_secs.unwrap_or(30).max(1)),
            shutdown_grace: Duration::from_secs(file.http.shutdown_grace_secs.unwrap_or(30)),
            store_engine: match overrides.store_engine.or(file.store.engine) {
                Some(name) => Some(name.parse().map_err(|e: String| anyhow::anyhow!(e))?),
                None => None,
            },
            cache_capacity_bytes: file.store.cache_capacity_mb.unwrap_or(256).max(16) * 1024 * 1024,
            postgres: postgres_options(
                overrides.store_url.or(file.store.url),
                file.store.password_file.as_deref(),
                file.store.ca_file.as_deref(),
                file.store.pool_size,
            )?,
            store_cluster: overrides
                .store_cluster
                .or(file.store.cluster)
                .unwrap_or(false),
            store_node: overrides.store_node.or(file.store.node),
            exports_dir: file.exports.dir,
            verification: match (
                overrides.store_verify,
                file.store.verify,
                file.store.verify_on_open,
            ) {
                (Some(name), _, _) | (None, Some(name), None) => {
                    name.parse().map_err(|e: String| anyhow::anyhow!(e))?
                }
                (None, Some(_), Some(_)) => anyhow::bail!(
                    "[store] sets both verify and verify_on_open; keep verify (background, at-start or off)"
                ),
                (None, None, Some(true)) => cdp_store::Verification::AtOpen,
                (None, None, Some(false)) => cdp_store::Verification::Off,
                (None, None, None) => cdp_store::Verification::InBackground,
            },
            log_format: overrides.log_format.or(file.log.format).unwrap_or_default(),
            log_level: file.log.level.unwrap_or_else(|| "info".to_string()),
        })
    }
}

/// The PostgreSQL store's settings, when a URL is given. The password comes from the URL,
/// `password_file` or `CDP_STORE_PASSWORD_FILE`, never from a command-line argument; the CA
/// of `sslmode=require` from `ca_file` or `CDP_STORE_CA_FILE`.
pub(crate) fn postgres_options(
    url: Option<String>,
    password_file: Option<&std::path::Path>,
    ca_file: Option<&std::path::Path>,
    pool_size: Option<usize>,
) -> anyhow::Result<Option<cdp_store::PostgresStoreOptions>> {
    let Some(url) = url else {
        return Ok(None);
    };
    anyhow::ensure!(
        cdp_store::is_postgres_url(&url),
        "the store URL must start with postgres:// or postgresql://"
    );
    let mut options = cdp_store::PostgresStoreOptions::new(url);
    let from_env = std::env::var_os("CDP_STORE_PASSWORD_FILE").map(PathBuf::from);
    if let Some(path) = password_file.map(std::path::Path::to_path_buf).or(from_env) {
        let password = std::fs::read_to_string(&path).map_err(|error| {
            anyhow::anyhow!(
                "cannot read the PostgreSQL password file {}: {error}",
                path.display()
            )
        })?;
        options.password = Some(password.trim_end_matches(['\r', '\n']).to_string());
    }
    options.ca_file = ca_file
        .map(std::path::Path::to_path_buf)
        .or_else(|| std::env::var_os("CDP_STORE_CA_FILE").map(PathBuf::from));
    if let Some(size) = pool_size {
        anyhow::ensure!(
            (1..=256).contains(&size),
            "[store] pool_size must be 1 to 256"
        );
        options.pool_size = size;
    }
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// deploy/cdp.toml is the documented example: it must parse and show every setting.
    #[test]
    fn the_example_config_parses_and_shows_every_setting() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/cdp.toml"
        ));
        let file = ConfigFile::load(path).unwrap();
        assert!(file.listen.is_some() && file.data_dir.is_some() && file.key_file.is_some());
        assert!(file.policies.is_some());
        // The token key is shown but left to its default, which the first start creates: a
        // configured file must exist before, and nothing in the installation creates it.
        assert!(file.token_key_file.is_none());
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.contains("\n# token_key_file = "),
            "token_key_file is not shown"
        );
        assert!(
            file.identity.types.len() >= 11
                && file.identity.junk_threshold.is_some()
                && file.identity.default.is_some()
                && file.identity.blocked.is_some()
        );
        assert!(file.survivorship.default.is_some() && !file.survivorship.traits.is_empty());
        // Fuzzy matching is shown, and off.
        assert_eq!(file.matching.jurisdictions.as_deref(), Some(&[][..]));
        assert!(
            file.matching.link_probability.is_some() && file.matching.interval_minutes.is_some()
        );
        assert!(file.http.max_body_bytes.is_some());
        assert!(file.http.request_timeout_secs.is_some());
        assert!(file.http.shutdown_grace_secs.is_some());
        assert!(file.store.cache_capacity_mb.is_some());
        assert!(file.index.refresh_hours.is_some());
        assert!(file.ingest.dedup_window_hours.is_some());
        assert!(file.ingest.dedup_max_messages.is_some());
        assert!(file.retention.interval_hours.is_some());
        assert!(file.retention.export_file_days.is_some());
        assert!(file.consent.trend_every_secs.is_some());
        assert!(file.store.verify.is_some());
        assert!(file.log.format.is_some() && file.log.level.is_some());
        // The contact rules written out are the built-in ones.
        assert_eq!(file.campaigns, cdp_engine::contact::ContactRules::default());
        let settings = Settings::resolve(
            file,
            Overrides {
                listen: None,
                data_dir: None,
                key_file: None,
                policies: None,
                store_engine: None,
                store_verify: None,
                store_url: None,
                store_cluster: None,
                store_node: None,
                log_format: None,
            },
        )
        .unwrap();
        assert_eq!(settings.max_body_bytes, 1024 * 1024);
        // The blocked list written out equals the built-in one.
        let junk = cdp_core::IdentifierType::DeviceId;
        assert!(
            settings
                .identity
                .is_blocked(&junk, "00000000-0000-0000-0000-000000000000")
        );
        assert!(
            settings
                .identity
                .is_blocked(&cdp_core::IdentifierType::Phone, "+8613800000000")
        );
        assert!(!settings.identity.is_blocked(&junk, "dev-1"));
    }

    #[test]
    fn command_line_beats_the_file() {
        let file: ConfigFile =
            toml::from_str("listen = \"127.0.0.1:1\"\ndata_dir = \"/a\"").unwrap();
        let settings = Settings::resolve(
            file,
            Overrides {
                listen: Some("127.0.0.1:2".into()),
                data_dir: None,
                key_file: None,
                policies: None,
                store_engine: None,
                store_verify: None,
                store_url: None,
                store_cluster: None,
                store_node: None,
                log_format: None,
            },
        )
        .unwrap();
        assert_eq!(settings.listen.port(), 2);
        assert_eq!(settings.data_dir, PathBuf::from("/a"));
    }
}
