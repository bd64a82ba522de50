//! Domain types: a secret's metadata, its labelled versions and their values.
//!
//! Values are wrapped in [`Zeroizing`] and their `Debug` output is redacted, so a stray `{:?}`
//! in a log line can never print one.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

pub use rotation::{AWSCURRENT, AWSPENDING, AWSPREVIOUS};

/// The label a parameter's latest version carries in a record: the version Parameter Store
/// serves by default, as `AWSCURRENT` is for a secret (the same string, so the comparison and
/// the snapshot format need nothing new). Parameter labels cannot start with `aws` or `ssm`, so
/// it never collides with a real one; restore never sets it as a label.
pub const LATEST: &str = AWSCURRENT;

/// What only a Parameter Store parameter has (absent on secrets).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterMeta {
    /// `SecureString`, `String` or `StringList`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `Standard`, `Advanced` or `Intelligent-Tiering`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// `text`, `aws:ec2:image`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// The parameter policies as PutParameter takes them (a JSON array; Advanced tier only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<String>,
}

/// The service a secret was read from, recorded on every record of a snapshot so that verify and
/// restore talk to the right one. Records written before sources existed carry no `source` field
/// and read as [`SourceKind::SecretsManager`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum SourceKind {
    /// AWS Secrets Manager (`"secretsmanager"`).
    #[default]
    #[serde(rename = "secretsmanager")]
    SecretsManager,
    /// AWS Systems Manager Parameter Store (`"parameterstore"`): a parameter's latest version
    /// is recorded under the label [`LATEST`], its own labels beside it.
    #[serde(rename = "parameterstore")]
    ParameterStore,
}

impl SourceKind {
    /// The name written in manifests and parts.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::SecretsManager => "secretsmanager",
            SourceKind::ParameterStore => "parameterstore",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Labels that restore puts back on an existing secret and that the live comparison checks.
/// `AWSPREVIOUS` is history that Secrets Manager moves by itself whenever `AWSCURRENT` moves, and
/// `AWSPENDING` marks a rotation in flight; both are recorded but only reported, never forced.
pub fn is_compared_label(label: &str) -> bool {
    label != AWSPREVIOUS && label != AWSPENDING
}

/// Tags whose key starts with `aws:` are reserved for AWS and cannot be set or removed.
pub fn is_reserved_tag(key: &str) -> bool {
    key.starts_with("aws:")
}

/// A secret's tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// A secret's rotation settings (recorded and reported; restored only on a recreated secret, and
/// only when the operator asks: `secrets-backup restore --restore-rotation`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Whether rotation is on.
    pub enabled: bool,
    /// The rotation function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_arn: Option<String>,
    /// Rotation interval in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatically_after_days: Option<i64>,
    /// Rotation schedule expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    /// Rotation window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// What DescribeSecret and GetResourcePolicy say about a secret (no values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretMeta {
    /// The secret's name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Its description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its KMS key (`None`: the account's default key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Its tags (reserved `aws:` ones included).
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Its resource policy (JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<String>,
    /// Its rotation settings.
    #[serde(default)]
    pub rotation: Rotation,
    /// The AWS service that manages it, if any (restore leaves it to that service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owning_service: Option<String>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// When it was last rotated (absent in records written before it was captured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<DateTime<Utc>>,
    /// When its value or metadata last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_changed: Option<DateTime<Utc>>,
    /// The region of its primary secret, as DescribeSecret reports it (on a replica, another
    /// region than the one of its ARN: see [`SecretMeta::replica_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_region: Option<String>,
    /// The regions it is replicated to (on a primary secret).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replication: Vec<Replica>,
    /// Type, tier, data type and policies of a Parameter Store parameter (`None` on a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<ParameterMeta>,
}

/// One region a secret is replicated to, as DescribeSecret's `ReplicationStatus` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    /// The region.
    pub region: String,
    /// The KMS key of the replica (`None`: that region's default key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    /// Its status (`InSync`, `Failed`, `InProgress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// The region of an ARN (`arn:PARTITION:SERVICE:REGION:…`), if it has one.
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

impl SecretMeta {
    /// The primary region when this secret is a replica: its primary region differs from the
    /// region of its own ARN. Restore writes only at the primary.
    pub fn replica_of(&self) -> Option<&str> {
        let primary = self.primary_region.as_deref()?;
        (arn_region(&self.arn).is_some_and(|r| r != primary)).then_some(primary)
    }

    /// Tags a caller can set, sorted by key.
    pub fn user_tags(&self) -> Vec<&Tag> {
        let mut tags: Vec<&Tag> = self
            .tags
            .iter()
            .filter(|t| !is_reserved_tag(&t.key))
            .collect();
        tags.sort();
        tags
    }
}

/// A version id and the staging labels attached to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionLabels {
    /// The version id.
    pub version_id: String,
    /// Its staging labels.
    pub labels: Vec<String>,
    /// When it was created, when known (GetSecretValue reports it; DescribeSecret does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
}

/// A version's value and creation date, as GetSecretValue returns them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionValue {
    /// The value.
    pub value: SecretValue,
    /// When the version was created, when the service says.
    pub created: Option<DateTime<Utc>>,
}

/// DescribeSecret: metadata plus the versions that carry a staging label.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Described {
    /// Metadata (the resource policy is read separately).
    pub meta: SecretMeta,
    /// Every version that carries a label.
    pub versions: Vec<VersionLabels>,
    /// Set when the secret is scheduled for deletion.
    pub deleted: Option<DateTime<Utc>>,
}

