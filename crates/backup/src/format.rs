//! Snapshot layout and the manifest.
//!
//! ```text
//! <prefix>/<account>/<region>/<YYYYMMDDTHHMMSS.mmmZ>-<snapshot id>/
//!     part-00001.sbk   encrypted JSON lines, one secret (metadata + labelled versions) per line
//!     part-00002.sbk
//!     manifest.json    written last: a snapshot without one is incomplete
//! ```
//! The manifest holds no secret value: names, ARNs, version ids, labels, sizes, which part holds
//! each secret, each part's SHA-256, and the secrets that could not be read with the reason.

use std::io::{BufWriter, Seek, SeekFrom, Write};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Filters;
use crate::model::{SecretRecord, ValueKind};

pub const MANIFEST_FORMAT_VERSION: u32 = 1;
pub const MANIFEST_NAME: &str = "manifest.json";
const TIMESTAMP_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// `<prefix>/<account>/<region>/` (the prefix may be empty).
pub fn account_region_prefix(prefix: &str, account: &str, region: &str) -> String {
    if prefix.is_empty() {
        format!("{account}/{region}/")
    } else {
        format!("{prefix}/{account}/{region}/")
    }
}

pub fn folder_name(started: DateTime<Utc>, snapshot_id: &str) -> String {
    format!("{}-{snapshot_id}", started.format(TIMESTAMP_FORMAT))
}

/// Parse `20250102T030405.123Z-<id>` into its time and id.
pub fn parse_folder_name(name: &str) -> Option<(DateTime<Utc>, String)> {
    let name = name.trim_end_matches('/');
    let name = name.rsplit('/').next()?;
    let (ts, id) = name.split_once("Z-")?;
    let t = NaiveDateTime::parse_from_str(&format!("{ts}Z"), TIMESTAMP_FORMAT).ok()?;
    if id.is_empty() {
        return None;
    }
    Some((t.and_utc(), id.to_string()))
}

pub fn part_key(folder: &str, number: u32) -> String {
    format!("{folder}part-{number:05}.sbk")
}

