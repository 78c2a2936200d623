//! `cdp demo generate --respond-to SEND_FILE --campaign cmp_...`: how the demo population
//! answers a campaign send, with a known truth to measure the platform against.
//!
//! Three groups, each planted exactly (a seeded choice of exactly round(n x rate) people, not
//! a coin per person, so that the measured figures can be checked to the rounding):
//! - the **treated**: the people in the send's file (matched by the contact identifier the
//!   file carries) convert at base rate + uplift, and receive, open and click at the planted
//!   engagement rates (events naming the campaign);
//! - the **eligible but not treated**: people whose generated consents grant the campaign's
//!   purpose and who are not in the file (the holdout, and anyone another gate left out)
//!   convert at the base rate;
//! - everyone else converts at the base rate too (they are in no arm).
//!
//! The events carry only the identifier the platform knows the person by for this purpose
//! (the file's, or the consent's), under a fresh anonymous id, so that they reach exactly the
//! profile that was assigned, and never link two profiles the history left apart.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use crate::demo::{Rng, consents_of, generate, window_start};

/// What `--respond-to` plants.
#[derive(Debug, Args)]
pub struct ResponseArgs {
    /// A campaign send's file (CSV or JSONL, as downloaded), with identifiers.phone,
    /// identifiers.email or identifiers.user_id among its fields: writes how the population
    /// answers it instead of a history.
    #[arg(long, requires = "campaign")]
    pub respond_to: Option<PathBuf>,
    /// The campaign the send belongs to (cmp_...), named by the engagement events.
    #[arg(long)]
    pub campaign: Option<String>,
    /// The campaign's channel: names the engagement events (sms, email, push, wechat).
    #[arg(long, default_value = "sms")]
    pub channel: String,
    /// The campaign's purpose: people whose consents grant it and who are not in the file are
    /// the eligible untreated (its holdout).
    #[arg(long, default_value = "marketing.sms")]
    pub eligible_purpose: String,
    /// Conversion rate of the untreated, percent.
    #[arg(long, default_value_t = 5.0)]
    pub base_rate: f64,
    /// Conversion rate added for the treated, percentage points.
    #[arg(long, default_value_t = 3.0)]
    pub uplift: f64,
    /// Of the treated, percent delivered, opened and clicked (each within the previous).
    #[arg(long, default_value_t = 95.0)]
    pub delivered: f64,
    #[arg(long, default_value_t = 40.0)]
    pub opened: f64,
    #[arg(long, default_value_t = 10.0)]
    pub clicked: f64,
}

/// The identifier columns a send's file may carry, in the order they are tried.
const CONTACT_FIELDS: [(&str, &str); 3] = [
    ("identifiers.phone", "phone"),
    ("identifiers.email", "email"),
    ("identifiers.user_id", "user_id"),
];

/// (type, value) of the contact identifier of each row of a send's file.
fn contacts_in(file: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut rows: Vec<BTreeMap<String, String>> = Vec::new();
    if text.trim_start().starts_with('{') {
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let row: Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not JSON", file.display(), n + 1))?;
            rows.push(
                row.as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect(),
            );
        }
    } else {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
        for record in reader.records() {
            let record = record?;
            rows.push(
                header
                    .iter()
                    .cloned()
                    .zip(record.iter().map(str::to_string))
                    .collect(),
            );
        }
    }
    let mut out = Vec::new();
    for row in rows {
        if row.get("op").is_some_and(|op| op != "add") {
            continue;
        }
        let found = CONTACT_FIELDS.iter().find_map(|(column, kind)| {
            row.get(*column)
                .filter(|v| !v.is_empty())
                .map(|v| (kind.to_string(), v.clone()))
        });
        match found {
            Some(contact) => out.push(contact),
            None => anyhow::bail!(
                "{}: a row without identifiers.phone, identifiers.email or identifiers.user_id: the file cannot be matched to the demo people (add one of them to the campaign's fields)",
                file.display()
            ),
        }
    }
    Ok(out)
}

/// Exactly round(n x percent / 100) of `group`, chosen by the seeded stream.
fn choose(rng: &mut Rng, group: &[u64], percent: f64) -> BTreeSet<u64> {
    let k = ((group.len() as f64) * percent / 100.0).round() as usize;
    let mut shuffled = group.to_vec();
    for i in (1..shuffled.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        shuffled.swap(i, j);
    }
    shuffled.into_iter().take(k.min(group.len())).collect()
}

