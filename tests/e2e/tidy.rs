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
    ("cdp-destinations", 3),
    ("cdp-engine", 4),
    ("cdp-server", 5),
    ("cdp", 6),
];

/// Third-party crates that exactly one of our crates may use.
const OWNERS: &[(&str, &str)] = &[
    ("ring", "cdp-crypto"),
    ("sled", "cdp-store"),
    ("fjall", "cdp-store"),
    ("axum", "cdp-server"),
    ("tantivy", "cdp-index"),
    ("utoipa", "cdp-server"),
    ("utoipa-axum", "cdp-server"),
    ("tower-http", "cdp-server"),
    ("russh", "cdp-destinations"),
    ("russh-sftp", "cdp-destinations"),
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
            // A crate's dev-dependency on itself only turns on its own test features.
            if target == name && dependency["kind"].as_str() == Some("dev") {
                continue;
            }
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
            for call in [
                ".profile(",
                ".lookup(",
                ".events(",
                ".identity(",
                ".unaudited_",
            ] {
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

/// The engine's files import each other in one direction only: a file that needs another's
/// code never is needed by it, so each room can be read (and moved) on its own. `lib.rs` (the
/// `Engine` handle everyone names) is the hub and is left out; edges are `crate::` and `super::`
/// paths, in `use` trees and inline.
#[test]
fn engine_files_import_each_other_without_circles() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cdp-engine/src");
    let cycles = import_cycles(&root);
    assert!(
        cycles.is_empty(),
        "files of cdp-engine import each other in a circle:\n{}",
        cycles.join("\n")
    );
}

/// Module path (`write::ingest`) of every file under `root`.
fn module_files(root: &std::path::Path) -> BTreeMap<Vec<String>, std::path::PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|last| last == "mod" || last == "lib")
            {
                module.pop();
            }
            out.insert(module, path);
        }
    }
    out
}

/// Every path a source text names through `crate::` or `super::`: `use` trees expanded
/// (`use crate::{a::X, b::{c, d}}` names `a::X`, `b::c`, `b::d`), inline paths as written.
/// Test modules at the end of a file are left out (their `super` is the file itself).
fn named_paths(source: &str) -> Vec<String> {
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    let mut paths = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("use ") {
        let before_ok = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        let end = rest[at..].find(';').map_or(rest.len(), |e| at + e);
        if before_ok {
            let tree: String = rest[at + 4..end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            expand_use_tree("", &tree, &mut paths);
        }
        rest = &rest[end.min(rest.len())..];
        if rest.is_empty() {
            break;
        }
        rest = &rest[1..];
    }
    // Inline paths (`crate::records::hex::encode(...)`).
    let bytes = source.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(found) = source[from..].find(start) {
            let at = from + found;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let end = source[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(source.len(), |e| at + e);
            paths.push(source[at..end].trim_end_matches(':').to_string());
        }
    }
    paths
        .into_iter()
        .filter(|p| p.starts_with("crate::") || p.starts_with("super::"))
        .collect()
}

fn expand_use_tree(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let Some(open) = tree.find('{') else {
        out.push(format!("{prefix}{tree}"));
        return;
    };
    let head = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand_use_tree(&format!("{prefix}{head}"), &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        expand_use_tree(&format!("{prefix}{head}"), &inner[start..], out);
    }
}

/// The circles among the files under `root` (each as `a -> b -> a`).
fn import_cycles(root: &std::path::Path) -> Vec<String> {
    let files = module_files(root);
    let mut edges: BTreeMap<Vec<String>, std::collections::BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, path) in &files {
        if module.is_empty() {
            continue;
        }
        let source = std::fs::read_to_string(path).unwrap();
        for named in named_paths(&source) {
            let mut parts: Vec<&str> = named.split("::").collect();
            let mut base: Vec<String> = Vec::new();
            if parts[0] == "crate" {
                parts.remove(0);
            } else {
                // `super` of `a/b.rs` is `a`; of `a/b/mod.rs` also `a`.
                base = module.clone();
                while parts.first() == Some(&"super") {
                    parts.remove(0);
                    base.pop();
                }
            }
            let mut target = base.clone();
            let mut best: Option<Vec<String>> = None;
            for part in parts {
                target.push(part.to_string());
                if files.contains_key(&target) {
                    best = Some(target.clone());
                }
            }
            let target = best.unwrap_or(base);
            if !target.is_empty() && &target != module {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    // Depth-first search for back edges.
    let mut cycles = Vec::new();
    let mut state: BTreeMap<Vec<String>, u8> = BTreeMap::new();
    let mut stack: Vec<Vec<String>> = Vec::new();
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, std::collections::BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                0 => visit(next, edges, state, stack, cycles),
                1 => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let names: Vec<String> = stack[from..]
                        .iter()
                        .chain(std::iter::once(next))
                        .map(|m| m.join("::"))
                        .collect();
                    cycles.push(names.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
    }
    for node in files.keys() {
        if !node.is_empty() && state.get(node).copied().unwrap_or(0) == 0 {
            visit(node, &edges, &mut state, &mut stack, &mut cycles);
        }
    }
    cycles
}

/// Every test the invariants table of docs/ARCHITECTURE.md names exists (`file::name`, or
/// `file::prefix_*` for a family), so the table cannot cite a test that was renamed away.
#[test]
fn the_invariants_table_names_tests_that_exist() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let architecture = std::fs::read_to_string(repo.join("docs/ARCHITECTURE.md")).unwrap();
    let table = architecture
        .split("## Invariants and where they are tested")
        .nth(1)
        .expect("docs/ARCHITECTURE.md has its invariants table");
    let mut sources = String::new();
    let mut stack = vec![repo.join("crates"), repo.join("tests")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut missing = Vec::new();
    for row in table.lines().filter(|line| line.starts_with('|')) {
        let tested_in = row.rsplit(" | ").next().unwrap_or_default();
        for cited in tested_in.split('`').skip(1).step_by(2) {
            let Some((_, name)) = cited.rsplit_once("::") else {
                continue;
            };
            if name == "*" {
                continue;
            }
            let found = match name.strip_suffix('*') {
                Some(prefix) => sources.contains(&format!("fn {prefix}")),
                None => {
                    sources.contains(&format!("fn {name}("))
                        || sources.contains(&format!("fn {name}<"))
                }
            };
            if !found {
                missing.push(cited.to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names tests that do not exist: {missing:?}"
    );
}
