//! Test-only helpers shared by every integration test and the demo.
//!
//! - [`postgres::PgServer`]: a throwaway PostgreSQL server with SCRAM authentication and TLS
//!   (certificates from a generated test CA, see [`certs`]), from the system's binaries or, for
//!   any supported major, from the pinned binaries in the workspace's cache (see [`pgdist`]).
//! - [`moto::Moto`]: a fresh moto server (the AWS emulator) per call, with SDK clients and the
//!   environment a child process needs to reach it.
//! - [`lambda::LambdaHost`]: a local Lambda Runtime API that runs a compiled Lambda binary the way
//!   Lambda does.
//! - [`arm64`]: `make build`'s arm64 binaries run by user-mode emulation (qemu-user and the
//!   arm64 C library).
//! - [`latency::LatencyProxy`]: a TCP proxy adding a fixed delay per request (AWS-like latency
//!   for the benchmarks).
//! - [`quota_emulator::QuotaEmulator`]: Secrets Manager and Parameter Store reads at 100,000+
//!   secrets, with token buckets at the published per-account quotas (throttling in the wire
//!   shape), a latency per call and counters per operation (`make bench`'s scale part).
//! - [`faults`]: faults in dependencies: [`faults::AwsFaults`] (throttling, 500s, resets, slow
//!   answers in each protocol's wire shape, at a seeded rate, counted) in front of moto, and
//!   [`faults::DbSwitch`] (pass, refuse, hang, down) in front of PostgreSQL.
//! - [`secrets`]: a secret's labels and values by explicit version, for inspection.
//! - [`rotation`]: the rotation event of a step and "run the four steps" against a
//!   [`lambda::LambdaHost`].
//! - [`binary`]: builds a workspace binary once per process and returns its path.
//! - [`cleanup`]: what SIGINT / SIGTERM stop and remove in the demo and benchmark binaries
//!   (every server, child process and temporary folder started here).
//! - [`failpoints`]: the fail points in the sources, traced runs, the `FAILPOINTS` value that
//!   aborts at one hit.
//!
//! Everything here panics with a clear message on failure: it is meant for tests, where a panic
//! is the failure report.
//!
//! ```no_run
//! use testkit::{lambda::LambdaHost, moto::Moto, postgres::PgServer};
//!
//! # async fn example() {
//! let pg = PgServer::start();
//! pg.exec("CREATE ROLE app LOGIN PASSWORD 'initial-password'").await;
//! let moto = Moto::start();
//! let secrets = moto.secrets_client().await;
//! // ... create the secret, then play Secrets Manager's part:
//! let token = moto.begin_rotation(&secrets, "app/db").await;
//! let host = LambdaHost::start(&testkit::binary("rotate-postgres"), &moto.env());
//! let event = serde_json::json!({
//!     "Step": "createSecret", "SecretId": "app/db", "ClientRequestToken": token,
//! });
//! host.invoke(&event).expect("createSecret succeeds");
//! # }
//! ```

#![warn(missing_docs)]

