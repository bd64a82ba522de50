//! A tiny Lambda function for testing the Runtime API host: returns the event unchanged, or fails
//! with `EchoFailure` when the event has `"fail": true` (message from `"message"` if present).
//! Logs one line per invocation to stdout, and `ECHO_GREETING` (if set) to stderr at start-up.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
    let (payload, context) = event.into_parts();
    println!(
        "echo-lambda request_id={} arn={}",
        context.request_id, context.invoked_function_arn
    );
    if payload.get("fail") == Some(&Value::Bool(true)) {
        let message = payload
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("asked to fail");
        return Err(Diagnostic {
            error_type: "EchoFailure".to_string(),
            error_message: message.to_string(),
        });
    }
    Ok(payload)
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    if std::env::args()
        .skip(1)
        .any(|arg| arg == "--help" || arg == "-h")
    {
        println!(
            "echo-lambda: a test Lambda function that answers each event with itself.\n\n\
             Usage: echo-lambda        (serves events from AWS_LAMBDA_RUNTIME_API)\n       \
             echo-lambda --help (this text; starts nothing)"
        );
        return Ok(());
    }
    if let Ok(greeting) = std::env::var("ECHO_GREETING") {
        eprintln!("echo-lambda greeting={greeting}");
    }
    lambda_runtime::run(service_fn(handler)).await
}
