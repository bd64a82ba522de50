//! The run's summary as one JSON log line in CloudWatch Embedded Metric Format: CloudWatch turns
//! the listed fields into metrics (dimension `Mode`), and the line stays a readable summary.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// The metrics namespace when `BACKUP_METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "SecretsBackup";

/// A CloudWatch metric unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Unit {
    /// A number of things.
    Count,
    /// Bytes.
    Bytes,
    /// Milliseconds.
    Milliseconds,
}

/// One metric of the line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric {
    /// Its name (a top-level field of the line).
    pub name: &'static str,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
}

impl Metric {
    /// A count.
    pub fn count(name: &'static str, value: u64) -> Self {
        Metric {
            name,
            value: value as f64,
            unit: Unit::Count,
        }
    }
}

#[derive(Serialize)]
struct Document<'a, S: Serialize> {
    #[serde(rename = "_aws")]
    aws: Metadata<'a>,
    #[serde(rename = "Mode")]
    mode: &'a str,
    #[serde(flatten)]
    values: Values<'a>,
    #[serde(flatten)]
    summary: &'a S,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata<'a> {
    timestamp: i64,
    #[serde(rename = "CloudWatchMetrics")]
    cloudwatch_metrics: [Directive<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: [[&'static str; 1]; 1],
    metrics: Vec<Definition>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Definition {
    name: &'static str,
    unit: Unit,
}

/// The metrics' values as top-level fields.
struct Values<'a>(&'a [Metric]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for m in self.0 {
            map.serialize_entry(m.name, &m.value)?;
        }
        map.end()
    }
}

/// One EMF document: the metrics, then the fields of `summary`. `summary` must not hold secret
/// values (the run summaries never do: counts, names, ids and error messages).
pub fn emf_line(
    namespace: &str,
    mode: &str,
    timestamp_ms: i64,
    metrics: &[Metric],
    summary: &impl Serialize,
) -> String {
    let doc = Document {
        aws: Metadata {
            timestamp: timestamp_ms,
            cloudwatch_metrics: [Directive {
                namespace,
                dimensions: [["Mode"]],
                metrics: metrics
                    .iter()
                    .map(|m| Definition {
                        name: m.name,
                        unit: m.unit,
                    })
                    .collect(),
            }],
        },
        mode,
        values: Values(metrics),
        summary,
    };
    serde_json::to_string(&doc).expect("an EMF document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn emf_document_shape() {
        let line = emf_line(
            "NS",
            "backup",
            1700000000000,
            &[
                Metric::count("Secrets", 3),
                Metric {
                    name: "DurationMs",
                    value: 12.0,
                    unit: Unit::Milliseconds,
                },
            ],
            &json!({"message": "backup summary"}),
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
        assert_eq!(v["_aws"]["Timestamp"], 1700000000000i64);
        assert_eq!(v["Secrets"], 3.0);
        assert_eq!(v["Mode"], "backup");
        assert_eq!(v["message"], "backup summary");
    }
}
