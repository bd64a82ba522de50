//! Writes one snapshot: reads secrets with bounded concurrency, packs them into parts of bounded
//! size, seals and uploads each part as soon as it is full, and writes the manifest last.
//!
//! The read path keeps to the quotas (issue 11): ListSecrets gives each secret's metadata and
//! labelled versions (`SecretVersionsToStages`) page by page; a secret whose last-changed date
//! and version ids equal those the previous verified snapshot recorded is carried over from
//! that snapshot's part (opened, checked, and re-sealed in this snapshot's parts under its own
//! data keys and encryption context) instead of read again; the others are read with one
//! BatchGetSecretValue per 20 (their `AWSCURRENT` values), one GetSecretValue per other
//! labelled version, one DescribeSecret (its `ReplicationStatus`, which ListSecrets does not
//! return) and one GetResourcePolicy (nothing the listing returns says whether a secret has a
//! policy; a policy change counts as a change of the secret: LastChangedDate is "the last date
//! and time that this secret was modified in any way"). The calls go through the rate limiter
//! of `crates/backup/src/ports/limited.rs` when the caller wraps the port in it.
//!
//! With parameter paths in the filters (`BACKUP_PARAMETER_PATHS`), the Parameter Store
//! parameters under them are listed and read after the secrets, through `Ports::parameters` (the
//! same port, `crates/backup/src/ports/aws/parameters.rs`), into the same parts; their listing
//! tokens carry [`PARAMETERS_PHASE`]. They are never carried over (a label or tag change does not
//! move a parameter's last-modified date).
//!
//! With a deadline ([`RunControl`]), the run stops between listing pages when less than the
//! margin is left, uploads the part being filled and leaves a checkpoint
//! ([`crate::snapshot::checkpoint`]); the next run resumes it. The manifest is written only
//! when the listing is done.
//!
//! Memory holds at most `concurrency` secrets being read, one part being filled and the part
//! being uploaded; the per-secret manifest entries are spooled to a temporary file.
//!
//! Before reading anything it finds the latest snapshot of the same source whose signature
//! verifies, and links to it (`previous`: the hash chain, [`ChainLink`]). At the end the
//! manifest's bytes are signed with KMS ([`crate::snapshot::signature`]); the signature is
//! uploaded, then the manifest.
//!
//! Each part's upload, the signature's and the manifest's sit between the fail points
//! `backup.part.*`, `backup.signature.*` and `backup.manifest.*` (`crates/failpoints`; nothing
//! in a release build).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::domain::filters::{ExpectedUnreadable, Filters};
use crate::domain::model::{
    SecretMeta, SecretRecord, VersionLabels, VersionRecord, VersionValue, AWSCURRENT,
};
use crate::ports::{ApiError, Body, ListedSecret, Ports, SecretsApi, BATCH_GET_MAX};
use crate::snapshot::checkpoint::{self, Checkpoint};
use crate::snapshot::crypto::{self, Scope};
use crate::snapshot::layout::*;
use crate::snapshot::manifest::*;
use crate::snapshot::reader::read_part;
use crate::snapshot::signature;
use crate::snapshot::trust::{latest_verified_signed, Signed};
use crate::snapshot::zbuf::ZeroBuf;

/// What one backup run writes, and where.
#[derive(Clone, Debug)]
pub struct BackupParams {
    /// A new id (a UUID).
    pub snapshot_id: String,
    /// When the run started (names the folder).
    pub started_at: DateTime<Utc>,
    /// Key prefix of the snapshots (normalized, may be empty).
    pub prefix: String,
    /// The source account and region.
    pub source: Source,
    /// The bucket and its region.
    pub destination: Destination,
    /// KMS key that wraps the parts' data keys.
    pub kms_key_id: String,
    /// KMS key that signs the manifest (`BACKUP_SIGNING_KEY_ID`).
    pub signing_key_id: String,
    /// Which secrets.
    pub filters: Filters,
    /// Secrets read at the same time.
    pub concurrency: usize,
    /// Plaintext size at which a part is sealed and uploaded.
    pub part_size: usize,
    /// Secrets whose failure to read is expected (marked so in the manifest).
    pub expected_unreadable: ExpectedUnreadable,
}

/// A written snapshot: the manifest's head, and its key.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The manifest without its per-secret list.
    pub head: ManifestHead,
    /// Key of the manifest object.
    pub manifest_key: String,
    /// Newer snapshots the chain could not link to (no manifest, or a signature that does not
    /// verify), each named with why.
    pub chain_warnings: Vec<String>,
}

impl BackupReport {
    /// `s3://bucket/folder/`.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.head.destination.bucket, self.head.folder)
    }
}

/// A run that could not finish writing its snapshot (nothing about individual secrets: those
/// are recorded as failures in the manifest).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A part could not be sealed or uploaded.
    #[error("snapshot {snapshot}: part {part}: {reason}")]
    Part {
        /// The snapshot id.
        snapshot: String,
        /// The part number.
        part: u32,
        /// What failed.
        reason: String,
    },
    /// The previous snapshots could not be listed (the chain needs the latest one).
    #[error("snapshot {snapshot}: finding the previous snapshot: {reason}")]
    Chain {
        /// The snapshot id.
        snapshot: String,
        /// What failed.
        reason: String,
    },
    /// The manifest could not be written, signed or uploaded.
    #[error("snapshot {snapshot}: manifest: {reason}")]
    Manifest {
        /// The snapshot id.
        snapshot: String,
        /// What failed.
        reason: String,
    },
}

enum Fetched {
    Record(Box<SecretRecord>),
    Failed(Failure),
    Skipped(Failure),
    FilteredOut,
}

