//! Erasure by crypto-shredding (PIPL Art 47, GDPR Art 17).

use std::collections::{BTreeMap, BTreeSet};

use cdp_core::ProfileId;
use cdp_store::{Keyspace, WriteBatch};
use serde_json::Value;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::records::StoredEvent;
use crate::write::graph_store::StoreGraph;
use crate::{Engine, EngineError};

/// What erasing a person deletes: the batch (all but the profile and the data key), counts per
/// kind for the receipt, and the digests of their messages (for the de-duplication window).
struct Erasure {
    batch: WriteBatch,
    /// Suspect records deleted with the person's identifiers.
    released_suspects: Vec<crate::records::NodeKey>,
    counts: BTreeMap<&'static str, u64>,
    digests: BTreeSet<[u8; 16]>,
}

impl Engine {
    /// Crypto-shredding: the person's data key is destroyed, their graph records, identifiers,
    /// events, consents, de-duplication keys and aliases are deleted; the index drops them
    /// from the change feed. Answers a signed receipt.
    pub(crate) fn erase(
        &self,
        id: ProfileId,
        cause: &str,
        actor: &str,
    ) -> Result<Value, EngineError> {
        // The export files that hold the person are rewritten (or withdrawn) in the same
        // commit as the rest: their old keys are replaced in the erasure's batch.
        let files = self.export_files_lock();
        let mut revisions = self.stage_export_erasure(&id)?;
        let recipients = std::mem::take(&mut revisions.report);
        let batch = std::mem::take(&mut revisions.batch);
        let counts = match self
            .commit_erasure(id, batch)
            .and_then(|(counts, ticket)| Ok(ticket.wait_durable().map(|_| counts)?))
        {
            Ok(counts) => {
                // Durable: the old files' keys are gone for good; the files go too.
                revisions.committed();
                counts
            }
            Err(error) => {
                revisions.abandoned();
                return Err(error);
            }
        };
        drop(files);
        let erased_at = OffsetDateTime::now_utc();
        let mut receipt = serde_json::json!({
            "cause": cause,
            "person": self.audit_pseudonym(&id)?,
            "erased_at": erased_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            "deleted": counts,
            "data_key_destroyed": true,
            "recipients_to_notify": recipients,
            "policy_version": self.policies().version,
        });
        let signing = self.vault().signing_key()?;
        let signature = signing.sign_base64(&serde_json::to_vec(&receipt).unwrap_or_default());
        receipt["signing_key"] = Value::String(signing.public_key_base64());
        receipt["signature"] = Value::String(signature);
        self.audit(&[AuditRecord {
            actor: actor.to_string(),
            action: "person.erased".into(),
            purpose: None,
            person: Some(id),
            decision: "done".into(),
            rules: vec![cause.to_string()],
        }])?
        .wait_durable()?;
        Ok(serde_json::json!({ "receipt": receipt }))
    }

    /// Commits the erasure of the person with `extra` (the export files' changes) in one
    /// batch; answers the counts for the receipt and the commit's ticket.
    fn commit_erasure(
        &self,
        id: ProfileId,
        extra: WriteBatch,
    ) -> Result<(BTreeMap<&'static str, u64>, cdp_store::CommitTicket), EngineError> {
        let mut cache = self.write_lock()?;
        let view = cdp_store::Overlay::new(self.store().as_ref());
        let mut graph = StoreGraph::new(self, &view);
        let (record, key) = graph
            .profile(id)?
            .ok_or_else(|| EngineError::NotFound(format!("profile {id}")))?;
        let Erasure {
            mut batch,
            released_suspects,
            counts,
            digests,
        } = self.erasure_batch(&mut graph, &record, &key)?;
        // Their messages leave the de-duplication window: sent again, they make a new person.
        cache
            .messages
            .stage_forget(self.store().as_ref(), &mut batch, &digests)?;
        batch.delete(Keyspace::Profiles, id.as_bytes().to_vec());
        // The data key last in meaning, same batch in fact: nothing sealed under it can be
        // opened once this commits.
        self.vault().destroy_person_key(&id, &mut batch);
        batch.extend(extra);
        drop(graph);
        let ticket = self.store().commit(batch)?;
        for node in released_suspects {
            self.set_unlinkable(node, false);
        }
        cache.messages.forget(&digests);
        cache.clear_records();
        self.written_profiles.clear();
        Ok((counts, ticket))
    }

