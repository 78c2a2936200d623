//! The console in a real headless Chromium, driven through ChromeDriver's WebDriver protocol
//! (W3C, JSON over HTTP: a few calls, spoken with this suite's own HTTP client). The browser
//! enforces the page's Content-Security-Policy, cookies and same-origin rules for real.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium`, `chromium-driver`; `./scripts/test`
//! installs them): `CDP_TEST_CHROMEDRIVER` / `CDP_TEST_CHROMIUM` name other paths. Screenshots
//! of the main pages are kept in `target/console-screenshots/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::console::{PASSWORD, add_user};
use crate::support::{Server, temp_dir};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    process: Child,
    addr: SocketAddr,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Driver {
    fn start() -> Self {
        let program =
            std::env::var("CDP_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let process = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {program} ({error}): install Debian's chromium and chromium-driver (./scripts/test does)"
                )
            });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = temp_dir();
        Self {
            process,
            addr,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.request(method, path, body);
        assert!(status < 400, "WebDriver {method} {path}: {status} {value}");
        value["value"].clone()
    }

    /// One WebDriver request. ChromeDriver keeps connections open whatever the request
    /// says, so the answer is read by its Content-Length, not to the end of the stream.
    fn request(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        use std::io::{BufRead as _, Read as _, Write as _};
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = std::net::TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status from chromedriver: {status_line:?}"));
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut bytes = vec![0; length];
        reader.read_exact(&mut bytes).unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A browser session: headless Chromium with a fresh profile, in `language`.
    fn browser(&self, language: &str) -> Browser<'_> {
        let chromium =
            std::env::var("CDP_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let profile = temp_dir();
        let answer = self.call(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--disable-quic", "--window-size=1280,1500",
                        format!("--lang={language}"),
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                    "prefs": {"intl.accept_languages": language},
                }
            }}})),
        );
        let id = answer["sessionId"].as_str().unwrap().to_string();
        Browser {
            driver: self,
            id,
            _profile: profile,
        }
    }
}

struct Browser<'a> {
    driver: &'a Driver,
    id: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .request("DELETE", &format!("/session/{}", self.id), None);
    }
}

