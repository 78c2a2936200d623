//! `cdp import` (issue 3, item 9): CSV and JSONL through the running server, with a column
//! mapping, a report of refused rows, and the same identity path as live events.

use crate::support::{Server, cdp, run, temp_dir, text};

#[test]
fn csv_and_jsonl_import_with_mapping_report_and_idempotence() {
    let dir = temp_dir();
    let server = Server::start(&dir.path().join("data"), &[], &[]).unwrap();
    let admin = server.token(&dir.path().join("data"), &["admin"]);
    server.create_source(&admin, "crm export", "crm");

    let csv = dir.path().join("members.csv");
    std::fs::write(
        &csv,
        "会员号,手机,email,姓名,crm_id\n\
         M001,138 0013 8001,Wang.Fang@example.com,王芳,C-1\n\
         M002,13800138002,,李雷,C-2\n\
         ,,,无名,\n\
         M004,13800138004,x@example.com,多余,C-4,extra\n\
         M005,13800138005,,韩梅梅,C-5\n",
    )
    .unwrap();
    let import = |file: &std::path::Path, extra: &[&str]| {
        let output = run(cdp()
            .args(["import", "--source", "crm export"])
            .arg(file)
            .args(extra)
            .args([
                "--batch-size",
                "2",
                "--server",
                &server.base_url(),
                "--token",
                &admin,
            ]));
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    let maps = [
        "--map",
        "会员号=userId",
        "--map",
        "手机=traits.phone",
        "--map",
        "姓名=traits.name",
    ];
    let summary = import(&csv, &maps);
    assert!(summary.contains("5 rows: 3 imported"), "{summary}");
    assert!(summary.contains("2 refused"), "{summary}");
    let report = std::fs::read_to_string(dir.path().join("members.csv.errors.txt")).unwrap();
    assert!(
        report.contains("row 4: no userId, anonymousId or external id"),
        "{report}"
    );
    assert!(report.contains("row 5: not a CSV record"), "{report}");
    // A row whose identifiers are all junk or invalid is not stored, and a phone that does
    // not parse is left out of a row that is imported; each is named by row and field, never by value.
    let broken = dir.path().join("broken.csv");
    std::fs::write(
        &broken,
        "user_id,email,phone,name\nnull,not-an-email,,甲\nu-yi,yi@example.com,12345,乙\n",
    )
    .unwrap();
    let summary = import(&broken, &[]);
    assert!(
        summary.contains("2 rows: 1 imported, 0 already imported, 1 without a usable identifier"),
        "{summary}"
    );
    assert!(
        summary.contains("2 identifiers left out as invalid"),
        "{summary}"
    );
    let report = std::fs::read_to_string(dir.path().join("broken.csv.errors.txt")).unwrap();
    for line in [
        "row 2: traits.email: not a valid email: left out",
        "row 2: no usable identifier (all missing, blocked or invalid): not stored",
        "row 3: traits.phone: not a valid phone: left out (the row was imported)",
    ] {
        assert!(report.contains(line), "{line} missing in {report}");
    }
    assert!(
        !report.contains("12345") && !report.contains("not-an-email"),
        "{report}"
    );
    // A source id where its name belongs is named as the mistake.
    let by_id = run(cdp()
        .args(["import", "--source", "src_0123456789abcdef"])
        .arg(&broken)
        .args(["--server", &server.base_url(), "--token", &admin]));
    assert_eq!(by_id.status.code(), Some(1));
    assert!(
        text(&by_id.stderr).contains("--source takes the source's name, not its id"),
        "{}",
        text(&by_id.stderr)
    );

    // The CRM source has no region: the national number did not become an identifier, but
    // the e-mail, the member id and the crm id did, and the traits are there.
    let wang = server
        .profile_of(&admin, "user_id", "M001")
        .expect("M001 imported");
    assert_eq!(
        server
            .profile_of(&admin, "email", "wang.fang@example.com")
            .as_deref(),
        Some(wang.as_str())
    );
    assert_eq!(
        server.profile_of(&admin, "crm_id", "C-1").as_deref(),
        Some(wang.as_str())
    );
    let profile = server
        .get_with(
            &format!("/v1/profiles/{wang}?purpose=essential.service"),
            &admin,
        )
        .json();
    // A CN source: names are masked for display (GB/T 35273 7.2).
    assert_eq!(profile["traits"]["name"]["value"], "王*");
    assert_eq!(profile["channels"]["crm"]["events"], 1);

    // Importing the same file again changes nothing.
    let again = import(&csv, &maps);
    assert!(again.contains("0 imported, 3 already imported"), "{again}");
    let profile = server
        .get_with(
            &format!("/v1/profiles/{wang}?purpose=essential.service"),
            &admin,
        )
        .json();
    assert_eq!(profile["event_count"], 1);

    let jsonl = dir.path().join("orders.jsonl");
    std::fs::write(
        &jsonl,
        "{\"type\":\"track\",\"userId\":\"M001\",\"event\":\"Order Completed\",\"properties\":{\"total\":199}}\n\
         {\"user_id\":\"M002\",\"email\":\"li.lei@example.com\"}\n\
         {not json\n\
         {\"type\":\"track\",\"userId\":\"M005\"}\n",
    )
    .unwrap();
    let summary = import(&jsonl, &[]);
    assert!(summary.contains("4 rows: 2 imported"), "{summary}");
    let report = std::fs::read_to_string(dir.path().join("orders.jsonl.errors.txt")).unwrap();
    assert!(report.contains("row 3: not valid JSON"), "{report}");
    assert!(
        report.contains("row 4: event: is required for track"),
        "{report}"
    );
    assert_eq!(
        server.profile_of(&admin, "email", "li.lei@example.com"),
        server.profile_of(&admin, "user_id", "M002")
    );
    assert_eq!(
        server
            .get_with(
                &format!("/v1/profiles/{wang}?purpose=essential.service"),
                &admin
            )
            .json()["event_count"],
        2
    );

    // Mistakes in the command are clear errors.
    let output = run(cdp().args(["import", "--source", "nope"]).arg(&csv).args([
        "--server",
        &server.base_url(),
        "--token",
        &admin,
    ]));
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("404"),
        "{}",
        text(&output.stderr)
    );
    let output = run(cdp()
        .args(["import", "--source", "crm export", "--map", "x=nowhere"])
        .arg(&csv)
        .args(["--token", &admin]));
    assert!(
        text(&output.stderr).contains("unknown target"),
        "{}",
        text(&output.stderr)
    );
}

