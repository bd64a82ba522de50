//! Secrets Manager in memory, with its staging-label rules.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::model::{
    Described, Rotation, SecretMeta, SecretValue, Tag, VersionLabels, VersionValue, AWSCURRENT,
    AWSPREVIOUS,
};
use crate::ports::{
    ApiError, BatchValue, ErrorKind, ListPage, ListedSecret, NewSecret, SecretsApi,
};

/// A version of a fake secret.
#[derive(Clone, Debug)]
pub struct FakeVersion {
    /// The version id.
    pub id: String,
    /// Its staging labels.
    pub labels: Vec<String>,
    /// Its value.
    pub value: SecretValue,
}

/// A fake secret.
#[derive(Clone, Debug)]
pub struct FakeSecret {
    /// Its metadata.
    pub meta: SecretMeta,
    /// Every version (labelled or not).
    pub versions: Vec<FakeVersion>,
    /// Set when scheduled for deletion.
    pub deleted: Option<DateTime<Utc>>,
}

/// Secrets Manager with its staging-label rules.
#[derive(Default)]
pub struct FakeSecrets {
    /// The secrets by name.
    pub secrets: Mutex<BTreeMap<String, FakeSecret>>,
    /// Names whose GetSecretValue fails.
    pub unreadable: Mutex<HashSet<String>>,
    counter: AtomicUsize,
    /// Write calls made so far.
    pub writes: AtomicUsize,
    calls: Mutex<HashMap<&'static str, usize>>,
}

impl FakeSecrets {
    /// The ARN the fake gives `name`.
    pub fn arn_for(name: &str) -> String {
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf")
    }

    fn next_id(&self) -> String {
        format!(
            "{:08}-0000-4000-8000-000000000000",
            self.counter.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// Add a secret with one AWSCURRENT version.
    pub fn add(&self, name: &str, value: SecretValue) -> String {
        let meta = SecretMeta {
            name: name.into(),
            arn: Self::arn_for(name),
            ..Default::default()
        };
        self.secrets.lock().unwrap().insert(
            name.into(),
            FakeSecret {
                meta,
                versions: vec![],
                deleted: None,
            },
        );
        self.put(name, value, &[AWSCURRENT])
    }

    /// PutSecretValue with the given labels (AWSPREVIOUS follows AWSCURRENT as in AWS).
    pub fn put(&self, name: &str, value: SecretValue, labels: &[&str]) -> String {
        let id = self.next_id();
        let mut all = self.secrets.lock().unwrap();
        let s = all.get_mut(name).expect("secret exists");
        apply_put(
            s,
            &id,
            value,
            labels.iter().map(|l| l.to_string()).collect(),
        );
        id
    }

    /// Change a secret in place.
    pub fn with_secret<R>(&self, name: &str, f: impl FnOnce(&mut FakeSecret) -> R) -> R {
        f(self
            .secrets
            .lock()
            .unwrap()
            .get_mut(name)
            .expect("secret exists"))
    }

    /// Delete a secret at once.
    pub fn remove(&self, name: &str) {
        self.secrets.lock().unwrap().remove(name);
    }

    fn find<'a>(all: &'a mut BTreeMap<String, FakeSecret>, id: &str) -> Option<&'a mut FakeSecret> {
        all.values_mut()
            .find(|s| s.meta.name == id || s.meta.arn == id)
    }

    fn read(&self, id: &str, version_id: &str) -> Result<SecretValue, ApiError> {
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        if self.unreadable.lock().unwrap().contains(&s.meta.name) {
            return Err(ApiError::other(
                "AccessDeniedException: not authorized to perform secretsmanager:GetSecretValue",
            ));
        }
        if s.deleted.is_some() {
            return Err(ApiError::other("InvalidRequestException: marked deleted"));
        }
        s.versions
            .iter()
            .find(|v| v.id == version_id)
            .map(|v| v.value.clone())
            .ok_or_else(|| not_found(version_id))
    }

    fn count(&self, op: &'static str) {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
    }

    /// How many calls of the read operation `op` (`ListSecrets`, `DescribeSecret`,
    /// `GetSecretValue`, `BatchGetSecretValue`, `GetResourcePolicy`) were made so far.
    pub fn calls(&self, op: &str) -> usize {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("ResourceNotFoundException: {id}"),
    )
}

