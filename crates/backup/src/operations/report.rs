//! The compliance report (`secrets-backup report`): per secret, its rotation against its
//! schedule, the last trusted backup holding its current version, the last restore drill that
//! verified it, its KMS key's state and its owning service, each judged against a [`Policy`].
//!
//! Metadata only: ListSecrets (no value is ever read), the signed manifests of the vault (a
//! snapshot counts only once its signature verified: [`crate::snapshot::trust::load_signed`]),
//! the drill's `verify summary` log lines ([`DrillLog`]) and KMS DescribeKey.
//!
//! What a drill verified, per secret: the drill logs the snapshot it checked, the parts that
//! failed, the secrets whose live state differed (`differences`) and those it could not check
//! (`unverified`); every other secret of that snapshot's signed manifest (within the drill's
//! `namePrefixes`) had its part decrypted and checked, and equalled its live state then.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::domain::filters::{matches_any, NamePattern};
use crate::ports::{
    ApiError, DrillLog, KeyDescription, KeyDirectory, KeyService, ListedSecret, ObjectStore,
    SecretsApi,
};
use crate::snapshot::manifest::Manifest;
use crate::snapshot::reader::{list_snapshots, SnapshotInfo};
use crate::snapshot::trust::load_signed;

/// The KMS key Secrets Manager uses when a secret names none.
pub const DEFAULT_KEY: &str = "aws/secretsmanager";

/// What "in policy" means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// The time the policy is judged at (normally now).
    pub at: DateTime<Utc>,
    /// The newest trusted backup holding a secret's current version must have completed within
    /// this long before `at`.
    #[serde(serialize_with = "ser_duration")]
    pub max_backup_age: Duration,
    /// A drill must have verified a secret's current version within this long before `at`
    /// (`None`: drills are not checked).
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_drill_age: Option<Duration>,
    /// How long after its due date a rotation may still happen (the rotation window).
    #[serde(serialize_with = "ser_duration")]
    pub rotation_grace: Duration,
    /// Whether a secret without rotation is in policy.
    pub allow_rotation_off: bool,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(d.num_seconds())
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.num_seconds()),
        None => s.serialize_none(),
    }
}

/// Why a secret is out of policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Rotation is off.
    RotationOff,
    /// Rotation is on, and the last rotation is older than the schedule allows.
    RotationOverdue,
    /// No trusted snapshot holds the secret.
    NeverBackedUp,
    /// Trusted snapshots hold the secret, none its current version.
    CurrentVersionNotBackedUp,
    /// The newest trusted snapshot with its current version is older than the policy allows.
    BackupStale,
    /// No drill verified its current version within the policy's age.
    NoRecentDrill,
    /// Its KMS key is disabled.
    KeyDisabled,
    /// Its KMS key is scheduled for deletion.
    KeyPendingDeletion,
    /// Its KMS key is in another unusable state, or DescribeKey failed.
    KeyUnusable,
}

impl FindingKind {
    /// The kebab-case code (as in JSON).
    pub fn code(self) -> &'static str {
        match self {
            FindingKind::RotationOff => "rotation-off",
            FindingKind::RotationOverdue => "rotation-overdue",
            FindingKind::NeverBackedUp => "never-backed-up",
            FindingKind::CurrentVersionNotBackedUp => "current-version-not-backed-up",
            FindingKind::BackupStale => "backup-stale",
            FindingKind::NoRecentDrill => "no-recent-drill",
            FindingKind::KeyDisabled => "key-disabled",
            FindingKind::KeyPendingDeletion => "key-pending-deletion",
            FindingKind::KeyUnusable => "key-unusable",
        }
    }
}

/// One reason a secret is out of policy, with what was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// Which rule.
    pub kind: FindingKind,
    /// What was found (dates, states).
    pub detail: String,
}

/// A trusted snapshot, as a row names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRef {
    /// The snapshot id.
    pub snapshot_id: String,
    /// When it completed (signed manifest).
    pub completed_at: DateTime<Utc>,
}

