//! The console in a real headless Chromium, driven through ChromeDriver's WebDriver protocol
//! (W3C, JSON over HTTP: a few calls, spoken with this suite's own HTTP client). The browser
//! enforces the page's Content-Security-Policy, cookies and same-origin rules for real.
//!
//! The browser is `webdriver.rs`'s. Screenshots of the main pages are kept in
//! `target/console-screenshots/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::console::{PASSWORD, add_user};
use crate::support::{Server, temp_dir};
use crate::webdriver::{Browser, Driver};

impl Browser<'_> {
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
    // The list shows the entry's type and who added it, never the value; removing it asks
    // first.
    let listed = browser.wait_text("[data-testid=suppressions-table]", |t| t.contains("sup_"));
    assert!(!listed.contains("buyer2"), "{listed}");
    browser.click("[data-testid=suppressions-table] button");
    browser.accept_alert();
    browser.wait_text("[data-testid=suppression-list]", |t| {
        t.contains("Nothing is suppressed")
    });
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
        "HTTPS", "CSV", "JSONL", "GDPR", "PIPL", "CAC", "SFTP", "ROI",
    ];
    for page in [
        "overview",
        "sources",
        "audiences",
        "profiles",
        "consents",
        "exports",
        "recipients",
        "deliveries",
        "campaigns",
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

/// The deliveries page: an administrator adds a webhook and sees its secret once, schedules an
/// export of a saved audience, runs it now and reads its run in the history.
#[test]
fn the_deliveries_page_adds_a_webhook_and_schedules_an_export_that_runs() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    seed(&server, &admin);
    let recipient = server.post_with(
        "/v1/recipients",
        &admin,
        &json!({"name": "Analytics agency", "contact": "dpo@agency.example.cn", "role": "processor",
                "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["analytics"]}),
    );
    assert_eq!(recipient.status, 201, "{}", recipient.text());
    let expected = count_by_api(&server, &admin, "city:上海", "analytics");
    assert!(expected["count"].as_u64().unwrap() >= 20, "{expected}");
    let audience = server.post_with(
        "/v1/audiences",
        &admin,
        &json!({"name": "上海 buyers", "purpose": "analytics", "query": "city:上海"}),
    );
    assert_eq!(audience.status, 201, "{}", audience.text());
    add_user(&server, &admin, "ops.admin", &["admin"], &[]);
    let driver = Driver::start();
    let browser = driver.browser("en-US");
    browser.sign_in(&server, "ops.admin");
    browser.go("deliveries");
    browser.type_into("[data-testid=destination-name]", "agency hook");
    browser.type_into(
        "[data-testid=destination-url]",
        "https://hooks.agency.example.cn/cdp",
    );
    browser.click("[data-testid=destination-create]");
    let created = browser.wait_text("[data-testid=destination-created]", |t| {
        t.contains("whsec_")
    });
    assert!(created.contains("shown this once"), "{created}");
    browser.wait_text("[data-testid=destinations-table]", |t| {
        t.contains("agency hook")
    });
    // Shown once: the list does not carry it.
    let secret = created
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap();
    assert!(
        !browser
            .text_of("[data-testid=destination-list]")
            .contains(secret)
    );

    browser.type_into("[data-testid=schedule-name]", "weekly 上海 list");
    browser.script(
        "const select = document.querySelector('[data-testid=purpose]');
         select.value = 'analytics';
         select.dispatchEvent(new Event('change'));",
        json!([]),
    );
    browser.click("[data-testid=schedule-create]");
    browser.wait_text("[data-testid=schedule-created]", |t| {
        t.contains("Scheduled")
    });
    let listed = browser.wait_text("[data-testid=schedules-table]", |t| t.contains("weekly"));
    assert!(listed.contains("0 3 * * * +08:00"), "{listed}");
    browser.click("[data-testid=schedules-table] button[data-testid^=run-]");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // The table is redrawn after a run: the button is found again at each click.
        browser.script(
            "document.querySelector('[data-testid=schedules-table] button[data-testid^=history-]').click();",
            json!([]),
        );
        let history = browser.wait_text("[data-testid=schedule-history]", |t| !t.is_empty());
        if history.contains("Done") {
            assert!(history.contains("Runs of weekly"), "{history}");
            break;
        }
        assert!(Instant::now() < deadline, "{history}");
        std::thread::sleep(Duration::from_millis(300));
    }
    browser.screenshot("deliveries");
}

/// The campaigns page: a marketer makes an A/B campaign with a holdout in the form, sends it,
/// and reads its results per arm (members, conversion rate, uplift) once conversions came in.
#[test]
fn the_campaigns_page_makes_sends_and_measures_a_campaign() {
    let dir = temp_dir();
    let config = crate::campaigns::without_quiet_hours(dir.path());
    let server = Server::start(dir.path(), &["--config", &config], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "app", "ios");
    let people = 240;
    let batch: Vec<Value> = (0..people)
        .map(|i| {
            json!({"type": "identify", "userId": format!("c-{i}"),
                "traits": {"phone": crate::campaigns::phone(i), "address": {"country": "CN", "city": "苏州"}}})
        })
        .collect();
    assert_eq!(
        server
            .ingest("/v1/batch", &key, &json!({ "batch": batch }))
            .status,
        200
    );
    crate::campaigns::grant_sms(&server, &admin, "c", people);
    let expected = count_by_api(&server, &admin, "city:苏州", "marketing.sms");
    assert!(expected["matched"].as_u64().unwrap() > 0, "{expected}");
    let recipient = server.post_with("/v1/recipients", &admin, &json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
        "role": "processor", "region": "CN", "transfer_mechanism": "none", "allowed_purposes": ["marketing.sms"]}));
    assert_eq!(recipient.status, 201, "{}", recipient.text());
    let audience = server.post_with(
        "/v1/audiences",
        &admin,
        &json!({"name": "苏州", "purpose": "marketing.sms", "query": "city:苏州"}),
    );
    assert_eq!(audience.status, 201, "{}", audience.text());
    add_user(&server, &admin, "mkt.zhou", &["marketer"], &[]);
    let driver = Driver::start();
    let browser = driver.browser("en-US");
    browser.sign_in(&server, "mkt.zhou");
    browser.go("campaigns");
    browser.type_into("[data-testid=campaign-name]", "双十二 SMS");
    browser.script(
        "const select = document.querySelector('[data-testid=purpose]');
         select.value = 'marketing.sms';
         select.dispatchEvent(new Event('change'));
         document.querySelector('[data-testid=campaign-channel]').value = 'sms';
         document.querySelector('[data-testid=campaign-holdout]').value = '20';
         document.querySelector('[data-testid=campaign-format]').value = 'jsonl';
         document.querySelector('input[value=\"identifiers.phone\"]').checked = true;",
        json!([]),
    );
    browser.click("[data-testid=campaign-create]");
    browser.wait_text("[data-testid=campaign-created]", |t| t.contains("created"));
    let listed = browser.wait_text("[data-testid=campaigns-table]", |t| t.contains("双十二"));
    assert!(
        listed.contains("when sent") && listed.contains("20%"),
        "{listed}"
    );
    let id = server.get_with("/v1/campaigns", &admin).json()["campaigns"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    browser.click(&format!("[data-testid=send-{id}]"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let export = loop {
        let campaign = server
            .get_with(&format!("/v1/campaigns/{id}"), &admin)
            .json();
        if let Some(export) = campaign["sends"][0].as_str() {
            break export.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the send did not start: {campaign}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let send = crate::campaigns::wait_done(&server, &admin, &export);
    // A third of the contacted people order after the send; nobody in the holdout does.
    let contacted = crate::campaigns::rows_of(&server, &admin, send["id"].as_str().unwrap());
    let orders: Vec<Value> = contacted
        .values()
        .enumerate()
        .filter(|(n, _)| n % 3 == 0)
        .map(|(n, (_, phone))| {
            let i = crate::campaigns::person_of(phone);
            json!({"type": "track", "userId": format!("c-{i}"), "event": "Order Completed",
                "messageId": format!("order-{n}"), "properties": {"revenue": 120}})
        })
        .collect();
    assert_eq!(
        server
            .ingest("/v1/batch", &key, &json!({ "batch": orders }))
            .status,
        200
    );
    browser.click(&format!("[data-testid=open-{id}]"));
    let arms = browser.wait_text("[data-testid=campaign-arms]", |t| t.contains("Holdout"));
    assert!(
        arms.contains("Conversion rate") && arms.contains("0.00%"),
        "{arms}"
    );
    let uplift = browser.text_of("[data-testid=campaign-uplift]");
    assert!(
        uplift.contains("A") && uplift.contains("B") && uplift.contains("significant"),
        "{uplift}"
    );
    let sends = browser.text_of("[data-testid=campaign-sends]");
    assert!(sends.contains("Done"), "{sends}");
    browser.screenshot("campaigns");
}
