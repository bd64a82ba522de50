//! Parameter Store in memory: versions numbered from 1, labels unique per parameter, tags, and
//! PutParameter's rules (creating refuses an existing name, overwriting adds a version).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;

use crate::domain::model::{
    Described, ParameterMeta, Rotation, SecretMeta, SecretValue, SourceKind, Tag, VersionLabels,
    VersionValue, LATEST,
};
use crate::ports::aws::{parameter_name, under_path};
use crate::ports::{
    ApiError, BatchValue, ErrorKind, ListPage, ListedSecret, NewSecret, ParametersApi, SecretsApi,
};

/// One version of a fake parameter.
#[derive(Clone, Debug)]
pub struct FakeParameterVersion {
    /// Its number.
    pub version: i64,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its value.
    pub value: SecretValue,
    /// Description, KMS key and type, tier, data type, policies at that version.
    pub meta: SecretMeta,
}

/// Parameter Store in memory.
#[derive(Default)]
pub struct FakeParameters {
    /// Every version of every parameter, by name.
    pub parameters: Mutex<BTreeMap<String, Vec<FakeParameterVersion>>>,
    /// Tags by parameter name.
    pub tags: Mutex<HashMap<String, Vec<Tag>>>,
    calls: Mutex<HashMap<&'static str, usize>>,
}

impl FakeParameters {
    /// The ARN of `name`.
    pub fn arn_for(name: &str) -> String {
        format!(
            "arn:aws:ssm:us-east-1:123456789012:parameter/{}",
            name.trim_start_matches('/')
        )
    }

    fn count(&self, op: &'static str) {
        *self.calls.lock().unwrap().entry(op).or_default() += 1;
    }

    /// Calls made to `op` so far.
    pub fn calls(&self, op: &str) -> usize {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    /// Every call so far.
    pub fn total_calls(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }

    /// Put a version of `name` of type `kind` (`SecureString`, `String`, `StringList`).
    pub fn put(&self, name: &str, kind: &str, value: &str) -> i64 {
        let meta = SecretMeta {
            name: name.into(),
            arn: Self::arn_for(name),
            parameter: Some(ParameterMeta {
                kind: kind.into(),
                tier: Some("Standard".into()),
                data_type: Some("text".into()),
                policies: None,
            }),
            ..Default::default()
        };
        self.put_meta(meta, value)
    }

    fn put_meta(&self, meta: SecretMeta, value: &str) -> i64 {
        let mut all = self.parameters.lock().unwrap();
        let versions = all.entry(meta.name.clone()).or_default();
        let version = versions.last().map_or(1, |v| v.version + 1);
        versions.push(FakeParameterVersion {
            version,
            labels: vec![],
            value: SecretValue::string(value),
            meta,
        });
        version
    }

    /// LabelParameterVersion.
    pub fn label(&self, name: &str, version: i64, label: &str) {
        let mut all = self.parameters.lock().unwrap();
        let versions = all.get_mut(name).expect("parameter exists");
        for v in versions.iter_mut() {
            v.labels.retain(|l| l != label);
        }
        versions
            .iter_mut()
            .find(|v| v.version == version)
            .expect("version exists")
            .labels
            .push(label.into());
    }

    /// DeleteParameter.
    pub fn delete(&self, name: &str) {
        self.parameters.lock().unwrap().remove(name);
        self.tags.lock().unwrap().remove(name);
    }

    /// The latest version of `name`.
    pub fn latest(&self, name: &str) -> Option<FakeParameterVersion> {
        self.parameters.lock().unwrap().get(name)?.last().cloned()
    }

    /// The version carrying `label`.
    pub fn labelled(&self, name: &str, label: &str) -> Option<FakeParameterVersion> {
        self.parameters
            .lock()
            .unwrap()
            .get(name)?
            .iter()
            .find(|v| v.labels.iter().any(|l| l == label))
            .cloned()
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("ParameterNotFound: {name}"))
}

#[async_trait]
impl SecretsApi for FakeParameters {
    fn source(&self) -> SourceKind {
        SourceKind::ParameterStore
    }

    async fn list_page(
        &self,
        paths: &[String],
        page_size: i32,
        token: Option<String>,
    ) -> Result<ListPage, ApiError> {
        self.count("GetParametersByPath");
        let names: Vec<String> = self
            .parameters
            .lock()
            .unwrap()
            .keys()
            .filter(|n| paths.iter().any(|p| under_path(p, n)))
            .cloned()
            .collect();
        let start: usize = token.as_deref().unwrap_or("0").parse().unwrap_or(0);
        let end = (start + page_size.clamp(1, 10) as usize).min(names.len());
        Ok(ListPage {
            secrets: names[start..end]
                .iter()
                .map(|n| ListedSecret {
                    name: n.clone(),
                    arn: Self::arn_for(n),
                    tags: vec![],
                    described: Described {
                        meta: SecretMeta {
                            name: n.clone(),
                            arn: Self::arn_for(n),
                            ..Default::default()
                        },
                        ..Default::default()
                    },
                })
                .collect(),
            next_token: (end < names.len()).then(|| end.to_string()),
        })
    }

    async fn batch_current(&self, _ids: &[String]) -> Result<Vec<BatchValue>, ApiError> {
        Ok(vec![])
    }

