//! First contact without an AWS account: `make invoke-local` (the `invoke-local` binary) runs the
//! rotation function's sample events from `events/`, unchanged, against the demo's stack
//! (PostgreSQL with TLS and moto, seeded to match the events' placeholders) through the real
//! `rotate-postgres` binary, prints each answer and what changed, never a value, and removes
//! everything it started (the signals: `tests/hygiene.rs`).
//!
//! - `the_sample_rotation_events_rotate_in_sequence`: preflight, then the four steps' events in
//!   order, in one command: every event succeeds, the labels move as Secrets Manager's rotation
//!   moves them, and at the end the new password logs in and the old one is refused.
//! - `one_step_event_alone_runs_the_earlier_steps_first`: `events/rotation-finish-secret.json`
//!   alone completes a rotation (createSecret, setSecret and testSecret as set-up).
//! - `a_backup_event_is_refused_before_anything_starts`: exit 2, naming `make demo`.

use std::process::Command;

/// The sample rotation events, in a rotation's order.
const STEPS: [&str; 4] = [
    "events/rotation-create-secret.json",
    "events/rotation-set-secret.json",
    "events/rotation-test-secret.json",
    "events/rotation-finish-secret.json",
];

/// The sample events' `ClientRequestToken`.
const TOKEN: &str = "00000000-0000-4000-8000-000000000001";

/// Runs `invoke-local` with `events` (paths from the workspace root); its exit code, stdout and
/// stderr.
fn invoke_local(events: &[&str]) -> (Option<i32>, String, String) {
    let binary = testkit::binary("invoke-local");
    testkit::binary("rotate-postgres");
    let mut command = Command::new(binary);
    for event in events {
        command.arg("--event").arg(event);
    }
    // No AWS account: nothing of the caller's AWS environment may matter.
    for (key, _) in std::env::vars() {
        if key.starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    let output = command
        .current_dir(testkit::workspace_root())
        .env("HOME", testkit::workspace_root().join("target"))
        .output()
        .expect("run invoke-local");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The lines of `stdout` under the `== <event>` header of `event`.
fn section<'a>(stdout: &'a str, event: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .skip_while(|line| *line != format!("== {event}"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .collect()
}

fn has(lines: &[&str], text: &str) -> bool {
    lines.iter().any(|line| line.contains(text))
}

#[test]
fn the_sample_rotation_events_rotate_in_sequence() {
    let mut events = vec!["events/preflight.json"];
    events.extend(STEPS);
    let (code, stdout, stderr) = invoke_local(&events);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    println!("{stdout}");

    let preflight = section(&stdout, "events/preflight.json");
    assert!(has(&preflight, "answer:"), "{stdout}");
    assert!(has(&preflight, "changed:  nothing"), "{stdout}");

    let create = section(&stdout, STEPS[0]);
    assert!(
        has(
            &create,
            &format!("set-up:   rotation begun with ClientRequestToken {TOKEN}")
        ),
        "{stdout}"
    );
    assert!(has(&create, "SecretId: arn:aws:secretsmanager:us-east-1:123456789012:secret:example/postgres/app-AbCdEf is the seeded arn:aws:secretsmanager:us-east-1:123456789012:secret:example/postgres/app-"), "{stdout}");
    assert!(has(&create, "\"outcome\":\"pending_created\""), "{stdout}");
    assert!(
        has(
            &create,
            "AWSPENDING password as \"app\": no value -> refused"
        ),
        "{stdout}"
    );

    let set = section(&stdout, STEPS[1]);
    assert!(
        !has(&set, "set-up:"),
        "the sequence needs no set-up: {stdout}"
    );
    assert!(
        has(&set, "AWSPENDING password as \"app\": refused -> logs in"),
        "{stdout}"
    );
    assert!(
        has(&set, "AWSCURRENT password as \"app\": logs in -> refused"),
        "{stdout}"
    );

    let test = section(&stdout, STEPS[2]);
    assert!(has(&test, "answer:"), "{stdout}");
    assert!(has(&test, "changed:  nothing"), "{stdout}");

    let finish = section(&stdout, STEPS[3]);
    assert!(
        has(
            &finish,
            &format!("version {TOKEN}: AWSPENDING -> AWSCURRENT")
        ),
        "{stdout}"
    );
    assert!(has(&finish, "-> AWSPREVIOUS"), "{stdout}");
    assert!(
        has(
            &finish,
            "AWSCURRENT password as \"app\": refused -> logs in"
        ),
        "{stdout}"
    );
    assert!(
        has(
            &finish,
            "AWSPREVIOUS password as \"app\": no value -> refused"
        ),
        "{stdout}"
    );

    assert!(
        stdout.contains("Done: 5 event(s); a password in the function's output or answers: no."),
        "{stdout}"
    );
    // The function's own log, on stderr: one line per step.
    assert_eq!(
        stderr.matches("rotation step finished").count(),
        4,
        "{stderr}"
    );
}

#[test]
fn one_step_event_alone_runs_the_earlier_steps_first() {
    let (code, stdout, stderr) = invoke_local(&[STEPS[3]]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let finish = section(&stdout, STEPS[3]);
    for earlier in ["createSecret", "setSecret", "testSecret"] {
        assert!(
            has(&finish, &format!("set-up:   {earlier} first:")),
            "{stdout}"
        );
    }
    assert!(
        has(
            &finish,
            &format!("version {TOKEN}: AWSPENDING -> AWSCURRENT")
        ),
        "{stdout}"
    );
    assert!(
        has(
            &finish,
            "AWSCURRENT password as \"app\": refused -> logs in"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("Done: 1 event(s)"), "{stdout}");
}

#[test]
fn a_backup_event_is_refused_before_anything_starts() {
    let (code, stdout, stderr) = invoke_local(&["events/backup-verify.json"]);
    assert_eq!(code, Some(2), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.is_empty(), "nothing started: {stdout}");
    assert!(
        stderr.contains("events/backup-verify.json is not an event of the rotation function")
            && stderr.contains("`make demo`"),
        "{stderr}"
    );
}