/// A drill run that verified a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillRef {
    /// When the drill logged its summary.
    pub at: DateTime<Utc>,
    /// The snapshot it verified.
    pub snapshot_id: String,
    /// The secret's `AWSCURRENT` version id in that snapshot.
    pub version_id: Option<String>,
}

/// The rotation schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// As configured: `every N days` (AutomaticallyAfterDays) or the ScheduleExpression.
    pub text: String,
    /// The interval, when the schedule has one (`rate(...)` or days; a `cron(...)` has none).
    #[serde(serialize_with = "ser_opt_duration")]
    pub interval: Option<Duration>,
}

impl Schedule {
    /// From the rotation rules: AutomaticallyAfterDays, or a ScheduleExpression
    /// (`rate(N days)`, `rate(N hours)`, `cron(...)`).
    pub fn of(days: Option<i64>, expression: Option<&str>) -> Option<Schedule> {
        if let Some(e) = expression.filter(|e| !e.trim().is_empty()) {
            return Some(Schedule {
                text: e.to_string(),
                interval: rate_interval(e),
            });
        }
        let days = days.filter(|d| *d > 0)?;
        Some(Schedule {
            text: if days == 1 {
                "every day".to_string()
            } else {
                format!("every {days} days")
            },
            interval: Some(Duration::days(days)),
        })
    }
}

/// The interval of `rate(N days)` / `rate(N day)` / `rate(N hours)`.
fn rate_interval(expression: &str) -> Option<Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let mut words = inner.split_whitespace();
    let n: i64 = words.next()?.parse().ok().filter(|n| *n > 0)?;
    match words.next()? {
        "day" | "days" => Some(Duration::days(n)),
        "hour" | "hours" => Some(Duration::hours(n)),
        _ => None,
    }
}

/// One secret's line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretRow {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// The AWS service that manages it (OwningService).
    pub owning_service: Option<String>,
    /// Whether rotation is on.
    pub rotation_enabled: bool,
    /// Its rotation schedule.
    pub schedule: Option<Schedule>,
    /// When it was last rotated.
    pub last_rotated: Option<DateTime<Utc>>,
    /// When the next rotation is due by the schedule (last rotated, or created, plus the
    /// interval).
    pub rotation_due: Option<DateTime<Utc>>,
    /// Its `AWSCURRENT` version id.
    pub current_version: Option<String>,
    /// The newest trusted snapshot holding its current version.
    pub last_backup: Option<SnapshotRef>,
    /// The newest trusted snapshot holding it at all.
    pub latest_snapshot_with_secret: Option<SnapshotRef>,
    /// The last drill that verified it.
    pub last_drill: Option<DrillRef>,
    /// Its KMS key (`aws/secretsmanager` when it names none).
    pub kms_key: String,
    /// The key's state (DescribeKey; `None` for the default key, not described).
    pub key_state: Option<String>,
    /// Why it is out of policy (empty: in policy).
    pub findings: Vec<Finding>,
}

impl SecretRow {
    /// Whether the secret is in policy.
    pub fn in_policy(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Totals for the summary chart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Secrets reported.
    pub secrets: usize,
    /// Secrets in policy.
    pub in_policy: usize,
    /// Secrets out of policy.
    pub out_of_policy: usize,
    /// Secrets with each finding, by code (in rule order).
    pub by_finding: Vec<FindingCount>,
}

/// How many secrets have a finding of one kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingCount {
    /// The rule.
    pub kind: FindingKind,
    /// Secrets with it.
    pub secrets: usize,
}

/// The report.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The source account.
    pub account: String,
    /// The source region.
    pub region: String,
    /// Where the snapshots are (`s3://bucket/prefix/account/region/`).
    pub vault: String,
    /// The policy applied.
    pub policy: Policy,
    /// Trusted snapshots read (newest first, until every secret's current version was found or
    /// the limit was reached).
    pub snapshots_read: usize,
    /// Snapshots passed over (unsigned, bad signature, unreadable), each with why.
    pub snapshots_passed_over: Vec<String>,
    /// Drill summaries read (`None`: drills not checked).
    pub drills_read: Option<usize>,
    /// Drill summaries not used, each with why.
    pub drill_notes: Vec<String>,
    /// One row per secret, sorted by name.
    pub secrets: Vec<SecretRow>,
    /// Totals.
    pub totals: Totals,
}

