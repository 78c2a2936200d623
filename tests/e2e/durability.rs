//! Acknowledged means durable (issue 3, item 10): SIGKILL while batches stream in; after a
//! restart every acknowledged messageId is present and the store opens cleanly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::{Server, ingest, temp_dir};

#[test]
fn every_acknowledged_message_survives_sigkill() {
    acknowledged_messages_survive_sigkill_on("sled");
}

/// The same on the LSM engine; the restart names no engine: the data directory's is found.
#[test]
fn every_acknowledged_message_survives_sigkill_on_the_lsm_engine() {
    acknowledged_messages_survive_sigkill_on("fjall");
}

fn acknowledged_messages_survive_sigkill_on(engine: &str) {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &["--store-engine", engine], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "web", "web");
    let addr = server.addr;
    let acknowledged = Arc::new(Mutex::new(Vec::<u32>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for worker in 0..4u32 {
        let (acknowledged, stop, key) = (acknowledged.clone(), stop.clone(), key.clone());
        senders.push(std::thread::spawn(move || {
            let mut batch = worker;
            while !stop.load(Ordering::Relaxed) && batch < 100_000 {
                let messages: Vec<_> = (0..10)
                    .map(|i| json!({"type":"track","userId":format!("kill-{batch}"),"event":"Beat","messageId":format!("k-{batch}-{i}")}))
                    .collect();
                let sent = std::panic::catch_unwind(|| ingest(addr, "/v1/batch", &key, &json!({"batch": messages})));
                match sent {
                    Ok(response) if response.status == 200 => acknowledged.lock().unwrap().push(batch),
                    _ => break,
                }
                batch += 4;
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        let _ = sender.join();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 10,
        "only {} batches were acknowledged before the kill",
        acknowledged.len()
    );

    let server =
        Server::start(dir.path(), &[], &[]).expect("the store opens cleanly after SIGKILL");
    for batch in &acknowledged {
        let profile = server
            .profile_of(&admin, "user_id", &format!("kill-{batch}"))
            .unwrap_or_else(|| panic!("acknowledged batch {batch} is missing after SIGKILL"));
        let events = server
            .get_with(
                &format!("/v1/profiles/{profile}/events?purpose=essential.service"),
                &admin,
            )
            .json();
        let ids: Vec<&str> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"]["message_id"].as_str().unwrap())
            .collect();
        for i in 0..10 {
            let id = format!("k-{batch}-{i}");
            assert!(
                ids.contains(&id.as_str()),
                "acknowledged message {id} is missing after SIGKILL"
            );
        }
    }
}
