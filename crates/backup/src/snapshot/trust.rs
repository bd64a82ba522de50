//! What makes a snapshot trusted, for verify, restore and the choice of "latest" / "as of":
//!
//! - its manifest's **signature** verifies with the configured signing key
//!   ([`crate::snapshot::signature`]) and the manifest describes the folder it was found in
//!   (same id, time, account and region: a copy elsewhere is a replay) — [`load_signed`];
//! - its **part list** is whole: parts 1..n in order, each at its key, the counts of the summary
//!   and of each part agreeing with the secret list — [`part_list_problems`];
//! - its **chain**: the previous snapshot it names exists with the very manifest it chained to,
//!   and is older — [`chain_problems`];
//! - restore's **source**: the snapshot's account and region are the target's unless the
//!   operator allows another — [`check_source`].
//!
//! Choosing a snapshot ([`select_trusted`]) only considers signed ones, prefers those without
//! failures and with the deployment's own filters, compares `--as-of` with the completion time,
//! and names every newer folder it passed over (no manifest, or one that does not verify).

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::domain::filters::Filters;
use crate::ports::{ApiError, KeyService, ObjectStore};
use crate::snapshot::layout::*;
use crate::snapshot::manifest::{ChainLink, Manifest};
use crate::snapshot::reader::*;
use crate::snapshot::signature::{self, SignatureProblem};

/// A manifest whose signature verified, and the SHA-256 (hex) of its bytes.
#[derive(Clone, Debug)]
pub struct Signed {
    /// The snapshot as listed.
    pub info: SnapshotInfo,
    /// The manifest.
    pub manifest: Manifest,
    /// SHA-256 (hex) of the manifest's bytes: what the next snapshot chains to.
    pub digest: String,
}

impl Signed {
    /// The link the next snapshot records.
    pub fn link(&self) -> ChainLink {
        ChainLink {
            snapshot_id: self.manifest.head.snapshot_id.clone(),
            folder: self.manifest.head.folder.clone(),
            manifest_sha256: self.digest.clone(),
        }
    }
}

/// Why a snapshot is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The manifest is missing, unreadable or does not describe this folder.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The signature does not hold.
    #[error("snapshot {snapshot} ({folder}): manifest signature: {problem}")]
    Signature {
        /// The snapshot id.
        snapshot: String,
        /// Its folder.
        folder: String,
        /// What is wrong.
        problem: SignatureProblem,
    },
}

impl TrustError {
    /// The state `list` shows.
    pub fn state(&self) -> SignatureState {
        match self {
            TrustError::Manifest(ManifestError::Missing { .. }) => SignatureState::NoManifest,
            TrustError::Signature {
                problem: SignatureProblem::Unsigned,
                ..
            } => SignatureState::Unsigned,
            e => SignatureState::Invalid(e.to_string()),
        }
    }
}

/// Read `info`'s manifest and signature, check the signature with `signing_key`, then that the
/// manifest describes this folder.
pub async fn load_signed(
    store: &dyn ObjectStore,
    keys: &dyn KeyService,
    signing_key: &str,
    info: &SnapshotInfo,
) -> Result<Signed, TrustError> {
    let bytes = manifest_bytes(store, info).await?;
    let sig_key = signature_key(&info.folder);
    let sig = store
        .get(&sig_key, 64 * 1024)
        .await
        .map_err(|source| ManifestError::Read {
            snapshot: info.id.clone(),
            key: sig_key.clone(),
            source,
        })?;
    signature::check(keys, signing_key, &bytes, sig.as_deref())
        .await
        .map_err(|problem| TrustError::Signature {
            snapshot: info.id.clone(),
            folder: info.folder.clone(),
            problem,
        })?;
    let manifest = parse_manifest(info, &bytes)?;
    let mut info = info.clone();
    let h = &manifest.head;
    info.signature = SignatureState::Verified;
    info.completed_at = Some(h.completed_at);
    info.secrets = Some(manifest.secrets.len() as u64);
    info.versions = Some(
        manifest
            .secrets
            .iter()
            .map(|s| s.versions.len() as u64)
            .sum(),
    );
    info.failures = Some(h.failures.len() as u64);
    Ok(Signed {
        info,
        digest: hex::encode(signature::digest(&bytes)),
        manifest,
    })
}

