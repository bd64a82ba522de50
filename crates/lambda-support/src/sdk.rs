//! The one description of an AWS SDK error, used by every adapter.
//!
//! A failure the service answered is its `code: message`. A request that never got an answer is
//! one line naming the cause and the fix: no credentials, no region, no connection, a timeout
//! ([`Cause`]). The whole chain of nested errors goes only to the log, at DEBUG.

use std::error::Error;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What the fix texts say about credentials (also for an emulator: the SDK signs every request,
/// so it needs some credentials even there).
pub const CREDENTIALS_FIX: &str = "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and \
    AWS_SECRET_ACCESS_KEY, or point AWS_ENDPOINT_URL at an emulator (with any test credentials)";

/// What an SDK error says: the service's error code, if it answered, and a text that is
/// `"code: message"` (AWS messages carry no secret values) or, when no answer came, one line
/// with the cause and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkErrorText {
    /// The service's error code (`ResourceNotFoundException`, `ThrottlingException`, …); `None`
    /// when the request never got a service answer (connection, credentials, timeout).
    pub code: Option<String>,
    /// The human-readable description, one line.
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

/// Why a request got no answer from the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The credentials chain found nothing (environment, profile, container, IMDS).
    NoCredentials,
    /// A credentials provider failed (a profile that does not parse, a role that cannot be
    /// assumed, IMDS refusing).
    CredentialsFailed,
    /// No region configured: the endpoint cannot be chosen.
    NoRegion,
    /// The request or a connection timed out.
    Timeout,
    /// The endpoint could not be reached (DNS, refused, TLS).
    Unreachable,
    /// Anything else (the compact chain says what).
    Other,
}

impl Cause {
    /// The cause of `err`, when no service answer came; `None` for a service error.
    pub fn of<E, R>(err: &SdkError<E, R>) -> Option<Cause>
    where
        E: ProvideErrorMetadata + Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        if err.code().is_some() {
            return None;
        }
        for link in chain(err) {
            if let Some(credentials) = link.downcast_ref::<CredentialsError>() {
                return Some(match credentials {
                    CredentialsError::CredentialsNotLoaded(_) => Cause::NoCredentials,
                    CredentialsError::ProviderTimedOut(_) => Cause::Timeout,
                    _ => Cause::CredentialsFailed,
                });
            }
            // The endpoint rules' error when no region is set (every AWS service's rule set).
            if link.to_string().contains("Missing Region") {
                return Some(Cause::NoRegion);
            }
        }
        Some(match err {
            SdkError::TimeoutError(_) => Cause::Timeout,
            SdkError::DispatchFailure(failure) if failure.is_timeout() => Cause::Timeout,
            SdkError::DispatchFailure(failure) if failure.is_io() => Cause::Unreachable,
            _ => Cause::Other,
        })
    }
}

/// The error and its sources, outermost first.
fn chain<'a>(err: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn Error + 'static)| (*e).source())
}

/// The `Display` texts of the chain joined with `": "`, each once (no `Debug` forms, so no raw
/// HTTP response, which for a read could hold a secret value).
fn compact_chain(err: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for link in chain(err) {
        let text = one_line(&link.to_string());
        if text.is_empty() || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// `text` with its lines joined by `"; "` (some SDK errors list their attempts one a line).
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The innermost link's `Display` text (the root cause).
fn root_cause(err: &(dyn Error + 'static)) -> String {
    chain(err)
        .map(|link| one_line(&link.to_string()))
        .filter(|text| !text.is_empty())
        .last()
        .unwrap_or_default()
}

/// Describes an SDK error (see [`SdkErrorText`]). When no service answer came, the whole chain
/// is logged at DEBUG (target `lambda_support::sdk`): the nested errors' texts, and the `Debug`
/// form only for failures that carry no HTTP response.
pub fn describe_sdk_error<E, R>(err: &SdkError<E, R>) -> SdkErrorText
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let message = match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => {
            log_chain(err);
            unanswered(err)
        }
    };
    SdkErrorText {
        code: err.code().map(str::to_string),
        message,
    }
}

fn log_chain<E, R>(err: &SdkError<E, R>)
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    match err {
        SdkError::ConstructionFailure(_)
        | SdkError::TimeoutError(_)
        | SdkError::DispatchFailure(_) => {
            tracing::debug!(chain = %DisplayErrorContext(err), "AWS SDK error in full");
        }
        _ => tracing::debug!(chain = %compact_chain(err), "AWS SDK error in full"),
    }
}

