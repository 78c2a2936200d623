//! Contact pressure: frequency caps per person and channel over rolling windows, across every
//! campaign, and quiet hours per channel in the person's local time.
//!
//! **The ledger.** Every campaign send that contacts a person writes one contact record for
//! the channel (`contacts/<profile id>/<channel>/@<time><random>` in `Keyspace::Exports`, the
//! campaign and export sealed with the person's own data key: erasure shreds it with
//! everything else; `contact_ledger.rs`). A merge moves the absorbed person's records beside
//! the survivor's under its key, so that the merged person's caps count both. The person
//! comes first in the key and the time next: a send counts the recent contacts of its
//! members (ascending ids) by walking keys through one cursor, and attribution, merges and
//! erasure read all of a person's channels with one scan.
//!
//! **Caps hold under concurrency.** A send takes its channel's turn (`contact-turn/<channel>`,
//! a lease row with an expiry, taken in a write turn: one holder across the nodes of a shared
//! database) before it reads any ledger and gives it back once its ledger entries are
//! committed with the finished job. Two campaigns on one channel therefore run their member
//! decisions one after the other, and the second sees the first's contacts.
//!
//! **Comparable arms.** Caps and quiet hours are gates like consent: a person held back is
//! held back before the campaign's arms are drawn, so the holdout and the variants come from
//! the same contactable population.

use std::collections::BTreeMap;
use std::sync::Mutex;

use cdp_core::ProfileId;
use cdp_store::{Keyspace, WriteBatch};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::contact_ledger::{ContactLedger, contact_key, contact_micros, person_ledgers_prefix};
use crate::records::ProfileRecord;
use crate::{Engine, EngineError};

/// Where a campaign's message goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignChannel {
    Sms,
    Email,
    Push,
    Wechat,
    Ads,
}

impl CampaignChannel {
    pub const ALL: [CampaignChannel; 5] =
        [Self::Sms, Self::Email, Self::Push, Self::Wechat, Self::Ads];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Email => "email",
            Self::Push => "push",
            Self::Wechat => "wechat",
            Self::Ads => "ads",
        }
    }
}

/// Contacts older than this are deleted when the person is next contacted at the channel
/// (the longest window a cap or an attribution may use).
const KEEP_DAYS: i64 = 366;

/// At most this many contacts a person at a channel (each send adds one).
const MAX_ENTRIES: usize = 1000;

/// A cap: at most `max` contacts within `window_days` (rolling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    pub max: u32,
    pub window_days: u32,
}

/// A cap of one channel (config `[[campaigns.caps]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelCap {
    pub channel: CampaignChannel,
    pub max: u32,
    pub window_days: u32,
}

/// A daily window in local time, `"21:00-08:00"` (across midnight when the end is earlier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QuietHours {
    /// Minutes after local midnight.
    start: u16,
    end: u16,
}

impl QuietHours {
    /// Whether a local time (minutes after midnight) falls in the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl TryFrom<String> for QuietHours {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || {
            format!(
                "quiet hours are HH:MM-HH:MM in the person's local time (e.g. 21:00-08:00), not {text:?}"
            )
        };
        let minutes = |part: &str| -> Option<u16> {
            let (h, m) = part.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && part.trim().len() == 5).then_some(h * 60 + m)
        };
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let (start, end) = (
            minutes(start).ok_or_else(bad)?,
            minutes(end).ok_or_else(bad)?,
        );
        if start == end {
            return Err(format!(
                "quiet hours {text:?} start and end at the same time: an empty window says nothing"
            ));
        }
        Ok(Self { start, end })
    }
}

impl From<QuietHours> for String {
    fn from(q: QuietHours) -> String {
        format!(
            "{:02}:{:02}-{:02}:{:02}",
            q.start / 60,
            q.start % 60,
            q.end / 60,
            q.end % 60
        )
    }
}

