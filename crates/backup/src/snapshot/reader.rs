//! Finding snapshots, loading manifests, and opening parts with every integrity check. What
//! makes a manifest trusted (its signature, the part list, the chain, the source) is in
//! [`crate::snapshot::trust`].

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::model::SecretRecord;
use crate::ports::{ApiError, KeyService, ObjectStore};
use crate::snapshot::crypto;
use crate::snapshot::layout::*;
use crate::snapshot::manifest::*;

const MAX_MANIFEST_BYTES: u64 = 512 * 1024 * 1024;

/// Whether a snapshot's manifest is signed by the configured key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "state", content = "reason")]
pub enum SignatureState {
    /// Not looked at (a plain listing).
    #[default]
    NotChecked,
    /// The signature verifies with the configured key.
    Verified,
    /// There is no manifest.
    NoManifest,
    /// There is a manifest but no signature.
    Unsigned,
    /// The manifest cannot be trusted: why.
    Invalid(String),
}

impl fmt::Display for SignatureState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureState::NotChecked => f.write_str("not checked"),
            SignatureState::Verified => f.write_str("verified"),
            SignatureState::NoManifest => f.write_str("NO MANIFEST"),
            SignatureState::Unsigned => f.write_str("UNSIGNED"),
            SignatureState::Invalid(_) => f.write_str("INVALID"),
        }
    }
}

/// A snapshot folder. The counts come from its signed manifest, and only once its signature
/// verified ([`crate::snapshot::trust::catalogue`]); a plain [`list_snapshots`] leaves them
/// empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotInfo {
    /// The snapshot id.
    pub id: String,
    /// Its key prefix, ending in `/`.
    pub folder: String,
    /// When it started (from the folder name).
    pub started_at: DateTime<Utc>,
    /// Whether its manifest exists.
    pub complete: bool,
    /// Whether its manifest's signature verifies.
    pub signature: SignatureState,
    /// When it finished (signed manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Secrets in it (signed manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<u64>,
    /// Versions in it (signed manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<u64>,
    /// Secrets that could not be read (signed manifest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<u64>,
}

/// Snapshot folders of one source account and region, oldest first: whether each has a
/// manifest, nothing read from it (see [`crate::snapshot::trust::catalogue`]).
pub async fn list_snapshots(
    store: &dyn ObjectStore,
    prefix: &str,
    account: &str,
    region: &str,
) -> Result<Vec<SnapshotInfo>, ApiError> {
    let base = account_region_prefix(prefix, account, region);
    let folders = store.list_folders(&base).await?;
    let mut out: Vec<SnapshotInfo> = futures::stream::iter(folders)
        .filter_map(|folder| async move {
            let name = parse_folder_name(&folder)?;
            Some((folder, name))
        })
        .map(|(folder, name)| async move {
            let meta = store.head(&manifest_key(&folder)).await?;
            Ok::<_, ApiError>(SnapshotInfo {
                complete: meta.is_some(),
                signature: if meta.is_some() {
                    SignatureState::NotChecked
                } else {
                    SignatureState::NoManifest
                },
                completed_at: None,
                secrets: None,
                versions: None,
                failures: None,
                id: name.snapshot_id,
                folder,
                started_at: name.started_at,
            })
        })
        .buffer_unordered(8)
        .try_collect()
        .await?;
    out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    Ok(out)
}

/// Which snapshot: `latest`, an id (or a unique prefix of one, or the folder name), or the last
/// one completed at or before a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The last complete snapshot.
    Latest,
    /// An id, a unique prefix of one, or a folder name.
    Id(String),
    /// The last complete snapshot completed at or before this time (a plain [`select`] can
    /// only compare start times: [`crate::snapshot::trust::select_trusted`] compares the signed
    /// completion time).
    AsOf(DateTime<Utc>),
}

impl Selector {
    /// `latest`, or an id.
    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("latest") {
            Selector::Latest
        } else {
            Selector::Id(s.trim().trim_end_matches('/').to_string())
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Latest => f.write_str("latest"),
            Selector::Id(id) => f.write_str(id),
            Selector::AsOf(t) => write!(f, "as of {}", t.to_rfc3339()),
        }
    }
}

/// Why no snapshot was selected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    /// No complete snapshot under this location.
    #[error("no complete snapshot found under {0}")]
    None(String),
    /// None completed at or before this time.
    #[error("no complete snapshot completed at or before {0}")]
    NoneBefore(String),
    /// No snapshot with this id.
    #[error("no snapshot {0}")]
    NotFound(String),
    /// Several snapshots start with this id (the id, then the candidates).
    #[error("snapshot id {0} is ambiguous: {1}")]
    Ambiguous(String, String),
    /// The snapshot has no manifest.
    #[error("snapshot {0} is incomplete (no manifest: the run did not finish)")]
    Incomplete(String),
}

