//! The store keys of exports (`Keyspace::Exports`): jobs, their secrets, member-list chunks,
//! and the latest export of an audience to a recipient.

pub(super) fn job_key(id: &str) -> Vec<u8> {
    [b"job/".as_slice(), id.as_bytes()].concat()
}

pub(super) fn secrets_key(id: &str) -> Vec<u8> {
    [b"secret/".as_slice(), id.as_bytes()].concat()
}

pub(super) fn latest_key(audience: &str, recipient: &str) -> Vec<u8> {
    [
        b"latest/".as_slice(),
        audience.as_bytes(),
        b"/",
        recipient.as_bytes(),
    ]
    .concat()
}

pub(super) fn member_chunk_key(id: &str, chunk: usize) -> Vec<u8> {
    let chunk = u32::try_from(chunk).unwrap_or(u32::MAX);
    [
        b"members/".as_slice(),
        id.as_bytes(),
        b"/",
        &chunk.to_be_bytes(),
    ]
    .concat()
}

/// The latest run of a schedule: its deltas are taken against it alone (not against other
/// exports of the same audience to the same recipient, which may carry other fields).
pub(super) fn schedule_latest_key(schedule: &str) -> Vec<u8> {
    [b"latest-run/".as_slice(), schedule.as_bytes()].concat()
}

/// The latest send of a campaign (its removals are taken against it).
pub(super) fn campaign_latest_key(campaign: &str) -> Vec<u8> {
    [b"latest-send/".as_slice(), campaign.as_bytes()].concat()
}

/// A chunk of the arms a campaign send assigned (profile id and arm, sealed).
pub(crate) fn campaign_arms_key(export: &str, chunk: usize) -> Vec<u8> {
    let chunk = u32::try_from(chunk).unwrap_or(u32::MAX);
    [
        b"campaign-arms/".as_slice(),
        export.as_bytes(),
        b"/",
        &chunk.to_be_bytes(),
    ]
    .concat()
}