/// Every snapshot of one source, oldest first, each with its signature state and, when it
/// verifies, the counts of its signed manifest (what `list` shows).
pub async fn catalogue(
    store: &dyn ObjectStore,
    keys: &dyn KeyService,
    signing_key: &str,
    prefix: &str,
    account: &str,
    region: &str,
) -> Result<Vec<SnapshotInfo>, ApiError> {
    let list = list_snapshots(store, prefix, account, region).await?;
    futures::stream::iter(list)
        .map(|info| async move {
            if !info.complete {
                return Ok(info);
            }
            match load_signed(store, keys, signing_key, &info).await {
                Ok(signed) => Ok(signed.info),
                Err(TrustError::Manifest(ManifestError::Read { source, .. })) => Err(source),
                Err(TrustError::Signature {
                    problem: SignatureProblem::Kms(e),
                    ..
                }) => Err(e),
                Err(e) => Ok(SnapshotInfo {
                    signature: e.state(),
                    ..info
                }),
            }
        })
        .buffered(4)
        .try_collect()
        .await
}

/// The latest snapshot of one source whose signature verifies (what a new snapshot chains to),
/// and a warning for each newer folder passed over.
pub async fn latest_verified(
    store: &dyn ObjectStore,
    keys: &dyn KeyService,
    signing_key: &str,
    prefix: &str,
    account: &str,
    region: &str,
) -> Result<(Option<ChainLink>, Vec<String>), ApiError> {
    let (signed, warnings) =
        latest_verified_signed(store, keys, signing_key, prefix, account, region).await?;
    Ok((signed.map(|s| s.link()), warnings))
}

/// Like [`latest_verified`], with the verified manifest itself (what an incremental run
/// carries unchanged secrets over from).
pub async fn latest_verified_signed(
    store: &dyn ObjectStore,
    keys: &dyn KeyService,
    signing_key: &str,
    prefix: &str,
    account: &str,
    region: &str,
) -> Result<(Option<Signed>, Vec<String>), ApiError> {
    let list = list_snapshots(store, prefix, account, region).await?;
    let mut warnings = vec![];
    for info in list.iter().rev() {
        if !info.complete {
            warnings.push(no_manifest_note(store, info).await);
            continue;
        }
        match load_signed(store, keys, signing_key, info).await {
            Ok(signed) => return Ok((Some(signed), warnings)),
            Err(TrustError::Signature {
                problem: SignatureProblem::Kms(e),
                ..
            }) => return Err(e),
            Err(e) => warnings.push(format!("snapshot {} skipped: {e}", info.id)),
        }
    }
    Ok((None, warnings))
}

async fn no_manifest_note(store: &dyn ObjectStore, info: &SnapshotInfo) -> String {
    let signed = matches!(store.head(&signature_key(&info.folder)).await, Ok(Some(_)));
    format!(
        "snapshot {} ({}) is newer but has no readable manifest: {}; look at the bucket's object versions and delete markers",
        info.id,
        info.folder,
        if signed {
            "its signature exists, so the manifest was written and then deleted or hidden (or the run stopped between the two uploads)"
        } else {
            "a run that did not finish, or a manifest deleted or hidden"
        }
    )
}