/// The snapshot `selector` picks from `snapshots` (of `location`, for messages).
pub fn select<'a>(
    snapshots: &'a [SnapshotInfo],
    selector: &Selector,
    location: &str,
) -> Result<&'a SnapshotInfo, SelectError> {
    match selector {
        Selector::Latest => snapshots
            .iter()
            .rev()
            .find(|s| s.complete)
            .ok_or_else(|| SelectError::None(location.into())),
        Selector::AsOf(t) => snapshots
            .iter()
            .rev()
            .find(|s| s.complete && s.started_at <= *t)
            .ok_or_else(|| SelectError::NoneBefore(t.to_rfc3339())),
        Selector::Id(id) => {
            let name = |s: &SnapshotInfo| {
                s.folder
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            };
            let exact: Vec<_> = snapshots
                .iter()
                .filter(|s| s.id == *id || name(s) == *id)
                .collect();
            let found = if exact.len() == 1 {
                exact
            } else {
                snapshots
                    .iter()
                    .filter(|s| s.id.starts_with(id.as_str()))
                    .collect()
            };
            match found.as_slice() {
                [] => Err(SelectError::NotFound(id.clone())),
                [one] if !one.complete => Err(SelectError::Incomplete(one.id.clone())),
                [one] => Ok(one),
                many => Err(SelectError::Ambiguous(
                    id.clone(),
                    many.iter()
                        .map(|s| s.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )),
            }
        }
    }
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// It does not exist.
    #[error("snapshot {snapshot}: manifest {key} is missing")]
    Missing {
        /// The snapshot id.
        snapshot: String,
        /// The manifest's key.
        key: String,
    },
    /// It could not be read.
    #[error("snapshot {snapshot}: reading manifest {key}: {source}")]
    Read {
        /// The snapshot id.
        snapshot: String,
        /// The manifest's key.
        key: String,
        /// What S3 said.
        source: ApiError,
    },
    /// It does not parse, has an unknown format, or describes another snapshot.
    #[error("snapshot {snapshot}: manifest {key} is invalid: {reason}")]
    Invalid {
        /// The snapshot id.
        snapshot: String,
        /// The manifest's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Read and parse the manifest of `info`, checking its format and that it describes this folder,
/// but **not** its signature: what callers trust goes through
/// [`crate::snapshot::trust::load_signed`].
pub async fn load_manifest(
    store: &dyn ObjectStore,
    info: &SnapshotInfo,
) -> Result<Manifest, ManifestError> {
    let bytes = manifest_bytes(store, info).await?;
    parse_manifest(info, &bytes)
}

/// The bytes of `info`'s manifest.
pub async fn manifest_bytes(
    store: &dyn ObjectStore,
    info: &SnapshotInfo,
) -> Result<Vec<u8>, ManifestError> {
    let key = manifest_key(&info.folder);
    store
        .get(&key, MAX_MANIFEST_BYTES)
        .await
        .map_err(|source| ManifestError::Read {
            snapshot: info.id.clone(),
            key: key.clone(),
            source,
        })?
        .ok_or_else(|| ManifestError::Missing {
            snapshot: info.id.clone(),
            key: key.clone(),
        })
}

/// Parse the manifest `bytes` of `info` and check that it describes this very folder: a
/// manifest copied elsewhere (another time, another account's folder) names its own.
pub fn parse_manifest(info: &SnapshotInfo, bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let key = manifest_key(&info.folder);
    let invalid = |reason: String| ManifestError::Invalid {
        snapshot: info.id.clone(),
        key: key.clone(),
        reason,
    };
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    if manifest.head.format_version != MANIFEST_FORMAT_VERSION {
        return Err(invalid(format!(
            "format version {} is not supported",
            manifest.head.format_version
        )));
    }
    let h = &manifest.head;
    let expected_base = info
        .folder
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/"))
        .unwrap_or_default();
    if !expected_base.ends_with(&format!("{}/{}/", h.source.account_id, h.source.region)) {
        return Err(invalid(format!(
            "it is a snapshot of account {} region {} (folder {}), found under {expected_base}: moved from another source",
            h.source.account_id, h.source.region, h.folder
        )));
    }
    if h.snapshot_id != info.id || h.folder != info.folder {
        return Err(invalid(format!(
            "it describes snapshot {} taken at {} in folder {}: copied or replayed here (a rolled-back or duplicated snapshot)",
            h.snapshot_id,
            h.started_at.to_rfc3339(),
            h.folder
        )));
    }
    Ok(manifest)
}

/// The outcome of one check of a part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// Passed.
    Ok,
    /// Failed.
    Failed,
    /// Not reached.
    NotChecked,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Ok => "ok",
            Check::Failed => "FAILED",
            Check::NotChecked => "-",
        })
    }
}

