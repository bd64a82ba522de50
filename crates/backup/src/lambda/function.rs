//! The Lambda function's logic, independent of the Lambda runtime: one event in, a typed
//! summary out, or an [`InvocationError`] with a type the runtime reports (so the invocation
//! fails and alarms fire).

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use lambda_support::InvocationError;
use serde_json::Value;

use crate::domain::filters::NamePattern;
use crate::domain::sources::{SourceAccounts, SourceRef};
use crate::lambda::config::BackupConfig;
use crate::lambda::event::{self, Mode, Request};
use crate::lambda::lease::{self, LeaseError, LeaseSource};
use crate::lambda::metrics::{emf_line, Metric, Unit};
use crate::lambda::summary::{
    BackupOutcome, BackupSummary, Difference, FailedPart, FailedSecret, ReadPath, RunSummary,
    SourcesSummary, Totals, VerifyOutcome, VerifySummary, Written,
};
use crate::operations::verify::verify;
use crate::ports::{Identity, KeyService, ObjectStore, Ports, SecretsApi, SourceAccess};
use crate::snapshot::checkpoint::{self, check_resumable, checkpoint_prefix, Expect};
use crate::snapshot::layout::account_region_prefix;
use crate::snapshot::manifest::{Destination, Source};
use crate::snapshot::reader::{list_snapshots, Selector};
use crate::snapshot::trust::latest_verified;
use crate::snapshot::trust::{chain_problems, select_trusted, ChooseError, Preference};
use crate::snapshot::writer::{run_backup_with, BackupParams, RunControl, RunOutcome};

/// The function: its configuration and its ports, built once per execution environment.
pub struct Function {
    /// From the environment.
    pub config: BackupConfig,
    /// Secrets Manager.
    pub secrets: Arc<dyn SecretsApi>,
    /// The snapshot bucket.
    pub store: Arc<dyn ObjectStore>,
    /// KMS.
    pub keys: Arc<dyn KeyService>,
    /// The source account.
    pub identity: Arc<dyn Identity>,
    /// Region of the secrets.
    pub source_region: String,
    /// Region of the bucket and key.
    pub destination_region: String,
    /// Where the summary (EMF) line goes: stdout in Lambda.
    pub emit: Box<dyn Fn(&str) + Send + Sync>,
    /// A hub's way to its other sources (`BACKUP_SOURCE_ACCOUNTS` set); `None`: the function
    /// backs up its own account and region only.
    pub spokes: Option<Arc<dyn SourceAccess>>,
}

/// The source one invocation reads: the function's own, or a hub's spoke.
struct Src {
    secrets: Arc<dyn SecretsApi>,
    account: String,
    region: String,
}

const MAX_NAMED_FAILURES: usize = 20;

fn duration(started: Instant) -> Metric {
    Metric {
        name: "DurationMs",
        value: started.elapsed().as_millis() as f64,
        unit: Unit::Milliseconds,
    }
}

impl Function {
    /// Handles one event: a backup (the default) or a verify, without a deadline.
    pub async fn handle(&self, event: Value) -> Result<RunSummary, InvocationError> {
        self.handle_until(event, None).await
    }

    /// Handles one event; a backup checkpoints and returns outcome `continue` when less than
    /// `BACKUP_DEADLINE_MARGIN_SECONDS` is left before `deadline` (the invocation's, from the
    /// Lambda context).
    pub async fn handle_until(
        &self,
        event: Value,
        deadline: Option<Instant>,
    ) -> Result<RunSummary, InvocationError> {
        let started = Instant::now();
        let request =
            event::parse(&event).map_err(|e| InvocationError::invalid_event(e.to_string()))?;
        let account = self
            .identity
            .account_id()
            .await
            .map_err(|e| InvocationError::new("SourceAccountUnknown", format!("STS: {e}")))?;
        if request.mode == Mode::Sources {
            return self.sources(&account).await.map(RunSummary::Sources);
        }
        let src = self.open(request.source.as_ref(), account).await?;
        match request.mode {
            Mode::Backup => self
                .backup(&request, &src, started, deadline)
                .await
                .map(RunSummary::Backup),
            Mode::Verify => self
                .verify(&request, &src, started)
                .await
                .map(RunSummary::Verify),
            Mode::Sources => unreachable!("answered above"),
        }
    }

