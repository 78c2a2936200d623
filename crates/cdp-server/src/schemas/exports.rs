//! Exports, recipients, destinations, deliveries, schedules and campaigns.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::*;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ExportStatus {
    Running,
    Done,
    Refused,
    Failed,
    Withdrawn,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ExportFormat {
    Csv,
    Jsonl,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RecipientRole {
    Processor,
    Controller,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DestinationKind {
    Webhook,
    Sftp,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryState {
    Pending,
    Delivering,
    Delivered,
    Failed,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BatchStatus {
    Pending,
    Retrying,
    Delivered,
    Dead,
}

/// A registered recipient of exports.
#[derive(Serialize, ToSchema)]
pub(crate) struct Recipient {
    #[schema(pattern = "^rcp_[0-9a-f]{16}$")]
    pub id: String,
    pub name: String,
    pub contact: String,
    pub role: RecipientRole,
    pub region: String,
    pub transfer_mechanism: String,
    pub allowed_purposes: Vec<String>,
    pub created_by: String,
    pub created_at: Time,
    pub updated_by: Option<String>,
    pub updated_at: Option<Time>,
    pub retired_at: Option<Time>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RecipientList {
    pub recipients: Vec<Recipient>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportProgress {
    pub considered: u64,
    pub total: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Exclusion {
    /// The rule that decided (pipl.consent, gdpr.cross_border...), suppressed, gone.
    pub reason: String,
    pub people: u64,
    pub why: String,
    pub cite: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportCounts {
    /// Everyone the audience's condition matched.
    pub considered: u64,
    pub included: u64,
    /// Reason -> people.
    pub excluded: BTreeMap<String, u64>,
    pub exclusions: Option<Vec<Exclusion>>,
    /// Pseudonyms of the previous export to remove.
    pub removals: u64,
    /// A scheduled run: people who were not in the previous run.
    pub added: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FieldTransform {
    pub field: String,
    pub transform: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct RecipientSummary {
    pub id: String,
    pub name: String,
    pub role: RecipientRole,
    pub region: String,
    pub transfer_mechanism: String,
}

/// The signed description of an export file (`cdp export verify` checks it).
#[derive(Serialize, ToSchema)]
pub(crate) struct Manifest {
    pub export_id: String,
    pub audience_id: String,
    pub audience_definition_sha256: String,
    pub purpose: String,
    pub recipient: RecipientSummary,
    pub policy_version: String,
    pub counts: ExportCounts,
    pub fields: Vec<FieldTransform>,
    pub format: ExportFormat,
    /// `pseudonymous`: still personal data (GDPR Art 4(5), PIPL Art 73).
    pub classification: String,
    pub file_sha256: String,
    pub file_bytes: u64,
    pub previous_export: Option<String>,
    pub campaign: Option<String>,
    pub revised_at: Option<Time>,
    pub created_at: Time,
    pub expires_at: Time,
    /// Ed25519 public key, base64.
    pub signing_key: String,
    /// Ed25519 signature, base64, over the manifest without this field.
    pub signature: Option<String>,
}

/// An export job.
#[derive(Serialize, ToSchema)]
pub(crate) struct Export {
    #[schema(pattern = "^exp_[0-9a-f]{16}$")]
    pub id: String,
    pub audience: String,
    pub purpose: String,
    pub recipient: String,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    pub status: ExportStatus,
    pub progress: ExportProgress,
    /// Why it was refused, failed or withdrawn.
    pub reason: Option<String>,
    /// The counts of a refused job.
    pub counts: Option<ExportCounts>,
    /// The signed manifest of a finished job.
    pub manifest: Option<Manifest>,
    pub created_by: String,
    pub created_at: Time,
    pub destination: Option<String>,
    pub schedule: Option<String>,
    pub campaign: Option<String>,
    /// Roles and purposes of the caller that started it.
    pub caller: Option<serde_json::Value>,
    /// The node running it, until when.
    pub lease: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportList {
    pub exports: Vec<Export>,
}

/// A destination (never its secret, but in the answer that made or rotated it).
#[derive(Serialize, ToSchema)]
pub(crate) struct Destination {
    #[schema(pattern = "^dst_[0-9a-f]{16}$")]
    pub id: String,
    pub name: String,
    pub recipient: String,
    pub kind: DestinationKind,
    pub url: Option<String>,
    pub private_ca: bool,
    pub batch_size: u32,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub username: Option<String>,
    pub directory: Option<String>,
    pub host_key: Option<String>,
    pub public_key: Option<String>,
    pub created_by: String,
    pub created_at: Time,
    pub secret_rotated_at: Option<Time>,
    pub retired_at: Option<Time>,
    /// A webhook's signing secret: only when made or rotated.
    #[schema(pattern = "^whsec_[0-9a-f]{48}$")]
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DestinationList {
    pub destinations: Vec<Destination>,
}

/// A destination's connection test.
#[derive(Serialize, ToSchema)]
pub(crate) struct DestinationTest {
    pub ok: bool,
    /// The receiver's HTTP status (webhooks).
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeadLetter {
    pub export_id: String,
    pub batch: u32,
    pub rows: u32,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub failed_at: Option<Time>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeadLetterList {
    pub dead_letters: Vec<DeadLetter>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Requeued {
    pub requeued_batches: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryBatch {
    pub batch: u32,
    pub first_row: u64,
    pub rows: u32,
    pub status: BatchStatus,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<Time>,
    pub finished_at: Option<Time>,
}

/// The delivery of an export to its destination.
#[derive(Serialize, ToSchema)]
pub(crate) struct Delivery {
    pub export_id: String,
    pub destination: String,
    pub kind: DestinationKind,
    pub state: DeliveryState,
    pub revision: Option<u32>,
    pub batches: Vec<DeliveryBatch>,
    pub created_at: Time,
    pub updated_at: Time,
    pub next_attempt_at: Option<Time>,
    pub note: Option<String>,
    pub lease: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ScheduleRun {
    pub export_id: String,
    pub status: ExportStatus,
    pub started_at: Time,
    pub included: Option<u64>,
    pub added: Option<u64>,
    pub removals: Option<u64>,
    pub reason: Option<String>,
    pub delivery: Option<DeliveryState>,
}

/// A scheduled export and its runs, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct Schedule {
    #[schema(pattern = "^sch_[0-9a-f]{16}$")]
    pub id: String,
    pub name: String,
    pub audience: String,
    pub purpose: String,
    pub recipient: String,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    pub destination: Option<String>,
    pub cron: String,
    pub utc_offset: String,
    pub paused: bool,
    pub next_run_at: Time,
    pub created_by: String,
    pub created_at: Time,
    pub history: Vec<ScheduleRun>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CampaignChannel {
    Sms,
    Email,
    Push,
    Wechat,
    Ads,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignVariant {
    pub name: String,
    pub weight: f64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignCost {
    pub total: Option<f64>,
    pub per_contact: Option<f64>,
    pub currency: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignConversion {
    pub event: String,
    pub within_days: u32,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FrequencyCap {
    /// At most this many contacts...
    pub max: u32,
    /// ...within this many days (rolling), across every campaign on the channel.
    pub window_days: u32,
}

/// A campaign's own contact rules, on top of the configured ones (so only stricter).
#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignContact {
    pub caps: Option<Vec<FrequencyCap>>,
    /// `HH:MM-HH:MM` in the person's local time, e.g. `21:00-08:00`.
    #[schema(pattern = "^[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]$")]
    pub quiet_hours: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TouchModel {
    FirstTouch,
    LastTouch,
}

/// Which campaign a conversion is credited to: the first or last contact within the window.
#[derive(Serialize, ToSchema)]
pub(crate) struct Attribution {
    pub model: TouchModel,
    pub window_days: u32,
}

/// When a campaign sends by itself: recurring (`cron`) or once (`at`).
#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignSchedule {
    pub cron: Option<String>,
    pub utc_offset: String,
    #[schema(format = DateTime)]
    pub at: Option<Time>,
    #[schema(format = DateTime)]
    pub until: Option<Time>,
    pub paused: bool,
    /// The next scheduled send; null once none is left.
    #[schema(format = DateTime)]
    pub next_send_at: Option<Time>,
}

/// A campaign: an audience sent for a purpose on a channel, with a holdout and variants.
#[derive(Serialize, ToSchema)]
pub(crate) struct Campaign {
    #[schema(pattern = "^cmp_[0-9a-f]{16}$")]
    pub id: String,
    pub name: String,
    pub audience: String,
    pub purpose: String,
    pub channel: CampaignChannel,
    pub recipient: String,
    pub destination: Option<String>,
    pub fields: Vec<String>,
    pub format: ExportFormat,
    pub holdout: f64,
    pub variants: Vec<CampaignVariant>,
    pub cost: CampaignCost,
    pub conversion: CampaignConversion,
    pub contact: CampaignContact,
    pub attribution: Attribution,
    pub schedule: Option<CampaignSchedule>,
    /// Export ids of its sends, oldest first.
    pub sends: Vec<String>,
    pub created_by: String,
    pub created_at: Time,
    pub caller: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignList {
    pub campaigns: Vec<Campaign>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignSend {
    pub export_id: String,
    pub status: ExportStatus,
    pub started_at: Time,
    /// People the send contacted.
    pub contacted: Option<u64>,
    /// Eligible people kept from contact.
    pub holdout: Option<u64>,
    pub reason: Option<String>,
}

/// A campaign and its sends, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignWithSends {
    #[serde(flatten)]
    pub campaign: Campaign,
    pub send_history: Vec<CampaignSend>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Uplift {
    /// Conversion rate minus the holdout's, in percentage points.
    pub points: f64,
    /// 95 % confidence interval of `points`.
    pub ci95: Vec<f64>,
    pub p_value: f64,
    pub significant: bool,
    pub incremental_revenue: f64,
}

/// One arm's figures (`null`: withheld below the minimum audience size).
#[derive(Serialize, ToSchema)]
pub(crate) struct ArmResult {
    /// `holdout` or a variant's name.
    pub arm: String,
    pub members: Option<u64>,
    pub conversions: Option<u64>,
    pub conversion_rate: Option<f64>,
    pub revenue: Option<f64>,
    pub average_order_value: Option<f64>,
    pub new_customers: Option<u64>,
    /// Members contacted (0 for the holdout).
    pub sent: Option<u64>,
    /// Members with a delivery (or open, click, unsubscribe) event naming the campaign.
    pub delivered: Option<u64>,
    pub opened: Option<u64>,
    pub clicked: Option<u64>,
    pub unsubscribed: Option<u64>,
    /// Repeat buyers among the converted members.
    pub repurchase_rate: Option<f64>,
    /// Conversions the attribution model credits to this campaign (variants only).
    pub attributed_conversions: Option<u64>,
    pub attributed_revenue: Option<f64>,
    pub uplift: Option<Uplift>,
}

/// A campaign send's results.
#[derive(Serialize, ToSchema)]
pub(crate) struct CampaignResults {
    pub campaign: String,
    pub export_id: String,
    pub sent_at: Time,
    pub conversion_event: String,
    pub window_days: u32,
    pub window_ends: Time,
    pub arms: Vec<ArmResult>,
    pub cost: Option<f64>,
    pub currency: String,
    pub roi: Option<f64>,
    pub cac: Option<f64>,
    pub suppressed_below: u64,
    /// People not contacted for contact pressure: `frequency_cap`, `quiet_hours`.
    pub held_back: std::collections::BTreeMap<String, u64>,
    pub attribution: Attribution,
    /// How many sends the figures cover (several with `export=all`).
    pub sends: u64,
}