fn labelled(s: &FakeSecret) -> Vec<VersionLabels> {
    let mut v: Vec<VersionLabels> = s
        .versions
        .iter()
        .filter(|v| !v.labels.is_empty())
        .map(|v| VersionLabels {
            version_id: v.id.clone(),
            labels: v.labels.clone(),
            created: None,
        })
        .collect();
    v.sort_by(|a, b| a.version_id.cmp(&b.version_id));
    v
}

fn apply_put(s: &mut FakeSecret, id: &str, value: SecretValue, mut labels: Vec<String>) {
    s.meta.last_changed = Some(Utc::now());
    if s.versions.is_empty() && !labels.iter().any(|l| l == AWSCURRENT) {
        labels.push(AWSCURRENT.into());
    }
    let old_current = s
        .versions
        .iter()
        .find(|v| v.labels.iter().any(|l| l == AWSCURRENT))
        .map(|v| v.id.clone());
    for v in &mut s.versions {
        v.labels.retain(|l| !labels.contains(l));
    }
    if labels.iter().any(|l| l == AWSCURRENT) {
        if let Some(old) = old_current {
            for v in &mut s.versions {
                v.labels.retain(|l| l != AWSPREVIOUS);
            }
            let v = s.versions.iter_mut().find(|v| v.id == old).unwrap();
            v.labels.push(AWSPREVIOUS.into());
        }
    }
    s.versions.push(FakeVersion {
        id: id.into(),
        labels,
        value,
    });
}

