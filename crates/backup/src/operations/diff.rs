//! Snapshot against live: what is missing, what changed, what is new.
//!
//! Compared: the value behind `AWSCURRENT` and every custom label, the description, the KMS key,
//! the tags (except reserved `aws:` ones) and the resource policy. Reported but not counted as a
//! change: where `AWSPREVIOUS` / `AWSPENDING` point (Secrets Manager moves those itself),
//! labels that exist only live, and rotation settings. Restore fixes exactly what is counted,
//! so a second restore finds nothing to do.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;

use crate::domain::filters::{matches_any, NamePattern};
use crate::domain::model::*;
use crate::ports::{ApiError, SecretsApi};
use crate::snapshot::manifest::Manifest;

/// A secret as it is now.
#[derive(Clone, Debug)]
pub enum Live {
    /// No such secret.
    NotFound,
    /// Scheduled for deletion at this time.
    ScheduledForDeletion(DateTime<Utc>),
    /// The secret exists.
    Present {
        /// Its metadata (with its resource policy) and labelled versions (with their creation date
        /// for those whose value was read).
        described: Box<Described>,
        /// Values of the versions that carry a compared label, by version id.
        values: HashMap<String, SecretValue>,
    },
}

/// Read what the comparison needs, by name (a recreated secret has a new ARN).
pub async fn fetch_live(api: &dyn SecretsApi, name: &str) -> Result<Live, ApiError> {
    let Some(mut described) = api.describe(name).await? else {
        return Ok(Live::NotFound);
    };
    if let Some(when) = described.deleted {
        return Ok(Live::ScheduledForDeletion(when));
    }
    let arn = described.meta.arn.clone();
    described.meta.resource_policy = api.resource_policy(&arn).await?;
    let mut values = HashMap::new();
    for v in &mut described.versions {
        if v.labels.iter().any(|l| is_compared_label(l)) {
            let got = api.get_version(&arn, &v.version_id).await?;
            v.created = got.created;
            values.insert(v.version_id.clone(), got.value);
        }
    }
    Ok(Live::Present {
        described: Box::new(described),
        values,
    })
}

/// A secret of the snapshot (or a live one) compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Live equals the snapshot.
    Unchanged,
    /// Live differs.
    Changed,
    /// Deleted, or scheduled for deletion, since the snapshot.
    Missing,
    /// Live, matching the snapshot's filters, but not in it.
    New,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Unchanged => "unchanged",
            Status::Changed => "changed",
            Status::Missing => "missing",
            Status::New => "new",
        })
    }
}

/// One difference between a snapshot's secret and the live one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Change {
    /// The value behind `label` differs, or no live version carries `label`.
    #[serde(rename_all = "camelCase")]
    Value {
        /// The label.
        label: String,
        /// The version that carries it in the snapshot.
        snapshot_version: String,
        /// The version that carries it live, if any.
        live_version: Option<String>,
    },
    /// The description differs.
    Description,
    /// The KMS key differs.
    KmsKey,
    /// The tags differ (reserved `aws:` tags aside).
    #[serde(rename_all = "camelCase")]
    Tags {
        /// Keys live but not in the snapshot.
        added: Vec<String>,
        /// Keys in the snapshot but not live.
        removed: Vec<String>,
        /// Keys whose value differs.
        changed: Vec<String>,
    },
    /// The resource policy differs (compared as JSON).
    ResourcePolicy,
    /// A parameter's type, tier, data type or policies differ.
    #[serde(rename_all = "camelCase")]
    ParameterSettings {
        /// Which of `type`, `tier`, `dataType`, `policies`.
        fields: Vec<String>,
    },
    /// The secret no longer exists.
    NotFound,
    /// The secret is scheduled for deletion.
    ScheduledForDeletion {
        /// When it will be deleted.
        at: DateTime<Utc>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Value {
                label,
                live_version: Some(_),
                ..
            } => write!(f, "{label} value differs"),
            Change::Value {
                label,
                live_version: None,
                ..
            } => write!(f, "{label} label missing"),
            Change::Description => f.write_str("description differs"),
            Change::KmsKey => f.write_str("KMS key differs"),
            Change::Tags {
                added,
                removed,
                changed,
            } => {
                let mut parts = vec![];
                if !removed.is_empty() {
                    parts.push(format!("tags missing: {}", removed.join(",")));
                }
                if !added.is_empty() {
                    parts.push(format!("tags added: {}", added.join(",")));
                }
                if !changed.is_empty() {
                    parts.push(format!("tag values differ: {}", changed.join(",")));
                }
                f.write_str(&parts.join("; "))
            }
            Change::ResourcePolicy => f.write_str("resource policy differs"),
            Change::ParameterSettings { fields } => {
                write!(f, "parameter settings differ: {}", fields.join(","))
            }
            Change::NotFound => f.write_str("deleted"),
            Change::ScheduledForDeletion { at } => {
                write!(
                    f,
                    "scheduled for deletion ({})",
                    at.format("%Y-%m-%d %H:%M UTC")
                )
            }
        }
    }
}