    /// Deletes of everything of the person but the profile and the data key, with counts:
    /// events (and their de-duplication keys, so re-sent events make a new person), consent
    /// records, evidence, the person's own identifiers and their mentions, the merge log and
    /// aliases.
    fn erasure_batch(
        &self,
        graph: &mut StoreGraph<'_>,
        record: &crate::records::ProfileRecord,
        key: &cdp_crypto::DataKey,
    ) -> Result<Erasure, EngineError> {
        let id = record.id;
        let mut batch = WriteBatch::default();
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        // Events, and the digests of their messages (for the de-duplication window).
        let mut digests = BTreeSet::new();
        for item in self.store().scan_prefix(Keyspace::Events, id.as_bytes()) {
            let (event_key, sealed) = item?;
            if let Ok(event) =
                self.open_person::<StoredEvent>(key, Keyspace::Events, &event_key, &sealed)
            {
                digests.insert(cdp_crypto::digest16(&[
                    event.source_id.as_bytes(),
                    event.message.message_id.as_bytes(),
                ]));
                let suffix = crate::records::event_key_suffix(&event_key);
                self.delete_facts(&mut batch, &event, &id, suffix);
            }
            batch.delete(Keyspace::Events, event_key);
            *counts.entry("events").or_default() += 1;
        }
        for item in self.store().scan_prefix(Keyspace::Consents, id.as_bytes()) {
            let (consent_key, _) = item?;
            batch.delete(Keyspace::Consents, consent_key);
            *counts.entry("consents").or_default() += 1;
        }
        let ledgers = crate::contact_ledger::delete_ledgers(self, &id, &mut batch)?;
        // Which profiles the person was split from (campaign results): no longer anyone's.
        batch.delete(
            Keyspace::Exports,
            crate::contact_ledger::split_heir_key(&id),
        );
        if ledgers > 0 {
            *counts.entry("contact_ledgers").or_default() += ledgers;
        }
        let mut nodes = BTreeSet::new();
        for identifier in &record.identifiers {
            nodes.insert(identifier.node);
        }
        for evidence in &record.evidence {
            if let Some(edge) = graph.evidence(evidence)? {
                for (_, node) in edge.nodes.iter().chain(edge.severed.iter()) {
                    // Only this person's identifiers: another person's stays theirs.
                    if let Some(n) = graph.node(node)?
                        && n.profile.is_none_or(|p| p == id)
                    {
                        nodes.insert(*node);
                    }
                }
            }
            batch.delete(Keyspace::IdentityEdges, evidence.0.to_vec());
            *counts.entry("evidence").or_default() += 1;
        }
        for node in &nodes {
            batch.delete(Keyspace::Identifiers, node.0.as_bytes().to_vec());
            for item in self
                .store()
                .scan_prefix(Keyspace::Mentions, node.0.as_bytes())
            {
                let (mention, _) = item?;
                batch.delete(Keyspace::Mentions, mention);
            }
            *counts.entry("identifiers").or_default() += 1;
        }
        let released_suspects = self.stage_suspect_erasure(&nodes, &mut batch)?;
        let matching = self.stage_matching_erasure(record, key, &mut batch)?;
        if matching > 0 {
            *counts.entry("matching_records").or_default() += matching;
        }
        for item in self.store().scan_prefix(Keyspace::MergeLog, id.as_bytes()) {
            let (entry, _) = item?;
            batch.delete(Keyspace::MergeLog, entry);
        }
        for absorbed in &record.merged_from {
            batch.delete(Keyspace::Aliases, absorbed.as_bytes().to_vec());
        }
        Ok(Erasure {
            batch,
            released_suspects,
            counts,
            digests,
        })
    }
}