pub mod arm64;
pub mod certs;
pub mod cfn;
pub mod cleanup;
pub mod failpoints;
pub mod faults;
pub mod lambda;
pub mod latency;
pub mod moto;
pub mod pgdist;
pub mod postgres;
pub mod quota_emulator;
pub mod rotation;
pub mod secrets;
pub mod step_functions;
pub mod vault;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The workspace root: two levels above this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("testkit's manifest directory is <workspace>/crates/testkit")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (relative paths are taken from the
/// workspace root, as cargo does when run there), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// `(profile, name)` pairs already built by [`binary`] / [`release_binary`] in this process. The
/// lock is held during the build so that parallel tests asking for the same binary build it once.
static BUILT: Mutex<BTreeSet<(bool, String)>> = Mutex::new(BTreeSet::new());

/// Path of the workspace binary `name` in the debug profile.
///
/// The first call for a name in this process runs `cargo build --quiet --bin <name>` in the
/// workspace root (cargo from the `CARGO` environment variable, else `cargo` on `PATH`), so tests
/// always run a binary built from the current sources. Panics with cargo's output if the build
/// fails.
pub fn binary(name: &str) -> PathBuf {
    build_binary(name, false)
}

/// Path of the workspace binary `name` in the release profile (what the benchmarks measure),
/// built the same way as [`binary`] with `--release`, and `-p` its package: the features of that
/// package alone, as `make build` ships it (not the test crate's fail points and in-memory
/// adapters, which a build at the workspace root unifies in).
pub fn release_binary(name: &str) -> PathBuf {
    build_binary(name, true)
}

/// The workspace package that has the binary `name` (`cargo metadata --no-deps`).
fn package_of_binary(cargo: &std::ffi::OsStr, name: &str) -> String {
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("could not run cargo metadata: {e}"));
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| {
            package["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| {
                    t["name"] == name
                        && t["kind"]
                            .as_array()
                            .is_some_and(|k| k.contains(&"bin".into()))
                })
        })
        .and_then(|package| package["name"].as_str())
        .unwrap_or_else(|| panic!("no workspace package has a binary named {name}"))
        .to_string()
}

fn build_binary(name: &str, release: bool) -> PathBuf {
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = target_dir()
        .join(if release { "release" } else { "debug" })
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let key = (release, name.to_string());
    if built.contains(&key) {
        return path;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--quiet", "--bin", name])
        .current_dir(workspace_root());
    if release {
        command
            .arg("--release")
            .args(["-p", &package_of_binary(&cargo, name)]);
    }
    // Drop the variables cargo sets for the running test or binary: build scripts that track
    // them (ring tracks CARGO_MANIFEST_DIR) would otherwise be rebuilt on every switch between
    // this nested build and a plain `cargo build` / `cargo test`.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if is_per_crate_cargo_var(&key) {
            command.env_remove(key.as_ref());
        }
    }
    let output = cleanup::output(&mut command, &format!("stop `cargo build --bin {name}`"))
        .unwrap_or_else(|e| panic!("could not run {cargo:?} build --bin {name}: {e}"));
    if !output.status.success() {
        panic!(
            "`cargo build --bin {name}` failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(
        path.is_file(),
        "`cargo build --bin {name}` succeeded but {} does not exist (is CARGO_TARGET_DIR consistent?)",
        path.display()
    );
    built.insert(key);
    path
}

/// Whether `key` is one of the variables cargo sets for a crate being compiled or run (as opposed
/// to the user's own cargo configuration, such as `CARGO_HOME` or `CARGO_TARGET_DIR`).
fn is_per_crate_cargo_var(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    EXACT.contains(&key) || key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_BIN_EXE_")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, read it, release it).
///
/// Another process may take it before the caller binds it: callers retry on collision.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("could not bind an ephemeral port on 127.0.0.1")
}

/// The last `max_chars` characters of `text` (on a character boundary), with a marker when cut.
pub fn tail(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    if count <= max_chars {
        return text.to_string();
    }
    let skip = count - max_chars;
    let start = text
        .char_indices()
        .nth(skip)
        .map(|(index, _)| index)
        .unwrap_or(text.len());
    format!("[... {skip} characters cut ...]\n{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml"))
            .expect("workspace Cargo.toml is readable");
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn tail_keeps_the_end_on_char_boundaries() {
        assert_eq!(tail("short", 10), "short");
        let cut = tail("ééééabc", 3);
        assert!(cut.ends_with("\nabc"), "{cut}");
        assert!(cut.contains("4 characters cut"), "{cut}");
    }

    #[test]
    fn per_crate_cargo_variables_are_recognised() {
        for key in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_BIN_EXE_echo-lambda",
            "OUT_DIR",
        ] {
            assert!(is_per_crate_cargo_var(key), "{key}");
        }
        for key in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_TERM_COLOR",
            "PATH",
        ] {
            assert!(!is_per_crate_cargo_var(key), "{key}");
        }
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port just reported free");
    }
}
