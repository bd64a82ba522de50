//! The function's input: a classic EventBridge rule event (input in `detail`), or the plain JSON
//! that EventBridge Scheduler (or a rule with a constant `Input`) delivers.
//!
//! Only the mode, the filters and the snapshot to verify can be chosen per event; where snapshots
//! are written (bucket, prefix, keys, role) comes from the environment only, so whoever can put
//! an event cannot redirect the backups.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::filters::{Filters, TagFilter};
use crate::domain::sources::SourceRef;

/// An event this function does not understand; the text says what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid backup event: {0}")]
pub struct EventError(pub String);

/// What an invocation does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Write a new snapshot (the default).
    #[default]
    Backup,
    /// Check a snapshot's integrity and compare it with the live secrets (a restore drill).
    Verify,
    /// List the accounts and regions this deployment backs up (the state machine's fan-out).
    Sources,
}

/// Tags as `{"env": "prod"}` or `["env=prod", "team"]`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
enum TagsInput {
    Map(serde_json::Map<String, Value>),
    List(Vec<String>),
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawInput {
    mode: Option<Mode>,
    name_prefixes: Option<Vec<String>>,
    tags: Option<TagsInput>,
    snapshot: Option<String>,
    source: Option<RawSource>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct RawSource {
    account: String,
    region: String,
}

/// Where the event came from (for the summary log line): serialized as
/// `{"type": "eventbridge", "detailType": …, "resources": […]}` or `{"type": "direct"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Trigger {
    /// A classic EventBridge rule: `detail-type` and the rule ARN(s).
    #[serde(rename_all = "camelCase")]
    EventBridge {
        /// The event's `detail-type`.
        detail_type: String,
        /// The rule ARN(s).
        resources: Vec<String>,
    },
    /// EventBridge Scheduler, a rule with constant input, or a manual invoke.
    Direct,
}

/// What one invocation asks for, after the event's overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Backup or verify.
    pub mode: Mode,
    /// `None`: use the configured filters.
    pub filters: Option<Filters>,
    /// Verify mode: snapshot id or `latest` (the default).
    pub snapshot: Option<String>,
    /// A hub's spoke to back up or verify (`{"account": …, "region": …}`); `None`: the
    /// function's own account and region.
    pub source: Option<SourceRef>,
    /// Where the event came from.
    pub trigger: Trigger,
}

impl Request {
    /// The event's filters, or the configured ones when the event has none.
    pub fn effective_filters<'a>(&'a self, configured: &'a Filters) -> &'a Filters {
        self.filters.as_ref().unwrap_or(configured)
    }
}

