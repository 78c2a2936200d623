//! The store in PostgreSQL (issue 18): `cdp serve --store postgres://...` keeps people across
//! restarts, the database's files and a dump hold nothing personal in clear, a wrong password
//! or an unreachable server is named without the password, and a data directory's store
//! copied up with `cdp store copy` answers the same. Against the throw-away cluster
//! `./scripts/test` starts.

use serde_json::json;

use crate::support::{
    Server, TestDatabase, assert_bytes_hold_no_clear_values, cdp, run, temp_dir, text,
};

const EMAIL: &str = "zz.pg.marker.4711@example.com";
const PHONE: &str = "+8613812344711";
const NAME: &str = "欧阳娜娜";
const USER_ID: &str = "pg-marker-user-4711";

fn start_on(database: &TestDatabase, dir: &std::path::Path) -> Result<Server, String> {
    let env = database.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start(dir, &["--store", &database.url], &env)
}

/// Sends one person's identify and order, with every marker.
fn send_person(server: &Server, write_key: &str) {
    let batch = json!({"batch": [
        {"type": "identify", "userId": USER_ID, "messageId": "pg-1",
         "traits": {"email": EMAIL, "phone": PHONE, "name": NAME}},
        {"type": "track", "userId": USER_ID, "event": "Order Completed", "messageId": "pg-2",
         "properties": {"order_id": "o-4711", "revenue": 88.5, "currency": "CNY"}},
    ]});
    let response = server.ingest("/v1/batch", write_key, &batch);
    assert_eq!(response.status, 200, "{}", response.text());
}

/// The profile as the service desk sees it, without what changes between reads.
fn profile_view(server: &Server, token: &str, id: &str) -> serde_json::Value {
    let response = server.get_with(
        &format!("/v1/profiles/{id}?purpose=essential.service"),
        token,
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let mut profile = response.json();
    profile.as_object_mut().unwrap().remove("computed");
    profile
}

#[test]
fn a_server_on_postgres_keeps_people_across_restarts_and_the_database_holds_nothing_in_clear() {
    let database = TestDatabase::create();
    let dir = temp_dir();
    let server = start_on(&database, dir.path()).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "web", "web");
    send_person(&server, &key);
    let id = server
        .profile_of(&admin, "email", EMAIL)
        .expect("the person resolves");
    assert_eq!(
        server.profile_of(&admin, "user_id", USER_ID).as_deref(),
        Some(id.as_str())
    );
    let before = profile_view(&server, &admin, &id);
    let (status, logs) = server.stop_with("TERM");
    assert!(status.success(), "{logs}");
    assert!(
        !logs.contains(&database.password()),
        "the password reached the log"
    );
    assert!(
        !dir.path().join("lsm").exists() && !dir.path().join("store").exists(),
        "no embedded store beside the database"
    );

    let server = start_on(&database, dir.path()).unwrap();
    assert_eq!(
        server.profile_of(&admin, "phone", PHONE).as_deref(),
        Some(id.as_str())
    );
    assert_eq!(profile_view(&server, &admin, &id), before);
    assert!(server.stop_with("TERM").0.success());

    let markers = [EMAIL, PHONE, NAME, USER_ID];
    let mut scanned = 0;
    for place in database.files_on_disk() {
        for file in files_under(&place) {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            scanned += bytes.len();
            assert_bytes_hold_no_clear_values(&bytes, &markers, &file.display().to_string());
        }
    }
    assert!(
        scanned > 1_000_000,
        "only {scanned} bytes of database files"
    );
    let dump = database.dump();
    assert!(
        String::from_utf8_lossy(&dump).contains("cdp_store"),
        "the dump holds the store's table"
    );
    assert_bytes_hold_no_clear_values(&dump, &markers, "pg_dump's output");
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn a_wrong_password_or_an_unreachable_server_is_named_without_the_password() {
    let database = TestDatabase::create();
    let dir = temp_dir();
    let wrong = temp_dir();
    let wrong_file = wrong.path().join("password");
    std::fs::write(&wrong_file, "not-the-password-4711\n").unwrap();
    let message = Server::start(
        dir.path(),
        &["--store", &database.url],
        &[("CDP_STORE_PASSWORD_FILE", wrong_file.to_str().unwrap())],
    )
    .err()
    .expect("a wrong password refuses the start");
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains("not-the-password-4711"), "{message}");

    // Nothing listens on port 1.
    let unreachable = database.url.replace(
        &database.url[database.url.find('@').unwrap()..database.url.rfind('/').unwrap()],
        "@127.0.0.1:1",
    );
    let env = database.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let message = Server::start(dir.path(), &["--store", &unreachable], &env)
        .err()
        .expect("an unreachable database refuses the start");
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains(&database.password()), "{message}");
}

