//! Configuration and the Lambda handler of the PostgreSQL rotation function. `main` only wires.

use lambda_runtime::{Diagnostic, LambdaEvent};
use postgres_target::PostgresTarget;
use rotation::policy::parse_bool;
use rotation::preflight::{preflight, PreflightOptions, Status};
use rotation::{
    ConfigError, CredentialTarget, PasswordPolicy, RotationEvent, Rotator, SecretStore, Strategy,
};
use secrets_manager::{RdsTopology, SecretsManagerStore};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// `ALTERNATING_SHARED_OWNER`: the shared-owner opt-in for alternating-users secrets that
    /// have no `shared_owner` field.
    pub shared_owner: bool,
    /// `AWS_LAMBDA_FUNCTION_NAME`: set by Lambda; the preflight compares it with the function
    /// attached to the secret.
    pub function_name: Option<String>,
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
            shared_owner: non_empty("ALTERNATING_SHARED_OWNER")
                .map(|v| parse_bool("ALTERNATING_SHARED_OWNER", &v))
                .transpose()?
                .unwrap_or(false),
            function_name: non_empty("AWS_LAMBDA_FUNCTION_NAME"),
        })
    }

    /// The preflight's view of where it runs.
    pub fn preflight_options(&self) -> PreflightOptions {
        PreflightOptions {
            function_name: self.function_name.clone(),
        }
    }
}

/// The production rotator: Secrets Manager (through `SECRETS_MANAGER_ENDPOINT` when set), RDS
/// look-ups and PostgreSQL, configured once. No network I/O happens here.
pub fn build_rotator(
    config: &Config,
    sdk: &aws_config::SdkConfig,
) -> Rotator<SecretsManagerStore, PostgresTarget> {
    let mut sm = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(endpoint) = &config.secrets_manager_endpoint {
        sm = sm.endpoint_url(endpoint);
    }
    let store = SecretsManagerStore::new(aws_sdk_secretsmanager::Client::from_conf(sm.build()));
    let rds = RdsTopology::new(aws_sdk_rds::Client::new(sdk));
    Rotator::new(
        store,
        PostgresTarget::new(config.ca_bundle.clone()),
        config.policy.clone(),
    )
    .with_strategy_override(config.strategy)
    .with_topology(Arc::new(rds))
    .with_shared_owner_default(config.shared_owner)
}

/// `{"preflight": true, "SecretId": "…"}`: the preflight event (anything else is a rotation event).
fn preflight_request(payload: &Value) -> Option<Result<String, HandlerError>> {
    let flag = payload.get("preflight")?;
    let on = match flag {
        Value::Bool(b) => *b,
        Value::String(s) => parse_bool("preflight", s).unwrap_or(false),
        _ => false,
    };
    if !on {
        return None;
    }
    Some(
        payload
            .get("SecretId")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| HandlerError {
                error_type: "InvalidEvent".into(),
                message: "the preflight event needs \"SecretId\": the secret's ARN or name".into(),
            }),
    )
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
    preflight: PreflightOptions,
}

impl<S: SecretStore, T: CredentialTarget> Handler<S, T> {
    /// `rotator` is an error when the configuration was invalid: every event then fails with it,
    /// so the problem shows in Secrets Manager's rotation status and the function's logs.
    pub fn new(rotator: Result<Rotator<S, T>, ConfigError>) -> Self {
        Handler {
            rotator,
            preflight: PreflightOptions::default(),
        }
    }

    pub fn with_preflight_options(mut self, options: PreflightOptions) -> Self {
        self.preflight = options;
        self
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
        let rotator = self.rotator.as_ref().map_err(|e| {
            tracing::error!(error = %e, "invalid configuration");
            HandlerError {
                error_type: "InvalidConfiguration".into(),
                message: e.to_string(),
            }
        })?;
        if let Some(request) = preflight_request(&event.payload) {
            let secret_id = request?;
            let report = preflight(rotator, &secret_id, &self.preflight).await;
            let failed: Vec<&str> = report
                .checks
                .iter()
                .filter(|c| c.status == Status::Fail)
                .map(|c| c.name)
                .collect();
            tracing::info!(
                secret_arn = %report.secret,
                step = "preflight",
                outcome = if report.passed() { "ok" } else { "failed" },
                failed_checks = %failed.join(","),
                "preflight finished"
            );
            return Ok(report.to_json());
        }
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
        assert!(!c.shared_owner);
        assert_eq!(c.function_name, None);
    }

    #[test]
    fn shared_owner_and_function_name() {
        let c = config(&[
            ("ALTERNATING_SHARED_OWNER", "yes"),
            ("AWS_LAMBDA_FUNCTION_NAME", "rotate"),
        ])
        .unwrap();
        assert!(c.shared_owner);
        assert_eq!(
            c.preflight_options().function_name.as_deref(),
            Some("rotate")
        );
        let err = config(&[("ALTERNATING_SHARED_OWNER", "sometimes")]).unwrap_err();
        assert_eq!(err.name, "ALTERNATING_SHARED_OWNER");
    }

    #[test]
    fn preflight_events_are_recognised() {
        assert!(preflight_request(&json!({"Step": "createSecret"})).is_none());
        assert!(preflight_request(&json!({"preflight": false, "SecretId": "x"})).is_none());
        assert_eq!(
            preflight_request(&json!({"preflight": true, "SecretId": "x"}))
                .unwrap()
                .unwrap(),
            "x"
        );
        assert_eq!(
            preflight_request(&json!({"preflight": "true", "SecretId": "x"}))
                .unwrap()
                .unwrap(),
            "x"
        );
        let sample: Value = serde_json::from_str(include_str!("../../../events/preflight.json"))
            .expect("events/preflight.json is JSON");
        assert!(preflight_request(&sample).unwrap().is_ok());
        let err = preflight_request(&json!({"preflight": true}))
            .unwrap()
            .unwrap_err();
        assert!(err.message.contains("SecretId"));
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
