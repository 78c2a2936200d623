//! `cdp bench console`: the server's time to answer each console page, over an index of N
//! people. A page is the set of API requests its script makes (mirroring
//! `crates/cdp-server/console/pages.js`), sent as a browser sends them: in parallel, with
//! the session cookie of a named account (and the CSRF token on POSTs). The page's time is
//! from its first request to its last answer, on loopback, so it is the server's time.
//!
//! The index holds N synthetic people as the engine indexes them (`bench audience`'s); the
//! store holds a few thousand real ones for the profile lookups.

use super::*;

/// One request of a page.
struct Call {
    method: &'static str,
    path: String,
    body: Option<serde_json::Value>,
}

fn get(path: &str) -> Call {
    Call {
        method: "GET",
        path: path.to_string(),
        body: None,
    }
}

fn post(path: &str, body: serde_json::Value) -> Call {
    Call {
        method: "POST",
        path: path.to_string(),
        body: Some(body),
    }
}

/// The requests each page makes when it opens (the audience page after one condition).
fn pages(lookup_phone: &str) -> Vec<(&'static str, Vec<Call>)> {
    let overview = vec![
        get("/v1/overview"),
        post(
            "/v1/audiences/breakdown",
            serde_json::json!({"query": "tier:*", "purpose": "analytics", "dimensions": ["tier", "lifecycle", "channel"]}),
        ),
        get("/v1/requests"),
        post(
            "/v1/audiences/breakdown",
            serde_json::json!({"query": "tier:*", "purpose": "analytics", "dimensions": ["consent"]}),
        ),
    ];
    let query = "city:上海 AND monetary_90d>=100";
    vec![
        ("overview", overview),
        (
            "audiences",
            vec![
                post(
                    "/v1/audiences/count",
                    serde_json::json!({"query": query, "purpose": "analytics"}),
                ),
                post(
                    "/v1/audiences/breakdown",
                    serde_json::json!({"query": query, "purpose": "analytics", "dimensions": ["removed", "tier", "lifecycle", "channel", "city", "rfm"]}),
                ),
                get("/v1/audiences"),
            ],
        ),
        (
            "profile lookup",
            vec![post(
                "/v1/profiles/lookup",
                serde_json::json!({"type": "phone", "value": lookup_phone, "region": "CN", "purpose": "customer_service"}),
            )],
        ),
        (
            "consents",
            vec![
                get("/v1/consents/trend?days=30"),
                post(
                    "/v1/audiences/breakdown",
                    serde_json::json!({"query": "tier:*", "purpose": "analytics", "dimensions": ["consent"]}),
                ),
            ],
        ),
        ("requests", vec![get("/v1/requests")]),
        ("audit log", vec![get("/v1/audit?latest=true&limit=500")]),
        (
            "exports",
            vec![
                get("/v1/exports"),
                get("/v1/audiences"),
                get("/v1/recipients"),
            ],
        ),
    ]
}

struct Session {
    cookie: String,
    csrf: String,
}

fn sign_in(addr: std::net::SocketAddr, name: &str, password: &str) -> anyhow::Result<Session> {
    let agent = agent();
    let mut response = agent
        .post(&format!("http://{addr}/v1/session"))
        .send_json(serde_json::json!({"name": name, "password": password}))?;
    anyhow::ensure!(
        response.status().as_u16() == 200,
        "sign-in refused: {}",
        response.status()
    );
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_string();
    let body: serde_json::Value = response.body_mut().read_json()?;
    Ok(Session {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap_or_default().to_string(),
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends one page's requests at once (as a browser does) and waits for every answer.
fn load_page(
    addr: std::net::SocketAddr,
    session: &Session,
    calls: &[Call],
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = calls
            .iter()
            .map(|call| {
                scope.spawn(move || -> anyhow::Result<()> {
                    let url = format!("http://{addr}{}", call.path);
                    let agent = agent();
                    let mut response = match &call.body {
                        Some(body) => agent
                            .post(&url)
                            .header("Cookie", &session.cookie)
                            .header("X-CSRF-Token", &session.csrf)
                            .send_json(body)?,
                        None => agent.get(&url).header("Cookie", &session.cookie).call()?,
                    };
                    let status = response.status().as_u16();
                    let _ = response.body_mut().read_to_vec();
                    anyhow::ensure!(
                        status == 200,
                        "{} {} answered {status}",
                        call.method,
                        call.path
                    );
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a request thread panicked"))??;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(started.elapsed())
}

#[allow(clippy::print_stdout)]
pub(super) fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.profiles > 0 && args.loads > 0,
        "--profiles and --loads must be at least 1"
    );
    let bench = BenchDir::create(args.dir.as_deref(), "bench-console")?;
    let engine = bench.open_engine(StoreEngine::Fjall, 256 * 1024 * 1024)?;
    // Real people for the lookups (their phones are 13000000000 + i).
    let real = args.profiles.min(2_000);
    lookup::load_people(&engine, real)?;
    let index = engine
        .search_index_handle()
        .context("the engine has no search index")?
        .clone();
    let mut rng = Rng(42);
    let build_started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..args.profiles {
        batch.push(audience::synthetic_doc(i, &mut rng));
        if batch.len() == 10_000 {
            index.upsert(&batch)?;
            batch.clear();
        }
    }
    index.upsert(&batch)?;
    index.commit("{}")?;
    let built = build_started.elapsed();
    let password = "bench console password";
    let (_, _, ticket) = engine.create_account(
        "bench",
        cdp_engine::NewAccount {
            name: "bench.admin".into(),
            roles: vec!["admin".into()],
            purposes: Vec::new(),
            password: password.into(),
            totp: false,
        },
    )?;
    ticket.wait_durable()?;
    let server = Server::start(engine.clone())?;
    let session = sign_in(server.addr, "bench.admin", password)?;
    let phone = format!("13{:09}", real / 2);
    let mut results = Vec::new();
    for (page, calls) in pages(&phone) {
        // One load to warm caches, then the measured ones.
        load_page(server.addr, &session, &calls)?;
        let mut times: Vec<Duration> = (0..args.loads)
            .map(|_| load_page(server.addr, &session, &calls))
            .collect::<anyhow::Result<_>>()?;
        times.sort();
        results.push((page, calls.len(), times));
    }
    server.stop();
    engine.close()?;
    if args.json {
        let rows: Vec<serde_json::Value> = results
            .iter()
            .map(|(page, requests, times)| {
                serde_json::json!({
                    "page": page,
                    "requests": requests,
                    "p50_ms": ms(percentile(times, 0.5)),
                    "p99_ms": ms(percentile(times, 0.99)),
                    "max_ms": ms(times.last().copied().unwrap_or_default()),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"profiles": args.profiles, "index_build_seconds": built.as_secs_f64(), "pages": rows})
        );
        return Ok(());
    }
    println!(
        "cdp bench console: {} people in the index (built in {:.1} s), {} loads per page, every request with the session cookie",
        args.profiles,
        built.as_secs_f64(),
        args.loads
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>9}",
        "page (ms)", "requests", "p50", "p99", "max"
    );
    for (page, requests, times) in &results {
        println!(
            "{page:<16} {requests:>9} {:>9.1} {:>9.1} {:>9.1}",
            ms(percentile(times, 0.5)),
            ms(percentile(times, 0.99)),
            ms(times.last().copied().unwrap_or_default())
        );
    }
    println!("budget: every page <= 200 ms of server time at 1M profiles");
    Ok(())
}
