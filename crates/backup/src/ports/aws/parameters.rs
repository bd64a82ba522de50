//! Parameter Store over the SDK: the parameters under the configured paths, read through the
//! same port as secrets ([`SecretsApi`]) plus PutParameter ([`ParametersApi`]).
//!
//! - Listing: GetParametersByPath (recursive, without decryption: only names, ARNs and
//!   versions are used), path after path; a parameter under two configured paths is listed once.
//! - `describe`: GetParameterHistory (without decryption, every page) and ListTagsForResource:
//!   the latest version's description, type, KMS key, tier, data type and policies, every
//!   version that carries a label, and the latest version under [`LATEST`].
//! - Values: GetParameter of `name:version` with decryption, one per recorded version.
//! - No BatchGetSecretValue, no resource policy: `batch_current` answers nothing (the writer
//!   then reads each parameter by `describe` and `get_version`), `resource_policy` is `None`.
//!
//! Every call goes through a [`Family`] of `crates/backup/src/ports/limited.rs` at the share of
//! the published Parameter Store throughput given to [`AwsParameters::new`]:
//! GetParameter, GetParameters and GetParametersByPath share 40 transactions per second by
//! default (AWS Systems Manager endpoints and quotas, "Parameter Store max throughput";
//! the GetParameter API reference's note on throughput). No figure is published for
//! GetParameterHistory or ListTagsForResource: they get 40 per second each, like the shared
//! family (assumed, as in the test kit's quota emulator, `crates/testkit/src/quota_emulator/quotas.rs`).

use async_trait::async_trait;
use aws_sdk_ssm::types::{ParameterTier, ParameterType, ResourceTypeForTagging};

use super::{api_err, to_chrono};
use crate::domain::model::{
    Described, ParameterMeta, Rotation, SecretMeta, SecretValue, SourceKind, Tag, VersionLabels,
    VersionValue, LATEST,
};
use crate::ports::limited::Family;
use crate::ports::{
    ApiError, BatchValue, ListPage, ListedSecret, NewSecret, ParametersApi, SecretsApi,
};

/// Published Parameter Store throughput, requests per second (see the module documentation).
pub const PARAMETER_QUOTA: f64 = 40.0;

/// Parameter Store over the SDK, rate-limited.
pub struct AwsParameters {
    client: aws_sdk_ssm::Client,
    /// GetParameter and GetParametersByPath (one shared quota).
    get: Family,
    /// GetParameterHistory.
    history: Family,
    /// ListTagsForResource.
    tags: Family,
}

impl AwsParameters {
    /// Its SDK client.
    pub fn client(&self) -> aws_sdk_ssm::Client {
        self.client.clone()
    }

    /// Over this client, its reads limited to `share` (0–1] of [`PARAMETER_QUOTA`].
    pub fn new(client: aws_sdk_ssm::Client, share: f64) -> Self {
        AwsParameters {
            client,
            get: Family::new("GetParameter/GetParametersByPath", PARAMETER_QUOTA * share),
            history: Family::new("GetParameterHistory", PARAMETER_QUOTA * share),
            tags: Family::new("ListTagsForResource", PARAMETER_QUOTA * share),
        }
    }
}

/// The parameter name of an id: a name, or a parameter ARN (`arn:…:parameter/a/b` names `/a/b`;
/// `arn:…:parameter/top` names `top`).
pub fn parameter_name(id: &str) -> String {
    if !id.starts_with("arn:") {
        return id.to_string();
    }
    let resource = id.splitn(6, ':').nth(5).unwrap_or(id);
    let rest = resource.strip_prefix("parameter").unwrap_or(resource);
    match rest.strip_prefix('/') {
        Some(r) if r.contains('/') => format!("/{r}"),
        Some(r) => r.to_string(),
        None => rest.to_string(),
    }
}

/// Whether `name` is under `path` (`/a` covers `/a/b` and `/a/b/c`, not `/ab`).
pub fn under_path(path: &str, name: &str) -> bool {
    let path = path.trim_end_matches('/');
    path.is_empty() || name.strip_prefix(path).is_some_and(|r| r.starts_with('/'))
}

