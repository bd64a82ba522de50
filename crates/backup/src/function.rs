//! The Lambda function's logic, independent of the Lambda runtime: one event in, a summary out,
//! or an error with a type the runtime reports (so the invocation fails and alarms fire).

use std::fmt;
use std::time::Instant;

use chrono::Utc;
use serde_json::{json, Map, Value};

use crate::config::{BackupConfig, Mode, NamePattern};
use crate::event::{self, Request, Trigger};
use crate::format::{Destination, Source};
use crate::metrics::{emf_line, Unit};
use crate::ports::{Identity, KeyService, ObjectStore, SecretsApi};
use crate::reader::{list_snapshots, load_manifest, select, Selector};
use crate::verify::{verify, ReadPorts};
use crate::writer::{run_backup, BackupParams, BackupPorts};

/// A failed invocation: `error_type` becomes the Lambda error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationError {
    pub error_type: &'static str,
    pub message: String,
}

impl InvocationError {
    fn new(error_type: &'static str, message: impl Into<String>) -> Self {
        InvocationError {
            error_type,
            message: message.into(),
        }
    }
}

impl fmt::Display for InvocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for InvocationError {}

impl From<InvocationError> for lambda_runtime::Diagnostic {
    fn from(e: InvocationError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type.to_string(),
            error_message: e.message,
        }
    }
}

pub struct Function {
    pub config: BackupConfig,
    pub secrets: Box<dyn SecretsApi>,
    pub store: Box<dyn ObjectStore>,
    pub keys: Box<dyn KeyService>,
    pub identity: Box<dyn Identity>,
    pub source_region: String,
    pub destination_region: String,
    pub metrics_namespace: String,
    /// Where the summary (EMF) line goes: stdout in Lambda.
    pub emit: Box<dyn Fn(&str) + Send + Sync>,
}

fn trigger_json(t: &Trigger) -> Value {
    match t {
        Trigger::EventBridge {
            detail_type,
            resources,
        } => json!({"type": "eventbridge", "detailType": detail_type, "resources": resources}),
        Trigger::Direct => json!({"type": "direct"}),
    }
}

const MAX_NAMED_FAILURES: usize = 20;

impl Function {
    pub async fn handle(&self, event: Value) -> Result<Value, InvocationError> {
        let started = Instant::now();
        let request = event::parse(&event)
            .map_err(|e| InvocationError::new("InvalidEvent", e.to_string()))?;
        let account = self
            .identity
            .account_id()
            .await
            .map_err(|e| InvocationError::new("SourceAccountUnknown", format!("STS: {e}")))?;
        match request.mode {
            Mode::Backup => self.backup(&request, account, started).await,
            Mode::Verify => self.verify(&request, account, started).await,
        }
    }

    fn emit(&self, mode: &str, metrics: &[(&str, f64, Unit)], summary: &Map<String, Value>) {
        let line = emf_line(
            &self.metrics_namespace,
            mode,
            Utc::now().timestamp_millis(),
            metrics,
            summary.clone(),
        );
        (self.emit)(&line);
    }