/// How one secret compares with the snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretDiff {
    /// The secret's name.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// What restore would fix.
    pub changes: Vec<Change>,
    /// Differences that are reported but not restored.
    pub notes: Vec<String>,
}

impl SecretDiff {
    /// The changes and notes as one line.
    pub fn detail(&self) -> String {
        let mut parts: Vec<String> = self.changes.iter().map(|c| c.to_string()).collect();
        parts.extend(self.notes.iter().map(|n| format!("note: {n}")));
        parts.join("; ")
    }

    /// A live secret that is not in the snapshot.
    pub fn new_secret(name: &str) -> Self {
        SecretDiff {
            name: name.into(),
            status: Status::New,
            changes: vec![],
            notes: vec!["not in the snapshot; restore leaves it alone".into()],
        }
    }
}

/// The KMS key a secret uses, with the default key spelled one way.
fn kms_key(k: &Option<String>) -> &str {
    match k.as_deref() {
        // Each service's default key (Secrets Manager's, Parameter Store's), spelled one way.
        None | Some("") | Some("alias/aws/secretsmanager") | Some("alias/aws/ssm") => {
            "alias/aws/secretsmanager"
        }
        Some(k) => k,
    }
}

fn same_policy(a: &Option<String>, b: &Option<String>) -> bool {
    let norm = |p: &Option<String>| -> Option<serde_json::Value> {
        p.as_deref().filter(|s| !s.trim().is_empty()).map(|s| {
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.into()))
        })
    };
    norm(a) == norm(b)
}

/// The tag difference, reserved `aws:` tags aside, or `None`.
pub fn tag_change(snapshot: &SecretMeta, live: &SecretMeta) -> Option<Change> {
    let want: HashMap<&str, &str> = snapshot
        .user_tags()
        .into_iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    let have: HashMap<&str, &str> = live
        .user_tags()
        .into_iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    let mut removed: Vec<String> = want
        .keys()
        .filter(|k| !have.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    let mut added: Vec<String> = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    let mut changed: Vec<String> = want
        .iter()
        .filter(|(k, v)| have.get(*k).is_some_and(|hv| hv != *v))
        .map(|(k, _)| k.to_string())
        .collect();
    if removed.is_empty() && added.is_empty() && changed.is_empty() {
        return None;
    }
    removed.sort();
    added.sort();
    changed.sort();
    Some(Change::Tags {
        added,
        removed,
        changed,
    })
}

/// Which of a parameter's settings differ (`type`, `tier`, `dataType`, `policies`), and the
/// differences only reported: a parameter moved from Standard to Advanced since cannot go back
/// (Parameter Store refuses the downgrade), so restore keeps the live tier and says so.
pub fn parameter_settings_change(
    snapshot: &ParameterMeta,
    live: &ParameterMeta,
) -> (Vec<String>, Vec<String>) {
    let mut fields = vec![];
    let mut notes = vec![];
    if snapshot.kind != live.kind {
        fields.push("type".to_string());
    }
    let tier = |t: &Option<String>| t.clone().unwrap_or_else(|| "Standard".into());
    let (want, have) = (tier(&snapshot.tier), tier(&live.tier));
    if want != have {
        if want == "Standard" && have == "Advanced" {
            notes.push(
                "tier is Advanced live, Standard in the snapshot (not restored: a downgrade)"
                    .into(),
            );
        } else {
            fields.push("tier".to_string());
        }
    }
    let data_type = |t: &Option<String>| t.clone().unwrap_or_else(|| "text".into());
    if data_type(&snapshot.data_type) != data_type(&live.data_type) {
        fields.push("dataType".to_string());
    }
    let policies = |p: &Option<String>| -> Option<serde_json::Value> {
        p.as_deref()
            .filter(|s| !s.trim().is_empty() && s.trim() != "[]")
            .map(|s| {
                serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.into()))
            })
    };
    if policies(&snapshot.policies) != policies(&live.policies) {
        fields.push("policies".to_string());
    }
    (fields, notes)
}