fn failure(name: &str, arn: &str, reason: String) -> Failure {
    Failure {
        name: name.into(),
        arn: arn.into(),
        reason,
        expected: false,
    }
}

async fn fetch_secret(api: &dyn SecretsApi, listed: &ListedSecret, filters: &Filters) -> Fetched {
    let (name, arn) = (listed.name.as_str(), listed.arn.as_str());
    let described = match api.describe(arn).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return Fetched::Skipped(failure(name, arn, "deleted after it was listed".into()))
        }
        Err(e) => return Fetched::Failed(failure(name, arn, format!("DescribeSecret: {e}"))),
    };
    if let Some(when) = described.deleted {
        return Fetched::Skipped(failure(
            name,
            arn,
            format!("scheduled for deletion ({})", when.to_rfc3339()),
        ));
    }
    // DescribeSecret's tags are authoritative; ListSecrets' only narrowed.
    if !filters.matches(&described.meta.name, &described.meta.tags) {
        return Fetched::FilteredOut;
    }
    read_policy_and_versions(
        api,
        name,
        arn,
        described.meta,
        sorted_versions(described.versions),
        None,
    )
    .await
}

/// The secret's resource policy, then each labelled version's value (`current`: the
/// `AWSCURRENT` one already read, by its version id; the others by GetSecretValue), then the
/// secret's record.
async fn read_policy_and_versions(
    api: &dyn SecretsApi,
    name: &str,
    arn: &str,
    mut meta: SecretMeta,
    versions: Vec<VersionLabels>,
    mut current: Option<(String, VersionValue)>,
) -> Fetched {
    meta.resource_policy = match api.resource_policy(arn).await {
        Ok(p) => p,
        Err(e) => return Fetched::Failed(failure(name, arn, format!("GetResourcePolicy: {e}"))),
    };
    let mut records = Vec::with_capacity(versions.len());
    for v in versions {
        let got = match current.take_if(|(id, _)| *id == v.version_id) {
            Some((_, value)) => Ok(value),
            None => api.get_version(arn, &v.version_id).await,
        };
        match got {
            Ok(got) => records.push(VersionRecord {
                version_id: v.version_id,
                labels: v.labels,
                created: got.created,
                value: got.value,
            }),
            Err(e) => {
                return Fetched::Failed(failure(
                    name,
                    arn,
                    format!(
                        "GetSecretValue of version {} ({}): {e}",
                        v.version_id,
                        v.labels.join(",")
                    ),
                ))
            }
        }
    }
    Fetched::Record(Box::new(SecretRecord {
        source: api.source(),
        meta,
        versions: records,
    }))
}

/// The `AWSCURRENT` answer of BatchGetSecretValue for one secret.
type Current = Option<Result<(String, VersionValue), ApiError>>;

fn sorted_versions(mut versions: Vec<VersionLabels>) -> Vec<VersionLabels> {
    // AWSCURRENT first, then by version id: stable output.
    versions.sort_by(|a, b| {
        let cur = |v: &VersionLabels| !v.labels.iter().any(|l| l == AWSCURRENT);
        (cur(a), &a.version_id).cmp(&(cur(b), &b.version_id))
    });
    versions
}

/// Read a listed secret: its `AWSCURRENT` value from the batch answer, the other labelled
/// versions by GetSecretValue, its replication by DescribeSecret, its resource policy. Falls
/// back to [`fetch_secret`] (DescribeSecret first) when the batch answer is missing or names
/// another version than the listing (the secret changed in between).
async fn read_listed(
    api: &dyn SecretsApi,
    listed: &ListedSecret,
    current: Current,
    filters: &Filters,
) -> Fetched {
    let (name, arn) = (listed.name.as_str(), listed.arn.as_str());
    let versions = sorted_versions(listed.described.versions.clone());
    let listed_current = versions
        .iter()
        .find(|v| v.labels.iter().any(|l| l == AWSCURRENT))
        .map(|v| v.version_id.clone());
    let current = match current {
        Some(Ok((vid, value))) if Some(&vid) == listed_current.as_ref() => Some(value),
        Some(Err(e)) if e.is_not_found() => {
            return Fetched::Skipped(failure(name, arn, "deleted after it was listed".into()))
        }
        Some(Err(e)) if e.kind != crate::ports::ErrorKind::Throttled => {
            return Fetched::Failed(failure(
                name,
                arn,
                format!(
                    "GetSecretValue of version {} (AWSCURRENT, through BatchGetSecretValue): {e}",
                    listed_current.as_deref().unwrap_or("?")
                ),
            ))
        }
        _ => None,
    };
    let Some(current) = current else {
        return fetch_secret(api, listed, filters).await;
    };
    let replication = match api.describe(arn).await {
        Ok(Some(d)) if d.deleted.is_none() => d.meta.replication,
        Ok(Some(d)) => {
            return Fetched::Skipped(failure(
                name,
                arn,
                format!(
                    "scheduled for deletion ({})",
                    d.deleted.map(|t| t.to_rfc3339()).unwrap_or_default()
                ),
            ))
        }
        Ok(None) => {
            return Fetched::Skipped(failure(name, arn, "deleted after it was listed".into()))
        }
        Err(e) => return Fetched::Failed(failure(name, arn, format!("DescribeSecret: {e}"))),
    };
    let mut meta = listed.described.meta.clone();
    meta.replication = replication;
    read_policy_and_versions(
        api,
        name,
        arn,
        meta,
        versions,
        listed_current.zip(Some(current)),
    )
    .await
}

