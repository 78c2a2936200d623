//! `cdp token issue`: a management-API token, from the token key file alone (works while
//! `cdp serve` holds the data directory).

use std::path::PathBuf;

use anyhow::Context;
use cdp_crypto::TokenKey;
use cdp_store::DataDir;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed token for an operator or a service.
    Issue(IssueArgs),
    /// Create a token key file (`serve` creates an EdDSA one on first start; use this for
    /// HS256, shared with another token issuer, and point `token_key_file` in the config at it).
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to create the key file (never overwritten; mode 0600).
    #[arg(long)]
    token_key_file: PathBuf,
    #[arg(long, value_enum, default_value = "eddsa")]
    algorithm: AlgorithmArg,
    #[arg(long, default_value = cdp_crypto::DEFAULT_ISSUER)]
    issuer: String,
    #[arg(long, default_value = cdp_crypto::DEFAULT_AUDIENCE)]
    audience: String,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AlgorithmArg {
    Eddsa,
    Hs256,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Data directory whose keys/token.key signs the token (default ./data).
    #[arg(long, env = "CDP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The token key file, if not DATA_DIR/keys/token.key.
    #[arg(long, env = "CDP_TOKEN_KEY_FILE")]
    token_key_file: Option<PathBuf>,
    /// Role(s): admin, dpo, marketer, analyst, customer_service, auditor.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// Purpose(s) the holder may state when reading personal data (narrows what the roles
    /// allow; default: whatever they allow).
    #[arg(long = "purpose")]
    purposes: Vec<String>,
    /// Policy directory whose taxonomy the purposes are checked against (default built-in).
    #[arg(long, env = "CDP_POLICIES")]
    policies: Option<PathBuf>,
    /// Who the token is for; recorded with every request it makes.
    #[arg(long, default_value = "operator")]
    subject: String,
    /// Lifetime in seconds (default one hour, at most 30 days).
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
}

pub fn token_key_path(data_dir: Option<PathBuf>, explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        DataDir::new(data_dir.unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR)))
            .token_key_file()
    })
}

#[allow(clippy::print_stdout)]
pub fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Init(args) => {
            let algorithm = match args.algorithm {
                AlgorithmArg::Eddsa => cdp_crypto::TokenAlgorithm::EdDSA,
                AlgorithmArg::Hs256 => cdp_crypto::TokenAlgorithm::HS256,
            };
            if let Some(parent) = args.token_key_file.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            TokenKey::create_file_with(
                &args.token_key_file,
                algorithm,
                &args.issuer,
                &args.audience,
            )
            .with_context(|| format!("cannot create {}", args.token_key_file.display()))?;
            println!(
                "created {} ({:?}); set token_key_file in the config to use it",
                args.token_key_file.display(),
                algorithm
            );
            Ok(())
        }
        TokenCommand::Issue(args) => {
            let policies = crate::policy::load(args.policies.as_deref())?;
            for purpose in &args.purposes {
                anyhow::ensure!(
                    purpose == "*" || policies.taxonomy.purposes.contains_key(purpose),
                    "unknown purpose {purpose:?}; purposes are {}",
                    policies
                        .taxonomy
                        .purposes
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for role in &args.roles {
                role.parse::<cdp_policy::Role>()?;
            }
            // A purpose none of the roles may state would be refused at every read: say so
            // now instead of issuing a token that only looks broader than it is.
            let caller = cdp_policy::CallerFacts {
                roles: args.roles.clone(),
                purposes: Vec::new(),
            };
            for purpose in args.purposes.iter().filter(|p| *p != "*") {
                anyhow::ensure!(
                    policies.caller_may_use(&caller, purpose),
                    "the role(s) {} may not state the purpose {purpose} (roles.yaml)",
                    if args.roles.is_empty() {
                        "(none)".to_string()
                    } else {
                        args.roles.join(", ")
                    }
                );
            }
            anyhow::ensure!(
                (1..=30 * 24 * 3600).contains(&args.ttl),
                "--ttl must be between 1 second and 30 days"
            );
            let path = token_key_path(args.data_dir, args.token_key_file);
            let key = TokenKey::load_file(&path).with_context(|| {
                format!(
                    "cannot read the token key {} (the first `cdp serve` creates it in its data directory: pass that server's --data-dir, or --token-key-file)",
                    path.display()
                )
            })?;
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let token = key
                .issue(&args.subject, &args.roles, &args.purposes, now, args.ttl)
                .map_err(|e| anyhow::anyhow!("cannot sign the token: {e}"))?;
            println!("{token}");
            Ok(())
        }
    }
}
