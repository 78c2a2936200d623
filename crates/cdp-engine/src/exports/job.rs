//! The life of an export job: started (checked, saved, audited), run on its own thread
//! (members decided on both cores, rows sealed into the file), then refused below the minimum
//! audience size or finished (delta, signed manifest, member list), and downloaded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use cdp_policy::{Action, DecisionRequest};
use cdp_store::{Keyspace, WriteBatch};
use serde_json::Value;
use time::OffsetDateTime;

use super::deciding::Tally;
use super::fields::policy_field;
use super::format::{csv_line, format_row};
use super::keys::{
    campaign_arms_key, campaign_latest_key, job_key, latest_key, member_chunk_key,
    schedule_latest_key, secrets_key,
};
use super::members::{ExportSecrets, Finished, sorted_difference};
use super::plan::ExportPlan;
use super::sealed_file::{NO_MEMBER, SealedFileWriter, WrittenFile};
use super::{
    ExportFormat, ExportProgress, ExportRecord, ExportRequest, ExportStatus, FieldTransform,
    Manifest, RecipientSummary,
};
use crate::audit::AuditRecord;
use crate::read::access::Access;
use crate::read::audiences::AudienceRecord;
use crate::recipients::RecipientRecord;
use crate::records::hex;
use crate::{Engine, EngineError};

impl Engine {
    /// Everything an export must satisfy before it starts (also when a schedule is made):
    /// known fields, audience, recipient (not retired) and purpose, a caller who may state the
    /// purpose, an audience built for it, a destination of the same recipient.
    pub(crate) fn check_export_request(
        &self,
        request: &ExportRequest,
        access: &Access,
    ) -> Result<(AudienceRecord, RecipientRecord), EngineError> {
        super::fields::validate(&request.fields, self.policies())?;
        let audience = self.load_audience(&request.audience)?;
        let recipient = self
            .recipient(&request.recipient)?
            .ok_or_else(|| EngineError::NotFound(format!("recipient {}", request.recipient)))?;
        refuse_retired(&recipient)?;
        self.known_purpose(&request.purpose)?;
        if !self
            .policies()
            .caller_may_use(&access.caller, &request.purpose)
        {
            return Err(EngineError::Denied(Box::new(self.policies().decide(
                &DecisionRequest {
                    action: Action::Export,
                    purpose: request.purpose.clone(),
                    caller: Some(access.caller.clone()),
                    recipient: Some(recipient.facts()),
                    fields: Vec::new(),
                    inferred: Vec::new(),
                },
                &cdp_policy::SubjectFacts::default(),
            ))));
        }
        // What the selection reveals: an unclassified value for a marketing purpose is refused
        // here, before anything runs.
        self.inferred_categories(&audience, &request.purpose)?;
        // Purpose limitation (PIPL Art 6, GDPR Art 5(1)(b)): the members were selected for the
        // audience's purpose; an export serves that purpose or a narrower one of it.
        if !cdp_policy::covers(&audience.purpose, &request.purpose) {
            return Err(EngineError::InvalidRequest(format!(
                "the export's purpose {} is not the purpose its audience was built for ({}): build an audience for {}",
                request.purpose, audience.purpose, request.purpose
            )));
        }
        if let Some(destination) = &request.destination {
            self.usable_destination(destination, &recipient.id)?;
        }
        if request.campaign.is_none() && request.fields.iter().any(|f| f == "arm") {
            return Err(EngineError::InvalidRequest(
                "the field arm belongs to a campaign's sends (POST /v1/campaigns)".into(),
            ));
        }
        Ok((audience, recipient))
    }

    /// `POST /v1/exports`: checks the request and starts the job in the background.
    pub fn start_export(
        self: &Arc<Self>,
        request: ExportRequest,
        access: &Access,
    ) -> Result<ExportRecord, EngineError> {
        let (audience, recipient) = self.check_export_request(&request, access)?;
        let record = ExportRecord {
            id: format!("exp_{}", hex::encode(&cdp_crypto::random_bytes::<8>()?)),
            audience: audience.id.clone(),
            purpose: request.purpose,
            recipient: recipient.id.clone(),
            fields: request.fields,
            format: request.format,
            status: ExportStatus::Running,
            progress: ExportProgress::default(),
            reason: None,
            counts: None,
            manifest: None,
            created_by: access.actor.clone(),
            created_at: OffsetDateTime::now_utc(),
            caller: Some(access.caller.clone()),
            lease: Some(self.lease_until(OffsetDateTime::now_utc() + crate::jobs::LEASE)),
            destination: request.destination,
            schedule: request.schedule,
            campaign: request.campaign,
        };
        self.save_export(
            &record,
            None,
            &[AuditRecord {
                actor: access.actor.clone(),
                action: "export.create".into(),
                purpose: Some(record.purpose.clone()),
                person: None,
                decision: "done".into(),
                rules: vec![record.id.clone(), recipient.id.clone(), audience.id.clone()],
            }],
        )?
        .wait_durable()?;
        self.spawn_export(record.clone(), access.clone())?;
        Ok(record)
    }

