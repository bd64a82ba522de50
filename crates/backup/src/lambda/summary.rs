//! The function's run summaries: its JSON output and the summary fields of its metrics line,
//! derived with serde (field order is the output's).
//!
//! A backup's summary reads `message`, `snapshotId`, `trigger`, `outcome`, then either `error` or
//! what was written (`location`, `manifest`, `filters`, `storedBytes`, `parts`, `skipped`,
//! `failedSecrets`), then, in the output only, the totals (`secrets`, `versions`, `bytes`,
//! `durationMs`). A verify's reads `message`, `snapshotId`, `location`, `trigger`, `outcome`,
//! `counts`, `differences`, `failedParts`, `manifestProblems`, then in the output `durationMs`.
//! No field ever holds a secret value: names, ids, counts and error messages only.

use serde::Serialize;

use crate::domain::filters::Filters;
use crate::lambda::event::Trigger;
use crate::operations::diff::Status;
use crate::operations::verify::Counts;

/// What an invocation returns.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum RunSummary {
    /// Mode `backup`.
    Backup(BackupSummary),
    /// Mode `verify`.
    Verify(VerifySummary),
    /// Mode `sources`.
    Sources(SourcesSummary),
}

/// Mode `sources`: what the state machine fans out over.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourcesSummary {
    /// "N source(s) to back up".
    pub message: String,
    /// Every account × region, in a stable order.
    pub sources: Vec<crate::domain::sources::SourceRef>,
}

/// How a backup ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupOutcome {
    /// Every selected secret is in the snapshot.
    Complete,
    /// The snapshot was written, but some secrets could not be read.
    Incomplete,
    /// No snapshot was completed.
    Error,
    /// The deadline was near: the run left a checkpoint and continues in the next invocation
    /// (the state machine of `template.yaml` invokes the function again at once).
    Continue,
}

/// A backup run.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    /// Always `backup summary`.
    pub message: &'static str,
    /// The snapshot's id.
    pub snapshot_id: String,
    /// What invoked the function.
    pub trigger: Trigger,
    /// How the run ended.
    pub outcome: BackupOutcome,
    /// Why no snapshot was completed (outcome `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was written (absent with outcome `error`).
    #[serde(flatten)]
    pub written: Option<Written>,
    /// Secrets read from Secrets Manager and carried over from the previous snapshot (absent
    /// with outcome `error`).
    #[serde(flatten)]
    pub read_path: Option<ReadPath>,
    /// Where a run that continues stopped (outcome `continue`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The totals (in the function's output, not in the metrics line, which has them as
    /// metrics).
    #[serde(flatten)]
    pub totals: Option<Totals>,
}

/// How the secrets of a run were obtained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadPath {
    /// Read from Secrets Manager.
    pub read: u64,
    /// Unchanged since the previous verified snapshot, carried over from its parts.
    pub carried_over: u64,
    /// Invocations the run took (more than 1 after checkpoints).
    pub invocations: u32,
}

impl BackupSummary {
    /// A summary of snapshot `snapshot_id`, started by `trigger`, that ended as `outcome`.
    pub fn new(snapshot_id: String, trigger: Trigger, outcome: BackupOutcome) -> Self {
        BackupSummary {
            message: "backup summary",
            snapshot_id,
            trigger,
            outcome,
            error: None,
            written: None,
            read_path: None,
            checkpoint: None,
            totals: None,
        }
    }
}

/// What a backup wrote.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    /// `s3://bucket/folder/`.
    pub location: String,
    /// Key of the manifest.
    pub manifest: String,
    /// The filters the run applied.
    pub filters: Filters,
    /// Bytes of the part objects.
    pub stored_bytes: u64,
    /// Number of parts.
    pub parts: u64,
    /// Secrets deleted between listing and reading.
    pub skipped: u64,
    /// Secrets that could not be read.
    pub failed_secrets: Vec<FailedSecret>,
}

/// A secret that is not in the snapshot.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedSecret {
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
    /// Listed in `BACKUP_EXPECTED_UNREADABLE`: does not fail the run.
    pub expected: bool,
}

/// A complete backup's totals.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Secrets in the snapshot.
    pub secrets: u64,
    /// Versions in the snapshot.
    pub versions: u64,
    /// Bytes of secret values.
    pub bytes: u64,
    /// How long the run took.
    pub duration_ms: f64,
}

