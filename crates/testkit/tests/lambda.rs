//! The Runtime API host running a real Lambda binary (`echo-lambda`, built with this crate),
//! and the `lambda-invoke` command line around it.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use testkit::lambda::LambdaHost;

fn echo_lambda() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_echo-lambda"))
}

#[test]
fn runs_a_real_lambda_one_invocation_at_a_time() {
    let env = [("ECHO_GREETING".to_string(), "hello".to_string())];
    let host = LambdaHost::start(&echo_lambda(), &env);
    assert_eq!(host.function_name(), "echo-lambda");

    let event = json!({"n": 1, "nested": {"list": [1, "two", null]}});
    assert_eq!(host.invoke(&event).expect("first invocation"), event);

    let error = host
        .invoke(&json!({"fail": true, "message": "boom"}))
        .expect_err("the function fails when asked to");
    assert_eq!(error.error_type, "EchoFailure");
    assert_eq!(error.error_message, "boom");
    assert_eq!(error.to_string(), "EchoFailure: boom");

    assert_eq!(
        host.invoke(&json!({"n": 3})).expect("third invocation"),
        json!({"n": 3})
    );
    let init = host
        .init_duration()
        .expect("the function asked for an event");
    assert!(init.as_secs() < 30, "{init:?}");
    let rss = host.peak_rss_kib().expect("the process is running");
    assert!((100..1_000_000).contains(&rss), "peak RSS {rss} KiB");

    // Concurrent callers are served one at a time, each with its own answer.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let host = &host;
                scope.spawn(move || host.invoke(&json!({ "caller": i })))
            })
            .collect();
        for (i, handle) in handles.into_iter().enumerate() {
            let response = handle.join().expect("no panic").expect("invocation");
            assert_eq!(response, json!({ "caller": i }));
        }
    });

    let output = host.stop();
    assert!(output.contains("echo-lambda greeting=hello"), "{output}");
    assert_eq!(
        output.matches("echo-lambda request_id=").count(),
        7,
        "{output}"
    );
    assert!(
        output.contains("arn=arn:aws:lambda:us-east-1:123456789012:function:echo-lambda"),
        "{output}"
    );
}

#[test]
fn a_process_that_exits_is_a_runtime_exit_error() {
    // lambda_runtime panics at start-up on an invalid memory size. No backtrace: the panic
    // message must stay within the tail the error carries.
    let env = [
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_string(),
            "not-a-number".to_string(),
        ),
        ("RUST_BACKTRACE".to_string(), "0".to_string()),
    ];
    let host = LambdaHost::start(&echo_lambda(), &env);
    let error = host
        .invoke(&json!({}))
        .expect_err("the process exited without answering");
    assert_eq!(error.error_type, "Runtime.ExitError");
    assert!(error.error_message.contains("exit status"), "{error}");
    assert!(
        error
            .error_message
            .contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
        "the message carries the output tail: {error}"
    );
    assert!(host.exit_status().is_some_and(|status| !status.success()));
    assert_eq!(host.init_duration(), None);
}

#[test]
fn binary_builds_and_locates_a_workspace_binary() {
    let path = testkit::binary("echo-lambda");
    assert_eq!(
        path,
        testkit::target_dir().join("debug").join("echo-lambda")
    );
    assert!(path.is_file());
    // Cached: the second call does not build again and names the same file.
    assert_eq!(testkit::binary("echo-lambda"), path);
}

fn lambda_invoke(event: &Value, extra: &[&str]) -> (std::process::Output, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let event_path = dir.path().join("event.json");
    std::fs::write(&event_path, event.to_string()).expect("write the event");
    let output = Command::new(env!("CARGO_BIN_EXE_lambda-invoke"))
        .arg("--bin")
        .arg(echo_lambda())
        .arg("--event")
        .arg(&event_path)
        .args(extra)
        .output()
        .expect("run lambda-invoke");
    let body = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, body)
}

#[test]
fn lambda_invoke_prints_the_response_and_the_logs() {
    let event = json!({"hello": "world"});
    let (output, body) = lambda_invoke(&event, &["--env", "ECHO_GREETING=from-cli"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(body, event);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("echo-lambda greeting=from-cli"), "{stderr}");

    let (output, body) = lambda_invoke(&json!({"fail": true, "message": "nope"}), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        body,
        json!({"errorType": "EchoFailure", "errorMessage": "nope"})
    );
    assert!(Path::new(env!("CARGO_BIN_EXE_lambda-invoke")).is_file());
}

#[test]
fn output_read_right_after_an_answer_includes_what_the_invocation_printed() {
    let host = LambdaHost::start(&testkit::binary("echo-lambda"), &[]);
    for round in 1..=20 {
        host.invoke(&json!({ "round": round })).expect("invocation");
        let lines = host
            .output()
            .lines()
            .filter(|line| line.starts_with("echo-lambda request_id="))
            .count();
        assert_eq!(lines, round, "round {round}");
    }
}
