//! The rotation event Secrets Manager sends to the function.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `{"Step","SecretId","ClientRequestToken","RotationToken"?}` exactly as Secrets Manager sends it.
///
/// `Step` is kept as received so that an unknown step can be reported by name after the gate.
/// `Debug` shows `RotationToken` as `<redacted>`: it authorizes a write to the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationEvent {
    /// The step's wire name, e.g. `createSecret`.
    #[serde(rename = "Step")]
    pub step: String,
    /// The secret's ARN or name.
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    /// The version being rotated to.
    #[serde(rename = "ClientRequestToken")]
    pub client_request_token: String,
    /// Present when Secrets Manager rotates a secret for another service; passed on to
    /// `PutSecretValue` unchanged.
    #[serde(
        rename = "RotationToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub rotation_token: Option<String>,
}

impl fmt::Debug for RotationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotationEvent")
            .field("step", &self.step)
            .field("secret_id", &self.secret_id)
            .field("client_request_token", &self.client_request_token)
            .field(
                "rotation_token",
                &self.rotation_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl RotationEvent {
    /// The event Secrets Manager sends for `step` (a wire name, known or not) of the rotation
    /// to version `token`.
    pub fn new(step: &str, secret_id: &str, token: &str) -> Self {
        RotationEvent {
            step: step.to_string(),
            secret_id: secret_id.to_string(),
            client_request_token: token.to_string(),
            rotation_token: None,
        }
    }

    /// The event for one of the four steps.
    pub fn for_step(step: Step, secret_id: &str, token: &str) -> Self {
        Self::new(step.as_str(), secret_id, token)
    }
}

/// One of the four rotation steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Store a new AWSPENDING value.
    CreateSecret,
    /// Make the database accept AWSPENDING.
    SetSecret,
    /// Check AWSPENDING logs in.
    TestSecret,
    /// Move AWSCURRENT to AWSPENDING's version.
    FinishSecret,
}

impl Step {
    /// The four steps in the order Secrets Manager runs them.
    pub const ALL: [Step; 4] = [
        Step::CreateSecret,
        Step::SetSecret,
        Step::TestSecret,
        Step::FinishSecret,
    ];

    /// The name Secrets Manager uses on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::CreateSecret => "createSecret",
            Step::SetSecret => "setSecret",
            Step::TestSecret => "testSecret",
            Step::FinishSecret => "finishSecret",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name that failed to parse as a [`Step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStep(pub String);

impl FromStr for Step {
    type Err = UnknownStep;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| UnknownStep(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_their_wire_names() {
        for step in Step::ALL {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
        }
        assert_eq!(
            "deleteSecret".parse::<Step>(),
            Err(UnknownStep("deleteSecret".into()))
        );
        // Wire names are case-sensitive, as in Secrets Manager.
        assert!("CreateSecret".parse::<Step>().is_err());
    }

    #[test]
    fn rotation_token_is_optional_and_kept() {
        let without: RotationEvent = serde_json::from_str(
            r#"{"Step":"createSecret","SecretId":"arn:x","ClientRequestToken":"t"}"#,
        )
        .unwrap();
        assert_eq!(without.rotation_token, None);
        assert!(!serde_json::to_string(&without)
            .unwrap()
            .contains("RotationToken"));

        let with: RotationEvent = serde_json::from_str(
            r#"{"Step":"setSecret","SecretId":"arn:x","ClientRequestToken":"t","RotationToken":"rt"}"#,
        )
        .unwrap();
        assert_eq!(with.rotation_token.as_deref(), Some("rt"));
    }

    #[test]
    fn debug_output_redacts_the_rotation_token() {
        let mut event = RotationEvent::new("setSecret", "arn:x", "token-1");
        event.rotation_token = Some("rotation-token-value".into());
        let shown = format!("{event:?}");
        assert!(!shown.contains("rotation-token-value"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(
            shown.contains("token-1") && shown.contains("setSecret"),
            "{shown}"
        );
        let shown = format!("{:?}", RotationEvent::new("setSecret", "arn:x", "t"));
        assert!(shown.contains("rotation_token: None"), "{shown}");
    }

    #[test]
    fn missing_required_field_is_an_error_naming_it() {
        let err =
            serde_json::from_str::<RotationEvent>(r#"{"Step":"createSecret","SecretId":"x"}"#)
                .unwrap_err();
        assert!(err.to_string().contains("ClientRequestToken"), "{err}");
    }
}