#[test]
fn a_data_directory_store_copied_into_postgres_answers_the_same() {
    let source = temp_dir();
    let (id, before) = {
        let server = Server::start(source.path(), &[], &[]).unwrap();
        let admin = server.token(source.path(), &["admin"]);
        let key = server.create_source(&admin, "web", "web");
        send_person(&server, &key);
        let id = server.profile_of(&admin, "email", EMAIL).unwrap();
        let before = profile_view(&server, &admin, &id);
        assert!(server.stop_with("TERM").0.success());
        (id, before)
    };
    let database = TestDatabase::create();
    let nodes = temp_dir();
    let node_dir = nodes.path().join("node-1");
    let mut command = cdp();
    command
        .args(["store", "copy", "--from"])
        .arg(source.path())
        .args(["--to", &database.url, "--data-dir"])
        .arg(&node_dir);
    for (name, value) in database.env() {
        command.env(name, value);
    }
    let output = run(&mut command);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("counts and digests verified"), "{stdout}");
    assert!(!stdout.contains(&database.password()), "{stdout}");

    let server = start_on(&database, &node_dir).unwrap();
    let admin = server.token(&node_dir, &["admin"]);
    assert_eq!(
        server.profile_of(&admin, "email", EMAIL).as_deref(),
        Some(id.as_str())
    );
    assert_eq!(profile_view(&server, &admin, &id), before);
    // The search index was built from the database at start: the buyer is counted.
    let marketer = server.token(&node_dir, &["marketer"]);
    let count = server.post_with(
        "/v1/audiences/count",
        &marketer,
        &json!({"query": "orders_total>=1", "purpose": "analytics"}),
    );
    assert!(server.stop_with("TERM").0.success());
    assert_eq!(count.status, 200, "{}", count.text());
    assert_eq!(count.json()["matched"], 1, "{}", count.text());

    // The old directory, still holding its store, is refused beside the database.
    let message = start_on(&database, source.path())
        .err()
        .expect("an embedded store beside the database is refused");
    assert!(message.contains("cdp store copy"), "{message}");
}

/// A cluster of this test's own (the restart would cut every other test's connections).
struct PrivateCluster {
    dir: std::path::PathBuf,
    admin: String,
    data: String,
    bin: String,
}

impl PrivateCluster {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cdp-e2e-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let output = run(std::process::Command::new(script()).arg("start").arg(&dir));
        assert!(output.status.success(), "{}", text(&output.stderr));
        let exports = text(&output.stdout);
        let value = |name: &str| {
            exports
                .lines()
                .find_map(|line| line.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} missing from {exports}"))
                .to_string()
        };
        Self {
            admin: value("CDP_TEST_POSTGRES"),
            data: value("CDP_TEST_POSTGRES_DATA"),
            bin: value("CDP_TEST_POSTGRES_BIN"),
            dir,
        }
    }

    /// `pg_ctl stop -m fast` or `pg_ctl start`, as the cluster's owner.
    fn control(&self, action: &str) {
        let pg_ctl = format!("{}/pg_ctl", self.bin);
        let owner = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&self.data).unwrap().uid()
        };
        let mut command = if owner == 0
            || text(&run(std::process::Command::new("id").arg("-u")).stdout).trim() != "0"
        {
            std::process::Command::new(&pg_ctl)
        } else {
            let name = text(
                &run(std::process::Command::new("id").args(["-nu", &owner.to_string()])).stdout,
            )
            .trim()
            .to_string();
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", &name, "--", &pg_ctl]);
            command
        };
        // -l: without it the new server writes to pg_ctl's output, which `run` waits to close.
        let log = self.dir.join("server.log");
        command
            .args(["-D", &self.data, "-m", "fast", "-w", "-l"])
            .arg(&log);
        if action == "start" {
            // The port and settings `scripts/postgres start` chose.
            let options = std::fs::read_to_string(self.dir.join("server.options")).unwrap();
            command.args(["-o", options.trim()]);
        }
        let output = run(command.arg(action));
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres")
}

