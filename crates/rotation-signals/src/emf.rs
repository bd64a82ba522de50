//! One CloudWatch Embedded Metric Format document per rotation step, the conventions of the
//! backup function's (`crates/backup/src/lambda/metrics.rs`): one JSON line, `_aws` metadata
//! with one metric directive, every metric and dimension a top-level member, the rest readable
//! properties. The specification: a document's root holds `_aws.CloudWatchMetrics` (each
//! directive: `Namespace`, `Dimensions` as arrays of dimension keys, `Metrics` as
//! `{Name, Unit}`), and every member a directive references (CloudWatch's "Specification:
//! Embedded metric format").
//!
//! The names here are the contract with `template.yaml`'s alarms and dashboard
//! (`tests/template.rs` compares them).

use rotation::StepNotice;
use serde_json::{json, Map, Value};

/// The metrics namespace of the rotation function.
pub const NAMESPACE: &str = "SecretsRotation";

/// Dimension: the function's name (`AWS_LAMBDA_FUNCTION_NAME`).
pub const DIM_FUNCTION: &str = "Function";
/// Dimension: the step as named in the event (`createSecret` … `finishSecret`).
pub const DIM_STEP: &str = "Step";
/// The dimension sets: per function, and per function and step.
pub const DIMENSION_SETS: [&[&str]; 2] = [&[DIM_FUNCTION], &[DIM_FUNCTION, DIM_STEP]];

/// Milliseconds the step took.
pub const STEP_DURATION: &str = "StepDuration";
/// 1 when the step succeeded (including "already current"), else 0.
pub const STEP_SUCCEEDED: &str = "StepSucceeded";
/// 1 when the step failed, else 0.
pub const STEP_FAILED: &str = "StepFailed";
/// 1 when finishSecret moved AWSCURRENT (a rotation completed), else 0.
pub const ROTATION_SUCCEEDED: &str = "RotationSucceeded";
/// 1 when the rotation's EventBridge event could not be put, else 0.
pub const EVENT_PUBLISH_FAILED: &str = "EventPublishFailed";

/// Every metric a line carries, with its unit.
pub const METRICS: [(&str, &str); 5] = [
    (STEP_DURATION, "Milliseconds"),
    (STEP_SUCCEEDED, "Count"),
    (STEP_FAILED, "Count"),
    (ROTATION_SUCCEEDED, "Count"),
    (EVENT_PUBLISH_FAILED, "Count"),
];

/// The `message` of every line (to find them in the logs).
pub const MESSAGE: &str = "rotation step metrics";

/// The `Outcome` property of a failed step.
pub const OUTCOME_ERROR: &str = "error";

/// The EMF line for one step. `published`: whether the rotation's event was put (`None`: no
/// event for this step, or no bus). Carries the secret's ARN, the step, the token, the outcome,
/// the strategy and the error kind; never a value.
pub fn step_line(
    function: &str,
    notice: &StepNotice<'_>,
    published: Option<bool>,
    timestamp_ms: i64,
) -> String {
    let (succeeded, outcome, error_kind) = match &notice.result {
        Ok(outcome) => (true, outcome.as_str(), None),
        Err(error) => (false, OUTCOME_ERROR, Some(error.error_type())),
    };
    let finished = matches!(notice.result, Ok(rotation::Outcome::Finished));
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let values = [
        notice.duration.as_secs_f64() * 1000.0,
        flag(succeeded),
        flag(!succeeded),
        flag(finished),
        flag(published == Some(false)),
    ];
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": DIMENSION_SETS,
                "Metrics": METRICS
                    .iter()
                    .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert(DIM_FUNCTION.into(), json!(function));
    doc.insert(DIM_STEP.into(), json!(notice.step));
    for ((name, _), value) in METRICS.iter().zip(values) {
        doc.insert((*name).into(), json!(value));
    }
    doc.insert("message".into(), json!(MESSAGE));
    doc.insert("Outcome".into(), json!(outcome));
    doc.insert(
        "Strategy".into(),
        json!(notice.strategy.map(|s| s.as_str())),
    );
    doc.insert("ErrorKind".into(), json!(error_kind));
    doc.insert("SecretArn".into(), json!(notice.secret));
    doc.insert("ClientRequestToken".into(), json!(notice.token));
    if let Some(published) = published {
        doc.insert("EventPublished".into(), json!(published));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rotation::{ErrorKind, Outcome, RotationError, Strategy};
    use std::time::Duration;

    fn notice<'a>(result: Result<Outcome, &'a RotationError>) -> StepNotice<'a> {
        StepNotice {
            secret: "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf",
            step: "finishSecret",
            token: "tok-1",
            result,
            duration: Duration::from_millis(42),
            strategy: Some(Strategy::SingleUser),
        }
    }

    #[test]
    fn a_finished_rotation_is_counted_with_every_metric_present() {
        let line = step_line(
            "fn",
            &notice(Ok(Outcome::Finished)),
            Some(true),
            1_700_000_000_000,
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(
            directive["Dimensions"],
            json!([["Function"], ["Function", "Step"]])
        );
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(v[name].is_number(), "{name} is a top-level number");
        }
        assert_eq!(v["StepDuration"], 42.0);
        assert_eq!(v["RotationSucceeded"], 1.0);
        assert_eq!(v["StepFailed"], 0.0);
        assert_eq!(v["EventPublishFailed"], 0.0);
        assert_eq!(v["Outcome"], "finished");
        assert_eq!(v["Strategy"], "single_user");
        assert_eq!(v["ErrorKind"], Value::Null);
        assert_eq!(v["Function"], "fn");
        assert_eq!(v["Step"], "finishSecret");
    }

    #[test]
    fn a_failed_step_names_its_error_kind_and_a_failed_delivery_is_counted() {
        let error = RotationError {
            secret: "app".into(),
            step: "setSecret".into(),
            kind: ErrorKind::NotEnabled,
        };
        let line = step_line("fn", &notice(Err(&error)), Some(false), 0);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["StepFailed"], 1.0);
        assert_eq!(v["StepSucceeded"], 0.0);
        assert_eq!(v["RotationSucceeded"], 0.0);
        assert_eq!(v["EventPublishFailed"], 1.0);
        assert_eq!(v["Outcome"], "error");
        assert_eq!(v["ErrorKind"], error.error_type());
    }
}