/// Read `listed`: one BatchGetSecretValue per [`BATCH_GET_MAX`] secrets, then each secret
/// with at most `concurrency` at a time.
async fn read_all(
    api: &dyn SecretsApi,
    listed: Vec<ListedSecret>,
    filters: &Filters,
    concurrency: usize,
) -> Vec<Fetched> {
    let mut currents: HashMap<String, Result<(String, VersionValue), ApiError>> = HashMap::new();
    for chunk in listed.chunks(BATCH_GET_MAX) {
        let ids: Vec<String> = chunk.iter().map(|l| l.arn.clone()).collect();
        match api.batch_current(&ids).await {
            Ok(answers) => {
                for a in answers {
                    currents.insert(a.id, a.result);
                }
            }
            // The whole call failed (throttled past the retries, not allowed): read these one
            // by one instead.
            Err(e) => {
                tracing::warn!(error = %e, secrets = ids.len(), "BatchGetSecretValue failed; reading one by one")
            }
        }
    }
    let currents = std::sync::Mutex::new(currents);
    futures::stream::iter(listed)
        .map(|l| {
            let current = currents.lock().unwrap().remove(&l.arn);
            async move { read_listed(api, &l, current, filters).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// The previous verified snapshot, indexed by ARN, and the last part of it opened.
struct Previous {
    signed: Signed,
    index: HashMap<String, usize>,
    open: Option<(u32, HashMap<String, SecretRecord>)>,
}

impl Previous {
    fn new(signed: Signed) -> Previous {
        let index = signed
            .manifest
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.arn.clone(), i))
            .collect();
        Previous {
            signed,
            index,
            open: None,
        }
    }

    /// The part holding `listed` when it is unchanged since this snapshot: same source, same
    /// last-changed date (known), same labelled version ids and labels.
    fn unchanged(
        &self,
        listed: &ListedSecret,
        source: crate::domain::model::SourceKind,
    ) -> Option<u32> {
        let entry = &self.signed.manifest.secrets[*self.index.get(&listed.arn)?];
        let changed = listed.described.meta.last_changed;
        if entry.source != source || entry.last_changed.is_none() || entry.last_changed != changed {
            return None;
        }
        let norm = |mut v: Vec<(String, Vec<String>)>| {
            for (_, l) in &mut v {
                l.sort();
            }
            v.sort();
            v
        };
        let before = norm(
            entry
                .versions
                .iter()
                .map(|v| (v.version_id.clone(), v.labels.clone()))
                .collect(),
        );
        let now = norm(
            listed
                .described
                .versions
                .iter()
                .map(|v| (v.version_id.clone(), v.labels.clone()))
                .collect(),
        );
        (before == now).then_some(entry.part)
    }

    /// The record of `arn` from part `part`, opened and checked against the signed manifest
    /// (`None` when the part does not verify: the caller reads the secret again).
    async fn take(&mut self, ports: Ports<'_>, part: u32, arn: &str) -> Option<SecretRecord> {
        if self.open.as_ref().map(|(n, _)| *n) != Some(part) {
            let manifest = &self.signed.manifest;
            let records = match manifest.part(part) {
                Some(entry) => {
                    let (check, records) =
                        read_part(ports.store, ports.keys, manifest, entry).await;
                    if !check.ok() {
                        tracing::warn!(
                            part,
                            previous = %manifest.head.snapshot_id,
                            problems = %check.problems.join("; "),
                            "previous part does not verify: its secrets are read again"
                        );
                    }
                    records.unwrap_or_default()
                }
                None => vec![],
            };
            self.open = Some((
                part,
                records
                    .into_iter()
                    .map(|r| (r.meta.arn.clone(), r))
                    .collect(),
            ));
        }
        self.open.as_mut()?.1.remove(arn)
    }
}

struct PartWriter<'a> {
    ports: Ports<'a>,
    params: &'a BackupParams,
    snapshot_id: String,
    scope: Scope,
    folder: String,
    number: u32,
    buf: ZeroBuf,
    pending: Vec<ManifestSecret>,
    spool: ManifestSpool,
    parts: Vec<PartEntry>,
    summary: Summary,
}

impl PartWriter<'_> {
    async fn add(&mut self, record: SecretRecord) -> Result<(), BackupError> {
        let mut line = ZeroBuf::with_capacity(
            record
                .versions
                .iter()
                .map(|v| v.value.len() * 2)
                .sum::<usize>()
                + 1024,
        );
        serde_json::to_writer(&mut line, &record).expect("a record serializes");
        line.extend_from_slice(b"\n");
        if !self.buf.is_empty() && self.buf.len() + line.len() > self.params.part_size {
            self.flush().await?;
        }
        self.buf.extend_from_slice(line.as_slice());
        drop(line);
        self.summary.secrets += 1;
        self.summary.versions += record.versions.len() as u64;
        self.summary.value_bytes += record
            .versions
            .iter()
            .map(|v| v.value.len() as u64)
            .sum::<u64>();
        self.pending.push(ManifestSecret::of(&record, self.number));
        drop(record);
        if self.buf.len() >= self.params.part_size {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BackupError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let number = self.number;
        let snapshot = &self.snapshot_id;
        let plaintext = std::mem::take(&mut self.buf);
        let part_err = |reason: String| BackupError::Part {
            snapshot: snapshot.clone(),
            part: number,
            reason,
        };
        let object = crypto::seal(self.ports.keys, &self.scope, number, plaintext)
            .await
            .map_err(|e| part_err(e.to_string()))?;
        let sha256 = hex::encode(Sha256::digest(&object));
        let size = object.len() as u64;
        let key = part_key(&self.folder, number);
        let version_id = failpoints::around!(
            "backup.part",
            crate::ports::put_new_once(
                self.ports.store,
                &key,
                Body::Bytes(object),
                "application/octet-stream",
                &[
                    ("snapshot-id", snapshot.clone()),
                    ("part", number.to_string()),
                ],
            )
            .await
        )
        .map_err(|e| part_err(format!("upload to {key}: {e}")))?;
        let secrets = self.pending.len() as u64;
        for entry in self.pending.drain(..) {
            self.spool.add(&entry).map_err(|e| BackupError::Manifest {
                snapshot: snapshot.clone(),
                reason: format!("spooling the manifest: {e}"),
            })?;
        }
        self.parts.push(PartEntry {
            number,
            key,
            size,
            sha256,
            version_id,
            secrets,
        });
        self.summary.parts += 1;
        self.summary.stored_bytes += size;
        tracing::info!(
            snapshot = %snapshot,
            part = number,
            part_bytes = size,
            part_secrets = secrets,
            secrets_so_far = self.summary.secrets,
            "part written"
        );
        self.number += 1;
        Ok(())
    }
}

/// The listing token of the Parameter Store phase: after the last page of secrets, a run with
/// parameter paths lists their parameters, with tokens that start with this (a checkpoint taken
/// in that phase resumes in it).
pub const PARAMETERS_PHASE: &str = "parameters:";

/// How a run is driven beyond its parameters.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// When the invocation ends (`None`: no deadline, the run completes).
    pub deadline: Option<Instant>,
    /// Stop when less than this is left before the deadline.
    pub margin: Duration,
    /// Secrets per ListSecrets page (1–100; 0: 100). The deadline is checked between pages.
    pub page_size: i32,
    /// A checkpoint to resume (checked by the caller: [`checkpoint::check_resumable`]).
    pub resume: Option<Checkpoint>,
    /// Where checkpoints go (`<prefix>/checkpoints/<account>/<region>/`; needed with a
    /// deadline).
    pub checkpoint_prefix: String,
}

