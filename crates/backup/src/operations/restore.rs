//! Restore: plan per secret from the diff, and (with `apply`) carry the plan out.
//!
//! - A changed value goes back as a new version (history is kept) carrying the snapshot's labels
//!   (`AWSCURRENT` and custom ones); Secrets Manager moves `AWSPREVIOUS` itself.
//! - Description, KMS key, tags and resource policy are set back to the snapshot's.
//! - A deleted secret is created again with its metadata, its `AWSCURRENT` and `AWSPREVIOUS`
//!   versions and custom labels, under the snapshot's version ids. A secret scheduled for
//!   deletion has the deletion cancelled first, then is reconciled like any other.
//! - Live secrets that are not in the snapshot are left alone. Nothing is ever deleted.
//! - Before anything is written every part is checked; one bad part refuses the whole restore.
//! - Each write sits between the fail points `restore.<call>.before` and `.after`
//!   (`crates/failpoints`; nothing in a release build).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use futures::StreamExt;
use serde::Serialize;

use crate::domain::filters::{matches_any, NamePattern};
use crate::domain::model::*;
use crate::operations::diff::{self, new_secrets, Change, Live, SecretDiff, Status};
use crate::operations::Progress;
use crate::ports::{ApiError, NewSecret, Ports, SecretsApi};
use crate::snapshot::manifest::Manifest;
use crate::snapshot::reader::{read_part, PartCheck};

/// One step of a restore plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// CreateSecret and its versions, labels and resource policy.
    #[serde(rename_all = "camelCase")]
    Recreate {
        /// Versions created.
        versions: usize,
    },
    /// RestoreSecret: cancel the scheduled deletion.
    CancelDeletion,
    /// PutSecretValue: the value of the snapshot's `from_version` as a new version.
    #[serde(rename_all = "camelCase")]
    PutValue {
        /// Labels the new version carries.
        labels: Vec<String>,
        /// The snapshot's version whose value is put.
        from_version: String,
    },
    /// UpdateSecret: the snapshot's description.
    SetDescription,
    /// UpdateSecret: the snapshot's KMS key.
    SetKmsKey,
    /// TagResource: the snapshot's values of these tags.
    #[serde(rename_all = "camelCase")]
    SetTags {
        /// The tag keys.
        keys: Vec<String>,
    },
    /// UntagResource: tags the snapshot does not have.
    #[serde(rename_all = "camelCase")]
    RemoveTags {
        /// The tag keys.
        keys: Vec<String>,
    },
    /// PutResourcePolicy: the snapshot's policy.
    PutResourcePolicy,
    /// DeleteResourcePolicy: the snapshot had none.
    DeleteResourcePolicy,
    /// Nothing is done.
    Skip {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Recreate { versions } => {
                write!(f, "recreate with {versions} version(s) and its metadata")
            }
            Action::CancelDeletion => f.write_str("cancel the scheduled deletion, then reconcile"),
            Action::PutValue {
                labels,
                from_version,
            } => write!(
                f,
                "put snapshot version {from_version} as a new version labelled {}",
                labels.join(",")
            ),
            Action::SetDescription => f.write_str("set description"),
            Action::SetKmsKey => f.write_str("set KMS key"),
            Action::SetTags { keys } => write!(f, "set tags {}", keys.join(",")),
            Action::RemoveTags { keys } => write!(f, "remove tags {}", keys.join(",")),
            Action::PutResourcePolicy => f.write_str("put resource policy"),
            Action::DeleteResourcePolicy => f.write_str("delete resource policy"),
            Action::Skip { reason } => write!(f, "skip: {reason}"),
        }
    }
}

/// Versions restored when a secret is recreated: everything but a rotation in flight.
fn recreatable_labels(v: &VersionRecord) -> Vec<String> {
    v.labels
        .iter()
        .filter(|l| l.as_str() != AWSPENDING)
        .cloned()
        .collect()
}

