//! A seeded generator of cross-channel Segment events for N people, with ground truth
//! (`cdp demo generate`, and the input of `cdp bench ingest`).
//!
//! Each person has some of: a user id, e-mails (in varying case), CN mobile numbers (national
//! format, sent by CN sources), devices with an anonymous id each, a WeChat OpenID/UnionID, a CRM
//! id. Events come from web, iOS, Android, the mini-program, CRM, POS and customer service, each
//! carrying what that channel knows. Households share a device (ambiguous: left out of the
//! truth); some events carry junk ids (`undefined`, all-zero devices) that must never link.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use cdp_core::Channel;
use serde_json::{Value, json};

/// SplitMix64: small, fast, seedable. Synthetic data only; never for keys.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// The generator's state, to resume its draws later ([`Rng::resume`]).
    fn state(&self) -> u64 {
        self.0
    }

    fn resume(state: u64) -> Self {
        Self(state)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One generated message and the channel of the source that sends it.
pub struct GeneratedEvent {
    pub channel: Channel,
    pub message: Value,
}

/// Events, in event-time order, and the truth: (identifier type, canonical value) -> person.
pub struct Generated {
    pub events: Vec<GeneratedEvent>,
    pub truth: Vec<(String, String, u64)>,
}

/// How many days of history a generated population has: events fall in the 180 days from
/// the window's start, consents up to 181 days after it.
const HISTORY_DAYS: i64 = 181;

/// Where the generated times start so that the history ends at the midnight (UTC) that begins
/// `as_of`. Anchored to a date rather than fixed, so that data generated today is as lively
/// as data generated on the day the generator was written: computed traits (recency, churn
/// risk, tier, lifecycle) depend on how old the last order is. The same seed and `as_of`
/// always give the same bytes.
pub fn window_start(as_of: time::Date) -> i64 {
    as_of.midnight().assume_utc().unix_timestamp() - HISTORY_DAYS * 86_400
}

/// The window ending today (UTC).
pub fn window_start_today() -> i64 {
    window_start(time::OffsetDateTime::now_utc().date())
}

struct Person {
    index: u64,
    user_id: Option<String>,
    emails: Vec<String>,
    phones: Vec<String>,
    devices: Vec<(String, String)>,
    openid: Option<String>,
    unionid: Option<String>,
    crm_id: Option<String>,
}

const CHANNELS: [(Channel, u64); 7] = [
    (Channel::Web, 30),
    (Channel::Ios, 15),
    (Channel::Android, 15),
    (Channel::MiniProgram, 15),
    (Channel::Crm, 5),
    (Channel::Pos, 10),
    (Channel::CustomerService, 10),
];

fn pick_channel(rng: &mut Rng) -> Channel {
    let mut roll = rng.below(100);
    for (channel, weight) in CHANNELS {
        if roll < weight {
            return channel;
        }
        roll -= weight;
    }
    Channel::Web
}

fn vary_case(rng: &mut Rng, email: &str) -> String {
    if rng.chance(30) {
        let mut chars: Vec<char> = email.chars().collect();
        if let Some(first) = chars.first_mut() {
            *first = first.to_ascii_uppercase();
        }
        chars.into_iter().collect()
    } else {
        email.to_string()
    }
}

/// Generates the events of `people` people, deterministically from `seed`: 5 to 15 events per
/// person, or exactly `events_per_person` when given. All in memory: for large runs use
/// [`plan`] and render events as they are needed.
pub fn generate(people: u64, seed: u64, events_per_person: Option<u64>, start: i64) -> Generated {
    let plan = plan(people, seed, events_per_person, start);
    let mut renderer = plan.renderer();
    let mut used = BTreeSet::new();
    let mut events = Vec::with_capacity(plan.events.len());
    for index in 0..plan.events.len() {
        let (event, carried) = renderer.render(index);
        used.extend(carried);
        events.push(event);
    }
    // The truth is limited to identifiers some event actually carries.
    let mut truth = Vec::new();
    for person in 0..plan.people() {
        truth.extend(
            plan.truth_of(person)
                .into_iter()
                .filter(|(kind, value, _)| used.contains(&(kind.clone(), value.clone()))),
        );
    }
    Generated { events, truth }
}

/// Where one event's draws start, so that it can be rendered later, alone, exactly as the
/// generator would (32 bytes instead of a message: 10M events fit beside a server).
#[derive(Debug, Clone, Copy)]
pub struct PlannedEvent {
    pub at: i64,
    rng: u64,
    counter: u64,
    pub person: u32,
    pub channel: Channel,
    household: bool,
}

/// The events of a generated population, planned in event-time order but not rendered.
pub struct Plan {
    seed: u64,
    /// The first second of the generated history ([`window_start`]).
    start: i64,
    /// The generator's state where each person's draws start.
    person_states: Vec<u64>,
    pub events: Vec<PlannedEvent>,
}

/// Plans the events of `people` people (see [`generate`]): every draw is made, so the plan
/// knows each event's time and channel, and where its draws start.
pub fn plan(people: u64, seed: u64, events_per_person: Option<u64>, start: i64) -> Plan {
    let mut rng = Rng::new(seed);
    let mut person_states = Vec::with_capacity(people as usize);
    for index in 0..people {
        person_states.push(rng.state());
        generate_person(&mut rng, index);
    }
    let mut events = Vec::new();
    let mut writer = EventWriter::new(seed, start);
    for index in 0..people {
        let person = person_at(person_states[index as usize], index);
        let household = index > 0 && rng.chance(3);
        let count = events_per_person.unwrap_or_else(|| 5 + rng.below(11));
        for _ in 0..count {
            let start = rng.state();
            let counter = writer.counter;
            let event = writer.push(&mut rng, &person, household);
            events.push(PlannedEvent {
                at: event.at,
                rng: start,
                counter,
                person: u32::try_from(index).unwrap_or(u32::MAX),
                channel: event.event.channel,
                household,
            });
            writer.used.clear();
        }
    }
    events.sort_by_key(|event| (event.at, event.counter));
    Plan {
        seed,
        start,
        person_states,
        events,
    }
}

impl Plan {
    pub fn people(&self) -> u64 {
        self.person_states.len() as u64
    }

    /// A renderer of this plan's events.
    pub fn renderer(&self) -> Renderer<'_> {
        Renderer {
            plan: self,
            writer: EventWriter::new(self.seed, self.start),
        }
    }

    /// Every identifier of person `index` (type, canonical value, person). Device ids, which
    /// households share (ambiguous), are not part of the truth.
    pub fn truth_of(&self, index: u64) -> Vec<(String, String, u64)> {
        truth_of(&person_at(self.person_states[index as usize], index))
    }
}

