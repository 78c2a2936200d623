//! Overlays reading through the staged writes of earlier overlays not committed yet (the
//! writer's pipeline in `cdp-engine` commits them later, in order).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cdp_store::{DataDir, FjallStore, FjallStoreOptions, Keyspace, Overlay, Store, WriteBatch};

fn put(keyspace: Keyspace, key: &[u8], value: &[u8]) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.put(keyspace, key.to_vec(), value.to_vec());
    batch
}

#[test]
fn layers_are_read_newest_first_before_the_store_and_commit_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        FjallStore::open(&DataDir::new(dir.path()), &FjallStoreOptions::default()).unwrap();
    let mut base = put(Keyspace::Mentions, b"a", b"stored");
    base.put(Keyspace::Mentions, b"b".to_vec(), b"stored".to_vec());
    base.put(Keyspace::Mentions, b"c".to_vec(), b"stored".to_vec());
    store.commit(base).unwrap().wait_durable().unwrap();

    // The first request changes a and deletes b; the second changes a again.
    let mut first = Overlay::new(store.as_ref());
    first
        .stage(put(Keyspace::Mentions, b"a", b"first"))
        .unwrap();
    let mut delete = WriteBatch::new();
    delete.delete(Keyspace::Mentions, b"b".to_vec());
    first.stage(delete).unwrap();
    let first = Arc::new(first.into_staging());
    let mut second = Overlay::with_layers(store.as_ref(), vec![first.clone()]);
    assert_eq!(second.get(Keyspace::Mentions, b"b").unwrap(), None);
    second
        .stage(put(Keyspace::Mentions, b"a", b"second"))
        .unwrap();
    second
        .stage(put(Keyspace::Mentions, b"d", b"second"))
        .unwrap();
    let second = Arc::new(second.into_staging());

    // A third reads both layers, the newer first, its own writes before them.
    let mut third = Overlay::with_layers(store.as_ref(), vec![first.clone(), second.clone()]);
    assert_eq!(
        third.get(Keyspace::Mentions, b"a").unwrap(),
        Some(b"second".to_vec())
    );
    assert_eq!(third.get(Keyspace::Mentions, b"b").unwrap(), None);
    assert_eq!(
        third.get(Keyspace::Mentions, b"c").unwrap(),
        Some(b"stored".to_vec())
    );
    // Another keyspace is not touched by the layers.
    assert_eq!(third.get(Keyspace::Identifiers, b"a").unwrap(), None);
    third
        .stage(put(Keyspace::Mentions, b"c", b"third"))
        .unwrap();
    let listed: Vec<(Vec<u8>, Vec<u8>)> = third.scan_prefix(Keyspace::Mentions, b"").unwrap();
    assert_eq!(
        listed,
        vec![
            (b"a".to_vec(), b"second".to_vec()),
            (b"c".to_vec(), b"third".to_vec()),
            (b"d".to_vec(), b"second".to_vec()),
        ]
    );
    // Nothing reached the store yet.
    assert_eq!(
        store.get(Keyspace::Mentions, b"a").unwrap(),
        Some(b"stored".to_vec())
    );

    // Committed in order, each staging with what was sealed after it (a later operation on
    // the same key wins).
    let _first = store
        .commit(first.batch(put(Keyspace::Identifiers, b"n", b"first")))
        .unwrap();
    let _second = store
        .commit(second.batch(put(Keyspace::Mentions, b"d", b"sealed later")))
        .unwrap();
    third.commit().unwrap().unwrap().wait_durable().unwrap();
    assert_eq!(
        store.get(Keyspace::Mentions, b"a").unwrap(),
        Some(b"second".to_vec())
    );
    assert_eq!(store.get(Keyspace::Mentions, b"b").unwrap(), None);
    assert_eq!(
        store.get(Keyspace::Mentions, b"c").unwrap(),
        Some(b"third".to_vec())
    );
    assert_eq!(
        store.get(Keyspace::Mentions, b"d").unwrap(),
        Some(b"sealed later".to_vec())
    );
    assert_eq!(
        store.get(Keyspace::Identifiers, b"n").unwrap(),
        Some(b"first".to_vec())
    );
    store.close().unwrap();
}
