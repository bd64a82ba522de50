//! [`MemoryStore`]: an in-memory Secrets Manager (one account, one region).
//!
//! It follows Secrets Manager's label rules: one version per label, AWSPREVIOUS moved to the old
//! AWSCURRENT on promotion, idempotent `PutSecretValue` for a token, a valueless AWSPENDING
//! version created by [`MemoryStore::begin_rotation`] (what `RotateSecret` does before it invokes
//! the function). Versions remember the order they were created in (`ListSecretVersionIds`
//! answers newest first) and stay when their last label leaves (Secrets Manager deletes such
//! versions only eventually). It also counts calls, so tests can hold rotation to its call budget.

use crate::store::{
    SecretMetadata, SecretStore, StoreError, VersionEntry, AWSCURRENT, AWSPENDING, AWSPREVIOUS,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Version {
    value: Option<String>,
    stages: Vec<String>,
    /// Creation order within the secret (`CreatedDate`): higher is newer.
    created: u64,
}

#[derive(Debug, Clone)]
struct Secret {
    arn: String,
    name: String,
    rotation_enabled: Option<bool>,
    rotation_lambda_arn: Option<String>,
    tags: Vec<(String, String)>,
    versions: BTreeMap<String, Version>,
    /// The creation order the next new version gets.
    next_created: u64,
}

impl Secret {
    /// Secrets Manager accepts a secret's ARN or its name as `SecretId`.
    fn answers_to(&self, secret_id: &str) -> bool {
        self.arn == secret_id || self.name == secret_id
    }

    /// Stores version `id` with `stages`; each of those labels leaves any other version first.
    /// A version that exists keeps its place in the creation order.
    fn place(&mut self, id: &str, value: Option<&str>, stages: &[&str]) {
        for v in self.versions.values_mut() {
            v.stages.retain(|l| !stages.contains(&l.as_str()));
        }
        let created = match self.versions.get(id) {
            Some(existing) => existing.created,
            None => {
                self.next_created += 1;
                self.next_created
            }
        };
        self.versions.insert(
            id.to_string(),
            Version {
                value: value.map(str::to_string),
                stages: stages.iter().map(|l| l.to_string()).collect(),
                created,
            },
        );
    }
}

/// An in-memory Secrets Manager (one account, one region).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    secrets: Arc<Mutex<HashMap<String, Secret>>>,
    calls: Arc<Mutex<Vec<&'static str>>>,
    /// Operations whose next calls take effect and then answer as a lost connection, with how
    /// many calls are left to lose.
    lost: Arc<Mutex<HashMap<&'static str, u32>>>,
}

fn not_found(operation: &'static str, what: &str) -> StoreError {
    StoreError::new(
        operation,
        Some("ResourceNotFoundException".into()),
        format!("Secrets Manager can't find {what}"),
    )
}