/// Renders planned events one at a time.
pub struct Renderer<'p> {
    plan: &'p Plan,
    writer: EventWriter,
}

impl Renderer<'_> {
    /// The message of planned event `index`, and the identifiers (type, canonical value) it
    /// carries.
    pub fn render(&mut self, index: usize) -> (GeneratedEvent, BTreeSet<(String, String)>) {
        let planned = self.plan.events[index];
        let person = u64::from(planned.person);
        let person = person_at(self.plan.person_states[person as usize], person);
        self.writer.counter = planned.counter;
        let timed = self
            .writer
            .push(&mut Rng::resume(planned.rng), &person, planned.household);
        (timed.event, std::mem::take(&mut self.writer.used))
    }
}

/// The person whose draws start at `state`.
fn person_at(state: u64, index: u64) -> Person {
    generate_person(&mut Rng::resume(state), index)
}

fn generate_person(rng: &mut Rng, index: u64) -> Person {
    let devices = (0..1 + rng.below(3))
        .map(|k| (format!("dev-{index}-{k}"), format!("anon-{index}-{k}")))
        .collect();
    Person {
        index,
        user_id: rng.chance(70).then(|| format!("u{index}")),
        emails: if rng.chance(80) {
            (0..1 + rng.below(2))
                .map(|k| format!("p{index}.{k}@mail{}.example.com", index % 7))
                .collect()
        } else {
            Vec::new()
        },
        phones: if rng.chance(75) {
            (0..1 + rng.below(2))
                .map(|k| format!("139{:08}", index * 2 + k))
                .collect()
        } else {
            Vec::new()
        },
        devices,
        openid: rng.chance(40).then(|| format!("o{index}")),
        unionid: rng.chance(30).then(|| format!("un{index}")),
        crm_id: rng.chance(35).then(|| format!("C{index}")),
    }
}

