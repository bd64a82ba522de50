//! The run's summary as one JSON log line in CloudWatch Embedded Metric Format: CloudWatch turns
//! the listed fields into metrics (dimension `Mode`), and the line stays a readable summary.

use serde_json::{json, Map, Value};

pub const DEFAULT_NAMESPACE: &str = "SecretsBackup";

#[derive(Clone, Copy, Debug)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF document. `summary` must not hold secret values (it never does: callers pass counts,
/// names, ids and error messages).
pub fn emf_line(
    namespace: &str,
    mode: &str,
    timestamp_ms: i64,
    metrics: &[(&str, f64, Unit)],
    summary: Map<String, Value>,
) -> String {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, _, unit)| json!({"Name": name, "Unit": unit.as_str()}))
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Mode"]],
                "Metrics": definitions,
            }]
        }),
    );
    doc.insert("Mode".into(), Value::String(mode.into()));
    for (name, value, _) in metrics {
        doc.insert((*name).into(), json!(value));
    }
    for (k, v) in summary {
        doc.entry(k).or_insert(v);
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_shape() {
        let mut s = Map::new();
        s.insert("message".into(), json!("backup summary"));
        let line = emf_line(
            "NS",
            "backup",
            1700000000000,
            &[
                ("Secrets", 3.0, Unit::Count),
                ("DurationMs", 12.0, Unit::Milliseconds),
            ],
            s,
        );
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "NS");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0],
            "Mode"
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Unit"],
            "Milliseconds"
        );
        assert_eq!(v["Secrets"], 3.0);
        assert_eq!(v["Mode"], "backup");
        assert_eq!(v["message"], "backup summary");
    }
}
