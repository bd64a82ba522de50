//! Logging set-up for the CLI (the function uses `lambda-support`). Never log a secret value:
//! the library logs names, ids, counts and error messages only.

use tracing_subscriber::EnvFilter;

fn filter(default: &str) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

const QUIET_SDK: &str =
    "aws_config=warn,aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_sdk_sts=warn";

/// CLI: compact progress lines on stderr; `-v` for debug.
pub fn init_cli(verbose: bool) {
    let default = if verbose {
        "debug,aws_smithy_runtime=info,hyper=info".to_string()
    } else {
        format!("info,{QUIET_SDK}")
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(&default))
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .compact()
        .try_init();
}
