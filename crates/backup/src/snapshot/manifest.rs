//! The manifest: everything about a snapshot except the values.
//!
//! It holds names, ARNs, version ids, labels, sizes, the source of each secret, which part
//! holds it, each part's size, SHA-256 and S3 version id, the secrets that could not be read
//! with the reason, and the link to the previous snapshot of the same source (`previous`: its id
//! and the SHA-256 of its manifest, a hash chain). The manifest's exact bytes are signed with
//! KMS ([`crate::snapshot::signature`]); readers check that signature before trusting any of
//! it. Layout of the objects: [`crate::snapshot::layout`].

use std::io::{BufWriter, Seek, SeekFrom, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::filters::Filters;
use crate::domain::model::{SecretRecord, SourceKind, ValueKind};

/// Version of the manifest format this code writes and reads.
/// (2: signed, with part version ids and the hash chain; 1 was unsigned.)
pub const MANIFEST_FORMAT_VERSION: u32 = 2;

/// The account and region whose secrets the snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The account id.
    pub account_id: String,
    /// The region.
    pub region: String,
}

/// Where the snapshot was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// The bucket.
    pub bucket: String,
    /// Its region.
    pub region: String,
    /// The role assumed to write it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// A snapshot's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Secrets in the snapshot.
    pub secrets: u64,
    /// Versions in the snapshot.
    pub versions: u64,
    /// Bytes of secret values (not of the encoded parts).
    pub value_bytes: u64,
    /// Number of parts.
    pub parts: u64,
    /// Bytes of the part objects as stored.
    pub stored_bytes: u64,
    /// Secrets that could not be read.
    pub failures: u64,
    /// Secrets deleted between listing and reading.
    pub skipped: u64,
    /// Secrets read from Secrets Manager in this run (absent in manifests written before
    /// incremental runs).
    #[serde(default)]
    pub read: u64,
    /// Secrets unchanged since the previous snapshot, carried over from its parts (re-sealed
    /// under this snapshot's keys) instead of read again.
    #[serde(default)]
    pub carried_over: u64,
}

/// One part object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartEntry {
    /// Its number, from 1.
    pub number: u32,
    /// Its key.
    pub key: String,
    /// Object size in bytes.
    pub size: u64,
    /// SHA-256 (hex) of the object as stored.
    pub sha256: String,
    /// The S3 version id PutObject gave it (absent on an unversioned bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Secrets it holds.
    pub secrets: u64,
}

/// The link of a snapshot to the previous one of the same source account and region under the
/// same prefix: a hash chain through the signed manifests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainLink {
    /// The previous snapshot's id.
    pub snapshot_id: String,
    /// Its folder (key prefix, ending in `/`).
    pub folder: String,
    /// SHA-256 (hex) of its manifest's bytes.
    pub manifest_sha256: String,
}

/// A secret that is not in the snapshot, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The secret's name (`*` when listing itself failed).
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Why it is not in the snapshot.
    pub reason: String,
    /// Whether the deployment expected it to be unreadable (`BACKUP_EXPECTED_UNREADABLE`): such
    /// a failure does not make the snapshot incomplete, nor pass it over when choosing one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expected: bool,
}

/// A version as the manifest records it (no value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestVersion {
    /// The version id.
    pub version_id: String,
    /// Its staging labels.
    pub labels: Vec<String>,
    /// Size of its value in bytes.
    pub size: u64,
    /// String or binary.
    pub kind: ValueKind,
}

/// A secret as the manifest records it (no value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestSecret {
    /// The service the secret was read from (absent in manifests written before sources
    /// existed, which read as Secrets Manager).
    #[serde(default)]
    pub source: SourceKind,
    /// The secret's name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// The part that holds it.
    pub part: u32,
    /// When it last changed, as Secrets Manager reported it (what the next run compares to
    /// carry it over; absent in manifests written before incremental runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_changed: Option<DateTime<Utc>>,
    /// Its labelled versions.
    pub versions: Vec<ManifestVersion>,
}

