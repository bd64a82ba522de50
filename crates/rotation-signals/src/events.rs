//! The rotation's EventBridge events: one `PutEvents` entry when a rotation succeeds
//! (finishSecret moved AWSCURRENT) or a step fails, on the bus named by `ROTATION_EVENT_BUS`.
//! The detail holds ids, the step, the outcome, the strategy and the error kind; never a value,
//! never an error message (messages may name users and hosts; the logs have them).

use lambda_support::env::ConfigError;
use lambda_support::sdk::describe_sdk_error;
use rotation::StepNotice;
use serde_json::{json, Value};

/// The variable naming the bus (a name or an ARN); unset or blank: no events.
pub const EVENT_BUS_VAR: &str = "ROTATION_EVENT_BUS";
/// The events' `source` (custom sources may not start with `aws.`).
pub const SOURCE: &str = "secrets-rotation.rotate-postgres";
/// The `detail-type` of a completed rotation.
pub const DETAIL_TYPE_SUCCEEDED: &str = "Secret Rotation Succeeded";
/// The `detail-type` of a failed step.
pub const DETAIL_TYPE_FAILED: &str = "Secret Rotation Failed";

/// How a rotation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationEnd {
    /// finishSecret moved AWSCURRENT.
    Succeeded,
    /// A step failed.
    Failed,
}

impl RotationEnd {
    /// The event's `detail-type`.
    pub fn detail_type(self) -> &'static str {
        match self {
            RotationEnd::Succeeded => DETAIL_TYPE_SUCCEEDED,
            RotationEnd::Failed => DETAIL_TYPE_FAILED,
        }
    }
}

/// A validated bus: a name or an ARN, as `PutEvents`' `EventBusName` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBus(String);

/// What the variable accepts.
pub const EVENT_BUS_EXPECTED: &str = "expected an event bus name (letters, digits, '.', '-', '_', '/'; \
     at most 256 characters) or its ARN (arn:<partition>:events:<region>:<account>:event-bus/<name>)";

impl EventBus {
    /// Parses `ROTATION_EVENT_BUS`. A name is 1–256 of `[A-Za-z0-9._/-]`; an ARN is
    /// `arn:<partition>:events:<region>:<12-digit account>:event-bus/<name>` (the
    /// `EventBusName` of a `PutEventsRequestEntry`: a name or an ARN, at most 1,600 characters,
    /// EventBridge API Reference).
    pub fn parse(value: &str) -> Result<EventBus, ConfigError> {
        let value = value.trim();
        let invalid = || ConfigError::invalid(EVENT_BUS_VAR, value, EVENT_BUS_EXPECTED);
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 256
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        };
        if let Some(rest) = value.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let [partition, service, region, account, resource] = parts[..] else {
                return Err(invalid());
            };
            let name = resource.strip_prefix("event-bus/").ok_or_else(invalid)?;
            let ok = !partition.is_empty()
                && service == "events"
                && !region.is_empty()
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && name_ok(name)
                && value.len() <= 1600;
            return if ok {
                Ok(EventBus(value.into()))
            } else {
                Err(invalid())
            };
        }
        if name_ok(value) {
            Ok(EventBus(value.into()))
        } else {
            Err(invalid())
        }
    }

    /// The variable's value, when set and not blank.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<EventBus>, ConfigError> {
        lambda_support::env::non_empty(lookup, EVENT_BUS_VAR)
            .map(|v| EventBus::parse(&v))
            .transpose()
    }

    /// The name or ARN.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The event's detail for a step's notice: ids, step, outcome, strategy, error kind.
pub fn detail(function: &str, notice: &StepNotice<'_>, end: RotationEnd) -> Value {
    let (outcome, error_kind) = match &notice.result {
        Ok(outcome) => (outcome.as_str(), None),
        Err(error) => (crate::emf::OUTCOME_ERROR, Some(error.error_type())),
    };
    json!({
        "secretArn": notice.secret,
        "clientRequestToken": notice.token,
        "step": notice.step,
        "outcome": outcome,
        "rotation": match end {
            RotationEnd::Succeeded => "succeeded",
            RotationEnd::Failed => "failed",
        },
        "errorKind": error_kind,
        "strategy": notice.strategy.map(|s| s.as_str()),
        "function": function,
    })
}

/// Puts the rotation's events on one bus.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    client: aws_sdk_eventbridge::Client,
    bus: EventBus,
}

impl EventPublisher {
    /// A publisher to `bus` through `client` (no network I/O here).
    pub fn new(client: aws_sdk_eventbridge::Client, bus: EventBus) -> Self {
        EventPublisher { client, bus }
    }

    /// Puts one event; `true` when EventBridge accepted it. A failure (the call, or the entry
    /// refused) is logged as a warning naming the bus and the cause, and never fails the step.
    pub async fn publish(&self, function: &str, notice: &StepNotice<'_>, end: RotationEnd) -> bool {
        let mut entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .event_bus_name(self.bus.as_str())
            .source(SOURCE)
            .detail_type(end.detail_type())
            .detail(detail(function, notice, end).to_string());
        if notice.secret.starts_with("arn:") {
            entry = entry.resources(notice.secret);
        }
        let request = self.client.put_events().entries(entry.build());
        let failure = match failpoints::around!("events.put_events", request.send().await) {
            Ok(out) if out.failed_entry_count() == 0 => None,
            Ok(out) => Some(
                out.entries()
                    .iter()
                    .find_map(|e| {
                        e.error_code().map(|code| {
                            format!("{code}: {}", e.error_message().unwrap_or_default())
                        })
                    })
                    .unwrap_or_else(|| "the entry was refused".into()),
            ),
            Err(e) => Some(describe_sdk_error(&e).to_string()),
        };
        match failure {
            None => true,
            Some(cause) => {
                tracing::warn!(
                    secret_arn = %notice.secret,
                    step = %notice.step,
                    event_bus = %self.bus.as_str(),
                    detail_type = end.detail_type(),
                    error = %cause,
                    "the rotation's EventBridge event was not put (the step's result stands)"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_arns_are_accepted_and_the_rest_refused_naming_the_variable() {
        for ok in [
            "ops-bus",
            "default",
            "org/ops.bus_1",
            "arn:aws:events:eu-west-1:123456789012:event-bus/ops-bus",
            "arn:aws-us-gov:events:us-gov-west-1:123456789012:event-bus/default",
        ] {
            assert_eq!(EventBus::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "has space",
            "bus!",
            "arn:aws:sns:eu-west-1:123456789012:topic",
            "arn:aws:events:eu-west-1:1234:event-bus/x",
            "arn:aws:events:eu-west-1:123456789012:rule/x",
            "arn:aws:events:eu-west-1:123456789012:event-bus/",
            &"b".repeat(257),
        ] {
            let e = EventBus::parse(bad).unwrap_err();
            assert_eq!(e.name(), EVENT_BUS_VAR, "{bad}");
            assert!(e.to_string().contains(EVENT_BUS_VAR));
        }
        assert_eq!(
            EventBus::from_lookup(|_| Some("  ".into())).unwrap(),
            None,
            "blank: no bus"
        );
    }
}
