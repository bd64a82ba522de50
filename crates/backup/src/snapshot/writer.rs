//! Writes one snapshot: reads secrets with bounded concurrency, packs them into parts of bounded
//! size, seals and uploads each part as soon as it is full, and writes the manifest last.
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

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::domain::filters::{ExpectedUnreadable, Filters};
use crate::domain::model::{SecretRecord, VersionRecord, AWSCURRENT};
use crate::ports::{Body, ListedSecret, Ports, SecretsApi};
use crate::snapshot::crypto::{self, Scope};
use crate::snapshot::layout::*;
use crate::snapshot::manifest::*;
use crate::snapshot::signature;
use crate::snapshot::trust::latest_verified;
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
    let mut meta = described.meta;
    meta.resource_policy = match api.resource_policy(arn).await {
        Ok(p) => p,
        Err(e) => return Fetched::Failed(failure(name, arn, format!("GetResourcePolicy: {e}"))),
    };
    let mut versions = described.versions;
    // AWSCURRENT first, then by version id: stable output.
    versions.sort_by(|a, b| {
        let cur =
            |v: &crate::domain::model::VersionLabels| !v.labels.iter().any(|l| l == AWSCURRENT);
        (cur(a), &a.version_id).cmp(&(cur(b), &b.version_id))
    });
    let mut records = Vec::with_capacity(versions.len());
    for v in versions {
        match api.get_version(arn, &v.version_id).await {
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

struct PartWriter<'a> {
    ports: Ports<'a>,
    params: &'a BackupParams,
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
        let snapshot = &self.params.snapshot_id;
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
            self.ports
                .store
                .put_new(
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

/// Write a snapshot. Secrets that cannot be read are listed in the manifest (the caller decides
/// how the invocation ends); an error here means the snapshot could not be completed.
pub async fn run_backup(
    ports: Ports<'_>,
    params: &BackupParams,
) -> Result<BackupReport, BackupError> {
    let folder = format!(
        "{}{}/",
        account_region_prefix(
            &params.prefix,
            &params.source.account_id,
            &params.source.region
        ),
        folder_name(params.started_at, &params.snapshot_id)
    );
    let (previous, chain_warnings) = latest_verified(
        ports.store,
        ports.keys,
        &params.signing_key_id,
        &params.prefix,
        &params.source.account_id,
        &params.source.region,
    )
    .await
    .map_err(|e| BackupError::Chain {
        snapshot: params.snapshot_id.clone(),
        reason: e.to_string(),
    })?;
    for w in &chain_warnings {
        tracing::warn!(warning = %w, "not linked into the chain");
    }
    let spool = ManifestSpool::new().map_err(|e| BackupError::Manifest {
        snapshot: params.snapshot_id.clone(),
        reason: format!("creating a temporary file: {e}"),
    })?;
    let mut writer = PartWriter {
        ports,
        params,
        scope: Scope::new(
            &params.snapshot_id,
            &params.source.account_id,
            &params.source.region,
            params.started_at,
        ),
        folder: folder.clone(),
        number: 1,
        buf: ZeroBuf::default(),
        pending: Vec::new(),
        spool,
        parts: Vec::new(),
        summary: Summary::default(),
    };
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let filters = &params.filters;
    let mut listed_count = 0u64;

    let mut fetched = ports
        .secrets
        .list(&filters.name_prefixes)
        .filter(|item| {
            let keep = match item {
                Ok(l) => filters.matches(&l.name, &l.tags),
                Err(_) => true,
            };
            std::future::ready(keep)
        })
        .map(|item| async move {
            match item {
                Ok(listed) => fetch_secret(ports.secrets, &listed, filters).await,
                Err(e) => Fetched::Failed(failure(
                    "*",
                    "*",
                    format!("ListSecrets failed; secrets after this point were not listed: {e}"),
                )),
            }
        })
        .buffer_unordered(params.concurrency.max(1));

    while let Some(item) = fetched.next().await {
        listed_count += 1;
        match item {
            Fetched::Record(record) => writer.add(*record).await?,
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
    drop(fetched);
    writer.flush().await?;
    tracing::debug!(listed = listed_count, "listing done");

    let mut summary = writer.summary.clone();
    summary.failures = failures.len() as u64;
    summary.skipped = skipped.len() as u64;
    let head = ManifestHead {
        format_version: MANIFEST_FORMAT_VERSION,
        snapshot_id: params.snapshot_id.clone(),
        folder: folder.clone(),
        started_at: params.started_at,
        completed_at: Utc::now(),
        source: params.source.clone(),
        destination: params.destination.clone(),
        kms_key_id: params.kms_key_id.clone(),
        signing_key_id: params.signing_key_id.clone(),
        previous,
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
            snapshot: params.snapshot_id.clone(),
            reason: format!("writing: {e}"),
        })?;
    let manifest_err = |reason: String| BackupError::Manifest {
        snapshot: params.snapshot_id.clone(),
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
        ports
            .store
            .put_new(
                &sig_key,
                Body::Bytes(sig),
                "application/json",
                &[("snapshot-id", params.snapshot_id.clone())],
            )
            .await
    )
    .map_err(|e| manifest_err(format!("upload of the signature to {sig_key}: {e}")))?;
    let manifest_key = manifest_key(&folder);
    failpoints::around!(
        "backup.manifest",
        ports
            .store
            .put_new(
                &manifest_key,
                Body::File(file.path().to_path_buf()),
                "application/json",
                &[
                    ("snapshot-id", params.snapshot_id.clone()),
                    ("secrets", summary.secrets.to_string()),
                    ("versions", summary.versions.to_string()),
                    ("failures", summary.failures.to_string()),
                    ("completed-at", head.completed_at.to_rfc3339()),
                ],
            )
            .await
    )
    .map_err(|e| BackupError::Manifest {
        snapshot: params.snapshot_id.clone(),
        reason: format!("upload to {manifest_key}: {e}"),
    })?;
    drop(file);
    Ok(BackupReport {
        head,
        manifest_key,
        chain_warnings,
    })
}
