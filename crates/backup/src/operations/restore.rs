//! Restore: plan per secret from the diff, and (with `apply`) carry the plan out.
//!
//! - A changed value goes back as a label move when the snapshot's version still exists live
//!   (`UpdateSecretVersionStage`, `AWSCURRENT` removed from the live current version: no copy is
//!   written), else as a new version (history is kept) carrying the snapshot's labels
//!   (`AWSCURRENT` and custom ones); Secrets Manager moves `AWSPREVIOUS` itself.
//! - Rotation: a secret whose live `AWSPENDING` sits on a version without `AWSCURRENT` is refused
//!   (a rotation is in flight). Unless the operator says `include_rotated`, a secret whose
//!   `AWSCURRENT` would change is skipped when the snapshot's `AWSCURRENT` is now the live
//!   `AWSPREVIOUS`, or when rotation is enabled and the live `AWSCURRENT` is newer than the
//!   snapshot: putting the old value back would hand out a password a rotation replaced.
//! - Description, KMS key (through the key map when restoring into another region), tags and
//!   resource policy are set back to the snapshot's; a policy that widens access compared with the
//!   live one is flagged in the plan ([`super::policy`]), and every policy is put with
//!   `BlockPublicPolicy`.
//! - A replica (its primary in another region) is skipped: restore writes at the primary only.
//! - A deleted secret is created again with its metadata, its replica regions, its `AWSCURRENT`
//!   and `AWSPREVIOUS` versions and custom labels, under the snapshot's version ids, and its
//!   rotation configuration when asked (`restore_rotation`). It carries the tag [`MARKER_TAG`]
//!   until all of that is done: a re-run that finds the tag finishes the recreation (labels moved
//!   to the versions already there, missing versions put under their ids) instead of treating it
//!   as an existing secret. A secret scheduled for deletion has the deletion cancelled first, then
//!   is reconciled like any other.
//! - Live secrets that are not in the snapshot are left alone. Nothing is ever deleted.
//! - Before anything is written every part is checked; one bad part refuses the whole restore.
//! - Each write sits between the fail points `restore.<call>.before` and `.after`
//!   (`crates/failpoints`; nothing in a release build).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt;
use serde::Serialize;

use crate::domain::filters::{matches_any, NamePattern};
use crate::domain::model::*;
use crate::domain::settings::list_entries;
use crate::operations::diff::{self, new_secrets, Change, Live, SecretDiff, Status};
use crate::operations::policy::widening;
use crate::operations::Progress;
use crate::ports::{ApiError, NewSecret, Ports, SecretsApi};
use crate::snapshot::manifest::Manifest;
use crate::snapshot::reader::{read_part, PartCheck};

/// The tag a secret recreated by restore carries until its recreation is complete (its value:
/// the snapshot id).
pub const MARKER_TAG: &str = "secrets-backup:restore-incomplete";

/// The default Secrets Manager key, the same name in every region.
const DEFAULT_KEY: &str = "alias/aws/secretsmanager";

/// `--kms-key-map old=new,…`: the KMS key to use in place of a snapshot's key, for a restore into
/// another region (a customer key lives in one region).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyMap(BTreeMap<String, String>);

impl KeyMap {
    /// Parses `old=new,old=new`; each side a key id, key ARN or alias.
    pub fn parse(text: &str) -> Result<KeyMap, String> {
        let mut map = BTreeMap::new();
        for pair in list_entries(text) {
            match pair.split_once('=') {
                Some((old, new)) if !old.trim().is_empty() && !new.trim().is_empty() => {
                    if map
                        .insert(old.trim().to_string(), new.trim().to_string())
                        .is_some()
                    {
                        return Err(format!("key {} is mapped twice", old.trim()));
                    }
                }
                _ => return Err(format!("`{pair}` is not old=new")),
            }
        }
        Ok(KeyMap(map))
    }

    /// Adds the pairs of `other`.
    pub fn extend(&mut self, other: KeyMap) {
        self.0.extend(other.0);
    }

    /// The key mapped from `key`, matched by its full text or, for a key ARN, by its key id.
    fn get(&self, key: &str) -> Option<&str> {
        let id = key.rsplit_once(":key/").map(|(_, id)| id);
        self.0
            .iter()
            .find(|(old, _)| {
                old.as_str() == key
                    || Some(old.as_str()) == id
                    || old.rsplit_once(":key/").map(|(_, i)| i) == Some(key)
            })
            .map(|(_, new)| new.as_str())
    }
}

/// What the operator chose for a restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Write to Secrets Manager (without it, only plan).
    pub apply: bool,
    /// Restore secrets rotated since the snapshot too (`--include-rotated`).
    pub include_rotated: bool,
    /// Configure rotation again on a recreated secret (`--restore-rotation`).
    pub restore_rotation: bool,
    /// KMS keys to use in place of the snapshot's (`--kms-key-map`).
    pub kms_key_map: KeyMap,
    /// The region restore writes to (when known: a key of another region must be mapped).
    pub target_region: Option<String>,
}

/// What a plan is made against, besides the secret and its diff.
#[derive(Clone, Copy, Debug)]
pub struct PlanContext<'a> {
    /// The operator's choices.
    pub options: &'a RestoreOptions,
    /// When the snapshot was taken.
    pub snapshot_time: Option<DateTime<Utc>>,
    /// The region the snapshot was taken in.
    pub snapshot_region: Option<&'a str>,
    /// The snapshot id (the value of [`MARKER_TAG`]).
    pub snapshot_id: &'a str,
}

