//! Verify a snapshot: the part list of its (signed) manifest, every part's size, SHA-256, S3
//! version id, header, KMS key and context and GCM tag, its content against the manifest, and
//! (optionally) every secret against its live state. The signature and the chain are checked
//! before, when the snapshot is chosen (`crate::snapshot::trust`); their problems join
//! `manifest_problems`.

use std::collections::HashSet;

use futures::StreamExt;
use serde::Serialize;

use crate::domain::filters::{matches_any, NamePattern};
use crate::operations::diff::{self, new_secrets, SecretDiff, Status};
use crate::operations::Progress;
use crate::ports::{ApiError, Ports};
use crate::snapshot::manifest::{Failure, Manifest};
use crate::snapshot::reader::{read_part, PartCheck};
use crate::snapshot::trust::part_list_problems;

/// How many secrets of the snapshot are in each state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Live equals the snapshot.
    pub unchanged: u64,
    /// Live differs.
    pub changed: u64,
    /// Deleted (or scheduled for deletion) since.
    pub missing: u64,
    /// Live but not in the snapshot.
    pub new: u64,
    /// Could not be checked.
    pub unverified: u64,
}

/// What verify found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// The snapshot id.
    pub snapshot_id: String,
    /// Its key prefix.
    pub folder: String,
    /// When it was taken.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Secrets the manifest lists.
    pub secrets_in_snapshot: u64,
    /// The checks of every part.
    pub parts: Vec<PartCheck>,
    /// Whether the live comparison ran.
    pub compared_live: bool,
    /// Every secret that is not unchanged (changed, missing, new), sorted by name.
    pub differences: Vec<SecretDiff>,
    /// Secrets that could not be checked: their part failed, or their live state could not be
    /// read.
    pub unverified: Vec<Failure>,
    /// Secrets the backup could not read (from the manifest).
    pub backup_failures: Vec<Failure>,
    /// Inconsistencies of the manifest itself (part list) and of the chain.
    pub manifest_problems: Vec<String>,
    /// Newer snapshots passed over when this one was chosen, each named with why.
    pub warnings: Vec<String>,
    /// How many secrets are in each state.
    pub counts: Counts,
}

impl VerifyReport {
    /// Every part passed every check and the manifest is consistent.
    pub fn integrity_ok(&self) -> bool {
        self.parts.iter().all(PartCheck::ok) && self.manifest_problems.is_empty()
    }

    /// The parts that failed a check.
    pub fn failed_parts(&self) -> Vec<&PartCheck> {
        self.parts.iter().filter(|p| !p.ok()).collect()
    }

    /// Live differs from the snapshot (changed, missing or new secrets).
    pub fn drift(&self) -> bool {
        self.counts.changed + self.counts.missing + self.counts.new > 0
    }
}

/// Check every part of `manifest`; with `compare_live`, compare every secret that matches
/// `patterns` with its live state, and list live secrets that are not in the snapshot.
pub async fn verify(
    ports: Ports<'_>,
    manifest: &Manifest,
    compare_live: bool,
    patterns: &[NamePattern],
    concurrency: usize,
    progress: Progress<'_>,
) -> Result<VerifyReport, ApiError> {
    let mut report = VerifyReport {
        snapshot_id: manifest.head.snapshot_id.clone(),
        folder: manifest.head.folder.clone(),
        started_at: manifest.head.started_at,
        secrets_in_snapshot: manifest.secrets.len() as u64,
        parts: vec![],
        compared_live: compare_live,
        differences: vec![],
        unverified: vec![],
        backup_failures: manifest.head.failures.clone(),
        manifest_problems: part_list_problems(manifest),
        warnings: vec![],
        counts: Counts::default(),
    };
    let total = manifest.head.parts.len();
    let listed_parts: HashSet<u32> = manifest.head.parts.iter().map(|p| p.number).collect();
    for (i, part) in manifest.head.parts.iter().enumerate() {
        let (check, records) = read_part(ports.store, ports.keys, manifest, part).await;
        let ok = check.ok();
        report.parts.push(check);
        match records {
            Some(records) if compare_live => {
                let results: Vec<Result<SecretDiff, Failure>> = futures::stream::iter(
                    records
                        .iter()
                        .filter(|r| matches_any(patterns, &r.meta.name)),
                )
                .map(|r| async move {
                    match diff::fetch_live(ports.secrets_of(r.source), &r.meta.name).await {
                        Ok(live) => Ok(diff::compare(r, &live)),
                        Err(e) => Err(Failure {
                            name: r.meta.name.clone(),
                            arn: r.meta.arn.clone(),
                            reason: format!("reading the live secret: {e}"),
                            expected: false,
                        }),
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
                for d in results {
                    let d = match d {
                        Ok(d) => d,
                        Err(f) => {
                            report.unverified.push(f);
                            continue;
                        }
                    };
                    match d.status {
                        Status::Unchanged => report.counts.unchanged += 1,
                        Status::Changed => report.counts.changed += 1,
                        Status::Missing => report.counts.missing += 1,
                        Status::New => report.counts.new += 1,
                    }
                    if d.status != Status::Unchanged {
                        report.differences.push(d);
                    }
                }
            }
            Some(_) => {}
            None => {
                debug_assert!(!ok);
                report.unverified.extend(
                    manifest
                        .secrets
                        .iter()
                        .filter(|s| s.part == part.number && matches_any(patterns, &s.name))
                        .map(|s| Failure {
                            name: s.name.clone(),
                            arn: s.arn.clone(),
                            reason: format!("part {} failed its checks", part.number),
                            expected: false,
                        }),
                );
            }
        }
        progress(i + 1, total);
    }
    // Secrets the manifest places in parts it does not list.
    for s in manifest
        .secrets
        .iter()
        .filter(|s| !listed_parts.contains(&s.part))
    {
        let reason = format!(
            "manifest places it in part {}, which it does not list",
            s.part
        );
        report
            .manifest_problems
            .push(format!("secret {}: {reason}", s.name));
        if matches_any(patterns, &s.name) {
            report.unverified.push(Failure {
                name: s.name.clone(),
                arn: s.arn.clone(),
                reason,
                expected: false,
            });
        }
    }
    report.counts.unverified = report.unverified.len() as u64;
    if compare_live {
        let mut new = new_secrets(ports.secrets, manifest, patterns).await?;
        new.extend(diff::new_parameters(ports.parameters, manifest, patterns).await?);
        for name in new {
            report.counts.new += 1;
            report.differences.push(SecretDiff::new_secret(&name));
        }
    }
    report.differences.sort_by(|a, b| a.name.cmp(&b.name));
    report.unverified.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(report)
}