/// The listing token: the index of the path being listed and that path's own token.
fn split_token(token: Option<&str>) -> (usize, Option<String>) {
    match token.and_then(|t| t.split_once('|')) {
        Some((i, t)) => (
            i.parse().unwrap_or(0),
            (!t.is_empty()).then(|| t.to_string()),
        ),
        None => (0, None),
    }
}

/// The policies of a history entry as PutParameter takes them: a JSON array of the policies.
fn policies_json(policies: &[aws_sdk_ssm::types::ParameterInlinePolicy]) -> Option<String> {
    let texts: Vec<&str> = policies.iter().filter_map(|p| p.policy_text()).collect();
    (!texts.is_empty()).then(|| format!("[{}]", texts.join(",")))
}

#[async_trait]
impl SecretsApi for AwsParameters {
    fn source(&self) -> SourceKind {
        SourceKind::ParameterStore
    }

    /// `paths` in place of name prefixes: every parameter under them, recursively.
    async fn list_page(
        &self,
        paths: &[String],
        page_size: i32,
        token: Option<String>,
    ) -> Result<ListPage, ApiError> {
        let (mut index, mut inner) = split_token(token.as_deref());
        loop {
            let Some(path) = paths.get(index) else {
                return Ok(ListPage::default());
            };
            let out = self
                .get
                .call(|| async {
                    self.client
                        .get_parameters_by_path()
                        .path(path)
                        .recursive(true)
                        .with_decryption(false)
                        .max_results(page_size.clamp(1, 10))
                        .set_next_token(inner.clone())
                        .send()
                        .await
                        .map_err(|e| api_err("GetParametersByPath", e))
                })
                .await?;
            let secrets: Vec<ListedSecret> = out
                .parameters()
                .iter()
                .filter_map(|p| {
                    let name = p.name()?.to_string();
                    // Listed under an earlier path already.
                    if paths[..index]
                        .iter()
                        .any(|earlier| under_path(earlier, &name))
                    {
                        return None;
                    }
                    let arn = p.arn().unwrap_or(&name).to_string();
                    Some(ListedSecret {
                        name: name.clone(),
                        arn: arn.clone(),
                        tags: vec![],
                        described: Described {
                            meta: SecretMeta {
                                name,
                                arn,
                                ..Default::default()
                            },
                            ..Default::default()
                        },
                    })
                })
                .collect();
            let next = match out.next_token() {
                Some(t) => Some(format!("{index}|{t}")),
                None if index + 1 < paths.len() => Some(format!("{}|", index + 1)),
                None => None,
            };
            if secrets.is_empty() && next.is_some() && out.next_token().is_none() {
                // An empty path: go on to the next one in the same call.
                index += 1;
                inner = None;
                continue;
            }
            return Ok(ListPage {
                secrets,
                next_token: next,
            });
        }
    }

    async fn batch_current(&self, _ids: &[String]) -> Result<Vec<BatchValue>, ApiError> {
        Ok(vec![])
    }

