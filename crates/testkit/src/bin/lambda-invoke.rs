//! Docker-free local invoke: runs a workspace Lambda binary behind a local Runtime API host,
//! sends it one event, prints the JSON response (or the error) on stdout and the function's log
//! output on stderr. Exit status 0 on success, 1 on a function error.
//!
//! ```text
//! lambda-invoke --bin rotate-postgres --event events/create-secret.json --env LOG_LEVEL=debug
//! ```
//!
//! The current environment (AWS_* and the rest) is passed through to the function; `--env`
//! entries override it.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde_json::{json, Value};
use testkit::lambda::LambdaHost;

/// Run a Lambda binary locally behind a Runtime API host and invoke it once.
#[derive(Parser)]
#[command(name = "lambda-invoke")]
struct Args {
    /// Workspace binary name (built with `cargo build --bin`), or a path to a Lambda executable.
    #[arg(long)]
    bin: String,
    /// Event JSON file; `-` reads standard input.
    #[arg(long)]
    event: PathBuf,
    /// Extra environment variable for the function (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    env: Vec<(String, String)>,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

fn read_event(path: &PathBuf) -> Result<Value, String> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("read the event from standard input: {e}"))?;
        text
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Ctrl-C or SIGTERM: the function process and its hosts file go too.
    testkit::cleanup::exit_on_signals();
    let event = match read_event(&args.event) {
        Ok(event) => event,
        Err(message) => {
            eprintln!("lambda-invoke: {message}");
            return ExitCode::from(2);
        }
    };
    let binary = if args.bin.contains('/') {
        PathBuf::from(&args.bin)
    } else {
        testkit::binary(&args.bin)
    };
    if !binary.is_file() {
        eprintln!("lambda-invoke: {} is not a file", binary.display());
        return ExitCode::from(2);
    }

    // Pass the environment through, except what the host itself must set.
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(key, _)| key != "AWS_LAMBDA_RUNTIME_API")
        .collect();
    env.extend(args.env);

    let host = LambdaHost::start(&binary, &env);
    let result = host.invoke(&event);
    let output = host.stop();
    eprint!("{output}");
    let (body, code) = match result {
        Ok(response) => (response, ExitCode::SUCCESS),
        Err(error) => (
            json!({"errorType": error.error_type, "errorMessage": error.error_message}),
            ExitCode::from(1),
        ),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&body).expect("a JSON value serializes")
    );
    code
}