/// `cdp consents import`: consents with evidence per row from CSV and JSONL; rows the server
/// refuses (nobody with that phone, a bad status) and rows that are not consents (no
/// evidence) are listed by line in an errors file that holds no personal values; the others
/// are recorded, audited under the token's subject, and read back.
#[test]
fn consents_import_records_good_rows_and_lists_the_others_by_line() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[], &[]).unwrap();
    let admin = server.token(&data, &["admin"]);
    let key = server.create_source(&admin, "crm", "crm");
    let people = serde_json::json!({"batch": [
        {"type": "identify", "userId": "m-1", "traits": {"phone": "13800138001"}},
        {"type": "identify", "userId": "m-2", "traits": {"email": "li.lei@example.cn"}},
    ]});
    assert_eq!(server.ingest("/v1/batch", &key, &people).status, 200);
    let csv = dir.path().join("consents.csv");
    std::fs::write(
        &csv,
        "type,value,region,purpose,status,notice_version,source,evidence\n\
         phone,138 0013 8001,CN,marketing.sms,granted,2026-01,store 12,paper form 2026-11-30\n\
         email,li.lei@example.cn,,analytics,withdrawn,,cmp export,\"{\"\"banner\"\": \"\"v3\"\"}\"\n\
         phone,13900000000,CN,marketing.sms,granted,2026-01,store 12,paper form\n\
         email,li.lei@example.cn,,analytics,maybe,,cmp export,banner v3\n\
         email,li.lei@example.cn,,analytics,granted,,cmp export,\n",
    )
    .unwrap();
    let output = run(cdp().args(["consents", "import"]).arg(&csv).args([
        "--server",
        &server.base_url(),
        "--token",
        &admin,
    ]));
    let stdout = text(&output.stdout);
    assert!(!output.status.success(), "refused rows exit non-zero");
    assert!(stdout.contains("recorded 2 consent records"), "{stdout}");
    assert!(
        text(&output.stderr).contains("3 rows were refused"),
        "{}",
        text(&output.stderr)
    );
    let errors = std::fs::read_to_string(dir.path().join("consents.csv.errors.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = errors
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let numbers: Vec<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    assert_eq!(numbers, vec![4, 5, 6], "{errors}");
    assert!(
        lines[0]["error"].as_str().unwrap().starts_with("not_found"),
        "{errors}"
    );
    assert!(
        lines[2]["error"].as_str().unwrap().contains("evidence"),
        "{errors}"
    );
    for value in ["13900000000", "li.lei", "13800138001"] {
        assert!(
            !errors.contains(value),
            "personal value in the errors file: {errors}"
        );
    }

    let person = server.profile_of(&admin, "user_id", "m-1").unwrap();
    let consents = server
        .get_with(
            &format!("/v1/profiles/{person}/consents?purpose=customer_service"),
            &admin,
        )
        .json();
    let record = &consents["history"][0];
    assert_eq!(record["purpose"], "marketing.sms", "{consents}");
    assert_eq!(record["evidence"]["note"], "paper form 2026-11-30");
    assert_eq!(record["notice_version"], "2026-01");

    // JSONL rows as the body of POST /v1/consents: all recorded, no errors file, exit 0.
    let jsonl = dir.path().join("more.jsonl");
    std::fs::write(
        &jsonl,
        "{\"subject\": {\"type\": \"user_id\", \"value\": \"m-2\"}, \"purpose\": \"marketing.email\", \"status\": \"granted\", \"notice_version\": \"2026-01\", \"source\": \"app\", \"evidence\": {\"screen\": \"settings\"}}\n",
    )
    .unwrap();
    let output = run(cdp().args(["consents", "import"]).arg(&jsonl).args([
        "--server",
        &server.base_url(),
        "--token",
        &admin,
    ]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("recorded 1 consent records"));
    assert!(!dir.path().join("more.jsonl.errors.jsonl").exists());
    // A marketer may not record consents: the whole batch is refused, nothing recorded.
    let marketer = server.token(&data, &["marketer"]);
    let output = run(cdp().args(["consents", "import"]).arg(&jsonl).args([
        "--server",
        &server.base_url(),
        "--token",
        &marketer,
    ]));
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("403"),
        "{}",
        text(&output.stderr)
    );
}

/// The README's demo data end to end: every channel file imported, then the generated consent
/// records; computed traits are fresh right after the bulk load (VIPs count, with their age
/// in the answer), and an SMS export of the opted-in people completes.
#[test]
fn demo_data_with_its_consents_exports_to_an_sms_processor() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let demo = dir.path().join("demo");
    let output = run(cdp()
        .args([
            "demo", "generate", "--people", "150", "--seed", "11", "--out",
        ])
        .arg(&demo));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let server = Server::start(&data, &[], &[]).unwrap();
    let admin = server.token(&data, &["admin"]);
    let client = ["--server", &server.base_url(), "--token", &admin];
    for channel in [
        "web",
        "ios",
        "android",
        "mini_program",
        "crm",
        "pos",
        "customer_service",
    ] {
        server.create_source(&admin, channel, channel);
        let output = run(cdp()
            .args(["import", "--source", channel])
            .arg(demo.join(format!("{channel}.jsonl")))
            .args(client));
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    let output = run(cdp()
        .args(["consents", "import"])
        .arg(demo.join("consents.jsonl"))
        .args(client));
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let count = |query: &str, purpose: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let answer = server
                .post_with(
                    "/v1/audiences/count",
                    &admin,
                    &serde_json::json!({"query": query, "purpose": purpose}),
                )
                .json();
            if answer["matched"].as_u64().unwrap_or(0) > 0 || std::time::Instant::now() > deadline {
                return answer;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    let vips = count("tier:vip", "analytics");
    assert!(vips["matched"].as_u64().unwrap() > 0, "{vips}");
    assert!(vips["traits_as_of"].is_string(), "{vips}");
    let opted_in = count("consent.marketing_sms:granted", "marketing.sms");
    assert!(opted_in["count"].as_u64().unwrap() >= 20, "{opted_in}");

    let audience = server
        .post_with(
            "/v1/audiences",
            &admin,
            &serde_json::json!({"name": "sms opt-ins", "purpose": "marketing.sms",
                                "query": "consent.marketing_sms:granted"}),
        )
        .json();
    let recipient = server
        .post_with(
            "/v1/recipients",
            &admin,
            &serde_json::json!({"name": "SMS gateway", "contact": "dpo@sms.example.cn",
                "role": "processor", "region": "CN", "transfer_mechanism": "none",
                "allowed_purposes": ["marketing.sms"]}),
        )
        .json();
    let out = dir.path().join("sms.csv");
    let output = run(cdp()
        .args(["export", "create", "--audience"])
        .arg(audience["id"].as_str().unwrap())
        .args(["--purpose", "marketing.sms", "--recipient"])
        .arg(recipient["id"].as_str().unwrap())
        .args([
            "--field",
            "pseudonym",
            "--field",
            "identifiers.phone",
            "--out",
        ])
        .arg(&out)
        .args(client));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let rows = std::fs::read_to_string(&out).unwrap().lines().count() - 1;
    assert_eq!(rows as u64, opted_in["count"].as_u64().unwrap());
}
