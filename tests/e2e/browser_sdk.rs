//! Browser tracking with Segment's real browser library: `@segment/analytics-next` from npm,
//! bundled by `scripts/browser-sdk` as a shop would, on a shop page served from another
//! origin than the API, in headless Chromium (`webdriver.rs`). The library is pointed at
//! `cdp serve` with its `cdnURL` alone: it fetches its settings from the server, which points
//! its `Segment.io` destination back at the server's short paths (`/v1/p`, `/v1/i`, `/v1/t`,
//! and `/v1/b` when it batches). The browser enforces CORS for real: a page of an origin the
//! source does not list cannot send, and the server stores nothing it sends.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Response, Server, http, temp_dir};
use crate::webdriver::Driver;

/// A library of `target/browser-sdk/` (`scripts/browser-sdk` installs them from npm and
/// bundles Segment's once): `analytics.js` or `sensorsdata.min.js`.
pub(crate) fn library(name: &str) -> Vec<u8> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/browser-sdk");
    let output = Command::new(&script)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "scripts/browser-sdk failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// A shop's web site: a page that loads a tracking library (`/library.js`), on a port (an
/// origin) of its own. Serves every GET until the test ends.
pub(crate) struct ShopSite {
    addr: SocketAddr,
}

impl ShopSite {
    pub(crate) fn start(script: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let page = b"<!doctype html><html><head><meta charset=utf-8><title>Tea shop</title>\
            <script src=\"/library.js\"></script></head><body><h1>Tea shop</h1></body></html>"
            .to_vec();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let (kind, body) = match path {
                    "/library.js" => ("text/javascript", &script),
                    "/" => ("text/html; charset=utf-8", &page),
                    _ => ("text/plain", &Vec::new()),
                };
                let status = if body.is_empty() {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        Self { addr }
    }

    pub(crate) fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn events_of(server: &Server, admin: &str, profile: &str) -> Vec<Value> {
    server
        .get_with(
            &format!("/v1/profiles/{profile}/events?purpose=essential.service"),
            admin,
        )
        .json()["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits for a profile of `user_id` with at least `events` events; returns its id.
fn wait_for_person(server: &Server, admin: &str, user_id: &str, events: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(id) = server.profile_of(admin, "user_id", user_id)
            && events_of(server, admin, &id).len() >= events
        {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "{user_id} never arrived with {events} events"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn with_origin(server: &Server, method: &str, path: &str, origin: &str, body: &[u8]) -> Response {
    http(
        server.addr,
        method,
        path,
        &[("Origin", origin), ("Content-Type", "text/plain")],
        body,
    )
}

#[test]
fn segments_browser_library_tracks_a_shop_page_into_one_person() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let script = library("analytics.js");
    let shop = ShopSite::start(script.clone());
    let elsewhere = ShopSite::start(script);
    let created = server.post_with(
        "/v1/sources",
        &admin,
        &json!({"name": "web shop", "channel": "web", "default_region": "CN",
                "allowed_origins": [format!("{}/", shop.origin())]}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["allowed_origins"], json!([shop.origin()]));
    let write_key = created["write_key"].as_str().unwrap().to_string();
    let api = server.base_url();

    let driver = Driver::start();
    let browser = driver.browser("zh-CN");
    browser.open(&format!("{}/", shop.origin()));
    // The shop's page loads the library with only the cdnURL changed, as the README shows.
    let sent = browser.script_async(&format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const [analytics] = await AnalyticsBrowser.load({{ writeKey: '{write_key}', cdnURL: '{api}' }});
           const failed = [];
           for (const ctx of [
             await analytics.page('Home'),
             await analytics.identify('web-1', {{ email: 'li.na@example.cn', name: '李娜' }}),
             await analytics.track('Order Completed', {{ order_id: 'o-1', revenue: 199, currency: 'CNY' }}),
           ]) {{ if (ctx.failedDelivery()) failed.push(String(ctx.failedDelivery().reason)); }}
           done({{ failed, anonymousId: analytics.user().anonymousId() }});
         }})().catch((error) => done({{ error: String(error) }}));"
    ));
    assert_eq!(sent["failed"], json!([]), "{sent}");
    let anonymous_id = sent["anonymousId"].as_str().unwrap().to_string();
    let person = wait_for_person(&server, &admin, "web-1", 3);
    // The page view before identify and the events after it are one person's.
    assert_eq!(
        server
            .profile_of(&admin, "anonymous_id", &anonymous_id)
            .as_deref(),
        Some(person.as_str())
    );
    assert_eq!(
        server
            .profile_of(&admin, "email", "li.na@example.cn")
            .as_deref(),
        Some(person.as_str())
    );
    let events = events_of(&server, &admin, &person);
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"]["type"].as_str())
        .collect();
    for kind in ["page", "identify", "track"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    let track = events
        .iter()
        .find(|e| e["message"]["type"] == "track")
        .unwrap();
    assert_eq!(track["message"]["event"], "Order Completed");
    assert_eq!(
        track["message"]["context"]["page"]["url"],
        format!("{}/", shop.origin()),
        "the library's page context arrives: {track}"
    );

    // Batching delivery posts to /v1/b; sendBeacon (as pages do when they unload) to /v1/t.
    let batched = browser.script_async(&format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const [analytics] = await AnalyticsBrowser.load(
             {{ writeKey: '{write_key}', cdnURL: '{api}' }},
             {{ integrations: {{ 'Segment.io': {{ deliveryStrategy: {{ strategy: 'batching', config: {{ size: 3, timeout: 200 }} }} }} }} }});
           analytics.reset();
           await analytics.identify('web-2');
           await analytics.track('Product Viewed', {{ sku: 'tea-1' }});
           await analytics.track('Product Added', {{ sku: 'tea-1' }});
           const beacon = navigator.sendBeacon('{api}/v1/t', JSON.stringify({{
             writeKey: '{write_key}', userId: 'web-3', event: 'Checkout Left', messageId: 'beacon-1' }}));
           done({{ beacon }});
         }})().catch((error) => done({{ error: String(error) }}));"
    ));
    assert_eq!(batched["beacon"], true, "{batched}");
    wait_for_person(&server, &admin, "web-2", 3);
    wait_for_person(&server, &admin, "web-3", 1);
    // The library spoke the short paths and fetched its settings from the server.
    let logs = server.logs();
    for route in [
        "/v1/projects/{write_key}/settings",
        "/v1/p",
        "/v1/i",
        "/v1/t",
        "/v1/b",
    ] {
        assert!(
            logs.contains(&format!("\"route\":\"{route}\",\"status\":200")),
            "no successful request to {route}:\n{logs}"
        );
    }

    // A page of an origin the source does not list: the browser may not read the answer
    // (no CORS headers), and the server stored nothing it sent.
    browser.open(&format!("{}/", elsewhere.origin()));
    let refused = browser.script_async(&format!(
        "const done = arguments[arguments.length - 1];
         const body = JSON.stringify({{ writeKey: '{write_key}', userId: 'stolen-1', event: 'Fake Order' }});
         navigator.sendBeacon('{api}/v1/t', body);
         fetch('{api}/v1/t', {{ method: 'POST', headers: {{ 'Content-Type': 'text/plain' }}, body }})
           .then((r) => done({{ status: r.status }}), (e) => done({{ blocked: e.name }}));"
    ));
    assert_eq!(refused["blocked"], "TypeError", "{refused}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.profile_of(&admin, "user_id", "stolen-1"), None);

    // What the browser saw, spelt out over plain HTTP.
    let preflight = http(
        server.addr,
        "OPTIONS",
        "/v1/t",
        &[
            ("Origin", &shop.origin()),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type",
            ),
        ],
        b"",
    );
    assert_eq!(preflight.status, 204, "{preflight:?}");
    let head = preflight.head.to_ascii_lowercase();
    assert!(
        head.contains(&format!("access-control-allow-origin: {}", shop.origin())),
        "{head}"
    );
    assert!(head.contains("access-control-allow-headers:"), "{head}");
    let foreign = http(
        server.addr,
        "OPTIONS",
        "/v1/t",
        &[
            ("Origin", &elsewhere.origin()),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(foreign.status, 403);
    assert!(
        !foreign
            .head
            .to_ascii_lowercase()
            .contains("access-control-allow-origin"),
        "{foreign:?}"
    );
    let body = json!({"writeKey": write_key, "userId": "stolen-2", "event": "Fake"}).to_string();
    let stolen = with_origin(
        &server,
        "POST",
        "/v1/t",
        &elsewhere.origin(),
        body.as_bytes(),
    );
    assert_eq!(stolen.status, 403, "{}", stolen.text());
    assert_eq!(stolen.json()["error"]["code"], "origin_not_allowed");
    assert!(
        stolen.text().contains("allowed_origins"),
        "{}",
        stolen.text()
    );
    let settings = with_origin(
        &server,
        "GET",
        &format!("/v1/projects/{write_key}/settings"),
        &shop.origin(),
        b"",
    );
    assert_eq!(settings.status, 200, "{}", settings.text());
    assert_eq!(
        settings.json()["integrations"]["Segment.io"]["apiHost"],
        format!("{}/v1", server.addr)
    );
    assert_eq!(
        server
            .get("/v1/projects/cdpwk_000000000000/settings")
            .status,
        404
    );

    // The list can change: the other origin is allowed from the next request on.
    let source = created["id"].as_str().unwrap();
    let bad = http(
        server.addr,
        "PATCH",
        &format!("/v1/sources/{source}"),
        &[
            ("Authorization", &format!("Bearer {admin}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"allowed_origins": ["https://*.example.cn"]}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("wildcard"), "{}", bad.text());
    let changed = crate::support::run(crate::support::cdp().args([
        "sources",
        "origins",
        source,
        "--allow",
        &shop.origin(),
        "--allow",
        &elsewhere.origin(),
        "--server",
        &server.base_url(),
        "--token",
        &admin,
    ]));
    let said = crate::support::text(&changed.stdout);
    assert!(
        changed.status.success(),
        "{}",
        crate::support::text(&changed.stderr)
    );
    assert!(said.contains(&elsewhere.origin()), "{said}");
    let body =
        json!({"writeKey": write_key, "userId": "partner-1", "event": "Visited"}).to_string();
    let accepted = with_origin(
        &server,
        "POST",
        "/v1/t",
        &elsewhere.origin(),
        body.as_bytes(),
    );
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    // Revoked: the settings are gone and the key sends nothing.
    let revoked = http(
        server.addr,
        "DELETE",
        &format!("/v1/sources/{source}"),
        &[("Authorization", &format!("Bearer {admin}"))],
        b"",
    );
    assert_eq!(revoked.status, 200, "{}", revoked.text());
    assert_eq!(
        server
            .get(&format!("/v1/projects/{write_key}/settings"))
            .status,
        404
    );
}

/// The Sensors Analytics web SDK (`sa-sdk-javascript`, as it ships on npm) on a shop page, by
/// image requests (its default) and by AJAX: an anonymous visitor's page view and the events
/// after `login` are one person, the same one a Segment library names by the login id; a page
/// of an origin the source does not list is refused.
#[test]
fn the_sensors_web_sdk_tracks_a_shop_page_into_one_person() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let script = library("sensorsdata.min.js");
    let shop = ShopSite::start(script.clone());
    let elsewhere = ShopSite::start(script);
    let created = server.post_with(
        "/v1/sources",
        &admin,
        &json!({"name": "web shop (sensors)", "channel": "web", "default_region": "CN",
                "allowed_origins": [shop.origin()]}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let write_key = created.json()["write_key"].as_str().unwrap().to_string();
    let server_url = format!("{}/sa?project=default&token={write_key}", server.base_url());

    let driver = Driver::start();
    for (send_type, user) in [("image", "sa-web-1"), ("ajax", "sa-web-2")] {
        // A new visitor each time (a browser profile of its own: no cookie of the last one).
        let browser = driver.browser("zh-CN");
        browser.open(&format!("{}/", shop.origin()));
        let sent = browser.script_async(&format!(
            "const done = arguments[arguments.length - 1];
             const sensors = window.sensorsDataAnalytic201505;
             sensors.init({{ server_url: '{server_url}', send_type: '{send_type}', show_log: false,
                             is_track_single_page: false, heatmap: {{}} }});
             const anonymous = sensors.store.getDistinctId();
             sensors.quick('autoTrack');
             sensors.login('{user}');
             sensors.track('BuyTea', {{ price: 88, tea: 'Longjing' }});
             done({{ anonymous }});"
        ));
        let anonymous = sent["anonymous"].as_str().unwrap().to_string();
        // $pageview, $SignUp and BuyTea (login aliases the page view's anonymous id). The
        // library sends each on its own request, in no fixed order: wait for the last one
        // rather than for a count (with ajax, identify and alias arrive as events too).
        let person = wait_for_person(&server, &admin, user, 3);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !events_of(&server, &admin, &person)
            .iter()
            .any(|e| e["message"]["event"] == "BuyTea")
        {
            assert!(
                Instant::now() < deadline,
                "{send_type}: BuyTea never arrived"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            server
                .profile_of(&admin, "anonymous_id", &anonymous)
                .as_deref(),
            Some(person.as_str()),
            "{send_type}"
        );
        let events = events_of(&server, &admin, &person);
        let summary: Vec<(String, String)> = events
            .iter()
            .map(|e| {
                let message = &e["message"];
                (
                    message["type"].as_str().unwrap_or_default().to_string(),
                    message["event"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert!(
            summary.contains(&("page".into(), String::new())),
            "{send_type}: {summary:?}"
        );
        assert!(
            summary.contains(&("track".into(), "BuyTea".into())),
            "{send_type}: {summary:?}"
        );
        let buy = events
            .iter()
            .find(|e| e["message"]["event"] == "BuyTea")
            .unwrap();
        assert_eq!(buy["message"]["context"]["library"]["name"], "sensors-js");
        // The same member through a Segment library lands on the same person.
        let segment = server.ingest(
            "/v1/track",
            &write_key,
            &json!({"userId": user, "event": "Order Completed"}),
        );
        assert_eq!(segment.status, 200);
        assert_eq!(
            server.profile_of(&admin, "user_id", user).as_deref(),
            Some(person.as_str())
        );
    }
    let logs = server.logs();
    // Image requests (GET) and AJAX (POST), both to the `/sa.gif` the SDK makes of `/sa`.
    for method in ["GET", "POST"] {
        assert!(
            logs.contains(&format!(
                "\"method\":\"{method}\",\"route\":\"/sa.gif\",\"status\":200"
            )),
            "no {method} /sa.gif:\n{logs}"
        );
    }

    // A page elsewhere with the same key: its image requests are refused (the Referer names
    // its origin), and nothing is stored.
    let browser = driver.browser("zh-CN");
    browser.open(&format!("{}/", elsewhere.origin()));
    browser.script_async(&format!(
        "const done = arguments[arguments.length - 1];
         const sensors = window.sensorsDataAnalytic201505;
         sensors.init({{ server_url: '{server_url}', show_log: false, is_track_single_page: false, heatmap: {{}} }});
         sensors.login('sa-stolen');
         sensors.track('Fake', {{}});
         setTimeout(() => done(true), 1000);"
    ));
    assert_eq!(server.profile_of(&admin, "user_id", "sa-stolen"), None);
    assert!(
        server
            .logs()
            .contains("\"route\":\"/sa.gif\",\"status\":403"),
        "the refusal is logged"
    );
}

/// The Sensors WeChat mini-program SDK (`sa-sdk-miniprogram`, as it ships) in Node under a
/// minimal `wx` shim (`tests/browser-sdk/miniprogram.js`): its batches arrive, the login id,
/// the mini-program's own id and the OpenID (scoped by the app id the SDK names it with) are
/// one person, and a Segment message naming the same OpenID lands on that person.
#[test]
fn the_sensors_mini_program_sdk_tracks_a_member_under_a_wx_shim() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "mini program", "mini_program");
    library("sensorsdata.min.js");
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser-sdk");
    let output = Command::new("node")
        .current_dir(&sdk)
        .arg("miniprogram.js")
        .arg(format!("{}/sa?token={key}", server.base_url()))
        .args(["mp-member-1", "oOpenid-4711"])
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "the mini-program SDK's requests failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.logs()
    );
    let person = wait_for_person(&server, &admin, "mp-member-1", 3);
    let openid = "wx0123456789abcdef:oOpenid-4711";
    assert_eq!(
        server
            .profile_of(&admin, "wechat_openid", openid)
            .as_deref(),
        Some(person.as_str())
    );
    let events = events_of(&server, &admin, &person);
    assert!(
        events.iter().any(|e| e["message"]["event"] == "BuyTea"),
        "{events:?}"
    );
    let profile = server
        .get_with(
            &format!("/v1/profiles/{person}?purpose=essential.service"),
            &admin,
        )
        .json();
    assert_eq!(profile["traits"]["city"]["value"], "杭州", "{profile}");
    // A Segment library in the same mini-program names the OpenID the same way.
    let segment = server.ingest(
        "/v1/identify",
        &key,
        &json!({"anonymousId": "segment-mp-anon", "context": {"externalIds": [
            {"type": "wechat_openid", "id": "oOpenid-4711", "collection": "wx0123456789abcdef"}]}}),
    );
    assert_eq!(segment.status, 200, "{}", segment.text());
    assert_eq!(
        server
            .profile_of(&admin, "anonymous_id", "segment-mp-anon")
            .as_deref(),
        Some(person.as_str())
    );
}

/// Sensors Analytics' Node SDK (`sa-sdk-node`, from npm) sends to `/sa` with only its URL
/// changed: batches of gzipped `data_list` records; an anonymous visitor who signs up becomes
/// one person with the phone and e-mail of the profile records; the catalogue item is ignored.
#[test]
fn the_sensors_node_sdk_sends_batches_that_resolve_to_one_person() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "node backend", "web");
    library("sensorsdata.min.js");
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser-sdk");
    let prefix = "node-sdk";
    let output = Command::new("node")
        .current_dir(&sdk)
        .arg("node-sdk.js")
        .args([&server.base_url(), &key, prefix])
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "the Node SDK's submissions failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.logs()
    );
    let person = wait_for_person(&server, &admin, &format!("{prefix}-user"), 3);
    for (kind, value) in [
        ("anonymous_id", format!("{prefix}-anon")),
        ("phone", "+8613700137000".to_string()),
        ("email", format!("{prefix}@example.cn")),
    ] {
        assert_eq!(
            server.profile_of(&admin, kind, &value).as_deref(),
            Some(person.as_str()),
            "{kind}"
        );
    }
    let events = events_of(&server, &admin, &person);
    for name in ["ViewProduct", "BuyProduct"] {
        assert!(
            events.iter().any(|e| e["message"]["event"] == name),
            "{name}: {events:?}"
        );
    }
    let profile = server
        .get_with(
            &format!("/v1/profiles/{person}?purpose=essential.service"),
            &admin,
        )
        .json();
    // profileSet then profileSetOnce: the first city stays, the new trait arrives.
    assert_eq!(profile["traits"]["city"]["value"], "杭州", "{profile}");
    assert_eq!(profile["traits"]["province"]["value"], "浙江", "{profile}");
}
