//! Named accounts and console sessions over HTTP and the CLI: sign-in, the session cookie,
//! CSRF, lock-out, TOTP, sign-out, the audit log naming the account, and the console's files
//! with their Content-Security-Policy. (The browser flows are in `browser.rs`.)

use std::io::Write as _;
use std::process::Stdio;

use serde_json::json;

use crate::support::{Response, Server, cdp, http, temp_dir, text};

pub const PASSWORD: &str = "correct horse battery staple";

/// `cdp users add` with the password on standard input; returns the CLI's output.
pub fn add_user(
    server: &Server,
    admin: &str,
    name: &str,
    roles: &[&str],
    extra: &[&str],
) -> String {
    let mut command = cdp();
    command
        .args(["users", "add", "--name", name])
        .args(roles.iter().flat_map(|role| ["--role", role]))
        .args(extra)
        .args(["--server", &server.base_url(), "--token", admin])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

fn sign_in(server: &Server, name: &str, password: &str, code: Option<&str>) -> Response {
    let mut body = json!({ "name": name, "password": password });
    if let Some(code) = code {
        body["code"] = code.into();
    }
    http(
        server.addr,
        "POST",
        "/v1/session",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// The `cdp_session=...` pair of a sign-in answer's Set-Cookie.
fn cookie_of(response: &Response) -> String {
    let line = response
        .head
        .lines()
        .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie in {}", response.head));
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

fn with_cookie(
    server: &Server,
    method: &str,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<serde_json::Value>,
) -> Response {
    let mut headers = vec![("Cookie", cookie.to_string())];
    if let Some(csrf) = csrf {
        headers.push(("X-CSRF-Token", csrf.to_string()));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json".into()));
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    http(server.addr, method, path, &headers, body.as_bytes())
}

fn audit_entries(server: &Server, admin: &str) -> Vec<serde_json::Value> {
    let answer = server
        .get_with("/v1/audit?after=0&limit=1000", admin)
        .json();
    answer["entries"].as_array().unwrap().clone()
}

#[test]
fn an_account_signs_in_acts_under_its_name_behind_csrf_and_signs_out() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let output = add_user(&server, &admin, "li.na", &["marketer"], &[]);
    assert!(output.contains("li.na"), "{output}");

    // Wrong password: one answer for a wrong password and for an unknown name.
    let wrong = sign_in(&server, "li.na", "not the password at all", None);
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert_eq!(wrong.json()["error"]["code"], "sign_in_failed");
    let unknown = sign_in(&server, "nobody", PASSWORD, None);
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json()["error"]["code"], "sign_in_failed");

    let signed_in = sign_in(&server, "li.na", PASSWORD, None);
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    let set_cookie = signed_in
        .head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let session = signed_in.json();
    assert_eq!(session["roles"], json!(["marketer"]));
    assert!(
        session["allowed_purposes"]
            .as_array()
            .unwrap()
            .contains(&json!("marketing.email"))
    );
    assert!(
        !session["allowed_purposes"]
            .as_array()
            .unwrap()
            .contains(&json!("customer_service")),
        "roles.yaml gives marketers no customer_service reads"
    );
    let csrf = session["csrf_token"].as_str().unwrap().to_string();
    let cookie = cookie_of(&signed_in);

    // The cookie is a credential for the API, with the account's roles.
    let me = with_cookie(&server, "GET", "/v1/session", &cookie, None, None);
    assert_eq!(me.json()["name"], "li.na");
    let count_body = json!({"query": "tier:*", "purpose": "analytics"});
    let forged = with_cookie(
        &server,
        "POST",
        "/v1/audiences/count",
        &cookie,
        None,
        Some(count_body.clone()),
    );
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert_eq!(forged.json()["error"]["code"], "csrf_rejected");
    let wrong_token = with_cookie(
        &server,
        "POST",
        "/v1/audiences/count",
        &cookie,
        Some(&"0".repeat(64)),
        Some(count_body.clone()),
    );
    assert_eq!(wrong_token.json()["error"]["code"], "csrf_rejected");
    let counted = with_cookie(
        &server,
        "POST",
        "/v1/audiences/count",
        &cookie,
        Some(&csrf),
        Some(count_body.clone()),
    );
    assert_eq!(counted.status, 200, "{}", counted.text());
    // Another site's page, even holding the token somehow, is refused by its Origin.
    let cross_site = http(
        server.addr,
        "POST",
        "/v1/audiences/count",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Origin", "https://evil.example"),
            ("Content-Type", "application/json"),
        ],
        count_body.to_string().as_bytes(),
    );
    assert_eq!(cross_site.json()["error"]["code"], "csrf_rejected");
    // The role still decides: a marketer reads no audit log and manages no accounts.
    let audit = with_cookie(&server, "GET", "/v1/audit", &cookie, None, None);
    assert_eq!(audit.status, 403);
    let accounts = with_cookie(&server, "GET", "/v1/accounts", &cookie, None, None);
    assert_eq!(accounts.status, 403);

    // The audit log names the account: its sign-ins (the failed one too) and its count.
    let entries = audit_entries(&server, &admin);
    let by_lina: Vec<_> = entries.iter().filter(|e| e["actor"] == "li.na").collect();
    assert!(
        by_lina.iter().any(|e| e["action"] == "account.sign_in"
            && e["decision"] == "deny"
            && e["rules"] == json!(["sign_in:failed"])),
        "{by_lina:?}"
    );
    assert!(
        by_lina
            .iter()
            .any(|e| e["action"] == "account.sign_in" && e["decision"] == "allow")
    );
    assert!(
        by_lina.iter().any(|e| e["action"] == "audience.count"),
        "{by_lina:?}"
    );
    assert!(
        entries.iter().any(|e| e["actor"] == "(unknown account)"),
        "a name nobody has is not recorded as typed"
    );
    assert!(!entries.iter().any(|e| e["actor"] == "nobody"));

    // Signing out needs the token too, and ends the session for good.
    let not_forged = with_cookie(&server, "DELETE", "/v1/session", &cookie, None, None);
    assert_eq!(not_forged.status, 403);
    let out = with_cookie(&server, "DELETE", "/v1/session", &cookie, Some(&csrf), None);
    assert_eq!(out.status, 204, "{}", out.text());
    assert!(out.head.contains("Max-Age=0"), "{}", out.head);
    let after = with_cookie(
        &server,
        "POST",
        "/v1/audiences/count",
        &cookie,
        Some(&csrf),
        Some(count_body),
    );
    assert_eq!(after.status, 401, "{}", after.text());

    let (status, logs) = server.stop_with("TERM");
    assert!(status.success());
    assert!(!logs.contains(PASSWORD), "a password reached the log");
    assert!(
        !logs.contains(cookie.split_once('=').unwrap().1),
        "a session token reached the log"
    );
}

#[test]
fn repeated_failures_lock_the_account_until_an_admin_unlocks_it() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    add_user(&server, &admin, "zhang.wei", &["customer_service"], &[]);
    for attempt in 0..5 {
        let answer = sign_in(&server, "zhang.wei", "guess number something", None);
        assert_eq!(
            answer.json()["error"]["code"],
            "sign_in_failed",
            "attempt {attempt}"
        );
    }
    // Now even the right password is refused, saying until when.
    let locked = sign_in(&server, "zhang.wei", PASSWORD, None);
    assert_eq!(locked.status, 429, "{}", locked.text());
    assert_eq!(locked.json()["error"]["code"], "account_locked");
    assert!(locked.json()["error"]["details"]["locked_until"].is_string());
    let listed = run_cli(&server, &admin, &["users", "list"]);
    assert!(listed.contains("locked until"), "{listed}");
    run_cli(&server, &admin, &["users", "unlock", "--name", "zhang.wei"]);
    assert_eq!(sign_in(&server, "zhang.wei", PASSWORD, None).status, 200);
    let entries = audit_entries(&server, &admin);
    assert!(
        entries
            .iter()
            .any(|e| e["rules"] == json!(["sign_in:locked_out"]))
    );
    assert!(entries.iter().any(|e| e["action"] == "account.unlock"));

    // Disabling ends the account's sessions at once.
    let session = sign_in(&server, "zhang.wei", PASSWORD, None);
    let cookie = cookie_of(&session);
    run_cli(
        &server,
        &admin,
        &["users", "disable", "--name", "zhang.wei"],
    );
    assert_eq!(
        with_cookie(&server, "GET", "/v1/session", &cookie, None, None).status,
        401
    );
    assert_eq!(sign_in(&server, "zhang.wei", PASSWORD, None).status, 401);
}

fn run_cli(server: &Server, admin: &str, args: &[&str]) -> String {
    let output = crate::support::run(cdp().args(args).args([
        "--server",
        &server.base_url(),
        "--token",
        admin,
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
}

fn base32_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let value = alphabet.iter().position(|a| *a == c).unwrap() as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    out
}

#[test]
fn an_account_with_totp_needs_its_current_code_once() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let output = add_user(&server, &admin, "王芳", &["dpo"], &["--totp"]);
    let secret = output
        .lines()
        .find_map(|line| line.strip_prefix("totp     "))
        .unwrap_or_else(|| panic!("no secret in {output}"))
        .trim()
        .to_string();
    assert!(
        output.contains("otpauth://totp/cdp:%E7%8E%8B%E8%8A%B3?secret="),
        "{output}"
    );
    let secret = base32_decode(&secret);

    let without = sign_in(&server, "王芳", PASSWORD, None);
    assert_eq!(without.status, 401);
    assert_eq!(without.json()["error"]["code"], "code_required");
    // A wrong password never reveals that a code would be asked for.
    let wrong_password = sign_in(&server, "王芳", "wrong password here", None);
    assert_eq!(wrong_password.json()["error"]["code"], "sign_in_failed");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let code = |step: i64| format!("{:06}", cdp_crypto::totp_code(&secret, step));
    let step = now / cdp_crypto::TOTP_STEP_SECONDS;
    let stale = sign_in(&server, "王芳", PASSWORD, Some(&code(step - 10)));
    assert_eq!(stale.json()["error"]["code"], "sign_in_failed");
    let good = sign_in(&server, "王芳", PASSWORD, Some(&code(step)));
    assert_eq!(good.status, 200, "{}", good.text());
    // The same code does not open a second session.
    let replay = sign_in(&server, "王芳", PASSWORD, Some(&code(step)));
    assert_eq!(replay.json()["error"]["code"], "sign_in_failed");
}

#[test]
fn bad_account_requests_get_clear_errors() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let create = |body: serde_json::Value| server.post_with("/v1/accounts", &admin, &body);
    let short = create(json!({"name": "a", "roles": ["dpo"], "password": "short"}));
    assert_eq!(short.status, 400);
    assert!(
        short.text().contains("at least 12 characters"),
        "{}",
        short.text()
    );
    let role = create(json!({"name": "a", "roles": ["boss"], "password": PASSWORD}));
    assert_eq!(role.status, 400);
    assert!(role.text().contains("unknown role"), "{}", role.text());
    let purpose = create(
        json!({"name": "a", "roles": ["marketer"], "purposes": ["customer_service"], "password": PASSWORD}),
    );
    assert_eq!(purpose.status, 400);
    assert!(
        purpose.text().contains("may not state the purpose"),
        "{}",
        purpose.text()
    );
    let name = create(json!({"name": "a b<script>", "roles": ["dpo"], "password": PASSWORD}));
    assert_eq!(name.status, 400);
    assert_eq!(
        create(json!({"name": "a", "roles": ["dpo"], "password": PASSWORD})).status,
        201
    );
    let twice = create(json!({"name": "a", "roles": ["dpo"], "password": PASSWORD}));
    assert_eq!(twice.status, 409);
    let not_json = http(
        server.addr,
        "POST",
        "/v1/session",
        &[("Content-Type", "application/json")],
        b"[]",
    );
    assert_eq!(not_json.status, 400);
    // Another site's page cannot sign the browser in (login CSRF).
    let cross_site = http(
        server.addr,
        "POST",
        "/v1/session",
        &[
            ("Content-Type", "application/json"),
            ("Origin", "https://evil.example"),
        ],
        json!({"name": "a", "password": PASSWORD})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(cross_site.status, 403);
    assert_eq!(cross_site.json()["error"]["code"], "csrf_rejected");
    let no_cookie = http(server.addr, "GET", "/v1/session", &[], b"");
    assert_eq!(no_cookie.status, 401);
    let bogus = http(
        server.addr,
        "GET",
        "/v1/session",
        &[("Cookie", "cdp_session=cdps_nothing")],
        b"",
    );
    assert_eq!(bogus.status, 401);
    assert_eq!(
        server
            .get_with("/v1/accounts", &server.token(dir.path(), &["dpo"]))
            .status,
        403
    );
}

/// The console is the binary's own: a page, scripts and a stylesheet, with a CSP that
/// allows nothing from elsewhere and nothing inline.
#[test]
fn the_console_is_served_with_a_strict_content_security_policy() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let redirect = server.get("/console");
    assert_eq!(redirect.status, 301);
    assert!(
        redirect
            .head
            .to_ascii_lowercase()
            .contains("location: /console/")
    );
    let page = server.get("/console/");
    assert_eq!(page.status, 200);
    let head = page.head.to_ascii_lowercase();
    assert!(
        head.contains(
            "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'"
        ),
        "{head}"
    );
    assert!(head.contains("frame-ancestors 'none'"));
    assert!(head.contains("x-content-type-options: nosniff"));
    let html = page.text();
    // No inline script or style: every <script> has a src, no style attributes or blocks.
    for (i, _) in html.match_indices("<script") {
        let tag = &html[i..i + html[i..].find('>').unwrap()];
        assert!(
            tag.contains("src=\"/console/assets/"),
            "inline script: {tag}"
        );
    }
    assert!(
        !html.contains("<style") && !html.contains("style="),
        "{html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere: {html}"
    );
    for asset in [
        "app.js",
        "api.js",
        "dom.js",
        "i18n.js",
        "charts.js",
        "pages.js",
        "ui.js",
        "page-insight.js",
        "page-people.js",
        "page-data.js",
        "page-governance.js",
        "console.css",
    ] {
        let file = server.get(&format!("/console/assets/{asset}"));
        assert_eq!(file.status, 200, "{asset}");
        assert!(
            file.head
                .to_ascii_lowercase()
                .contains("content-security-policy")
        );
        assert!(
            !file.text().contains("innerHTML"),
            "{asset} builds markup from strings"
        );
        assert!(
            !file.text().contains("https://"),
            "{asset} loads from elsewhere"
        );
    }
    assert_eq!(
        server.get("/console/assets/../../keys/master.key").status,
        404
    );
    assert_eq!(server.get("/console/assets/nothing.js").status, 404);
}

/// The charts' breakdown counts the members the policies allow per value, withholds every
/// count below the minimum audience size (for every caller), and is audited once.
#[test]
fn an_audience_breakdown_withholds_small_counts_and_is_audited_once() {
    let dir = temp_dir();
    let server = Server::start(dir.path(), &[], &[]).unwrap();
    let admin = server.token(dir.path(), &["admin"]);
    let key = server.create_source(&admin, "shop", "web");
    let batch: Vec<_> = (0..35)
        .map(|i| {
            json!({"type": "identify", "userId": format!("c-{i}"),
                   "traits": {"address": {"country": "CN", "city": if i < 30 { "上海" } else { "杭州" }}},
                   "context": {"consent": {"categoryPreferences": {"analytics": true}}}})
        })
        .collect();
    assert_eq!(
        server
            .ingest("/v1/batch", &key, &json!({ "batch": batch }))
            .status,
        200
    );
    let marketer = server.token(dir.path(), &["marketer"]);
    let body =
        json!({"query": "tier:*", "purpose": "analytics", "dimensions": ["city", "tier", "rfm"]});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let answer = loop {
        let answer = server
            .post_with("/v1/audiences/breakdown", &marketer, &body)
            .json();
        if answer["tier"][2]["people"] == 35 || std::time::Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(answer["suppressed_below"], 20, "{answer}");
    let city = |name: &str| {
        answer["city"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["value"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {answer}"))
    };
    assert_eq!(city("上海")["people"], 30, "{answer}");
    assert!(
        city("杭州")["people"].is_null(),
        "5 people are withheld: {answer}"
    );
    assert_eq!(
        answer["tier"][2],
        json!({"value": "ordinary", "people": 35})
    );
    assert!(answer["rfm"].is_array());
    assert!(
        answer.get("lifecycle").is_none(),
        "only the dimensions asked for"
    );
    assert_eq!(answer["matched"], 35);
    let coverage = server
        .post_with(
            "/v1/audiences/breakdown",
            &marketer,
            &json!({"query": "tier:*", "purpose": "analytics", "dimensions": ["consent"]}),
        )
        .json();
    let granted = |purpose: &str| {
        coverage["consent"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["value"] == purpose)
            .map(|b| b["people"].clone())
            .unwrap_or_else(|| panic!("no {purpose} in {coverage}"))
    };
    assert_eq!(granted("analytics"), 35, "{coverage}");
    assert_eq!(
        granted("marketing"),
        0,
        "nobody granted marketing: {coverage}"
    );

    let bad = server.post_with(
        "/v1/audiences/breakdown",
        &marketer,
        &json!({"query": "tier:*", "purpose": "analytics", "dimensions": ["phone"]}),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("not a dimension"), "{}", bad.text());
    let auditor = server.token(dir.path(), &["auditor"]);
    assert_eq!(
        server
            .post_with("/v1/audiences/breakdown", &auditor, &body)
            .status,
        403
    );
    let entries = audit_entries(&server, &admin);
    let breakdowns: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "audience.breakdown")
        .collect();
    assert!(!breakdowns.is_empty());
    assert_eq!(breakdowns[0]["rules"], json!(["city", "tier", "rfm"]));
}

/// The consent trend: a node tallies the states per purpose every `trend_every_secs`; the
/// trend shows a grant and the later withdrawal as points in time, withholds small counts,
/// survives a restart, and refuses bad parameters.
#[test]
fn the_consent_trend_shows_grants_then_withdrawals_over_time() {
    let dir = temp_dir();
    let config = dir.path().join("cdp.toml");
    std::fs::write(&config, "[consent]\ntrend_every_secs = 1\n").unwrap();
    let data = dir.path().join("data");
    let config_arg = ["--config", config.to_str().unwrap()];
    let server = Server::start(&data, &config_arg, &[]).unwrap();
    let admin = server.token(&data, &["admin"]);
    let key = server.create_source(&admin, "shop", "web");
    // 25 people arrive without a consent signal, 3 who say no to e-mail.
    let batch: Vec<_> = (0..28)
        .map(|i| {
            let mut message = json!({"type": "identify", "userId": format!("c-{i}")});
            if i >= 25 {
                message["context"] = json!({"consent": {"categoryPreferences": {"email": false}}});
            }
            message
        })
        .collect();
    let sent = server.ingest("/v1/batch", &key, &json!({ "batch": batch }));
    assert_eq!(sent.status, 200, "{}", sent.text());
    let record = |server: &Server, i: usize, status: &str| {
        let answer = server.post_with(
            "/v1/consents",
            &admin,
            &json!({"subject": {"type": "user_id", "value": format!("c-{i}")},
                    "purpose": "marketing.email", "status": status, "notice_version": "2026-01",
                    "source": "service desk call", "evidence": {"note": "asked by phone"}}),
        );
        assert_eq!(answer.status, 200, "{}", answer.text());
    };
    let trend = |server: &Server, query: &str| {
        let answer = server.get_with(&format!("/v1/consents/trend{query}"), &admin);
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json()
    };
    // Waits for a stored tally (not the live count) where `test` holds for marketing.email.
    let wait_for_tally = |server: &Server, test: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let answer = trend(server, "?step=tally");
            let points = answer["points"].as_array().unwrap().clone();
            if points
                .iter()
                .any(|p| p["live"] != true && test(&p["purposes"]["marketing.email"]))
            {
                return answer;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no such tally: {answer}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    for i in 0..25 {
        record(&server, i, "granted");
    }
    let granted = wait_for_tally(&server, &|email| email["granted"] == 25);
    assert_eq!(granted["suppressed_below"], 20, "{granted}");
    let point = granted["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purposes"]["marketing.email"]["granted"] == 25)
        .unwrap()
        .clone();
    assert!(
        point["purposes"]["marketing.email"]["denied"].is_null(),
        "3 people who denied are withheld: {point}"
    );
    assert_eq!(point["people"], 28, "{point}");
    assert_eq!(point["purposes"]["analytics"]["none"], 28, "{point}");

    // Everyone who granted withdraws (at the service desk): a later tally says so, the
    // earlier one stays.
    for i in 0..25 {
        record(&server, i, "withdrawn");
    }
    let withdrawn = wait_for_tally(&server, &|email| email["withdrawn"] == 25);
    let points = withdrawn["points"].as_array().unwrap();
    let first_granted = points
        .iter()
        .position(|p| p["purposes"]["marketing.email"]["granted"] == 25)
        .expect("the grant is still in the trend");
    let first_withdrawn = points
        .iter()
        .position(|p| p["purposes"]["marketing.email"]["withdrawn"] == 25)
        .unwrap();
    assert!(first_granted < first_withdrawn, "{withdrawn}");
    assert_eq!(
        points[first_withdrawn]["purposes"]["marketing.email"]["granted"],
        0
    );
    let last = points.last().unwrap();
    assert_eq!(last["live"], true, "the last point is counted now: {last}");
    assert_eq!(last["purposes"]["marketing.email"]["withdrawn"], 25);
    // By day: one stored point for today (its last tally), then the live one.
    let daily = trend(&server, "");
    assert_eq!(daily["points"].as_array().unwrap().len(), 2, "{daily}");
    assert_eq!(daily["days"], 30);

    // Every role may read it (counts only); nobody without credentials.
    let auditor = server.token(&data, &["auditor"]);
    assert_eq!(server.get_with("/v1/consents/trend", &auditor).status, 200);
    assert_eq!(server.get("/v1/consents/trend").status, 401);
    for bad in [
        "?days=0",
        "?days=401",
        "?days=many",
        "?step=hour",
        "?phone=1",
    ] {
        let answer = server.get_with(&format!("/v1/consents/trend{bad}"), &admin);
        assert_eq!(answer.status, 400, "{bad}: {}", answer.text());
    }

    // The tallies are stored: a restarted server still has them.
    let (status, _) = server.stop_with("TERM");
    assert!(status.success());
    let server = Server::start(&data, &config_arg, &[]).unwrap();
    let again = trend(&server, "?step=tally");
    assert!(
        again["points"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["live"] != true && p["purposes"]["marketing.email"]["granted"] == 25),
        "{again}"
    );
}