/// Compare a secret of the snapshot with its live state.
pub fn compare(snapshot: &SecretRecord, live: &Live) -> SecretDiff {
    let mut diff = SecretDiff {
        name: snapshot.meta.name.clone(),
        status: Status::Unchanged,
        changes: vec![],
        notes: vec![],
    };
    let (described, values) = match live {
        Live::NotFound => {
            diff.status = Status::Missing;
            diff.changes.push(Change::NotFound);
            return diff;
        }
        Live::ScheduledForDeletion(at) => {
            diff.status = Status::Missing;
            diff.changes.push(Change::ScheduledForDeletion { at: *at });
            return diff;
        }
        Live::Present { described, values } => (described, values),
    };
    let live_holder = |label: &str| {
        described
            .versions
            .iter()
            .find(|v| v.labels.iter().any(|l| l == label))
    };
    let snapshot_labels: BTreeSet<&str> = snapshot
        .versions
        .iter()
        .flat_map(|v| v.labels.iter().map(String::as_str))
        .collect();
    for v in &snapshot.versions {
        for label in v.labels.iter().filter(|l| is_compared_label(l)) {
            let holder = live_holder(label);
            let same = holder
                .and_then(|h| values.get(&h.version_id))
                .is_some_and(|live_value| *live_value == v.value);
            if !same {
                diff.changes.push(Change::Value {
                    label: label.clone(),
                    snapshot_version: v.version_id.clone(),
                    live_version: holder.map(|h| h.version_id.clone()),
                });
            }
        }
        for label in v.labels.iter().filter(|l| !is_compared_label(l)) {
            if live_holder(label).map(|h| h.version_id.as_str()) != Some(v.version_id.as_str()) {
                diff.notes
                    .push(format!("{label} points to another version"));
            }
        }
    }
    let mut live_only: Vec<&str> = described
        .versions
        .iter()
        .flat_map(|v| v.labels.iter().map(String::as_str))
        // AWSPREVIOUS / AWSPENDING appear by themselves (a new value, a rotation starting).
        .filter(|l| is_compared_label(l) && !snapshot_labels.contains(l))
        .collect();
    live_only.sort();
    for label in live_only {
        diff.notes.push(format!("label {label} exists only live"));
    }
    let (s, l) = (&snapshot.meta, &described.meta);
    if s.description.as_deref().unwrap_or("") != l.description.as_deref().unwrap_or("") {
        diff.changes.push(Change::Description);
    }
    if kms_key(&s.kms_key_id) != kms_key(&l.kms_key_id) {
        diff.changes.push(Change::KmsKey);
    }
    if let Some(c) = tag_change(s, l) {
        diff.changes.push(c);
    }
    if !same_policy(&s.resource_policy, &l.resource_policy) {
        diff.changes.push(Change::ResourcePolicy);
    }
    if let Some(want) = &s.parameter {
        let have = l.parameter.clone().unwrap_or_default();
        let (fields, notes) = parameter_settings_change(want, &have);
        if !fields.is_empty() {
            diff.changes.push(Change::ParameterSettings { fields });
        }
        diff.notes.extend(notes);
    }
    if s.rotation != l.rotation {
        diff.notes
            .push("rotation settings differ (not restored)".into());
    }
    if !diff.changes.is_empty() {
        diff.status = Status::Changed;
    }
    diff
}

/// Live secrets that match the snapshot's filters (and `patterns`) but are not in it.
pub async fn new_secrets(
    api: &dyn SecretsApi,
    manifest: &Manifest,
    patterns: &[NamePattern],
) -> Result<Vec<String>, ApiError> {
    let known: HashSet<&str> = manifest
        .secrets
        .iter()
        .map(|s| s.name.as_str())
        .chain(manifest.head.failures.iter().map(|f| f.name.as_str()))
        .collect();
    let filters = &manifest.head.filters;
    let mut names: Vec<String> = api
        .list(&filters.name_prefixes)
        .try_filter_map(|l| {
            let keep = filters.matches(&l.name, &l.tags)
                && matches_any(patterns, &l.name)
                && !known.contains(l.name.as_str());
            std::future::ready(Ok(keep.then_some(l.name)))
        })
        .try_collect()
        .await?;
    names.sort();
    Ok(names)
}

