//! The HTTP client of live CLI commands (`sources`, ...): they talk to a running server, because
//! the server holds the data directory's lock.

use anyhow::{Context, bail};
use clap::Args;

#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// The running server.
    #[arg(long, env = "CDP_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// A management token (`cdp token issue`).
    #[arg(long, env = "CDP_TOKEN")]
    pub token: Option<String>,
}

impl ServerArgs {
    fn token(&self) -> anyhow::Result<&str> {
        self.token
            .as_deref()
            .context("give a token with --token or CDP_TOKEN (see `cdp token issue`)")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into()
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut response =
            response.with_context(|| format!("cannot reach the server at {}", self.server))?;
        let status = response.status();
        let body: serde_json::Value = response
            .body_mut()
            .read_json()
            .unwrap_or(serde_json::Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("no error message");
            let code = body["error"]["code"].as_str().unwrap_or("unknown");
            bail!("the server answered {} {code}: {message}", status.as_u16());
        }
        Ok(body)
    }

    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let token = self.token()?;
        let response = Self::agent()
            .get(&self.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .call();
        self.answer(response)
    }

    /// GETs a body as bytes (a file download); a non-2xx answer is an error with its message.
    pub fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let token = self.token()?;
        let mut response = Self::agent()
            .get(&self.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        let status = response.status();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(4 * 1024 * 1024 * 1024)
            .read_to_vec()
            .context("cannot read the answer")?;
        if !status.is_success() {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            bail!(
                "the server answered {} {}: {}",
                status.as_u16(),
                body["error"]["code"].as_str().unwrap_or("unknown"),
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("no error message")
            );
        }
        Ok(bytes)
    }

    /// An unauthenticated GET (public routes such as `/v1/keys/export`).
    pub fn get_public(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let response = Self::agent().get(&self.url(path)).call();
        self.answer(response)
    }

    /// POSTs and returns the status and JSON body whatever the status (callers that handle
    /// refusals themselves, like `import`).
    pub fn post_raw(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let token = self.token()?;
        let mut response = Self::agent()
            .post(&self.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(body)
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_json()
            .unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let token = self.token()?;
        let response = Self::agent()
            .delete(&self.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .call();
        self.answer(response)
    }

    pub fn patch(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let token = self.token()?;
        let response = Self::agent()
            .patch(&self.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(body);
        self.answer(response)
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let token = self.token()?;
        let response = Self::agent()
            .post(&self.url(path))
            .header("Authorization", &format!("Bearer {token}"))
            .send_json(body);
        self.answer(response)
    }
}

/// Percent-encodes a query value.
pub fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