impl Report {
    /// Whether any secret is out of policy.
    pub fn out_of_policy(&self) -> bool {
        self.secrets.iter().any(|s| !s.in_policy())
    }
}

/// Where the report reads from.
pub struct Sources<'a> {
    /// Secrets Manager (ListSecrets only).
    pub secrets: &'a dyn SecretsApi,
    /// The vault bucket.
    pub store: &'a dyn ObjectStore,
    /// The vault's KMS (manifest signatures).
    pub vault_keys: &'a dyn KeyService,
    /// The secrets' KMS (DescribeKey).
    pub key_directory: &'a dyn KeyDirectory,
    /// The drill's log (`None`: drills not checked).
    pub drills: Option<&'a dyn DrillLog>,
}

/// Which vault, and which secrets.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The manifest signing key.
    pub signing_key: String,
    /// The snapshot prefix (normalized).
    pub prefix: String,
    /// The source account.
    pub account: String,
    /// The source region.
    pub region: String,
    /// `s3://bucket/prefix/account/region/`, for the report's text.
    pub vault: String,
    /// Only secrets matching one of these (empty: all).
    pub patterns: Vec<NamePattern>,
    /// The most trusted snapshots to read.
    pub max_snapshots: usize,
}

/// Why no report could be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Listing the secrets failed.
    #[error("listing the secrets (ListSecrets): {0}")]
    Secrets(ApiError),
    /// Listing the snapshots failed.
    #[error("listing the snapshots under {vault}: {source}")]
    Snapshots {
        /// Where.
        vault: String,
        /// Why.
        source: ApiError,
    },
    /// Reading the drill log failed.
    #[error("reading the drill summaries: {0}")]
    Drills(ApiError),
}

/// What the report keeps of a trusted manifest: each secret's versions and part.
struct Held {
    snapshot: SnapshotRef,
    /// name → (version ids, the `AWSCURRENT` version id, part).
    secrets: HashMap<String, (HashSet<String>, Option<String>, u32)>,
}

impl Held {
    fn of(manifest: &Manifest) -> Held {
        Held {
            snapshot: SnapshotRef {
                snapshot_id: manifest.head.snapshot_id.clone(),
                completed_at: manifest.head.completed_at,
            },
            secrets: manifest
                .secrets
                .iter()
                .map(|s| {
                    let current = s
                        .versions
                        .iter()
                        .find(|v| v.labels.iter().any(|l| l == rotation::store::AWSCURRENT))
                        .map(|v| v.version_id.clone());
                    let ids = s.versions.iter().map(|v| v.version_id.clone()).collect();
                    (s.name.clone(), (ids, current, s.part))
                })
                .collect(),
        }
    }
}

/// A drill summary line as the report reads it (`crate::lambda::summary::VerifySummary`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DrillLine {
    message: String,
    snapshot_id: String,
    #[serde(default)]
    differences: Vec<Named>,
    #[serde(default)]
    failed_parts: Vec<PartNo>,
    /// Absent in summaries logged before it was recorded: such a drill is not used.
    unverified: Option<Vec<String>>,
    #[serde(default)]
    name_prefixes: Vec<String>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct PartNo {
    part: u32,
}

