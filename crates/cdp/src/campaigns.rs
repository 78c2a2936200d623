//! `cdp campaigns list|show|create|schedule|pause|resume|send|results`: a client of
//! `/v1/campaigns`.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::ServerArgs;

#[derive(Debug, Subcommand)]
pub enum CampaignsCommand {
    /// List the campaigns, newest first.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a campaign and its sends.
    Show {
        /// cmp_ and 16 hex digits.
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make a campaign (checked as its sends' export would be now).
    Create(Box<CreateArgs>),
    /// Set, replace or remove when it sends by itself.
    Schedule {
        id: String,
        #[command(flatten)]
        when: WhenArgs,
        /// Remove the schedule: it sends only when sent.
        #[arg(long, conflicts_with_all = ["cron", "at"])]
        remove: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pause its schedule.
    Pause {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Resume its schedule at its next time from now.
    Resume {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Send it now: an export job with the holdout kept out and each row's variant named.
    Send {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// What a send did against its holdout: per arm, uplift, ROI, CAC (aggregates only).
    Results {
        id: String,
        /// A send (exp_...), or `all` for every finished send together; default the latest
        /// finished one.
        #[arg(long)]
        export: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// When a campaign sends by itself.
#[derive(Debug, Args)]
pub struct WhenArgs {
    /// Recurring: five cron fields or a shorthand (`0 10 * * 1`: Mondays at 10:00).
    #[arg(long, conflicts_with = "at")]
    cron: Option<String>,
    /// The offset --cron is read at, e.g. +08:00 (default +00:00).
    #[arg(long, requires = "cron")]
    utc_offset: Option<String>,
    /// Once, at this time (RFC 3339, e.g. 2026-12-24T10:00:00+08:00).
    #[arg(long)]
    at: Option<String>,
    /// No scheduled send after this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
}

impl WhenArgs {
    /// The schedule's body, or null when neither --cron nor --at was given.
    fn body(&self) -> Value {
        if self.cron.is_none() && self.at.is_none() {
            return Value::Null;
        }
        json!({"cron": self.cron, "utc_offset": self.utc_offset, "at": self.at, "until": self.until})
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: String,
    /// aud_... (`cdp audiences list`).
    #[arg(long)]
    audience: String,
    #[arg(long)]
    purpose: String,
    /// sms, email, push, wechat or ads.
    #[arg(long)]
    channel: String,
    /// rcp_... (`cdp recipients list`).
    #[arg(long)]
    recipient: String,
    /// A destination of the recipient that receives every send (dst_...).
    #[arg(long)]
    destination: Option<String>,
    /// A field of each row (repeat; pseudonym is required).
    #[arg(long = "field", required = true)]
    fields: Vec<String>,
    /// csv or jsonl.
    #[arg(long, default_value = "csv")]
    format: String,
    /// The share of eligible people kept from contact (0 to 0.5, default 0.1).
    #[arg(long)]
    holdout: Option<f64>,
    /// A variant and its weight, NAME=WEIGHT (repeat; default one, `treatment`).
    #[arg(long = "variant")]
    variants: Vec<String>,
    /// The campaign's total cost.
    #[arg(long)]
    cost_total: Option<f64>,
    /// Or its cost per person contacted.
    #[arg(long)]
    cost_per_contact: Option<f64>,
    #[arg(long, default_value = "CNY")]
    currency: String,
    /// The event that counts as a conversion.
    #[arg(long, default_value = "Order Completed")]
    conversion_event: String,
    /// Within how many days of a send.
    #[arg(long, default_value_t = 14)]
    conversion_days: u32,
    /// A frequency cap of its own, MAX/DAYS (repeat), on top of the configured ones.
    #[arg(long = "cap")]
    caps: Vec<String>,
    /// Quiet hours of its own, HH:MM-HH:MM in the person's local time.
    #[arg(long)]
    quiet_hours: Option<String>,
    /// first_touch or last_touch.
    #[arg(long, default_value = "last_touch")]
    attribution: String,
    /// Contacts up to this many days before a conversion count.
    #[arg(long, default_value_t = 7)]
    attribution_days: u32,
    #[command(flatten)]
    when: WhenArgs,
    #[command(flatten)]
    server: ServerArgs,
}

impl CreateArgs {
    fn body(&self) -> anyhow::Result<Value> {
        let mut variants = Vec::new();
        for variant in &self.variants {
            let (name, weight) = variant
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--variant is NAME=WEIGHT, not {variant:?}"))?;
            let weight: f64 = weight
                .parse()
                .map_err(|_| anyhow::anyhow!("--variant {variant:?}: the weight is a number"))?;
            variants.push(json!({"name": name, "weight": weight}));
        }
        let mut caps = Vec::new();
        for cap in &self.caps {
            let parsed = cap.split_once('/').and_then(|(max, days)| {
                Some((max.parse::<u32>().ok()?, days.parse::<u32>().ok()?))
            });
            let (max, window_days) = parsed
                .ok_or_else(|| anyhow::anyhow!("--cap is MAX/DAYS (e.g. 1/7), not {cap:?}"))?;
            caps.push(json!({"max": max, "window_days": window_days}));
        }
        Ok(json!({
            "name": self.name, "audience": self.audience, "purpose": self.purpose,
            "channel": self.channel, "recipient": self.recipient, "destination": self.destination,
            "fields": self.fields, "format": self.format, "holdout": self.holdout,
            "variants": variants,
            "cost": {"total": self.cost_total, "per_contact": self.cost_per_contact, "currency": self.currency},
            "conversion": {"event": self.conversion_event, "within_days": self.conversion_days},
            "contact": {"caps": caps, "quiet_hours": self.quiet_hours},
            "attribution": {"model": self.attribution, "window_days": self.attribution_days},
            "schedule": self.when.body(),
        }))
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn percent(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "-".into(), |rate| format!("{:.2}%", rate * 100.0))
}

#[allow(clippy::print_stdout)]
fn print_campaign(c: &Value) {
    let schedule = &c["schedule"];
    let when = if schedule.is_null() {
        "sent when sent".to_string()
    } else {
        let rule = match schedule["cron"].as_str() {
            Some(cron) => format!("{cron} at {}", text(&schedule["utc_offset"])),
            None => format!("once at {}", text(&schedule["at"])),
        };
        let state = if schedule["paused"].as_bool() == Some(true) {
            "paused".to_string()
        } else {
            match schedule["next_send_at"].as_str() {
                Some(next) => format!("next {next}"),
                None => "no send left".to_string(),
            }
        };
        format!("{rule}, {state}")
    };
    println!(
        "{}  {:<7} {}  holdout {}  {}  ({when})",
        text(&c["id"]),
        text(&c["channel"]),
        text(&c["audience"]),
        text(&c["holdout"]),
        text(&c["name"]),
    );
}

#[allow(clippy::print_stdout)]
fn print_results(r: &Value) {
    let which = match r["sends"].as_u64() {
        Some(n) if n > 1 => format!("{n} sends from"),
        _ => format!("send {} at", text(&r["export_id"])),
    };
    println!(
        "{which} {}: {} within {} days (final after {})",
        text(&r["sent_at"]),
        text(&r["conversion_event"]),
        text(&r["window_days"]),
        text(&r["window_ends"]),
    );
    println!(
        "{:<12} {:>8} {:>8} {:>9} {:>8} {:>8} {:>11} {:>9} {:>10} {:>9}  uplift (95% CI, p)",
        "arm",
        "members",
        "sent",
        "delivered",
        "clicked",
        "convert",
        "rate",
        "revenue",
        "repurchase",
        "credited"
    );
    for arm in r["arms"].as_array().into_iter().flatten() {
        let uplift = &arm["uplift"];
        let uplift = if uplift.is_object() {
            format!(
                "{:+.2} pts [{:.2}, {:.2}] p={}{}",
                uplift["points"].as_f64().unwrap_or_default(),
                uplift["ci95"][0].as_f64().unwrap_or_default(),
                uplift["ci95"][1].as_f64().unwrap_or_default(),
                text(&uplift["p_value"]),
                if uplift["significant"] == true {
                    " *"
                } else {
                    ""
                }
            )
        } else {
            "-".into()
        };
        println!(
            "{:<12} {:>8} {:>8} {:>9} {:>8} {:>8} {:>11} {:>9} {:>10} {:>9}  {uplift}",
            text(&arm["arm"]),
            text(&arm["members"]),
            text(&arm["sent"]),
            text(&arm["delivered"]),
            text(&arm["clicked"]),
            text(&arm["conversions"]),
            percent(&arm["conversion_rate"]),
            text(&arm["revenue"]),
            percent(&arm["repurchase_rate"]),
            text(&arm["attributed_conversions"]),
        );
    }
    println!(
        "cost {} {}  ROI {}  CAC {}  (arms under {} members withheld)",
        text(&r["cost"]),
        text(&r["currency"]),
        text(&r["roi"]),
        text(&r["cac"]),
        text(&r["suppressed_below"]),
    );
    println!(
        "held back before the draw: {} by frequency caps, {} by quiet hours; credited by {} within {} days",
        text(&r["held_back"]["frequency_cap"]),
        text(&r["held_back"]["quiet_hours"]),
        text(&r["attribution"]["model"]),
        text(&r["attribution"]["window_days"]),
    );
}

#[allow(clippy::print_stdout)]
pub fn run(command: CampaignsCommand) -> anyhow::Result<()> {
    match command {
        CampaignsCommand::List { json, server } => {
            let answer = server.get("/v1/campaigns")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            for c in answer["campaigns"].as_array().into_iter().flatten() {
                print_campaign(c);
            }
        }
        CampaignsCommand::Show { id, json, server } => {
            let answer = server.get(&format!("/v1/campaigns/{id}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            print_campaign(&answer);
            for send in answer["send_history"].as_array().into_iter().flatten() {
                println!(
                    "  {}  {}  {:<8} contacted {:<6} held out {:<6} {}",
                    text(&send["started_at"]),
                    text(&send["export_id"]),
                    text(&send["status"]),
                    text(&send["contacted"]),
                    text(&send["holdout"]),
                    send["reason"].as_str().unwrap_or_default(),
                );
            }
        }
        CampaignsCommand::Create(args) => {
            let answer = args.server.post("/v1/campaigns", &args.body()?)?;
            print_campaign(&answer);
        }
        CampaignsCommand::Schedule {
            id,
            when,
            remove,
            server,
        } => {
            let schedule = when.body();
            anyhow::ensure!(
                remove || !schedule.is_null(),
                "give --cron or --at (or --remove)"
            );
            let answer = server.patch(
                &format!("/v1/campaigns/{id}"),
                &json!({ "schedule": schedule }),
            )?;
            print_campaign(&answer);
        }
        CampaignsCommand::Pause { id, server } => {
            let answer =
                server.patch(&format!("/v1/campaigns/{id}"), &json!({ "paused": true }))?;
            print_campaign(&answer);
        }
        CampaignsCommand::Resume { id, server } => {
            let answer =
                server.patch(&format!("/v1/campaigns/{id}"), &json!({ "paused": false }))?;
            print_campaign(&answer);
        }
        CampaignsCommand::Send { id, server } => {
            let job = server.post(&format!("/v1/campaigns/{id}/send"), &json!({}))?;
            println!(
                "send {} started (cdp export show {} for its progress)",
                text(&job["id"]),
                text(&job["id"])
            );
        }
        CampaignsCommand::Results {
            id,
            export,
            json,
            server,
        } => {
            let path = match export {
                Some(export) => format!("/v1/campaigns/{id}/results?export={export}"),
                None => format!("/v1/campaigns/{id}/results"),
            };
            let answer = server.get(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            print_results(&answer);
        }
    }
    Ok(())
}