impl Browser<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn script_async(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn find_now(&self, css: &str) -> Option<String> {
        let found = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found.as_array()?.first()?[ELEMENT]
            .as_str()
            .map(str::to_string)
    }

    /// The first element matching `css`, waiting up to 10 s for it.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(element) = self.find_now(css) {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no {css} on the page: {}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.call(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        );
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The rendered text of the first element matching `css`, if there is one. Read by a
    /// script in one step: the pages replace elements as answers arrive, and a reference
    /// found first could be stale by the time its text is asked for.
    fn text_now(&self, css: &str) -> Option<String> {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([css]),
        )
        .as_str()
        .map(str::to_string)
    }

    fn text_of(&self, css: &str) -> String {
        self.wait_text(css, |_| true)
    }

    /// Waits until the text of `css` satisfies `ready`, and returns it.
    fn wait_text(&self, css: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(text) = self.text_now(css)
                && ready(&text)
            {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never got the expected text; the page says: {}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn page_text(&self) -> String {
        self.script("return document.body.innerText;", json!([]))
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn accept_alert(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _) = self.driver.request(
                "POST",
                &format!("/session/{}/alert/accept", self.id),
                Some(json!({})),
            );
            if status < 400 {
                return;
            }
            assert!(Instant::now() < deadline, "no confirmation dialog appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screenshot(&self, name: &str) {
        self.script("window.scrollTo(0, 0);", json!([]));
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    fn sign_in(&self, server: &Server, name: &str) {
        self.open(&format!("{}/console/", server.base_url()));
        self.type_into("[data-testid=name]", name);
        self.type_into("[data-testid=password]", PASSWORD);
        self.click("[data-testid=signin-submit]");
        self.find("[data-testid=signout]");
    }

    fn sign_out(&self) {
        self.click("[data-testid=signout]");
        self.find("[data-testid=signin]");
    }

    /// Opens a page by its navigation link (as a user clicks it).
    fn go(&self, page: &str) {
        self.click(&format!("[data-testid=nav-{page}]"));
        self.find(&format!("[data-testid=page-{page}]"));
    }
}

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots")
}

const PHONE: &str = "13812345678";

/// A small shop: a few people with orders, one with a phone number the service desk looks up,
/// one who asks to be erased.
fn seed(server: &Server, admin: &str) {
    let key = server.create_source(admin, "shop", "web");
    let mut batch = Vec::new();
    for i in 0..90 {
        // Two in three agree to analytics and marketing, as a consent banner records it.
        let agreed = i % 3 != 0;
        batch.push(json!({"type": "identify", "userId": format!("b-{i}"), "traits": {
            "email": format!("buyer{i}@example.cn"), "address": {"country": "CN", "city": if i % 2 == 0 { "上海" } else { "杭州" }}},
            "context": {"consent": {"categoryPreferences": {"analytics": agreed, "marketing": agreed}}}}));
        for order in 0..(i % 4) {
            batch.push(
                json!({"type": "track", "userId": format!("b-{i}"), "event": "Order Completed",
                "messageId": format!("o-{i}-{order}"),
                "properties": {"revenue": 100 + i * 20, "products": [{"category": "tea"}]}}),
            );
        }
    }
    batch.push(
        json!({"type": "identify", "userId": "desk-1", "traits": {"phone": PHONE, "name": "陈静"}}),
    );
    batch.push(json!({"type": "identify", "userId": "erase-me", "traits": {"email": "erase.me@example.cn"}}));
    let response = server.ingest("/v1/batch", &key, &json!({ "batch": batch }));
    assert_eq!(response.status, 200, "{}", response.text());
}

fn count_by_api(server: &Server, token: &str, query: &str, purpose: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = server
            .post_with(
                "/v1/audiences/count",
                token,
                &json!({"query": query, "purpose": purpose}),
            )
            .json();
        if answer["matched"].as_u64().unwrap_or(0) > 0 || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn marketers_dpos_and_the_service_desk_do_their_work_in_the_console() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    seed(&server, &admin);
    let recipient = server.post_with(
        "/v1/recipients",
        &admin,
        &json!({"name": "Analytics agency", "contact": "dpo@agency.example.cn", "role": "processor",
                "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["analytics", "marketing.email"]}),
    );
    assert_eq!(recipient.status, 201, "{}", recipient.text());
    add_user(&server, &admin, "ops.admin", &["admin"], &[]);
    add_user(&server, &admin, "mei.marketing", &["marketer"], &[]);
    add_user(&server, &admin, "dpo.zhou", &["dpo"], &[]);
    add_user(&server, &admin, "desk.wu", &["customer_service"], &[]);
    let expected = count_by_api(&server, &admin, "city:上海", "analytics");
    assert!(expected["count"].as_u64().unwrap() >= 20, "{expected}");

    let driver = Driver::start();
    let browser = driver.browser("en-US");

    // An administrator adds a source, sees its key once, watches its events arrive (types and
    // names only) and replaces the key: the old one stops working.
    browser.sign_in(&server, "ops.admin");
    browser.wait_text("[data-testid=people]", |t| t != "0");
    let coverage = browser.wait_text("[data-testid=coverage-chart]", |t| t.contains('%'));
    assert!(coverage.contains("Analytics"), "{coverage}");
    browser.go("sources");
    browser.type_into("[data-testid=source-name]", "mini program");
    browser.click("[data-testid=source-channel] option[value=mini_program]");
    browser.click("[data-testid=source-create]");
    let first_key = browser.wait_text("[data-testid=write-key]", |t| t.starts_with("cdpwk_"));
    let sent = server.ingest(
        "/v1/track",
        &first_key,
        &json!({"userId": "mp-1", "event": "Coupon Claimed", "properties": {"phone": "13900001111"}}),
    );
    assert_eq!(sent.status, 200, "{}", sent.text());
    browser.click("[data-testid='watch-mini program']");
    let events = browser.wait_text("[data-testid=debugger-table]", |t| {
        t.contains("Coupon Claimed")
    });
    assert!(
        !events.contains("13900001111") && !events.contains("mp-1"),
        "{events}"
    );
    browser.screenshot("sources");
    browser.click("[data-testid='rotate-mini program']");
    browser.accept_alert();
    let second_key = browser.wait_text("[data-testid=write-key]", |t| {
        t.starts_with("cdpwk_") && t != first_key
    });
    let old = server.ingest(
        "/v1/track",
        &first_key,
        &json!({"userId": "mp-1", "event": "X"}),
    );
    assert_eq!(old.status, 401, "the replaced key still works");
    let new = server.ingest(
        "/v1/track",
        &second_key,
        &json!({"userId": "mp-1", "event": "X"}),
    );
    assert_eq!(new.status, 200, "{}", new.text());
    browser.sign_out();

    // A marketer builds an audience by clicking: the count and a chart appear, it is saved.
    browser.sign_in(&server, "mei.marketing");
    browser.screenshot("overview");
    assert!(browser.find_now("[data-testid=nav-audit]").is_none());
    browser.go("audiences");
    browser.click("[data-testid=purpose] option[value=analytics]");
    browser.click("[data-testid=clause-field] option[value=city]");
    browser.type_into("[data-testid=clause-value]", "上海");
    let query = browser.script(
        "return document.querySelector('[data-testid=query]').value;",
        json!([]),
    );
    assert_eq!(query, "city:上海");
    let shown = browser.wait_text("[data-testid=count]", |text| {
        text == expected["count"].as_u64().unwrap().to_string()
    });
    assert_eq!(shown, expected["count"].as_u64().unwrap().to_string());
    browser.find("[data-testid=tier-chart] svg rect");
    browser.find("[data-testid=lifecycle-chart] svg rect");
    browser.find("[data-testid=rfm-chart] svg rect");
    // Why people were removed: 15 of them denied analytics (fewer than 20: withheld).
    let removed = browser.wait_text("[data-testid=removed-reasons]", |t| {
        t.contains("Consent denied")
    });
    assert!(removed.contains("<20"), "{removed}");
    browser.find("[data-testid=channel-chart] svg rect");
    browser.wait_text("[data-testid=city-chart]", |t| t.contains("上海"));
    browser.type_into("[data-testid=audience-name]", "上海 buyers");
    browser.click("[data-testid=save-audience]");
    browser.wait_text("[data-testid=save-message]", |t| t.contains("上海 buyers"));
    browser.wait_text("[data-testid=saved-table]", |t| t.contains("city:上海"));
    browser.find("[data-testid=rfm-chart] svg rect");
    browser.find("[data-testid=removed-reasons] svg rect");
    browser.screenshot("audiences");
    // ... and exports it to the recipient: progress, the signed manifest with each field's
    // transform, the file checked against the manifest in the browser.
    browser.go("exports");
    browser.find("[data-testid=export-audience] option");
    browser.find("[data-testid=export-recipient] option");
    browser.click("[data-testid=purpose] option[value=analytics]");
    browser.click("[data-testid=export-fields-picker] input[value=city]");
    browser.click("[data-testid=export-start]");
    browser.find("[data-testid=export-progress]");
    browser.wait_text("[data-testid=export-status]", |t| t == "Done");
    let transforms = browser.text_of("[data-testid=export-fields]");
    assert!(
        transforms.contains("hmac-sha256 per recipient"),
        "{transforms}"
    );
    let removed = browser.text_of("[data-testid=export-exclusions]");
    assert!(
        removed.contains("PIPL-13"),
        "the removals cite their articles: {removed}"
    );
    browser.click("[data-testid=export-download]");
    let verdict = browser.wait_text("[data-testid=export-verdict]", |t| !t.is_empty());
    assert!(
        verdict.contains("matches the signed manifest")
            && verdict.contains("signature is valid")
            && verdict.contains("signed by this server’s export key"),
        "{verdict}"
    );
    // The same manifest, changed by one byte, fails the browser's check.
    let tampered = browser.script_async(
        "const done = arguments[arguments.length - 1];
         const id = document.querySelector('[data-testid=export-job] h2 code').textContent;
         fetch(`/v1/exports/${id}/manifest`).then(r => r.text()).then(async (text) => {
           const changed = text.replace('\"included\":30', '\"included\":31');
           const m = JSON.parse(changed);
           const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
           const key = await crypto.subtle.importKey('raw', b64(m.signing_key), {name: 'Ed25519'}, false, ['verify']);
           const unsigned = new TextEncoder().encode(changed.replace(/,\"signature\":\"[^\"]*\"}$/, '}'));
           const original = new TextEncoder().encode(text.replace(/,\"signature\":\"[^\"]*\"}$/, '}'));
           done([await crypto.subtle.verify({name: 'Ed25519'}, key, b64(m.signature), original),
                 await crypto.subtle.verify({name: 'Ed25519'}, key, b64(m.signature), unsigned), changed !== text]);
         });",
    );
    assert_eq!(
        tampered,
        json!([true, false, true]),
        "a changed manifest must not verify"
    );
    browser.screenshot("exports");
    // The audit page is not the marketer's: not in the navigation, refused when typed.
    browser.open(&format!("{}/console/#/audit", server.base_url()));
    browser.find("[data-testid=forbidden]");
    // A forged request from the page's own origin without the CSRF token is refused.
    let forged = browser.script_async(
        "const done = arguments[arguments.length - 1];
         fetch('/v1/audiences/count', {method: 'POST', headers: {'Content-Type': 'application/json'},
           body: JSON.stringify({query: 'tier:*', purpose: 'analytics'})})
           .then(r => r.json().then(b => done([r.status, b.error.code])));",
    );
    assert_eq!(forged, json!([403, "csrf_rejected"]));
    browser.sign_out();

    // The service desk looks a customer up: the phone is masked, never shown whole.
    browser.sign_in(&server, "desk.wu");
    browser.go("profiles");
    browser.click("[data-testid=lookup-type] option[value=phone]");
    browser.type_into("[data-testid=lookup-value]", PHONE);
    browser.type_into("[data-testid=lookup-region]", "CN");
    browser.click("[data-testid=lookup]");
    let identifiers = browser.wait_text("[data-testid=identifiers]", |t| t.contains("Phone"));
    assert!(
        !identifiers.contains(PHONE) && !identifiers.contains("12345678"),
        "{identifiers}"
    );
    assert!(identifiers.contains('*'), "masked: {identifiers}");
    assert!(!browser.page_text().contains(PHONE));
    let url = browser.call("GET", "/url", None);
    assert!(
        !url.as_str().unwrap().contains("1381"),
        "personal data in the URL: {url}"
    );
    browser.screenshot("profile");
    // ... and records the consent she gives on the phone, with its evidence.
    browser.go("consents");
    browser.click("[data-testid=consent-subject-type] option[value=phone]");
    browser.type_into("[data-testid=consent-subject-value]", PHONE);
    browser.click("[data-testid=consent-purpose] option[value='marketing.sms']");
    browser.type_into("[data-testid=consent-notice]", "2026-01");
    browser.type_into(
        "[data-testid=consent-evidence]",
        "call of 3 December, recording 8812",
    );
    browser.click("[data-testid=consent-record]");
    browser.wait_text("[data-testid=consent-recorded]", |t| t.contains("Granted"));
    // The page's trend: the tally the server took when it started (nobody yet), then the
    // count of now, drawn as points of the chart.
    browser.find("[data-testid=consent-trend] svg circle");
    let points = browser.script(
        "return document.querySelector('[data-testid=consent-trend]').dataset.points",
        json!([]),
    );
    assert!(
        points.as_str().unwrap().parse::<u32>().unwrap() >= 2,
        "a stored tally and now: {points}"
    );
    browser.screenshot("consents");
    browser.sign_out();

    // The DPO erases a person and sees the signed receipt.
    browser.sign_in(&server, "dpo.zhou");
    browser.go("requests");
    browser.click("[data-testid=request-type] option[value=erasure]");
    browser.click("[data-testid=request-subject-type] option[value=email]");
    browser.type_into("[data-testid=request-subject-value]", "erase.me@example.cn");
    browser.type_into(
        "[data-testid=request-verification]",
        "video call, ID card checked",
    );
    browser.click("[data-testid=submit-request]");
    browser.accept_alert();
    browser.wait_text("[data-testid=request-done]", |t| t.contains("Done"));
    browser.find("[data-testid=receipt]");
    browser.screenshot("requests");
    assert!(
        server
            .profile_of(&admin, "email", "erase.me@example.cn")
            .is_none()
    );
    // The DPO splits a link from the identity graph, after confirming.
    browser.go("profiles");
    browser.click("[data-testid=purpose] option[value='essential.service']");
    browser.click("[data-testid=lookup-type] option[value=email]");
    browser.type_into("[data-testid=lookup-value]", "buyer4@example.cn");
    browser.click("[data-testid=lookup]");
    browser.find("[data-testid=identity-graph] svg circle");
    browser.click("[data-testid=split-edge]");
    browser.accept_alert();
    browser.wait_text("[data-testid=split-message]", |t| {
        t.contains("The link is cut")
    });
    assert_ne!(
        server.profile_of(&admin, "email", "buyer4@example.cn"),
        server.profile_of(&admin, "user_id", "b-4"),
        "the split link joins nobody any more"
    );
    browser.go("audit");
    browser.click("[data-testid=verify-chain]");
    browser.wait_text("[data-testid=audit-verdict]", |t| t.contains("intact"));
    let audit = browser.wait_text("[data-testid=audit-table]", |t| {
        t.contains("request.erasure") || t.contains("erasure")
    });
    for actor in ["mei.marketing", "desk.wu", "dpo.zhou"] {
        assert!(
            audit.contains(actor),
            "the audit log names {actor}: {audit}"
        );
    }
    browser.screenshot("audit");
    // The dry run of a decision: SMS marketing to someone in China without consent is denied,
    // citing the PIPL.
    browser.go("policies");
    browser.click("[data-testid=policy-purpose] option[value='marketing.sms']");
    browser.click("[data-testid=policy-evaluate]");
    let decision = browser.wait_text("[data-testid=decision]", |t| t.contains("PIPL"));
    assert!(decision.starts_with("Denied"), "{decision}");
    browser.wait_text("[data-testid=golden]", |t| t.contains("cases pass"));
    browser.click("[data-testid=ropa-load]");
    browser.wait_text("[data-testid=ropa]", |t| t.len() > 200);
    browser.screenshot("policies");
    browser.go("recipients");
    browser.wait_text("[data-testid=recipients-table]", |t| {
        t.contains("Analytics agency")
    });
    browser.type_into("[data-testid=suppress-value]", "buyer2@example.cn");
    browser.click("[data-testid=suppress]");
    browser.find("[data-testid=suppressed]");
}

/// Every label of every page (an administrator sees them all) is translated: switched to Chinese, no English
/// word is left but names that are the same in Chinese (RFM, VIP, iOS...), and both
/// dictionaries have the same keys.
#[test]
fn the_console_in_chinese_has_no_untranslated_labels() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    seed(&server, &admin);
    add_user(&server, &admin, "admin.li", &["admin"], &[]);
    let driver = Driver::start();
    // The browser asks for Chinese: the console starts in Chinese without being told.
    let browser = driver.browser("zh-CN");
    browser.open(&format!("{}/console/", server.base_url()));
    browser.wait_text("[data-testid=signin-submit]", |t| t == "登录");
    browser.sign_in(&server, "admin.li");
    let missing = browser.script_async(
        "const done = arguments[arguments.length - 1];
         import('/console/assets/i18n.js').then(m => done(m.missingKeys()));",
    );
    assert_eq!(missing, json!([]), "keys missing from a dictionary");
    // Names that are the same in Chinese: brands, abbreviations, the language switch.
    let allowed = [
        "cdp", "RFM", "CLV", "VIP", "iOS", "OpenID", "UnionID", "WeChat", "English", "Meta", "SHA",
        "HTTPS", "CSV", "JSONL", "GDPR", "PIPL", "CAC",
    ];
    for page in [
        "overview",
        "sources",
        "audiences",
        "profiles",
        "consents",
        "exports",
        "recipients",
        "requests",
        "audit",
        "policies",
    ] {
        browser.go(page);
        // Let the page's requests answer and fill it.
        std::thread::sleep(Duration::from_millis(800));
        // Labels: the page's text, option texts and placeholders, without the data it shows
        // as it is (marked `data-raw` or in <code>: names, ids, queries, audit actions).
        let labels = browser.script(
            "const copy = document.body.cloneNode(true);
             copy.querySelectorAll('code, [data-raw], input, textarea, script, noscript').forEach(e => e.remove());
             const placeholders = [...document.querySelectorAll('[placeholder]')].map(e => e.placeholder);
             const texts = [];
             const walker = document.createTreeWalker(copy, NodeFilter.SHOW_TEXT);
             while (walker.nextNode()) texts.push(walker.currentNode.nodeValue);
             return [...texts, ...placeholders].join(' ');",
            json!([]),
        );
        let labels = labels.as_str().unwrap();
        let untranslated: Vec<&str> = labels
            .split(|c: char| !c.is_ascii_alphabetic())
            .filter(|word| word.len() >= 3)
            .filter(|word| !allowed.contains(word))
            .collect();
        assert!(
            untranslated.is_empty(),
            "page {page} shows English in Chinese: {untranslated:?}\n{labels}"
        );
        browser.screenshot(&format!("zh-{page}"));
    }
}
