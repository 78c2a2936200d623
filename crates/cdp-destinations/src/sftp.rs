//! SFTP: the export file and its signed manifest uploaded into a directory of the recipient's
//! server, logged in with a key.
//!
//! The platform makes the key pair (Ed25519) when the destination is registered and shows the
//! public half, for the recipient's `authorized_keys`; the private half is sealed in the store
//! and never leaves it. The server's host key is pinned when the destination is registered
//! (the line `ssh-keyscan` prints): a server answering with another key is refused, as a man
//! in the middle would be. Each file is written under a temporary name (`.<name>.partial`) and
//! renamed once complete, so the recipient's loader never reads half a file.

use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::ssh_key::{LineEnding, private::Ed25519Keypair};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use tokio::io::AsyncWriteExt;
use zeroize::Zeroizing;

use crate::DestinationError;

/// Connection, log-in and every SFTP operation, each.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where and as whom files are uploaded.
#[derive(Clone)]
pub struct SftpTarget {
    pub host: String,
    pub port: u16,
    pub username: String,
    /// An absolute directory on the server.
    pub directory: String,
    /// The server's public key, as `ssh-ed25519 AAAA...`.
    pub host_key: String,
    /// The private key, OpenSSH format.
    pub private_key: Zeroizing<String>,
}

impl std::fmt::Debug for SftpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

/// A new Ed25519 key pair: (private key in OpenSSH format, public key line).
pub fn generate_key(comment: &str) -> Result<(Zeroizing<String>, String), DestinationError> {
    let seed = Zeroizing::new(
        cdp_crypto::random_bytes::<32>()
            .map_err(|e| DestinationError::Internal(format!("no randomness for a key: {e}")))?,
    );
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    key.set_comment(comment);
    let private = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| DestinationError::Internal(format!("cannot encode the key: {e}")))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| DestinationError::Internal(format!("cannot encode the key: {e}")))?;
    Ok((Zeroizing::new(private.to_string()), public))
}

/// The public key line of a private key.
pub fn public_key_of(private_key: &str) -> Result<String, DestinationError> {
    let key = PrivateKey::from_openssh(private_key)
        .map_err(|e| DestinationError::Internal(format!("a stored key does not read: {e}")))?;
    key.public_key()
        .to_openssh()
        .map_err(|e| DestinationError::Internal(format!("cannot encode the key: {e}")))
}

/// Checks a pinned host key (`ssh-ed25519 AAAA...`, or a line of `ssh-keyscan` with the host
/// in front) and returns it as `type base64`.
pub fn parse_host_key(line: &str) -> Result<String, DestinationError> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // `host ssh-ed25519 AAAA...` from ssh-keyscan, or `ssh-ed25519 AAAA... comment`.
    let start = fields
        .iter()
        .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-"))
        .ok_or_else(|| {
            DestinationError::Invalid(
                "host_key: not an SSH public key (ssh-ed25519 AAAA..., as ssh-keyscan prints it)"
                    .into(),
            )
        })?;
    let (Some(kind), Some(data)) = (fields.get(start), fields.get(start + 1)) else {
        return Err(DestinationError::Invalid(
            "host_key: the key is missing".into(),
        ));
    };
    let text = format!("{kind} {data}");
    PublicKey::from_openssh(&text)
        .map_err(|e| DestinationError::Invalid(format!("host_key: {e}")))?;
    Ok(text)
}

/// Checks a remote directory: absolute, no `..`, printable.
pub fn validate_directory(directory: &str) -> Result<(), DestinationError> {
    if !directory.starts_with('/')
        || directory.split('/').any(|part| part == "..")
        || directory.len() > 1024
        || directory.chars().any(char::is_control)
    {
        return Err(DestinationError::Invalid(
            "directory: an absolute path on the server, without ..".into(),
        ));
    }
    Ok(())
}

/// Checks a host name or address.
pub fn validate_host(host: &str) -> Result<(), DestinationError> {
    if host.is_empty()
        || host.len() > 253
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
    {
        return Err(DestinationError::Invalid(
            "host: a host name or an IP address".into(),
        ));
    }
    Ok(())
}

struct PinnedHost {
    expected: PublicKey,
    seen: Option<String>,
}

impl client::Handler for PinnedHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_public_key else {
            self.seen = Some("a certificate".into());
            return Ok(false);
        };
        self.seen = key.to_openssh().ok();
        Ok(key.key_data() == self.expected.key_data())
    }
}

/// Uploads `files` (name, bytes) into the target's directory; blocking (runs a small runtime
/// of its own). Nothing of a file is visible under its name until it is complete.
pub fn upload(target: &SftpTarget, files: &[(String, Vec<u8>)]) -> Result<(), DestinationError> {
    block_on_timeout(upload_async(target, files))
}