/// The actions that make the live secret match the snapshot again.
pub fn plan(snapshot: &SecretRecord, diff: &SecretDiff) -> Vec<Action> {
    if diff.status == Status::Unchanged || diff.status == Status::New {
        return vec![];
    }
    if let Some(service) = &snapshot.meta.owning_service {
        return vec![Action::Skip {
            reason: format!("managed by {service}; restore it through that service"),
        }];
    }
    let mut actions = vec![];
    let mut values: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for change in &diff.changes {
        match change {
            Change::NotFound => {
                let versions = snapshot
                    .versions
                    .iter()
                    .filter(|v| !recreatable_labels(v).is_empty())
                    .count();
                return vec![Action::Recreate { versions }];
            }
            Change::ScheduledForDeletion { .. } => return vec![Action::CancelDeletion],
            Change::Value {
                label,
                snapshot_version,
                ..
            } => values
                .entry(snapshot_version.as_str())
                .or_default()
                .push(label.clone()),
            Change::Description => actions.push(Action::SetDescription),
            Change::KmsKey => actions.push(Action::SetKmsKey),
            Change::Tags {
                added,
                removed,
                changed,
            } => {
                let mut set: Vec<String> = removed.iter().chain(changed).cloned().collect();
                set.sort();
                if !set.is_empty() {
                    actions.push(Action::SetTags { keys: set });
                }
                if !added.is_empty() {
                    actions.push(Action::RemoveTags {
                        keys: added.clone(),
                    });
                }
            }
            Change::ResourcePolicy => actions.push(if snapshot.meta.resource_policy.is_some() {
                Action::PutResourcePolicy
            } else {
                Action::DeleteResourcePolicy
            }),
        }
    }
    // Values first, AWSCURRENT last (moving it also moves AWSPREVIOUS).
    let mut puts: Vec<Action> = values
        .into_iter()
        .map(|(v, labels)| Action::PutValue {
            labels,
            from_version: v.to_string(),
        })
        .collect();
    puts.sort_by_key(
        |a| matches!(a, Action::PutValue { labels, .. } if labels.iter().any(|l| l == AWSCURRENT)),
    );
    puts.extend(actions);
    puts
}

/// A restore step that failed.
#[derive(Debug, thiserror::Error)]
#[error("secret {secret}: {action}: {error}")]
pub struct ApplyError {
    /// The secret.
    pub secret: String,
    /// The step.
    pub action: String,
    /// What AWS said.
    pub error: ApiError,
}

fn version<'a>(s: &'a SecretRecord, id: &str) -> &'a VersionRecord {
    s.versions
        .iter()
        .find(|v| v.version_id == id)
        .expect("plan names versions of the snapshot")
}

async fn recreate(api: &dyn SecretsApi, s: &SecretRecord) -> Result<(), ApplyError> {
    let err = |action: &str| {
        let action = action.to_string();
        let secret = s.meta.name.clone();
        move |error| ApplyError {
            secret,
            action,
            error,
        }
    };
    let current = s.version_with_label(AWSCURRENT);
    let tags: Vec<Tag> = s.meta.user_tags().into_iter().cloned().collect();
    let Some(current) = current else {
        return Err(ApplyError {
            secret: s.meta.name.clone(),
            action: "recreate".into(),
            error: ApiError::other("the snapshot has no AWSCURRENT version to create it with"),
        });
    };
    let arn = failpoints::around!(
        "restore.create_secret",
        api.create(NewSecret {
            name: &s.meta.name,
            description: s.meta.description.as_deref(),
            kms_key_id: s.meta.kms_key_id.as_deref(),
            tags,
            client_request_token: &current.version_id,
            value: &current.value,
        })
        .await
    )
    .map_err(err("CreateSecret"))?;
    for label in recreatable_labels(current)
        .iter()
        .filter(|l| *l != AWSCURRENT)
    {
        failpoints::around!(
            "restore.update_secret_version_stage",
            api.move_label(&arn, label, &current.version_id, None).await
        )
        .map_err(err(&format!("UpdateSecretVersionStage {label}")))?;
    }
    for v in s
        .versions
        .iter()
        .filter(|v| v.version_id != current.version_id)
    {
        let labels = recreatable_labels(v);
        if labels.is_empty() {
            continue;
        }
        failpoints::around!(
            "restore.put_secret_value_recreated",
            api.put_value(&arn, &v.value, &labels, Some(&v.version_id))
                .await
        )
        .map_err(err(&format!("PutSecretValue {}", labels.join(","))))?;
    }
    if let Some(policy) = &s.meta.resource_policy {
        failpoints::around!(
            "restore.put_resource_policy_recreated",
            api.put_resource_policy(&arn, policy).await
        )
        .map_err(err("PutResourcePolicy"))?;
    }
    Ok(())
}