    async fn describe(&self, id: &str) -> Result<Option<Described>, ApiError> {
        self.count("GetParameterHistory");
        let name = parameter_name(id);
        let Some(versions) = self.parameters.lock().unwrap().get(&name).cloned() else {
            return Ok(None);
        };
        self.count("ListTagsForResource");
        let latest = versions.last().expect("a parameter has a version");
        let mut meta = latest.meta.clone();
        meta.arn = Self::arn_for(&name);
        meta.tags = self
            .tags
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .unwrap_or_default();
        let mut out: Vec<VersionLabels> = versions
            .iter()
            .filter(|v| !v.labels.is_empty() || v.version == latest.version)
            .map(|v| {
                let mut labels = v.labels.clone();
                if v.version == latest.version {
                    labels.insert(0, LATEST.into());
                }
                VersionLabels {
                    version_id: v.version.to_string(),
                    labels,
                    created: None,
                }
            })
            .collect();
        out.reverse();
        Ok(Some(Described {
            meta,
            versions: out,
            deleted: None,
        }))
    }

    async fn resource_policy(&self, _id: &str) -> Result<Option<String>, ApiError> {
        Ok(None)
    }

    async fn get_value(&self, id: &str, version_id: &str) -> Result<SecretValue, ApiError> {
        self.count("GetParameter");
        let name = parameter_name(id);
        self.parameters
            .lock()
            .unwrap()
            .get(&name)
            .and_then(|vs| vs.iter().find(|v| v.version.to_string() == version_id))
            .map(|v| v.value.clone())
            .ok_or_else(|| not_found(&format!("{name}:{version_id}")))
    }

    async fn get_version(&self, id: &str, version_id: &str) -> Result<VersionValue, ApiError> {
        Ok(VersionValue {
            value: self.get_value(id, version_id).await?,
            created: Some(Utc::now()),
        })
    }

    async fn create(&self, secret: NewSecret<'_>) -> Result<String, ApiError> {
        Err(ApiError::other(format!(
            "no CreateSecret for {}",
            secret.name
        )))
    }

    async fn put_value(
        &self,
        id: &str,
        _value: &SecretValue,
        _labels: &[String],
        _token: Option<&str>,
    ) -> Result<String, ApiError> {
        Err(ApiError::other(format!("no PutSecretValue for {id}")))
    }

    async fn move_label(
        &self,
        id: &str,
        label: &str,
        to_version: &str,
        _from_version: Option<&str>,
    ) -> Result<(), ApiError> {
        self.count("LabelParameterVersion");
        let name = parameter_name(id);
        let version: i64 = to_version.parse().map_err(|_| not_found(to_version))?;
        if self.latest(&name).is_none() {
            return Err(not_found(&name));
        }
        self.label(&name, version, label);
        Ok(())
    }

    async fn update_metadata(
        &self,
        id: &str,
        _description: Option<&str>,
        _kms_key_id: Option<&str>,
    ) -> Result<(), ApiError> {
        Err(ApiError::other(format!("no UpdateSecret for {id}")))
    }

    async fn tag(&self, id: &str, tags: &[Tag]) -> Result<(), ApiError> {
        self.count("AddTagsToResource");
        let name = parameter_name(id);
        let mut all = self.tags.lock().unwrap();
        let have = all.entry(name).or_default();
        for t in tags {
            have.retain(|h| h.key != t.key);
            have.push(t.clone());
        }
        Ok(())
    }

    async fn untag(&self, id: &str, keys: &[String]) -> Result<(), ApiError> {
        self.count("RemoveTagsFromResource");
        let name = parameter_name(id);
        if let Some(have) = self.tags.lock().unwrap().get_mut(&name) {
            have.retain(|t| !keys.contains(&t.key));
        }
        Ok(())
    }

    async fn put_resource_policy(&self, id: &str, _policy: &str) -> Result<(), ApiError> {
        Err(ApiError::other(format!("no PutResourcePolicy for {id}")))
    }

    async fn delete_resource_policy(&self, id: &str) -> Result<(), ApiError> {
        Err(ApiError::other(format!("no DeleteResourcePolicy for {id}")))
    }

    async fn cancel_deletion(&self, id: &str) -> Result<(), ApiError> {
        Err(ApiError::other(format!("no RestoreSecret for {id}")))
    }

    async fn configure_rotation(&self, id: &str, _rotation: &Rotation) -> Result<(), ApiError> {
        Err(ApiError::other(format!("no RotateSecret for {id}")))
    }
}

#[async_trait]
impl ParametersApi for FakeParameters {
    async fn put_parameter(
        &self,
        meta: &SecretMeta,
        value: &SecretValue,
        overwrite: bool,
    ) -> Result<String, ApiError> {
        self.count("PutParameter");
        let exists = self.latest(&meta.name).is_some();
        if exists && !overwrite {
            return Err(ApiError::other(format!(
                "ParameterAlreadyExists: {}",
                meta.name
            )));
        }
        let SecretValue::String(text) = value else {
            return Err(ApiError::other("a binary value"));
        };
        let mut stored = meta.clone();
        stored.tags = vec![];
        if !exists {
            self.tags.lock().unwrap().insert(
                meta.name.clone(),
                meta.user_tags().into_iter().cloned().collect(),
            );
        }
        Ok(self.put_meta(stored, text).to_string())
    }
}