impl ManifestSecret {
    /// The manifest entry of `record`, stored in `part`.
    pub fn of(record: &SecretRecord, part: u32) -> Self {
        ManifestSecret {
            source: record.source,
            name: record.meta.name.clone(),
            arn: record.meta.arn.clone(),
            part,
            last_changed: record.meta.last_changed,
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
    /// [`MANIFEST_FORMAT_VERSION`].
    pub format_version: u32,
    /// The snapshot id.
    pub snapshot_id: String,
    /// Key prefix of the snapshot, ending in `/`.
    pub folder: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When the run finished.
    pub completed_at: DateTime<Utc>,
    /// The account and region of the secrets.
    pub source: Source,
    /// Where the snapshot was written.
    pub destination: Destination,
    /// KMS key that wraps the parts' data keys.
    pub kms_key_id: String,
    /// KMS key that signs the manifest.
    pub signing_key_id: String,
    /// The previous verified snapshot of the same source (`None`: the first one).
    pub previous: Option<ChainLink>,
    /// Which secrets the run covered.
    pub filters: Filters,
    /// The configured part size.
    pub part_size: u64,
    /// The totals.
    pub summary: Summary,
    /// Every part.
    pub parts: Vec<PartEntry>,
    /// Secrets that could not be read.
    pub failures: Vec<Failure>,
    /// Secrets listed but deleted before they could be read (not failures).
    pub skipped: Vec<Failure>,
}

/// A snapshot's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Everything but the per-secret list (flattened).
    #[serde(flatten)]
    pub head: ManifestHead,
    /// Every secret in the snapshot.
    pub secrets: Vec<ManifestSecret>,
}

impl ManifestHead {
    /// What each part's encryption context and associated data are bound to.
    pub fn scope(&self) -> crate::snapshot::crypto::Scope {
        crate::snapshot::crypto::Scope::new(
            &self.snapshot_id,
            &self.source.account_id,
            &self.source.region,
            self.started_at,
        )
    }
}

impl Manifest {
    /// The part numbered `number`.
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
    /// An empty spool in a temporary file.
    pub fn new() -> std::io::Result<Self> {
        Ok(ManifestSpool {
            entries: BufWriter::new(tempfile::tempfile()?),
            count: 0,
        })
    }

    /// Appends a secret's entry.
    pub fn add(&mut self, secret: &ManifestSecret) -> std::io::Result<()> {
        if self.count > 0 {
            self.entries.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut self.entries, secret)?;
        self.count += 1;
        Ok(())
    }

    /// Every entry so far, read back from the spool (a checkpoint records them).
    pub fn entries(&mut self) -> std::io::Result<Vec<ManifestSecret>> {
        use std::io::Read;
        self.entries.flush()?;
        let file = self.entries.get_mut();
        let end = file.stream_position()?;
        file.seek(SeekFrom::Start(0))?;
        let mut text = Vec::with_capacity(end as usize + 2);
        text.push(b'[');
        (&mut *file).take(end).read_to_end(&mut text)?;
        text.push(b']');
        file.seek(SeekFrom::Start(end))?;
        Ok(serde_json::from_slice(&text)?)
    }

    /// Entries so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// No entry yet.
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
    use crate::domain::model::{SecretMeta, SecretValue, VersionRecord};

    #[test]
    fn spooled_manifest_parses_and_holds_no_values() {
        let record = SecretRecord {
            source: SourceKind::SecretsManager,
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
            signing_key_id: "s".into(),
            previous: None,
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

    #[test]
    fn every_record_names_its_source_and_old_manifests_read_as_secrets_manager() {
        let entry = ManifestSecret {
            source: SourceKind::SecretsManager,
            name: "app/db".into(),
            arn: "arn:x".into(),
            part: 1,
            last_changed: None,
            versions: vec![],
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["source"], "secretsmanager");
        assert_eq!(
            serde_json::from_value::<ManifestSecret>(json).unwrap(),
            entry
        );
        // Written before the `source` field existed.
        let old: ManifestSecret = serde_json::from_str(
            r#"{"name": "app/db", "arn": "arn:x", "part": 1, "versions": []}"#,
        )
        .unwrap();
        assert_eq!(old.source, SourceKind::SecretsManager);
        assert_eq!(old, entry);
        let old_record: SecretRecord =
            serde_json::from_str(r#"{"name": "app/db", "arn": "arn:x", "versions": []}"#).unwrap();
        assert_eq!(old_record.source, SourceKind::SecretsManager);
        let new_record = serde_json::to_value(&old_record).unwrap();
        assert_eq!(new_record["source"], "secretsmanager");
        // An unknown source is an error, never silently Secrets Manager.
        assert!(serde_json::from_str::<ManifestSecret>(
            r#"{"source": "ssm", "name": "a", "arn": "b", "part": 1, "versions": []}"#
        )
        .is_err());
    }
}