    async fn backup(
        &self,
        request: &Request,
        account: String,
        started: Instant,
    ) -> Result<Value, InvocationError> {
        let kms_key_id = self.config.kms_key_id.clone().ok_or_else(|| {
            InvocationError::new("ConfigurationError", "BACKUP_KMS_KEY_ID is not set")
        })?;
        let params = BackupParams {
            snapshot_id: uuid::Uuid::new_v4().to_string(),
            started_at: Utc::now(),
            prefix: self.config.prefix.clone(),
            source: Source {
                account_id: account,
                region: self.source_region.clone(),
            },
            destination: Destination {
                bucket: self.config.bucket.clone(),
                region: self.destination_region.clone(),
                role_arn: self.config.role_arn.clone(),
            },
            kms_key_id,
            filters: request.effective_filters(&self.config.filters).clone(),
            concurrency: self.config.concurrency,
            part_size: self.config.part_size,
        };
        let ports = BackupPorts {
            secrets: self.secrets.as_ref(),
            store: self.store.as_ref(),
            keys: self.keys.as_ref(),
        };
        let result = run_backup(ports, &params).await;
        let duration_ms = started.elapsed().as_millis() as f64;
        let mut summary = Map::new();
        summary.insert("message".into(), json!("backup summary"));
        summary.insert("snapshotId".into(), json!(params.snapshot_id));
        summary.insert("trigger".into(), trigger_json(&request.trigger));
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                summary.insert("outcome".into(), json!("error"));
                summary.insert("error".into(), json!(e.to_string()));
                self.emit(
                    "backup",
                    &[
                        ("Errors", 1.0, Unit::Count),
                        ("DurationMs", duration_ms, Unit::Milliseconds),
                    ],
                    &summary,
                );
                return Err(InvocationError::new("SnapshotNotWritten", e.to_string()));
            }
        };
        let s = &report.head.summary;
        let failures = &report.head.failures;
        summary.insert(
            "outcome".into(),
            json!(if failures.is_empty() {
                "complete"
            } else {
                "incomplete"
            }),
        );
        summary.insert("location".into(), json!(report.location()));
        summary.insert("manifest".into(), json!(report.manifest_key));
        summary.insert("filters".into(), json!(params.filters));
        summary.insert("storedBytes".into(), json!(s.stored_bytes));
        summary.insert("parts".into(), json!(s.parts));
        summary.insert("skipped".into(), json!(s.skipped));
        summary.insert(
            "failedSecrets".into(),
            json!(failures
                .iter()
                .map(|f| json!({"name": f.name, "reason": f.reason}))
                .collect::<Vec<_>>()),
        );
        self.emit(
            "backup",
            &[
                ("Secrets", s.secrets as f64, Unit::Count),
                ("Versions", s.versions as f64, Unit::Count),
                ("Bytes", s.value_bytes as f64, Unit::Bytes),
                ("Failures", s.failures as f64, Unit::Count),
                ("DurationMs", duration_ms, Unit::Milliseconds),
            ],
            &summary,
        );
        if !failures.is_empty() {
            let mut names: Vec<String> = failures
                .iter()
                .take(MAX_NAMED_FAILURES)
                .map(|f| format!("{} ({})", f.name, f.reason))
                .collect();
            if failures.len() > MAX_NAMED_FAILURES {
                names.push(format!("and {} more", failures.len() - MAX_NAMED_FAILURES));
            }
            return Err(InvocationError::new(
                "SnapshotIncomplete",
                format!(
                    "snapshot {} at {} holds {} secret(s) but {} could not be read: {}",
                    params.snapshot_id,
                    report.location(),
                    s.secrets,
                    failures.len(),
                    names.join("; ")
                ),
            ));
        }
        summary.insert("secrets".into(), json!(s.secrets));
        summary.insert("versions".into(), json!(s.versions));
        summary.insert("bytes".into(), json!(s.value_bytes));
        summary.insert("durationMs".into(), json!(duration_ms));
        Ok(Value::Object(summary))
    }

    async fn verify(
        &self,
        request: &Request,
        account: String,
        started: Instant,
    ) -> Result<Value, InvocationError> {
        let patterns: Vec<NamePattern> = match &request.filters {
            Some(f) if !f.tags.is_empty() => {
                return Err(InvocationError::new(
                    "InvalidEvent",
                    "verify mode takes namePrefixes only (the snapshot's own filters apply)",
                ))
            }
            Some(f) => f.name_prefixes.iter().map(NamePattern::new).collect(),
            None => vec![],
        };
        let snapshots = list_snapshots(
            self.store.as_ref(),
            &self.config.prefix,
            &account,
            &self.source_region,
        )
        .await
        .map_err(|e| InvocationError::new("SnapshotListFailed", e.to_string()))?;
        let selector = request
            .snapshot
            .as_deref()
            .map(Selector::parse)
            .unwrap_or(Selector::Latest);
        let location = format!(
            "s3://{}/{}",
            self.config.bucket,
            crate::format::account_region_prefix(
                &self.config.prefix,
                &account,
                &self.source_region
            )
        );
        let info = select(&snapshots, &selector, &location)
            .map_err(|e| InvocationError::new("SnapshotNotFound", e.to_string()))?;
        let manifest = load_manifest(self.store.as_ref(), info)
            .await
            .map_err(|e| InvocationError::new("ManifestInvalid", e.to_string()))?;
        let ports = ReadPorts {
            secrets: self.secrets.as_ref(),
            store: self.store.as_ref(),
            keys: self.keys.as_ref(),
        };
        let report = verify(
            ports,
            &manifest,
            true,
            &patterns,
            self.config.concurrency,
            &|_, _| {},
        )
        .await
        .map_err(|e| {
            InvocationError::new(
                "VerifyFailed",
                format!("snapshot {}: {e}", manifest.head.snapshot_id),
            )
        })?;
        let duration_ms = started.elapsed().as_millis() as f64;
        let failed_parts = report.failed_parts();
        let mut summary = Map::new();
        summary.insert("message".into(), json!("verify summary"));
        summary.insert("snapshotId".into(), json!(report.snapshot_id));
        summary.insert(
            "location".into(),
            json!(format!("s3://{}/{}", self.config.bucket, report.folder)),
        );
        summary.insert("trigger".into(), trigger_json(&request.trigger));
        summary.insert(
            "outcome".into(),
            json!(if report.integrity_ok() {
                "intact"
            } else {
                "integrity-failure"
            }),
        );
        summary.insert("counts".into(), json!(report.counts));
        summary.insert(
            "differences".into(),
            json!(report
                .differences
                .iter()
                .map(|d| json!({"name": d.name, "status": d.status, "detail": d.detail()}))
                .collect::<Vec<_>>()),
        );
        summary.insert(
            "failedParts".into(),
            json!(failed_parts
                .iter()
                .map(|p| json!({"part": p.part, "key": p.key, "problems": p.problems}))
                .collect::<Vec<_>>()),
        );
        summary.insert("manifestProblems".into(), json!(report.manifest_problems));
        self.emit(
            "verify",
            &[
                ("PartsChecked", report.parts.len() as f64, Unit::Count),
                ("IntegrityFailures", failed_parts.len() as f64, Unit::Count),
                ("SecretsChanged", report.counts.changed as f64, Unit::Count),
                ("SecretsMissing", report.counts.missing as f64, Unit::Count),
                ("SecretsNew", report.counts.new as f64, Unit::Count),
                (
                    "SecretsUnverified",
                    report.counts.unverified as f64,
                    Unit::Count,
                ),
                ("DurationMs", duration_ms, Unit::Milliseconds),
            ],
            &summary,
        );
        if !report.integrity_ok() {
            let mut problems: Vec<String> = failed_parts
                .iter()
                .map(|p| format!("part {} ({}): {}", p.part, p.key, p.problems.join("; ")))
                .collect();
            problems.extend(report.manifest_problems.iter().cloned());
            return Err(InvocationError::new(
                "IntegrityFailure",
                format!("snapshot {}: {}", report.snapshot_id, problems.join(" | ")),
            ));
        }
        summary.insert("durationMs".into(), json!(duration_ms));
        Ok(Value::Object(summary))
    }
}