    async fn describe(&self, id: &str) -> Result<Option<Described>, ApiError> {
        let name = parameter_name(id);
        let mut history = vec![];
        let mut token = None;
        loop {
            let out = self
                .history
                .call(|| async {
                    self.client
                        .get_parameter_history()
                        .name(&name)
                        .with_decryption(false)
                        .max_results(50)
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| api_err("GetParameterHistory", e))
                })
                .await;
            let out = match out {
                Ok(o) => o,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
            history.extend(out.parameters().iter().cloned());
            token = out.next_token().map(String::from);
            if token.is_none() {
                break;
            }
        }
        let Some(latest) = history.iter().max_by_key(|h| h.version()) else {
            return Ok(None);
        };
        let tags = self
            .tags
            .call(|| async {
                self.client
                    .list_tags_for_resource()
                    .resource_type(ResourceTypeForTagging::Parameter)
                    .resource_id(&name)
                    .send()
                    .await
                    .map_err(|e| api_err("ListTagsForResource", e))
            })
            .await?
            .tag_list()
            .iter()
            .map(|t| Tag {
                key: t.key().to_string(),
                value: t.value().to_string(),
            })
            .collect();
        let kind = latest
            .r#type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default();
        let secure = kind == ParameterType::SecureString.as_str();
        let meta = SecretMeta {
            name: name.clone(),
            arn: if id.starts_with("arn:") {
                id.to_string()
            } else {
                name.clone()
            },
            description: latest.description().map(String::from),
            kms_key_id: latest.key_id().filter(|_| secure).map(String::from),
            tags,
            created: history
                .iter()
                .min_by_key(|h| h.version())
                .and_then(|h| h.last_modified_date())
                .and_then(to_chrono),
            parameter: Some(ParameterMeta {
                kind,
                tier: latest.tier().map(|t| t.as_str().to_string()),
                data_type: latest.data_type().map(String::from),
                policies: policies_json(latest.policies()),
            }),
            ..Default::default()
        };
        let mut versions: Vec<VersionLabels> = history
            .iter()
            .filter(|h| !h.labels().is_empty() || h.version() == latest.version())
            .map(|h| {
                let mut labels = h.labels().to_vec();
                if h.version() == latest.version() {
                    labels.insert(0, LATEST.to_string());
                }
                VersionLabels {
                    version_id: h.version().to_string(),
                    labels,
                    created: h.last_modified_date().and_then(to_chrono),
                }
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.version_id.parse::<i64>().unwrap_or(0)));
        Ok(Some(Described {
            meta,
            versions,
            deleted: None,
        }))
    }

    async fn resource_policy(&self, _id: &str) -> Result<Option<String>, ApiError> {
        Ok(None)
    }

    async fn get_value(&self, id: &str, version_id: &str) -> Result<SecretValue, ApiError> {
        Ok(self.get_version(id, version_id).await?.value)
    }

    async fn get_version(&self, id: &str, version_id: &str) -> Result<VersionValue, ApiError> {
        let selector = format!("{}:{version_id}", parameter_name(id));
        let out = self
            .get
            .call(|| async {
                self.client
                    .get_parameter()
                    .name(&selector)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| api_err("GetParameter", e))
            })
            .await?;
        let p = out
            .parameter()
            .ok_or_else(|| ApiError::other(format!("GetParameter {selector}: no parameter")))?;
        Ok(VersionValue {
            value: SecretValue::string(p.value().unwrap_or_default()),
            created: p.last_modified_date().and_then(to_chrono),
        })
    }

    async fn create(&self, secret: NewSecret<'_>) -> Result<String, ApiError> {
        Err(unsupported("CreateSecret", secret.name))
    }

    async fn put_value(
        &self,
        id: &str,
        _value: &SecretValue,
        _labels: &[String],
        _token: Option<&str>,
    ) -> Result<String, ApiError> {
        Err(unsupported("PutSecretValue", id))
    }

    /// LabelParameterVersion: Parameter Store moves the label off any other version itself.
    async fn move_label(
        &self,
        id: &str,
        label: &str,
        to_version: &str,
        _from_version: Option<&str>,
    ) -> Result<(), ApiError> {
        let name = parameter_name(id);
        let version: i64 = to_version.parse().map_err(|_| {
            ApiError::other(format!("{name}: version {to_version} is not a number"))
        })?;
        let out = self
            .client
            .label_parameter_version()
            .name(&name)
            .parameter_version(version)
            .labels(label)
            .send()
            .await
            .map_err(|e| api_err("LabelParameterVersion", e))?;
        if !out.invalid_labels().is_empty() {
            return Err(ApiError::other(format!(
                "LabelParameterVersion {name}:{version}: label {label} refused"
            )));
        }
        Ok(())
    }

    async fn update_metadata(
        &self,
        id: &str,
        _description: Option<&str>,
        _kms_key_id: Option<&str>,
    ) -> Result<(), ApiError> {
        Err(unsupported("UpdateSecret", id))
    }

    async fn tag(&self, id: &str, tags: &[Tag]) -> Result<(), ApiError> {
        let tags: Vec<aws_sdk_ssm::types::Tag> =
            tags.iter().map(to_ssm_tag).collect::<Result<_, _>>()?;
        self.client
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(parameter_name(id))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| api_err("AddTagsToResource", e))?;
        Ok(())
    }

    async fn untag(&self, id: &str, keys: &[String]) -> Result<(), ApiError> {
        self.client
            .remove_tags_from_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(parameter_name(id))
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| api_err("RemoveTagsFromResource", e))?;
        Ok(())
    }

    async fn put_resource_policy(&self, id: &str, _policy: &str) -> Result<(), ApiError> {
        Err(unsupported("PutResourcePolicy", id))
    }

    async fn delete_resource_policy(&self, id: &str) -> Result<(), ApiError> {
        Err(unsupported("DeleteResourcePolicy", id))
    }

    async fn cancel_deletion(&self, id: &str) -> Result<(), ApiError> {
        Err(unsupported("RestoreSecret", id))
    }

    async fn configure_rotation(&self, id: &str, _rotation: &Rotation) -> Result<(), ApiError> {
        Err(unsupported("RotateSecret", id))
    }
}