/// PostgreSQL restarted during ingest: while it is away new writes get 503 and `/readyz`
/// says so, no write is acknowledged that was not committed, every acknowledged one is there
/// afterwards, and the server reconnects by itself.
#[test]
fn a_postgres_restart_during_ingest_gives_503_for_the_gap_and_loses_nothing_acknowledged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let cluster = PrivateCluster::start();
    crate::support::postgres_sql(&cluster.admin, "CREATE DATABASE restart_test");
    let (credentials, host) = cluster
        .admin
        .split_once("://")
        .unwrap()
        .1
        .rsplit_once('@')
        .map(|(c, rest)| (c.to_string(), rest.split_once('/').unwrap().0.to_string()))
        .unwrap();
    let (user, password) = credentials.split_once(':').unwrap();
    let files = temp_dir();
    let password_file = files.path().join("password");
    std::fs::write(&password_file, password).unwrap();
    let url = format!("postgres://{user}@{host}/restart_test");
    let dir = temp_dir();
    let server = Server::start(
        dir.path(),
        &["--store", &url],
        &[("CDP_STORE_PASSWORD_FILE", password_file.to_str().unwrap())],
    )
    .unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "web", "web");

    let stop = Arc::new(AtomicBool::new(false));
    // The user ids of acknowledged batches (each batch is ten events of one person).
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u32>::new()));
    let addr = server.addr;
    let send = {
        let (acknowledged, statuses, key) = (acknowledged.clone(), statuses.clone(), key.clone());
        move |user: String| {
            let messages: Vec<_> = (0..10)
                .map(|i| json!({"type": "track", "userId": user, "event": "Beat", "messageId": format!("{user}-{i}")}))
                .collect();
            let response =
                crate::support::ingest(addr, "/v1/batch", &key, &json!({ "batch": messages }));
            *statuses.lock().unwrap().entry(response.status).or_default() += 1;
            if response.status == 200 {
                acknowledged.lock().unwrap().push(user);
            }
        }
    };
    let sender = {
        let (stop, send) = (stop.clone(), send.clone());
        std::thread::spawn(move || {
            let mut batch = 0u32;
            while !stop.load(Ordering::Relaxed) {
                send(format!("restart-{batch}"));
                batch += 1;
            }
        })
    };
    let unready = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, unready) = (stop.clone(), unready.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if crate::support::http(addr, "GET", "/readyz", &[], b"").status == 503 {
                    unready.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let before = acknowledged.lock().unwrap().len();
    cluster.control("stop");
    // While the database is away, a write already in a group waits for it (and is answered
    // once it is back); new writes are refused. The single sender may be the one waiting, so
    // fresh requests probe the gap, each on its own thread, until one is refused.
    let mut probes = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !statuses.lock().unwrap().contains_key(&503) && std::time::Instant::now() < deadline {
        let send = send.clone();
        let user = format!("probe-{}", probes.len());
        probes.push(std::thread::spawn(move || send(user)));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let gap = statuses.lock().unwrap().clone();
    cluster.control("start");
    // Writes resume by themselves.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let resumed_from = acknowledged.lock().unwrap().len();
    while acknowledged.lock().unwrap().len() < resumed_from + 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "writes did not resume after the restart: {:?}\n{}",
            statuses.lock().unwrap(),
            server.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    watcher.join().unwrap();
    for probe in probes {
        probe.join().unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    assert!(before >= 5, "only {before} batches before the restart");
    assert!(
        statuses
            .keys()
            .all(|status| *status == 200 || *status == 503),
        "only 200 and 503 are expected: {statuses:?}"
    );
    assert!(gap.contains_key(&503), "the gap gave no 503: {gap:?}");
    assert!(
        unready.load(Ordering::Relaxed),
        "/readyz never reported the outage"
    );
    assert_eq!(
        crate::support::http(addr, "GET", "/readyz", &[], b"").status,
        200,
        "ready again"
    );

    for user in acknowledged.lock().unwrap().iter() {
        let profile = server
            .profile_of(&admin, "user_id", user)
            .unwrap_or_else(|| panic!("acknowledged batch of {user} is missing"));
        let events = server
            .get_with(
                &format!("/v1/profiles/{profile}/events?purpose=essential.service"),
                &admin,
            )
            .json();
        assert_eq!(
            events["events"].as_array().unwrap().len(),
            10,
            "{user}: {events}"
        );
    }
    let (status, logs) = server.stop_with("TERM");
    assert!(status.success(), "{logs}");
    assert!(!logs.contains(password), "the password reached the log");
}

/// `sslmode=require` (here libpq's `verify-full`) encrypts every connection and verifies the
/// server's certificate: against the test's CA (`CDP_STORE_CA_FILE`) it connects, and the
/// server's own view (`pg_stat_ssl`) shows TLS on each of cdp's sessions; without it the
/// certificate chains to nothing trusted and the start is refused, naming the host.
#[test]
fn sslmode_require_uses_verified_tls_and_refuses_an_unknown_authority() {
    let database = TestDatabase::create();
    let ca = std::env::var("CDP_TEST_POSTGRES_CA").expect(
        "CDP_TEST_POSTGRES_CA names the test cluster's CA certificate (./scripts/test sets it)",
    );
    let url = format!("{}?sslmode=verify-full", database.url);
    let dir = temp_dir();
    let password_file = database.password_file.display().to_string();
    let message = Server::start(
        dir.path(),
        &["--store", &url],
        &[("CDP_STORE_PASSWORD_FILE", &password_file)],
    )
    .err()
    .expect("a certificate of an unknown authority refuses the start");
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    let server = Server::start(
        dir.path(),
        &["--store", &url],
        &[
            ("CDP_STORE_PASSWORD_FILE", &password_file),
            ("CDP_STORE_CA_FILE", &ca),
        ],
    )
    .unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "web", "web");
    send_person(&server, &key);
    assert!(server.profile_of(&admin, "email", EMAIL).is_some());
    let (encrypted, sessions): (bool, i64) = crate::support::postgres_runtime().block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&crate::support::postgres_admin_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT coalesce(bool_and(s.ssl), false), count(*) FROM pg_stat_ssl s \
                     JOIN pg_stat_activity a USING (pid) \
                     WHERE a.datname = $1 AND a.application_name = 'cdp'",
                &[&database.name],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    });
    assert!(server.stop_with("TERM").0.success());
    assert!(sessions >= 2, "{sessions} sessions of cdp");
    assert!(encrypted, "a session of cdp is not encrypted");
}

