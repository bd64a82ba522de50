//! The Lambda handler: a rotation event in, `{"step","outcome"}` out; the preflight event
//! `{"preflight": true, "SecretId": "…"}` in, the preflight report out.

use lambda_runtime::LambdaEvent;
use lambda_support::env::{parse_bool, ConfigError};
use lambda_support::InvocationError;
use preflight::{preflight, Ports, PreflightOptions, Report};
use rotation::{
    CredentialTarget, DbTopology, ReplicaWait, RotationEvent, RotationObserver, RotationSettings,
    Rotator, SecretStore, Sleeper,
};
use serde_json::{json, Value};
use std::sync::Arc;

/// The ports and settings, shared by the rotator and the preflight; built once per process.
pub struct Service<S, T> {
    store: Arc<S>,
    target: Arc<T>,
    topology: Arc<dyn DbTopology>,
    rotator: Rotator<Arc<S>, Arc<T>>,
    preflight: PreflightOptions,
}

impl<S: SecretStore, T: CredentialTarget> Service<S, T> {
    /// The rotator over `store`, `target` and `topology` with `settings`, and the preflight
    /// over the same.
    pub fn new(
        store: S,
        target: T,
        topology: Arc<dyn DbTopology>,
        settings: RotationSettings,
        preflight: PreflightOptions,
    ) -> Self {
        let store = Arc::new(store);
        let target = Arc::new(target);
        let rotator = Rotator::new(store.clone(), target.clone(), settings.policy.clone())
            .with_settings(settings)
            .with_topology(topology.clone());
        Service {
            store,
            target,
            topology,
            rotator,
            preflight,
        }
    }

    /// testSecret waits up to `wait` for a standby to replay the password change, sleeping with
    /// `sleeper` (the default: no wait); the preflight reports the same wait.
    pub fn with_replica_wait(mut self, wait: ReplicaWait, sleeper: Arc<dyn Sleeper>) -> Self {
        self.rotator = self.rotator.with_replica_wait(wait, sleeper);
        self.preflight.replica_wait = self.rotator.replica_wait();
        self
    }

    /// Tells `observer` about every rotation step (e.g. a notification adapter); the default
    /// observer does nothing.
    pub fn with_observer(mut self, observer: Arc<dyn RotationObserver>) -> Self {
        self.rotator = self.rotator.with_observer(observer);
        self
    }

    /// The rotator.
    pub fn rotator(&self) -> &Rotator<Arc<S>, Arc<T>> {
        &self.rotator
    }

    /// Runs the preflight for `secret_id` with the rotator's ports and settings.
    pub async fn preflight(&self, secret_id: &str) -> Report {
        let ports = Ports {
            store: self.store.as_ref(),
            target: self.target.as_ref(),
            topology: self.topology.as_ref(),
            settings: self.rotator.settings(),
        };
        preflight(&ports, secret_id, &self.preflight).await
    }
}

/// `{"preflight": true, "SecretId": "…"}`: the preflight event (anything else is a rotation event).
pub(crate) fn preflight_request(payload: &Value) -> Option<Result<String, InvocationError>> {
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
            .ok_or_else(|| {
                InvocationError::invalid_event(
                    "the preflight event needs \"SecretId\": the secret's ARN or name",
                )
            }),
    )
}

/// The fields of a rotation event: each must be a non-empty string (`RotationToken`, optional,
/// a string when present).
const EVENT_FIELDS: [&str; 3] = ["Step", "SecretId", "ClientRequestToken"];

/// Reads a rotation event, its shape checked first ([`check_rotation_event`]).
pub(crate) fn rotation_event(payload: Value) -> Result<RotationEvent, InvocationError> {
    check_rotation_event(&payload).map_err(InvocationError::invalid_event)?;
    serde_json::from_value(payload).map_err(|e| {
        InvocationError::invalid_event(format!(
            "the event is not a Secrets Manager rotation event (Step, SecretId, ClientRequestToken): {e}"
        ))
    })
}