/// Live parameters under the snapshot's parameter paths (and matching `patterns`) that are not
/// in it; no Parameter Store call when the snapshot has no parameter path.
pub async fn new_parameters(
    api: &dyn SecretsApi,
    manifest: &Manifest,
    patterns: &[NamePattern],
) -> Result<Vec<String>, ApiError> {
    let paths = &manifest.head.filters.parameter_paths;
    if paths.is_empty() {
        return Ok(vec![]);
    }
    let known: HashSet<&str> = manifest
        .secrets
        .iter()
        .map(|s| s.name.as_str())
        .chain(manifest.head.failures.iter().map(|f| f.name.as_str()))
        .collect();
    let mut names: Vec<String> = api
        .list(paths)
        .try_filter_map(|l| {
            let keep = matches_any(patterns, &l.name) && !known.contains(l.name.as_str());
            std::future::ready(Ok(keep.then_some(l.name)))
        })
        .try_collect()
        .await?;
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, labels: &[&str], value: &str) -> VersionRecord {
        VersionRecord {
            version_id: id.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            created: None,
            value: SecretValue::string(value),
        }
    }

    fn record() -> SecretRecord {
        SecretRecord {
            source: SourceKind::SecretsManager,
            meta: SecretMeta {
                name: "app/db".into(),
                arn: "arn:1".into(),
                description: Some("d".into()),
                tags: vec![
                    Tag {
                        key: "env".into(),
                        value: "prod".into(),
                    },
                    Tag {
                        key: "aws:x".into(),
                        value: "1".into(),
                    },
                ],
                resource_policy: Some(r#"{"Version":"2012-10-17","Statement":[]}"#.into()),
                ..Default::default()
            },
            versions: vec![
                v("v2", &[AWSCURRENT, "BLUE"], "new"),
                v("v1", &[AWSPREVIOUS], "old"),
            ],
        }
    }

    fn live_of(r: &SecretRecord) -> Live {
        Live::Present {
            described: Box::new(Described {
                meta: r.meta.clone(),
                versions: r
                    .versions
                    .iter()
                    .map(|v| VersionLabels {
                        version_id: v.version_id.clone(),
                        labels: v.labels.clone(),
                        created: v.created,
                    })
                    .collect(),
                deleted: None,
            }),
            values: r
                .versions
                .iter()
                .map(|v| (v.version_id.clone(), v.value.clone()))
                .collect(),
        }
    }

    #[test]
    fn identical_is_unchanged_even_with_reformatted_policy() {
        let r = record();
        let mut live = r.clone();
        live.meta.resource_policy =
            Some("{\n \"Version\": \"2012-10-17\", \"Statement\": [] }".into());
        live.meta.tags.retain(|t| t.key != "aws:x");
        let d = compare(&r, &live_of(&live));
        assert_eq!(d.status, Status::Unchanged, "{d:?}");
        assert!(d.changes.is_empty() && d.notes.is_empty());
    }

    #[test]
    fn value_change_is_reported_per_label_without_values() {
        let r = record();
        let mut live = r.clone();
        // A PutSecretValue: new version current, old current becomes previous, BLUE stays.
        live.versions = vec![
            v("v3", &[AWSCURRENT], "changed-value"),
            v("v2", &[AWSPREVIOUS, "BLUE"], "new"),
        ];
        let d = compare(&r, &live_of(&live));
        assert_eq!(d.status, Status::Changed);
        assert_eq!(
            d.changes,
            vec![Change::Value {
                label: AWSCURRENT.into(),
                snapshot_version: "v2".into(),
                live_version: Some("v3".into())
            }]
        );
        assert_eq!(d.notes, vec!["AWSPREVIOUS points to another version"]);
        assert!(!d.detail().contains("changed-value"));
        assert_eq!(
            d.detail(),
            "AWSCURRENT value differs; note: AWSPREVIOUS points to another version"
        );
    }

    #[test]
    fn same_value_under_a_new_version_is_unchanged() {
        let r = record();
        let mut live = r.clone();
        live.versions = vec![
            v("v9", &[AWSCURRENT, "BLUE"], "new"),
            v("v1", &[AWSPREVIOUS], "old"),
        ];
        assert_eq!(compare(&r, &live_of(&live)).status, Status::Unchanged);
    }

    #[test]
    fn metadata_changes() {
        let r = record();
        let mut live = r.clone();
        live.meta.description = None;
        live.meta.kms_key_id = Some("arn:aws:kms:us-east-1:1:key/other".into());
        live.meta.tags = vec![
            Tag {
                key: "env".into(),
                value: "dev".into(),
            },
            Tag {
                key: "owner".into(),
                value: "x".into(),
            },
        ];
        live.meta.resource_policy = None;
        live.meta.rotation.enabled = true;
        live.versions[0].labels.retain(|l| l != "BLUE");
        live.versions[1].labels.push("GREEN".into());
        let d = compare(&r, &live_of(&live));
        assert_eq!(d.status, Status::Changed);
        assert_eq!(
            d.detail(),
            "BLUE label missing; description differs; KMS key differs; tags added: owner; \
             tag values differ: env; resource policy differs; note: label GREEN exists only live; \
             note: rotation settings differ (not restored)"
        );
        // The default key spelled two ways is the same key.
        let mut a = record();
        a.meta.kms_key_id = None;
        let mut b = a.clone();
        b.meta.kms_key_id = Some("alias/aws/secretsmanager".into());
        assert_eq!(compare(&a, &live_of(&b)).status, Status::Unchanged);
    }

    #[test]
    fn missing_secrets() {
        let r = record();
        assert_eq!(compare(&r, &Live::NotFound).status, Status::Missing);
        let d = compare(&r, &Live::ScheduledForDeletion(Utc::now()));
        assert_eq!(d.status, Status::Missing);
        assert!(d.detail().starts_with("scheduled for deletion"));
    }
}