/// The part list's own consistency: parts numbered 1..n in order at their keys, the summary's
/// counts, each part's secret count, every secret in a listed part. (Truncation, reordering
/// and extra parts in a *signed* manifest would be a writer bug; an edited manifest already
/// fails its signature.)
pub fn part_list_problems(manifest: &Manifest) -> Vec<String> {
    let h = &manifest.head;
    let mut problems = vec![];
    for (i, p) in h.parts.iter().enumerate() {
        let expected = i as u32 + 1;
        if p.number != expected {
            problems.push(format!(
                "part list: entry {} is part {}, expected part {expected} (parts missing, extra or reordered)",
                i + 1,
                p.number
            ));
            break;
        }
        let key = part_key(&h.folder, p.number);
        if p.key != key {
            problems.push(format!(
                "part list: part {} points at {}, not {key}",
                p.number, p.key
            ));
        }
        let held = manifest
            .secrets
            .iter()
            .filter(|s| s.part == p.number)
            .count() as u64;
        if held != p.secrets {
            problems.push(format!(
                "part list: part {} should hold {} secret(s), the manifest places {held} in it",
                p.number, p.secrets
            ));
        }
    }
    let s = &h.summary;
    for (what, said, counted) in [
        ("parts", s.parts, h.parts.len() as u64),
        ("secrets", s.secrets, manifest.secrets.len() as u64),
        ("failures", s.failures, h.failures.len() as u64),
        (
            "stored bytes",
            s.stored_bytes,
            h.parts.iter().map(|p| p.size).sum(),
        ),
    ] {
        if said != counted {
            problems.push(format!(
                "part list: the summary counts {said} {what}, the manifest lists {counted}"
            ));
        }
    }
    problems
}

/// The chain of `signed` within `list` (the snapshots of its source): the previous snapshot it
/// names must be there, older, with the manifest it chained to; a snapshot that names none must
/// have no older signed snapshot before it. Each problem names the snapshots.
pub async fn chain_problems(
    store: &dyn ObjectStore,
    keys: &dyn KeyService,
    signing_key: &str,
    list: &[SnapshotInfo],
    signed: &Signed,
) -> Vec<String> {
    let h = &signed.manifest.head;
    // Folder times (to the millisecond), to compare with the other folders'.
    let started = signed.info.started_at;
    let me = format!("snapshot {}", h.snapshot_id);
    let Some(link) = &h.previous else {
        // The first of a chain: no older snapshot may verify.
        for older in list
            .iter()
            .rev()
            .filter(|i| i.started_at < started && i.id != h.snapshot_id)
        {
            if !older.complete {
                continue;
            }
            if let Ok(o) = load_signed(store, keys, signing_key, older).await {
                return vec![format!(
                    "chain: {me} names no previous snapshot, but the older signed snapshot {} ({}) exists: {me} was written without it (replayed, or {} was added later)",
                    o.manifest.head.snapshot_id, o.manifest.head.folder, o.manifest.head.snapshot_id
                )];
            }
        }
        return vec![];
    };
    let found = list
        .iter()
        .find(|i| i.id == link.snapshot_id && i.folder == link.folder);
    let Some(prev) = found else {
        return vec![format!(
            "chain: the previous snapshot {} ({}) that {me}'s signed manifest names is missing (deleted, or its folder renamed)",
            link.snapshot_id, link.folder
        )];
    };
    let mut problems = vec![];
    if prev.started_at >= started {
        problems.push(format!(
            "chain: the previous snapshot {} started at {}, not before {me} ({}): reordered",
            prev.id,
            prev.started_at.to_rfc3339(),
            started.to_rfc3339()
        ));
    }
    match manifest_bytes(store, prev).await {
        Ok(bytes) => {
            let digest = hex::encode(signature::digest(&bytes));
            if digest != link.manifest_sha256 {
                problems.push(format!(
                    "chain: the manifest of the previous snapshot {} is not the one {me} chained to (SHA-256 {}, expected {}): replaced",
                    prev.id,
                    &digest[..12],
                    &link.manifest_sha256[..link.manifest_sha256.len().min(12)]
                ));
            }
        }
        Err(ManifestError::Missing { .. }) => problems.push(format!(
            "chain: the previous snapshot {} ({}) that {me}'s signed manifest names has no manifest (deleted or hidden)",
            prev.id, prev.folder
        )),
        Err(e) => problems.push(format!("chain: {e}")),
    }
    problems
}

