use super::*;

/// Synthetic people for the policy benchmark: residency, age and a few consent records.
fn policy_subjects(count: usize) -> Vec<cdp_policy::SubjectFacts> {
    use cdp_policy::{ConsentFact, ConsentStatus, SubjectFacts};
    let at = time::macros::datetime!(2026-01-10 0:00 UTC);
    (0..count)
        .map(|i| {
            let status = if i % 5 == 0 {
                ConsentStatus::Withdrawn
            } else {
                ConsentStatus::Granted
            };
            let fact = |purpose: &str, status, origin: &str, separate, recipient: Option<&str>| {
                ConsentFact {
                    purpose: purpose.into(),
                    status,
                    recipient: recipient.map(str::to_string),
                    separate,
                    guardian: false,
                    scopes: Vec::new(),
                    categories: Vec::new(),
                    notice_version: Some("2026-01".into()),
                    origin: origin.into(),
                    at,
                }
            };
            SubjectFacts {
                residency: Some(if i % 3 == 0 { "DE" } else { "CN" }.into()),
                regions: vec!["CN".into()],
                age: Some(18 + (i % 50) as u32),
                restricted: false,
                consents: vec![
                    fact("marketing.sms", status, "phone:1", false, None),
                    fact(
                        "analytics",
                        ConsentStatus::Granted,
                        "user_id:2",
                        false,
                        None,
                    ),
                    fact(
                        "personalization",
                        ConsentStatus::Granted,
                        "profile",
                        false,
                        None,
                    ),
                    fact(
                        "marketing.sms",
                        ConsentStatus::Granted,
                        "profile",
                        true,
                        Some("r_sms"),
                    ),
                ],
            }
        })
        .collect()
}

pub(super) fn run(args: PolicyArgs) -> anyhow::Result<()> {
    use cdp_policy::{Action, DecisionRequest, RecipientFacts, RecipientRole};
    anyhow::ensure!(args.decisions > 0, "--decisions must be at least 1");
    let policies = crate::policy::load(None)?;
    let subjects = policy_subjects(1024);
    let export = DecisionRequest {
        action: Action::Export,
        purpose: "marketing.sms".into(),
        caller: Some(cdp_policy::CallerFacts {
            roles: vec!["marketer".into()],
            purposes: Vec::new(),
        }),
        recipient: Some(RecipientFacts {
            id: "r_sms".into(),
            role: RecipientRole::Processor,
            region: "CN".into(),
            transfer_mechanism: "none".into(),
            allowed_purposes: vec!["marketing.sms".into()],
        }),
        fields: vec![
            "identifiers.phone".into(),
            "traits.city".into(),
            "traits.health_conditions".into(),
        ],
        inferred: Vec::new(),
    };
    let audience = DecisionRequest {
        action: Action::Audience,
        purpose: "marketing.advertising.first_party".into(),
        caller: None,
        recipient: None,
        fields: Vec::new(),
        inferred: Vec::new(),
    };
    let mut allowed = 0u64;
    let rates = [
        measure(
            "export decision (recipient, 3 fields)",
            args.decisions,
            ">= 100k profiles/s for exports",
            |i| {
                let decision = policies.decide(&export, &subjects[(i % 1024) as usize]);
                allowed += u64::from(decision.allowed());
            },
        ),
        measure("audience decision (no fields)", args.decisions, "-", |i| {
            std::hint::black_box(policies.decide(&audience, &subjects[(i % 1024) as usize]));
        }),
    ];
    anyhow::ensure!(
        allowed > 0 && allowed < args.decisions,
        "the synthetic subjects should be partly allowed, partly denied"
    );
    if args.json {
        let entries = rates_json(&rates);
        println!(
            "{{\"policy_version\":\"{}\",\"allowed_share\":{:.3},\"results\":[{}]}}",
            policies.version,
            allowed as f64 / args.decisions as f64,
            entries
        );
    } else {
        println!(
            "cdp bench policy: {} decisions each, one thread, policies {}",
            args.decisions, policies.version
        );
        println!(
            "{:<40} {:>14} {:>10}   performance.md reference",
            "decision", "ops/s", "ns/op"
        );
        for rate in &rates {
            println!(
                "{:<40} {:>14.0} {:>10.1}   {}",
                rate.name,
                rate.per_second(),
                rate.nanos(),
                rate.budget
            );
        }
    }
    Ok(())
}
