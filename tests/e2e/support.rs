//! Starting `cdp`, talking HTTP to it, stopping it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CDP: &str = env!("CARGO_BIN_EXE_cdp");

/// A `cdp` command with a clean environment: no CDP_* settings leak in from the developer's shell.
pub fn cdp() -> Command {
    let mut command = Command::new(CDP);
    for (name, _) in std::env::vars() {
        if name.starts_with("CDP_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null());
    command
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("cdp runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `cdp serve`.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `cdp serve` on a free port with JSON logs and waits until it listens.
    pub fn start(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Self, String> {
        let mut command = cdp();
        command
            .args([
                "--log-format",
                "json",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("cdp serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["message"] == "listening"
                    && let Some(addr) = event["addr"].as_str().and_then(|a| a.parse().ok())
                {
                    let _ = addr_tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(addr) = addr_rx.recv_timeout(Duration::from_millis(50)) {
                return Ok(Self { child, addr, logs });
            }
            if let Some(status) = child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                let logs = logs.lock().unwrap().join("\n");
                return Err(format!(
                    "cdp serve exited with {status} before listening:\n{logs}"
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("cdp serve did not start listening within 30 s".into());
            }
        }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the server to stop by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, String) {
        let status = wait_with_timeout(&mut self.child, timeout);
        std::thread::sleep(Duration::from_millis(100));
        (status, self.logs())
    }

    /// Sends a signal (`TERM`, `INT`) and waits for the process to exit.
    pub fn stop_with(mut self, signal: &str) -> (ExitStatus, String) {
        signal_process(self.child.id(), signal);
        let status = wait_with_timeout(&mut self.child, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(100));
        (status, self.logs())
    }

    pub fn get(&self, path: &str) -> Response {
        http(self.addr, "GET", path, &[], b"")
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A management token from `cdp token issue`, run while this server holds the directory.
    pub fn token(&self, data_dir: &Path, roles: &[&str]) -> String {
        let mut command = cdp();
        command.args(["token", "issue", "--data-dir"]).arg(data_dir);
        for role in roles {
            command.args(["--role", role]);
        }
        let output = run(&mut command);
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout).trim().to_string()
    }

    pub fn get_with(&self, path: &str, token: &str) -> Response {
        http(
            self.addr,
            "GET",
            path,
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        )
    }

    pub fn post_with(&self, path: &str, token: &str, body: &serde_json::Value) -> Response {
        self.send_json("POST", path, token, body)
    }

    pub fn patch_with(&self, path: &str, token: &str, body: &serde_json::Value) -> Response {
        self.send_json("PATCH", path, token, body)
    }

    fn send_json(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Response {
        let body = body.to_string();
        http(
            self.addr,
            method,
            path,
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    /// Sends Segment messages with a write key, as an SDK would.
    pub fn ingest(&self, path: &str, write_key: &str, body: &serde_json::Value) -> Response {
        ingest(self.addr, path, write_key, body)
    }

    /// Creates a source with the CLI (a client of this server) and returns its write key.
    pub fn create_source(&self, token: &str, name: &str, channel: &str) -> String {
        let output = run(cdp()
            .args([
                "sources",
                "add",
                "--name",
                name,
                "--channel",
                channel,
                "--default-region",
                "CN",
            ])
            .args(["--server", &self.base_url(), "--token", token]));
        assert!(output.status.success(), "{}", text(&output.stderr));
        let stdout = text(&output.stdout);
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("write key "))
            .unwrap_or_else(|| panic!("no write key in {stdout}"))
            .trim()
            .to_string()
    }

    /// The profile id an identifier resolves to, over the management API.
    pub fn profile_of(&self, token: &str, kind: &str, value: &str) -> Option<String> {
        let response = self.get_with(
            &format!(
                "/v1/profiles/lookup?type={kind}&value={}&purpose=essential.service",
                encode(value)
            ),
            token,
        );
        match response.status {
            200 => Some(response.json()["id"].as_str().unwrap().to_string()),
            404 => None,
            other => panic!("lookup answered {other}: {}", response.text()),
        }
    }
}

pub fn ingest(addr: SocketAddr, path: &str, write_key: &str, body: &serde_json::Value) -> Response {
    use base64::Engine as _;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"));
    let body = body.to_string();
    http(
        addr,
        "POST",
        path,
        &[
            ("Authorization", &format!("Basic {credentials}")),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal_process(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, text(&self.body)))
    }

    pub fn text(&self) -> String {
        text(&self.body)
    }
}

/// A minimal HTTP/1.1 client (`Connection: close`), enough to test our own server without
/// pulling an HTTP client stack into the build.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // The server may answer (413) before reading the whole body and close; that is fine.
    let _ = stream.write_all(body);
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response head in {:?}", text(&raw)));
    let head = text(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Response { status, head, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(text(&data[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cdp-e2e-")
        .tempdir()
        .unwrap()
}

pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Fails if any file under `dir` holds one of `values` in clear (UTF-8, UTF-16LE or UTF-16BE).
pub fn assert_no_clear_values(dir: &Path, values: &[&str]) {
    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files(&path, out)
            } else {
                out.push(path)
            }
        }
    }
    let mut all = Vec::new();
    files(dir, &mut all);
    let mut scanned = 0usize;
    for file in all {
        let bytes = std::fs::read(&file).unwrap();
        scanned += bytes.len();
        assert_bytes_hold_no_clear_values(&bytes, values, &file.display().to_string());
    }
    assert!(scanned > 10_000, "only {scanned} bytes scanned");
}

/// Fails if `bytes` (named `what`) hold one of `values` in UTF-8, UTF-16LE or UTF-16BE.
pub fn assert_bytes_hold_no_clear_values(bytes: &[u8], values: &[&str], what: &str) {
    for value in values {
        let utf16 = |big: bool| -> Vec<u8> {
            value
                .encode_utf16()
                .flat_map(|u| {
                    if big {
                        u.to_be_bytes()
                    } else {
                        u.to_le_bytes()
                    }
                })
                .collect()
        };
        for needle in [value.as_bytes().to_vec(), utf16(false), utf16(true)] {
            assert!(
                memchr::memmem::find(bytes, &needle).is_none(),
                "{what} holds {value:?} in clear"
            );
        }
    }
}

/// A new database on the test cluster `scripts/test` starts (`CDP_TEST_POSTGRES`), with its
/// URL without the password and a file holding the password (as production passes it).
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub password_file: std::path::PathBuf,
    _files: tempfile::TempDir,
}

impl TestDatabase {
    pub fn create() -> Self {
        let admin = postgres_admin_url();
        let name = format!(
            "cdp_e2e_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        postgres_sql(&admin, &format!("CREATE DATABASE {name}"));
        // postgres://USER:PASSWORD@HOST:PORT/postgres
        let rest = admin.split_once("://").unwrap().1;
        let (credentials, host_db) = rest.rsplit_once('@').unwrap();
        let (user, password) = credentials.split_once(':').unwrap();
        let host = host_db.split_once('/').unwrap().0;
        let files = temp_dir();
        let password_file = files.path().join("password");
        std::fs::write(&password_file, format!("{password}\n")).unwrap();
        Self {
            url: format!("postgres://{user}@{host}/{name}"),
            name,
            password_file,
            _files: files,
        }
    }

    /// The password (tests check it never shows).
    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.password_file)
            .unwrap()
            .trim()
            .to_string()
    }

    /// The environment a server or command needs to reach it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "CDP_STORE_PASSWORD_FILE",
            self.password_file.display().to_string(),
        )]
    }

    /// The database's files and the cluster's WAL, after a checkpoint.
    pub fn files_on_disk(&self) -> Vec<std::path::PathBuf> {
        let admin = postgres_admin_url();
        postgres_sql(&admin, "CHECKPOINT");
        let oid: u32 = postgres_runtime().block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client
                .query_one(
                    "SELECT oid FROM pg_database WHERE datname = $1",
                    &[&self.name],
                )
                .await
                .unwrap()
                .get(0)
        });
        let data = std::path::PathBuf::from(std::env::var("CDP_TEST_POSTGRES_DATA").expect(
            "CDP_TEST_POSTGRES_DATA names the test cluster's data directory (./scripts/test sets it)",
        ));
        vec![data.join("base").join(oid.to_string()), data.join("pg_wal")]
    }

    /// `pg_dump` of the database (plain SQL).
    pub fn dump(&self) -> Vec<u8> {
        let bin = std::env::var("CDP_TEST_POSTGRES_BIN").expect(
            "CDP_TEST_POSTGRES_BIN names the test cluster's programs (./scripts/test sets it)",
        );
        let output = Command::new(std::path::Path::new(&bin).join("pg_dump"))
            .arg("--dbname")
            .arg(&self.url)
            .env("PGPASSWORD", self.password())
            .output()
            .expect("pg_dump runs");
        assert!(output.status.success(), "{}", text(&output.stderr));
        output.stdout
    }
}

/// The superuser URL of the test cluster; its absence fails the test with what to run.
pub fn postgres_admin_url() -> String {
    std::env::var("CDP_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "CDP_TEST_POSTGRES is not set: this test needs PostgreSQL. Run the suite with \
             ./scripts/test (it installs PostgreSQL if missing and starts a throw-away cluster), \
             or set CDP_TEST_POSTGRES=postgres://USER:PASSWORD@127.0.0.1:PORT/postgres and \
             CDP_TEST_POSTGRES_DATA / CDP_TEST_POSTGRES_BIN"
        )
    })
}

pub fn postgres_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn postgres_sql(url: &str, statements: &str) {
    postgres_runtime().block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.batch_execute(statements).await.unwrap();
    });
}