/// Every identifier of a person, canonical as the platform stores it.
fn truth_of(person: &Person) -> Vec<(String, String, u64)> {
    let mut truth = Vec::new();
    {
        let mut add =
            |kind: &str, value: String| truth.push((kind.to_string(), value, person.index));
        if let Some(user) = &person.user_id {
            add("user_id", user.clone());
        }
        for email in &person.emails {
            add("email", email.clone());
        }
        for phone in &person.phones {
            add("phone", format!("+86{phone}"));
        }
        for (_, anon) in &person.devices {
            add("anonymous_id", anon.clone());
        }
        if let Some(openid) = &person.openid {
            add("wechat_openid", format!("wxshop:{openid}"));
        }
        if let Some(unionid) = &person.unionid {
            add("wechat_unionid", unionid.clone());
        }
        if let Some(crm) = &person.crm_id {
            add("crm_id", crm.clone());
        }
    }
    truth
}

/// Builds events and notes the identifiers they carry.
struct EventWriter {
    seed: u64,
    /// The first second of the generated history.
    start: i64,
    counter: u64,
    /// (type, canonical value) of the identifiers the events built since the last `take` carry.
    used: BTreeSet<(String, String)>,
}

/// One event built, with its time.
struct TimedEvent {
    at: i64,
    event: GeneratedEvent,
}

/// The parts of one message being built.
#[derive(Default)]
struct MessageParts {
    message: serde_json::Map<String, Value>,
    traits: serde_json::Map<String, Value>,
    context: serde_json::Map<String, Value>,
    external: Vec<Value>,
}

impl EventWriter {
    fn new(seed: u64, start: i64) -> Self {
        Self {
            seed,
            start,
            counter: 0,
            used: BTreeSet::new(),
        }
    }

    fn note(&mut self, kind: &str, value: String) {
        self.used.insert((kind.to_string(), value));
    }

