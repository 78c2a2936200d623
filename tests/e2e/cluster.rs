//! Several `cdp serve` nodes on one PostgreSQL database (issue 18, "several nodes, one
//! truth"): events about the same people sent to two nodes at once give exactly the people
//! one node gives; an audience count on one node sees a write acknowledged by the other
//! within 2 s; a node killed mid-ingest loses nothing it acknowledged and the other keeps
//! answering. Against the throw-away cluster `./scripts/test` starts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, TestDatabase, temp_dir};

/// A node of the cluster: its own data directory, the database's URL, `--cluster`, `extra`.
fn start_node(database: &TestDatabase, dir: &Path, extra: &[&str]) -> Server {
    let env = database.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec!["--store", database.url.as_str(), "--cluster"];
    args.extend_from_slice(extra);
    Server::start(dir, &args, &env).unwrap()
}

/// Two nodes on `database` sharing their keys, and an admin token both accept. Bind every
/// field: a data directory left out of a pattern is deleted under its running node.
struct TwoNodes {
    a: Server,
    b: Server,
    dir_a: tempfile::TempDir,
    dir_b: tempfile::TempDir,
    admin: String,
}

fn two_nodes(database: &TestDatabase, extra: &[&str]) -> TwoNodes {
    let (dir_a, dir_b) = (temp_dir(), temp_dir());
    let a = start_node(database, dir_a.path(), extra);
    share_keys(dir_a.path(), dir_b.path());
    let b = start_node(database, dir_b.path(), extra);
    let admin = a.token(dir_a.path(), &["admin"]);
    TwoNodes {
        a,
        b,
        dir_a,
        dir_b,
        admin,
    }
}

/// The second node gets the first one's keys (every node seals with the same master key and
/// checks the same tokens).
fn share_keys(from: &Path, to: &Path) {
    for name in ["master.key", "token.key"] {
        let source = from.join("keys").join(name);
        let target = to.join("keys").join(name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&source, &target).unwrap();
    }
}

/// A small deterministic generator (xorshift), so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Every identifier of the world, as (type, value).
type Identifier = (&'static str, String);

/// Events about `people` people whose identifiers link only through several events: an
/// anonymous visit, its identify, a second device identified by e-mail, a login with phone
/// and e-mail, orders; every seventh person shares a household phone with the next one
/// (merge protection decides what that does, the same way on every node).
fn world(people: usize, seed: u64) -> (Vec<Value>, Vec<Identifier>) {
    let mut rng = Rng(seed);
    let mut events = Vec::new();
    let mut identifiers = Vec::new();
    for p in 0..people {
        let user = format!("cl-user-{p}");
        let email = format!("cl.person.{p}@example.com");
        let phone = format!("+86139{:08}", 10_000_000 + p);
        let household = format!("+86139{:08}", 10_000_000 + p + 1);
        let (first, second) = (format!("cl-anon-{p}-a"), format!("cl-anon-{p}-b"));
        identifiers.extend([
            ("user_id", user.clone()),
            ("email", email.clone()),
            ("phone", phone.clone()),
            ("anonymous_id", first.clone()),
            ("anonymous_id", second.clone()),
        ]);
        let id = |n: usize| format!("cl-{p}-{n}");
        events.push(
            json!({"type": "page", "anonymousId": first, "name": "Home", "messageId": id(0)}),
        );
        events.push(
            json!({"type": "identify", "anonymousId": first, "userId": user, "messageId": id(1)}),
        );
        events.push(json!({"type": "identify", "anonymousId": second, "traits": {"email": email}, "messageId": id(2)}));
        events.push(json!({"type": "identify", "userId": user, "traits": {"phone": phone, "email": email}, "messageId": id(3)}));
        for n in 0..(2 + rng.below(3)) {
            events.push(json!({"type": "track", "userId": user, "event": "Order Completed",
                "messageId": id(10 + n),
                "properties": {"order_id": format!("o-{p}-{n}"), "revenue": 10 + n, "currency": "CNY"}}));
        }
        if p % 7 == 0 {
            events.push(json!({"type": "identify", "anonymousId": second, "traits": {"phone": household}, "messageId": id(4)}));
        }
    }
    // Event times fixed by the sender (as SDKs send them): the arrival order then decides
    // nothing (identity rules with time windows go by event time).
    for (n, event) in events.iter_mut().enumerate() {
        let at =
            time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_780_000_000 + n as i64);
        event["timestamp"] = json!(
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        );
    }
    rng.shuffle(&mut events);
    (events, identifiers)
}