/// How a verify ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum VerifyOutcome {
    /// Every part passed every check.
    #[serde(rename = "intact")]
    Intact,
    /// A part or the manifest failed a check.
    #[serde(rename = "integrity-failure")]
    IntegrityFailure,
}

/// A verify run (restore drill).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifySummary {
    /// Always `verify summary`.
    pub message: &'static str,
    /// The snapshot's id.
    pub snapshot_id: String,
    /// `s3://bucket/folder/`.
    pub location: String,
    /// What invoked the function.
    pub trigger: Trigger,
    /// Whether the snapshot is intact.
    pub outcome: VerifyOutcome,
    /// How many secrets are in each state.
    pub counts: Counts,
    /// Every secret that is not unchanged.
    pub differences: Vec<Difference>,
    /// The parts that failed a check.
    pub failed_parts: Vec<FailedPart>,
    /// Secrets that could not be checked (their live state could not be read, or their part is
    /// missing from the part list), by name: with `differences` and `failedParts`, what tells
    /// which secrets of the snapshot this drill verified (`secrets-backup report`).
    pub unverified: Vec<String>,
    /// The name patterns the drill compared (`namePrefixes` of the event; empty: every secret).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub name_prefixes: Vec<String>,
    /// Inconsistencies of the manifest itself (part list) and of the chain.
    pub manifest_problems: Vec<String>,
    /// Newer snapshots passed over when this one was chosen (no manifest, or one that does not
    /// verify), each named with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// How long the run took (in the function's output only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

/// A secret whose live state differs from the snapshot.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// Its name.
    pub name: String,
    /// Changed, missing or new.
    pub status: Status,
    /// What differs.
    pub detail: String,
}

/// A part that failed a check.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedPart {
    /// Its number.
    pub part: u32,
    /// Its key.
    pub key: String,
    /// What failed.
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_backup_summary_keeps_its_shape_and_order() {
        let mut s = BackupSummary::new("id".into(), Trigger::Direct, BackupOutcome::Complete);
        s.written = Some(Written {
            location: "s3://b/f/".into(),
            manifest: "f/manifest.json".into(),
            filters: Filters::default(),
            stored_bytes: 10,
            parts: 1,
            skipped: 0,
            failed_secrets: vec![],
        });
        let line = serde_json::to_string(&s).unwrap();
        assert_eq!(
            line,
            r#"{"message":"backup summary","snapshotId":"id","trigger":{"type":"direct"},"outcome":"complete","location":"s3://b/f/","manifest":"f/manifest.json","filters":{},"storedBytes":10,"parts":1,"skipped":0,"failedSecrets":[]}"#
        );
        s.totals = Some(Totals {
            secrets: 3,
            versions: 4,
            bytes: 5,
            duration_ms: 6.0,
        });
        let v = serde_json::to_value(RunSummary::Backup(s)).unwrap();
        assert_eq!(v["secrets"], 3);
        assert_eq!(v["durationMs"], 6.0);
        let mut failed = BackupSummary::new("id".into(), Trigger::Direct, BackupOutcome::Error);
        failed.error = Some("denied".into());
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            json!({"message": "backup summary", "snapshotId": "id", "trigger": {"type": "direct"},
                   "outcome": "error", "error": "denied"})
        );
    }

    #[test]
    fn a_verify_summary_names_its_outcome() {
        let s = VerifySummary {
            message: "verify summary",
            snapshot_id: "id".into(),
            location: "s3://b/f/".into(),
            trigger: Trigger::Direct,
            outcome: VerifyOutcome::IntegrityFailure,
            counts: Counts::default(),
            differences: vec![],
            failed_parts: vec![FailedPart {
                part: 2,
                key: "f/part-00002.sbk".into(),
                problems: vec!["SHA-256 mismatch".into()],
            }],
            unverified: vec!["app/unreadable".into()],
            name_prefixes: vec![],
            manifest_problems: vec![],
            warnings: vec![],
            duration_ms: None,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["outcome"], "integrity-failure");
        assert_eq!(v["failedParts"][0]["part"], 2);
        assert_eq!(v["unverified"], json!(["app/unreadable"]));
        assert!(v.get("durationMs").is_none() && v.get("namePrefixes").is_none());
    }
}
