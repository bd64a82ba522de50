//! Secrets Manager over the SDK.

use async_trait::async_trait;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_types::Blob;
use zeroize::Zeroizing;

use super::{api_err, to_chrono};
use crate::domain::model::{
    Described, Replica, Rotation, SecretMeta, SecretValue, Tag, VersionLabels, VersionValue,
};
use crate::ports::{
    ApiError, BatchValue, ErrorKind, ListPage, ListedSecret, NewSecret, SecretsApi,
};

/// The labelled versions of a version-to-labels map, by version id (unlabelled ones, which
/// moto lists and AWS does not, dropped).
fn labelled_versions(
    map: Option<&std::collections::HashMap<String, Vec<String>>>,
) -> Vec<VersionLabels> {
    let mut versions: Vec<VersionLabels> = map
        .map(|m| {
            m.iter()
                .filter(|(_, labels)| !labels.is_empty())
                .map(|(id, labels)| VersionLabels {
                    version_id: id.clone(),
                    labels: labels.clone(),
                    created: None,
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by(|a, b| a.version_id.cmp(&b.version_id));
    versions
}

/// A secret's metadata from a ListSecrets entry or a DescribeSecret answer: the SDK's two types
/// share these accessors but no trait. The resource policy is read apart.
macro_rules! secret_meta {
    ($s:expr, $replication:expr) => {{
        let s = $s;
        let rules = s.rotation_rules();
        SecretMeta {
            name: s.name().unwrap_or_default().to_string(),
            arn: s.arn().unwrap_or_default().to_string(),
            description: s.description().map(String::from),
            kms_key_id: s.kms_key_id().map(String::from),
            tags: sm_tags(s.tags()),
            resource_policy: None,
            rotation: Rotation {
                enabled: s.rotation_enabled().unwrap_or(false),
                lambda_arn: s.rotation_lambda_arn().map(String::from),
                automatically_after_days: rules.and_then(|r| r.automatically_after_days()),
                schedule_expression: rules
                    .and_then(|r| r.schedule_expression())
                    .map(String::from),
                duration: rules.and_then(|r| r.duration()).map(String::from),
            },
            owning_service: s.owning_service().map(String::from),
            created: s.created_date().and_then(to_chrono),
            parameter: None,
            last_rotated: s.last_rotated_date().and_then(to_chrono),
            last_changed: s.last_changed_date().and_then(to_chrono),
            primary_region: s.primary_region().map(String::from),
            replication: $replication,
        }
    }};
}

/// Secrets Manager over the SDK.
#[derive(Clone, Debug)]
pub struct AwsSecrets {
    client: aws_sdk_secretsmanager::Client,
}

impl AwsSecrets {
    /// Over this client.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        AwsSecrets { client }
    }
}

fn sm_tags(tags: &[aws_sdk_secretsmanager::types::Tag]) -> Vec<Tag> {
    tags.iter()
        .map(|t| Tag {
            key: t.key().unwrap_or_default().to_string(),
            value: t.value().unwrap_or_default().to_string(),
        })
        .collect()
}

fn to_sm_tag(t: &Tag) -> aws_sdk_secretsmanager::types::Tag {
    aws_sdk_secretsmanager::types::Tag::builder()
        .key(&t.key)
        .value(&t.value)
        .build()
}

#[async_trait]
impl SecretsApi for AwsSecrets {
    async fn list_page(
        &self,
        name_prefixes: &[String],
        page_size: i32,
        token: Option<String>,
    ) -> Result<ListPage, ApiError> {
        let mut req = self
            .client
            .list_secrets()
            .max_results(page_size.clamp(1, 100))
            .set_next_token(token);
        // The server-side `name` filter only narrows (callers check exactly); use it when
        // ListSecrets accepts the values: at most 10, no leading `!` (negation), its charset.
        let server_side = !name_prefixes.is_empty()
            && name_prefixes.len() <= 10
            && name_prefixes.iter().all(|p| {
                !p.starts_with('!')
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || " :_@/+=.-".contains(c))
            });
        if server_side {
            req = req.filters(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .set_values(Some(name_prefixes.to_vec()))
                    .build(),
            );
        }
        let page = req.send().await.map_err(|e| api_err("ListSecrets", e))?;
        let secrets = page
            .secret_list()
            .iter()
            .map(|s| {
                let versions = labelled_versions(s.secret_versions_to_stages());
                // ListSecrets does not return ReplicationStatus (DescribeSecret does).
                let meta = secret_meta!(s, vec![]);
                ListedSecret {
                    name: meta.name.clone(),
                    arn: meta.arn.clone(),
                    tags: meta.tags.clone(),
                    described: Described {
                        meta,
                        versions,
                        deleted: s.deleted_date().and_then(to_chrono),
                    },
                }
            })
            .collect();
        Ok(ListPage {
            secrets,
            next_token: page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(String::from),
        })
    }

    async fn batch_current(&self, ids: &[String]) -> Result<Vec<BatchValue>, ApiError> {
        let out = self
            .client
            .batch_get_secret_value()
            .set_secret_id_list(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| api_err("BatchGetSecretValue", e))?;
        let mut answers: Vec<BatchValue> = Vec::with_capacity(ids.len());
        for v in out.secret_values() {
            let asked = ids
                .iter()
                .find(|id| Some(id.as_str()) == v.arn() || Some(id.as_str()) == v.name())
                .cloned()
                .unwrap_or_else(|| v.arn().unwrap_or_default().to_string());
            let value = if let Some(s) = v.secret_string() {
                Some(SecretValue::String(Zeroizing::new(s.to_string())))
            } else {
                v.secret_binary()
                    .map(|b| SecretValue::Binary(Zeroizing::new(b.as_ref().to_vec())))
            };
            answers.push(BatchValue {
                id: asked,
                result: match value {
                    Some(value) => Ok((
                        v.version_id().unwrap_or_default().to_string(),
                        VersionValue {
                            value,
                            created: v.created_date().and_then(to_chrono),
                        },
                    )),
                    None => Err(ApiError::other(
                        "BatchGetSecretValue: the AWSCURRENT version has no value",
                    )),
                },
            });
        }
        for e in out.errors() {
            let code = e.error_code().unwrap_or_default();
            let kind = match code {
                "ResourceNotFoundException" => ErrorKind::NotFound,
                "ThrottlingException" => ErrorKind::Throttled,
                _ => ErrorKind::Other,
            };
            answers.push(BatchValue {
                id: e.secret_id().unwrap_or_default().to_string(),
                result: Err(ApiError::new(
                    kind,
                    format!(
                        "BatchGetSecretValue: {code}: {}",
                        e.message().unwrap_or_default()
                    ),
                )),
            });
        }
        Ok(answers)
    }

    async fn describe(&self, id: &str) -> Result<Option<Described>, ApiError> {
        let out = match self.client.describe_secret().secret_id(id).send().await {
            Ok(o) => o,
            Err(e) => {
                let e = api_err("DescribeSecret", e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let versions = labelled_versions(out.version_ids_to_stages());
        let replication = out
            .replication_status()
            .iter()
            .filter_map(|r| {
                Some(Replica {
                    region: r.region()?.to_string(),
                    kms_key_id: r.kms_key_id().map(String::from),
                    status: r.status().map(|s| s.as_str().to_string()),
                })
            })
            .collect();
        Ok(Some(Described {
            meta: secret_meta!(&out, replication),
            versions,
            deleted: out.deleted_date().and_then(to_chrono),
        }))
    }

    async fn resource_policy(&self, id: &str) -> Result<Option<String>, ApiError> {
        let out = self
            .client
            .get_resource_policy()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| api_err("GetResourcePolicy", e))?;
        Ok(out
            .resource_policy()
            .filter(|p| !p.trim().is_empty())
            .map(String::from))
    }

    async fn get_value(&self, id: &str, version_id: &str) -> Result<SecretValue, ApiError> {
        Ok(self.get_version(id, version_id).await?.value)
    }

    async fn get_version(&self, id: &str, version_id: &str) -> Result<VersionValue, ApiError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| api_err("GetSecretValue", e))?;
        let created = out.created_date().and_then(to_chrono);
        let value = if let Some(s) = out.secret_string {
            SecretValue::String(Zeroizing::new(s))
        } else if let Some(b) = out.secret_binary {
            SecretValue::Binary(Zeroizing::new(b.into_inner()))
        } else {
            return Err(ApiError::other("GetSecretValue: the version has no value"));
        };
        Ok(VersionValue { value, created })
    }

    async fn create(&self, new: NewSecret<'_>) -> Result<String, ApiError> {
        let mut req = self
            .client
            .create_secret()
            .name(new.name)
            .set_description(new.description.map(String::from))
            .set_kms_key_id(new.kms_key_id.map(String::from))
            .set_tags((!new.tags.is_empty()).then(|| new.tags.iter().map(to_sm_tag).collect()))
            .client_request_token(new.client_request_token)
            .set_add_replica_regions((!new.replica_regions.is_empty()).then(|| {
                new.replica_regions
                    .iter()
                    .map(|r| {
                        aws_sdk_secretsmanager::types::ReplicaRegionType::builder()
                            .region(&r.region)
                            .set_kms_key_id(r.kms_key_id.clone())
                            .build()
                    })
                    .collect()
            }));
        req = match new.value {
            SecretValue::String(s) => req.secret_string(s.as_str()),
            SecretValue::Binary(b) => req.secret_binary(Blob::new(b.as_slice())),
        };
        let out = req.send().await.map_err(|e| api_err("CreateSecret", e))?;
        Ok(out.arn().unwrap_or(new.name).to_string())
    }

    async fn put_value(
        &self,
        id: &str,
        value: &SecretValue,
        labels: &[String],
        token: Option<&str>,
    ) -> Result<String, ApiError> {
        let mut req = self
            .client
            .put_secret_value()
            .secret_id(id)
            .set_client_request_token(token.map(String::from))
            .set_version_stages(Some(labels.to_vec()));
        req = match value {
            SecretValue::String(s) => req.secret_string(s.as_str()),
            SecretValue::Binary(b) => req.secret_binary(Blob::new(b.as_slice())),
        };
        let out = req.send().await.map_err(|e| api_err("PutSecretValue", e))?;
        Ok(out.version_id().unwrap_or_default().to_string())
    }

    async fn move_label(
        &self,
        id: &str,
        label: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), ApiError> {
        self.client
            .update_secret_version_stage()
            .secret_id(id)
            .version_stage(label)
            .move_to_version_id(to_version)
            .set_remove_from_version_id(from_version.map(String::from))
            .send()
            .await
            .map_err(|e| api_err("UpdateSecretVersionStage", e))?;
        Ok(())
    }

    async fn update_metadata(
        &self,
        id: &str,
        description: Option<&str>,
        kms_key_id: Option<&str>,
    ) -> Result<(), ApiError> {
        self.client
            .update_secret()
            .secret_id(id)
            .set_description(description.map(String::from))
            .set_kms_key_id(kms_key_id.map(String::from))
            .send()
            .await
            .map_err(|e| api_err("UpdateSecret", e))?;
        Ok(())
    }

    async fn tag(&self, id: &str, tags: &[Tag]) -> Result<(), ApiError> {
        self.client
            .tag_resource()
            .secret_id(id)
            .set_tags(Some(tags.iter().map(to_sm_tag).collect()))
            .send()
            .await
            .map_err(|e| api_err("TagResource", e))?;
        Ok(())
    }

    async fn untag(&self, id: &str, keys: &[String]) -> Result<(), ApiError> {
        self.client
            .untag_resource()
            .secret_id(id)
            .set_tag_keys(Some(keys.to_vec()))
            .send()
            .await
            .map_err(|e| api_err("UntagResource", e))?;
        Ok(())
    }

    async fn put_resource_policy(&self, id: &str, policy: &str) -> Result<(), ApiError> {
        self.client
            .put_resource_policy()
            .secret_id(id)
            .resource_policy(policy)
            .block_public_policy(true)
            .send()
            .await
            .map_err(|e| api_err("PutResourcePolicy", e))?;
        Ok(())
    }

    async fn delete_resource_policy(&self, id: &str) -> Result<(), ApiError> {
        self.client
            .delete_resource_policy()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| api_err("DeleteResourcePolicy", e))?;
        Ok(())
    }

    async fn cancel_deletion(&self, id: &str) -> Result<(), ApiError> {
        self.client
            .restore_secret()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| api_err("RestoreSecret", e))?;
        Ok(())
    }

    async fn configure_rotation(&self, id: &str, rotation: &Rotation) -> Result<(), ApiError> {
        let rules = aws_sdk_secretsmanager::types::RotationRulesType::builder()
            .set_automatically_after_days(rotation.automatically_after_days)
            .set_schedule_expression(rotation.schedule_expression.clone())
            .set_duration(rotation.duration.clone())
            .build();
        self.client
            .rotate_secret()
            .secret_id(id)
            .set_rotation_lambda_arn(rotation.lambda_arn.clone())
            .rotation_rules(rules)
            .rotate_immediately(false)
            .send()
            .await
            .map_err(|e| api_err("RotateSecret", e))?;
        Ok(())
    }
}