pub fn manifest_key(folder: &str) -> String {
    format!("{folder}{MANIFEST_NAME}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub account_id: String,
    pub region: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub bucket: String,
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub secrets: u64,
    pub versions: u64,
    /// Bytes of secret values (not of the encoded parts).
    pub value_bytes: u64,
    pub parts: u64,
    /// Bytes of the part objects as stored.
    pub stored_bytes: u64,
    pub failures: u64,
    pub skipped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartEntry {
    pub number: u32,
    pub key: String,
    /// Object size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the object as stored.
    pub sha256: String,
    pub secrets: u64,
}

/// A secret that is not in the snapshot, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub name: String,
    pub arn: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestVersion {
    pub version_id: String,
    pub labels: Vec<String>,
    pub size: u64,
    pub kind: ValueKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSecret {
    pub name: String,
    pub arn: String,
    pub part: u32,
    pub versions: Vec<ManifestVersion>,
}

impl ManifestSecret {
    pub fn of(record: &SecretRecord, part: u32) -> Self {
        ManifestSecret {
            name: record.meta.name.clone(),
            arn: record.meta.arn.clone(),
            part,
            versions: record
                .versions
                .iter()
                .map(|v| ManifestVersion {
                    version_id: v.version_id.clone(),
                    labels: v.labels.clone(),
                    size: v.value.len() as u64,
                    kind: v.value.kind(),
                })
                .collect(),
        }
    }
}

/// Everything in the manifest except the per-secret list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestHead {
    pub format_version: u32,
    pub snapshot_id: String,
    /// Key prefix of the snapshot, ending in `/`.
    pub folder: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub source: Source,
    pub destination: Destination,
    /// KMS key that wraps the parts' data keys.
    pub kms_key_id: String,
    pub filters: Filters,
    pub part_size: u64,
    pub summary: Summary,
    pub parts: Vec<PartEntry>,
    pub failures: Vec<Failure>,
    /// Secrets listed but deleted before they could be read (not failures).
    pub skipped: Vec<Failure>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(flatten)]
    pub head: ManifestHead,
    pub secrets: Vec<ManifestSecret>,
}

impl Manifest {
    pub fn part(&self, number: u32) -> Option<&PartEntry> {
        self.head.parts.iter().find(|p| p.number == number)
    }
}

/// Builds the manifest on disk as secrets are added, so memory does not grow with their number.
pub struct ManifestSpool {
    entries: BufWriter<std::fs::File>,
    count: u64,
}

impl ManifestSpool {
    pub fn new() -> std::io::Result<Self> {
        Ok(ManifestSpool {
            entries: BufWriter::new(tempfile::tempfile()?),
            count: 0,
        })
    }

    pub fn add(&mut self, secret: &ManifestSecret) -> std::io::Result<()> {
        if self.count > 0 {
            self.entries.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut self.entries, secret)?;
        self.count += 1;
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Write the complete manifest JSON to a new temporary file.
    pub fn finish(self, head: &ManifestHead) -> std::io::Result<tempfile::NamedTempFile> {
        let mut entries = self.entries.into_inner().map_err(|e| e.into_error())?;
        entries.seek(SeekFrom::Start(0))?;
        let out = tempfile::NamedTempFile::new()?;
        let mut w = BufWriter::new(out.as_file());
        let head_json = serde_json::to_vec_pretty(head)?;
        // Reopen the object: drop the closing brace and append the secrets array.
        let end = head_json
            .iter()
            .rposition(|&b| b == b'}')
            .expect("an object ends with }");
        w.write_all(&head_json[..end])?;
        w.write_all(b",\n  \"secrets\": [\n")?;
        std::io::copy(&mut entries, &mut w)?;
        w.write_all(b"\n  ]\n}\n")?;
        w.flush()?;
        drop(w);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SecretMeta, SecretValue, VersionRecord};
    use chrono::TimeZone;

    #[test]
    fn folder_names_round_trip_and_sort_by_time() {
        let t =
            Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::milliseconds(67);
        let name = folder_name(t, "0b9c");
        assert_eq!(name, "20250102T030405.067Z-0b9c");
        assert_eq!(
            parse_folder_name(&format!("p/1/r/{name}/")),
            Some((t, "0b9c".into()))
        );
        assert!(folder_name(t, "zzz") < folder_name(t + chrono::Duration::milliseconds(1), "aaa"));
        assert_eq!(parse_folder_name("garbage"), None);
        assert_eq!(account_region_prefix("", "1", "r"), "1/r/");
        assert_eq!(part_key("a/", 7), "a/part-00007.sbk");
    }

    #[test]
    fn spooled_manifest_parses_and_holds_no_values() {
        let record = SecretRecord {
            meta: SecretMeta {
                name: "app/db".into(),
                arn: "arn:x".into(),
                ..Default::default()
            },
            versions: vec![VersionRecord {
                version_id: "v1".into(),
                labels: vec!["AWSCURRENT".into()],
                created: None,
                value: SecretValue::string("s3cr3t-value"),
            }],
        };
        let mut spool = ManifestSpool::new().unwrap();
        for part in 1..=3 {
            spool.add(&ManifestSecret::of(&record, part)).unwrap();
        }
        let head = ManifestHead {
            format_version: 1,
            snapshot_id: "id".into(),
            folder: "p/".into(),
            started_at: Utc::now(),
            completed_at: Utc::now(),
            source: Source {
                account_id: "1".into(),
                region: "r".into(),
            },
            destination: Destination {
                bucket: "b".into(),
                region: "r".into(),
                role_arn: None,
            },
            kms_key_id: "k".into(),
            filters: Filters::default(),
            part_size: 1024,
            summary: Summary::default(),
            parts: vec![],
            failures: vec![],
            skipped: vec![],
        };
        let file = spool.finish(&head).unwrap();
        let text = std::fs::read_to_string(file.path()).unwrap();
        assert!(!text.contains("s3cr3t"));
        let m: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(m.head, head);
        assert_eq!(m.secrets.len(), 3);
        assert_eq!(m.secrets[2].part, 3);
        assert_eq!(m.secrets[0].versions[0].size, 12);

        let empty = ManifestSpool::new().unwrap().finish(&head).unwrap();
        let m: Manifest =
            serde_json::from_str(&std::fs::read_to_string(empty.path()).unwrap()).unwrap();
        assert!(m.secrets.is_empty());
    }
}