async fn apply_actions(
    api: &dyn SecretsApi,
    s: &SecretRecord,
    live_arn: &str,
    actions: &[Action],
) -> Result<(), ApplyError> {
    for action in actions {
        let err = |error| ApplyError {
            secret: s.meta.name.clone(),
            action: action.to_string(),
            error,
        };
        match action {
            Action::Recreate { .. } => recreate(api, s).await?,
            Action::CancelDeletion => failpoints::around!(
                "restore.restore_secret",
                api.cancel_deletion(live_arn).await
            )
            .map_err(err)?,
            Action::PutValue {
                labels,
                from_version,
            } => {
                let v = version(s, from_version);
                failpoints::around!(
                    "restore.put_secret_value",
                    api.put_value(live_arn, &v.value, labels, None).await
                )
                .map_err(err)?;
            }
            Action::SetDescription => failpoints::around!(
                "restore.update_secret_description",
                api.update_metadata(
                    live_arn,
                    Some(s.meta.description.as_deref().unwrap_or("")),
                    None,
                )
                .await
            )
            .map_err(err)?,
            Action::SetKmsKey => failpoints::around!(
                "restore.update_secret_kms_key",
                api.update_metadata(
                    live_arn,
                    None,
                    Some(
                        s.meta
                            .kms_key_id
                            .as_deref()
                            .unwrap_or("alias/aws/secretsmanager"),
                    ),
                )
                .await
            )
            .map_err(err)?,
            Action::SetTags { keys } => {
                let tags: Vec<Tag> = s
                    .meta
                    .tags
                    .iter()
                    .filter(|t| keys.contains(&t.key))
                    .cloned()
                    .collect();
                failpoints::around!("restore.tag_resource", api.tag(live_arn, &tags).await)
                    .map_err(err)?
            }
            Action::RemoveTags { keys } => {
                failpoints::around!("restore.untag_resource", api.untag(live_arn, keys).await)
                    .map_err(err)?
            }
            Action::PutResourcePolicy => failpoints::around!(
                "restore.put_resource_policy",
                api.put_resource_policy(
                    live_arn,
                    s.meta.resource_policy.as_deref().unwrap_or("{}")
                )
                .await
            )
            .map_err(err)?,
            Action::DeleteResourcePolicy => failpoints::around!(
                "restore.delete_resource_policy",
                api.delete_resource_policy(live_arn).await
            )
            .map_err(err)?,
            Action::Skip { .. } => {}
        }
    }
    Ok(())
}

/// What restore planned or did for one secret.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretOutcome {
    /// The secret's name.
    pub name: String,
    /// How it compared with the snapshot.
    pub status: Status,
    /// What differed.
    pub detail: String,
    /// The steps, as text.
    pub actions: Vec<String>,
    /// Why a step failed, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a restore (or its dry run) planned or did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    /// The snapshot id.
    pub snapshot_id: String,
    /// Its key prefix.
    pub folder: String,
    /// Whether anything was written (`--apply`).
    pub applied: bool,
    /// Secrets of the snapshot (after the filter) that differ from live, sorted by name.
    pub secrets: Vec<SecretOutcome>,
    /// Secrets that needed nothing.
    pub unchanged: u64,
    /// Live secrets not in the snapshot (left alone).
    pub new: Vec<String>,
}

impl RestoreReport {
    /// Secrets whose restore failed.
    pub fn errors(&self) -> usize {
        self.secrets.iter().filter(|s| s.error.is_some()).count()
    }
}

/// Why a restore did not run.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A part failed its checks: nothing was written.
    #[error("snapshot {snapshot}: refusing to restore: {}", describe_parts(.parts))]
    Integrity {
        /// The snapshot id.
        snapshot: String,
        /// The failed parts.
        parts: Vec<PartCheck>,
    },
    /// An AWS call failed.
    #[error("snapshot {snapshot}: {error}")]
    Api {
        /// The snapshot id.
        snapshot: String,
        /// What AWS said.
        error: ApiError,
    },
}

