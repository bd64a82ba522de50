//! The one description of an AWS SDK error, used by every adapter.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What an SDK error says: the service's error code, if it answered, and a text that is
/// `"code: message"` (AWS messages carry no secret values) or the transport failure's full chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkErrorText {
    /// The service's error code (`ResourceNotFoundException`, `ThrottlingException`, …); `None`
    /// when the request never got a service answer (connection, credentials, timeout).
    pub code: Option<String>,
    /// The human-readable description.
    pub message: String,
}

impl SdkErrorText {
    /// The error code, or `""` when there is none.
    pub fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("")
    }
}

impl std::fmt::Display for SdkErrorText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Describes an SDK error (see [`SdkErrorText`]).
pub fn describe_sdk_error<E, R>(err: &SdkError<E, R>) -> SdkErrorText
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => DisplayErrorContext(err).to_string(),
    };
    SdkErrorText {
        code: err.code().map(str::to_string),
        message,
    }
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
            SdkErrorText {
                code: Some("ResourceNotFoundException".to_string()),
                message:
                    "ResourceNotFoundException: Secrets Manager can't find the specified secret."
                        .to_string()
            }
        );
        let bare = ErrorMetadata::builder().code("Throttling").build();
        let err: SdkError<ErrorMetadata, ()> = SdkError::service_error(bare, ());
        assert_eq!(describe_sdk_error(&err).message, "Throttling");
        assert_eq!(describe_sdk_error(&err).code(), "Throttling");
    }

    #[test]
    fn transport_errors_give_their_whole_chain() {
        let err: SdkError<ErrorMetadata, ()> =
            SdkError::construction_failure(std::io::Error::other("endpoint refused"));
        let text = describe_sdk_error(&err);
        assert_eq!(text.code, None);
        assert_eq!(text.code(), "");
        assert!(text.message.contains("endpoint refused"), "{text}");
    }
}
