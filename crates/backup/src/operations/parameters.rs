//! Restore of Parameter Store parameters: the plan as a pure function ([`plan_parameter`]) and
//! its application ([`restore_parameter`]).
//!
//! A parameter's versions are numbered by the service and only ever added, so:
//! - the latest value ([`LATEST`] in the record) comes back as a new version (PutParameter with
//!   `Overwrite`), with the snapshot's type, KMS key (through `--kms-key-map`), tier, data type,
//!   description and policies; so does a change of any of those settings;
//! - a label whose snapshot version still exists with the same value is moved back to it
//!   (LabelParameterVersion); otherwise that version's value is put as a new version and the
//!   label moved to it, and the latest value is put again last (the last put is what Parameter
//!   Store serves);
//! - a deleted parameter is created again: every recorded version oldest first (labelled ones,
//!   then the latest), with its tags;
//! - tags are set back (AddTagsToResource / RemoveTagsFromResource), as for secrets;
//! - nothing is ever deleted, and a tier moved from Standard to Advanced stays Advanced (the
//!   service refuses a downgrade; the comparison only notes it).
//!
//! Restore compares by value, so a second `--apply` finds nothing to do.

use std::collections::{BTreeMap, HashSet};

use crate::domain::model::{SecretRecord, VersionRecord, LATEST};
use crate::operations::diff::{self, Change, Live, SecretDiff, Status};
use crate::operations::restore::{Action, PlanContext, SecretOutcome};
use crate::ports::{ApiError, ParametersApi};

/// Parameter Store's default key.
const DEFAULT_PARAMETER_KEY: &str = "alias/aws/ssm";

fn number(id: &str) -> i64 {
    id.parse().unwrap_or(0)
}

/// The labels a version carries in Parameter Store (the record's [`LATEST`] marker aside).
fn user_labels(v: &VersionRecord) -> Vec<String> {
    v.labels.iter().filter(|l| *l != LATEST).cloned().collect()
}

/// The KMS key a SecureString is put with: the snapshot's, through the key map.
fn parameter_key(s: &SecretRecord, ctx: &PlanContext) -> Result<Option<String>, String> {
    let secure = s
        .meta
        .parameter
        .as_ref()
        .is_some_and(|p| p.kind == "SecureString");
    match s.meta.kms_key_id.as_deref() {
        _ if !secure => Ok(None),
        None | Some("") => Ok(None),
        Some(DEFAULT_PARAMETER_KEY) => Ok(Some(DEFAULT_PARAMETER_KEY.into())),
        Some(k) => ctx.key_for(&s.meta.name, Some(k)),
    }
}

/// The actions that make the live parameter match the snapshot again. `intact`: the snapshot's
/// versions that still exist live with the same value (a label can move back to them).
pub fn plan_parameter(
    s: &SecretRecord,
    d: &SecretDiff,
    live: &Live,
    intact: &HashSet<String>,
    ctx: &PlanContext,
) -> Vec<Action> {
    if matches!(d.status, Status::New | Status::Unchanged) {
        return vec![];
    }
    let kms_key_id = match parameter_key(s, ctx) {
        Ok(k) => k,
        Err(reason) => return vec![Action::Refuse { reason }],
    };
    let Some(latest) = s.version_with_label(LATEST) else {
        return vec![Action::Refuse {
            reason: "the snapshot has no latest version to put".into(),
        }];
    };
    let put = |v: &VersionRecord, create: bool| Action::PutParameter {
        from_version: v.version_id.clone(),
        labels: user_labels(v),
        create,
        kms_key_id: kms_key_id.clone(),
    };
    if !matches!(live, Live::Present { .. }) {
        // Deleted: every recorded version, oldest first, the latest last.
        let mut versions: Vec<&VersionRecord> = s.versions.iter().collect();
        versions.sort_by_key(|v| (v.has_label(LATEST), number(&v.version_id)));
        return versions
            .iter()
            .enumerate()
            .map(|(i, v)| put(v, i == 0))
            .collect();
    }
    let mut put_latest = false;
    let mut olds: BTreeMap<i64, &VersionRecord> = BTreeMap::new();
    let mut moves = vec![];
    let mut tags = vec![];
    for change in &d.changes {
        match change {
            Change::Value { label, .. } if label == LATEST => put_latest = true,
            Change::Value {
                label,
                snapshot_version,
                live_version,
            } => {
                if *snapshot_version == latest.version_id {
                    put_latest = true;
                } else if intact.contains(snapshot_version) {
                    moves.push(Action::MoveLabel {
                        label: label.clone(),
                        to_version: snapshot_version.clone(),
                        from_version: live_version.clone(),
                    });
                } else if let Some(v) = s
                    .versions
                    .iter()
                    .find(|v| v.version_id == *snapshot_version)
                {
                    olds.insert(number(&v.version_id), v);
                }
            }
            Change::Description | Change::KmsKey | Change::ParameterSettings { .. } => {
                put_latest = true
            }
            Change::Tags {
                added,
                removed,
                changed,
            } => tags.extend(super::restore::tag_actions(added, removed, changed)),
            Change::ResourcePolicy | Change::NotFound | Change::ScheduledForDeletion { .. } => {}
        }
    }
    // Putting an old value makes it the latest: the latest value goes back on top after.
    put_latest |= !olds.is_empty();
    let mut actions: Vec<Action> = olds.values().map(|v| put(v, false)).collect();
    actions.extend(moves);
    if put_latest {
        actions.push(put(latest, false));
    }
    actions.extend(tags);
    actions
}