impl PlanContext<'_> {
    /// The key to use for the snapshot's `key` in the target region.
    pub(crate) fn key_for(
        &self,
        secret: &str,
        key: Option<&str>,
    ) -> Result<Option<String>, String> {
        let Some(key) = key.filter(|k| !k.is_empty() && *k != DEFAULT_KEY) else {
            return Ok(key.map(String::from));
        };
        if let Some(mapped) = self.options.kms_key_map.get(key) {
            return Ok(Some(mapped.to_string()));
        }
        let (Some(from), Some(to)) = (self.snapshot_region, self.options.target_region.as_deref())
        else {
            return Ok(Some(key.to_string()));
        };
        if from == to || arn_region(key) == Some(to) {
            return Ok(Some(key.to_string()));
        }
        Err(format!(
            "secret {secret}: KMS key {key} (region {from}) has no mapping into region {to}: \
             add --kms-key-map {key}=<a key in {to}>"
        ))
    }
}

/// One step of a restore plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// CreateSecret (with its replica regions) and its versions, labels and resource policy,
    /// then its rotation configuration if asked.
    #[serde(rename_all = "camelCase")]
    Recreate {
        /// Versions created.
        versions: usize,
        /// The KMS key it is created with (the snapshot's, or mapped).
        #[serde(skip_serializing_if = "Option::is_none")]
        kms_key_id: Option<String>,
        /// Regions it is replicated to.
        replica_regions: Vec<Replica>,
        /// Whether its rotation configuration is restored.
        rotation: bool,
        /// How its resource policy widens access (nothing live to compare with: against none).
        policy_widens: Vec<String>,
    },
    /// Finish a recreation cut short (the secret carries [`MARKER_TAG`]).
    ResumeRecreate,
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
    /// UpdateSecretVersionStage: `label` back to the snapshot's version, which still exists.
    #[serde(rename_all = "camelCase")]
    MoveLabel {
        /// The label.
        label: String,
        /// The version it moves to (the snapshot's).
        to_version: String,
        /// The live version it is removed from.
        #[serde(skip_serializing_if = "Option::is_none")]
        from_version: Option<String>,
    },
    /// UpdateSecret: the snapshot's description.
    SetDescription,
    /// UpdateSecret: the snapshot's KMS key (or its mapping).
    #[serde(rename_all = "camelCase")]
    SetKmsKey {
        /// The key set.
        kms_key_id: String,
    },
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
    /// PutResourcePolicy: the snapshot's policy (with `BlockPublicPolicy`).
    #[serde(rename_all = "camelCase")]
    PutResourcePolicy {
        /// How it widens access compared with the live policy (empty: it does not).
        widens: Vec<String>,
    },
    /// DeleteResourcePolicy: the snapshot had none.
    #[serde(rename_all = "camelCase")]
    DeleteResourcePolicy {
        /// How it widens access (a live `Deny` dropped).
        widens: Vec<String>,
    },
    /// PutParameter: the value of the snapshot's `from_version` as a new version of a
    /// parameter, with the snapshot's type, KMS key, tier, data type, description and policies
    /// (its tags too when `create`), then its `labels` moved to it (LabelParameterVersion).
    #[serde(rename_all = "camelCase")]
    PutParameter {
        /// The snapshot's version whose value is put.
        from_version: String,
        /// Labels moved to the new version.
        labels: Vec<String>,
        /// The parameter does not exist: created (no overwrite), with its tags.
        create: bool,
        /// The KMS key it is put with (a SecureString's: the snapshot's, or mapped).
        #[serde(skip_serializing_if = "Option::is_none")]
        kms_key_id: Option<String>,
    },
    /// Nothing is done.
    Skip {
        /// Why.
        reason: String,
    },
    /// Nothing is done, and the secret counts as not restored (a failure).
    Refuse {
        /// Why.
        reason: String,
    },
}

fn widens_note(widens: &[String]) -> String {
    if widens.is_empty() {
        String::new()
    } else {
        format!(" (WIDENS ACCESS: {})", widens.join("; "))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Recreate {
                versions,
                kms_key_id,
                replica_regions,
                rotation,
                policy_widens,
            } => {
                write!(f, "recreate with {versions} version(s) and its metadata")?;
                if let Some(k) = kms_key_id {
                    write!(f, ", KMS key {k}")?;
                }
                if !replica_regions.is_empty() {
                    let regions: Vec<&str> =
                        replica_regions.iter().map(|r| r.region.as_str()).collect();
                    write!(f, ", replicated to {}", regions.join(","))?;
                }
                if *rotation {
                    f.write_str(", rotation configured")?;
                }
                f.write_str(&widens_note(policy_widens))
            }
            Action::ResumeRecreate => write!(
                f,
                "finish its interrupted recreation (tag {MARKER_TAG}): move labels to the \
                 versions already there, put the missing ones"
            ),
            Action::CancelDeletion => f.write_str("cancel the scheduled deletion, then reconcile"),
            Action::PutValue {
                labels,
                from_version,
            } => write!(
                f,
                "put snapshot version {from_version} as a new version labelled {}",
                labels.join(",")
            ),
            Action::MoveLabel {
                label,
                to_version,
                from_version,
            } => {
                write!(f, "move {label} back to existing version {to_version}")?;
                if let Some(from) = from_version {
                    write!(f, " (from {from})")?;
                }
                Ok(())
            }
            Action::SetDescription => f.write_str("set description"),
            Action::SetKmsKey { kms_key_id } => write!(f, "set KMS key {kms_key_id}"),
            Action::SetTags { keys } => write!(f, "set tags {}", keys.join(",")),
            Action::RemoveTags { keys } => write!(f, "remove tags {}", keys.join(",")),
            Action::PutResourcePolicy { widens } => {
                write!(f, "put resource policy{}", widens_note(widens))
            }
            Action::DeleteResourcePolicy { widens } => {
                write!(f, "delete resource policy{}", widens_note(widens))
            }
            Action::PutParameter {
                from_version,
                labels,
                create,
                kms_key_id,
            } => {
                let how = if *create { "create it with" } else { "put" };
                write!(
                    f,
                    "{how} snapshot version {from_version} as a new version (type, tier, data \
                     type, description, policies"
                )?;
                if *create {
                    f.write_str(", tags")?;
                }
                f.write_str(")")?;
                if let Some(k) = kms_key_id {
                    write!(f, ", KMS key {k}")?;
                }
                if !labels.is_empty() {
                    write!(f, ", labelled {}", labels.join(","))?;
                }
                Ok(())
            }
            Action::Skip { reason } => write!(f, "skip: {reason}"),
            Action::Refuse { reason } => write!(f, "refused: {reason}"),
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

fn holder<'a>(d: &'a Described, label: &str) -> Option<&'a VersionLabels> {
    d.versions
        .iter()
        .find(|v| v.labels.iter().any(|l| l == label))
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "at an unknown time".into())
}