    /// One event of `person` (the order of the draws from `rng` is the generator's contract).
    fn push(&mut self, rng: &mut Rng, person: &Person, household: bool) -> TimedEvent {
        self.counter += 1;
        let at = self.start + rng.below(180 * 86_400) as i64;
        let channel = pick_channel(rng);
        let (device, anon) =
            person.devices[rng.below(person.devices.len() as u64) as usize].clone();
        let device = if household && rng.chance(20) {
            format!("dev-{}-0", person.index - 1)
        } else {
            device
        };
        let timestamp = time::OffsetDateTime::from_unix_timestamp(at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let mut parts = MessageParts::default();
        parts.message.insert(
            "messageId".into(),
            format!("demo-{}-{}", self.seed, self.counter).into(),
        );
        parts.message.insert("timestamp".into(), timestamp.into());
        let logged_in = person.user_id.is_some() && rng.chance(60);
        match channel {
            Channel::Web | Channel::Ios | Channel::Android => {
                self.app_identifiers(rng, person, &mut parts, channel, (device, anon), logged_in);
            }
            Channel::MiniProgram => self.mini_program_identifiers(rng, person, &mut parts, anon),
            Channel::Crm | Channel::Pos | Channel::CustomerService => {
                self.offline_identifiers(rng, person, &mut parts, anon);
            }
            _ => {}
        }
        let message = finish_message(rng, person, channel, parts);
        TimedEvent {
            at,
            event: GeneratedEvent { channel, message },
        }
    }

    /// Web and apps: the anonymous id (sometimes junk), the device id (apps; sometimes junk),
    /// the user id when logged in, now and then the e-mail.
    fn app_identifiers(
        &mut self,
        rng: &mut Rng,
        person: &Person,
        parts: &mut MessageParts,
        channel: Channel,
        (device, anon): (String, String),
        logged_in: bool,
    ) {
        let anonymous = if rng.chance(1) {
            "undefined".to_string()
        } else {
            anon
        };
        self.note("anonymous_id", anonymous.clone());
        parts.message.insert("anonymousId".into(), anonymous.into());
        if channel != Channel::Web {
            let id = if rng.chance(1) {
                "00000000-0000-0000-0000-000000000000".to_string()
            } else {
                device
            };
            parts.context.insert("device".into(), json!({ "id": id }));
        }
        if logged_in && let Some(user) = &person.user_id {
            self.note("user_id", user.clone());
            parts.message.insert("userId".into(), user.clone().into());
        }
        if rng.chance(15) && !person.emails.is_empty() {
            self.note("email", person.emails[0].clone());
            parts
                .traits
                .insert("email".into(), vary_case(rng, &person.emails[0]).into());
        }
    }

    /// The mini-program: the anonymous id, OpenID and UnionID, now and then the phone.
    fn mini_program_identifiers(
        &mut self,
        rng: &mut Rng,
        person: &Person,
        parts: &mut MessageParts,
        anon: String,
    ) {
        self.note("anonymous_id", anon.clone());
        parts.message.insert("anonymousId".into(), anon.into());
        if let Some(openid) = &person.openid {
            self.note("wechat_openid", format!("wxshop:{openid}"));
            parts
                .external
                .push(json!({"id": openid, "type": "wechat_openid", "collection": "wxshop"}));
        }
        if let Some(unionid) = &person.unionid {
            self.note("wechat_unionid", unionid.clone());
            parts
                .external
                .push(json!({"id": unionid, "type": "wechat_unionid"}));
        }
        if rng.chance(30) && !person.phones.is_empty() {
            self.note("phone", format!("+86{}", person.phones[0]));
            parts
                .traits
                .insert("phone".into(), person.phones[0].clone().into());
        }
    }

    /// CRM, POS and the service desk: the user id (or the anonymous id), the CRM id, one of
    /// the phones and one of the e-mails.
    fn offline_identifiers(
        &mut self,
        rng: &mut Rng,
        person: &Person,
        parts: &mut MessageParts,
        anon: String,
    ) {
        if let Some(user) = &person.user_id {
            self.note("user_id", user.clone());
            parts.message.insert("userId".into(), user.clone().into());
        } else {
            self.note("anonymous_id", anon.clone());
            parts.message.insert("anonymousId".into(), anon.into());
        }
        if let Some(crm) = &person.crm_id {
            self.note("crm_id", crm.clone());
            parts.external.push(json!({"id": crm, "type": "crm_id"}));
        }
        if let Some(phone) = person
            .phones
            .get(rng.below(person.phones.len().max(1) as u64) as usize)
        {
            self.note("phone", format!("+86{phone}"));
            parts.traits.insert("phone".into(), phone.clone().into());
        }
        if let Some(email) = person
            .emails
            .get(rng.below(person.emails.len().max(1) as u64) as usize)
        {
            self.note("email", email.clone());
            parts
                .traits
                .insert("email".into(), vary_case(rng, email).into());
        }
    }
}

/// The message's type and body: `identify` with the traits (and the person's city) when it
/// carries any, else an order (POS, and a fifth of the rest) or a product view.
fn finish_message(rng: &mut Rng, person: &Person, channel: Channel, parts: MessageParts) -> Value {
    let MessageParts {
        mut message,
        mut traits,
        mut context,
        external,
    } = parts;
    if !external.is_empty() {
        context.insert("externalIds".into(), Value::Array(external));
    }
    let identify = !traits.is_empty() || rng.chance(10);
    if identify {
        message.insert("type".into(), "identify".into());
        traits.insert(
            "city".into(),
            ["上海", "北京", "杭州", "深圳", "成都"][(person.index % 5) as usize].into(),
        );
        message.insert("traits".into(), Value::Object(traits));
    } else if channel == Channel::Pos || rng.chance(20) {
        message.insert("type".into(), "track".into());
        message.insert("event".into(), "Order Completed".into());
        let category = ["tea", "snacks", "beauty"][rng.below(3) as usize];
        let revenue = 20 + rng.below(500);
        message.insert(
            "properties".into(),
            json!({"revenue": revenue, "products": [{"category": category}]}),
        );
    } else {
        message.insert("type".into(), "track".into());
        message.insert("event".into(), "Product Viewed".into());
    }
    if !context.is_empty() {
        message.insert("context".into(), Value::Object(context));
    }
    Value::Object(message)
}

/// Pairwise precision and recall of "same person": over the truth's identifiers, predicted by
/// the profile each resolves to.
pub struct Quality {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub predicted_profiles: usize,
    pub true_people: usize,
    pub largest_profile: usize,
    pub unresolved: usize,
}

pub fn quality<P: Ord>(assignments: &[(u64, Option<P>)]) -> Quality {
    fn pairs(n: u64) -> u64 {
        n * n.saturating_sub(1) / 2
    }
    let mut by_truth: BTreeMap<u64, u64> = BTreeMap::new();
    let mut by_prediction: BTreeMap<&P, u64> = BTreeMap::new();
    let mut by_both: BTreeMap<(u64, &P), u64> = BTreeMap::new();
    let mut unresolved = 0;
    for (person, predicted) in assignments {
        let Some(predicted) = predicted else {
            unresolved += 1;
            continue;
        };
        *by_truth.entry(*person).or_default() += 1;
        *by_prediction.entry(predicted).or_default() += 1;
        *by_both.entry((*person, predicted)).or_default() += 1;
    }
    let same_truth: u64 = by_truth.values().map(|n| pairs(*n)).sum();
    let same_prediction: u64 = by_prediction.values().map(|n| pairs(*n)).sum();
    let both: u64 = by_both.values().map(|n| pairs(*n)).sum();
    let precision = if same_prediction == 0 {
        1.0
    } else {
        both as f64 / same_prediction as f64
    };
    let recall = if same_truth == 0 {
        1.0
    } else {
        both as f64 / same_truth as f64
    };
    Quality {
        precision,
        recall,
        f1: if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        },
        predicted_profiles: by_prediction.len(),
        true_people: by_truth.len(),
        largest_profile: by_prediction.values().copied().max().unwrap_or(0) as usize,
        unresolved,
    }
}