/// Why restore refuses a snapshot of another source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("snapshot {snapshot} holds the secrets of account {account} region {region}, not of the target account {target_account} region {target_region}: refusing to restore (--allow-other-source restores it there anyway, e.g. a disaster-recovery copy)")]
pub struct OtherSource {
    /// The snapshot id.
    pub snapshot: String,
    /// Its source account.
    pub account: String,
    /// Its source region.
    pub region: String,
    /// The target account.
    pub target_account: String,
    /// The target region.
    pub target_region: String,
}

/// Restore's source check: the snapshot's (signed) account and region must be the target's,
/// unless `allow_other` (an explicit operator choice).
pub fn check_source(
    manifest: &Manifest,
    target_account: &str,
    target_region: &str,
    allow_other: bool,
) -> Result<(), OtherSource> {
    let s = &manifest.head.source;
    if allow_other || (s.account_id == target_account && s.region == target_region) {
        return Ok(());
    }
    Err(OtherSource {
        snapshot: manifest.head.snapshot_id.clone(),
        account: s.account_id.clone(),
        region: s.region.clone(),
        target_account: target_account.into(),
        target_region: target_region.into(),
    })
}

/// Restore's pre-check at its entry point: the part list must be whole (each problem becomes a
/// [`PartCheck`] the refusal names).
pub fn precheck(manifest: &Manifest) -> Result<(), Vec<PartCheck>> {
    let problems = part_list_problems(manifest);
    if problems.is_empty() {
        return Ok(());
    }
    let mut check = PartCheck::unlisted(0);
    check.key = manifest.head.folder.clone();
    check.problems = problems;
    Err(vec![check])
}

/// How to choose among trusted snapshots.
#[derive(Clone, Copy, Debug, Default)]
pub struct Preference<'a> {
    /// The deployment's own filters: snapshots taken with other filters (a partial backup by
    /// hand) are passed over for `latest` / `as of` while one with these exists.
    pub filters: Option<&'a Filters>,
}

/// The chosen snapshot, and what was passed over on the way (each named, with why).
#[derive(Debug)]
pub struct Chosen {
    /// The trusted snapshot.
    pub signed: Signed,
    /// Newer snapshots not chosen that may be innocent (a run that did not finish, failures,
    /// other filters), each with why.
    pub notes: Vec<String>,
    /// Newer snapshots not chosen because their manifest is unsigned, does not verify or does
    /// not belong in its folder: evidence of tampering (verify fails on them).
    pub rejected: Vec<String>,
}

