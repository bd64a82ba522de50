//! JSON logging for the Lambda binaries.

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// One JSON object per log line on stdout (CloudWatch Logs reads it as structured data).
///
/// Level: `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls), else `RUST_LOG`, else INFO.
/// Event fields are flattened into the top-level object; no ANSI colours.
///
/// The runtime's own copy of every handler error (`lambda_runtime::layers::panic`, the error's
/// `Debug` form) is switched off: each function logs its failures itself as one structured line,
/// and a panic still reaches stderr through the panic hook.
///
/// Below DEBUG, the SDK's configuration loader (`aws_config`) logs errors only: its warnings (a
/// credentials provider or IMDS failing, each with the whole nested `Debug` form) say again, at
/// length, what the failed call's one-line error already says (`crate::sdk`).
pub fn init_json_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::builder()
                .with_default_directive(level.into())
                // The level must be a directive too: with any directive given, EnvFilter drops
                // the default one, and nothing at all would be logged.
                .parse_lossy(directives(level)),
        )
        .with_writer(std::io::stdout)
        .init();
}

/// The filter directives for `level`.
fn directives(level: LevelFilter) -> String {
    let mut directives = format!("{level},lambda_runtime::layers::panic=off");
    if level < LevelFilter::DEBUG {
        directives.push_str(",aws_config=error");
    }
    directives
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_loader_warns_only_at_debug() {
        assert_eq!(
            directives(LevelFilter::INFO),
            "info,lambda_runtime::layers::panic=off,aws_config=error"
        );
        assert_eq!(
            directives(LevelFilter::DEBUG),
            "debug,lambda_runtime::layers::panic=off"
        );
    }
}