/// Why a secret whose `AWSCURRENT` would change is left alone by default, if it is.
fn rotated_since(snapshot: &SecretRecord, live: &Described, ctx: &PlanContext) -> Option<String> {
    let snap_current = snapshot.version_with_label(AWSCURRENT)?;
    let live_current = holder(live, AWSCURRENT)?;
    if holder(live, AWSPREVIOUS).is_some_and(|p| p.version_id == snap_current.version_id) {
        return Some(format!(
            "rotated since the snapshot: its AWSCURRENT version {} is now AWSPREVIOUS (live \
             AWSCURRENT {}, created {}); putting it back would bring back a value that \
             replaced it (--include-rotated restores it anyway)",
            snap_current.version_id,
            live_current.version_id,
            when(live_current.created)
        ));
    }
    let in_snapshot = snapshot
        .versions
        .iter()
        .any(|v| v.version_id == live_current.version_id);
    let newer = match (live_current.created, ctx.snapshot_time) {
        // Some endpoints give `CreatedDate` in whole seconds (moto does): a version the snapshot
        // does not hold, created in the second the snapshot started, counts as newer.
        (Some(created), Some(taken)) => {
            created > taken || (!in_snapshot && created >= taken.trunc_subsecs(0))
        }
        _ => true,
    };
    if live.meta.rotation.enabled && newer {
        return Some(format!(
            "rotation is enabled and the live AWSCURRENT (version {}, created {}) is newer than \
             the snapshot ({}); putting the old value back would hand out a password a \
             rotation replaced (--include-rotated restores it anyway)",
            live_current.version_id,
            when(live_current.created),
            when(ctx.snapshot_time)
        ));
    }
    None
}

fn recreate_plan(snapshot: &SecretRecord, ctx: &PlanContext) -> Action {
    let name = &snapshot.meta.name;
    let versions = snapshot
        .versions
        .iter()
        .filter(|v| !recreatable_labels(v).is_empty())
        .count();
    let kms_key_id = match ctx.key_for(name, snapshot.meta.kms_key_id.as_deref()) {
        Ok(k) => k,
        Err(reason) => return Action::Refuse { reason },
    };
    let mut replica_regions = vec![];
    for r in &snapshot.meta.replication {
        // A replica region that is now the target cannot hold a replica of itself.
        if ctx.options.target_region.as_deref() == Some(r.region.as_str()) {
            continue;
        }
        let kms_key_id = match r.kms_key_id.as_deref() {
            Some(k) => match ctx.options.kms_key_map.get(k) {
                Some(mapped) => Some(mapped.to_string()),
                None => Some(k.to_string()),
            },
            None => None,
        };
        replica_regions.push(Replica {
            region: r.region.clone(),
            kms_key_id,
            status: None,
        });
    }
    let rotation = ctx.options.restore_rotation
        && snapshot.meta.rotation.enabled
        && snapshot.meta.rotation.lambda_arn.is_some();
    Action::Recreate {
        versions,
        kms_key_id,
        replica_regions,
        rotation,
        policy_widens: widening(None, snapshot.meta.resource_policy.as_deref()),
    }
}

