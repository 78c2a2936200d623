use super::*;

/// A timed export job: its rate and how its time split.
struct Timed {
    record: cdp_engine::ExportRecord,
    seconds: f64,
    /// Until every member was decided (the rest: writing the file's end, the manifest, the
    /// members, arms and contact ledgers in one durable batch).
    deciding: f64,
}

impl Timed {
    fn rate(&self) -> f64 {
        let considered = self.record.counts_now().map_or(0, |c| c.considered);
        considered as f64 / self.seconds.max(1e-9)
    }

    fn split(&self) -> String {
        format!(
            "{:.1} s: {:.1} deciding, {:.1} finishing",
            self.seconds,
            self.deciding,
            self.seconds - self.deciding
        )
    }
}

/// Waits for an export job started at `started` to end; its record and timings.
fn finished(engine: &cdp_engine::Engine, id: &str, started: Instant) -> anyhow::Result<Timed> {
    let mut deciding = None;
    loop {
        let record = engine.export(id)?.context("the export job disappeared")?;
        if deciding.is_none()
            && record.progress.total > 0
            && record.progress.considered >= record.progress.total
        {
            deciding = Some(started.elapsed().as_secs_f64());
        }
        if record.status != cdp_engine::ExportStatus::Running {
            anyhow::ensure!(
                record.status == cdp_engine::ExportStatus::Done,
                "export {id} ended {:?}: {:?}",
                record.status,
                record.reason
            );
            let seconds = started.elapsed().as_secs_f64();
            return Ok(Timed {
                record,
                seconds,
                deciding: deciding.unwrap_or(seconds),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// Long by design: a benchmark's script (set up, measure, print), read top to bottom.
pub(super) fn run(args: CampaignArgs) -> anyhow::Result<()> {
    use cdp_core::Channel;

    anyhow::ensure!(
        args.profiles >= 200,
        "--profiles must be at least 200 (arms above the minimum audience size)"
    );
    let bench = BenchDir::create(args.dir.as_deref(), "bench-campaign")?;
    let engine = bench.open_engine(args.engine, args.cache_mb.max(16) * 1024 * 1024)?;
    let (source, _, ticket) = engine.create_source("bench", Channel::Web, Some("CN"))?;
    ticket.wait_durable()?;

    // People with an e-mail, a city and the e-mail marketing consent; one in five ordered
    // before (repeat buyers and new customers then differ).
    let load_started = Instant::now();
    let mut sent = 0u64;
    let before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    while sent < args.profiles {
        let n = (args.profiles - sent).min(500);
        let mut batch = Vec::with_capacity(n as usize * 2);
        for i in sent..sent + n {
            batch.push(serde_json::json!({"type": "identify", "userId": format!("b-{i}"), "messageId": format!("m-{i}"),
                "traits": {"email": format!("p{i}@example.cn"), "address": {"country": "CN", "city": "上海"}},
}));
            if i % 5 == 0 {
                batch.push(serde_json::json!({"type": "track", "userId": format!("b-{i}"), "messageId": format!("o-{i}"),
                    "event": "Order Completed", "properties": {"revenue": 80},
                    "timestamp": before.format(&time::format_description::well_known::Rfc3339)?}));
            }
        }
        let body = serde_json::json!({ "batch": batch }).to_string();
        ingest_durably(&engine, &source, &body, None)?;
        sent += n;
    }
    // Their opt-ins to e-mail marketing, to the current notice, with evidence.
    let mut last = None;
    for i in 0..args.profiles {
        let (_, ticket) = engine.record_consent(
            cdp_engine::ConsentInput {
                subject: cdp_engine::ConsentSubject::Identifier {
                    kind: cdp_core::IdentifierType::UserId,
                    value: format!("b-{i}"),
                    region: None,
                },
                purpose: "marketing.email".into(),
                status: cdp_policy::ConsentStatus::Granted,
                legal_basis: None,
                notice_version: Some("2026-01".into()),
                source: "newsletter sign-up".into(),
                channel: Some(Channel::Web),
                recipient: None,
                separate: false,
                guardian: false,
                scopes: Vec::new(),
                categories: Vec::new(),
                evidence: serde_json::json!({"double_opt_in": true}),
                at: None,
            },
            "bench",
        )?;
        last = Some(ticket);
    }
    if let Some(ticket) = last {
        ticket.wait_durable()?;
    }
    let load = load_started.elapsed();
    let indexer = cdp_engine::Indexer::new(engine.clone(), Default::default())?;
    indexer.start()?;

    let access = cdp_engine::Access {
        actor: "bench".into(),
        caller: cdp_policy::CallerFacts {
            roles: vec!["marketer".into()],
            purposes: Vec::new(),
        },
        purpose: Some("marketing.email".into()),
    };
    let (recipient, ticket) = engine.create_recipient(
        cdp_engine::RecipientInput {
            name: "e-mail service".into(),
            contact: "dpo@mail.example.cn".into(),
            role: cdp_policy::RecipientRole::Processor,
            region: "CN".into(),
            transfer_mechanism: "none".into(),
            allowed_purposes: vec!["marketing.email".into()],
        },
        "bench",
    )?;
    ticket.wait_durable()?;
    let (audience, ticket) = engine.create_audience(
        "everyone in 上海",
        "marketing.email",
        &cdp_engine::AudienceQuery::Text("city:上海".into()),
        &access,
    )?;
    ticket.wait_durable()?;
    let fields: Vec<String> = ["pseudonym", "email_sha256_google"]
        .iter()
        .map(|f| (*f).to_string())
        .collect();

    // The same audience as a plain export and as a campaign send (gates, contact pressure,
    // arms, ledgers), each timed once the index has merged the load's segments (at 1M that
    // took a third of both cores for a minute, which would be measured as the export's).
    let settled = settle(Duration::from_secs(300));
    let started = Instant::now();
    let plain = engine.start_export(
        cdp_engine::ExportRequest {
            audience: audience.audience.id.clone(),
            purpose: "marketing.email".into(),
            recipient: recipient.id.clone(),
            fields: fields.clone(),
            format: cdp_engine::ExportFormat::Csv,
            destination: None,
            schedule: None,
            campaign: None,
        },
        &access,
    )?;
    let plain = finished(&engine, &plain.id, started)?;
    let (campaign, ticket) = engine.create_campaign(
        cdp_engine::CampaignInput {
            name: "bench".into(),
            audience: audience.audience.id.clone(),
            purpose: "marketing.email".into(),
            channel: cdp_engine::CampaignChannel::Email,
            recipient: recipient.id.clone(),
            destination: None,
            fields,
            format: cdp_engine::ExportFormat::Csv,
            holdout: Some(0.1),
            variants: Vec::new(),
            cost: cdp_engine::CampaignCost {
                total: Some(10_000.0),
                per_contact: None,
                currency: "CNY".into(),
            },
            conversion: cdp_engine::Conversion {
                event: "Order Completed".into(),
                within_days: 14,
            },
            contact: Default::default(),
            attribution: None,
            schedule: None,
        },
        &access,
    )?;
    ticket.wait_durable()?;
    let settled = settled + settle(Duration::from_secs(300));
    let started = Instant::now();
    let send = engine.send_campaign(&campaign.id)?;
    let send = finished(&engine, &send.id, started)?;

    // What comes back: a tenth order, a third are delivered the e-mail.
    let mut sent = 0u64;
    while sent < args.profiles {
        let n = (args.profiles - sent).min(500);
        let mut batch = Vec::new();
        for i in sent..sent + n {
            if i % 10 == 3 {
                batch.push(serde_json::json!({"type": "track", "userId": format!("b-{i}"), "messageId": format!("c-{i}"),
                    "event": "Order Completed", "properties": {"revenue": 120}}));
            }
            if i % 3 == 1 {
                batch.push(serde_json::json!({"type": "track", "userId": format!("b-{i}"), "messageId": format!("d-{i}"),
                    "event": "Email Delivered", "properties": {"campaign_id": campaign.id}}));
            }
        }
        if !batch.is_empty() {
            let body = serde_json::json!({ "batch": batch }).to_string();
            ingest_durably(&engine, &source, &body, None)?;
        }
        sent += n;
    }
    let mut timings = Vec::new();
    let mut results = None;
    for _ in 0..args.runs.max(1) {
        let started = Instant::now();
        results = Some(engine.campaign_results(&campaign.id, Some(&send.record.id))?);
        timings.push(started.elapsed().as_secs_f64());
    }
    timings.sort_by(f64::total_cmp);
    let median = timings[timings.len() / 2];
    let results = results.context("no results")?;
    let members: u64 = results.arms.iter().filter_map(|a| a.members).sum();

    // The campaign's next send (a recurring campaign's second week): every member now has a
    // contact ledger to read against the caps and to extend.
    let settled = settled + settle(Duration::from_secs(300));
    let started = Instant::now();
    let again = engine.send_campaign(&campaign.id)?;
    let again = finished(&engine, &again.id, started)?;
    let (plain_rate, send_rate, again_rate) = (plain.rate(), send.rate(), again.rate());
    if args.json {
        println!(
            "{{\"profiles\":{},\"members\":{members},\"results_seconds\":{median:.3},\"export_profiles_per_second\":{plain_rate:.0},\"send_profiles_per_second\":{send_rate:.0},\"next_send_profiles_per_second\":{again_rate:.0}}}",
            args.profiles
        );
    } else {
        println!(
            "cdp bench campaign: {} people loaded in {:.1} s ({} store)",
            args.profiles,
            load.as_secs_f64(),
            args.engine.as_str()
        );
        println!(
            "  waited {:.0} s for the index's merges to end before timing",
            settled.as_secs_f64()
        );
        println!(
            "  export {plain_rate:.0} profiles/s ({}); budget >= 100,000",
            plain.split()
        );
        println!(
            "  campaign send {send_rate:.0} profiles/s with contact pressure, arms and contact records ({})",
            send.split()
        );
        println!(
            "  its next send {again_rate:.0} profiles/s, every member's contacts counted and one added ({})",
            again.split()
        );
        println!(
            "  results over {members} members: median {median:.3} s of {} runs (budget <= 2 s at 1M)",
            timings.len()
        );
        for arm in &results.arms {
            println!(
                "    {:<10} members {:>8} conversions {:>7} delivered {:>7} uplift {}",
                arm.arm,
                arm.members.unwrap_or(0),
                arm.conversions.unwrap_or(0),
                arm.delivered.unwrap_or(0),
                arm.uplift
                    .as_ref()
                    .map_or("-".to_string(), |u| format!("{:+.2} pts", u.points))
            );
        }
    }
    drop(indexer);
    engine.close()?;
    Ok(())
}