/// Plan (and with `--apply`, carry out) the restore of one parameter; `None` when it is
/// unchanged.
pub async fn restore_parameter(
    api: &dyn ParametersApi,
    s: &SecretRecord,
    ctx: &PlanContext<'_>,
) -> Option<SecretOutcome> {
    let name = s.meta.name.clone();
    let outcome = |d: Option<&SecretDiff>, actions: Vec<String>, error: Option<String>| {
        Some(SecretOutcome {
            name: name.clone(),
            status: d.map(|d| d.status).unwrap_or(Status::Changed),
            detail: d.map(|d| d.detail()).unwrap_or_default(),
            actions,
            refused: error.as_deref().is_some_and(|e| e.starts_with("refused:")),
            error,
        })
    };
    let live = match diff::fetch_live(api, &name).await {
        Ok(l) => l,
        Err(e) => {
            return outcome(
                None,
                vec![],
                Some(format!("parameter {name}: reading live state: {e}")),
            )
        }
    };
    let d = diff::compare(s, &live);
    if d.status == Status::Unchanged {
        return None;
    }
    // Which snapshot versions a label can move back to: still there, with the same value.
    let mut intact = HashSet::new();
    if matches!(live, Live::Present { .. }) {
        for c in &d.changes {
            let Change::Value {
                snapshot_version, ..
            } = c
            else {
                continue;
            };
            let Some(v) = s
                .versions
                .iter()
                .find(|v| v.version_id == *snapshot_version)
            else {
                continue;
            };
            match api.get_version(&name, snapshot_version).await {
                Ok(got) if got.value == v.value => {
                    intact.insert(snapshot_version.clone());
                }
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return outcome(
                        Some(&d),
                        vec![],
                        Some(format!(
                            "parameter {name}: reading version {snapshot_version}: {e}"
                        )),
                    )
                }
            }
        }
    }
    let actions = plan_parameter(s, &d, &live, &intact, ctx);
    let shown: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
    if let Some(reason) = actions.iter().find_map(|a| match a {
        Action::Refuse { reason } => Some(reason.clone()),
        _ => None,
    }) {
        return outcome(Some(&d), shown, Some(format!("refused: {reason}")));
    }
    if ctx.options.apply {
        if let Err((action, e)) = apply(api, s, &live, &actions).await {
            return outcome(
                Some(&d),
                shown,
                Some(format!("parameter {name}: {action}: {e}")),
            );
        }
        tracing::info!(parameter = %name, actions = ?shown, "restored");
    }
    outcome(Some(&d), shown, None)
}

