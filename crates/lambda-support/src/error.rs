//! The one error type both Lambda handlers return.

use std::borrow::Cow;

/// A failed invocation: `error_type` becomes the Lambda `errorType` (the kind of failure, e.g.
/// `InvalidConfiguration`), `message` the `errorMessage`. The message names the secret, the step
/// and the field or variable at fault, never a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationError {
    /// The Lambda `errorType`.
    pub error_type: Cow<'static, str>,
    /// The Lambda `errorMessage`.
    pub message: String,
}

impl InvocationError {
    /// An error of kind `error_type`.
    pub fn new(error_type: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        InvocationError {
            error_type: error_type.into(),
            message: message.into(),
        }
    }

    /// The configuration could not be read: every event fails with this, naming the variable.
    pub fn invalid_configuration(message: impl Into<String>) -> Self {
        Self::new("InvalidConfiguration", message)
    }

    /// The event is not one this function understands.
    pub fn invalid_event(message: impl Into<String>) -> Self {
        Self::new("InvalidEvent", message)
    }
}

impl std::fmt::Display for InvocationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for InvocationError {}

impl From<InvocationError> for lambda_runtime::Diagnostic {
    fn from(e: InvocationError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type.into_owned(),
            error_message: e.message,
        }
    }
}

/// The JSON type of `value` as an error names it ("a string", "an array", …): the event and
/// field errors of both functions say what they got, never the value itself.
pub fn json_type(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn becomes_a_diagnostic_with_type_and_message() {
        let e = InvocationError::invalid_configuration("environment variable X is required");
        assert_eq!(
            e.to_string(),
            "InvalidConfiguration: environment variable X is required"
        );
        let d: lambda_runtime::Diagnostic = e.into();
        assert_eq!(d.error_type, "InvalidConfiguration");
        assert_eq!(d.error_message, "environment variable X is required");
        let d: lambda_runtime::Diagnostic =
            InvocationError::new(String::from("SnapshotIncomplete"), "2 secrets failed").into();
        assert_eq!(d.error_type, "SnapshotIncomplete");
    }
}
