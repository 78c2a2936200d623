//! Structured logs on stderr. Log lines carry ids, routes and counts; personal values are kept
//! out by construction (they travel as `cdp_core::Personal`, which prints `<personal>`).

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

static INITIALIZED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`init`] ran (before it, nothing would show a log line).
pub fn is_initialized() -> bool {
    INITIALIZED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the global subscriber. `CDP_LOG` (then `RUST_LOG`) overrides `default_level`.
pub fn init(format: LogFormat, default_level: &str) {
    INITIALIZED.store(true, std::sync::atomic::Ordering::Relaxed);
    let filter = std::env::var("CDP_LOG")
        .ok()
        .and_then(|value| EnvFilter::try_new(value).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
