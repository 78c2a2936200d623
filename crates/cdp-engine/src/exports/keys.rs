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
