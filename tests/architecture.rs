//! The dependency rules of docs/ARCHITECTURE.md, checked over `cargo metadata`: what each crate
//! may link (normal and build dependencies, transitively; dev-dependencies are the tests' own).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// The resolved dependency graph: package name → names of the packages it links.
struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    workspace: BTreeSet<String>,
}

/// `cargo metadata` of the workspace.
fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(testkit::workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("metadata is JSON")
}

impl Graph {
    fn load() -> Graph {
        let metadata = metadata();
        let names: BTreeMap<&str, &str> = metadata["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let workspace = metadata["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(|id| names[id.as_str().unwrap()].to_string())
            .collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for node in metadata["resolve"]["nodes"].as_array().expect("resolve") {
            let from = names[node["id"].as_str().unwrap()].to_string();
            let linked = edges.entry(from).or_default();
            for dep in node["deps"].as_array().expect("deps") {
                let shipped = dep["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|k| k["kind"].as_str() != Some("dev"));
                if shipped {
                    linked.insert(names[dep["pkg"].as_str().unwrap()].to_string());
                }
            }
        }
        Graph { edges, workspace }
    }

    /// Every package `root` links, directly or not.
    fn closure(&self, root: &str) -> BTreeSet<String> {
        assert!(
            self.workspace.contains(root),
            "{root} is not in the workspace"
        );
        let mut seen = BTreeSet::new();
        let mut stack = vec![root.to_string()];
        while let Some(name) = stack.pop() {
            for dep in self.edges.get(&name).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen
    }

    /// Fails naming every package of `root`'s closure that `forbidden` matches.
    fn forbid(&self, root: &str, why: &str, forbidden: impl Fn(&str) -> bool) {
        let bad: Vec<String> = self
            .closure(root)
            .into_iter()
            .filter(|d| forbidden(d))
            .collect();
        assert!(bad.is_empty(), "{root} must not link {bad:?}: {why}");
    }
}

fn is_aws_sdk(name: &str) -> bool {
    name.starts_with("aws-sdk-") || name == "aws-config" || name.starts_with("aws-smithy-")
}

fn is_database_driver(name: &str) -> bool {
    name.starts_with("tokio-postgres") || name.starts_with("postgres-")
}

fn is_lambda_runtime(name: &str) -> bool {
    name.starts_with("lambda_runtime") || name == "aws_lambda_events" || name == "lambda-support"
}

#[test]
fn the_core_and_preflight_know_no_aws_no_database_no_lambda() {
    let graph = Graph::load();
    for core in ["rotation", "preflight"] {
        let why = "the protocol core and preflight are engine- and cloud-neutral";
        graph.forbid(core, why, is_aws_sdk);
        graph.forbid(core, why, is_database_driver);
        graph.forbid(core, why, is_lambda_runtime);
        graph.forbid(core, why, |d| {
            graph.workspace.contains(d) && d != "rotation"
        });
    }
}

#[test]
fn adapters_never_import_each_other() {
    let graph = Graph::load();
    let adapters = ["secrets-manager", "postgres-target", "rotation-signals"];
    for adapter in adapters {
        graph.forbid(adapter, "adapters meet only in the Lambda crate", |d| {
            adapters.contains(&d) || d == "preflight" || d == "rotate-postgres"
        });
    }
    graph.forbid(
        "postgres-target",
        "the database adapter knows nothing of AWS",
        is_aws_sdk,
    );
    graph.forbid(
        "secrets-manager",
        "the AWS adapter knows nothing of PostgreSQL",
        is_database_driver,
    );
    graph.forbid(
        "rotation-signals",
        "the signals adapter (EMF, EventBridge) knows nothing of PostgreSQL",
        is_database_driver,
    );
}

#[test]
fn the_backup_lambda_does_not_link_the_cli() {
    let graph = Graph::load();
    graph.forbid(
        "backup",
        "clap and anyhow belong to the CLI crate; the Lambda binary stays small",
        |d| d == "clap" || d == "anyhow" || d == "backup-cli",
    );
    graph.forbid("backup", "backup and rotation are separate products", |d| {
        matches!(
            d,
            "secrets-manager" | "postgres-target" | "preflight" | "rotate-postgres"
        )
    });
}

#[test]
fn the_fail_points_crate_links_nothing_of_the_workspace() {
    let graph = Graph::load();
    graph.forbid(
        "failpoints",
        "the adapters call it at their boundaries; it knows none of them (only the `fail` crate)",
        |d| graph.workspace.contains(d) || is_aws_sdk(d) || is_database_driver(d),
    );
}

#[test]
fn nothing_shipped_links_the_test_kit() {
    let graph = Graph::load();
    let shipped = [
        "rotation",
        "preflight",
        "secrets-manager",
        "postgres-target",
        "rotation-signals",
        "rotate-postgres",
        "lambda-support",
        "backup",
        "backup-cli",
        "failpoints",
    ];
    for name in shipped {
        graph.forbid(name, "the test kit is for tests only", |d| {
            d == "testkit" || d == "demo" || d == "e2e"
        });
    }
    // Every shipped crate is accounted for by a rule above.
    for name in &graph.workspace {
        assert!(
            shipped.contains(&name.as_str()) || ["testkit", "demo", "e2e"].contains(&name.as_str()),
            "workspace crate {name} is not covered by the dependency rules: add it here and to docs/ARCHITECTURE.md"
        );
    }
}

/// A dev-dependency may not ask a crate the workspace also links for a feature its normal
/// dependencies do not: `cargo test` would then build a second variant of that crate, and of
/// everything above it, beside the one `cargo build` made for the binaries the tests start
/// (tokio's `test-util` did so: every AWS SDK crate built twice in `make test`). Checked on the
/// declarations (`cargo metadata`'s `dependencies`, workspace inheritance applied).
#[test]
fn dev_dependencies_add_no_feature_to_what_the_binaries_link() {
    let metadata = metadata();
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    let packages: Vec<&Value> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| members.contains(p["id"].as_str().unwrap()))
        .collect();
    let member_names: BTreeSet<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    // crate → features asked for by normal/build declarations, and by dev declarations (with
    // the package that asks).
    let mut normal: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut dev: Vec<(&str, &str, BTreeSet<String>)> = Vec::new();
    for package in &packages {
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let name = dep["name"].as_str().unwrap();
            if member_names.contains(name) {
                continue;
            }
            let mut features: BTreeSet<String> = dep["features"]
                .as_array()
                .expect("features")
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
                .collect();
            if dep["uses_default_features"].as_bool() == Some(true) {
                features.insert("default".into());
            }
            if dep["kind"].as_str() == Some("dev") {
                dev.push((package["name"].as_str().unwrap(), name, features));
            } else {
                normal.entry(name).or_default().extend(features);
            }
        }
    }
    assert!(
        normal.contains_key("tokio"),
        "the check reads the declarations"
    );
    let mut added = Vec::new();
    for (package, name, features) in dev {
        let Some(linked) = normal.get(name) else {
            continue; // a crate only the tests use: built once, for them
        };
        let extra: Vec<&String> = features.difference(linked).collect();
        if !extra.is_empty() {
            added.push(format!("{package}'s dev-dependency {name}: {extra:?}"));
        }
    }
    assert!(
        added.is_empty(),
        "dev-dependencies ask for features the binaries' build does not have: {added:?}"
    );
}