/// Reads an invocation's event (see the module documentation for the accepted shapes).
pub fn parse(event: &Value) -> Result<Request, EventError> {
    let (input, trigger) = match event {
        Value::Null => (Value::Object(Default::default()), Trigger::Direct),
        Value::Object(map) if map.contains_key("detail-type") => {
            let envelope: EventBridgeEvent<Value> = serde_json::from_value(event.clone())
                .map_err(|e| EventError(format!("EventBridge envelope: {e}")))?;
            let detail = match envelope.detail {
                Value::Null => Value::Object(Default::default()),
                d => d,
            };
            (
                detail,
                Trigger::EventBridge {
                    detail_type: envelope.detail_type,
                    resources: envelope.resources.unwrap_or_default(),
                },
            )
        }
        Value::Object(_) => (event.clone(), Trigger::Direct),
        other => {
            return Err(EventError(format!(
                "expected a JSON object, got {}",
                lambda_support::json_type(other)
            )))
        }
    };
    // The error names the field at fault (`mode`, `namePrefixes`, ...).
    let raw: RawInput = serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        EventError(if path == "." {
            inner.to_string()
        } else {
            format!("field '{path}': {inner}")
        })
    })?;
    let tags = match raw.tags {
        None => None,
        Some(TagsInput::List(list)) => Some(
            list.iter()
                .map(|t| TagFilter::parse(t))
                .collect::<Result<Vec<_>, _>>()
                .map_err(EventError)?,
        ),
        Some(TagsInput::Map(map)) => Some(
            map.into_iter()
                .map(|(key, v)| match v {
                    Value::String(s) => Ok(TagFilter {
                        key,
                        value: Some(s),
                    }),
                    Value::Null => Ok(TagFilter { key, value: None }),
                    other => Err(EventError(format!(
                        "tag {key:?} must map to a string or null, not {}",
                        lambda_support::json_type(&other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let filters = match (raw.name_prefixes, tags) {
        (None, None) => None,
        (p, t) => Some(Filters {
            name_prefixes: p.unwrap_or_default(),
            tags: t.unwrap_or_default(),
        }),
    };
    let mode = raw.mode.unwrap_or_default();
    if mode == Mode::Backup && raw.snapshot.is_some() {
        return Err(EventError(
            "`snapshot` applies to mode \"verify\" only".into(),
        ));
    }
    if mode == Mode::Sources
        && (filters.is_some() || raw.snapshot.is_some() || raw.source.is_some())
    {
        return Err(EventError(
            "mode \"sources\" takes no namePrefixes, tags, snapshot or source".into(),
        ));
    }
    let source = raw
        .source
        .map(|s| {
            SourceRef::checked(&s.account, &s.region).map_err(|e| match e.split_once(": ") {
                Some((field, why)) => EventError(format!("field 'source.{field}': {why}")),
                None => EventError(format!("field 'source': {e}")),
            })
        })
        .transpose()?;
    Ok(Request {
        mode,
        filters,
        snapshot: raw.snapshot,
        source,
        trigger,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classic_scheduled_event_uses_defaults() {
        let ev = json!({
            "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2025-01-01T03:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/backup"],
            "detail": {}
        });
        let r = parse(&ev).unwrap();
        assert_eq!(r.mode, Mode::Backup);
        assert_eq!(r.filters, None);
        assert_eq!(
            r.trigger,
            Trigger::EventBridge {
                detail_type: "Scheduled Event".into(),
                resources: vec!["arn:aws:events:us-east-1:123456789012:rule/backup".into()]
            }
        );
    }

    #[test]
    fn source_and_sources_mode() {
        let r = parse(
            &serde_json::json!({"source": {"account": "111111111111", "region": "eu-west-1"}}),
        )
        .unwrap();
        assert_eq!(r.source.unwrap().to_string(), "111111111111/eu-west-1");
        let e = parse(&serde_json::json!({"source": {"account": "1111", "region": "eu-west-1"}}))
            .unwrap_err();
        assert!(e.to_string().contains("field 'source.account'"), "{e}");
        let e = parse(&serde_json::json!({"source": {"account": "111111111111"}})).unwrap_err();
        assert!(e.to_string().contains("region"), "{e}");
        assert_eq!(
            parse(&serde_json::json!({"mode": "sources"})).unwrap().mode,
            Mode::Sources
        );
        let e = parse(&serde_json::json!({"mode": "sources", "snapshot": "latest"})).unwrap_err();
        assert!(e.to_string().contains("sources"), "{e}");
    }

    #[test]
    fn envelope_detail_carries_input() {
        let ev = json!({"detail-type": "Scheduled Event", "source": "aws.events",
                        "detail": {"mode": "verify", "snapshot": "latest"}});
        let r = parse(&ev).unwrap();
        assert_eq!(r.mode, Mode::Verify);
        assert_eq!(r.snapshot.as_deref(), Some("latest"));
    }

    #[test]
    fn scheduler_plain_input_with_filters() {
        let r = parse(&json!({"mode": "backup", "namePrefixes": ["app/"], "tags": {"env": "prod", "backup": null}})).unwrap();
        let f = r.filters.unwrap();
        assert_eq!(f.name_prefixes, vec!["app/"]);
        assert_eq!(f.tags.len(), 2);
        assert_eq!(r.trigger, Trigger::Direct);
        let r = parse(&json!({"tags": ["env=prod"]})).unwrap();
        assert_eq!(r.filters.unwrap().tags[0].value.as_deref(), Some("prod"));
        assert_eq!(parse(&json!({})).unwrap().mode, Mode::Backup);
        assert_eq!(parse(&Value::Null).unwrap().mode, Mode::Backup);
    }

    #[test]
    fn sample_events_in_the_repository_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
        let load = |name: &str| -> Value {
            serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
        };
        let r = parse(&load("backup-scheduled-event.json")).unwrap();
        assert_eq!(r.mode, Mode::Backup);
        assert!(matches!(r.trigger, Trigger::EventBridge { .. }));
        let r = parse(&load("backup-scheduler-input.json")).unwrap();
        assert_eq!(r.filters.unwrap().name_prefixes, vec!["prod/", "shared/"]);
        let r = parse(&load("backup-verify.json")).unwrap();
        assert_eq!(r.mode, Mode::Verify);
    }

    #[test]
    fn triggers_serialize_as_the_summary_shows_them() {
        let t = Trigger::EventBridge {
            detail_type: "Scheduled Event".into(),
            resources: vec!["arn:r".into()],
        };
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            json!({"type": "eventbridge", "detailType": "Scheduled Event", "resources": ["arn:r"]})
        );
        assert_eq!(
            serde_json::to_value(Trigger::Direct).unwrap(),
            json!({"type": "direct"})
        );
    }

    #[test]
    fn typos_and_bad_input_are_rejected() {
        assert!(parse(&json!({"namePrefix": ["app/"]}))
            .unwrap_err()
            .0
            .contains("namePrefix"));
        let err = parse(&json!({"mode": "restore"})).unwrap_err();
        assert!(err.0.contains("field 'mode'"), "{err}");
        let err = parse(&json!({"namePrefixes": 3})).unwrap_err();
        assert!(err.0.contains("field 'namePrefixes'"), "{err}");
        assert!(parse(&json!({"bucket": "elsewhere"})).is_err());
        assert!(parse(&json!("backup")).is_err());
        assert!(parse(&json!({"snapshot": "latest"})).is_err());
        assert!(parse(&json!({"tags": {"env": 3}})).is_err());
        // A broken EventBridge envelope names what is wrong with it.
        let err = parse(&json!({"detail-type": "Scheduled Event", "detail": {}})).unwrap_err();
        assert!(err.0.contains("source"), "{err}");
        let err = parse(
            &json!({"detail-type": "Scheduled Event", "source": "aws.events",
            "detail": {"mode": "restore"}}),
        )
        .unwrap_err();
        assert!(err.0.contains("restore"), "{err}");
    }
}