/// The engagement events of a channel: delivered, opened, clicked.
fn engagement_events(channel: &str) -> anyhow::Result<[Option<&'static str>; 3]> {
    Ok(match channel {
        "sms" => [Some("SMS Delivered"), None, Some("SMS Link Clicked")],
        "email" => [
            Some("Email Delivered"),
            Some("Email Opened"),
            Some("Email Link Clicked"),
        ],
        "push" => [
            Some("Push Notification Received"),
            None,
            Some("Push Notification Tapped"),
        ],
        "wechat" => [
            Some("WeChat Message Delivered"),
            Some("WeChat Message Opened"),
            Some("WeChat Message Clicked"),
        ],
        other => anyhow::bail!("--channel is sms, email, push or wechat, not {other:?}"),
    })
}

/// Writes `campaign-response.jsonl` (import it with `cdp import`) and `campaign-truth.json`.
#[allow(clippy::print_stdout)]
pub fn write_response(
    people: u64,
    seed: u64,
    as_of: time::Date,
    out: &Path,
    args: &ResponseArgs,
) -> anyhow::Result<()> {
    let (Some(file), Some(campaign)) = (&args.respond_to, &args.campaign) else {
        anyhow::bail!("--respond-to needs --campaign");
    };
    for (name, value) in [
        ("base-rate", args.base_rate),
        ("delivered", args.delivered),
        ("opened", args.opened),
        ("clicked", args.clicked),
        ("base-rate + uplift", args.base_rate + args.uplift),
    ] {
        anyhow::ensure!(
            (0.0..=100.0).contains(&value),
            "--{name} is a percentage from 0 to 100"
        );
    }
    anyhow::ensure!(
        args.clicked <= args.opened.max(args.delivered) && args.opened <= args.delivered,
        "engagement narrows: --clicked <= --opened <= --delivered"
    );
    let events = engagement_events(&args.channel)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let start = window_start(as_of);
    let generated = generate(people, seed, None, start);
    let person_of: BTreeMap<(String, String), u64> = generated
        .truth
        .iter()
        .map(|(kind, value, person)| ((kind.clone(), value.clone()), *person))
        .collect();
    // The treated, and the identifier the platform contacted each by.
    let mut treated: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let mut unmatched = 0;
    for (kind, value) in contacts_in(file)? {
        match person_of.get(&(kind.clone(), value.clone())) {
            Some(person) => {
                treated.insert(*person, (kind, value));
            }
            None => unmatched += 1,
        }
    }
    anyhow::ensure!(
        unmatched == 0,
        "{unmatched} rows of {} are nobody of this demo population: generate with the --people, --seed and --as-of the data was made with",
        file.display()
    );
    // Everyone else, by the identifier of their consent to the purpose (eligible) or their
    // first one (the rest).
    let mut consent: BTreeMap<u64, (String, String, bool)> = BTreeMap::new();
    for record in consents_of(&generated.truth, seed, start) {
        if record["purpose"] != args.eligible_purpose.as_str() {
            continue;
        }
        let subject = (
            record["subject"]["type"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            record["subject"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let Some(person) = person_of.get(&subject) else {
            continue;
        };
        let granted = record["status"] == "granted";
        let entry = consent
            .entry(*person)
            .or_insert((subject.0, subject.1, granted));
        entry.2 = granted;
    }
    let mut eligible = Vec::new();
    let mut rest: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for (kind, value, person) in &generated.truth {
        if treated.contains_key(person) {
            continue;
        }
        match consent.get(person) {
            Some((_, _, true)) => {
                if eligible.last() != Some(person) {
                    eligible.push(*person);
                }
            }
            _ => {
                if ["user_id", "phone", "email"].contains(&kind.as_str()) {
                    rest.entry(*person).or_insert((kind.clone(), value.clone()));
                }
            }
        }
    }
    eligible.sort_unstable();
    eligible.dedup();
    let mut rng = Rng::new(seed ^ 0x0CA3_FA16);
    let treated_people: Vec<u64> = treated.keys().copied().collect();
    let rest_people: Vec<u64> = rest.keys().copied().collect();
    let treated_converters = choose(&mut rng, &treated_people, args.base_rate + args.uplift);
    let eligible_converters = choose(&mut rng, &eligible, args.base_rate);
    let rest_converters = choose(&mut rng, &rest_people, args.base_rate);
    let delivered = choose(&mut rng, &treated_people, args.delivered);
    let delivered_people: Vec<u64> = delivered.iter().copied().collect();
    let opened = choose(
        &mut rng,
        &delivered_people,
        args.opened / args.delivered.max(f64::MIN_POSITIVE) * 100.0,
    );
    let opened_people: Vec<u64> = opened.iter().copied().collect();
    let clicked = choose(
        &mut rng,
        &opened_people,
        args.clicked / args.opened.max(f64::MIN_POSITIVE) * 100.0,
    );

    let now = time::OffsetDateTime::now_utc();
    let stamp = |seconds: i64| {
        (now + time::Duration::seconds(seconds))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let message = |person: u64,
                   (kind, value): &(String, String),
                   event: &str,
                   properties: Value,
                   n: i64| {
        let mut message = json!({"type": "track", "anonymousId": format!("resp-{campaign}-{person}"),
            "event": event, "properties": properties, "timestamp": stamp(n),
            "messageId": format!("resp-{campaign}-{person}-{event}")});
        if kind == "user_id" {
            message["userId"] = Value::String(value.clone());
        } else {
            message["context"] = json!({ "traits": { kind.as_str(): value } });
        }
        message
    };
    let path = out.join("campaign-response.jsonl");
    let mut file_out = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?,
    );
    let mut revenue = BTreeMap::<&str, f64>::new();
    let order = |rng: &mut Rng| (50 + rng.below(251)) as f64;
    for (person, contact) in &treated {
        for (step, set) in [(0, &delivered), (1, &opened), (2, &clicked)] {
            if let Some(event) = events[step]
                && set.contains(person)
            {
                writeln!(
                    file_out,
                    "{}",
                    message(
                        *person,
                        contact,
                        event,
                        json!({"campaign_id": campaign}),
                        step as i64
                    )
                )?;
            }
        }
        if treated_converters.contains(person) {
            let amount = order(&mut rng);
            *revenue.entry("treated").or_default() += amount;
            writeln!(
                file_out,
                "{}",
                message(
                    *person,
                    contact,
                    "Order Completed",
                    json!({"revenue": amount}),
                    10
                )
            )?;
        }
    }
    for person in &eligible_converters {
        let (kind, value, _) = &consent[person];
        let amount = order(&mut rng);
        *revenue.entry("eligible").or_default() += amount;
        writeln!(
            file_out,
            "{}",
            message(
                *person,
                &(kind.clone(), value.clone()),
                "Order Completed",
                json!({"revenue": amount}),
                10
            )
        )?;
    }
    for person in &rest_converters {
        let amount = order(&mut rng);
        writeln!(
            file_out,
            "{}",
            message(
                *person,
                &rest[person],
                "Order Completed",
                json!({"revenue": amount}),
                10
            )
        )?;
    }
    file_out.flush()?;
    let rate = |converted: usize, of: usize| {
        if of == 0 {
            0.0
        } else {
            converted as f64 / of as f64
        }
    };
    let truth = json!({
        "campaign": campaign,
        "treated": {"people": treated.len(), "converted": treated_converters.len(),
            "conversion_rate": rate(treated_converters.len(), treated.len()),
            "delivered": delivered.len(), "opened": if events[1].is_some() { opened.len() } else { 0 },
            "clicked": clicked.len(), "revenue": revenue.get("treated").copied().unwrap_or(0.0)},
        "eligible_untreated": {"people": eligible.len(), "converted": eligible_converters.len(),
            "conversion_rate": rate(eligible_converters.len(), eligible.len()),
            "revenue": revenue.get("eligible").copied().unwrap_or(0.0)},
        "planted_uplift_points": args.uplift,
    });
    std::fs::write(
        out.join("campaign-truth.json"),
        serde_json::to_vec_pretty(&truth)?,
    )?;
    println!(
        "{} treated ({} convert, {:.2}%), {} eligible untreated ({} convert, {:.2}%): planted uplift {} points; {} delivered, {} clicked; events in {} (truth in campaign-truth.json)",
        treated.len(),
        treated_converters.len(),
        rate(treated_converters.len(), treated.len()) * 100.0,
        eligible.len(),
        eligible_converters.len(),
        rate(eligible_converters.len(), eligible.len()) * 100.0,
        args.uplift,
        delivered.len(),
        clicked.len(),
        path.display()
    );
    Ok(())
}