/// `cdp demo generate`: one JSONL file per channel (import each with `cdp import --source`) and
/// `truth.csv` (type,value,person).
#[allow(clippy::print_stdout)]
pub fn write(people: u64, seed: u64, as_of: time::Date, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let start = window_start(as_of);
    let generated = generate(people, seed, None, start);
    let mut files: BTreeMap<Channel, std::io::BufWriter<std::fs::File>> = BTreeMap::new();
    for event in &generated.events {
        let file = match files.entry(event.channel) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let path = out.join(format!("{}.jsonl", event.channel));
                entry.insert(std::io::BufWriter::new(
                    std::fs::File::create(&path)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                ))
            }
        };
        writeln!(file, "{}", event.message)?;
    }
    for file in files.values_mut() {
        file.flush()?;
    }
    let mut truth = std::io::BufWriter::new(std::fs::File::create(out.join("truth.csv"))?);
    writeln!(truth, "type,value,person")?;
    for (kind, value, person) in &generated.truth {
        writeln!(truth, "{kind},{value},{person}")?;
    }
    truth.flush()?;
    let consents = consents_of(&generated.truth, seed, start);
    let mut file = std::io::BufWriter::new(std::fs::File::create(out.join("consents.jsonl"))?);
    for consent in &consents {
        writeln!(file, "{consent}")?;
    }
    file.flush()?;
    println!(
        "{} people, {} events in {} ({} channel files, truth.csv, {} consent records in consents.jsonl)",
        people,
        generated.events.len(),
        out.display(),
        files.len(),
        consents.len()
    );
    Ok(())
}