/// Checks the shape of a rotation event before it is read, so that the error names the field at
/// fault (and its JSON type, never its value).
fn check_rotation_event(payload: &Value) -> Result<(), String> {
    const EXPECTED: &str = "a Secrets Manager rotation event: a JSON object with the strings \
                            Step, SecretId and ClientRequestToken";
    let Some(object) = payload.as_object() else {
        return Err(format!(
            "the event is {}, expected {EXPECTED}",
            lambda_support::json_type(payload)
        ));
    };
    for field in EVENT_FIELDS {
        match object.get(field) {
            None => {
                return Err(format!(
                    "field '{field}' of the event is missing ({EXPECTED})"
                ))
            }
            Some(Value::String(text)) if text.trim().is_empty() => {
                return Err(format!("field '{field}' of the event is empty"))
            }
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "field '{field}' of the event is {}, expected a string",
                    lambda_support::json_type(other)
                ))
            }
        }
    }
    match object.get("RotationToken") {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(other) => Err(format!(
            "field 'RotationToken' of the event is {}, expected a string",
            lambda_support::json_type(other)
        )),
    }
}

/// The function.
pub struct Handler<S, T> {
    service: Result<Service<S, T>, ConfigError>,
}

impl<S: SecretStore, T: CredentialTarget> Handler<S, T> {
    /// `service` is an error when the configuration was invalid: every event then fails with
    /// it, so the problem shows in Secrets Manager's rotation status and the function's logs.
    pub fn new(service: Result<Service<S, T>, ConfigError>) -> Self {
        Handler { service }
    }

    /// Handles one event. Errors name the secret, the step and the field at fault, never a
    /// value.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, InvocationError> {
        let service = self.service.as_ref().map_err(|e| {
            tracing::error!(error = %e, "invalid configuration");
            InvocationError::invalid_configuration(e.to_string())
        })?;
        if let Some(request) = preflight_request(&event.payload) {
            let secret_id = request?;
            let report = service.preflight(&secret_id).await;
            tracing::info!(
                secret_arn = %report.secret,
                step = "preflight",
                outcome = if report.passed() { "ok" } else { "failed" },
                failed_checks = %report.failed_checks().join(","),
                "preflight finished"
            );
            return Ok(report.to_json());
        }
        let event = rotation_event(event.payload)?;
        let outcome = service
            .rotator
            .handle(&event)
            .await
            .map_err(|e| InvocationError::new(e.error_type(), e.to_string()))?;
        Ok(json!({ "step": event.step, "outcome": outcome.as_str() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_rotation_event_is_refused_naming_the_field() {
        let ok = json!({"Step": "createSecret", "SecretId": "s", "ClientRequestToken": "t"});
        assert_eq!(check_rotation_event(&ok), Ok(()));
        let cases = [
            (json!([ok.clone()]), "the event is an array"),
            (json!("createSecret"), "the event is a string"),
            (
                json!({"SecretId": "s", "ClientRequestToken": "t"}),
                "field 'Step'",
            ),
            (
                json!({"Step": 1, "SecretId": "s", "ClientRequestToken": "t"}),
                "field 'Step' of the event is a number",
            ),
            (
                json!({"Step": "x", "SecretId": " ", "ClientRequestToken": "t"}),
                "field 'SecretId' of the event is empty",
            ),
            (
                json!({"Step": "x", "SecretId": "s", "ClientRequestToken": "t",
                       "RotationToken": {"hidden": "value"}}),
                "field 'RotationToken' of the event is an object",
            ),
        ];
        for (event, expected) in cases {
            let error = check_rotation_event(&event).unwrap_err();
            assert!(error.contains(expected), "{event}: {error}");
            assert!(!error.contains("value\""), "{error}");
        }
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
        assert_eq!(err.error_type, "InvalidEvent");
        assert!(err.message.contains("SecretId"));
    }
}
