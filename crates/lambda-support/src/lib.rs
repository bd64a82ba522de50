//! What the workspace's AWS-facing crates share: JSON logging set-up for the Lambda binaries and
//! the text of AWS SDK errors.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};

/// An SDK error as `(code, text)`: the service's error code and `"code: message"` (AWS messages
/// carry no secret values), or the transport failure's full description.
pub fn describe_sdk_error<E, R>(err: &SdkError<E, R>) -> (Option<String>, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(err).to_string(),
    };
    (err.code().map(str::to_string), message)
}

/// One JSON object per log line on stdout (CloudWatch Logs reads it as structured data).
///
/// Level: `AWS_LAMBDA_LOG_LEVEL` (Lambda's advanced logging controls), else `RUST_LOG`, else INFO.
/// Event fields are flattened into the top-level object; no ANSI colours.
///
/// The runtime's own copy of every handler error (`lambda_runtime::layers::panic`, the error's
/// `Debug` form) is switched off: each function logs its failures itself as one structured line,
/// and a panic still reaches stderr through the panic hook.
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
                .parse_lossy(format!("{level},lambda_runtime::layers::panic=off")),
        )
        .with_writer(std::io::stdout)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::error::ErrorMetadata;

    #[test]
    fn service_errors_give_code_and_message() {
        let meta = ErrorMetadata::builder()
            .code("ResourceNotFoundException")
            .message("Secrets Manager can't find the specified secret.")
            .build();
        let err: SdkError<ErrorMetadata, ()> = SdkError::service_error(meta, ());
        assert_eq!(
            describe_sdk_error(&err),
            (
                Some("ResourceNotFoundException".to_string()),
                "ResourceNotFoundException: Secrets Manager can't find the specified secret."
                    .to_string()
            )
        );
        let bare = ErrorMetadata::builder().code("Throttling").build();
        let err: SdkError<ErrorMetadata, ()> = SdkError::service_error(bare, ());
        assert_eq!(describe_sdk_error(&err).1, "Throttling");
    }

    #[test]
    fn transport_errors_give_their_whole_chain() {
        let err: SdkError<ErrorMetadata, ()> =
            SdkError::construction_failure(std::io::Error::other("endpoint refused"));
        let (code, text) = describe_sdk_error(&err);
        assert_eq!(code, None);
        assert!(text.contains("endpoint refused"), "{text}");
    }
}