/// Logs in and opens the SFTP subsystem.
async fn open_session(
    target: &SftpTarget,
) -> Result<(client::Handle<PinnedHost>, SftpSession, String), DestinationError> {
    let expected = PublicKey::from_openssh(&target.host_key)
        .map_err(|e| DestinationError::Invalid(format!("host_key: {e}")))?;
    let key = PrivateKey::from_openssh(target.private_key.as_str())
        .map_err(|e| DestinationError::Internal(format!("a stored key does not read: {e}")))?;
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(TIMEOUT),
        ..Default::default()
    });
    let at = format!("{}:{}", target.host, target.port);
    let handler = PinnedHost {
        expected,
        seen: None,
    };
    let connect = client::connect(config, (target.host.as_str(), target.port), handler);
    let mut session = match tokio::time::timeout(TIMEOUT, connect).await {
        Err(_) => return Err(DestinationError::Unreachable(format!("{at}: no answer"))),
        Ok(Err(russh::Error::UnknownKey)) => {
            return Err(DestinationError::Refused(format!(
                "{at} answered with a host key other than the pinned one: refused (a changed server or a man in the middle; register its new key if it changed)"
            )));
        }
        Ok(Err(e)) => return Err(DestinationError::Unreachable(format!("{at}: {e}"))),
        Ok(Ok(session)) => session,
    };
    let auth = session
        .authenticate_publickey(
            target.username.clone(),
            PrivateKeyWithHashAlg::new(Arc::new(key), None),
        )
        .await
        .map_err(|e| DestinationError::Unreachable(format!("{at}: {e}")))?;
    if !auth.success() {
        return Err(DestinationError::Refused(format!(
            "{at} refused the key for {}: add the destination's public key to that user's authorized_keys",
            target.username
        )));
    }
    let channel = session
        .channel_open_session()
        .await
        .map_err(|e| DestinationError::Unreachable(format!("{at}: {e}")))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| DestinationError::Unreachable(format!("{at}: no SFTP: {e}")))?;
    let sftp = SftpSession::new(channel.into_stream())
        .await
        .map_err(|e| DestinationError::Unreachable(format!("{at}: no SFTP: {e}")))?;
    Ok((session, sftp, at))
}

async fn close(session: client::Handle<PinnedHost>, sftp: SftpSession) {
    let _ = sftp.close().await;
    let _ = session
        .disconnect(russh::Disconnect::ByApplication, "done", "en")
        .await;
}

/// Checks that the platform can log in and that the directory is there, writing nothing.
pub fn check(target: &SftpTarget) -> Result<(), DestinationError> {
    block_on_timeout(async {
        let (session, sftp, at) = open_session(target).await?;
        let directory = target.directory.trim_end_matches('/');
        let found = sftp
            .metadata(if directory.is_empty() { "/" } else { directory })
            .await;
        close(session, sftp).await;
        match found {
            Ok(metadata) if metadata.is_dir() => Ok(()),
            Ok(_) => Err(DestinationError::Refused(format!(
                "{at}: {} is not a directory",
                target.directory
            ))),
            Err(e) => Err(DestinationError::Refused(format!(
                "{at}: cannot see {}: {e}",
                target.directory
            ))),
        }
    })
}

fn block_on_timeout<F: std::future::Future<Output = Result<(), DestinationError>>>(
    work: F,
) -> Result<(), DestinationError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DestinationError::Internal(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async {
        tokio::time::timeout(TIMEOUT * 4, work)
            .await
            .map_err(|_| DestinationError::Unreachable("the server took too long".into()))?
    })
}

async fn upload_async(
    target: &SftpTarget,
    files: &[(String, Vec<u8>)],
) -> Result<(), DestinationError> {
    let (session, sftp, at) = open_session(target).await?;
    let directory = target.directory.trim_end_matches('/');
    for (name, bytes) in files {
        let partial = format!("{directory}/.{name}.partial");
        let done = format!("{directory}/{name}");
        let failed = |e: russh_sftp::client::error::Error| {
            DestinationError::Refused(format!("{at}: cannot write {done}: {e}"))
        };
        let mut file = sftp.create(&partial).await.map_err(failed)?;
        for piece in bytes.chunks(32 * 1024) {
            file.write_all(piece)
                .await
                .map_err(|e| DestinationError::Unreachable(format!("{at}: writing {done}: {e}")))?;
        }
        file.shutdown()
            .await
            .map_err(|e| DestinationError::Unreachable(format!("{at}: writing {done}: {e}")))?;
        // SFTP's rename does not replace: an earlier try's complete file goes first.
        if sftp.try_exists(&done).await.unwrap_or(false) {
            sftp.remove_file(&done).await.map_err(failed)?;
        }
        sftp.rename(&partial, &done).await.map_err(failed)?;
    }
    close(session, sftp).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_reads_back_and_its_public_half_matches() {
        let (private, public) = generate_key("cdp-dst_test").unwrap_or_else(|e| panic!("{e}"));
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        assert!(private.contains("OPENSSH PRIVATE KEY"));
        assert_eq!(public_key_of(&private).unwrap_or_default(), public);
        assert_eq!(
            parse_host_key(&format!("127.0.0.1 {public}")).unwrap_or_default(),
            public
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    #[test]
    fn bad_host_keys_and_directories_are_refused() {
        assert!(parse_host_key("hello").is_err());
        assert!(parse_host_key("ssh-ed25519 notbase64!").is_err());
        assert!(validate_directory("relative/path").is_err());
        assert!(validate_directory("/in/../out").is_err());
        assert!(validate_directory("/srv/cdp/inbox").is_ok());
        assert!(validate_host("sftp.example.com").is_ok());
        assert!(validate_host("a b").is_err());
    }
}