/// Why no snapshot was chosen.
#[derive(Debug, thiserror::Error)]
pub enum ChooseError {
    /// The selector itself found nothing or was ambiguous.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// The snapshot named is not trusted.
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    /// Snapshots matched, but none whose signature verifies (each passed-over one named).
    #[error("no snapshot whose signature verifies {what}{}", if .notes.is_empty() { String::new() } else { format!(": {}", .notes.join("; ")) })]
    NoneTrusted {
        /// Under which location / before which time.
        what: String,
        /// What was passed over.
        notes: Vec<String>,
    },
    /// A KMS or S3 call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

fn unwanted(m: &Manifest, pref: &Preference<'_>) -> Option<String> {
    let h = &m.head;
    // Failures the deployment expects (`BACKUP_EXPECTED_UNREADABLE`) are in every snapshot: they
    // do not make an older one preferable.
    let unexpected = h.failures.iter().filter(|f| !f.expected).count();
    if unexpected > 0 {
        return Some(format!("{unexpected} secret(s) could not be read"));
    }
    match pref.filters {
        Some(f) if *f != h.filters => Some(format!(
            "taken with other filters ({}) than the deployment's ({})",
            serde_json::to_string(&h.filters).unwrap_or_default(),
            serde_json::to_string(f).unwrap_or_default()
        )),
        _ => None,
    }
}

/// Choose the snapshot `selector` names among `list` (the snapshots of one source under
/// `location`), trusting only signed ones. `latest` / `as of` walk from the newest: a snapshot
/// whose manifest is missing or does not verify is passed over and named in the notes; one with
/// failures or other filters than preferred is passed over (and named) while an older clean one
/// exists, else chosen; `as of` compares the signed completion time.
pub async fn select_trusted(
    store: &dyn ObjectStore,
    keys: &dyn KeyService,
    signing_key: &str,
    list: &[SnapshotInfo],
    selector: &Selector,
    location: &str,
    pref: Preference<'_>,
) -> Result<Chosen, ChooseError> {
    let before = match selector {
        Selector::Id(_) => {
            let info = select(list, selector, location)?;
            let signed = load_signed(store, keys, signing_key, info).await?;
            return Ok(Chosen {
                signed,
                notes: vec![],
                rejected: vec![],
            });
        }
        Selector::Latest => None,
        Selector::AsOf(t) => Some(*t),
    };
    let in_range = |t: DateTime<Utc>| before.is_none_or(|b| t <= b);
    let mut notes = vec![];
    let mut rejected = vec![];
    let mut fallback: Option<(Signed, usize)> = None;
    for info in list.iter().rev() {
        // Completion is never before the start: a snapshot started after the time is out.
        if !in_range(info.started_at) {
            continue;
        }
        if !info.complete {
            notes.push(no_manifest_note(store, info).await);
            continue;
        }
        let signed = match load_signed(store, keys, signing_key, info).await {
            Ok(s) => s,
            Err(TrustError::Manifest(ManifestError::Read { source, .. })) => {
                return Err(source.into())
            }
            Err(TrustError::Signature {
                problem: SignatureProblem::Kms(e),
                ..
            }) => return Err(e.into()),
            Err(e) => {
                rejected.push(format!("snapshot {} passed over: {e}", info.id));
                continue;
            }
        };
        if !in_range(signed.manifest.head.completed_at) {
            continue;
        }
        match unwanted(&signed.manifest, &pref) {
            None => {
                return Ok(Chosen {
                    signed,
                    notes,
                    rejected,
                })
            }
            Some(why) => {
                notes.push(format!(
                    "snapshot {} passed over for an older one: {why}",
                    signed.manifest.head.snapshot_id
                ));
                if fallback.is_none() {
                    fallback = Some((signed, notes.len() - 1));
                }
            }
        }
    }
    if let Some((signed, at)) = fallback {
        // No clean one: the newest trusted one after all.
        notes[at] = format!(
            "snapshot {} chosen although {}: no older snapshot without that",
            signed.manifest.head.snapshot_id,
            notes[at]
                .split_once(": ")
                .map(|(_, why)| why)
                .unwrap_or_default()
        );
        notes.truncate(at + 1);
        return Ok(Chosen {
            signed,
            notes,
            rejected,
        });
    }
    notes.extend(rejected);
    if notes.is_empty() {
        return Err(match before {
            None => SelectError::None(location.into()),
            Some(t) => SelectError::NoneBefore(t.to_rfc3339()),
        }
        .into());
    }
    Err(ChooseError::NoneTrusted {
        what: match before {
            None => format!("under {location}"),
            Some(t) => format!("completed at or before {} under {location}", t.to_rfc3339()),
        },
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::filters::ExpectedUnreadable;
    use crate::domain::model::SecretValue;
    use crate::ports::fakes::{FakeKms, FakeSecrets, FakeStore, FAKE_SIGNING_KEY_ARN};
    use crate::ports::Ports;
    use crate::snapshot::writer::{run_backup, BackupReport};
    use crate::testing::{backup_params, ACCOUNT, PREFIX, REGION};

    struct W {
        secrets: FakeSecrets,
        store: FakeStore,
        kms: FakeKms,
    }

    impl W {
        fn new() -> Self {
            let w = W {
                secrets: FakeSecrets::default(),
                store: FakeStore::default(),
                kms: FakeKms::default(),
            };
            for i in 0..5 {
                w.secrets
                    .add(&format!("app/s{i}"), SecretValue::string(format!("v{i}")));
            }
            w
        }

        async fn backup(&self, filters: Filters) -> BackupReport {
            self.backup_expecting(filters, "").await
        }

        /// A backup with `BACKUP_EXPECTED_UNREADABLE` = `expected`.
        async fn backup_expecting(&self, filters: Filters, expected: &str) -> BackupReport {
            let ports = Ports {
                secrets: &self.secrets,
                store: &self.store,
                keys: &self.kms,
            };
            let mut params = backup_params(filters, 64);
            params.expected_unreadable = ExpectedUnreadable::parse(expected).unwrap();
            let r = run_backup(ports, &params).await.unwrap();
            // Folder names are to the millisecond.
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
            r
        }

        async fn list(&self) -> Vec<SnapshotInfo> {
            list_snapshots(&self.store, PREFIX, ACCOUNT, REGION)
                .await
                .unwrap()
        }

        /// "latest" for a deployment with `filters`.
        async fn latest_for(&self, filters: &Filters) -> Chosen {
            let list = self.list().await;
            select_trusted(
                &self.store,
                &self.kms,
                FAKE_SIGNING_KEY_ARN,
                &list,
                &Selector::Latest,
                "x",
                Preference {
                    filters: Some(filters),
                },
            )
            .await
            .unwrap()
        }

        async fn chain(&self, id: &str) -> Vec<String> {
            let list = self.list().await;
            let info = list.iter().find(|i| i.id == id).unwrap();
            let signed = load_signed(&self.store, &self.kms, FAKE_SIGNING_KEY_ARN, info)
                .await
                .unwrap();
            chain_problems(&self.store, &self.kms, FAKE_SIGNING_KEY_ARN, &list, &signed).await
        }
    }

    #[tokio::test]
    async fn latest_prefers_the_deployments_own_filters_and_names_what_it_passed_over() {
        let w = W::new();
        let own = w.backup(Filters::default()).await;
        let partial = Filters {
            name_prefixes: vec!["app/s1".into()],
            tags: vec![],
        };
        let by_hand = w.backup(partial.clone()).await;
        let deployment = Filters::default();
        let chosen = w.latest_for(&deployment).await;
        assert_eq!(
            chosen.signed.manifest.head.snapshot_id,
            own.head.snapshot_id
        );
        assert!(
            chosen.notes.len() == 1 && chosen.notes[0].contains(&by_hand.head.snapshot_id),
            "{:?}",
            chosen.notes
        );
        // Only the partial one matches a deployment with those filters: chosen, nothing noted.
        let chosen = w.latest_for(&partial).await;
        assert_eq!(
            chosen.signed.manifest.head.snapshot_id,
            by_hand.head.snapshot_id
        );
        assert!(chosen.notes.is_empty());
        // No clean one at all: the newest signed one, named as chosen anyway.
        let none_match = Filters {
            name_prefixes: vec!["zzz/".into()],
            tags: vec![],
        };
        let chosen = w.latest_for(&none_match).await;
        assert_eq!(
            chosen.signed.manifest.head.snapshot_id,
            by_hand.head.snapshot_id
        );
        assert!(
            chosen.notes[0].contains("chosen although"),
            "{:?}",
            chosen.notes
        );
        // A newer one with a secret it could not read is passed over for an older clean one.
        w.secrets.unreadable.lock().unwrap().insert("app/s3".into());
        let failed = w.backup(Filters::default()).await;
        assert_eq!(failed.head.failures.len(), 1);
        let chosen = w.latest_for(&deployment).await;
        assert_eq!(
            chosen.signed.manifest.head.snapshot_id,
            own.head.snapshot_id
        );
        assert!(
            chosen.notes[0].contains(&failed.head.snapshot_id)
                && chosen.notes[0].contains("could not be read"),
            "{:?}",
            chosen.notes
        );
        // The same failure, expected by the deployment: marked in the signed manifest, and the
        // newer snapshot is chosen.
        let expected = w.backup_expecting(Filters::default(), "app/*").await;
        assert_eq!(
            expected
                .head
                .failures
                .iter()
                .map(|f| (f.name.as_str(), f.expected))
                .collect::<Vec<_>>(),
            [("app/s3", true)]
        );
        let chosen = w.latest_for(&deployment).await;
        assert_eq!(
            chosen.signed.manifest.head.snapshot_id, expected.head.snapshot_id,
            "{:?}",
            chosen.notes
        );
    }

    #[tokio::test]
    async fn the_chain_names_a_missing_or_replaced_predecessor() {
        let w = W::new();
        let first = w.backup(Filters::default()).await;
        let second = w.backup(Filters::default()).await;
        assert_eq!(
            second.head.previous.as_ref().unwrap().snapshot_id,
            first.head.snapshot_id
        );
        assert!(w.chain(&second.head.snapshot_id).await.is_empty());
        assert!(w.chain(&first.head.snapshot_id).await.is_empty());
        // Replaced: the predecessor's manifest bytes differ from those chained to.
        let key = manifest_key(&first.head.folder);
        let mut bytes = w.store.read(&key);
        bytes.push(b'\n');
        w.store.overwrite(&key, bytes);
        let problems = w.chain(&second.head.snapshot_id).await;
        assert!(
            problems.len() == 1
                && problems[0].contains("replaced")
                && problems[0].contains(&first.head.snapshot_id),
            "{problems:?}"
        );
        // Missing: the predecessor's folder gone.
        for k in w.store.keys() {
            if k.starts_with(&first.head.folder) {
                w.store.remove(&k);
            }
        }
        let problems = w.chain(&second.head.snapshot_id).await;
        assert!(
            problems.len() == 1 && problems[0].contains("is missing"),
            "{problems:?}"
        );
    }

    #[tokio::test]
    async fn a_snapshot_without_predecessor_while_an_older_one_verifies_is_named() {
        let w = W::new();
        let first = w.backup(Filters::default()).await;
        // Taken while the first was hidden: it names no predecessor.
        let key = manifest_key(&first.head.folder);
        let hidden = w.store.read(&key);
        w.store.remove(&key);
        let second = w.backup(Filters::default()).await;
        assert_eq!(second.head.previous, None);
        assert!(
            second.chain_warnings.len() == 1
                && second.chain_warnings[0].contains(&first.head.snapshot_id),
            "{:?}",
            second.chain_warnings
        );
        w.store.overwrite(&key, hidden);
        let problems = w.chain(&second.head.snapshot_id).await;
        assert!(
            problems.len() == 1 && problems[0].contains("names no previous snapshot"),
            "{problems:?}"
        );
    }

    #[tokio::test]
    async fn part_list_and_source_checks() {
        let w = W::new();
        let r = w.backup(Filters::default()).await;
        let list = w.list().await;
        let signed = load_signed(&w.store, &w.kms, FAKE_SIGNING_KEY_ARN, &list[0])
            .await
            .unwrap();
        let m = signed.manifest;
        assert!(m.head.parts.len() >= 2);
        assert!(part_list_problems(&m).is_empty());
        assert!(precheck(&m).is_ok());
        let mut reordered = m.clone();
        reordered.head.parts.swap(0, 1);
        assert!(part_list_problems(&reordered)[0].contains("reordered"));
        let mut truncated = m.clone();
        truncated.head.parts.pop();
        let problems = part_list_problems(&truncated);
        assert!(
            problems.iter().any(|p| p.contains("summary counts")),
            "{problems:?}"
        );
        assert!(precheck(&truncated).is_err());

        assert!(check_source(&m, ACCOUNT, REGION, false).is_ok());
        let err = check_source(&m, "210987654321", REGION, false).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(ACCOUNT)
                && text.contains("210987654321")
                && text.contains(&r.head.snapshot_id),
            "{text}"
        );
        assert!(check_source(&m, ACCOUNT, "eu-west-1", false).is_err());
        assert!(check_source(&m, "210987654321", "eu-west-1", true).is_ok());
    }
}
