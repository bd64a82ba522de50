//! A run that would outlive its Lambda invocation stops before the deadline and leaves a
//! checkpoint: where the listing is, the parts written so far and their manifest entries, the
//! failures and the totals. The next invocation for the same source resumes it (the manifest is
//! written only when the run is complete), or discards it when it cannot be resumed safely.
//!
//! Like the lease (`crates/backup/src/lambda/lease.rs`), checkpoints are new objects in a
//! sequence, never overwritten:
//!
//! ```text
//! <prefix>/checkpoints/<account>/<region>/<n, 20 digits>/checkpoint.json
//! ```
//!
//! The last one is the one that counts. It holds names, ARNs, version ids and sizes (what the
//! manifest holds), never a value.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::filters::Filters;
use crate::ports::{ApiError, Body, ObjectStore};
use crate::snapshot::layout::{manifest_key, part_key, signature_key};
use crate::snapshot::manifest::{ChainLink, Failure, ManifestSecret, PartEntry, Summary};

/// The largest checkpoint read back (entries of about 300 bytes per secret).
pub const MAX_CHECKPOINT_BYTES: u64 = 512 * 1024 * 1024;

/// How old a checkpoint may be and still be resumed (a run that has not finished in a day
/// starts over).
pub const MAX_AGE_HOURS: i64 = 24;

/// A paused run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The snapshot being written.
    pub snapshot_id: String,
    /// When its run started (names the folder, binds the parts' encryption context).
    pub started_at: DateTime<Utc>,
    /// Its folder.
    pub folder: String,
    /// The previous snapshot it chains to (and carries secrets over from).
    pub previous: Option<ChainLink>,
    /// The run's filters.
    pub filters: Filters,
    /// KMS key of the parts.
    pub kms_key_id: String,
    /// Signing key of the manifest.
    pub signing_key_id: String,
    /// The configured part size.
    pub part_size: u64,
    /// ListSecrets' token of the next page to read (`None`: the listing is done).
    pub next_token: Option<String>,
    /// Parts written so far.
    pub parts: Vec<PartEntry>,
    /// Their manifest entries.
    pub entries: Vec<ManifestSecret>,
    /// Failures so far.
    pub failures: Vec<Failure>,
    /// Secrets skipped so far.
    pub skipped: Vec<Failure>,
    /// Totals so far.
    pub summary: Summary,
    /// Invocations the run has taken so far.
    pub invocations: u32,
    /// When this checkpoint was written.
    pub written_at: DateTime<Utc>,
}

impl Checkpoint {
    /// The number of the next part.
    pub fn next_part(&self) -> u32 {
        self.parts.len() as u32 + 1
    }
}

/// `<prefix>/checkpoints/<account>/<region>/` (the prefix may be empty).
pub fn checkpoint_prefix(prefix: &str, account: &str, region: &str) -> String {
    if prefix.is_empty() {
        format!("checkpoints/{account}/{region}/")
    } else {
        format!("{prefix}/checkpoints/{account}/{region}/")
    }
}

async fn last_number(store: &dyn ObjectStore, base: &str) -> Result<Option<u64>, ApiError> {
    Ok(store
        .list_folders(base)
        .await?
        .iter()
        .filter_map(|f| {
            f.trim_end_matches('/')
                .rsplit('/')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max())
}

/// The last checkpoint of a source and its key, if any.
pub async fn latest(
    store: &dyn ObjectStore,
    base: &str,
) -> Result<Option<(String, Checkpoint)>, ApiError> {
    let Some(n) = last_number(store, base).await? else {
        return Ok(None);
    };
    let key = format!("{base}{n:020}/checkpoint.json");
    let Some(bytes) = store.get(&key, MAX_CHECKPOINT_BYTES).await? else {
        return Ok(None);
    };
    let cp = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::other(format!("checkpoint {key} does not parse: {e}")))?;
    Ok(Some((key, cp)))
}

/// Writes `cp` as the next checkpoint of the source; returns its key.
pub async fn save(
    store: &dyn ObjectStore,
    base: &str,
    cp: &Checkpoint,
) -> Result<String, ApiError> {
    let n = last_number(store, base).await?.map_or(1, |n| n + 1);
    let key = format!("{base}{n:020}/checkpoint.json");
    let body = serde_json::to_vec(cp).expect("a checkpoint serializes");
    crate::ports::put_new_once(
        store,
        &key,
        Body::Bytes(body),
        "application/json",
        &[("snapshot-id", cp.snapshot_id.clone())],
    )
    .await?;
    Ok(key)
}

/// What the resuming run must agree with.
#[derive(Clone, Copy, Debug)]
pub struct Expect<'a> {
    /// The run's filters.
    pub filters: &'a Filters,
    /// KMS key of the parts.
    pub kms_key_id: &'a str,
    /// Signing key.
    pub signing_key_id: &'a str,
    /// Part size.
    pub part_size: u64,
    /// The snapshot a new run would chain to now.
    pub previous: Option<&'a ChainLink>,
    /// Now.
    pub now: DateTime<Utc>,
}

/// Whether `cp` can be resumed: `Ok(())`, or why it is discarded (`Err`), or `Ok` is never
/// returned for a run whose manifest exists (already complete: `Err` too).
pub async fn check_resumable(
    store: &dyn ObjectStore,
    cp: &Checkpoint,
    expect: Expect<'_>,
) -> Result<(), String> {
    if store
        .head(&manifest_key(&cp.folder))
        .await
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err(format!("snapshot {} is complete", cp.snapshot_id));
    }
    if expect.now - cp.started_at > Duration::hours(MAX_AGE_HOURS) {
        return Err(format!(
            "it started at {}, more than {MAX_AGE_HOURS} hours ago",
            cp.started_at.to_rfc3339()
        ));
    }
    if &cp.filters != expect.filters {
        return Err("this run's filters differ".into());
    }
    if cp.kms_key_id != expect.kms_key_id
        || cp.signing_key_id != expect.signing_key_id
        || cp.part_size != expect.part_size
    {
        return Err("the keys or the part size changed".into());
    }
    if cp.previous.as_ref() != expect.previous {
        return Err("a newer verified snapshot of the source exists".into());
    }
    // A run that crashed after this checkpoint may have written further parts (or its
    // signature): their numbers are taken, and a resumed run could not number its parts 1..n.
    for key in [
        part_key(&cp.folder, cp.next_part()),
        signature_key(&cp.folder),
    ] {
        if store.head(&key).await.map_err(|e| e.to_string())?.is_some() {
            return Err(format!(
                "{key} exists: a run wrote past this checkpoint and stopped"
            ));
        }
    }
    Ok(())
}