/// `cdp keys rewrap` and `retire` on a store in PostgreSQL: a person and a source written
/// under key version 2 are read after version 2 left the key file.
#[test]
fn key_versions_are_rewrapped_and_retired_on_postgres() {
    let database = TestDatabase::create();
    let dir = temp_dir();
    let key = dir.path().join("master.key");
    assert!(
        run(cdp().args(["keys", "init", "--key-file"]).arg(&key))
            .status
            .success()
    );
    let env = database.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = [
        "--store",
        &database.url,
        "--key-file",
        key.to_str().unwrap(),
    ];
    let first = Server::start(dir.path(), &args, &env).unwrap();
    let admin = first.token(dir.path(), &["admin"]);
    first.create_source(&admin, "before", "web");
    assert!(first.stop_with("TERM").0.success());
    assert!(
        run(cdp().args(["keys", "rotate", "--key-file"]).arg(&key))
            .status
            .success()
    );
    let second = Server::start(dir.path(), &args, &env).unwrap();
    let write_key = second.create_source(&admin, "under-v2", "web");
    send_person(&second, &write_key);
    assert!(second.stop_with("TERM").0.success());
    assert!(
        run(cdp().args(["keys", "rotate", "--key-file"]).arg(&key))
            .status
            .success()
    );

    let keys = |extra: &[&str]| {
        let mut command = cdp();
        command
            .arg("keys")
            .args(extra)
            .args([
                "--store",
                &database.url,
                "--key-file",
                key.to_str().unwrap(),
            ])
            .arg("--data-dir")
            .arg(dir.path());
        for (name, value) in &env {
            command.env(name, value);
        }
        run(&mut command)
    };
    let rewrap = keys(&["rewrap"]);
    assert!(rewrap.status.success(), "{}", text(&rewrap.stderr));
    assert!(
        text(&rewrap.stdout).contains("rewrapped 1 data keys"),
        "{}",
        text(&rewrap.stdout)
    );
    let retire = keys(&["retire", "--version", "2"]);
    assert!(retire.status.success(), "{}", text(&retire.stderr));

    let third = Server::start(dir.path(), &args, &env).unwrap();
    assert!(third.profile_of(&admin, "email", EMAIL).is_some());
    let sources = third.get_with("/v1/sources", &admin).json();
    assert_eq!(sources.as_array().map(Vec::len), Some(2), "{sources}");
    assert!(third.stop_with("TERM").0.success());
}