/// Sends `events` in batches of `per_request` from `clients` threads to `server`, asserting
/// every request is acknowledged.
fn send_all(server: &Server, key: &str, events: &[Value], clients: usize, per_request: usize) {
    let batches: Vec<Vec<Value>> = events.chunks(per_request).map(<[Value]>::to_vec).collect();
    std::thread::scope(|scope| {
        for client in 0..clients {
            let batches = &batches;
            scope.spawn(move || {
                for batch in batches.iter().skip(client).step_by(clients) {
                    let response = server.ingest("/v1/batch", key, &json!({ "batch": batch }));
                    assert_eq!(response.status, 200, "{}", response.text());
                }
            });
        }
    });
}

/// The people as sets of identifiers (the partition), read through `server`'s lookups.
fn partition(
    server: &Server,
    token: &str,
    identifiers: &[Identifier],
) -> BTreeSet<BTreeSet<String>> {
    let mut people: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (kind, value) in identifiers {
        let id = server
            .profile_of(token, kind, value)
            .unwrap_or_else(|| panic!("{kind} {value} belongs to nobody"));
        people
            .entry(id)
            .or_default()
            .insert(format!("{kind}:{value}"));
    }
    people.into_values().collect()
}

fn count_buyers(server: &Server, token: &str) -> u64 {
    let response = server.post_with(
        "/v1/audiences/count",
        token,
        &json!({"query": "orders_total>=1", "purpose": "analytics"}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["matched"].as_u64().unwrap()
}

#[test]
fn two_nodes_ingesting_the_same_people_at_once_give_the_people_one_node_gives() {
    let (events, identifiers) = world(400, 0x5eed_0018);
    assert!(events.len() > 2_500, "{}", events.len());

    // One node, embedded store: the reference.
    let reference = {
        let dir = temp_dir();
        let server = Server::start(dir.path(), &[], &[]).unwrap();
        let admin = server.token(dir.path(), &["admin"]);
        let key = server.create_source(&admin, "web", "web");
        send_all(&server, &key, &events, 2, 25);
        let people = partition(&server, &admin, &identifiers);
        assert!(server.stop_with("TERM").0.success());
        people
    };

    let database = TestDatabase::create();
    let TwoNodes {
        a: node_a,
        b: node_b,
        dir_a,
        dir_b: _dir_b,
        admin,
    } = two_nodes(&database, &[]);
    let key = node_a.create_source(&admin, "web", "web");
    // Half the shuffled events to each node, at the same time, two clients each.
    let (half_a, half_b) = events.split_at(events.len() / 2);
    std::thread::scope(|scope| {
        scope.spawn(|| send_all(&node_a, &key, half_a, 2, 25));
        scope.spawn(|| send_all(&node_b, &key, half_b, 2, 25));
    });
    let on_a = partition(&node_a, &admin, &identifiers);
    let differences: Vec<_> = on_a.symmetric_difference(&reference).take(6).collect();
    assert!(
        differences.is_empty(),
        "{} people on two nodes, {} on one; some that differ: {differences:?}",
        on_a.len(),
        reference.len()
    );
    // Both nodes answer the same (the tokens of one node hold on the other: shared keys).
    let on_b = partition(&node_b, &admin, &identifiers);
    assert!(on_b == on_a, "node B answers differently from node A");

    // Retries go to the other node: still de-duplicated (its window learnt the messages).
    let retried: Vec<Value> = half_a.iter().take(25).cloned().collect();
    let response = node_b.ingest("/v1/batch", &key, &json!({ "batch": retried }));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["duplicates"], 25, "{}", response.text());

    // An audience count on node B sees a buyer acknowledged by node A within 2 s.
    let marketer = node_a.token(dir_a.path(), &["marketer"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        // Both indexes have caught up with the ingest above.
        let (a, b) = (
            count_buyers(&node_a, &marketer),
            count_buyers(&node_b, &marketer),
        );
        if a == b && a > 0 {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "the nodes' counts differ: {a} vs {b}; node B's log:\n{}",
            node_b.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let order = json!({"batch": [{"type": "track", "userId": "cl-new-buyer", "event": "Order Completed",
        "messageId": "cl-new-1", "properties": {"order_id": "o-new", "revenue": 99, "currency": "CNY"}}]});
    let response = node_a.ingest("/v1/batch", &key, &order);
    assert_eq!(response.status, 200, "{}", response.text());
    let acknowledged = Instant::now();
    loop {
        if count_buyers(&node_b, &marketer) == before + 1 {
            break;
        }
        assert!(
            acknowledged.elapsed() < Duration::from_secs(2),
            "node B did not count node A's buyer within 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen_after = acknowledged.elapsed();
    eprintln!(
        "node B counted node A's write {} ms after its acknowledgement",
        seen_after.as_millis()
    );
    assert!(node_a.stop_with("TERM").0.success());
    assert!(node_b.stop_with("TERM").0.success());
}

#[test]
fn a_node_killed_during_ingest_loses_nothing_it_acknowledged_and_the_other_keeps_answering() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    let database = TestDatabase::create();
    let TwoNodes {
        a: node_a,
        b: node_b,
        dir_a: _dir_a,
        dir_b: _dir_b,
        admin,
    } = two_nodes(&database, &[]);
    let key = node_a.create_source(&admin, "web", "web");
    let addr_a = node_a.addr;

    // Clients send people to both nodes; each remembers the users whose request was
    // acknowledged (200). Node A is killed while they run.
    let acknowledged: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let failures_on_b: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for client in 0..4usize {
            let (acknowledged, stop, failures_on_b, key) =
                (&acknowledged, &stop, &failures_on_b, &key);
            let node_b = &node_b;
            scope.spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let users: Vec<String> = (0..10).map(|i| format!("k-{client}-{n}-{i}")).collect();
                    let batch: Vec<Value> = users
                        .iter()
                        .map(|user| json!({"type": "identify", "userId": user,
                            "traits": {"email": format!("{user}@example.com")}, "messageId": format!("m-{user}")}))
                        .collect();
                    let to_a = client % 2 == 0;
                    let response = if to_a {
                        // Node A dies under these clients: a refused or cut connection is
                        // no acknowledgement.
                        match std::panic::catch_unwind(|| {
                            crate::support::ingest(addr_a, "/v1/batch", key, &json!({ "batch": batch }))
                        }) {
                            Ok(response) => response,
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(200));
                                continue;
                            }
                        }
                    } else {
                        node_b.ingest("/v1/batch", key, &json!({ "batch": batch }))
                    };
                    if response.status == 200 {
                        acknowledged.lock().unwrap().extend(users);
                    } else if !to_a {
                        failures_on_b
                            .lock()
                            .unwrap()
                            .push(format!("{}: {}", response.status, response.text()));
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        node_a.kill();
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
    });
    let failures = failures_on_b.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "node B failed while node A died: {failures:?}"
    );
    let acknowledged = acknowledged.into_inner().unwrap();
    assert!(acknowledged.len() > 100, "{}", acknowledged.len());
    // Every acknowledged person is there, as node B answers.
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|user| node_b.profile_of(&admin, "user_id", user).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged people lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // And node B still writes and reads.
    let response = node_b.ingest(
        "/v1/batch",
        &key,
        &json!({"batch": [{"type": "identify", "userId": "after-the-kill", "messageId": "after-1"}]}),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        node_b
            .profile_of(&admin, "user_id", "after-the-kill")
            .is_some()
    );
    let health = node_b.get("/readyz");
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(node_b.stop_with("TERM").0.success());
}

#[test]
fn an_export_whose_node_is_killed_is_taken_over_and_finishes_on_the_other_node() {
    let database = TestDatabase::create();
    // The export directory every node shares.
    let (shared, configs) = (temp_dir(), temp_dir());
    let config = configs.path().join("cdp-node.toml");
    std::fs::write(
        &config,
        format!("[exports]\ndir = \"{}\"\n", shared.path().display()),
    )
    .unwrap();
    let TwoNodes {
        a: node_a,
        b: node_b,
        dir_a,
        dir_b: _dir_b,
        admin,
    } = two_nodes(&database, &["--config", config.to_str().unwrap()]);
    let marketer = node_a.token(dir_a.path(), &["marketer"]);
    let key = node_a.create_source(&admin, "app", "ios");
    // People who agreed to SMS marketing, their consents recorded by the service desk.
    let people = 800;
    let batches: Vec<Value> = (0..people)
        .map(|i| {
            json!({"type": "identify", "userId": format!("x-{i}"), "messageId": format!("x-{i}"),
                "traits": {"phone": format!("1371{i:07}"), "address": {"country": "CN", "city": "深圳"}}})
        })
        .collect();
    send_all(&node_a, &key, &batches, 2, 100);
    let service = node_a.token(dir_a.path(), &["customer_service"]);
    std::thread::scope(|scope| {
        for client in 0..4 {
            let (node, service) = (if client % 2 == 0 { &node_a } else { &node_b }, &service);
            scope.spawn(move || {
                for i in (client..people).step_by(4) {
                    let response = node.post_with("/v1/consents", service, &json!({
                        "subject": {"type": "user_id", "value": format!("x-{i}")}, "purpose": "marketing.sms",
                        "status": "granted", "notice_version": "2026-01", "source": "app", "evidence": {"screen": "sms"}}));
                    assert_eq!(response.status, 200, "{}", response.text());
                }
            });
        }
    });
    let recipient = node_a
        .post_with("/v1/recipients", &admin, &json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
            "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]}))
        .json();
    let query = json!({"query": "city:深圳", "purpose": "marketing.sms"});
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count = node_a
            .post_with("/v1/audiences/count", &marketer, &query)
            .json();
        if count["count"] == people {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the index did not count everyone: {count}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let audience = node_a
        .post_with(
            "/v1/audiences",
            &marketer,
            &json!({"name": "深圳", "purpose": "marketing.sms", "query": "city:深圳"}),
        )
        .json();
    let started = node_a.post_with(
        "/v1/exports",
        &marketer,
        &json!({"audience": audience["id"], "purpose": "marketing.sms", "recipient": recipient["id"],
            "fields": ["pseudonym", "identifiers.phone"], "format": "csv"}),
    );
    // Node A dies while its job runs.
    node_a.kill();
    assert_eq!(started.status, 202, "{}", started.text());
    let id = started.json()["id"].as_str().unwrap().to_string();
    let first = node_b
        .get_with(&format!("/v1/exports/{id}"), &marketer)
        .json();
    assert_eq!(
        first["status"], "running",
        "node A finished before it was killed: {first}"
    );
    // Node B takes it over once node A's lease expires (30 s) and runs it to the end.
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let record = node_b
            .get_with(&format!("/v1/exports/{id}"), &marketer)
            .json();
        if record["status"] != "running" {
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "the export was not taken over: {record}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["manifest"]["counts"]["included"], people, "{done}");
    let file = node_b.get_with(&format!("/v1/exports/{id}/file"), &marketer);
    assert_eq!(file.status, 200, "{}", file.text());
    assert_eq!(file.text().lines().count(), 1 + people as usize);
    // The audit log says who took it over.
    let mut after = 0u64;
    let mut resumed = Vec::new();
    loop {
        let page = node_b
            .get_with(&format!("/v1/audit?after={after}&limit=1000"), &admin)
            .json();
        let entries = page["entries"].as_array().unwrap().clone();
        if entries.is_empty() {
            break;
        }
        resumed.extend(
            entries
                .into_iter()
                .filter(|entry| entry["action"] == "export.resume"),
        );
        after = page["next_after"].as_u64().unwrap();
    }
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert!(
        resumed[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("node:node-"),
        "{resumed:?}"
    );
    // In the shared directory: the finished file only (node A's partial one, sealed under a
    // key never saved, was removed when node B took the job over).
    let files: Vec<String> = std::fs::read_dir(shared.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec![format!("{id}.sealed")]);
    assert!(node_b.stop_with("TERM").0.success());
}

/// A scheduled export runs once per due time across two nodes: both run the scheduler, the
/// one that advances the schedule's next run within the write turn starts the run.
#[test]
fn a_scheduled_export_runs_once_across_two_nodes() {
    let database = TestDatabase::create();
    let TwoNodes {
        a: node_a,
        b: node_b,
        dir_a,
        dir_b: _dir_b,
        admin,
    } = two_nodes(&database, &[]);
    let marketer = node_a.token(dir_a.path(), &["marketer"]);
    let key = node_a.create_source(&admin, "app", "ios");
    let people = 24;
    let batch: Vec<Value> = (0..people)
        .map(|i| {
            json!({"type": "identify", "userId": format!("s-{i}"),
                "traits": {"phone": format!("1372{i:07}"), "address": {"country": "CN", "city": "深圳"}}})
        })
        .collect();
    send_all(&node_a, &key, &batch, 1, 100);
    for i in 0..people {
        let node = if i % 2 == 0 { &node_a } else { &node_b };
        let response = node.post_with("/v1/consents", &admin, &json!({
            "subject": {"type": "user_id", "value": format!("s-{i}")}, "purpose": "marketing.sms",
            "status": "granted", "notice_version": "2026-01", "source": "app", "evidence": {"screen": "sms"}}));
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let recipient = node_a
        .post_with("/v1/recipients", &admin, &json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
            "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]}))
        .json();
    let audience = node_a
        .post_with(
            "/v1/audiences",
            &marketer,
            &json!({"name": "深圳", "purpose": "marketing.sms", "query": "city:深圳"}),
        )
        .json();
    let schedule = node_b.post_with(
        "/v1/schedules",
        &marketer,
        &json!({"name": "every minute",
        "audience": audience["id"], "purpose": "marketing.sms", "recipient": recipient["id"],
        "fields": ["pseudonym"], "cron": "* * * * *"}),
    );
    assert_eq!(schedule.status, 201, "{}", schedule.text());
    let id = schedule.json()["id"].as_str().unwrap().to_string();
    let path = format!("/v1/schedules/{id}");
    let deadline = Instant::now() + Duration::from_secs(75);
    let first = loop {
        let view = node_a.get_with(&path, &marketer).json();
        if let Some(run) = view["history"].as_array().and_then(|h| h.first()) {
            break run.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no run: {view}\n{}\n{}",
            node_a.logs(),
            node_b.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // Both schedulers looked several times since: still one run for that minute.
    std::thread::sleep(Duration::from_secs(4));
    let view = node_b.get_with(&path, &marketer).json();
    let history = view["history"].as_array().unwrap();
    let same_minute = history
        .iter()
        .filter(|run| {
            run["started_at"].as_str().map(|t| &t[..16])
                == first["started_at"].as_str().map(|t| &t[..16])
        })
        .count();
    assert_eq!(same_minute, 1, "{view}");
}
