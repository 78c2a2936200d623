//! Layer rules, checked from `cargo metadata` (architecture.md: arrows point down only).

use std::collections::BTreeMap;

/// Lower number = lower layer. A crate may depend only on crates of a lower layer.
const LAYERS: &[(&str, u32)] = &[
    ("cdp-core", 0),
    ("cdp-crypto", 1),
    ("cdp-store", 2),
    ("cdp-policy", 3),
    ("cdp-identity", 3),
    ("cdp-index", 3),
    ("cdp-engine", 4),
    ("cdp-server", 5),
    ("cdp", 6),
];

/// Third-party crates that exactly one of our crates may use.
const OWNERS: &[(&str, &str)] = &[
    ("ring", "cdp-crypto"),
    ("sled", "cdp-store"),
    ("axum", "cdp-server"),
    ("tantivy", "cdp-index"),
    ("utoipa", "cdp-server"),
    ("utoipa-axum", "cdp-server"),
    ("tower-http", "cdp-server"),
];

#[test]
fn layers_point_down_and_owned_dependencies_stay_in_their_crate() {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut problems = Vec::new();
    let packages = metadata["packages"].as_array().unwrap();
    assert!(packages.len() >= 5, "expected the workspace crates");
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let Some(&layer) = layers.get(name) else {
            problems.push(format!("{name} has no layer in tests/e2e/tidy.rs (add it to LAYERS and docs/ARCHITECTURE.md)"));
            continue;
        };
        for dependency in package["dependencies"].as_array().unwrap() {
            let target = dependency["name"].as_str().unwrap();
            if let Some(&target_layer) = layers.get(target)
                && target_layer >= layer
            {
                problems.push(format!(
                    "{name} (layer {layer}) depends on {target} (layer {target_layer})"
                ));
            }
            if let Some((_, owner)) = OWNERS.iter().find(|(crate_name, _)| *crate_name == target)
                && owner != &name
            {
                problems.push(format!("{name} depends on {target}; only {owner} may"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layer rules broken:\n{}",
        problems.join("\n")
    );
}

/// Invariant 3: the HTTP layer reads people only through the engine's purpose-bound,
/// audited `read_*` functions, never through the unaudited building blocks.
#[test]
fn the_server_reads_people_only_through_purpose_bound_functions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cdp-server/src");
    let mut stack = vec![dir];
    let mut offenders = Vec::new();
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for call in [".profile(", ".lookup(", ".events(", ".identity("] {
                if text.contains(&format!("engine{call}")) {
                    offenders.push(format!("{}: engine{call}", path.display()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unaudited reads in the server: {offenders:?}"
    );
}