/// Whether a value is a string or binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ValueKind {
    /// `SecretString`.
    String,
    /// `SecretBinary`.
    Binary,
}

/// A secret value. Zeroed on drop; `Debug` shows only its kind and size.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// `SecretString`.
    String(Zeroizing<String>),
    /// `SecretBinary`.
    Binary(Zeroizing<Vec<u8>>),
}

impl SecretValue {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        SecretValue::String(Zeroizing::new(s.into()))
    }

    /// A binary value.
    pub fn binary(b: impl Into<Vec<u8>>) -> Self {
        SecretValue::Binary(Zeroizing::new(b.into()))
    }

    /// String or binary.
    pub fn kind(&self) -> ValueKind {
        match self {
            SecretValue::String(_) => ValueKind::String,
            SecretValue::Binary(_) => ValueKind::Binary,
        }
    }

    /// Size in bytes of the value as Secrets Manager stores it.
    pub fn len(&self) -> usize {
        match self {
            SecretValue::String(s) => s.len(),
            SecretValue::Binary(b) => b.len(),
        }
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SecretValue::{:?}(<redacted {} bytes>)",
            self.kind(),
            self.len()
        )
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        match self {
            SecretValue::String(s) => map.serialize_entry("string", s.as_str())?,
            SecretValue::Binary(b) => {
                let encoded = Zeroizing::new(B64.encode(b.as_slice()));
                map.serialize_entry("binary", encoded.as_str())?
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            string: Option<String>,
            binary: Option<String>,
        }
        let raw = Raw::deserialize(deserializer)?;
        match (raw.string, raw.binary) {
            (Some(s), None) => Ok(SecretValue::String(Zeroizing::new(s))),
            (None, Some(b)) => {
                let b = Zeroizing::new(b);
                let bytes = B64
                    .decode(b.as_bytes())
                    .map_err(|_| serde::de::Error::custom("binary value is not valid base64"))?;
                Ok(SecretValue::Binary(Zeroizing::new(bytes)))
            }
            _ => Err(serde::de::Error::custom(
                "a value holds exactly one of `string` or `binary`",
            )),
        }
    }
}

/// One labelled version with its value, as stored inside an encrypted part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionRecord {
    /// The version id.
    pub version_id: String,
    /// Its staging labels.
    pub labels: Vec<String>,
    /// When it was created (absent in records written before it was captured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// Its value.
    pub value: SecretValue,
}

impl VersionRecord {
    /// Whether the version carries `label`.
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l == label)
    }
}

/// A whole secret as stored inside an encrypted part: metadata and every labelled version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRecord {
    /// The service the secret was read from (absent in records written before sources existed).
    #[serde(default)]
    pub source: SourceKind,
    /// Metadata (flattened into the record).
    #[serde(flatten)]
    pub meta: SecretMeta,
    /// Every labelled version, `AWSCURRENT` first.
    pub versions: Vec<VersionRecord>,
}

impl SecretRecord {
    /// The version that carries `label`.
    pub fn version_with_label(&self, label: &str) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.has_label(label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_value() {
        let v = SecretValue::string("hunter2-very-secret");
        let shown = format!("{v:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("19 bytes"), "{shown}");
        let rec = VersionRecord {
            version_id: "v1".into(),
            labels: vec![AWSCURRENT.into()],
            created: None,
            value: SecretValue::binary(b"\x00\x01topsecret".to_vec()),
        };
        assert!(!format!("{rec:?}").contains("topsecret"));
    }

    #[test]
    fn old_records_without_the_rotation_and_replication_fields_still_read() {
        let old = r#"{"name":"app/db","arn":"arn:aws:secretsmanager:us-east-1:1:secret:app/db",
            "tags":[],"rotation":{"enabled":false},
            "versions":[{"versionId":"v1","labels":["AWSCURRENT"],"value":{"string":"x"}}]}"#;
        let r: SecretRecord = serde_json::from_str(old).unwrap();
        assert_eq!(r.meta.last_rotated, None);
        assert_eq!(r.meta.primary_region, None);
        assert!(r.meta.replication.is_empty());
        assert_eq!(r.versions[0].created, None);
        assert_eq!(r.meta.replica_of(), None);
    }

    #[test]
    fn a_replica_is_a_secret_whose_primary_is_in_another_region() {
        let mut m = SecretMeta {
            arn: "arn:aws:secretsmanager:eu-west-1:1:secret:app/db-AbCdEf".into(),
            primary_region: Some("us-east-1".into()),
            ..Default::default()
        };
        assert_eq!(m.replica_of(), Some("us-east-1"));
        m.primary_region = Some("eu-west-1".into());
        assert_eq!(m.replica_of(), None);
        m.primary_region = None;
        assert_eq!(m.replica_of(), None);
    }

    #[test]
    fn values_round_trip_through_json() {
        for v in [
            SecretValue::string("{\"password\":\"p\\u00e9\"}\n"),
            SecretValue::binary(vec![0u8, 255, 10, 13, 34]),
            SecretValue::string(""),
        ] {
            let json = serde_json::to_string(&v).unwrap();
            let back: SecretValue = serde_json::from_str(&json).unwrap();
            assert_eq!(back, v);
            assert_eq!(back.kind(), v.kind());
        }
        assert!(serde_json::from_str::<SecretValue>(r#"{"string":"a","binary":"AA=="}"#).is_err());
        assert!(serde_json::from_str::<SecretValue>(r#"{"binary":"***"}"#).is_err());
    }
}