fn invalid(operation: &'static str, message: String) -> StoreError {
    StoreError::new(operation, Some("InvalidRequestException".into()), message)
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a secret whose first version (id `initial_version`) is AWSCURRENT. Returns the ARN.
    pub fn create_secret(&self, name: &str, initial_version: &str, value: &str) -> String {
        let arn = format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf");
        let mut versions = BTreeMap::new();
        versions.insert(
            initial_version.to_string(),
            Version {
                value: Some(value.to_string()),
                stages: vec![AWSCURRENT.to_string()],
                created: 1,
            },
        );
        self.secrets.lock().unwrap().insert(
            arn.clone(),
            Secret {
                arn: arn.clone(),
                name: name.to_string(),
                rotation_enabled: Some(true),
                rotation_lambda_arn: None,
                tags: Vec::new(),
                versions,
                next_created: 1,
            },
        );
        arn
    }

    fn with_secret<R>(
        &self,
        operation: &'static str,
        secret_id: &str,
        f: impl FnOnce(&mut Secret) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.calls.lock().unwrap().push(operation);
        let mut secrets = self.secrets.lock().unwrap();
        let secret = secrets
            .values_mut()
            .find(|s| s.answers_to(secret_id))
            .ok_or_else(|| not_found(operation, "the specified secret"))?;
        let answer = f(secret);
        let mut lost = self.lost.lock().unwrap();
        match lost.get_mut(operation) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Err(StoreError::new(
                    operation,
                    None,
                    "dispatch failure: connection reset (the answer was lost)",
                ))
            }
            _ => answer,
        }
    }

    /// The next `calls` calls of `operation` (e.g. `UpdateSecretVersionStage`) take effect, as
    /// the service applies them, and then fail as if their answer had been lost on the way back
    /// (a reset connection after the SDK's last attempt).
    pub fn lose_answers(&self, operation: &'static str, calls: u32) {
        self.lost.lock().unwrap().insert(operation, calls);
    }

    /// Test set-up and inspection: `f` on the secret, no call counted; panics if it is missing.
    fn set_up<R>(&self, secret_id: &str, f: impl FnOnce(&mut Secret) -> R) -> R {
        let mut secrets = self.secrets.lock().unwrap();
        let secret = secrets
            .values_mut()
            .find(|s| s.answers_to(secret_id))
            .unwrap_or_else(|| panic!("secret {secret_id} exists"));
        f(secret)
    }

    /// Sets `RotationEnabled` (`None` = the flag is absent).
    pub fn set_rotation_enabled(&self, secret_id: &str, enabled: Option<bool>) {
        self.set_up(secret_id, |s| s.rotation_enabled = enabled);
    }

    /// Sets the secret's tags (test set-up).
    pub fn set_tags(&self, secret_id: &str, tags: &[(&str, &str)]) {
        self.set_up(secret_id, |s| {
            s.tags = tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
    }

    /// Sets `RotationLambdaARN` (test set-up).
    pub fn set_rotation_lambda(&self, secret_id: &str, arn: Option<&str>) {
        self.set_up(secret_id, |s| {
            s.rotation_lambda_arn = arn.map(str::to_string)
        });
    }

    /// What `RotateSecret` does before invoking createSecret: a valueless version `token` labelled
    /// AWSPENDING (the label leaves any older version).
    pub fn begin_rotation(&self, secret_id: &str, token: &str) {
        self.set_up(secret_id, |s| s.place(token, None, &[AWSPENDING]));
    }

    /// Adds a labelled version with a value directly (test set-up, no call counted).
    pub fn put_version(&self, secret_id: &str, version: &str, value: &str, stages: &[&str]) {
        self.set_up(secret_id, |s| s.place(version, Some(value), stages));
    }

    /// What `UpdateSecretVersionStage(stage, RemoveFromVersionId = version)` does, e.g. an
    /// operator cancelling a stuck rotation by removing AWSPENDING (test set-up, no call
    /// counted). The version stays, unlabelled if that was its last label.
    pub fn remove_label(&self, secret_id: &str, version: &str, stage: &str) {
        self.set_up(secret_id, |s| {
            let v = s
                .versions
                .get_mut(version)
                .unwrap_or_else(|| panic!("version {version} exists"));
            v.stages.retain(|l| l != stage);
        });
    }

    /// The value of the version carrying `stage` (test inspection, no call counted).
    pub fn value_at(&self, secret_id: &str, stage: &str) -> Option<String> {
        let secrets = self.secrets.lock().unwrap();
        let secret = secrets.values().find(|s| s.answers_to(secret_id))?;
        secret
            .versions
            .values()
            .find(|v| v.stages.iter().any(|s| s == stage))
            .and_then(|v| v.value.clone())
    }

    /// Version id → labels (test inspection, no call counted).
    pub fn labels(&self, secret_id: &str) -> BTreeMap<String, Vec<String>> {
        self.set_up(secret_id, |s| {
            s.versions
                .iter()
                .map(|(id, v)| (id.clone(), v.stages.clone()))
                .collect()
        })
    }

    /// Every call made so far, by operation name.
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }

    /// Forgets the calls counted so far.
    pub fn reset_calls(&self) {
        self.calls.lock().unwrap().clear();
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretMetadata, StoreError> {
        self.with_secret("DescribeSecret", secret_id, |s| {
            Ok(SecretMetadata {
                arn: s.arn.clone(),
                name: s.name.clone(),
                rotation_enabled: s.rotation_enabled,
                tags: s.tags.clone(),
                rotation_lambda_arn: s.rotation_lambda_arn.clone(),
                kms_key_id: None,
                versions: s
                    .versions
                    .iter()
                    .filter(|(_, v)| !v.stages.is_empty())
                    .map(|(id, v)| (id.clone(), v.stages.clone()))
                    .collect(),
            })
        })
    }

    async fn get_value(
        &self,
        secret_id: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        self.with_secret("GetSecretValue", secret_id, |s| {
            let Some(version) = s.versions.get(version_id) else {
                return Ok(None);
            };
            if !version.stages.iter().any(|l| l == stage) {
                return Err(invalid(
                    "GetSecretValue",
                    "You provided a VersionStage that is not associated to the provided VersionId."
                        .into(),
                ));
            }
            Ok(version.value.clone())
        })
    }

    async fn get_stage_value(
        &self,
        secret_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        self.with_secret("GetSecretValue", secret_id, |s| {
            Ok(s.versions
                .values()
                .find(|v| v.stages.iter().any(|l| l == stage))
                .and_then(|v| v.value.clone()))
        })
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionEntry>, StoreError> {
        self.with_secret("ListSecretVersionIds", secret_id, |s| {
            let mut versions: Vec<(&String, &Version)> = s.versions.iter().collect();
            versions.sort_by_key(|(_, v)| std::cmp::Reverse(v.created));
            Ok(versions
                .into_iter()
                .map(|(id, v)| VersionEntry {
                    id: id.clone(),
                    stages: v.stages.clone(),
                })
                .collect())
        })
    }

    async fn get_version_value(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.with_secret("GetSecretValue", secret_id, |s| {
            Ok(s.versions.get(version_id).and_then(|v| v.value.clone()))
        })
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        secret_string: &str,
        _rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with_secret("PutSecretValue", secret_id, |s| {
            if let Some(existing) = s.versions.get(token) {
                match &existing.value {
                    Some(v) if v == secret_string => return Ok(()),
                    Some(_) => {
                        return Err(StoreError::new(
                            "PutSecretValue",
                            Some("ResourceExistsException".into()),
                            format!("version {token} already exists with another value"),
                        ))
                    }
                    None => {}
                }
            }
            s.place(token, Some(secret_string), &[AWSPENDING]);
            Ok(())
        })
    }

    async fn move_current(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), StoreError> {
        const OP: &str = "UpdateSecretVersionStage";
        self.with_secret(OP, secret_id, |s| {
            if !s.versions.contains_key(to_version) {
                return Err(invalid(OP, format!("Not a valid version: {to_version}")));
            }
            let holder = s
                .versions
                .iter()
                .find(|(_, v)| v.stages.iter().any(|l| l == AWSCURRENT))
                .map(|(id, _)| id.clone());
            if holder.as_deref() != from_version {
                return Err(invalid(
                    OP,
                    "RemoveFromVersionId must name the version that carries AWSCURRENT".into(),
                ));
            }
            if let Some(from) = from_version {
                for v in s.versions.values_mut() {
                    v.stages.retain(|l| l != AWSPREVIOUS);
                }
                let old = s.versions.get_mut(from).expect("holder exists");
                old.stages.retain(|l| l != AWSCURRENT);
                old.stages.push(AWSPREVIOUS.to_string());
            }
            s.versions
                .get_mut(to_version)
                .expect("checked above")
                .stages
                .push(AWSCURRENT.to_string());
            Ok(())
        })
    }
}
