//! The SFTP destination against OpenSSH's sshd, started by the test on 127.0.0.1 with its own
//! host key and authorized_keys (`scripts/openssh` installs it). The helpers are
//! `destinations.rs`'.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::destinations::{
    cli, e164, people, recipient_and_audience, wait_delivery, wait_for_count,
};
use crate::support::{Server, temp_dir};

/// OpenSSH's sshd on 127.0.0.1, run by the test with its own host key, configuration and
/// authorized_keys, logging in the user the test runs as.
struct Sshd {
    child: Child,
    port: u16,
    host_key: String,
    authorized_keys: PathBuf,
    user: String,
}

impl Sshd {
    fn start(dir: &Path) -> Self {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "the SFTP tests need OpenSSH's server: run scripts/openssh (Debian: apt-get install openssh-server)"
        );
        let keygen = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join("host_key"))
            .output()
            .expect("ssh-keygen");
        assert!(
            keygen.status.success(),
            "{}",
            String::from_utf8_lossy(&keygen.stderr)
        );
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        // Privilege separation needs its directory when sshd runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let authorized_keys = dir.join("authorized_keys");
        std::fs::write(&authorized_keys, "").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
                dir.join("host_key").display(),
                authorized_keys.display(),
                dir.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(std::fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .expect("sshd");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen: {}",
                std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let host_key = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
        Self {
            child,
            port,
            host_key: host_key.trim().to_string(),
            authorized_keys,
            user,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sftp_uploads_the_file_and_its_manifest_with_a_key_and_refuses_an_unknown_host_key() {
    let dir = temp_dir();
    let work = temp_dir();
    let sshd = Sshd::start(work.path());
    let inbox = work.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let marketer = server.token(dir.path(), &["marketer"]);
    people(&server, &admin, 0..22, 22);
    wait_for_count(&server, &marketer, 22);
    let (recipient, audience) = recipient_and_audience(&server, &admin);
    let sftp = |host_key: &str| {
        server.post_with("/v1/destinations", &admin, &json!({"name": "SFTP inbox", "recipient": recipient,
            "kind": "sftp", "host": "127.0.0.1", "port": sshd.port, "username": sshd.user,
            "directory": inbox.display().to_string(), "host_key": host_key, "max_attempts": 2, "retry_base_ms": 200}))
    };
    let refused = sftp("not a key");
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(refused.text().contains("host_key"), "{}", refused.text());
    let created = sftp(&format!("127.0.0.1 {}", sshd.host_key));
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    let public_key = created["public_key"].as_str().unwrap();
    assert!(public_key.starts_with("ssh-ed25519 "), "{created}");
    assert!(created.get("secret").is_none() && !created.to_string().contains("PRIVATE KEY"));
    std::fs::write(&sshd.authorized_keys, format!("{public_key}\n")).unwrap();

    let tested = server.post_with(
        &format!("/v1/destinations/{}/test", created["id"].as_str().unwrap()),
        &admin,
        &json!({}),
    );
    assert_eq!(tested.json()["ok"], true, "{}", tested.text());
    // The CLI exports, downloads and waits for the delivery.
    let downloaded = work.path().join("download.csv");
    let said = cli(
        &server,
        &marketer,
        &[
            "export",
            "create",
            "--audience",
            &audience,
            "--purpose",
            "marketing.sms",
            "--recipient",
            &recipient,
            "--field",
            "pseudonym",
            "--field",
            "identifiers.phone",
            "--out",
            downloaded.to_str().unwrap(),
            "--destination",
            created["id"].as_str().unwrap(),
        ],
    );
    assert!(said.contains("delivered in 1 batches"), "{said}");
    let export = said
        .split_whitespace()
        .find(|w| w.starts_with("exp_"))
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    let delivery = wait_delivery(&server, &marketer, &export, Duration::from_secs(60));
    assert_eq!(
        delivery["state"],
        "delivered",
        "{delivery}\n{}",
        std::fs::read_to_string(work.path().join("sshd.log")).unwrap_or_default()
    );
    let file = std::fs::read(inbox.join(format!("{export}.csv"))).unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(inbox.join(format!("{export}.manifest.json"))).unwrap(),
    )
    .unwrap();
    // The file is the one the signed manifest describes, byte for byte.
    let mut digest = cdp_crypto::Sha256Stream::default();
    digest.update(&file);
    assert_eq!(manifest["file_sha256"], digest.finish_hex());
    assert_eq!(manifest["file_bytes"], file.len() as u64);
    let text = String::from_utf8(file).unwrap();
    assert_eq!(text.lines().count(), 23, "header and 22 rows: {text}");
    assert!(text.contains(&e164(0)));
    // No partial file was left behind.
    let names: Vec<String> = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // A server answering with another host key is refused, never sent to.
    let other = work.path().join("other_key");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .output()
        .unwrap();
    let impostor = sftp(
        std::fs::read_to_string(other.with_extension("pub"))
            .unwrap()
            .trim(),
    );
    assert_eq!(impostor.status, 201, "{}", impostor.text());
    let tested = server.post_with(
        &format!(
            "/v1/destinations/{}/test",
            impostor.json()["id"].as_str().unwrap()
        ),
        &admin,
        &json!({}),
    );
    assert_eq!(tested.json()["ok"], false, "{}", tested.text());
    assert!(tested.text().contains("host key"), "{}", tested.text());
    let export = server.post_with(
        "/v1/exports",
        &marketer,
        &json!({"audience": audience,
        "purpose": "marketing.sms", "recipient": recipient, "fields": ["pseudonym"],
        "destination": impostor.json()["id"]}),
    );
    let export = export.json()["id"].as_str().unwrap().to_string();
    let delivery = wait_delivery(&server, &marketer, &export, Duration::from_secs(60));
    assert_eq!(delivery["state"], "failed", "{delivery}");
    assert!(
        delivery["batches"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("host key"),
        "{delivery}"
    );
    assert!(!inbox.join(format!("{export}.csv")).exists());
}