/// Build the report: list the secrets, read the trusted snapshots newest first, the drill
/// summaries and the keys' states, and judge each secret against `policy`.
pub async fn report(
    src: Sources<'_>,
    scope: &Scope,
    policy: Policy,
    concurrency: usize,
) -> Result<Report, ReportError> {
    // 1. The secrets (ListSecrets: metadata and labelled versions; no value).
    let listed: Vec<ListedSecret> = src
        .secrets
        .list(&[])
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(ReportError::Secrets)?
        .into_iter()
        .filter(|s| matches_any(&scope.patterns, &s.name))
        .collect();
    let current_of = |s: &ListedSecret| -> Option<String> {
        s.described
            .versions
            .iter()
            .find(|v| v.labels.iter().any(|l| l == rotation::store::AWSCURRENT))
            .map(|v| v.version_id.clone())
    };

    // 2. The drills' summaries (read first: a manifest a drill checked is judged against its
    // drills while it is in memory, and no manifest is kept after).
    let mut drill_notes = vec![];
    let mut drills: Vec<(DateTime<Utc>, DrillLine)> = vec![];
    let drills_read = match (src.drills, policy.max_drill_age) {
        (Some(log), Some(age)) => {
            let since = policy.at - std::cmp::max(age * 2, Duration::days(90));
            let events = log.summaries(since).await.map_err(ReportError::Drills)?;
            for e in &events {
                let Ok(line) = serde_json::from_str::<DrillLine>(&e.message) else {
                    continue;
                };
                if line.message != "verify summary" {
                    continue;
                }
                if line.unverified.is_none() {
                    drill_notes.push(format!(
                        "drill of {} at {}: logged before it named its unverified secrets; not used",
                        line.snapshot_id,
                        e.time.to_rfc3339()
                    ));
                    continue;
                }
                drills.push((e.time, line));
            }
            Some(events.len())
        }
        _ => None,
    };
    let drilled: HashSet<String> = drills.iter().map(|(_, l)| l.snapshot_id.clone()).collect();

    // 3. Trusted snapshots, newest first, until every secret's current version is found (or
    // `max_snapshots`); then the older snapshots only drills name.
    let list = list_snapshots(src.store, &scope.prefix, &scope.account, &scope.region)
        .await
        .map_err(|source| ReportError::Snapshots {
            vault: scope.vault.clone(),
            source,
        })?;
    let wanted: HashMap<&str, Option<String>> = listed
        .iter()
        .map(|s| (s.name.as_str(), current_of(s)))
        .collect();
    let mut passed_over = vec![];
    let mut snapshots_read = 0;
    let mut last_backup: HashMap<String, SnapshotRef> = HashMap::new();
    let mut latest_any: HashMap<String, SnapshotRef> = HashMap::new();
    let mut last_drill: HashMap<String, DrillRef> = HashMap::new();
    let mut judged: HashSet<String> = HashSet::new();
    for info in list.iter().rev().filter(|i| i.complete) {
        if snapshots_read >= scope.max_snapshots || last_backup.len() == wanted.len() {
            break;
        }
        let signed = match load_signed(src.store, src.vault_keys, &scope.signing_key, info).await {
            Ok(s) => s,
            Err(e) => {
                passed_over.push(e.to_string());
                continue;
            }
        };
        snapshots_read += 1;
        let h = Held::of(&signed.manifest);
        for (name, current) in &wanted {
            if let Some((ids, _, _)) = h.secrets.get(*name) {
                latest_any
                    .entry(name.to_string())
                    .or_insert_with(|| h.snapshot.clone());
                if current.as_ref().is_some_and(|c| ids.contains(c)) {
                    last_backup
                        .entry(name.to_string())
                        .or_insert_with(|| h.snapshot.clone());
                }
            }
        }
        if drilled.contains(&h.snapshot.snapshot_id) {
            apply_drills(&h, &drills, &wanted, &mut last_drill);
            judged.insert(h.snapshot.snapshot_id.clone());
        }
    }
    for info in list.iter().filter(|i| !i.complete) {
        passed_over.push(format!(
            "snapshot {} ({}): no manifest (incomplete)",
            info.id, info.folder
        ));
    }
    for id in drilled.difference(&judged) {
        if let Some(h) = load_by_id(&src, scope, &list, id, &mut drill_notes).await {
            apply_drills(&h, &drills, &wanted, &mut last_drill);
        }
    }

    // 4. The keys' states (DescribeKey once per key named; the default key is not described).
    let key_ids: BTreeSet<String> = listed
        .iter()
        .filter_map(|s| s.described.meta.kms_key_id.clone())
        .collect();
    let described: HashMap<String, Result<KeyDescription, ApiError>> =
        futures::stream::iter(key_ids)
            .map(|k| async move {
                let d = src.key_directory.describe_key(&k).await;
                (k, d)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;

    // 5. Judge each secret.
    let mut rows: Vec<SecretRow> = listed
        .iter()
        .map(|s| {
            let meta = &s.described.meta;
            let r = &meta.rotation;
            let schedule =
                Schedule::of(r.automatically_after_days, r.schedule_expression.as_deref());
            let key = meta.kms_key_id.as_ref().map(|k| (k, &described[k]));
            let mut row = SecretRow {
                name: s.name.clone(),
                arn: s.arn.clone(),
                owning_service: meta.owning_service.clone(),
                rotation_enabled: r.enabled,
                rotation_due: schedule
                    .as_ref()
                    .and_then(|sc| sc.interval)
                    .and_then(|i| meta.last_rotated.or(meta.created).map(|t| t + i)),
                schedule,
                last_rotated: meta.last_rotated,
                current_version: current_of(s),
                last_backup: last_backup.get(&s.name).cloned(),
                latest_snapshot_with_secret: latest_any.get(&s.name).cloned(),
                last_drill: last_drill.get(&s.name).cloned(),
                kms_key: meta
                    .kms_key_id
                    .clone()
                    .unwrap_or_else(|| DEFAULT_KEY.to_string()),
                key_state: key.map(|(_, d)| match d {
                    Ok(d) => d.state.clone(),
                    Err(_) => "Unknown".to_string(),
                }),
                findings: vec![],
            };
            row.findings = judge(&row, key.and_then(|(_, d)| d.as_ref().err()), &policy);
            row
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let totals = totals(&rows);
    Ok(Report {
        account: scope.account.clone(),
        region: scope.region.clone(),
        vault: scope.vault.clone(),
        policy,
        snapshots_read,
        snapshots_passed_over: passed_over,
        drills_read,
        drill_notes,
        secrets: rows,
        totals,
    })
}

/// Record, for each secret of `wanted` that a drill of `h`'s snapshot verified, that drill when
/// it is the newest seen: its part passed, it was neither different from live nor unverified,
/// and it is within the drill's name prefixes.
fn apply_drills(
    h: &Held,
    drills: &[(DateTime<Utc>, DrillLine)],
    wanted: &HashMap<&str, Option<String>>,
    last_drill: &mut HashMap<String, DrillRef>,
) {
    for (at, line) in drills
        .iter()
        .filter(|(_, l)| l.snapshot_id == h.snapshot.snapshot_id)
    {
        let failed: HashSet<u32> = line.failed_parts.iter().map(|p| p.part).collect();
        let skip: HashSet<&str> = line
            .differences
            .iter()
            .map(|d| d.name.as_str())
            .chain(line.unverified.iter().flatten().map(String::as_str))
            .collect();
        let prefixes: Vec<NamePattern> = line.name_prefixes.iter().map(NamePattern::new).collect();
        for name in wanted.keys() {
            let Some((_, current, part)) = h.secrets.get(*name) else {
                continue;
            };
            if skip.contains(name) || failed.contains(part) || !matches_any(&prefixes, name) {
                continue;
            }
            if last_drill.get(*name).is_some_and(|d| d.at >= *at) {
                continue;
            }
            last_drill.insert(
                name.to_string(),
                DrillRef {
                    at: *at,
                    snapshot_id: line.snapshot_id.clone(),
                    version_id: current.clone(),
                },
            );
        }
    }
}

/// The trusted manifest of snapshot `id` (a drill's, older than those read for the backups).
async fn load_by_id(
    src: &Sources<'_>,
    scope: &Scope,
    list: &[SnapshotInfo],
    id: &str,
    notes: &mut Vec<String>,
) -> Option<Held> {
    let Some(info) = list.iter().find(|i| i.id == id) else {
        notes.push(format!(
            "drill of {id}: no such snapshot in the vault; not used"
        ));
        return None;
    };
    match load_signed(src.store, src.vault_keys, &scope.signing_key, info).await {
        Ok(s) => Some(Held::of(&s.manifest)),
        Err(e) => {
            notes.push(format!("drill of {id}: {e}; not used"));
            None
        }
    }
}

/// The findings of `row` (its facts filled in) under `policy`; `key_error` is DescribeKey's
/// failure for its key, if any.
pub fn judge(row: &SecretRow, key_error: Option<&ApiError>, policy: &Policy) -> Vec<Finding> {
    let mut f = vec![];
    let at = policy.at;
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    if !row.rotation_enabled {
        if !policy.allow_rotation_off {
            f.push(Finding {
                kind: FindingKind::RotationOff,
                detail: "rotation is not enabled".into(),
            });
        }
    } else if let Some(due) = row.rotation_due {
        if at > due + policy.rotation_grace {
            f.push(Finding {
                kind: FindingKind::RotationOverdue,
                detail: format!(
                    "rotation was due {} ({}; last rotated {})",
                    day(due),
                    row.schedule.as_ref().map(|s| s.text.as_str()).unwrap_or(""),
                    row.last_rotated.map(day).unwrap_or_else(|| "never".into())
                ),
            });
        }
    }
    match (&row.last_backup, &row.latest_snapshot_with_secret) {
        (Some(b), _) => {
            if at - b.completed_at > policy.max_backup_age {
                f.push(Finding {
                    kind: FindingKind::BackupStale,
                    detail: format!(
                        "newest backup of its current version completed {} (snapshot {})",
                        day(b.completed_at),
                        b.snapshot_id
                    ),
                });
            }
        }
        (None, Some(any)) => f.push(Finding {
            kind: FindingKind::CurrentVersionNotBackedUp,
            detail: format!(
                "current version {} is in no trusted snapshot (newest holding the secret: {})",
                row.current_version.as_deref().unwrap_or("(none)"),
                any.snapshot_id
            ),
        }),
        (None, None) => f.push(Finding {
            kind: FindingKind::NeverBackedUp,
            detail: "in no trusted snapshot".into(),
        }),
    }
    if let Some(age) = policy.max_drill_age {
        let ok = row.last_drill.as_ref().is_some_and(|d| {
            at - d.at <= age && d.version_id.is_some() && d.version_id == row.current_version
        });
        if !ok {
            f.push(Finding {
                kind: FindingKind::NoRecentDrill,
                detail: match &row.last_drill {
                    None => "no drill verified it".into(),
                    Some(d) => format!(
                        "last drill that verified it: {} (snapshot {}, version {})",
                        day(d.at),
                        d.snapshot_id,
                        d.version_id.as_deref().unwrap_or("?")
                    ),
                },
            });
        }
    }
    match (key_error, row.key_state.as_deref()) {
        (Some(e), _) => f.push(Finding {
            kind: FindingKind::KeyUnusable,
            detail: format!("key {}: {e}", row.kms_key),
        }),
        (None, Some("Disabled")) => f.push(Finding {
            kind: FindingKind::KeyDisabled,
            detail: format!("key {} is disabled", row.kms_key),
        }),
        (None, Some("PendingDeletion")) => f.push(Finding {
            kind: FindingKind::KeyPendingDeletion,
            detail: format!("key {} is pending deletion", row.kms_key),
        }),
        (None, Some(s)) if s != "Enabled" => f.push(Finding {
            kind: FindingKind::KeyUnusable,
            detail: format!("key {} is {s}", row.kms_key),
        }),
        _ => {}
    }
    f
}

fn totals(rows: &[SecretRow]) -> Totals {
    let mut by: HashMap<FindingKind, usize> = HashMap::new();
    for r in rows {
        let kinds: BTreeSet<FindingKind> = r.findings.iter().map(|f| f.kind).collect();
        for k in kinds {
            *by.entry(k).or_default() += 1;
        }
    }
    let mut by_finding: Vec<FindingCount> = by
        .into_iter()
        .map(|(kind, secrets)| FindingCount { kind, secrets })
        .collect();
    by_finding.sort_by_key(|c| c.kind);
    let out = rows.iter().filter(|r| !r.in_policy()).count();
    Totals {
        secrets: rows.len(),
        in_policy: rows.len() - out,
        out_of_policy: out,
        by_finding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            at: "2026-03-10T00:00:00Z".parse().unwrap(),
            max_backup_age: Duration::hours(48),
            max_drill_age: Some(Duration::days(14)),
            rotation_grace: Duration::hours(24),
            allow_rotation_off: false,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn good() -> SecretRow {
        SecretRow {
            name: "app/db".into(),
            arn: "arn:aws:secretsmanager:eu-west-1:1:secret:app/db-AbCdEf".into(),
            owning_service: None,
            rotation_enabled: true,
            schedule: Schedule::of(Some(30), None),
            last_rotated: Some(t("2026-03-01T00:00:00Z")),
            rotation_due: Some(t("2026-03-31T00:00:00Z")),
            current_version: Some("v2".into()),
            last_backup: Some(SnapshotRef {
                snapshot_id: "s2".into(),
                completed_at: t("2026-03-09T01:00:00Z"),
            }),
            latest_snapshot_with_secret: None,
            last_drill: Some(DrillRef {
                at: t("2026-03-08T00:00:00Z"),
                snapshot_id: "s1".into(),
                version_id: Some("v2".into()),
            }),
            kms_key: DEFAULT_KEY.into(),
            key_state: None,
            findings: vec![],
        }
    }

    fn kinds(row: &SecretRow, p: &Policy) -> Vec<FindingKind> {
        judge(row, None, p).iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_secret_in_policy_has_no_finding() {
        assert_eq!(kinds(&good(), &policy()), []);
    }

    #[test]
    fn each_rule_names_its_finding() {
        let p = policy();
        let mut r = good();
        r.rotation_enabled = false;
        assert_eq!(kinds(&r, &p), [FindingKind::RotationOff]);
        let allowed = Policy {
            allow_rotation_off: true,
            ..policy()
        };
        assert_eq!(kinds(&r, &allowed), []);

        // Due on the 31st, judged on the 10th of the next month, beyond the day's grace.
        let mut r = good();
        r.rotation_due = Some(t("2026-03-08T00:00:00Z"));
        assert_eq!(kinds(&r, &p), [FindingKind::RotationOverdue]);
        r.rotation_due = Some(t("2026-03-09T01:00:00Z"));
        assert_eq!(kinds(&r, &p), [], "within the grace");

        let mut r = good();
        r.last_backup.as_mut().unwrap().completed_at = t("2026-03-07T23:00:00Z");
        assert_eq!(kinds(&r, &p), [FindingKind::BackupStale]);

        let mut r = good();
        r.last_backup = None;
        assert_eq!(kinds(&r, &p), [FindingKind::NeverBackedUp]);
        r.latest_snapshot_with_secret = Some(SnapshotRef {
            snapshot_id: "s0".into(),
            completed_at: t("2026-03-09T00:00:00Z"),
        });
        assert_eq!(kinds(&r, &p), [FindingKind::CurrentVersionNotBackedUp]);

        // A drill of an older version, or too long ago, does not count.
        let mut r = good();
        r.last_drill.as_mut().unwrap().version_id = Some("v1".into());
        assert_eq!(kinds(&r, &p), [FindingKind::NoRecentDrill]);
        let mut r = good();
        r.last_drill.as_mut().unwrap().at = t("2026-02-20T00:00:00Z");
        assert_eq!(kinds(&r, &p), [FindingKind::NoRecentDrill]);
        let unchecked = Policy {
            max_drill_age: None,
            ..policy()
        };
        r.last_drill = None;
        assert_eq!(kinds(&r, &unchecked), []);

        let mut r = good();
        r.kms_key = "arn:aws:kms:eu-west-1:1:key/k".into();
        for (state, kind) in [
            ("Disabled", Some(FindingKind::KeyDisabled)),
            ("PendingDeletion", Some(FindingKind::KeyPendingDeletion)),
            ("PendingImport", Some(FindingKind::KeyUnusable)),
            ("Enabled", None),
        ] {
            r.key_state = Some(state.into());
            assert_eq!(
                kinds(&r, &p),
                kind.into_iter().collect::<Vec<_>>(),
                "{state}"
            );
        }
        let e = ApiError::other("DescribeKey: AccessDeniedException");
        assert_eq!(judge(&r, Some(&e), &p)[0].kind, FindingKind::KeyUnusable);
    }

    #[test]
    fn a_drill_verifies_the_secrets_of_its_snapshot_it_found_intact_and_unchanged() {
        let secret = |part: u32| {
            (
                HashSet::from(["v1".to_string()]),
                Some("v1".to_string()),
                part,
            )
        };
        let h = Held {
            snapshot: SnapshotRef {
                snapshot_id: "s1".into(),
                completed_at: t("2026-03-01T00:00:00Z"),
            },
            secrets: ["ok", "changed", "unverified", "bad-part", "other/x", "old"]
                .into_iter()
                .map(|n| (n.to_string(), secret(if n == "bad-part" { 2 } else { 1 })))
                .collect(),
        };
        let line = |json: serde_json::Value| -> DrillLine { serde_json::from_value(json).unwrap() };
        let drills = vec![
            (
                t("2026-03-02T00:00:00Z"),
                line(serde_json::json!({
                    "message": "verify summary", "snapshotId": "s1",
                    "differences": [{"name": "changed", "status": "changed"}],
                    "failedParts": [{"part": 2}], "unverified": ["unverified"],
                    "namePrefixes": ["ok", "changed", "unverified", "bad-part", "old"]
                })),
            ),
            (
                t("2026-03-03T00:00:00Z"),
                line(serde_json::json!({
                    "message": "verify summary", "snapshotId": "other", "unverified": []
                })),
            ),
        ];
        let wanted: HashMap<&str, Option<String>> = h
            .secrets
            .keys()
            .map(|k| (k.as_str(), Some("v1".to_string())))
            .collect();
        let mut last = HashMap::new();
        // A newer drill already recorded for "old" is kept.
        let newer = DrillRef {
            at: t("2026-03-05T00:00:00Z"),
            snapshot_id: "s9".into(),
            version_id: Some("v1".into()),
        };
        last.insert("old".to_string(), newer.clone());
        apply_drills(&h, &drills, &wanted, &mut last);
        let mut names: Vec<&str> = last.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, ["ok", "old"]);
        assert_eq!(last["ok"].snapshot_id, "s1");
        assert_eq!(last["ok"].version_id.as_deref(), Some("v1"));
        assert_eq!(last["old"], newer);
    }

    #[test]
    fn schedules_give_their_interval() {
        assert_eq!(
            Schedule::of(Some(7), None).unwrap().interval,
            Some(Duration::days(7))
        );
        let s = Schedule::of(Some(7), Some("rate(10 days)")).unwrap();
        assert_eq!(
            (s.text.as_str(), s.interval),
            ("rate(10 days)", Some(Duration::days(10)))
        );
        assert_eq!(
            Schedule::of(None, Some("rate(4 hours)")).unwrap().interval,
            Some(Duration::hours(4))
        );
        assert_eq!(
            Schedule::of(None, Some("cron(0 16 1,15 * ? *)"))
                .unwrap()
                .interval,
            None
        );
        assert_eq!(Schedule::of(None, None), None);
        assert_eq!(Schedule::of(Some(0), None), None);
    }
}