    /// Runs a job to its end: done, refused, or (another node took it over) nothing saved.
    pub(super) fn run_export(
        &self,
        mut job: ExportRecord,
        access: &Access,
    ) -> Result<(), EngineError> {
        let plan = self.plan_export(&job, access)?;
        job.progress.total = plan.members.len() as u64;
        // The file is written as the rows come (removed again if the export is refused or
        // fails: its key is never saved then, so what was written is unreadable anyway).
        let (file_key, wrapped_key) = self.vault().new_file_key(job.id.as_bytes())?;
        // A file of this node's own until the job is saved as done (a node that lost the job
        // to another one never writes where the other one does).
        let mut writer = SealedFileWriter::create(
            self.vault(),
            &file_key,
            &job.id,
            self.partial_file_path(&job.id),
        )?;
        if job.format == ExportFormat::Csv {
            writer.write_row(&NO_MEMBER, &csv_line(&plan.columns))?;
        }
        // A campaign send decides its members in its channel's turn, held until its contacts
        // are committed with the finished job: caps hold when campaigns run at once.
        let turn = match &plan.contact {
            Some(gate) => Some(self.take_contact_turn(gate.channel, &job.id)?),
            None => None,
        };
        let Some(mut tally) = self.decide_members(&plan, &mut job, &mut writer, turn.as_ref())?
        else {
            writer.discard();
            tracing::warn!(export = %job.id, "another node took this export over; this node's run ends");
            return Ok(());
        };
        if tally.strictest_k == 0 {
            tally.strictest_k = self.min_audience_size();
        }
        if tally.counts.included < tally.strictest_k {
            writer.discard();
            return self.refuse_export(job, access, &tally);
        }
        self.finish_export(job, access, &plan, writer, tally, wrapped_key)
    }

    /// The audience's allowed members, the decision request and the columns of a job.
    fn plan_export(&self, job: &ExportRecord, access: &Access) -> Result<ExportPlan, EngineError> {
        let audience = self.load_audience(&job.audience)?;
        let recipient = self
            .recipient(&job.recipient)?
            .ok_or_else(|| EngineError::NotFound(format!("recipient {}", job.recipient)))?;
        // Retired while the job waited (or its node died): nothing goes out.
        refuse_retired(&recipient)?;
        // Everyone the condition matches, not only those the index allows for the purpose:
        // each is decided here, so that the manifest accounts for every person left out.
        let mut members = self.audience_matched_ids(&audience)?;
        // In profile-id order, the order of the store: the workers read by walking it. (The
        // file's row order carries nothing: profile ids are random.)
        members.sort_unstable();
        let pseudonyms = self.vault().pseudonym_key(&recipient.id)?;
        let policy_fields: Vec<String> = job
            .fields
            .iter()
            .filter_map(|f| policy_field(f))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let request = DecisionRequest {
            action: Action::Export,
            purpose: job.purpose.clone(),
            caller: Some(access.caller.clone()),
            recipient: Some(recipient.facts()),
            fields: policy_fields,
            // Each member needs a separate consent naming what the selection reveals.
            inferred: self.inferred_categories(&audience, &job.purpose)?,
        };
        let mut columns: Vec<String> = vec!["op".into()];
        columns.extend(job.fields.iter().cloned());
        // The export the delta is taken against: the last one of this audience to this
        // recipient, or of this schedule.
        let latest = match (&job.schedule, &job.campaign) {
            (Some(schedule), _) => schedule_latest_key(schedule),
            (None, Some(campaign)) => campaign_latest_key(campaign),
            (None, None) => latest_key(&audience.id, &recipient.id),
        };
        let (arms, contact) = match &job.campaign {
            Some(campaign) => {
                let record = self.campaign(campaign)?;
                let gate = crate::contact::ContactGate::new(
                    &self.config.contact,
                    record.channel,
                    &record.contact,
                    &record.id,
                    &job.id,
                    OffsetDateTime::now_utc(),
                )?;
                (Some(self.arm_assigner(campaign)?), Some(gate))
            }
            None => (None, None),
        };
        let mut previous = None;
        if let Some(id) = self.store().get(Keyspace::Exports, &latest)? {
            let id = String::from_utf8_lossy(&id).into_owned();
            if let Some(secrets) =
                self.get_system::<ExportSecrets>(Keyspace::Exports, &secrets_key(&id))?
            {
                let members = self.past_members(&id, secrets)?;
                previous = Some((id, members));
            }
        }
        Ok(ExportPlan {
            audience,
            recipient,
            members,
            request,
            columns,
            pseudonyms,
            latest,
            previous,
            delta_only: job.schedule.is_some(),
            arms,
            contact,
        })
    }

