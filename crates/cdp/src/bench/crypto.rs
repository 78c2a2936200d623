use super::*;

pub(super) fn run(args: CryptoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.records > 0, "--records must be at least 1");
    let keyring = Keyring::generate()?;
    let dek = DataKey::generate()?;
    let key = dek.record_key()?;
    let plaintext = vec![0x5au8; args.record_bytes];
    let ids: Vec<[u8; 16]> = (0..1024u64).map(|i| u128::from(i).to_be_bytes()).collect();
    let sealed: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| seal(&key, RecordAad::new("profiles", id), &plaintext))
        .collect::<Result<_, _>>()?;
    let blind = keyring.blind_index_key(KeyVersion::FIRST)?;
    let emails: Vec<String> = (0..1024)
        .map(|i| format!("customer{i:06}@example.com"))
        .collect();
    let wrap_ops = (args.records / 10).max(1);
    let wrapped = keyring.wrap_data_key(&dek, b"owner")?;

    let mut failures = 0u64;
    let rates = [
        measure(
            "seal (AES-256-GCM, per-person key)",
            args.records,
            "6.0M/s (167 ns)",
            |i| {
                let id = &ids[(i % 1024) as usize];
                failures +=
                    u64::from(seal(&key, RecordAad::new("profiles", id), &plaintext).is_err());
            },
        ),
        measure(
            "open (AES-256-GCM, per-person key)",
            args.records,
            "about seal's",
            |i| {
                let slot = (i % 1024) as usize;
                failures += u64::from(
                    open(&key, RecordAad::new("profiles", &ids[slot]), &sealed[slot]).is_err(),
                );
            },
        ),
        measure(
            "blind index (HMAC-SHA256, e-mail)",
            args.records,
            "4.9M/s (205 ns)",
            |i| {
                std::hint::black_box(
                    blind.index(&IdentifierType::Email, &emails[(i % 1024) as usize]),
                );
            },
        ),
        measure("data key wrap (new person)", wrap_ops, "-", |_| {
            failures += u64::from(keyring.wrap_data_key(&dek, b"owner").is_err());
        }),
        measure("data key unwrap (person read)", wrap_ops, "-", |_| {
            failures += u64::from(keyring.unwrap_data_key(&wrapped, b"owner").is_err());
        }),
    ];
    anyhow::ensure!(
        failures == 0,
        "{failures} operations failed during the benchmark"
    );
    if args.json {
        let entries = rates_json(&rates);
        println!(
            "{{\"record_bytes\":{},\"results\":[{}]}}",
            args.record_bytes, entries
        );
    } else {
        println!(
            "cdp bench crypto: {} ops each, {}-byte records, one thread",
            args.records, args.record_bytes
        );
        println!(
            "{:<38} {:>14} {:>10}   performance.md reference",
            "operation", "ops/s", "ns/op"
        );
        for rate in &rates {
            println!(
                "{:<38} {:>14.0} {:>10.1}   {}",
                rate.name,
                rate.per_second(),
                rate.nanos(),
                rate.budget
            );
        }
    }
    Ok(())
}
