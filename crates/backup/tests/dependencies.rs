//! The dependency rule of this crate, checked over `cargo metadata`: the backup library and its
//! Lambda binary (`backup-lambda`) link neither clap nor anyhow; those belong to the CLI crate
//! (`crates/backup-cli`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Names of the packages `backup` links (its normal dependencies, transitively).
fn linked_packages() -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let start = *names
        .iter()
        .find(|(_, name)| **name == "backup")
        .expect("package backup is in the workspace")
        .0;
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                todo.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    seen.iter().map(|id| names[id].to_string()).collect()
}

#[test]
fn the_library_and_the_lambda_binary_link_neither_clap_nor_anyhow() {
    let linked = linked_packages();
    assert!(
        linked.contains("aws-sdk-s3"),
        "the walk found the SDK: {linked:?}"
    );
    assert!(linked.contains("rotation"), "{linked:?}");
    for forbidden in ["clap", "clap_builder", "anyhow", "backup-cli"] {
        assert!(
            !linked.contains(forbidden),
            "backup links {forbidden}: keep it in crates/backup-cli"
        );
    }
}