    /// Too few people remain after the policies: a smaller file could single people out.
    fn refuse_export(
        &self,
        mut job: ExportRecord,
        access: &Access,
        tally: &Tally,
    ) -> Result<(), EngineError> {
        let (included, k) = (tally.counts.included, tally.strictest_k);
        job.status = ExportStatus::Refused;
        let considered = tally.counts.considered;
        let mut reason = format!(
            "{included} of the {considered} people the audience matched remain after the policies, fewer than the minimum audience size {k}: a smaller file could single people out"
        );
        if !tally.counts.exclusions.is_empty() {
            let lines: Vec<String> = tally
                .counts
                .exclusions
                .iter()
                .map(|line| {
                    let cite = if line.cite.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", line.cite.join(", "))
                    };
                    format!(
                        "{} left out by {}: {}{cite}",
                        line.people, line.reason, line.why
                    )
                })
                .collect();
            reason.push_str(". ");
            reason.push_str(&lines.join("; "));
        }
        job.reason = Some(reason);
        job.counts = Some(tally.counts.clone());
        let audit = [AuditRecord {
            actor: access.actor.clone(),
            action: "export.refused".into(),
            purpose: Some(job.purpose.clone()),
            person: None,
            decision: "deny".into(),
            rules: vec![
                job.id.clone(),
                format!("included={included}"),
                format!("k={k}"),
            ],
        }];
        let saved = self.save_if_ours(&mut job, None, &audit, None)?;
        if let Ok(ticket) = saved {
            ticket.wait_durable()?;
        }
        Ok(())
    }

    /// Writes the removals of the delta, seals the file, signs the manifest and saves the job
    /// with its member list.
    fn finish_export(
        &self,
        mut job: ExportRecord,
        access: &Access,
        plan: &ExportPlan,
        mut writer: SealedFileWriter<'_>,
        mut tally: Tally,
        wrapped_key: Vec<u8>,
    ) -> Result<(), EngineError> {
        // The delta: pseudonyms of the previous export (`plan.latest`) that are not in this
        // one. Sorted: erasure and access requests look a person up in every past export.
        tally.included.sort_unstable();
        let latest = plan.latest.clone();
        let (previous, removals) = match &plan.previous {
            Some((id, before)) => (Some(id.clone()), sorted_difference(before, &tally.included)),
            None => (None, Vec::new()),
        };
        if plan.delta_only {
            let added = tally
                .included
                .iter()
                .filter(|pseudonym| plan.writes(pseudonym))
                .count();
            tally.counts.added = Some(added as u64);
        }
        tally.counts.removals = removals.len() as u64;
        for pseudonym in &removals {
            let mut row = BTreeMap::new();
            row.insert("op".into(), Value::String("remove".into()));
            if job.fields.iter().any(|f| f == "pseudonym") {
                row.insert("pseudonym".into(), Value::String(hex::encode(pseudonym)));
            }
            writer.write_row(&NO_MEMBER, &format_row(job.format, &plan.columns, &row))?;
        }
        let written = writer.finish()?;
        let manifest = self.signed_manifest(&job, plan, &tally, previous, &written)?;
        job.status = ExportStatus::Done;
        let summary = vec![
            job.id.clone(),
            format!("included={}", manifest.counts.included),
            format!(
                "excluded={}",
                manifest.counts.excluded.values().sum::<u64>()
            ),
            format!("removals={}", manifest.counts.removals),
        ];
        job.manifest = Some(manifest);
        let secrets = ExportSecrets {
            wrapped_key,
            framed: true,
            plain_bytes: written.framed_bytes,
            revision: 0,
            pseudonyms: Vec::new(),
            chunk_starts: tally
                .included
                .chunks(self.config.exports.member_chunk.max(1))
                .filter_map(|chunk| chunk.first().map(|first| hex::encode(first)))
                .collect(),
        };
        let (partial, done) = (
            self.partial_file_path(&job.id),
            self.export_file_path(&job.id, 0),
        );
        let publish = || {
            std::fs::rename(&partial, &done)
                .map_err(|source| EngineError::io("cannot move the export file in place", source))
        };
        let audit = [AuditRecord {
            actor: access.actor.clone(),
            action: "export.done".into(),
            purpose: Some(job.purpose.clone()),
            person: None,
            decision: "allow".into(),
            rules: summary,
        }];
        let saved = self.save_if_ours(
            &mut job,
            Some(Finished {
                secrets: &secrets,
                latest,
                members: &tally.included,
                arms: &tally.assigned,
                contacts: std::mem::take(&mut tally.contacts),
            }),
            &audit,
            Some(&publish),
        )?;
        match saved {
            Ok(ticket) => ticket.wait_durable()?,
            Err(super::lease::LeaseLost) => {
                tracing::warn!(export = %job.id, "another node took this export over; this node's file is dropped");
            }
        }
        Ok(())
    }

    /// The manifest of a finished file, signed with Ed25519.
    fn signed_manifest(
        &self,
        job: &ExportRecord,
        plan: &ExportPlan,
        tally: &Tally,
        previous: Option<String>,
        written: &WrittenFile,
    ) -> Result<Manifest, EngineError> {
        let signing = self.vault().signing_key()?;
        let (audience, recipient) = (&plan.audience, &plan.recipient);
        let mut manifest = Manifest {
            export_id: job.id.clone(),
            audience_id: audience.id.clone(),
            audience_definition_sha256: hex::encode(&cdp_crypto::sha256_parts(&[
                &serde_json::to_vec(&audience.condition).unwrap_or_default(),
            ])),
            purpose: job.purpose.clone(),
            recipient: RecipientSummary {
                id: recipient.id.clone(),
                name: recipient.name.clone(),
                role: recipient.role,
                region: recipient.region.clone(),
                transfer_mechanism: recipient.transfer_mechanism.clone(),
            },
            policy_version: self.policies().version.clone(),
            counts: tally.counts.clone(),
            fields: job
                .fields
                .iter()
                .map(|field| FieldTransform {
                    field: field.clone(),
                    transform: tally
                        .transforms
                        .get(field)
                        .cloned()
                        .unwrap_or_else(|| "none".into()),
                })
                .collect(),
            format: job.format,
            classification: "pseudonymous".into(),
            file_sha256: written.sha256.clone(),
            file_bytes: written.delivered_bytes,
            previous_export: previous,
            campaign: job.campaign.clone(),
            revised_at: None,
            created_at: job.created_at,
            expires_at: job.created_at + self.config.exports.file_lifetime,
            signing_key: signing.public_key_base64(),
            signature: None,
        };
        manifest.signature = Some(signing.sign_base64(&manifest.signed_bytes()));
        Ok(manifest)
    }

    pub(super) fn save_export(
        &self,
        record: &ExportRecord,
        extra: Option<Finished<'_>>,
        audit: &[AuditRecord],
    ) -> Result<cdp_store::CommitTicket, EngineError> {
        let key = job_key(&record.id);
        let chunks = |n: usize| n.div_ceil(self.config.exports.member_chunk.max(1));
        let mut batch = WriteBatch::with_capacity(extra.as_ref().map_or(1, |extra| {
            extra.contacts.len() + chunks(extra.arms.len()) + chunks(extra.members.len()) + 4
        }));
        batch.put(
            Keyspace::Exports,
            key.clone(),
            self.seal_system(Keyspace::Exports, &key, record)?,
        );
        if let Some(Finished {
            secrets,
            latest,
            members,
            arms,
            contacts,
        }) = extra
        {
            // The contacts of a campaign send count against the channel's caps from the moment
            // the send is done (the channel's turn is held until then).
            for (key, sealed) in contacts {
                match sealed {
                    Some(sealed) => batch.put(Keyspace::Exports, key, sealed),
                    None => batch.delete(Keyspace::Exports, key),
                };
            }
            // A campaign send: who was assigned where, for the measurement of its results.
            for (n, chunk) in arms
                .chunks(self.config.exports.member_chunk.max(1))
                .enumerate()
            {
                let key = campaign_arms_key(&record.id, n);
                let mut plain = Vec::with_capacity(chunk.len() * 17);
                for (id, arm) in chunk {
                    plain.extend_from_slice(id);
                    plain.push(*arm);
                }
                let sealed = self.vault().seal_system(Keyspace::Exports, &key, &plain)?;
                batch.put(Keyspace::Exports, key, sealed);
            }
            for (n, chunk) in members
                .chunks(self.config.exports.member_chunk.max(1))
                .enumerate()
            {
                let key = member_chunk_key(&record.id, n);
                let mut plain = Vec::with_capacity(chunk.len() * 16);
                for pseudonym in chunk {
                    plain.extend_from_slice(pseudonym);
                }
                let sealed = self.vault().seal_system(Keyspace::Exports, &key, &plain)?;
                batch.put(Keyspace::Exports, key, sealed);
            }
            let key = secrets_key(&record.id);
            batch.put(
                Keyspace::Exports,
                key.clone(),
                self.seal_system(Keyspace::Exports, &key, secrets)?,
            );
            batch.put(Keyspace::Exports, latest, record.id.as_bytes().to_vec());
            // Finished with a destination: its delivery is queued in the same transaction,
            // so that no crash leaves a done export undelivered.
            if let Some(destination) = &record.destination
                && record.status == ExportStatus::Done
            {
                self.queue_delivery(&mut batch, record, destination)?;
            }
        }
        if audit.is_empty() {
            Ok(self.store().commit(batch)?)
        } else {
            self.commit_audited(batch, audit)
        }
    }

    /// The most recent export jobs, newest first (at most `limit`).
    pub fn exports(&self, limit: usize) -> Result<Vec<ExportRecord>, EngineError> {
        let mut records: Vec<ExportRecord> = Vec::new();
        for item in self.store().scan_prefix(Keyspace::Exports, b"job/") {
            let (key, sealed) = item?;
            records.push(self.open_system(Keyspace::Exports, &key, &sealed)?);
        }
        records.sort_by_key(|record| std::cmp::Reverse(record.created_at));
        records.truncate(limit);
        Ok(records)
    }

    /// An export job.
    pub fn export(&self, id: &str) -> Result<Option<ExportRecord>, EngineError> {
        if !(id.len() == 20 && id.starts_with("exp_")) {
            return Err(EngineError::InvalidRequest(
                "an export id is exp_ followed by 16 hex digits".into(),
            ));
        }
        self.get_system(Keyspace::Exports, &job_key(id))
    }

    /// The export `id` once it finished; any other state is a conflict saying what only a
    /// finished `noun` (export, send) allows.
    pub(crate) fn finished_export(
        &self,
        id: &str,
        noun: &str,
        only: &str,
    ) -> Result<ExportRecord, EngineError> {
        let record = self
            .export(id)?
            .ok_or_else(|| EngineError::NotFound(format!("export {id}")))?;
        if record.status != ExportStatus::Done {
            return Err(EngineError::Conflict(format!(
                "{noun} {id} is {}: only a finished {noun} {only}",
                record.status.name()
            )));
        }
        Ok(record)
    }

    /// Where this node writes the file of export `id` until the job is done (then it is
    /// moved to [`Engine::export_file_path`]).
    pub(super) fn partial_file_path(&self, id: &str) -> PathBuf {
        self.exports_dir
            .join(format!("{id}.{}.partial", self.node_name()))
    }

    /// Where revision `revision` of the file of export `id` lives:
    /// `<data dir>/exports/<id>.sealed`, after erasures `<id>.r<n>.sealed`.
    pub(super) fn export_file_path(&self, id: &str, revision: u32) -> PathBuf {
        if revision == 0 {
            self.exports_dir.join(format!("{id}.sealed"))
        } else {
            self.exports_dir.join(format!("{id}.r{revision}.sealed"))
        }
    }
}

/// Nothing is sent to a retired recipient (it stays registered for the record of processing).
fn refuse_retired(recipient: &RecipientRecord) -> Result<(), EngineError> {
    match recipient.retired_at {
        Some(at) => Err(EngineError::Conflict(format!(
            "recipient {} was retired on {}: nothing more is sent to it",
            recipient.id,
            at.date()
        ))),
        None => Ok(()),
    }
}
