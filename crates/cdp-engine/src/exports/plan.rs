//! What a running export job works from: its members, decision request, columns, recipient's
//! pseudonym key, the previous export it is a delta of, and a campaign send's arms and gate
//! (made by `job.rs`, read by `deciding.rs` as the members are decided).

use cdp_core::ProfileId;
use cdp_policy::DecisionRequest;

use crate::read::audiences::AudienceRecord;
use crate::recipients::RecipientRecord;

/// What a running job works from.
pub(super) struct ExportPlan {
    pub(super) audience: AudienceRecord,
    pub(super) recipient: RecipientRecord,
    /// Allowed members by the index, ascending ids.
    pub(super) members: Vec<ProfileId>,
    pub(super) request: DecisionRequest,
    /// `op` and then the fields.
    pub(super) columns: Vec<String>,
    pub(super) pseudonyms: cdp_crypto::PseudonymKey,
    /// Where the latest export of this audience to this recipient (or of this schedule) is
    /// named, and that export with everyone it included (sorted pseudonyms' bytes).
    pub(super) latest: Vec<u8>,
    pub(super) previous: Option<(String, Vec<[u8; 16]>)>,
    /// A scheduled run writes only the people the previous run did not include.
    pub(super) delta_only: bool,
    /// A campaign send's arms.
    pub(super) arms: Option<crate::campaigns::ArmAssigner>,
    /// A campaign send's frequency caps and quiet hours.
    pub(super) contact: Option<crate::contact::ContactGate>,
}

impl ExportPlan {
    /// Whether a member's row goes into the file.
    pub(super) fn writes(&self, pseudonym: &[u8; 16]) -> bool {
        match (&self.previous, self.delta_only) {
            (Some((_, before)), true) => before.binary_search(pseudonym).is_err(),
            _ => true,
        }
    }
}