/// Contact pressure across campaigns (config `[campaigns]`; the defaults are deploy/cdp.toml's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactRules {
    /// The time zone of people whose own is unknown (no `timezone` trait, no country).
    pub default_timezone: String,
    pub caps: Vec<ChannelCap>,
    pub quiet_hours: BTreeMap<CampaignChannel, QuietHours>,
}

impl Default for ContactRules {
    fn default() -> Self {
        let cap = |channel, max, window_days| ChannelCap {
            channel,
            max,
            window_days,
        };
        let quiet = |text: &str| {
            QuietHours::try_from(text.to_string()).unwrap_or(QuietHours {
                start: 21 * 60,
                end: 8 * 60,
            })
        };
        Self {
            default_timezone: "Asia/Shanghai".into(),
            caps: vec![
                cap(CampaignChannel::Sms, 2, 7),
                cap(CampaignChannel::Email, 4, 30),
                cap(CampaignChannel::Push, 3, 7),
                cap(CampaignChannel::Wechat, 4, 30),
            ],
            quiet_hours: BTreeMap::from([
                (CampaignChannel::Sms, quiet("21:00-08:00")),
                (CampaignChannel::Push, quiet("22:00-08:00")),
                (CampaignChannel::Wechat, quiet("22:00-08:00")),
            ]),
        }
    }
}

impl ContactRules {
    /// Refuses what would be silently wrong: an unknown time zone, an empty cap.
    pub fn validate(&self) -> Result<(), String> {
        TimeZone::get(&self.default_timezone).map_err(|_| {
            format!(
                "campaigns.default_timezone {:?} is not an IANA time zone (e.g. Asia/Shanghai)",
                self.default_timezone
            )
        })?;
        for cap in &self.caps {
            valid_cap(cap.max, cap.window_days).map_err(|e| format!("campaigns.caps: {e}"))?;
        }
        Ok(())
    }
}

fn valid_cap(max: u32, window_days: u32) -> Result<(), String> {
    if max == 0 || max > 1000 {
        return Err("a cap's max is 1 to 1000 contacts".into());
    }
    if !(1..=365).contains(&window_days) {
        return Err("a cap's window_days is 1 to 365".into());
    }
    Ok(())
}

/// A campaign's own contact rules for its channel: added to the configured ones, so they can
/// only be stricter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignContact {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<FrequencyCap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
}

impl CampaignContact {
    pub(crate) fn validate(&self) -> Result<(), EngineError> {
        if self.caps.len() > 10 {
            return Err(EngineError::InvalidRequest(
                "contact.caps: at most 10".into(),
            ));
        }
        for cap in &self.caps {
            valid_cap(cap.max, cap.window_days)
                .map_err(|e| EngineError::InvalidRequest(format!("contact.caps: {e}")))?;
        }
        Ok(())
    }
}

/// `contacts/<profile id>/<channel>/`: the prefix of a person's ledgers at a channel.
pub(crate) fn ledger_prefix(channel: CampaignChannel, id: &ProfileId) -> Vec<u8> {
    let mut key = person_ledgers_prefix(id);
    key.extend_from_slice(channel.name().as_bytes());
    key.push(b'/');
    key
}

/// Why a person may not be contacted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeldBack {
    FrequencyCap,
    QuietHours,
}

impl HeldBack {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::FrequencyCap => "frequency_cap",
            Self::QuietHours => "quiet_hours",
        }
    }

    pub(crate) fn why(self) -> &'static str {
        match self {
            Self::FrequencyCap => {
                "contacted as often as the channel's frequency cap allows within its window, by this or other campaigns"
            }
            Self::QuietHours => "within the channel's quiet hours in the person's local time",
        }
    }
}