    /// Mode `sources`: every account × region this deployment backs up (the state machine's
    /// list to fan out over). Without `BACKUP_SOURCE_ACCOUNTS`, the function's own.
    async fn sources(&self, own_account: &str) -> Result<SourcesSummary, InvocationError> {
        let own = || SourceRef {
            account: own_account.to_string(),
            region: self.source_region.clone(),
        };
        let sources = match (&self.config.hub, &self.spokes) {
            (Some(hub), Some(spokes)) => {
                let accounts = match &hub.accounts {
                    SourceAccounts::List(list) => list.clone(),
                    SourceAccounts::Organization => {
                        spokes.organization_accounts().await.map_err(|e| {
                            InvocationError::new(
                                "SourcesUnknown",
                                format!("BACKUP_SOURCE_ACCOUNTS=organization: {e}"),
                            )
                        })?
                    }
                };
                hub.sources(&accounts, &self.source_region)
            }
            _ => vec![own()],
        };
        Ok(SourcesSummary {
            message: format!("{} source(s) to back up", sources.len()),
            sources,
        })
    }

    /// The event's source (a hub's spoke, checked against the configuration), or the
    /// function's own account and region.
    async fn open(
        &self,
        source: Option<&SourceRef>,
        own_account: String,
    ) -> Result<Src, InvocationError> {
        let own = |account: String| Src {
            secrets: self.secrets.clone(),
            account,
            region: self.source_region.clone(),
        };
        let Some(source) = source else {
            return Ok(own(own_account));
        };
        if source.account == own_account && source.region == self.source_region {
            return Ok(own(own_account));
        }
        let (Some(hub), Some(spokes)) = (&self.config.hub, &self.spokes) else {
            return Err(InvocationError::invalid_event(format!(
                "field 'source': {source} is not this function's own account and region, and \
                 BACKUP_SOURCE_ACCOUNTS is not set (no hub configuration)"
            )));
        };
        hub.allows(source, &self.source_region)
            .map_err(|e| InvocationError::invalid_event(format!("field 'source': {e}")))?;
        let opened = spokes
            .open(source, &own_account)
            .await
            .map_err(|e| InvocationError::new("SourceUnreachable", e.to_string()))?;
        if opened.account != source.account {
            return Err(InvocationError::new(
                "SourceUnreachable",
                format!(
                    "source {source}: the credentials belong to account {}, not {}",
                    opened.account, source.account
                ),
            ));
        }
        Ok(Src {
            secrets: opened.secrets,
            account: opened.account,
            region: source.region.clone(),
        })
    }

    fn ports<'a>(&'a self, src: &'a Src) -> Ports<'a> {
        Ports {
            secrets: src.secrets.as_ref(),
            store: self.store.as_ref(),
            keys: self.keys.as_ref(),
        }
    }

    fn emit(&self, mode: &str, metrics: &[Metric], summary: &impl serde::Serialize) {
        let line = emf_line(
            &self.config.metrics_namespace,
            mode,
            Utc::now().timestamp_millis(),
            metrics,
            summary,
        );
        (self.emit)(&line);
    }

