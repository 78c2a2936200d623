//! `cdp probe`: exits 0 when the server answers 200 on `/readyz` (or another path), else 1 with
//! the reason. For container health checks and exec probes, where the image has no curl.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The server to probe.
    #[arg(long, env = "CDP_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// `/readyz` (ready to serve: store open, writes accepted) or `/healthz` (the process
    /// answers).
    #[arg(long, default_value = "/readyz")]
    path: String,
    /// Seconds before the probe gives up.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

#[allow(clippy::print_stdout)]
pub fn run(args: ProbeArgs) -> anyhow::Result<()> {
    if !args.path.starts_with('/') {
        bail!("--path must start with / (e.g. /readyz)");
    }
    let url = format!("{}{}", args.server.trim_end_matches('/'), args.path);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(args.timeout.clamp(1, 300))))
        .build()
        .into();
    let mut response = agent
        .get(&url)
        .call()
        .with_context(|| format!("{url} does not answer"))?;
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    if !status.is_success() {
        bail!("{url} answered {}: {}", status.as_u16(), body.trim());
    }
    println!("{url}: {}", body.trim());
    Ok(())
}
