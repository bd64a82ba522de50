//! Configuration and the Lambda handler of the PostgreSQL rotation function. `main` only wires.

use lambda_runtime::{Diagnostic, LambdaEvent};
use rotation::{
    ConfigError, CredentialTarget, PasswordPolicy, RotationEvent, Rotator, SecretStore, Strategy,
};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Everything read from the environment, once, at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub policy: PasswordPolicy,
    /// `ROTATION_STRATEGY`: forces one strategy for every secret.
    pub strategy: Option<Strategy>,
    /// `DB_CA_BUNDLE`: extra trusted roots (PEM).
    pub ca_bundle: Option<PathBuf>,
    /// `SECRETS_MANAGER_ENDPOINT`: as in AWS's templates (e.g. a VPC endpoint).
    pub secrets_manager_endpoint: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let non_empty = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        Ok(Config {
            policy: PasswordPolicy::from_lookup(&lookup)?,
            strategy: non_empty("ROTATION_STRATEGY")
                .map(|v| Strategy::parse_env(&v))
                .transpose()?,
            ca_bundle: non_empty("DB_CA_BUNDLE").map(PathBuf::from),
            secrets_manager_endpoint: non_empty("SECRETS_MANAGER_ENDPOINT"),
        })
    }
}

/// Error returned to Lambda: `errorType` is the kind of failure, `errorMessage` names the secret,
/// the step and the field at fault, never a value.
#[derive(Debug)]
pub struct HandlerError {
    pub error_type: String,
    pub message: String,
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Diagnostic {
        Diagnostic {
            error_type: e.error_type,
            error_message: e.message,
        }
    }
}

/// The function: a rotation event in, `{"step","outcome"}` out.
pub struct Handler<S, T> {
    rotator: Result<Rotator<S, T>, ConfigError>,
}

impl<S: SecretStore, T: CredentialTarget> Handler<S, T> {
    /// `rotator` is an error when the configuration was invalid: every event then fails with it,
    /// so the problem shows in Secrets Manager's rotation status and the function's logs.
    pub fn new(rotator: Result<Rotator<S, T>, ConfigError>) -> Self {
        Handler { rotator }
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
        let rotator = self.rotator.as_ref().map_err(|e| {
            tracing::error!(error = %e, "invalid configuration");
            HandlerError {
                error_type: "InvalidConfiguration".into(),
                message: e.to_string(),
            }
        })?;
        let event: RotationEvent =
            serde_json::from_value(event.payload).map_err(|e| HandlerError {
                error_type: "InvalidEvent".into(),
                message: format!(
                    "the event is not a Secrets Manager rotation event (Step, SecretId, ClientRequestToken): {e}"
                ),
            })?;
        let outcome = rotator.handle(&event).await.map_err(|e| HandlerError {
            error_type: e.error_type().to_string(),
            message: e.to_string(),
        })?;
        Ok(json!({ "step": event.step, "outcome": outcome.as_str() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|k| map.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.policy, PasswordPolicy::default());
        assert_eq!(c.strategy, None);
        assert_eq!(c.ca_bundle, None);
        assert_eq!(c.secrets_manager_endpoint, None);
    }

    #[test]
    fn reads_every_variable() {
        let c = config(&[
            ("ROTATION_STRATEGY", "alternating"),
            ("DB_CA_BUNDLE", "rds-global-bundle.pem"),
            ("SECRETS_MANAGER_ENDPOINT", "https://vpce.example"),
            ("PASSWORD_LENGTH", "40"),
        ])
        .unwrap();
        assert_eq!(c.strategy, Some(Strategy::AlternatingUsers));
        assert_eq!(c.ca_bundle, Some(PathBuf::from("rds-global-bundle.pem")));
        assert_eq!(
            c.secrets_manager_endpoint.as_deref(),
            Some("https://vpce.example")
        );
        assert_eq!(c.policy.length, 40);
        assert_eq!(
            config(&[("ROTATION_STRATEGY", "single")]).unwrap().strategy,
            Some(Strategy::SingleUser)
        );
    }

    #[test]
    fn bad_strategy_names_the_variable() {
        let err = config(&[("ROTATION_STRATEGY", "both")]).unwrap_err();
        assert_eq!(err.name, "ROTATION_STRATEGY");
    }
}