    async fn backup(
        &self,
        request: &Request,
        src: &Src,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Result<BackupSummary, InvocationError> {
        let kms_key_id = self.config.kms_key_id.clone().ok_or_else(|| {
            InvocationError::new("ConfigurationError", "BACKUP_KMS_KEY_ID is not set")
        })?;
        let params = BackupParams {
            snapshot_id: uuid::Uuid::new_v4().to_string(),
            started_at: Utc::now(),
            prefix: self.config.prefix.clone(),
            source: Source {
                account_id: src.account.clone(),
                region: src.region.clone(),
            },
            destination: Destination {
                bucket: self.config.bucket.clone(),
                region: self.destination_region.clone(),
                role_arn: self.config.role_arn.clone(),
            },
            kms_key_id,
            signing_key_id: self.config.signing_key_id.clone(),
            filters: request.effective_filters(&self.config.filters).clone(),
            concurrency: self.config.concurrency,
            part_size: self.config.part_size,
            expected_unreadable: self.config.expected_unreadable.clone(),
        };
        // One run at a time per source (the lease, `lease.rs`): the function has no reserved
        // concurrency, and a duplicate event or a manual run may arrive while one runs.
        let lease = if self.config.lease_seconds == 0 {
            None
        } else {
            let source = LeaseSource {
                prefix: &self.config.prefix,
                account: &params.source.account_id,
                region: &params.source.region,
            };
            let ttl = chrono::Duration::seconds(self.config.lease_seconds as i64);
            match lease::acquire(
                self.store.as_ref(),
                source,
                &params.snapshot_id,
                params.started_at,
                ttl,
            )
            .await
            {
                Ok(l) => Some(l),
                Err(e) => {
                    let kind = match e {
                        LeaseError::Held { .. } | LeaseError::Raced { .. } => "BackupInProgress",
                        LeaseError::Store { .. } | LeaseError::Unreadable { .. } => "LeaseFailed",
                    };
                    let mut summary = BackupSummary::new(
                        params.snapshot_id.clone(),
                        request.trigger.clone(),
                        BackupOutcome::Error,
                    );
                    summary.error = Some(e.to_string());
                    self.emit(
                        "backup",
                        &[Metric::count("Errors", 1), duration(started)],
                        &summary,
                    );
                    return Err(InvocationError::new(kind, e.to_string()));
                }
            }
        };
        let control = self.run_control(&params, deadline).await;
        let result = run_backup_with(self.ports(src), &params, &control).await;
        if let Some(l) = &lease {
            if let Err(e) = lease::release(self.store.as_ref(), l).await {
                // The claim lapses on its own at its expiry.
                tracing::warn!(error = %e, "could not release the run lease");
            }
        }
        let elapsed = duration(started);
        let report = match result {
            Ok(RunOutcome::Complete(r)) => *r,
            Ok(RunOutcome::Paused(p)) => {
                let mut summary = BackupSummary::new(
                    p.snapshot_id.clone(),
                    request.trigger.clone(),
                    BackupOutcome::Continue,
                );
                summary.read_path = Some(ReadPath {
                    read: p.summary.read,
                    carried_over: p.summary.carried_over,
                    invocations: p.invocations,
                });
                summary.checkpoint = Some(p.checkpoint_key.clone());
                self.emit(
                    "backup",
                    &[
                        Metric::count("Checkpoints", 1),
                        Metric::count("SecretsRead", p.summary.read),
                        Metric::count("SecretsCarriedOver", p.summary.carried_over),
                        elapsed,
                    ],
                    &summary,
                );
                return Ok(summary);
            }
            Err(e) => {
                let mut summary = BackupSummary::new(
                    params.snapshot_id.clone(),
                    request.trigger.clone(),
                    BackupOutcome::Error,
                );
                summary.error = Some(e.to_string());
                self.emit("backup", &[Metric::count("Errors", 1), elapsed], &summary);
                return Err(InvocationError::new("SnapshotNotWritten", e.to_string()));
            }
        };
        let s = &report.head.summary;
        // The writer marked the expected ones in the signed manifest.
        let (expected_failures, failures): (Vec<_>, Vec<_>) =
            report.head.failures.iter().partition(|f| f.expected);
        let mut summary = BackupSummary::new(
            params.snapshot_id.clone(),
            request.trigger.clone(),
            if failures.is_empty() {
                BackupOutcome::Complete
            } else {
                BackupOutcome::Incomplete
            },
        );
        let invocations = control.resume.as_ref().map_or(1, |c| c.invocations + 1);
        summary.read_path = Some(ReadPath {
            read: s.read,
            carried_over: s.carried_over,
            invocations,
        });
        summary.written = Some(Written {
            location: report.location(),
            manifest: report.manifest_key.clone(),
            filters: params.filters.clone(),
            stored_bytes: s.stored_bytes,
            parts: s.parts,
            skipped: s.skipped,
            failed_secrets: report
                .head
                .failures
                .iter()
                .map(|f| FailedSecret {
                    name: f.name.clone(),
                    reason: f.reason.clone(),
                    expected: f.expected,
                })
                .collect(),
        });
        self.emit(
            "backup",
            &[
                Metric::count("Secrets", s.secrets),
                Metric::count("Versions", s.versions),
                Metric {
                    name: "Bytes",
                    value: s.value_bytes as f64,
                    unit: Unit::Bytes,
                },
                // Failures the alarm counts; the expected ones apart.
                Metric::count("Failures", failures.len() as u64),
                Metric::count("ExpectedFailures", expected_failures.len() as u64),
                Metric::count("SecretsRead", s.read),
                Metric::count("SecretsCarriedOver", s.carried_over),
                elapsed,
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
                    "snapshot {} at {} holds {} secret(s) but {} could not be read: {}{}",
                    params.snapshot_id,
                    report.location(),
                    s.secrets,
                    failures.len(),
                    names.join("; "),
                    if expected_failures.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} more expected unreadable: BACKUP_EXPECTED_UNREADABLE)",
                            expected_failures.len()
                        )
                    }
                ),
            ));
        }
        summary.totals = Some(Totals {
            secrets: s.secrets,
            versions: s.versions,
            bytes: s.value_bytes,
            duration_ms: elapsed.value,
        });
        Ok(summary)
    }

    /// The deadline, the page size, and the checkpoint to resume: the last one of the source,
    /// when [`check_resumable`] accepts it (otherwise it is discarded, with a warning).
    async fn run_control(&self, params: &BackupParams, deadline: Option<Instant>) -> RunControl {
        let base = checkpoint_prefix(
            &self.config.prefix,
            &params.source.account_id,
            &params.source.region,
        );
        let mut control = RunControl {
            deadline,
            margin: std::time::Duration::from_secs(self.config.deadline_margin_seconds),
            page_size: self.config.list_page_size,
            resume: None,
            checkpoint_prefix: base.clone(),
        };
        let found = match checkpoint::latest(self.store.as_ref(), &base).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "checkpoints unreadable: starting a new snapshot");
                return control;
            }
        };
        let Some((key, cp)) = found else {
            return control;
        };
        let previous = match latest_verified(
            self.store.as_ref(),
            self.keys.as_ref(),
            &params.signing_key_id,
            &params.prefix,
            &params.source.account_id,
            &params.source.region,
        )
        .await
        {
            Ok((link, _)) => link,
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint {key} not resumed: the chain is unreadable");
                return control;
            }
        };
        let expect = Expect {
            filters: &params.filters,
            kms_key_id: &params.kms_key_id,
            signing_key_id: &params.signing_key_id,
            part_size: params.part_size as u64,
            previous: previous.as_ref(),
            now: Utc::now(),
        };
        match check_resumable(self.store.as_ref(), &cp, expect).await {
            Ok(()) => control.resume = Some(cp),
            Err(why) if why.ends_with("is complete") => {}
            Err(why) => tracing::warn!(
                checkpoint = %key,
                snapshot = %cp.snapshot_id,
                reason = %why,
                "checkpoint discarded: starting a new snapshot"
            ),
        }
        control
    }

    async fn verify(
        &self,
        request: &Request,
        src: &Src,
        started: Instant,
    ) -> Result<VerifySummary, InvocationError> {
        let account = &src.account;
        let patterns: Vec<NamePattern> = match &request.filters {
            Some(f) if !f.tags.is_empty() => {
                return Err(InvocationError::invalid_event(
                    "verify mode takes namePrefixes only (the snapshot's own filters apply)",
                ))
            }
            Some(f) => f.name_prefixes.iter().map(NamePattern::new).collect(),
            None => vec![],
        };
        let snapshots = list_snapshots(
            self.store.as_ref(),
            &self.config.prefix,
            account,
            &src.region,
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
            account_region_prefix(&self.config.prefix, account, &src.region)
        );
        let chosen = select_trusted(
            self.store.as_ref(),
            self.keys.as_ref(),
            &self.config.signing_key_id,
            &snapshots,
            &selector,
            &location,
            Preference {
                filters: Some(&self.config.filters),
            },
        )
        .await
        .map_err(|e| match e {
            ChooseError::Untrusted(e) => InvocationError::new("IntegrityFailure", e.to_string()),
            ChooseError::NoneTrusted { .. } => {
                InvocationError::new("IntegrityFailure", e.to_string())
            }
            e => InvocationError::new("SnapshotNotFound", e.to_string()),
        })?;
        for note in chosen.notes.iter().chain(&chosen.rejected) {
            tracing::warn!(warning = %note, "snapshot passed over");
        }
        let chain = chain_problems(
            self.store.as_ref(),
            self.keys.as_ref(),
            &self.config.signing_key_id,
            &snapshots,
            &chosen.signed,
        )
        .await;
        let manifest = &chosen.signed.manifest;
        let mut report = verify(
            self.ports(src),
            manifest,
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
        report.manifest_problems.extend(chain);
        // A newer snapshot that does not verify is tampering, not a note.
        report
            .manifest_problems
            .extend(chosen.rejected.iter().cloned());
        report.warnings = chosen.notes.clone();
        let elapsed = duration(started);
        let failed_parts = report.failed_parts();
        let mut summary = VerifySummary {
            message: "verify summary",
            snapshot_id: report.snapshot_id.clone(),
            location: format!("s3://{}/{}", self.config.bucket, report.folder),
            trigger: request.trigger.clone(),
            outcome: if report.integrity_ok() {
                VerifyOutcome::Intact
            } else {
                VerifyOutcome::IntegrityFailure
            },
            counts: report.counts.clone(),
            differences: report
                .differences
                .iter()
                .map(|d| Difference {
                    name: d.name.clone(),
                    status: d.status,
                    detail: d.detail(),
                })
                .collect(),
            failed_parts: failed_parts
                .iter()
                .map(|p| FailedPart {
                    part: p.part,
                    key: p.key.clone(),
                    problems: p.problems.clone(),
                })
                .collect(),
            unverified: report.unverified.iter().map(|f| f.name.clone()).collect(),
            name_prefixes: request
                .filters
                .as_ref()
                .map(|f| f.name_prefixes.clone())
                .unwrap_or_default(),
            manifest_problems: report.manifest_problems.clone(),
            warnings: report.warnings.clone(),
            duration_ms: None,
        };
        self.emit(
            "verify",
            &[
                Metric::count("PartsChecked", report.parts.len() as u64),
                Metric::count("IntegrityFailures", failed_parts.len() as u64),
                Metric::count("SecretsChanged", report.counts.changed),
                Metric::count("SecretsMissing", report.counts.missing),
                Metric::count("SecretsNew", report.counts.new),
                Metric::count("SecretsUnverified", report.counts.unverified),
                elapsed,
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
        summary.duration_ms = Some(elapsed.value);
        Ok(summary)
    }
}