/// The actions that make the live secret match the snapshot again, within the rules above.
pub fn plan(
    snapshot: &SecretRecord,
    diff: &SecretDiff,
    live: &Live,
    ctx: &PlanContext,
) -> Vec<Action> {
    if diff.status == Status::New {
        return vec![];
    }
    if let Some(primary) = snapshot.meta.replica_of() {
        return vec![Action::Skip {
            reason: format!(
                "a replica (its primary is in {primary}); restore writes at the primary only"
            ),
        }];
    }
    if diff.status == Status::Unchanged {
        return vec![];
    }
    if let Some(service) = &snapshot.meta.owning_service {
        return vec![Action::Skip {
            reason: format!("managed by {service}; restore it through that service"),
        }];
    }
    let described = match live {
        Live::NotFound => return vec![recreate_plan(snapshot, ctx)],
        Live::ScheduledForDeletion(_) => return vec![Action::CancelDeletion],
        Live::Present { described, .. } => described,
    };
    if described.meta.tags.iter().any(|t| t.key == MARKER_TAG) {
        return vec![Action::ResumeRecreate];
    }
    if let Some(primary) = described.meta.replica_of() {
        return vec![Action::Skip {
            reason: format!(
                "the live secret is a replica (its primary is in {primary}); restore writes at \
                 the primary only"
            ),
        }];
    }
    if let Some(pending) =
        holder(described, AWSPENDING).filter(|v| !v.labels.iter().any(|l| l == AWSCURRENT))
    {
        return vec![Action::Refuse {
            reason: format!(
                "rotation in progress: AWSPENDING is on version {} (not on AWSCURRENT); restore \
                 once the rotation has finished or been cancelled",
                pending.version_id
            ),
        }];
    }
    let current_changes = diff
        .changes
        .iter()
        .any(|c| matches!(c, Change::Value { label, .. } if label == AWSCURRENT));
    if current_changes && !ctx.options.include_rotated {
        if let Some(reason) = rotated_since(snapshot, described, ctx) {
            return vec![Action::Skip { reason }];
        }
    }
    let exists_live = |id: &str| described.versions.iter().any(|v| v.version_id == id);
    let mut actions = vec![];
    let mut moves = vec![];
    let mut values: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for change in &diff.changes {
        match change {
            Change::NotFound => return vec![recreate_plan(snapshot, ctx)],
            Change::ScheduledForDeletion { .. } => return vec![Action::CancelDeletion],
            // Only parameters have these (planned by `super::parameters`).
            Change::ParameterSettings { .. } => {}
            Change::Value {
                label,
                snapshot_version,
                live_version,
            } => {
                if exists_live(snapshot_version) {
                    moves.push(Action::MoveLabel {
                        label: label.clone(),
                        to_version: snapshot_version.clone(),
                        from_version: live_version.clone(),
                    });
                } else {
                    values
                        .entry(snapshot_version.as_str())
                        .or_default()
                        .push(label.clone());
                }
            }
            Change::Description => actions.push(Action::SetDescription),
            Change::KmsKey => {
                match ctx.key_for(&snapshot.meta.name, snapshot.meta.kms_key_id.as_deref()) {
                    Ok(k) => {
                        let key = k.unwrap_or_else(|| DEFAULT_KEY.into());
                        // Already the mapped key: nothing to do.
                        if described.meta.kms_key_id.as_deref() != Some(key.as_str()) {
                            actions.push(Action::SetKmsKey { kms_key_id: key });
                        }
                    }
                    Err(reason) => return vec![Action::Refuse { reason }],
                }
            }
            Change::Tags {
                added,
                removed,
                changed,
            } => actions.extend(tag_actions(added, removed, changed)),
            Change::ResourcePolicy => {
                let widens = widening(
                    described.meta.resource_policy.as_deref(),
                    snapshot.meta.resource_policy.as_deref(),
                );
                actions.push(if snapshot.meta.resource_policy.is_some() {
                    Action::PutResourcePolicy { widens }
                } else {
                    Action::DeleteResourcePolicy { widens }
                })
            }
        }
    }
    // Values first, AWSCURRENT last (moving it also moves AWSPREVIOUS).
    let mut puts: Vec<Action> = values
        .into_iter()
        .map(|(v, labels)| Action::PutValue {
            labels,
            from_version: v.to_string(),
        })
        .chain(moves)
        .collect();
    puts.sort_by_key(|a| match a {
        Action::PutValue { labels, .. } => labels.iter().any(|l| l == AWSCURRENT),
        Action::MoveLabel { label, .. } => label == AWSCURRENT,
        _ => false,
    });
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

/// Create the secret (`resume`: `None`), or finish a recreation cut short (`resume`: the live
/// secret, which carries [`MARKER_TAG`]): every snapshot version with its recreatable labels,
/// under its snapshot id; labels moved to versions already there, missing versions put; then the
/// resource policy, the rotation configuration if planned, and the marker removed last.
async fn recreate(
    api: &dyn SecretsApi,
    s: &SecretRecord,
    planned: &Action,
    resume: Option<&Described>,
    ctx: &PlanContext<'_>,
) -> Result<(), ApplyError> {
    let err = |action: &str| {
        let action = action.to_string();
        let secret = s.meta.name.clone();
        move |error| ApplyError {
            secret,
            action,
            error,
        }
    };
    let Some(current) = s.version_with_label(AWSCURRENT) else {
        return Err(ApplyError {
            secret: s.meta.name.clone(),
            action: "recreate".into(),
            error: ApiError::other("the snapshot has no AWSCURRENT version to create it with"),
        });
    };
    // What is there now: version id → labels.
    let (arn, mut there): (String, BTreeMap<String, Vec<String>>) = match resume {
        Some(live) => (
            live.meta.arn.clone(),
            live.versions
                .iter()
                .map(|v| (v.version_id.clone(), v.labels.clone()))
                .collect(),
        ),
        None => {
            let (kms_key_id, replica_regions) = match planned {
                Action::Recreate {
                    kms_key_id,
                    replica_regions,
                    ..
                } => (kms_key_id.as_deref(), replica_regions.clone()),
                _ => (s.meta.kms_key_id.as_deref(), vec![]),
            };
            let mut tags: Vec<Tag> = s.meta.user_tags().into_iter().cloned().collect();
            tags.push(Tag {
                key: MARKER_TAG.into(),
                value: ctx.snapshot_id.into(),
            });
            let arn = failpoints::around!(
                "restore.create_secret",
                api.create(NewSecret {
                    name: &s.meta.name,
                    description: s.meta.description.as_deref(),
                    kms_key_id,
                    tags,
                    client_request_token: &current.version_id,
                    value: &current.value,
                    replica_regions,
                })
                .await
            )
            .map_err(err("CreateSecret"))?;
            let there = [(current.version_id.clone(), vec![AWSCURRENT.to_string()])].into();
            (arn, there)
        }
    };
    // AWSCURRENT's version first: the others are put without moving it.
    let mut ordered: Vec<&VersionRecord> = vec![current];
    ordered.extend(
        s.versions
            .iter()
            .filter(|v| v.version_id != current.version_id),
    );
    for v in ordered {
        let labels = recreatable_labels(v);
        if labels.is_empty() {
            continue;
        }
        if let Some(has) = there.get(&v.version_id).cloned() {
            for label in labels.iter().filter(|l| !has.contains(l)) {
                let from = there
                    .iter()
                    .find(|(_, ls)| ls.contains(label))
                    .map(|(id, _)| id.clone());
                failpoints::around!(
                    "restore.update_secret_version_stage",
                    api.move_label(&arn, label, &v.version_id, from.as_deref())
                        .await
                )
                .map_err(err(&format!("UpdateSecretVersionStage {label}")))?;
                for ls in there.values_mut() {
                    ls.retain(|l| l != label);
                }
                there
                    .entry(v.version_id.clone())
                    .or_default()
                    .push(label.clone());
            }
        } else {
            failpoints::around!(
                "restore.put_secret_value_recreated",
                api.put_value(&arn, &v.value, &labels, Some(&v.version_id))
                    .await
            )
            .map_err(err(&format!("PutSecretValue {}", labels.join(","))))?;
            for ls in there.values_mut() {
                ls.retain(|l| !labels.contains(l));
            }
            there.insert(v.version_id.clone(), labels);
        }
    }
    if let Some(policy) = &s.meta.resource_policy {
        failpoints::around!(
            "restore.put_resource_policy_recreated",
            api.put_resource_policy(&arn, policy).await
        )
        .map_err(err("PutResourcePolicy"))?;
    }
    let rotation = match planned {
        Action::Recreate { rotation, .. } => *rotation,
        _ => ctx.options.restore_rotation && s.meta.rotation.enabled,
    };
    if rotation && s.meta.rotation.lambda_arn.is_some() {
        failpoints::around!(
            "restore.rotate_secret",
            api.configure_rotation(&arn, &s.meta.rotation).await
        )
        .map_err(err("RotateSecret (rotation configuration)"))?;
    }
    failpoints::around!(
        "restore.untag_marker",
        api.untag(&arn, &[MARKER_TAG.to_string()]).await
    )
    .map_err(err(&format!("UntagResource {MARKER_TAG}")))?;
    Ok(())
}

async fn apply_actions(
    api: &dyn SecretsApi,
    s: &SecretRecord,
    live: &Live,
    actions: &[Action],
    ctx: &PlanContext<'_>,
) -> Result<(), ApplyError> {
    let (live_arn, described) = match live {
        Live::Present { described, .. } => (described.meta.arn.clone(), Some(&**described)),
        _ => (s.meta.name.clone(), None),
    };
    let live_arn = live_arn.as_str();
    for action in actions {
        let err = |error| ApplyError {
            secret: s.meta.name.clone(),
            action: action.to_string(),
            error,
        };
        match action {
            Action::Recreate { .. } => recreate(api, s, action, None, ctx).await?,
            Action::ResumeRecreate => recreate(api, s, action, described, ctx).await?,
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
            Action::MoveLabel {
                label,
                to_version,
                from_version,
            } => failpoints::around!(
                "restore.move_label",
                api.move_label(live_arn, label, to_version, from_version.as_deref())
                    .await
            )
            .map_err(err)?,
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
            Action::SetKmsKey { kms_key_id } => failpoints::around!(
                "restore.update_secret_kms_key",
                api.update_metadata(live_arn, None, Some(kms_key_id)).await
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
            Action::PutResourcePolicy { .. } => failpoints::around!(
                "restore.put_resource_policy",
                api.put_resource_policy(
                    live_arn,
                    s.meta.resource_policy.as_deref().unwrap_or("{}")
                )
                .await
            )
            .map_err(err)?,
            Action::DeleteResourcePolicy { .. } => failpoints::around!(
                "restore.delete_resource_policy",
                api.delete_resource_policy(live_arn).await
            )
            .map_err(err)?,
            Action::PutParameter { .. } => {
                return Err(err(ApiError::other(
                    "PutParameter is applied through the Parameter Store port",
                )))
            }
            Action::Skip { .. } | Action::Refuse { .. } => {}
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
    /// Whether restore refused the secret (a rotation in flight, a KMS key without a mapping):
    /// `error` says why.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
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

/// Restore (or, without `options.apply`, plan) the secrets of `manifest` that match `patterns`.
pub async fn restore(
    ports: Ports<'_>,
    manifest: &Manifest,
    patterns: &[NamePattern],
    options: &RestoreOptions,
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
        applied: options.apply,
        secrets: vec![],
        unchanged: 0,
        new: vec![],
    };
    let ctx = PlanContext {
        options,
        snapshot_time: Some(manifest.head.started_at),
        snapshot_region: Some(manifest.head.source.region.as_str()),
        snapshot_id: &manifest.head.snapshot_id,
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
        .map(|r| restore_one(ports, r, &ctx))
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
    report.new.extend(
        diff::new_parameters(ports.parameters, manifest, patterns)
            .await
            .map_err(|error| RestoreError::Api {
                snapshot: snapshot.clone(),
                error,
            })?,
    );
    Ok(report)
}

/// Why the plan refuses the secret, if it does.
fn refusal_of(actions: &[Action]) -> Option<&str> {
    actions.iter().find_map(|a| match a {
        Action::Refuse { reason } => Some(reason.as_str()),
        _ => None,
    })
}

/// `None` when the secret is unchanged (and not a replica, which is reported as skipped).
async fn restore_one(
    ports: Ports<'_>,
    s: &SecretRecord,
    ctx: &PlanContext<'_>,
) -> Option<SecretOutcome> {
    if s.source == SourceKind::ParameterStore {
        return super::parameters::restore_parameter(ports.parameters, s, ctx).await;
    }
    let api = ports.secrets_of(s.source);
    let fail = |diff: Option<&SecretDiff>, actions: Vec<String>, e: String| {
        Some(SecretOutcome {
            name: s.meta.name.clone(),
            status: diff.map(|d| d.status).unwrap_or(Status::Changed),
            detail: diff.map(|d| d.detail()).unwrap_or_default(),
            actions,
            error: Some(e),
            refused: false,
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
    let mut actions = plan(s, &d, &live, ctx);
    if actions.is_empty() && d.status == Status::Unchanged {
        return None;
    }
    let mut shown: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
    let refusal = |actions: &[Action], shown: &[String]| {
        refusal_of(actions).map(|reason| SecretOutcome {
            name: s.meta.name.clone(),
            status: d.status,
            detail: d.detail(),
            actions: shown.to_vec(),
            error: Some(format!("refused: {reason}")),
            refused: true,
        })
    };
    if let Some(refused) = refusal(&actions, &shown) {
        return Some(refused);
    }
    if ctx.options.apply {
        if let Err(e) = apply_actions(api, s, &live, &actions, ctx).await {
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
            actions = plan(s, &again, &live, ctx);
            shown.extend(actions.iter().map(|a| a.to_string()));
            if let Some(refused) = refusal(&actions, &shown) {
                return Some(refused);
            }
            if let Err(e) = apply_actions(api, s, &live, &actions, ctx).await {
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
        refused: false,
    })
}

/// What brings tags back: the snapshot's value for every tag removed or changed since, and the
/// removal of every tag added since (for secrets and parameters alike).
pub(crate) fn tag_actions(added: &[String], removed: &[String], changed: &[String]) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut set: Vec<String> = removed.iter().chain(changed).cloned().collect();
    set.sort();
    if !set.is_empty() {
        actions.push(Action::SetTags { keys: set });
    }
    if !added.is_empty() {
        actions.push(Action::RemoveTags {
            keys: added.to_vec(),
        });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:1:secret:app/db-AbCdEf";

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap()
    }

    fn v(id: &str, labels: &[&str], value: &str) -> VersionRecord {
        VersionRecord {
            version_id: id.into(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
            created: Some(t(1)),
            value: SecretValue::string(value),
        }
    }

    fn snapshot() -> SecretRecord {
        SecretRecord {
            source: SourceKind::SecretsManager,
            meta: SecretMeta {
                name: "app/db".into(),
                arn: ARN.into(),
                ..Default::default()
            },
            versions: vec![v("v2", &[AWSCURRENT], "b"), v("v1", &[AWSPREVIOUS], "a")],
        }
    }

    /// Live: `versions` (id, labels, value, created hour) and rotation on or off.
    fn live(versions: &[(&str, &[&str], &str, u32)], rotation: bool) -> Live {
        let mut meta = snapshot().meta;
        meta.rotation.enabled = rotation;
        Live::Present {
            described: Box::new(Described {
                meta,
                versions: versions
                    .iter()
                    .map(|(id, labels, _, h)| VersionLabels {
                        version_id: id.to_string(),
                        labels: labels.iter().map(|s| s.to_string()).collect(),
                        created: Some(t(*h)),
                    })
                    .collect(),
                deleted: None,
            }),
            values: versions
                .iter()
                .map(|(id, _, value, _)| (id.to_string(), SecretValue::string(*value)))
                .collect(),
        }
    }

    fn plan_with(s: &SecretRecord, l: &Live, options: &RestoreOptions) -> Vec<Action> {
        let ctx = PlanContext {
            options,
            snapshot_time: Some(t(2)),
            snapshot_region: Some("us-east-1"),
            snapshot_id: "snap",
        };
        plan(s, &diff::compare(s, l), l, &ctx)
    }

    fn reason(actions: &[Action]) -> &str {
        match actions {
            [Action::Skip { reason }] | [Action::Refuse { reason }] => reason,
            other => panic!("not one skip or refusal: {other:?}"),
        }
    }

    #[test]
    fn a_current_created_in_the_second_the_snapshot_started_is_newer_unless_held() {
        // `CreatedDate` in whole seconds, the snapshot's start with milliseconds.
        let options = RestoreOptions::default();
        let ctx = PlanContext {
            options: &options,
            snapshot_time: Some(t(2) + chrono::Duration::milliseconds(500)),
            snapshot_region: Some("us-east-1"),
            snapshot_id: "snap",
        };
        let s = snapshot();
        let same_second = live(&[("v5", &[AWSCURRENT], "e", 2)], true);
        let skipped = plan(&s, &diff::compare(&s, &same_second), &same_second, &ctx);
        assert!(
            reason(&skipped).starts_with("rotation is enabled and the live AWSCURRENT (version v5"),
            "{skipped:?}"
        );
        // The snapshot's own version, labelled elsewhere then, is not newer for its date.
        let held = live(&[("v1", &[AWSCURRENT], "a", 2)], true);
        assert!(
            !matches!(
                plan(&s, &diff::compare(&s, &held), &held, &ctx)[..],
                [Action::Skip { .. }]
            ),
            "a version the snapshot holds is not newer than it"
        );
    }

    #[test]
    fn a_secret_rotated_since_the_snapshot_is_skipped_unless_asked() {
        let s = snapshot();
        // A rotation after the snapshot: v3 current, the snapshot's v2 now AWSPREVIOUS.
        let rotated = live(
            &[
                ("v3", &[AWSCURRENT], "c", 3),
                ("v2", &[AWSPREVIOUS], "b", 1),
            ],
            true,
        );
        let skipped = plan_with(&s, &rotated, &RestoreOptions::default());
        assert!(
            reason(&skipped).starts_with(
                "rotated since the snapshot: its AWSCURRENT version v2 is now AWSPREVIOUS"
            ),
            "{skipped:?}"
        );
        assert!(reason(&skipped).contains("--include-rotated"));
        // Asked: AWSCURRENT moves back to v2, which still exists (no copy).
        let include = RestoreOptions {
            include_rotated: true,
            ..Default::default()
        };
        assert_eq!(
            plan_with(&s, &rotated, &include),
            vec![Action::MoveLabel {
                label: AWSCURRENT.into(),
                to_version: "v2".into(),
                from_version: Some("v3".into())
            }]
        );
        // Rotated twice: v2 is gone; rotation on and a current newer than the snapshot.
        let twice = live(
            &[
                ("v4", &[AWSCURRENT], "d", 4),
                ("v3", &[AWSPREVIOUS], "c", 3),
            ],
            true,
        );
        let skipped = plan_with(&s, &twice, &RestoreOptions::default());
        assert!(
            reason(&skipped).starts_with("rotation is enabled and the live AWSCURRENT (version v4"),
            "{skipped:?}"
        );
        assert_eq!(
            plan_with(&s, &twice, &include),
            vec![Action::PutValue {
                labels: vec![AWSCURRENT.into()],
                from_version: "v2".into()
            }]
        );
        // Rotation off, value changed twice: restored as before.
        let changed = live(
            &[
                ("v4", &[AWSCURRENT], "d", 4),
                ("v3", &[AWSPREVIOUS], "c", 3),
            ],
            false,
        );
        assert!(matches!(
            plan_with(&s, &changed, &RestoreOptions::default())[..],
            [Action::PutValue { .. }]
        ));
        // Rotation on, but the live current is older than the snapshot (moved back by hand).
        let older = live(
            &[("v0", &[AWSCURRENT], "z", 0), ("v2", &["BLUE"], "b", 1)],
            true,
        );
        assert!(matches!(
            plan_with(&s, &older, &RestoreOptions::default())[..],
            [Action::MoveLabel { .. }]
        ));
    }

    #[test]
    fn a_rotation_in_flight_is_refused_even_when_asked() {
        let s = snapshot();
        let pending = live(
            &[("v2", &[AWSCURRENT], "b", 1), ("v5", &[AWSPENDING], "p", 5)],
            true,
        );
        // Even with nothing else to do, and with --include-rotated.
        for include_rotated in [false, true] {
            let mut l = pending.clone();
            if let Live::Present { described, .. } = &mut l {
                described.meta.description = Some("edited".into());
            }
            let options = RestoreOptions {
                include_rotated,
                ..Default::default()
            };
            let refused = plan_with(&s, &l, &options);
            assert!(matches!(refused[..], [Action::Refuse { .. }]));
            assert!(
                reason(&refused).starts_with("rotation in progress: AWSPENDING is on version v5"),
                "{refused:?}"
            );
        }
        // AWSPENDING on the AWSCURRENT version: a finished rotation, not refused.
        let done = live(&[("v2", &[AWSCURRENT, AWSPENDING], "b", 1)], true);
        let mut l = done;
        if let Live::Present { described, .. } = &mut l {
            described.meta.description = Some("edited".into());
        }
        assert_eq!(
            plan_with(&s, &l, &RestoreOptions::default()),
            vec![Action::SetDescription]
        );
    }

    #[test]
    fn replicas_are_skipped_even_unchanged() {
        let mut s = snapshot();
        s.meta.arn = ARN.replace("us-east-1", "eu-west-1");
        s.meta.primary_region = Some("us-east-1".into());
        let same = live(
            &[
                ("v2", &[AWSCURRENT], "b", 1),
                ("v1", &[AWSPREVIOUS], "a", 0),
            ],
            false,
        );
        let skipped = plan_with(&s, &same, &RestoreOptions::default());
        assert!(reason(&skipped).starts_with("a replica (its primary is in us-east-1)"));
        assert!(
            reason(&plan_with(&s, &Live::NotFound, &RestoreOptions::default()))
                .starts_with("a replica")
        );
        // The primary itself (PrimaryRegion = its own region) is restored.
        s.meta.arn = ARN.into();
        assert!(
            plan_with(&s, &Live::NotFound, &RestoreOptions::default())[0]
                .to_string()
                .starts_with("recreate")
        );
    }

    #[test]
    fn recreate_restores_replication_and_rotation_when_asked_and_maps_keys() {
        let mut s = snapshot();
        s.meta.kms_key_id = Some("arn:aws:kms:us-east-1:1:key/old-key".into());
        s.meta.replication = vec![
            Replica {
                region: "eu-west-1".into(),
                kms_key_id: None,
                status: Some("InSync".into()),
            },
            Replica {
                region: "us-west-2".into(),
                kms_key_id: None,
                status: None,
            },
        ];
        s.meta.rotation = Rotation {
            enabled: true,
            lambda_arn: Some("arn:aws:lambda:us-east-1:1:function:rotate".into()),
            automatically_after_days: Some(30),
            ..Default::default()
        };
        let plan_in = |region: &str, map: &str, restore_rotation: bool| {
            let options = RestoreOptions {
                target_region: Some(region.into()),
                kms_key_map: KeyMap::parse(map).unwrap(),
                restore_rotation,
                ..Default::default()
            };
            plan_with(&s, &Live::NotFound, &options)
        };
        let regions = |a: &Action| match a {
            Action::Recreate {
                replica_regions, ..
            } => replica_regions
                .iter()
                .map(|r| r.region.clone())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let same_region = plan_in("us-east-1", "", false);
        assert_eq!(regions(&same_region[0]), ["eu-west-1", "us-west-2"]);
        assert!(matches!(
            same_region[0],
            Action::Recreate {
                rotation: false,
                ..
            }
        ));
        assert!(matches!(
            plan_in("us-east-1", "", true)[0],
            Action::Recreate { rotation: true, .. }
        ));
        // Into another region: the customer key must be mapped, and is named when it is not.
        let refused = plan_in("eu-west-1", "", false);
        assert_eq!(
            reason(&refused),
            "secret app/db: KMS key arn:aws:kms:us-east-1:1:key/old-key (region us-east-1) has \
             no mapping into region eu-west-1: add --kms-key-map \
             arn:aws:kms:us-east-1:1:key/old-key=<a key in eu-west-1>"
        );
        let mapped = plan_in("eu-west-1", "old-key=alias/new", false);
        assert!(
            matches!(&mapped[0], Action::Recreate { kms_key_id: Some(k), .. } if k == "alias/new"),
            "{mapped:?}"
        );
        // The target region is not a replica of itself.
        assert_eq!(regions(&mapped[0]), ["us-west-2"]);
        assert!(KeyMap::parse("a=b,c").is_err());
        assert!(KeyMap::parse("a=b,a=c").is_err());
    }

    #[test]
    fn a_policy_that_widens_access_is_flagged_in_the_plan() {
        let mut s = snapshot();
        s.meta.resource_policy = Some(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#
                .into(),
        );
        let l = live(
            &[
                ("v2", &[AWSCURRENT], "b", 1),
                ("v1", &[AWSPREVIOUS], "a", 0),
            ],
            false,
        );
        let actions = plan_with(&s, &l, &RestoreOptions::default());
        assert_eq!(
            actions[0].to_string(),
            "put resource policy (WIDENS ACCESS: grants everyone (principal *))"
        );
    }

    #[tokio::test]
    async fn an_interrupted_recreation_is_finished_by_the_marker() {
        use crate::ports::fakes::FakeSecrets;
        let mut s = snapshot();
        s.versions[0].labels.push("GREEN".into());
        s.versions.push(v("v0", &["BLUE"], "z"));
        let api = FakeSecrets::default();
        // A recreation killed right after CreateSecret: only the current version, and the marker.
        api.create(NewSecret {
            name: "app/db",
            description: None,
            kms_key_id: None,
            tags: vec![Tag {
                key: MARKER_TAG.into(),
                value: "snap".into(),
            }],
            client_request_token: "v2",
            value: &s.versions[0].value,
            replica_regions: vec![],
        })
        .await
        .unwrap();
        let options = RestoreOptions {
            apply: true,
            ..Default::default()
        };
        let ctx = PlanContext {
            options: &options,
            snapshot_time: Some(t(2)),
            snapshot_region: Some("us-east-1"),
            snapshot_id: "snap",
        };
        let l = diff::fetch_live(&api, "app/db").await.unwrap();
        let actions = plan(&s, &diff::compare(&s, &l), &l, &ctx);
        assert_eq!(actions, vec![Action::ResumeRecreate]);
        apply_actions(&api, &s, &l, &actions, &ctx).await.unwrap();
        let Live::Present { described, .. } = diff::fetch_live(&api, "app/db").await.unwrap()
        else {
            panic!("gone")
        };
        let mut labels: Vec<(String, Vec<String>)> = described
            .versions
            .iter()
            .map(|v| {
                let mut l = v.labels.clone();
                l.sort();
                (v.version_id.clone(), l)
            })
            .collect();
        labels.sort();
        assert_eq!(
            labels,
            vec![
                ("v0".into(), vec!["BLUE".into()]),
                ("v1".into(), vec![AWSPREVIOUS.into()]),
                ("v2".into(), vec![AWSCURRENT.into(), "GREEN".into()]),
            ]
        );
        assert!(!described.meta.tags.iter().any(|t| t.key == MARKER_TAG));
    }
}