#[async_trait]
impl SecretsApi for FakeSecrets {
    async fn list_page(
        &self,
        prefixes: &[String],
        page_size: i32,
        token: Option<String>,
    ) -> Result<ListPage, ApiError> {
        self.count("ListSecrets");
        let from: usize = token.as_deref().map_or(0, |t| t.parse().unwrap_or(0));
        let all: Vec<ListedSecret> = self
            .secrets
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.deleted.is_none())
            .filter(|s| {
                prefixes.is_empty()
                    || prefixes
                        .iter()
                        .any(|p| s.meta.name.to_lowercase().starts_with(&p.to_lowercase()))
            })
            .map(|s| {
                let mut meta = s.meta.clone();
                meta.resource_policy = None;
                meta.replication = vec![];
                ListedSecret {
                    name: s.meta.name.clone(),
                    arn: s.meta.arn.clone(),
                    tags: s.meta.tags.clone(),
                    described: Described {
                        meta,
                        versions: labelled(s),
                        deleted: s.deleted,
                    },
                }
            })
            .collect();
        let size = page_size.clamp(1, 100) as usize;
        let end = (from + size).min(all.len());
        Ok(ListPage {
            secrets: all[from.min(end)..end].to_vec(),
            next_token: (end < all.len()).then(|| end.to_string()),
        })
    }

    async fn batch_current(&self, ids: &[String]) -> Result<Vec<BatchValue>, ApiError> {
        self.count("BatchGetSecretValue");
        let mut out = vec![];
        for id in ids {
            let current = {
                let mut all = self.secrets.lock().unwrap();
                Self::find(&mut all, id).and_then(|s| {
                    s.versions
                        .iter()
                        .find(|v| v.labels.iter().any(|l| l == AWSCURRENT))
                        .map(|v| v.id.clone())
                })
            };
            let result = match current {
                None => Err(not_found(id)),
                Some(vid) => self.read(id, &vid).map(|value| {
                    (
                        vid,
                        VersionValue {
                            value,
                            created: None,
                        },
                    )
                }),
            };
            out.push(BatchValue {
                id: id.clone(),
                result,
            });
        }
        Ok(out)
    }

    async fn describe(&self, id: &str) -> Result<Option<Described>, ApiError> {
        self.count("DescribeSecret");
        let mut all = self.secrets.lock().unwrap();
        Ok(Self::find(&mut all, id).map(|s| {
            let mut meta = s.meta.clone();
            meta.resource_policy = None;
            Described {
                meta,
                versions: labelled(s),
                deleted: s.deleted,
            }
        }))
    }

    async fn resource_policy(&self, id: &str) -> Result<Option<String>, ApiError> {
        self.count("GetResourcePolicy");
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        Ok(s.meta.resource_policy.clone())
    }

    async fn get_value(&self, id: &str, version_id: &str) -> Result<SecretValue, ApiError> {
        self.count("GetSecretValue");
        self.read(id, version_id)
    }

    async fn create(&self, new: NewSecret<'_>) -> Result<String, ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        if all.contains_key(new.name) {
            return Err(ApiError::other("ResourceExistsException"));
        }
        let arn = format!("{}-new", Self::arn_for(new.name));
        let mut s = FakeSecret {
            meta: SecretMeta {
                name: new.name.into(),
                arn: arn.clone(),
                description: new.description.map(String::from),
                kms_key_id: new.kms_key_id.map(String::from),
                tags: new.tags.clone(),
                replication: new.replica_regions.clone(),
                ..Default::default()
            },
            versions: vec![],
            deleted: None,
        };
        apply_put(&mut s, new.client_request_token, new.value.clone(), vec![]);
        all.insert(new.name.into(), s);
        Ok(arn)
    }

    async fn put_value(
        &self,
        id: &str,
        value: &SecretValue,
        labels: &[String],
        token: Option<&str>,
    ) -> Result<String, ApiError> {
        self.wrote();
        let vid = token.map(String::from).unwrap_or_else(|| self.next_id());
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        if let Some(v) = s.versions.iter().find(|v| v.id == vid) {
            if v.value == *value {
                return Ok(vid);
            }
            return Err(ApiError::other("ResourceExistsException: token reused"));
        }
        apply_put(s, &vid, value.clone(), labels.to_vec());
        Ok(vid)
    }

    async fn move_label(
        &self,
        id: &str,
        label: &str,
        to: &str,
        from: Option<&str>,
    ) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        let holder = s
            .versions
            .iter()
            .find(|v| v.labels.iter().any(|l| l == label))
            .map(|v| v.id.clone());
        if holder.is_some() && holder.as_deref() != from {
            return Err(ApiError::other(
                "InvalidParameterException: RemoveFromVersionId",
            ));
        }
        for v in &mut s.versions {
            v.labels.retain(|l| l != label);
        }
        s.versions
            .iter_mut()
            .find(|v| v.id == to)
            .ok_or_else(|| not_found(to))?
            .labels
            .push(label.into());
        if label == AWSCURRENT {
            if let Some(old) = holder {
                for v in &mut s.versions {
                    v.labels.retain(|l| l != AWSPREVIOUS);
                }
                s.versions
                    .iter_mut()
                    .find(|v| v.id == old)
                    .unwrap()
                    .labels
                    .push(AWSPREVIOUS.into());
            }
        }
        Ok(())
    }

    async fn update_metadata(
        &self,
        id: &str,
        description: Option<&str>,
        kms_key_id: Option<&str>,
    ) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        if let Some(d) = description {
            s.meta.description = (!d.is_empty()).then(|| d.to_string());
        }
        if let Some(k) = kms_key_id {
            s.meta.kms_key_id = Some(k.into());
        }
        Ok(())
    }

    async fn tag(&self, id: &str, tags: &[Tag]) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        for t in tags {
            s.meta.tags.retain(|x| x.key != t.key);
            s.meta.tags.push(t.clone());
        }
        Ok(())
    }

    async fn untag(&self, id: &str, keys: &[String]) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        s.meta.tags.retain(|t| !keys.contains(&t.key));
        Ok(())
    }

    async fn put_resource_policy(&self, id: &str, policy: &str) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        s.meta.resource_policy = Some(policy.into());
        Ok(())
    }

    async fn delete_resource_policy(&self, id: &str) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        s.meta.resource_policy = None;
        Ok(())
    }

    async fn cancel_deletion(&self, id: &str) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        s.deleted = None;
        Ok(())
    }

    async fn configure_rotation(&self, id: &str, rotation: &Rotation) -> Result<(), ApiError> {
        self.wrote();
        let mut all = self.secrets.lock().unwrap();
        let s = Self::find(&mut all, id).ok_or_else(|| not_found(id))?;
        s.meta.rotation = Rotation {
            enabled: true,
            ..rotation.clone()
        };
        Ok(())
    }
}