/// The contact rules of one send: the configured ones of its channel and the campaign's own.
pub(crate) struct ContactGate {
    pub(crate) channel: CampaignChannel,
    caps: Vec<FrequencyCap>,
    quiet: Vec<QuietHours>,
    /// Whether it is quiet now in the default zone and in each country of [`COUNTRY_ZONES`]:
    /// `now` is fixed for the send, so a million members need no time-zone arithmetic.
    quiet_by_default: bool,
    quiet_by_country: std::collections::HashMap<&'static str, bool>,
    campaign: String,
    export: String,
    now: OffsetDateTime,
    /// The unique parts of this send's contact keys: numbered from a random start (a random
    /// draw per contact was a system call per member).
    unique_from: u64,
    issued: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for ContactGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactGate")
            .field("channel", &self.channel)
            .field("caps", &self.caps)
            .field("quiet", &self.quiet)
            .finish_non_exhaustive()
    }
}

/// A person's verdict and, when contacted, the records the send leaves behind.
pub(crate) struct ContactCheck {
    pub(crate) held_back: Option<HeldBack>,
    /// Records past [`KEEP_DAYS`] (or beyond [`MAX_ENTRIES`]), deleted with the next contact.
    stale: Vec<Vec<u8>>,
}

/// A write of a finished send: a contact record (`Some`: the sealed entry) or the deletion
/// of a stale one (`None`).
pub(crate) type ContactWrite = (Vec<u8>, Option<Vec<u8>>);