/// The one line for a request that got no service answer: cause, then fix.
fn unanswered<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match Cause::of(err) {
        Some(Cause::NoCredentials) => format!("no AWS credentials: {CREDENTIALS_FIX}"),
        Some(Cause::CredentialsFailed) => format!(
            "AWS credentials could not be loaded ({}): {CREDENTIALS_FIX}",
            root_cause(err)
        ),
        Some(Cause::NoRegion) => {
            "no AWS region: set AWS_REGION (or a region in the AWS_PROFILE's profile)".to_string()
        }
        Some(Cause::Timeout) => format!(
            "timed out ({}): check the network path to the service (from a VPC: a VPC endpoint \
             or a NAT gateway) or AWS_ENDPOINT_URL",
            compact_chain(err)
        ),
        Some(Cause::Unreachable) => format!(
            "could not reach the service ({}): check the network path (from a VPC: a VPC \
             endpoint or a NAT gateway) or AWS_ENDPOINT_URL",
            root_cause(err)
        ),
        Some(Cause::Other) | None => compact_chain(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::result::ConnectorError;
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
    fn other_transport_errors_give_their_chain_on_one_line() {
        let err: SdkError<ErrorMetadata, ()> =
            SdkError::construction_failure(std::io::Error::other("endpoint refused"));
        let text = describe_sdk_error(&err);
        assert_eq!(text.code, None);
        assert_eq!(text.code(), "");
        assert!(text.message.contains("endpoint refused"), "{text}");
        let err: SdkError<ErrorMetadata, ()> = SdkError::construction_failure(
            std::io::Error::other("no credentials. Attempted:\n  Environment: not set\n"),
        );
        let text = describe_sdk_error(&err);
        assert_eq!(
            text.message,
            "failed to construct request: no credentials. Attempted:; Environment: not set"
        );
        assert!(
            !text.message.contains("ConstructionFailure"),
            "no Debug form: {text}"
        );
    }

    fn dispatch(connector: ConnectorError) -> SdkError<ErrorMetadata, ()> {
        SdkError::dispatch_failure(connector)
    }

    #[test]
    fn missing_credentials_name_the_fix() {
        let err = dispatch(ConnectorError::other(
            Box::new(CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            )),
            None,
        ));
        assert_eq!(Cause::of(&err), Some(Cause::NoCredentials));
        let text = describe_sdk_error(&err);
        assert_eq!(
            text.message,
            format!("no AWS credentials: {CREDENTIALS_FIX}")
        );
        let failed = dispatch(ConnectorError::other(
            Box::new(CredentialsError::provider_error(std::io::Error::other(
                "the profile `dev` does not parse",
            ))),
            None,
        ));
        assert_eq!(Cause::of(&failed), Some(Cause::CredentialsFailed));
        let text = describe_sdk_error(&failed).message;
        assert!(
            text.starts_with(
                "AWS credentials could not be loaded (the profile `dev` does not parse)"
            ),
            "{text}"
        );
        assert!(text.ends_with(CREDENTIALS_FIX), "{text}");
    }

    #[test]
    fn timeouts_and_unreachable_endpoints_name_the_network() {
        let timeout = dispatch(ConnectorError::timeout(Box::new(std::io::Error::other(
            "connect timed out",
        ))));
        assert_eq!(Cause::of(&timeout), Some(Cause::Timeout));
        assert!(describe_sdk_error(&timeout)
            .message
            .starts_with("timed out ("));
        let refused = dispatch(ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ))));
        assert_eq!(Cause::of(&refused), Some(Cause::Unreachable));
        let text = describe_sdk_error(&refused).message;
        assert!(
            text.starts_with("could not reach the service (Connection refused (os error 111))"),
            "{text}"
        );
        assert!(text.contains("AWS_ENDPOINT_URL"), "{text}");
    }

    #[test]
    fn a_missing_region_names_aws_region() {
        let err: SdkError<ErrorMetadata, ()> = SdkError::construction_failure(
            std::io::Error::other("Invalid Configuration: Missing Region"),
        );
        assert_eq!(Cause::of(&err), Some(Cause::NoRegion));
        assert!(describe_sdk_error(&err).message.contains("set AWS_REGION"));
    }

    #[test]
    fn service_errors_have_no_cause() {
        let meta = ErrorMetadata::builder()
            .code("AccessDeniedException")
            .build();
        let err: SdkError<ErrorMetadata, ()> = SdkError::service_error(meta, ());
        assert_eq!(Cause::of(&err), None);
    }
}
