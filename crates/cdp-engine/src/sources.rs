//! Ingestion sources and their write keys.
//!
//! Keys in `Keyspace::Sources`: `src/<id>` -> sealed [`SourceRecord`]; `wk/<sha256 of write
//! key>` -> source id; `name/<name>` -> source id. The write key itself is shown once, at
//! creation, and never stored.

use cdp_core::Channel;
use cdp_store::{Keyspace, WriteBatch};
use time::OffsetDateTime;

use crate::records::{SourceRecord, hex};
use crate::{Engine, EngineError};

const MAX_NAME: usize = 128;
/// Origins a source may list.
pub const MAX_ORIGINS: usize = 50;

/// An origin as browsers send it: `scheme://host[:port]`, lower case, http or https, the
/// default port left out, nothing after the host (a trailing `/` is forgiven). Wildcards are
/// refused: each shop's origin is listed, so a look-alike domain never qualifies.
pub fn normalize_origin(origin: &str) -> Result<String, String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let problem = |why: &str| Err(format!("{origin:?} is not a web origin: {why}"));
    let (scheme, rest) = match origin.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        _ => return problem("it must start with https:// or http://"),
    };
    if rest.is_empty() || rest.len() > 253 {
        return problem("the host is missing or too long");
    }
    if rest.contains(['/', '?', '#', '@', '*']) || rest.chars().any(char::is_whitespace) {
        return problem("an origin is a scheme and a host (and port), without path or wildcard");
    }
    let (host, port) = if rest.starts_with('[') {
        // An IPv6 address: its own colons are inside the brackets.
        let Some(end) = rest.find(']') else {
            return problem("the IPv6 address has no closing bracket");
        };
        (&rest[..=end], &rest[end + 1..])
    } else {
        match rest.rsplit_once(':') {
            Some((host, _)) => (host, &rest[host.len()..]),
            None => (rest, ""),
        }
    };
    let port = match port {
        "" => None,
        port => match port.strip_prefix(':').and_then(|p| p.parse::<u16>().ok()) {
            Some(port) => Some(port),
            None => return problem("the port is not a number"),
        },
    };
    let host_ok = if host.starts_with('[') {
        host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    } else {
        host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
    };
    if !host_ok {
        return problem("the host is not a domain name or IP address (IDNs in punycode, xn--)");
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    Ok(match port {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Validates and normalises a source's list of allowed origins (duplicates dropped).
pub fn normalize_origins(origins: &[String]) -> Result<Vec<String>, EngineError> {
    if origins.len() > MAX_ORIGINS {
        return Err(EngineError::InvalidRequest(format!(
            "at most {MAX_ORIGINS} allowed_origins"
        )));
    }
    let mut normalized = Vec::with_capacity(origins.len());
    for origin in origins {
        let origin = normalize_origin(origin).map_err(|problem| {
            EngineError::InvalidRequest(format!("allowed_origins: {problem}"))
        })?;
        if !normalized.contains(&origin) {
            normalized.push(origin);
        }
    }
    Ok(normalized)
}

fn write_key_entry(write_key: &str) -> Vec<u8> {
    [b"wk/".as_slice(), &cdp_crypto::secret_hash(write_key)].concat()
}

impl SourceRecord {
    /// Whether a page of `origin` (as the browser sent it) may send with this source's key.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.revoked_at.is_none()
            && normalize_origin(origin).is_ok_and(|origin| self.allowed_origins.contains(&origin))
    }
}

impl Engine {
    /// Creates a source; returns it with its write key (shown once).
    pub fn create_source(
        &self,
        name: &str,
        channel: Channel,
        default_region: Option<&str>,
    ) -> Result<(SourceRecord, String, cdp_store::CommitTicket), EngineError> {
        self.create_source_for_origins(name, channel, default_region, &[])
    }

    /// Creates a source whose write key the pages of `allowed_origins` may use.
    pub fn create_source_for_origins(
        &self,
        name: &str,
        channel: Channel,
        default_region: Option<&str>,
        allowed_origins: &[String],
    ) -> Result<(SourceRecord, String, cdp_store::CommitTicket), EngineError> {
        let allowed_origins = normalize_origins(allowed_origins)?;
        let name = name.trim();
        if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
            return Err(EngineError::InvalidRequest(format!(
                "name must be 1 to {MAX_NAME} characters without control characters"
            )));
        }
        let default_region = match default_region {
            None => None,
            Some(region) => {
                let region = region.trim().to_ascii_uppercase();
                if region.len() != 2 || region.parse::<phonenumber::country::Id>().is_err() {
                    return Err(EngineError::InvalidRequest(
                        "default_region must be an ISO 3166 alpha-2 code such as CN or DE".into(),
                    ));
                }
                Some(region)
            }
        };
        let _guard = self.write_lock()?;
        let name_key = [b"name/".as_slice(), name.as_bytes()].concat();
        if self.store().get(Keyspace::Sources, &name_key)?.is_some() {
            return Err(EngineError::Conflict(format!(
                "a source named {name:?} already exists"
            )));
        }
        let id = format!("src_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?));
        let write_key = format!("cdpwk_{}", hex::encode(&cdp_crypto::random_bytes::<24>()?));
        let source = SourceRecord {
            id: id.clone(),
            name: name.to_string(),
            channel,
            default_region,
            created_at: OffsetDateTime::now_utc(),
            key_rotated_at: None,
            revoked_at: None,
            allowed_origins,
        };
        let record_key = [b"src/".as_slice(), id.as_bytes()].concat();
        let sealed = self.seal_system(Keyspace::Sources, &record_key, &source)?;
        let mut batch = WriteBatch::new();
        batch
            .put(Keyspace::Sources, record_key, sealed)
            .put(
                Keyspace::Sources,
                write_key_entry(&write_key),
                id.as_bytes().to_vec(),
            )
            .put(Keyspace::Sources, name_key, id.as_bytes().to_vec());
        let ticket = self.store().commit(batch)?;
        Ok((source, write_key, ticket))
    }

    /// Replaces a source's write key: the old one stops working at once, the new one is
    /// returned (shown once). Refused for a revoked source.
    pub fn rotate_source_key(
        &self,
        id: &str,
    ) -> Result<(SourceRecord, String, cdp_store::CommitTicket), EngineError> {
        self.replace_source_key(id, false)
    }

    /// Revokes a source: its write key stops working at once, for good (the record stays, so
    /// what it ingested keeps its provenance).
    pub fn revoke_source(
        &self,
        id: &str,
    ) -> Result<(SourceRecord, cdp_store::CommitTicket), EngineError> {
        let (source, _, ticket) = self.replace_source_key(id, true)?;
        Ok((source, ticket))
    }

    fn replace_source_key(
        &self,
        id: &str,
        revoke: bool,
    ) -> Result<(SourceRecord, String, cdp_store::CommitTicket), EngineError> {
        let _guard = self.write_lock()?;
        let record_key = [b"src/".as_slice(), id.as_bytes()].concat();
        let mut source: SourceRecord = self
            .get_system(Keyspace::Sources, &record_key)?
            .ok_or_else(|| EngineError::NotFound(format!("source {id}")))?;
        if source.revoked_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "source {id} is revoked: create a new source"
            )));
        }
        let mut batch = WriteBatch::new();
        // The old key's entry: found by the id it points to (sources are few).
        for item in self.store().scan_prefix(Keyspace::Sources, b"wk/") {
            let (key, value) = item?;
            if value == id.as_bytes() {
                batch.delete(Keyspace::Sources, key);
            }
        }
        let now = OffsetDateTime::now_utc();
        let write_key = if revoke {
            source.revoked_at = Some(now);
            String::new()
        } else {
            let write_key = format!("cdpwk_{}", hex::encode(&cdp_crypto::random_bytes::<24>()?));
            batch.put(
                Keyspace::Sources,
                write_key_entry(&write_key),
                id.as_bytes().to_vec(),
            );
            source.key_rotated_at = Some(now);
            write_key
        };
        let sealed = self.seal_system(Keyspace::Sources, &record_key, &source)?;
        batch.put(Keyspace::Sources, record_key, sealed);
        let ticket = self.store().commit(batch)?;
        Ok((source, write_key, ticket))
    }

    /// Replaces the web origins whose pages may use a source's write key (at once, for the
    /// next request). Refused for a revoked source.
    pub fn set_source_origins(
        &self,
        id: &str,
        allowed_origins: &[String],
    ) -> Result<(SourceRecord, cdp_store::CommitTicket), EngineError> {
        let allowed_origins = normalize_origins(allowed_origins)?;
        let _guard = self.write_lock()?;
        let record_key = [b"src/".as_slice(), id.as_bytes()].concat();
        let mut source: SourceRecord = self
            .get_system(Keyspace::Sources, &record_key)?
            .ok_or_else(|| EngineError::NotFound(format!("source {id}")))?;
        if source.revoked_at.is_some() {
            return Err(EngineError::Conflict(format!(
                "source {id} is revoked: create a new source"
            )));
        }
        source.allowed_origins = allowed_origins;
        let sealed = self.seal_system(Keyspace::Sources, &record_key, &source)?;
        let mut batch = WriteBatch::new();
        batch.put(Keyspace::Sources, record_key, sealed);
        let ticket = self.store().commit(batch)?;
        Ok((source, ticket))
    }

    /// Whether some source that is not revoked lists `origin` (a CORS preflight names no
    /// source: the request that follows is checked against its own).
    pub fn origin_allowed_by_any_source(&self, origin: &str) -> Result<bool, EngineError> {
        Ok(self
            .sources()?
            .iter()
            .any(|source| source.allows_origin(origin)))
    }

    /// The source a write key belongs to.
    pub fn source_for_write_key(&self, write_key: &str) -> Result<SourceRecord, EngineError> {
        let id = self
            .store()
            .get(Keyspace::Sources, &write_key_entry(write_key))?
            .ok_or(EngineError::UnknownWriteKey)?;
        let id = String::from_utf8(id).map_err(|_| EngineError::Corrupt("source index".into()))?;
        self.source(&id)?.ok_or(EngineError::UnknownWriteKey)
    }

    pub fn source(&self, id: &str) -> Result<Option<SourceRecord>, EngineError> {
        let key = [b"src/".as_slice(), id.as_bytes()].concat();
        self.get_system(Keyspace::Sources, &key)
    }

    pub fn source_by_name(&self, name: &str) -> Result<Option<SourceRecord>, EngineError> {
        let key = [b"name/".as_slice(), name.as_bytes()].concat();
        match self.store().get(Keyspace::Sources, &key)? {
            Some(id) => self.source(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn sources(&self) -> Result<Vec<SourceRecord>, EngineError> {
        let mut sources = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Sources, b"src/") {
            let (key, sealed) = item?;
            sources.push(self.open_system(Keyspace::Sources, &key, &sealed)?);
        }
        sources.sort_by(|a: &SourceRecord, b| a.name.cmp(&b.name));
        Ok(sources)
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_origin;

    #[test]
    fn origins_are_normalised_as_browsers_send_them() {
        for (given, expected) in [
            ("https://Shop.Example.CN", "https://shop.example.cn"),
            ("https://shop.example.cn/", "https://shop.example.cn"),
            ("https://shop.example.cn:443", "https://shop.example.cn"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://localhost:80", "http://localhost"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("https://[2001:db8::1]", "https://[2001:db8::1]"),
            ("https://xn--fiqs8s.cn", "https://xn--fiqs8s.cn"),
        ] {
            assert_eq!(normalize_origin(given).as_deref(), Ok(expected), "{given}");
        }
    }

    #[test]
    fn what_is_not_an_origin_is_refused() {
        for bad in [
            "shop.example.cn",
            "ftp://shop.example.cn",
            "https://",
            "https://*.example.cn",
            "https://shop.example.cn/path",
            "https://shop.example.cn?x=1",
            "https://user@shop.example.cn",
            "https://shop.example.cn:99999",
            "https://shop.example.cn:",
            "https://shop..cn",
            "https://商店.cn",
            "https://[::1",
            "null",
            "",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