/// A run that stopped before its deadline and left a checkpoint.
#[derive(Clone, Debug)]
pub struct Paused {
    /// The snapshot being written.
    pub snapshot_id: String,
    /// Its folder.
    pub folder: String,
    /// The checkpoint's key.
    pub checkpoint_key: String,
    /// The totals so far.
    pub summary: Summary,
    /// Invocations the run has taken so far (this one included).
    pub invocations: u32,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub enum RunOutcome {
    /// The snapshot is written.
    Complete(Box<BackupReport>),
    /// The run continues in another invocation.
    Paused(Paused),
}

/// Write a snapshot. Secrets that cannot be read are listed in the manifest (the caller decides
/// how the invocation ends); an error here means the snapshot could not be completed.
pub async fn run_backup(
    ports: Ports<'_>,
    params: &BackupParams,
) -> Result<BackupReport, BackupError> {
    match run_backup_with(ports, params, &RunControl::default()).await? {
        RunOutcome::Complete(r) => Ok(*r),
        RunOutcome::Paused(_) => unreachable!("no deadline, no pause"),
    }
}

/// [`run_backup`] with a deadline (pausing at a checkpoint) or resuming one.
pub async fn run_backup_with(
    ports: Ports<'_>,
    params: &BackupParams,
    control: &RunControl,
) -> Result<RunOutcome, BackupError> {
    let resume = control.resume.as_ref();
    let snapshot_id = resume.map_or(params.snapshot_id.clone(), |c| c.snapshot_id.clone());
    let started_at = resume.map_or(params.started_at, |c| c.started_at);
    let folder = format!(
        "{}{}/",
        account_region_prefix(
            &params.prefix,
            &params.source.account_id,
            &params.source.region
        ),
        folder_name(started_at, &snapshot_id)
    );
    let (previous, chain_warnings) = latest_verified_signed(
        ports.store,
        ports.keys,
        &params.signing_key_id,
        &params.prefix,
        &params.source.account_id,
        &params.source.region,
    )
    .await
    .map_err(|e| BackupError::Chain {
        snapshot: snapshot_id.clone(),
        reason: e.to_string(),
    })?;
    for w in &chain_warnings {
        tracing::warn!(warning = %w, "not linked into the chain");
    }
    let link = previous.as_ref().map(Signed::link);
    let mut previous = previous.map(Previous::new);
    let mut spool = ManifestSpool::new().map_err(|e| BackupError::Manifest {
        snapshot: snapshot_id.clone(),
        reason: format!("creating a temporary file: {e}"),
    })?;
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut parts = Vec::new();
    let mut summary = Summary::default();
    let mut token = None;
    let mut invocations = 1;
    if let Some(cp) = resume {
        for e in &cp.entries {
            spool.add(e).map_err(|e| BackupError::Manifest {
                snapshot: snapshot_id.clone(),
                reason: format!("spooling the manifest: {e}"),
            })?;
        }
        failures = cp.failures.clone();
        skipped = cp.skipped.clone();
        parts = cp.parts.clone();
        summary = cp.summary.clone();
        token = cp.next_token.clone();
        invocations = cp.invocations + 1;
        tracing::info!(
            snapshot = %snapshot_id,
            secrets_so_far = summary.secrets,
            invocation = invocations,
            "resuming from a checkpoint"
        );
    }
    let mut writer = PartWriter {
        ports,
        params,
        snapshot_id: snapshot_id.clone(),
        scope: Scope::new(
            &snapshot_id,
            &params.source.account_id,
            &params.source.region,
            started_at,
        ),
        folder: folder.clone(),
        number: parts.len() as u32 + 1,
        buf: ZeroBuf::default(),
        pending: Vec::new(),
        spool,
        parts,
        summary,
    };
    let filters = &params.filters;
    // Parameters are chosen by their paths alone.
    let every = Filters::default();
    let page_size = if control.page_size <= 0 {
        100
    } else {
        control.page_size.min(100)
    };
    let mut first_page = true;
    loop {
        // Between pages: stop when the deadline is near (never before the first page, so each
        // invocation makes progress).
        if !first_page {
            if let Some(deadline) = control.deadline {
                if deadline.saturating_duration_since(Instant::now()) <= control.margin {
                    return pause(
                        &mut writer,
                        control,
                        link,
                        token,
                        failures,
                        skipped,
                        invocations,
                        started_at,
                    )
                    .await;
                }
            }
        }
        first_page = false;
        let phase_token = token
            .as_deref()
            .and_then(|t| t.strip_prefix(PARAMETERS_PHASE));
        let in_parameters = phase_token.is_some();
        let (api, selection): (&dyn SecretsApi, &Filters) = if in_parameters {
            (ports.parameters, &every)
        } else {
            (ports.secrets, filters)
        };
        let source = api.source();
        let listed = if in_parameters {
            let inner = phase_token.filter(|t| !t.is_empty()).map(String::from);
            api.list_page(&filters.parameter_paths, page_size, inner)
                .await
        } else {
            api.list_page(&filters.name_prefixes, page_size, token.clone())
                .await
        };
        let page = match listed {
            Ok(p) => p,
            Err(e) => {
                let what = if in_parameters {
                    "GetParametersByPath failed; parameters after this point were not listed"
                } else {
                    "ListSecrets failed; secrets after this point were not listed"
                };
                let mut f = failure("*", "*", format!("{what}: {e}"));
                f.expected = params.expected_unreadable.contains(&f.name);
                failures.push(f);
                if !in_parameters && !filters.parameter_paths.is_empty() {
                    token = Some(PARAMETERS_PHASE.to_string());
                    continue;
                }
                break;
            }
        };
        let mut to_read = Vec::new();
        let mut to_carry: Vec<(u32, ListedSecret)> = Vec::new();
        for listed in page.secrets {
            if listed.described.deleted.is_some() || !selection.matches(&listed.name, &listed.tags)
            {
                continue;
            }
            match previous.as_ref().and_then(|p| p.unchanged(&listed, source)) {
                Some(part) => to_carry.push((part, listed)),
                None => to_read.push(listed),
            }
        }
        // Carried over: part by part (the previous run wrote them in listing order too).
        to_carry.sort_by_key(|(part, _)| *part);
        for (part, listed) in to_carry {
            let prev = previous.as_mut().expect("carried from a previous snapshot");
            match prev.take(ports, part, &listed.arn).await {
                Some(mut record) => {
                    // The listing's metadata is as fresh as it gets; the policy and the
                    // replication (not listed) and the values are the previous snapshot's.
                    let mut meta = listed.described.meta;
                    meta.resource_policy = record.meta.resource_policy.take();
                    meta.replication = std::mem::take(&mut record.meta.replication);
                    record.meta = meta;
                    writer.summary.carried_over += 1;
                    writer.add(record).await?;
                }
                None => to_read.push(listed),
            }
        }
        let fetched = read_all(api, to_read, selection, params.concurrency).await;
        for item in fetched {
            match item {
                Fetched::Record(record) => {
                    writer.summary.read += 1;
                    writer.add(*record).await?
                }
                Fetched::Failed(mut f) => {
                    f.expected = params.expected_unreadable.contains(&f.name);
                    tracing::warn!(
                        secret = %f.name,
                        reason = %f.reason,
                        expected = f.expected,
                        "secret not backed up"
                    );
                    failures.push(f)
                }
                Fetched::Skipped(f) => skipped.push(f),
                Fetched::FilteredOut => {}
            }
        }
        token = match page.next_token {
            Some(t) if in_parameters => Some(format!("{PARAMETERS_PHASE}{t}")),
            Some(t) => Some(t),
            // The secrets are done: the parameters next, when paths are configured.
            None if !in_parameters && !filters.parameter_paths.is_empty() => {
                Some(PARAMETERS_PHASE.to_string())
            }
            None => None,
        };
        if token.is_none() {
            break;
        }
    }
    writer.flush().await?;
    tracing::debug!(
        read = writer.summary.read,
        carried_over = writer.summary.carried_over,
        "listing done"
    );

    let mut summary = writer.summary.clone();
    summary.failures = failures.len() as u64;
    summary.skipped = skipped.len() as u64;
    let head = ManifestHead {
        format_version: MANIFEST_FORMAT_VERSION,
        snapshot_id: snapshot_id.clone(),
        folder: folder.clone(),
        started_at,
        completed_at: Utc::now(),
        source: params.source.clone(),
        destination: params.destination.clone(),
        kms_key_id: params.kms_key_id.clone(),
        signing_key_id: params.signing_key_id.clone(),
        previous: link,
        filters: params.filters.clone(),
        part_size: params.part_size as u64,
        summary: summary.clone(),
        parts: std::mem::take(&mut writer.parts),
        failures,
        skipped,
    };
    let file = writer
        .spool
        .finish(&head)
        .map_err(|e| BackupError::Manifest {
            snapshot: snapshot_id.clone(),
            reason: format!("writing: {e}"),
        })?;
    let manifest_err = |reason: String| BackupError::Manifest {
        snapshot: snapshot_id.clone(),
        reason,
    };
    let digest = {
        let mut hasher = Sha256::new();
        let mut f = std::fs::File::open(file.path())
            .map_err(|e| manifest_err(format!("reading it back: {e}")))?;
        std::io::copy(&mut f, &mut hasher)
            .map_err(|e| manifest_err(format!("reading it back: {e}")))?;
        <[u8; 32]>::from(hasher.finalize())
    };
    let sig = signature::sign(ports.keys, &params.signing_key_id, &digest)
        .await
        .map_err(|e| {
            manifest_err(format!(
                "signing with {} (BACKUP_SIGNING_KEY_ID): {e}",
                params.signing_key_id
            ))
        })?;
    let sig_key = signature_key(&folder);
    failpoints::around!(
        "backup.signature",
        crate::ports::put_new_once(
            ports.store,
            &sig_key,
            Body::Bytes(sig),
            "application/json",
            &[("snapshot-id", snapshot_id.clone())],
        )
        .await
    )
    .map_err(|e| manifest_err(format!("upload of the signature to {sig_key}: {e}")))?;
    let manifest_key = manifest_key(&folder);
    failpoints::around!(
        "backup.manifest",
        crate::ports::put_new_once(
            ports.store,
            &manifest_key,
            Body::File(file.path().to_path_buf()),
            "application/json",
            &[
                ("snapshot-id", snapshot_id.clone()),
                ("secrets", summary.secrets.to_string()),
                ("versions", summary.versions.to_string()),
                ("failures", summary.failures.to_string()),
                ("completed-at", head.completed_at.to_rfc3339()),
            ],
        )
        .await
    )
    .map_err(|e| BackupError::Manifest {
        snapshot: snapshot_id.clone(),
        reason: format!("upload to {manifest_key}: {e}"),
    })?;
    drop(file);
    Ok(RunOutcome::Complete(Box::new(BackupReport {
        head,
        manifest_key,
        chain_warnings,
    })))
}

/// Upload the part being filled and leave a checkpoint.
#[allow(clippy::too_many_arguments)]
async fn pause(
    writer: &mut PartWriter<'_>,
    control: &RunControl,
    previous: Option<ChainLink>,
    next_token: Option<String>,
    failures: Vec<Failure>,
    skipped: Vec<Failure>,
    invocations: u32,
    started_at: DateTime<Utc>,
) -> Result<RunOutcome, BackupError> {
    writer.flush().await?;
    let snapshot = writer.snapshot_id.clone();
    let manifest_err = |reason: String| BackupError::Manifest {
        snapshot: snapshot.clone(),
        reason,
    };
    let entries = writer
        .spool
        .entries()
        .map_err(|e| manifest_err(format!("reading the spooled entries back: {e}")))?;
    let mut summary = writer.summary.clone();
    summary.failures = failures.len() as u64;
    summary.skipped = skipped.len() as u64;
    let params = writer.params;
    let cp = Checkpoint {
        snapshot_id: snapshot.clone(),
        started_at,
        folder: writer.folder.clone(),
        previous,
        filters: params.filters.clone(),
        kms_key_id: params.kms_key_id.clone(),
        signing_key_id: params.signing_key_id.clone(),
        part_size: params.part_size as u64,
        next_token,
        parts: writer.parts.clone(),
        entries,
        failures,
        skipped,
        summary: summary.clone(),
        invocations,
        written_at: Utc::now(),
    };
    let key = checkpoint::save(writer.ports.store, &control.checkpoint_prefix, &cp)
        .await
        .map_err(|e| manifest_err(format!("writing the checkpoint: {e}")))?;
    tracing::info!(
        snapshot = %snapshot,
        checkpoint = %key,
        secrets_so_far = summary.secrets,
        invocation = invocations,
        "deadline near: checkpoint written, the run continues in the next invocation"
    );
    Ok(RunOutcome::Paused(Paused {
        snapshot_id: snapshot,
        folder: writer.folder.clone(),
        checkpoint_key: key,
        summary,
        invocations,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{SecretValue, SourceKind};
    use crate::ports::fakes::{FakeKms, FakeParameters, FakeSecrets, FakeStore};
    use crate::ports::ObjectStore;
    use crate::snapshot::reader::{list_snapshots, load_manifest};
    use crate::testing::{backup_params, ACCOUNT, PREFIX, REGION};

    struct W {
        secrets: FakeSecrets,
        parameters: FakeParameters,
        store: FakeStore,
        kms: FakeKms,
    }

    impl W {
        fn new(n: usize) -> W {
            let w = W {
                secrets: FakeSecrets::default(),
                parameters: FakeParameters::default(),
                store: FakeStore::default(),
                kms: FakeKms::default(),
            };
            for i in 0..n {
                w.secrets.add(
                    &format!("app/s{i:02}"),
                    SecretValue::string(format!("v{i}")),
                );
            }
            w
        }

        fn ports(&self) -> Ports<'_> {
            Ports {
                secrets: &self.secrets,
                parameters: &self.parameters,
                store: &self.store,
                keys: &self.kms,
            }
        }

        async fn run(&self, control: &RunControl) -> RunOutcome {
            let r = run_backup_with(
                self.ports(),
                &backup_params(Filters::default(), 64),
                control,
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(3)).await;
            r
        }

        async fn manifests(&self) -> Vec<Manifest> {
            let mut out = vec![];
            for info in list_snapshots(&self.store, PREFIX, ACCOUNT, REGION)
                .await
                .unwrap()
            {
                if info.complete {
                    out.push(load_manifest(&self.store, &info).await.unwrap());
                }
            }
            out
        }

        async fn records(&self, m: &Manifest) -> Vec<SecretRecord> {
            let mut all = vec![];
            for p in &m.head.parts {
                let (check, records) = read_part(&self.store, &self.kms, m, p).await;
                assert!(check.ok(), "{:?}", check.problems);
                all.extend(records.unwrap());
            }
            all.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
            all
        }
    }

    fn complete(o: RunOutcome) -> BackupReport {
        match o {
            RunOutcome::Complete(r) => *r,
            RunOutcome::Paused(p) => panic!("paused at {}", p.checkpoint_key),
        }
    }

    #[tokio::test]
    async fn reads_by_batches_of_twenty_and_carries_unchanged_secrets_over() {
        let w = W::new(45);
        w.secrets.with_secret("app/s03", |s| {
            s.meta.resource_policy = Some("{\"Version\":\"2012-10-17\"}".into())
        });
        w.secrets
            .put("app/s07", SecretValue::string("pending"), &["AWSPENDING"]);
        let first = complete(w.run(&RunControl::default()).await);
        assert_eq!(first.head.summary.read, 45);
        assert_eq!(first.head.summary.carried_over, 0);
        // 45 secrets: 3 batches, one GetSecretValue for the AWSPENDING version only, one
        // DescribeSecret and one GetResourcePolicy per secret read.
        assert_eq!(w.secrets.calls("BatchGetSecretValue"), 3);
        assert_eq!(w.secrets.calls("GetSecretValue"), 1);
        assert_eq!(w.secrets.calls("DescribeSecret"), 45);
        assert_eq!(w.secrets.calls("GetResourcePolicy"), 45);
        assert_eq!(w.secrets.calls("ListSecrets"), 1);

        // Two change: only they are read again.
        w.secrets
            .put("app/s01", SecretValue::string("new"), &["AWSCURRENT"]);
        w.secrets.with_secret("app/s02", |s| {
            s.meta.last_changed = Some(Utc::now());
            s.meta.description = Some("changed".into())
        });
        let second = complete(w.run(&RunControl::default()).await);
        assert_eq!(second.head.summary.read, 2);
        assert_eq!(second.head.summary.carried_over, 43);
        assert_eq!(w.secrets.calls("BatchGetSecretValue"), 4);
        assert_eq!(w.secrets.calls("GetResourcePolicy"), 47);
        // app/s01's AWSPREVIOUS, now labelled.
        assert_eq!(w.secrets.calls("GetSecretValue"), 2);
        assert_eq!(
            second.head.previous.as_ref().unwrap().snapshot_id,
            first.head.snapshot_id
        );
        // Self-contained: every record is in the new snapshot's own parts, sealed under its
        // own scope, with the values, policy and pending version carried.
        let ms = w.manifests().await;
        let last = ms
            .iter()
            .find(|m| m.head.snapshot_id == second.head.snapshot_id)
            .unwrap();
        let records = w.records(last).await;
        assert_eq!(records.len(), 45);
        let by = |n: &str| records.iter().find(|r| r.meta.name == n).unwrap();
        assert_eq!(
            by("app/s01")
                .version_with_label("AWSCURRENT")
                .unwrap()
                .value,
            SecretValue::string("new")
        );
        assert_eq!(by("app/s02").meta.description.as_deref(), Some("changed"));
        assert!(by("app/s03").meta.resource_policy.is_some());
        assert_eq!(by("app/s07").versions.len(), 2);
        assert_eq!(
            by("app/s10")
                .version_with_label("AWSCURRENT")
                .unwrap()
                .value,
            SecretValue::string("v10")
        );
        let first_m = ms
            .iter()
            .find(|m| m.head.snapshot_id == first.head.snapshot_id)
            .unwrap();
        let mut earlier = w.records(first_m).await;
        earlier.retain(|r| r.meta.name != "app/s01" && r.meta.name != "app/s02");
        let mut now = records.clone();
        now.retain(|r| r.meta.name != "app/s01" && r.meta.name != "app/s02");
        assert_eq!(earlier, now, "carried records are the records read before");
    }

    #[tokio::test]
    async fn a_run_past_its_deadline_checkpoints_and_the_next_one_completes_it() {
        let w = W::new(23);
        let base = checkpoint::checkpoint_prefix(PREFIX, ACCOUNT, REGION);
        let first = complete(w.run(&RunControl::default()).await);
        w.secrets
            .put("app/s05", SecretValue::string("n"), &["AWSCURRENT"]);
        let one_shot = complete(w.run(&RunControl::default()).await);
        assert_eq!(one_shot.head.summary.read, 1);
        assert_ne!(first.head.snapshot_id, one_shot.head.snapshot_id);
        // A deadline already passed: each invocation does one page of 5, then stops.
        let control = RunControl {
            deadline: Some(Instant::now()),
            margin: Duration::from_secs(60),
            page_size: 5,
            resume: None,
            checkpoint_prefix: base.clone(),
        };
        let mut invocations = 0;
        let mut resume = None;
        let report = loop {
            invocations += 1;
            let c = RunControl {
                resume: resume.take(),
                ..control.clone()
            };
            match w.run(&c).await {
                RunOutcome::Complete(r) => break *r,
                RunOutcome::Paused(p) => {
                    assert_eq!(p.invocations, invocations);
                    // No manifest until the run completes.
                    assert_eq!(w.manifests().await.len(), 2);
                    let (_, cp) = checkpoint::latest(&w.store, &base).await.unwrap().unwrap();
                    assert_eq!(cp.snapshot_id, p.snapshot_id);
                    resume = Some(cp);
                }
            }
        };
        assert_eq!(invocations, 5, "23 secrets, 5 a page");
        assert_eq!(report.head.summary.read, 0);
        assert_eq!(report.head.summary.carried_over, 23);
        assert_eq!(report.head.summary.secrets, 23);
        let strip = |m: &Manifest| {
            let mut s: Vec<_> = m
                .secrets
                .iter()
                .map(|e| (e.name.clone(), e.versions.len()))
                .collect();
            s.sort();
            s
        };
        let ms = w.manifests().await;
        let paused = ms
            .iter()
            .find(|m| m.head.snapshot_id == report.head.snapshot_id)
            .unwrap();
        let first = ms
            .iter()
            .find(|m| m.head.snapshot_id == one_shot.head.snapshot_id)
            .unwrap();
        assert_eq!(strip(paused), strip(first));
        assert!(crate::snapshot::trust::part_list_problems(paused).is_empty());
        assert_eq!(w.records(paused).await.len(), 23);
    }

    #[tokio::test]
    async fn parameters_follow_the_secrets_and_a_checkpoint_resumes_in_their_phase() {
        let w = W::new(3);
        for i in 0..12 {
            w.parameters
                .put(&format!("/prod/p{i:02}"), "SecureString", &format!("v{i}"));
        }
        w.parameters.put("/other/p", "String", "outside");
        let base = checkpoint::checkpoint_prefix(PREFIX, ACCOUNT, REGION);
        let mut params = backup_params(Filters::default(), 64);
        params.filters.parameter_paths = vec!["/prod".into()];
        let control = RunControl {
            deadline: Some(Instant::now()),
            margin: Duration::from_secs(60),
            page_size: 5,
            resume: None,
            checkpoint_prefix: base.clone(),
        };
        let mut tokens = vec![];
        let mut resume = None;
        let report = loop {
            let c = RunControl {
                resume: resume.take(),
                ..control.clone()
            };
            match run_backup_with(w.ports(), &params, &c).await.unwrap() {
                RunOutcome::Complete(r) => break *r,
                RunOutcome::Paused(_) => {
                    let (_, cp) = checkpoint::latest(&w.store, &base).await.unwrap().unwrap();
                    tokens.push(cp.next_token.clone().unwrap());
                    resume = Some(cp);
                }
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        };
        // One page of secrets, then the parameters five at a time.
        assert_eq!(tokens, ["parameters:", "parameters:5", "parameters:10"]);
        assert_eq!(report.head.summary.secrets, 15);
        let m = w
            .manifests()
            .await
            .into_iter()
            .find(|m| m.head.snapshot_id == report.head.snapshot_id)
            .unwrap();
        let sources: Vec<_> = m.secrets.iter().map(|s| s.source).collect();
        assert_eq!(
            sources
                .iter()
                .filter(|s| **s == SourceKind::ParameterStore)
                .count(),
            12
        );
        assert!(!m.secrets.iter().any(|s| s.name == "/other/p"));
        let records = w.records(&m).await;
        let p = records.iter().find(|r| r.meta.name == "/prod/p03").unwrap();
        assert_eq!(p.versions[0].value, SecretValue::string("v3"));
        assert_eq!(p.meta.parameter.as_ref().unwrap().kind, "SecureString");

        // Without paths: not one Parameter Store call.
        let calls = w.parameters.total_calls();
        w.run(&RunControl::default()).await;
        assert_eq!(w.parameters.total_calls(), calls);
    }

    #[tokio::test]
    async fn a_checkpoint_is_resumed_only_when_safe() {
        let w = W::new(12);
        let base = checkpoint::checkpoint_prefix(PREFIX, ACCOUNT, REGION);
        let control = RunControl {
            deadline: Some(Instant::now()),
            margin: Duration::from_secs(60),
            page_size: 5,
            resume: None,
            checkpoint_prefix: base.clone(),
        };
        let RunOutcome::Paused(_) = w.run(&control).await else {
            panic!("paused")
        };
        let (_, cp) = checkpoint::latest(&w.store, &base).await.unwrap().unwrap();
        let params = backup_params(Filters::default(), 64);
        let expect = checkpoint::Expect {
            filters: &params.filters,
            kms_key_id: &params.kms_key_id,
            signing_key_id: &params.signing_key_id,
            part_size: 64,
            previous: None,
            now: Utc::now(),
        };
        checkpoint::check_resumable(&w.store, &cp, expect)
            .await
            .unwrap();
        let other = Filters {
            name_prefixes: vec!["x".into()],
            tags: vec![],
            parameter_paths: vec![],
        };
        let why = checkpoint::check_resumable(
            &w.store,
            &cp,
            checkpoint::Expect {
                filters: &other,
                ..expect
            },
        )
        .await
        .unwrap_err();
        assert!(why.contains("filters"), "{why}");
        let why = checkpoint::check_resumable(
            &w.store,
            &cp,
            checkpoint::Expect {
                now: Utc::now() + chrono::Duration::hours(25),
                ..expect
            },
        )
        .await
        .unwrap_err();
        assert!(why.contains("hours"), "{why}");
        // A crashed run wrote the next part after the checkpoint: not resumable.
        w.store
            .put_new(
                &part_key(&cp.folder, cp.next_part()),
                Body::Bytes(vec![1]),
                "application/octet-stream",
                &[],
            )
            .await
            .unwrap();
        let why = checkpoint::check_resumable(&w.store, &cp, expect)
            .await
            .unwrap_err();
        assert!(why.contains("wrote past this checkpoint"), "{why}");
    }
}