/// Consent records as a shop collects them, for `cdp consents import` (bodies of
/// `POST /v1/consents`): SMS opt-ins on the store's membership form, e-mail newsletter
/// sign-ups (some withdrawn later), analytics consent at the app's privacy prompt, some
/// refusals; each with its notice version and evidence. Drawn from a stream of their own, so
/// the events of a seed stay what they were.
pub fn consents_of(truth: &[(String, String, u64)], seed: u64, start: i64) -> Vec<Value> {
    let mut rng = Rng::new(seed ^ 0xC0_15E7_u64);
    let mut by_person: BTreeMap<u64, Vec<(&str, &str)>> = BTreeMap::new();
    for (kind, value, person) in truth {
        by_person
            .entry(*person)
            .or_default()
            .push((kind.as_str(), value.as_str()));
    }
    let at = |rng: &mut Rng, after_days: u64| {
        let seconds = start + ((after_days + rng.below(120)) * 86_400 + rng.below(86_400)) as i64;
        time::OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for (person, ids) in by_person {
        let first = |kind: &str| ids.iter().find(|(k, _)| *k == kind).map(|(_, v)| *v);
        if let Some(phone) = first("phone") {
            let roll = rng.below(100);
            if roll < 65 {
                out.push(json!({
                    "subject": {"type": "phone", "value": phone, "region": "CN"},
                    "purpose": "marketing.sms", "status": "granted", "notice_version": "2026-01",
                    "source": "store membership form", "channel": "pos", "at": at(&mut rng, 0),
                    "evidence": {"form": "membership sign-up", "store": format!("SH-{:03}", person % 40), "signature": "on file"}
                }));
            } else if roll < 75 {
                out.push(json!({
                    "subject": {"type": "phone", "value": phone, "region": "CN"},
                    "purpose": "marketing.sms", "status": "denied", "notice_version": "2026-01",
                    "source": "store membership form", "channel": "pos", "at": at(&mut rng, 0),
                    "evidence": {"form": "membership sign-up", "box": "unticked"}
                }));
            }
        }
        if let Some(email) = first("email")
            && rng.chance(50)
        {
            let granted_at = at(&mut rng, 0);
            out.push(json!({
                "subject": {"type": "email", "value": email},
                "purpose": "marketing.email", "status": "granted", "notice_version": "2026-01",
                "source": "newsletter sign-up", "channel": "web", "at": granted_at,
                "evidence": {"double_opt_in": true, "page": "/newsletter"}
            }));
            if rng.chance(10) {
                out.push(json!({
                    "subject": {"type": "email", "value": email},
                    "purpose": "marketing.email", "status": "withdrawn",
                    "source": "unsubscribe link", "channel": "email", "at": at(&mut rng, 60),
                    "evidence": {"link": "newsletter footer"}
                }));
            }
        }
        if let Some(user) = first("user_id")
            && rng.chance(70)
        {
            out.push(json!({
                "subject": {"type": "user_id", "value": user},
                "purpose": "analytics", "status": "granted", "notice_version": "2026-01",
                "source": "app privacy prompt", "channel": "ios", "at": at(&mut rng, 0),
                "evidence": {"prompt": "first launch", "choice": "agree"}
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start the pinned digest was taken with (2026-05-28).
    const PINNED_START: i64 = 1_780_000_000;

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let a = generate(50, 7, None, PINNED_START);
        let b = generate(50, 7, None, PINNED_START);
        assert_eq!(a.events.len(), b.events.len());
        assert!(
            a.events
                .iter()
                .zip(&b.events)
                .all(|(x, y)| x.message == y.message)
        );
        assert_eq!(generate(50, 8, Some(2), PINNED_START).events.len(), 100);
    }

    /// Benchmark figures are compared across versions only if the generator's output for a
    /// seed never changes: its events and truth are pinned by a digest.
    #[test]
    fn the_output_for_a_seed_never_changes() {
        let generated = generate(60, 7, None, PINNED_START);
        let mut hash = cdp_crypto::Sha256Stream::default();
        for event in &generated.events {
            hash.update(event.channel.as_str().as_bytes());
            hash.update(event.message.to_string().as_bytes());
        }
        for (kind, value, person) in &generated.truth {
            hash.update(format!("{kind}|{value}|{person}\n").as_bytes());
        }
        assert_eq!(generated.events.len(), 587);
        assert_eq!(
            hash.finish_hex(),
            "1dcd403c3e154d4973a2462e3ed99f9587f7e66e90d0df881963d3f0924583cf"
        );
    }

    /// Events and consents fall in the 181 days before the `as_of` date, so that data
    /// generated on any day has recent orders (and buyers who are not all churning).
    #[test]
    fn the_history_ends_before_the_as_of_day() {
        let as_of = time::macros::date!(2027 - 03 - 01);
        let start = window_start(as_of);
        let end = as_of.midnight().assume_utc().unix_timestamp();
        let generated = generate(80, 3, None, start);
        let times = generated.events.iter().map(|event| {
            let text = event.message["timestamp"].as_str().unwrap_or_default();
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_or(0, |t| t.unix_timestamp())
        });
        let (first, last) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        assert!(
            first >= start && last < end,
            "{first}..{last} not in {start}..{end}"
        );
        assert!(
            end - last < 7 * 86_400,
            "the last event is more than a week old"
        );
        for consent in consents_of(&generated.truth, 3, start) {
            let at = time::OffsetDateTime::parse(
                consent["at"].as_str().unwrap_or_default(),
                &time::format_description::well_known::Rfc3339,
            )
            .map_or(0, |t| t.unix_timestamp());
            assert!(at >= start && at < end, "consent at {at}");
        }
    }

    #[test]
    fn quality_counts_pairs() {
        // Person 0 split in two profiles, person 1 whole.
        let perfect = quality(&[(0, Some("a")), (0, Some("a")), (1, Some("b"))]);
        assert_eq!((perfect.precision, perfect.recall), (1.0, 1.0));
        let split = quality(&[(0, Some("a")), (0, Some("b")), (1, Some("c"))]);
        assert_eq!((split.precision, split.recall), (1.0, 0.0));
        let merged = quality(&[(0, Some("a")), (1, Some("a"))]);
        assert_eq!(merged.precision, 0.0);
    }
}
