//! First contact: what a new user sees running the real binaries on a machine without AWS
//! credentials (`make invoke` is `lambda-invoke`; the CLI is `secrets-backup`). An AWS failure is
//! one line naming the call, the cause and the fix; the nested SDK chain appears only at DEBUG.
//!
//! The environment is emptied: no `AWS_*` credentials, `HOME` an empty directory (no `~/.aws`),
//! and `AWS_EC2_METADATA_DISABLED=true`, which makes the
//! SDK's IMDS providers (region and credentials) answer "not loaded" at once instead of waiting
//! for the metadata endpoint's timeouts.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `program args…` with only `PATH`, an empty home and `extra` in its environment.
fn run(program: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().expect("temporary home");
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(testkit::workspace_root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(extra.iter().copied());
    command.output().expect("run the binary")
}

/// `lambda-invoke --bin <function> --event <event>` (what `make invoke` runs).
fn invoke(function: &str, event: &str, extra: &[(&str, &str)]) -> (Value, String) {
    let function = testkit::binary(function);
    let out = run(
        &testkit::binary("lambda-invoke"),
        &["--bin", function.to_str().unwrap(), "--event", event],
        extra,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a function error: {stdout}{stderr}"
    );
    let answer: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (answer, stderr)
}

/// The fix for missing credentials, as every binary says it.
const FIX: [&str; 4] = [
    "no AWS credentials",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_ENDPOINT_URL",
];

/// What only the nested SDK chain contains (`DisplayErrorContext`'s text and `Debug` forms).
const NESTED: [&str; 4] = ["dispatch failure", "DispatchFailure", "ConnectorError", "{"];

fn assert_one_line(message: &str, call: &str) {
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(message.contains(call), "names the call {call}: {message}");
    for needle in FIX {
        assert!(message.contains(needle), "{needle}: {message}");
    }
    for needle in NESTED {
        assert!(
            !message.contains(needle),
            "no SDK chain ({needle}): {message}"
        );
    }
}

#[test]
fn make_invoke_without_credentials_says_what_to_set_in_one_line() {
    let (answer, log) = invoke("rotate-postgres", "events/rotation-create-secret.json", &[]);
    assert_eq!(answer["errorType"], "SecretsManagerError", "{answer}");
    let message = answer["errorMessage"].as_str().unwrap();
    assert_one_line(message, "Secrets Manager DescribeSecret failed");
    // The log (INFO): the step's one error line, no SDK warnings with their nested chain; besides
    // it only the step's metrics line (EMF, `_aws`), which names the error kind, not the chain.
    let (metrics, lines): (Vec<&str>, Vec<&str>) =
        log.lines().partition(|l| l.starts_with(r#"{"_aws":"#));
    assert_eq!(lines.len(), 1, "{log}");
    assert_eq!(metrics.len(), 1, "{log}");
    let metric: Value = serde_json::from_str(metrics[0]).unwrap();
    assert_eq!(metric["ErrorKind"], "SecretsManagerError");
    assert!(!metrics[0].contains("credentials"), "{}", metrics[0]);
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["level"], "ERROR");
    assert_eq!(line["error"], message);

    // At DEBUG, the whole chain is there for whoever asks.
    let (answer, log) = invoke(
        "rotate-postgres",
        "events/rotation-create-secret.json",
        &[("RUST_LOG", "debug")],
    );
    assert_one_line(answer["errorMessage"].as_str().unwrap(), "DescribeSecret");
    let detail = log
        .lines()
        .find(|l| l.contains("AWS SDK error in full"))
        .unwrap_or_else(|| panic!("no DEBUG line with the chain: {log}"));
    assert!(detail.contains("dispatch failure"), "{detail}");
    assert!(detail.contains("no credentials found in chain"), "{detail}");
}

#[test]
fn the_backup_function_and_cli_say_the_same() {
    let (answer, _) = invoke(
        "backup-lambda",
        "events/backup-scheduled-event.json",
        &[
            ("AWS_REGION", "eu-west-1"),
            ("BACKUP_BUCKET", "vault"),
            ("BACKUP_KMS_KEY_ID", "alias/vault"),
            ("BACKUP_SIGNING_KEY_ID", "alias/vault-signing"),
        ],
    );
    assert_one_line(
        answer["errorMessage"].as_str().unwrap(),
        "GetCallerIdentity",
    );

    let cli = testkit::binary("secrets-backup");
    let out = run(
        &cli,
        &[
            "--bucket",
            "vault",
            "--signing-key",
            "alias/vault-signing",
            "list",
        ],
        &[("AWS_REGION", "eu-west-1")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_one_line(stderr.trim_end(), "GetCallerIdentity");

    // Credentials but no region: the region is named instead.
    let out = run(
        &cli,
        &[
            "--bucket",
            "vault",
            "--signing-key",
            "alias/vault-signing",
            "list",
        ],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("GetCallerIdentity: no AWS region: set AWS_REGION"),
        "{stderr}"
    );
}