/// The integrity checks of one part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartCheck {
    /// The part number.
    pub part: u32,
    /// Its key.
    pub key: String,
    /// Secrets it should hold.
    pub secrets: u64,
    /// Its size per the manifest.
    pub size: u64,
    /// Size and SHA-256 against the manifest.
    pub sha256: Check,
    /// Header, KMS unwrap under the expected encryption context, and the GCM tag.
    pub decrypt: Check,
    /// Decrypted content agrees with the manifest (secrets, version ids, labels, sizes).
    pub content: Check,
    /// Every problem found; empty when the part is intact.
    pub problems: Vec<String>,
}

impl PartCheck {
    /// A part the manifest places secrets in but does not list (so nothing could be checked).
    pub fn unlisted(part: u32) -> Self {
        PartCheck {
            part,
            key: String::new(),
            secrets: 0,
            size: 0,
            sha256: Check::NotChecked,
            decrypt: Check::NotChecked,
            content: Check::NotChecked,
            problems: vec!["the manifest places secrets in this part but does not list it".into()],
        }
    }

    /// Every check passed.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Download, hash, decrypt and parse one part, checking it against the manifest (size, SHA-256
/// and S3 version id; the header's key is the manifest's `kmsKeyId`, and `Decrypt` names it).
/// Records are returned only when every check passed.
pub async fn read_part(
    store: &dyn ObjectStore,
    keys: &dyn KeyService,
    manifest: &Manifest,
    part: &PartEntry,
) -> (PartCheck, Option<Vec<SecretRecord>>) {
    let mut check = PartCheck {
        part: part.number,
        key: part.key.clone(),
        secrets: part.secrets,
        size: part.size,
        sha256: Check::NotChecked,
        decrypt: Check::NotChecked,
        content: Check::NotChecked,
        problems: vec![],
    };
    let expected_key = part_key(&manifest.head.folder, part.number);
    if part.key != expected_key {
        check.problems.push(format!(
            "manifest points part {} at {} instead of {expected_key}",
            part.number, part.key
        ));
    }
    let max_len = manifest.head.part_size.max(part.size) + 16 * 1024 * 1024;
    let object = match store.get_versioned(&expected_key, max_len).await {
        Ok(Some(o)) => {
            if let (Some(signed), Some(got)) = (&part.version_id, &o.version_id) {
                if signed != got {
                    check.problems.push(format!(
                        "object version {got} of {expected_key} is not the signed version {signed} (overwritten or replaced)"
                    ));
                }
            }
            o.data
        }
        Ok(None) => {
            check
                .problems
                .push(format!("object {expected_key} is missing"));
            return (check, None);
        }
        Err(e) => {
            check.problems.push(format!("reading {expected_key}: {e}"));
            return (check, None);
        }
    };
    let digest = hex::encode(Sha256::digest(&object));
    if object.len() as u64 != part.size || digest != part.sha256 {
        check.sha256 = Check::Failed;
        check.problems.push(format!(
            "SHA-256 mismatch: manifest says {} bytes {}, object is {} bytes {}",
            part.size,
            short(&part.sha256),
            object.len(),
            short(&digest)
        ));
    } else {
        check.sha256 = Check::Ok;
    }
    let scope = manifest.head.scope();
    let key_id = &manifest.head.kms_key_id;
    let plaintext = match crypto::open(keys, key_id, &scope, part.number, &object).await {
        Ok(p) => {
            check.decrypt = Check::Ok;
            p
        }
        Err(e) => {
            check.decrypt = Check::Failed;
            check.problems.push(e.to_string());
            return (check, None);
        }
    };
    drop(object);
    let mut records = Vec::with_capacity(part.secrets as usize);
    for (i, line) in plaintext
        .as_slice()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        match serde_json::from_slice::<SecretRecord>(line) {
            Ok(r) => records.push(r),
            Err(e) => {
                check.content = Check::Failed;
                check.problems.push(format!(
                    "record {} does not parse (line {}, column {})",
                    i + 1,
                    e.line(),
                    e.column()
                ));
                return (check, None);
            }
        }
    }
    drop(plaintext);
    let content_problems = compare_with_manifest(manifest, part.number, &records);
    if content_problems.is_empty() {
        check.content = Check::Ok;
    } else {
        check.content = Check::Failed;
        check.problems.extend(content_problems);
    }
    if check.ok() {
        (check, Some(records))
    } else {
        (check, None)
    }
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

fn compare_with_manifest(manifest: &Manifest, part: u32, records: &[SecretRecord]) -> Vec<String> {
    let mut problems = vec![];
    let mut expected: HashMap<&str, &ManifestSecret> = manifest
        .secrets
        .iter()
        .filter(|s| s.part == part)
        .map(|s| (s.name.as_str(), s))
        .collect();
    for r in records {
        let Some(entry) = expected.remove(r.meta.name.as_str()) else {
            problems.push(format!(
                "holds secret {} that the manifest does not list here",
                r.meta.name
            ));
            continue;
        };
        let got = ManifestSecret::of(r, part);
        if got != *entry {
            problems.push(format!(
                "secret {}: versions, labels or sizes differ from the manifest",
                r.meta.name
            ));
        }
    }
    let mut missing: Vec<_> = expected.keys().copied().collect();
    missing.sort();
    for name in missing {
        problems.push(format!(
            "secret {name} listed in the manifest is not in the part"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn info(id: &str, minute: u32, complete: bool) -> SnapshotInfo {
        let t = Utc.with_ymd_and_hms(2025, 1, 1, 0, minute, 0).unwrap();
        SnapshotInfo {
            id: id.into(),
            folder: format!("p/1/r/{}/", folder_name(t, id)),
            started_at: t,
            complete,
            signature: SignatureState::NotChecked,
            completed_at: None,
            secrets: None,
            versions: None,
            failures: None,
        }
    }

    #[test]
    fn selection() {
        let snaps = vec![
            info("aaaa1", 0, true),
            info("bbbb2", 10, true),
            info("aaaa3", 20, false),
        ];
        let at = |m| Utc.with_ymd_and_hms(2025, 1, 1, 0, m, 0).unwrap();
        assert_eq!(select(&snaps, &Selector::Latest, "x").unwrap().id, "bbbb2");
        assert_eq!(
            select(&snaps, &Selector::AsOf(at(5)), "x").unwrap().id,
            "aaaa1"
        );
        assert_eq!(
            select(&snaps, &Selector::AsOf(at(10)), "x").unwrap().id,
            "bbbb2"
        );
        assert_eq!(
            select(&snaps, &Selector::AsOf(at(59)), "x").unwrap().id,
            "bbbb2"
        );
        assert!(matches!(
            select(
                &snaps,
                &Selector::AsOf(at(0) - chrono::Duration::seconds(1)),
                "x"
            ),
            Err(SelectError::NoneBefore(_))
        ));
        assert_eq!(
            select(&snaps, &Selector::parse("bbbb"), "x").unwrap().id,
            "bbbb2"
        );
        assert_eq!(
            select(&snaps, &Selector::parse("aaaa1"), "x").unwrap().id,
            "aaaa1"
        );
        let folder = snaps[1]
            .folder
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            select(&snaps, &Selector::parse(&folder), "x").unwrap().id,
            "bbbb2"
        );
        assert!(matches!(
            select(&snaps, &Selector::parse("aaaa"), "x"),
            Err(SelectError::Ambiguous(..))
        ));
        assert!(matches!(
            select(&snaps, &Selector::parse("aaaa3"), "x"),
            Err(SelectError::Incomplete(_))
        ));
        assert!(matches!(
            select(&snaps, &Selector::parse("zz"), "x"),
            Err(SelectError::NotFound(_))
        ));
        assert!(matches!(
            select(&[], &Selector::Latest, "x"),
            Err(SelectError::None(_))
        ));
    }
}

/// Parse a time for `--as-of`: RFC 3339 (`2025-01-02T03:04:05Z`, with any offset), or UTC as
/// `2025-01-02T03:04[:05]`, `2025-01-02 03:04[:05]`, or a date `2025-01-02` (its start).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let s_no_z = s.trim_end_matches('Z');
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s_no_z, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2025-01-02T03:04:05Z) or 2025-01-02 03:04 (UTC)"
    ))
}

#[cfg(test)]
mod time_tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times() {
        let t = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(parse_time("2025-01-02T03:04:05Z"), Ok(t));
        assert_eq!(parse_time("2025-01-02T05:04:05+02:00"), Ok(t));
        assert_eq!(parse_time("2025-01-02 03:04:05"), Ok(t));
        assert_eq!(
            parse_time("2025-01-02T03:04"),
            Ok(t - chrono::Duration::seconds(5))
        );
        assert_eq!(
            parse_time("2025-01-02"),
            Ok(Utc.with_ymd_and_hms(2025, 1, 2, 0, 0, 0).unwrap())
        );
        assert!(parse_time("yesterday").is_err());
    }
}
