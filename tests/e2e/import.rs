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