async fn apply(
    api: &dyn ParametersApi,
    s: &SecretRecord,
    live: &Live,
    actions: &[Action],
) -> Result<(), (String, ApiError)> {
    let name = s.meta.name.as_str();
    let live_tier = match live {
        Live::Present { described, .. } => described
            .meta
            .parameter
            .as_ref()
            .and_then(|p| p.tier.clone()),
        _ => None,
    };
    for action in actions {
        let err = |e: ApiError| (action.to_string(), e);
        match action {
            Action::PutParameter {
                from_version,
                labels,
                create,
                kms_key_id,
            } => {
                let v = s
                    .versions
                    .iter()
                    .find(|v| v.version_id == *from_version)
                    .expect("the plan names versions of the snapshot");
                let mut meta = s.meta.clone();
                meta.kms_key_id = kms_key_id.clone();
                if let Some(p) = meta.parameter.as_mut() {
                    // Parameter Store refuses Advanced -> Standard: keep the live tier.
                    if live_tier.as_deref() == Some("Advanced")
                        && p.tier.as_deref().unwrap_or("Standard") == "Standard"
                    {
                        p.tier = live_tier.clone();
                    }
                }
                let version = api
                    .put_parameter(&meta, &v.value, !create)
                    .await
                    .map_err(err)?;
                for label in labels {
                    api.move_label(name, label, &version, None)
                        .await
                        .map_err(err)?;
                }
            }
            Action::MoveLabel {
                label,
                to_version,
                from_version,
            } => api
                .move_label(name, label, to_version, from_version.as_deref())
                .await
                .map_err(err)?,
            Action::SetTags { keys } => {
                let tags: Vec<_> = s
                    .meta
                    .tags
                    .iter()
                    .filter(|t| keys.contains(&t.key))
                    .cloned()
                    .collect();
                api.tag(name, &tags).await.map_err(err)?
            }
            Action::RemoveTags { keys } => api.untag(name, keys).await.map_err(err)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{ParameterMeta, SecretMeta, SecretValue, SourceKind};
    use crate::operations::restore::{KeyMap, RestoreOptions};

    fn record(key: Option<&str>) -> SecretRecord {
        let v = |id: &str, labels: &[&str], value: &str| VersionRecord {
            version_id: id.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            created: None,
            value: SecretValue::string(value),
        };
        SecretRecord {
            source: SourceKind::ParameterStore,
            meta: SecretMeta {
                name: "/prod/api/db".into(),
                arn: "arn:aws:ssm:eu-west-1:1:parameter/prod/api/db".into(),
                kms_key_id: key.map(String::from),
                parameter: Some(ParameterMeta {
                    kind: "SecureString".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            versions: vec![
                v("7", &[LATEST, "live"], "c"),
                v("2", &["stable"], "a"),
                v("5", &["canary"], "b"),
            ],
        }
    }

    fn ctx(options: &RestoreOptions) -> PlanContext<'_> {
        PlanContext {
            options,
            snapshot_time: None,
            snapshot_region: Some("eu-west-1"),
            snapshot_id: "s",
        }
    }

    #[test]
    fn a_deleted_parameter_comes_back_oldest_first_and_the_latest_last() {
        let s = record(Some("alias/aws/ssm"));
        let live = Live::NotFound;
        let d = diff::compare(&s, &live);
        let options = RestoreOptions::default();
        let actions = plan_parameter(&s, &d, &live, &HashSet::new(), &ctx(&options));
        let order: Vec<(String, Vec<String>, bool)> = actions
            .iter()
            .map(|a| match a {
                Action::PutParameter {
                    from_version,
                    labels,
                    create,
                    kms_key_id,
                } => {
                    assert_eq!(kms_key_id.as_deref(), Some("alias/aws/ssm"));
                    (from_version.clone(), labels.clone(), *create)
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            order,
            vec![
                ("2".to_string(), vec!["stable".to_string()], true),
                ("5".to_string(), vec!["canary".to_string()], false),
                ("7".to_string(), vec!["live".to_string()], false),
            ]
        );
    }

    #[test]
    fn a_key_of_another_region_needs_a_mapping() {
        let s = record(Some("arn:aws:kms:eu-west-1:1:key/k"));
        let live = Live::NotFound;
        let d = diff::compare(&s, &live);
        let mut options = RestoreOptions {
            target_region: Some("us-east-1".into()),
            ..Default::default()
        };
        let refused = plan_parameter(&s, &d, &live, &HashSet::new(), &ctx(&options));
        assert!(
            matches!(&refused[..], [Action::Refuse { reason }] if reason.contains("--kms-key-map")),
            "{refused:?}"
        );
        options.kms_key_map = KeyMap::parse("arn:aws:kms:eu-west-1:1:key/k=alias/east").unwrap();
        let mapped = plan_parameter(&s, &d, &live, &HashSet::new(), &ctx(&options));
        assert!(mapped.iter().all(|a| matches!(
            a,
            Action::PutParameter { kms_key_id: Some(k), .. } if k == "alias/east"
        )));
    }
}