impl ContactGate {
    pub(crate) fn new(
        rules: &ContactRules,
        channel: CampaignChannel,
        own: &CampaignContact,
        campaign: &str,
        export: &str,
        now: OffsetDateTime,
    ) -> Result<Self, EngineError> {
        let mut caps: Vec<FrequencyCap> = rules
            .caps
            .iter()
            .filter(|c| c.channel == channel)
            .map(|c| FrequencyCap {
                max: c.max,
                window_days: c.window_days,
            })
            .collect();
        caps.extend(own.caps.iter().copied());
        let quiet: Vec<QuietHours> = rules
            .quiet_hours
            .get(&channel)
            .into_iter()
            .chain(own.quiet_hours.as_ref())
            .copied()
            .collect();
        let default_zone = TimeZone::get(&rules.default_timezone).map_err(|_| {
            EngineError::InvalidRequest(format!(
                "campaigns.default_timezone {:?} is not a time zone",
                rules.default_timezone
            ))
        })?;
        let quiet_in = |zones: &[TimeZone]| quiet_in_any(&quiet, zones, now);
        let quiet_by_default = quiet_in(std::slice::from_ref(&default_zone));
        let quiet_by_country = COUNTRY_ZONES
            .iter()
            .filter_map(|(country, names)| {
                let zones: Vec<TimeZone> = names
                    .iter()
                    .filter_map(|name| TimeZone::get(name).ok())
                    .collect();
                (!zones.is_empty()).then(|| (*country, quiet_in(&zones)))
            })
            .collect();
        Ok(Self {
            channel,
            caps,
            quiet,
            quiet_by_default,
            quiet_by_country,
            campaign: campaign.to_string(),
            export: export.to_string(),
            now,
            unique_from: u64::from_be_bytes(cdp_crypto::public_random()?),
            issued: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Whether the person may be contacted now, from their ledgers at the channel (read
    /// through `ledgers`, a cursor over `Keyspace::Exports`: members come in ascending ids)
    /// and their local time.
    pub(crate) fn check(
        &self,
        engine: &Engine,
        ledgers: &mut cdp_store::Cursor<'_>,
        key: &cdp_crypto::DataKey,
        record: &ProfileRecord,
        residency: Option<&str>,
    ) -> Result<ContactCheck, EngineError> {
        let now = self.now.unix_timestamp();
        let keep_after = now - KEEP_DAYS * 86_400;
        let prefix = ledger_prefix(self.channel, &record.id);
        let mut times = Vec::new();
        let mut stale = Vec::new();
        // Contact records in time order (the time is in the key: nothing to open); a ledger
        // of earlier stores is opened, and dropped once all of it is past keeping.
        let mut recent = Vec::new();
        for (ledger_key, sealed) in ledgers.prefix(&prefix)? {
            match contact_micros(&ledger_key[prefix.len()..]).map(|us| us.div_euclid(1_000_000)) {
                Some(at) if at <= keep_after => stale.push(ledger_key),
                Some(at) => {
                    times.push(at);
                    recent.push(ledger_key);
                }
                None => {
                    let ledger: ContactLedger =
                        engine.open_person(key, Keyspace::Exports, &ledger_key, &sealed)?;
                    times.extend(ledger.entries.iter().map(|e| e.at));
                    if ledger.entries.iter().all(|e| e.at <= keep_after) {
                        stale.push(ledger_key);
                    }
                }
            }
        }
        // The oldest go when the channel holds as many as it keeps (this send adds one).
        let over = (recent.len() + 1).saturating_sub(MAX_ENTRIES);
        stale.extend(recent.into_iter().take(over));
        let capped = self.caps.iter().any(|cap| {
            let since = now - i64::from(cap.window_days) * 86_400;
            times.iter().filter(|at| **at > since).count() >= cap.max as usize
        });
        let held_back = if capped {
            Some(HeldBack::FrequencyCap)
        } else if !self.quiet.is_empty() && self.in_quiet_hours(record, residency) {
            Some(HeldBack::QuietHours)
        } else {
            None
        };
        Ok(ContactCheck { held_back, stale })
    }

    /// Quiet in the person's time zone: their `timezone` trait (IANA), else any zone of their
    /// country (a country over several zones counts as quiet when any of them is: the careful
    /// side), else the configured default.
    fn in_quiet_hours(&self, record: &ProfileRecord, residency: Option<&str>) -> bool {
        if let Some(name) = record.traits.get("timezone").and_then(|t| t.value.as_str())
            && let Ok(zone) = TimeZone::get(name)
        {
            return quiet_in_any(&self.quiet, &[zone], self.now);
        }
        residency
            .and_then(|country| self.quiet_by_country.get(country))
            .copied()
            .unwrap_or(self.quiet_by_default)
    }

    /// This send's contact record of the person, sealed, and the deletions of their stale
    /// ones, for the finished job's batch (appended to `writes`).
    pub(crate) fn record_contact(
        &self,
        engine: &Engine,
        key: &cdp_crypto::DataKey,
        id: &ProfileId,
        check: ContactCheck,
        writes: &mut Vec<ContactWrite>,
    ) -> Result<(), EngineError> {
        writes.extend(check.stale.into_iter().map(|stale| (stale, None)));
        let at_us = i64::try_from(self.now.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
        let n = (self.issued).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let record_key = contact_key(
            &ledger_prefix(self.channel, id),
            at_us,
            self.unique_from.wrapping_add(n),
        );
        // A `contact_ledger::ContactEntry` by position (`codec::encode_positional`).
        let entry = (
            self.now.unix_timestamp(),
            Some(at_us),
            &self.campaign,
            &self.export,
        );
        let plain = crate::codec::encode_positional(&entry)
            .map_err(|_| EngineError::Corrupt("contact record".into()))?;
        let sealed = (engine.vault()).seal_person(key, Keyspace::Exports, &record_key, &plain)?;
        writes.push((record_key, Some(sealed)));
        Ok(())
    }
}

/// Whether `now` falls in any of the quiet hours in any of the zones (unknowable instants
/// count as quiet: the careful side).
fn quiet_in_any(quiet: &[QuietHours], zones: &[TimeZone], now: OffsetDateTime) -> bool {
    let Ok(instant) = jiff::Timestamp::from_second(now.unix_timestamp()) else {
        return true;
    };
    zones.iter().any(|zone| {
        let local = zone.to_datetime(instant);
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        quiet.iter().any(|q| q.contains(minute))
    })
}

/// The zones people of a country live in (several for the countries that span them; the
/// inhabited extremes, so that "quiet in any" covers everyone). Countries not listed take the
/// configured default zone.
const COUNTRY_ZONES: &[(&str, &[&str])] = &[
    ("CN", &["Asia/Shanghai"]),
    ("HK", &["Asia/Hong_Kong"]),
    ("MO", &["Asia/Macau"]),
    ("TW", &["Asia/Taipei"]),
    ("SG", &["Asia/Singapore"]),
    ("MY", &["Asia/Kuala_Lumpur"]),
    ("JP", &["Asia/Tokyo"]),
    ("KR", &["Asia/Seoul"]),
    ("TH", &["Asia/Bangkok"]),
    ("VN", &["Asia/Ho_Chi_Minh"]),
    ("PH", &["Asia/Manila"]),
    ("IN", &["Asia/Kolkata"]),
    ("ID", &["Asia/Jakarta", "Asia/Jayapura"]),
    ("AE", &["Asia/Dubai"]),
    ("AU", &["Australia/Perth", "Australia/Sydney"]),
    ("NZ", &["Pacific/Auckland"]),
    ("GB", &["Europe/London"]),
    ("IE", &["Europe/Dublin"]),
    ("PT", &["Europe/Lisbon"]),
    ("ES", &["Europe/Madrid"]),
    ("FR", &["Europe/Paris"]),
    ("BE", &["Europe/Brussels"]),
    ("NL", &["Europe/Amsterdam"]),
    ("LU", &["Europe/Luxembourg"]),
    ("DE", &["Europe/Berlin"]),
    ("AT", &["Europe/Vienna"]),
    ("CH", &["Europe/Zurich"]),
    ("IT", &["Europe/Rome"]),
    ("DK", &["Europe/Copenhagen"]),
    ("SE", &["Europe/Stockholm"]),
    ("NO", &["Europe/Oslo"]),
    ("FI", &["Europe/Helsinki"]),
    ("PL", &["Europe/Warsaw"]),
    ("CZ", &["Europe/Prague"]),
    ("SK", &["Europe/Bratislava"]),
    ("HU", &["Europe/Budapest"]),
    ("SI", &["Europe/Ljubljana"]),
    ("HR", &["Europe/Zagreb"]),
    ("RO", &["Europe/Bucharest"]),
    ("BG", &["Europe/Sofia"]),
    ("GR", &["Europe/Athens"]),
    ("CY", &["Asia/Nicosia"]),
    ("MT", &["Europe/Malta"]),
    ("EE", &["Europe/Tallinn"]),
    ("LV", &["Europe/Riga"]),
    ("LT", &["Europe/Vilnius"]),
    ("US", &["America/New_York", "Pacific/Honolulu"]),
    ("CA", &["America/St_Johns", "America/Vancouver"]),
    ("MX", &["America/Cancun", "America/Tijuana"]),
    ("BR", &["America/Noronha", "America/Rio_Branco"]),
];

/// A channel's turn: while a send holds it, no other send on the channel decides members.
pub(crate) struct ContactTurn<'a> {
    engine: &'a Engine,
    key: Vec<u8>,
    holder: String,
    /// When the lease was last written: a renewal is a durable commit, so it happens at the
    /// jobs' renewal cadence rather than after every block of members.
    renewed_at: std::cell::Cell<std::time::Instant>,
}

/// The lease row of a channel's turn.
#[derive(Debug, Serialize, Deserialize)]
struct TurnLease {
    holder: String,
    #[serde(with = "time::serde::rfc3339")]
    until: OffsetDateTime,
}

/// Serialises the check-and-take of turns among this node's own threads (the write turn does
/// it among nodes of a shared database).
pub(crate) static LOCAL_TURNS: Mutex<()> = Mutex::new(());

impl Engine {
    /// Waits for channel `channel`'s turn and takes it for export `export` (held until the
    /// returned guard is dropped, renewed by [`ContactTurn::renew`]).
    pub(crate) fn take_contact_turn(
        &self,
        channel: CampaignChannel,
        export: &str,
    ) -> Result<ContactTurn<'_>, EngineError> {
        let key = format!("contact-turn/{}", channel.name()).into_bytes();
        let holder = format!("{}/{export}", self.node_name());
        let mut waited = 0u32;
        loop {
            if self.try_turn(&key, &holder)? {
                return Ok(ContactTurn {
                    engine: self,
                    key,
                    holder,
                    renewed_at: std::cell::Cell::new(std::time::Instant::now()),
                });
            }
            if waited.is_multiple_of(50) {
                tracing::info!(
                    export,
                    channel = channel.name(),
                    "waiting for another send on the channel to finish (frequency caps)"
                );
            }
            waited += 1;
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// Takes (or renews) the turn if it is free, expired or already `holder`'s.
    fn try_turn(&self, key: &[u8], holder: &str) -> Result<bool, EngineError> {
        let _local = LOCAL_TURNS.lock().unwrap_or_else(|p| p.into_inner());
        let _turn = self.store().write_turn()?;
        let now = OffsetDateTime::now_utc();
        if let Some(lease) = self.get_system::<TurnLease>(Keyspace::Exports, key)?
            && lease.holder != holder
            && lease.until > now
        {
            return Ok(false);
        }
        let lease = TurnLease {
            holder: holder.to_string(),
            until: now + crate::jobs::LEASE,
        };
        let mut batch = WriteBatch::default();
        batch.put(
            Keyspace::Exports,
            key.to_vec(),
            self.seal_system(Keyspace::Exports, key, &lease)?,
        );
        self.store().commit(batch)?.wait_durable()?;
        Ok(true)
    }
}

impl ContactTurn<'_> {
    /// Extends the turn when [`crate::jobs::RENEW_EVERY`] has passed since it was last
    /// written (a send calls this between blocks of members; the lease lasts six times as
    /// long). Each renewal is a durable commit, during which the send's workers wait: at every
    /// block of a 1M send that was 244 commits.
    pub(crate) fn renew(&self) -> Result<(), EngineError> {
        if self.renewed_at.get().elapsed() < crate::jobs::RENEW_EVERY {
            return Ok(());
        }
        if self.engine.try_turn(&self.key, &self.holder)? {
            self.renewed_at.set(std::time::Instant::now());
            Ok(())
        } else {
            Err(EngineError::Job(
                "the channel's turn passed to another send while this one ran (it paused past the lease): run it again".into(),
            ))
        }
    }
}

impl Drop for ContactTurn<'_> {
    fn drop(&mut self) {
        let give_back = || -> Result<(), EngineError> {
            let _local = LOCAL_TURNS.lock().unwrap_or_else(|p| p.into_inner());
            let _turn = self.engine.store().write_turn()?;
            if let Some(lease) = self
                .engine
                .get_system::<TurnLease>(Keyspace::Exports, &self.key)?
                && lease.holder == self.holder
            {
                let mut batch = WriteBatch::default();
                batch.delete(Keyspace::Exports, self.key.clone());
                self.engine.store().commit(batch)?.wait_durable()?;
            }
            Ok(())
        };
        if let Err(error) = give_back() {
            tracing::warn!(%error, "could not give back a channel's turn; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_across_midnight_and_within_a_day() {
        let night =
            QuietHours::try_from("21:00-08:00".to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert!(night.contains(21 * 60) && night.contains(23 * 60 + 59) && night.contains(0));
        assert!(night.contains(7 * 60 + 59) && !night.contains(8 * 60) && !night.contains(12 * 60));
        let lunch =
            QuietHours::try_from("12:00-13:30".to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            lunch.contains(12 * 60)
                && lunch.contains(13 * 60 + 29)
                && !lunch.contains(13 * 60 + 30)
        );
        assert_eq!(String::from(night), "21:00-08:00");
        for bad in ["21-08", "25:00-08:00", "21:00-21:00", "21:00", "9:00-10:00"] {
            assert!(QuietHours::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    fn lease(engine: &Engine, key: &[u8]) -> Option<TurnLease> {
        engine
            .get_system::<TurnLease>(Keyspace::Exports, key)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A send that holds its channel's turn past the renewal cadence extends the lease (so a
    /// send of another export keeps waiting), and one whose lease was taken over while it
    /// paused learns so instead of deciding members beside the other send.
    #[test]
    fn a_held_turn_is_renewed_at_the_cadence_and_a_lost_one_is_refused() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::open(
            crate::EngineConfig::new(
                dir.path(),
                std::sync::Arc::new(
                    cdp_crypto::Keyring::generate().unwrap_or_else(|e| panic!("{e}")),
                ),
                std::sync::Arc::new(
                    cdp_policy::PolicySet::builtin().unwrap_or_else(|e| panic!("{e}")),
                ),
            )
            .with_index(crate::IndexMode::InMemory),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let turn = engine
            .take_contact_turn(CampaignChannel::Sms, "export-a")
            .unwrap_or_else(|e| panic!("{e}"));
        let first = lease(&engine, &turn.key).unwrap_or_else(|| panic!("no lease row"));
        assert_eq!(first.holder, turn.holder);

        // Within the cadence, a renewal writes nothing.
        turn.renew().unwrap_or_else(|e| panic!("{e}"));
        let unchanged = lease(&engine, &turn.key).unwrap_or_else(|| panic!("no lease row"));
        assert_eq!(unchanged.until, first.until);

        // Past it, the lease is extended, and another export's send still finds it taken.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let past = std::time::Instant::now()
            .checked_sub(crate::jobs::RENEW_EVERY)
            .unwrap_or_else(|| panic!("the clock is too young"));
        turn.renewed_at.set(past);
        turn.renew().unwrap_or_else(|e| panic!("{e}"));
        let renewed = lease(&engine, &turn.key).unwrap_or_else(|| panic!("no lease row"));
        assert!(renewed.until > first.until, "{renewed:?} vs {first:?}");
        assert!(turn.renewed_at.get() > past);
        let other = format!("{}/export-b", engine.node_name());
        assert!(
            !engine
                .try_turn(&turn.key, &other)
                .unwrap_or_else(|e| panic!("{e}"))
        );

        // Taken over (as after a pause past the lease): the next renewal refuses to go on, and
        // giving the turn back leaves the new holder's lease alone.
        let taken = TurnLease {
            holder: other.clone(),
            until: OffsetDateTime::now_utc() + crate::jobs::LEASE,
        };
        let mut batch = WriteBatch::default();
        batch.put(
            Keyspace::Exports,
            turn.key.clone(),
            engine
                .seal_system(Keyspace::Exports, &turn.key, &taken)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        engine
            .store()
            .commit(batch)
            .and_then(|ticket| ticket.wait_durable())
            .unwrap_or_else(|e| panic!("{e}"));
        turn.renewed_at.set(past);
        let refused = turn
            .renew()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("passed to another send"), "{refused}");
        let key = turn.key.clone();
        drop(turn);
        assert_eq!(lease(&engine, &key).map(|l| l.holder), Some(other));
    }

    #[test]
    fn the_default_rules_are_valid_and_countries_have_real_zones() {
        ContactRules::default()
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        for country in ["CN", "DE", "US", "AU", "BR", "ID", "GB", "JP"] {
            let zones = COUNTRY_ZONES
                .iter()
                .find(|(c, _)| *c == country)
                .map_or(&[][..], |(_, zones)| *zones);
            assert!(!zones.is_empty(), "{country}");
            for zone in zones {
                assert!(TimeZone::get(zone).is_ok(), "{country}: {zone}");
            }
        }
    }
}