fn unsupported(op: &str, id: &str) -> ApiError {
    ApiError::other(format!(
        "{op} has no Parameter Store counterpart (parameter {id})"
    ))
}

fn to_ssm_tag(t: &Tag) -> Result<aws_sdk_ssm::types::Tag, ApiError> {
    aws_sdk_ssm::types::Tag::builder()
        .key(&t.key)
        .value(&t.value)
        .build()
        .map_err(|e| ApiError::other(format!("tag {}: {e}", t.key)))
}

#[async_trait]
impl ParametersApi for AwsParameters {
    async fn put_parameter(
        &self,
        meta: &SecretMeta,
        value: &SecretValue,
        overwrite: bool,
    ) -> Result<String, ApiError> {
        let name = &meta.name;
        let SecretValue::String(text) = value else {
            return Err(ApiError::other(format!("parameter {name}: a binary value")));
        };
        let p = meta.parameter.clone().unwrap_or_default();
        let secure = p.kind == ParameterType::SecureString.as_str();
        let mut req = self
            .client
            .put_parameter()
            .name(name)
            .value(text.as_str())
            .r#type(ParameterType::from(p.kind.as_str()))
            .overwrite(overwrite)
            .description(meta.description.clone().unwrap_or_default())
            .set_tier(p.tier.as_deref().map(ParameterTier::from))
            .set_data_type(p.data_type.clone())
            .set_policies(p.policies.clone());
        if secure {
            req = req.set_key_id(meta.kms_key_id.clone());
        }
        if !overwrite {
            let tags: Vec<_> = meta
                .user_tags()
                .into_iter()
                .map(to_ssm_tag)
                .collect::<Result<_, _>>()?;
            if !tags.is_empty() {
                req = req.set_tags(Some(tags));
            }
        }
        let out = req.send().await.map_err(|e| api_err("PutParameter", e))?;
        Ok(out.version().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_arns_and_paths() {
        assert_eq!(
            parameter_name("arn:aws:ssm:eu-west-1:111122223333:parameter/prod/api/db"),
            "/prod/api/db"
        );
        assert_eq!(
            parameter_name("arn:aws:ssm:eu-west-1:111122223333:parameter/top"),
            "top"
        );
        assert_eq!(parameter_name("/prod/api/db"), "/prod/api/db");
        assert!(under_path("/prod", "/prod/api/db"));
        assert!(under_path("/prod/", "/prod/api"));
        assert!(!under_path("/prod", "/production/x"));
        assert!(!under_path("/prod/api", "/prod"));
        assert_eq!(split_token(None), (0, None));
        assert_eq!(split_token(Some("2|")), (2, None));
        assert_eq!(split_token(Some("1|abc|d")), (1, Some("abc|d".into())));
    }
}