fn describe_parts(parts: &[PartCheck]) -> String {
    parts
        .iter()
        .map(|p| format!("part {} ({}): {}", p.part, p.key, p.problems.join("; ")))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Restore (or, without `apply`, plan) the secrets of `manifest` that match `patterns`.
pub async fn restore(
    ports: Ports<'_>,
    manifest: &Manifest,
    patterns: &[NamePattern],
    apply: bool,
    concurrency: usize,
    progress: Progress<'_>,
) -> Result<RestoreReport, RestoreError> {
    let snapshot = manifest.head.snapshot_id.clone();
    crate::snapshot::trust::precheck(manifest).map_err(|parts| RestoreError::Integrity {
        snapshot: snapshot.clone(),
        parts,
    })?;
    // Pass 1: every part must pass every check before anything is written.
    let wanted: HashSet<u32> = manifest
        .secrets
        .iter()
        .filter(|s| matches_any(patterns, &s.name))
        .map(|s| s.part)
        .collect();
    let mut bad = vec![];
    for part in &manifest.head.parts {
        let (check, _) = read_part(ports.store, ports.keys, manifest, part).await;
        if !check.ok() {
            bad.push(check);
        }
    }
    let listed: HashSet<u32> = manifest.head.parts.iter().map(|p| p.number).collect();
    for missing in wanted.iter().filter(|n| !listed.contains(n)) {
        bad.push(PartCheck::unlisted(*missing));
    }
    if !bad.is_empty() {
        return Err(RestoreError::Integrity {
            snapshot,
            parts: bad,
        });
    }

    let mut report = RestoreReport {
        snapshot_id: snapshot.clone(),
        folder: manifest.head.folder.clone(),
        applied: apply,
        secrets: vec![],
        unchanged: 0,
        new: vec![],
    };
    let parts: Vec<_> = manifest
        .head
        .parts
        .iter()
        .filter(|p| wanted.contains(&p.number))
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let (check, records) = read_part(ports.store, ports.keys, manifest, part).await;
        let Some(records) = records else {
            return Err(RestoreError::Integrity {
                snapshot,
                parts: vec![check],
            });
        };
        let outcomes: Vec<Option<SecretOutcome>> = futures::stream::iter(
            records
                .iter()
                .filter(|r| matches_any(patterns, &r.meta.name)),
        )
        .map(|r| restore_one(ports, r, apply))
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
        for o in outcomes {
            match o {
                Some(o) => report.secrets.push(o),
                None => report.unchanged += 1,
            }
        }
        progress(i + 1, parts.len());
    }
    report.secrets.sort_by(|a, b| a.name.cmp(&b.name));
    report.new = new_secrets(ports.secrets, manifest, patterns)
        .await
        .map_err(|error| RestoreError::Api {
            snapshot: snapshot.clone(),
            error,
        })?;
    Ok(report)
}

/// `None` when the secret is unchanged.
async fn restore_one(ports: Ports<'_>, s: &SecretRecord, apply: bool) -> Option<SecretOutcome> {
    let api = ports.secrets_of(s.source);
    let fail = |diff: Option<&SecretDiff>, actions: Vec<String>, e: String| {
        Some(SecretOutcome {
            name: s.meta.name.clone(),
            status: diff.map(|d| d.status).unwrap_or(Status::Changed),
            detail: diff.map(|d| d.detail()).unwrap_or_default(),
            actions,
            error: Some(e),
        })
    };
    let live = match diff::fetch_live(api, &s.meta.name).await {
        Ok(l) => l,
        Err(e) => {
            return fail(
                None,
                vec![],
                format!("secret {}: reading live state: {e}", s.meta.name),
            )
        }
    };
    let d = diff::compare(s, &live);
    if d.status == Status::Unchanged {
        return None;
    }
    let mut actions = plan(s, &d);
    let mut shown: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
    if apply {
        let live_arn = match &live {
            Live::Present { described, .. } => described.meta.arn.clone(),
            _ => s.meta.name.clone(),
        };
        if let Err(e) = apply_actions(api, s, &live_arn, &actions).await {
            return fail(Some(&d), shown, e.to_string());
        }
        // A cancelled deletion: now reconcile values and metadata.
        if actions == [Action::CancelDeletion] {
            let live = match diff::fetch_live(api, &s.meta.name).await {
                Ok(l) => l,
                Err(e) => {
                    return fail(
                        Some(&d),
                        shown,
                        format!("secret {}: after cancelling deletion: {e}", s.meta.name),
                    )
                }
            };
            let again = diff::compare(s, &live);
            actions = plan(s, &again);
            shown.extend(actions.iter().map(|a| a.to_string()));
            let live_arn = match &live {
                Live::Present { described, .. } => described.meta.arn.clone(),
                _ => s.meta.name.clone(),
            };
            if let Err(e) = apply_actions(api, s, &live_arn, &actions).await {
                return fail(Some(&d), shown, e.to_string());
            }
        }
        tracing::info!(secret = %s.meta.name, actions = ?shown, "restored");
    }
    Some(SecretOutcome {
        name: s.meta.name.clone(),
        status: d.status,
        detail: d.detail(),
        actions: shown,
        error: None,
    })
}
