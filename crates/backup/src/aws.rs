//! The ports over the AWS SDK, and the SDK configuration (built once, no network I/O).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_s3::config::SharedCredentialsProvider;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::Blob;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use zeroize::Zeroizing;

use crate::model::*;
use crate::ports::*;

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Map an SDK error to an [`ApiError`] naming the operation, the error code and message.
fn api_err<E>(op: &str, e: aws_sdk_secretsmanager::error::SdkError<E>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = e.code().map(str::to_string);
    let kind = match code.as_deref() {
        Some("ResourceNotFoundException" | "NoSuchKey" | "NotFound") => ErrorKind::NotFound,
        Some("PreconditionFailed") => ErrorKind::AlreadyExists,
        Some("InvalidCiphertextException" | "IncorrectKeyException") => {
            ErrorKind::InvalidCiphertext
        }
        _ => ErrorKind::Other,
    };
    let text = lambda_support::describe_sdk_error(&e);
    ApiError::new(kind, format!("{op}: {text}"))
}

/// Secrets Manager over the SDK.
#[derive(Clone, Debug)]
pub struct AwsSecrets {
    client: aws_sdk_secretsmanager::Client,
}

impl AwsSecrets {
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
    fn list<'a>(
        &'a self,
        name_prefixes: &'a [String],
    ) -> BoxStream<'a, Result<ListedSecret, ApiError>> {
        let mut req = self.client.list_secrets().max_results(100);
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
        let pages = req.into_paginator().send();
        stream::unfold(Some(pages), |pages| async move {
            let mut pages = pages?;
            match pages.next().await? {
                Ok(page) => {
                    let items: Vec<_> = page
                        .secret_list()
                        .iter()
                        .map(|s| {
                            Ok(ListedSecret {
                                name: s.name().unwrap_or_default().to_string(),
                                arn: s.arn().unwrap_or_default().to_string(),
                                tags: sm_tags(s.tags()),
                            })
                        })
                        .collect();
                    Some((stream::iter(items), Some(pages)))
                }
                // Stop after an error: the caller records it.
                Err(e) => Some((stream::iter(vec![Err(api_err("ListSecrets", e))]), None)),
            }
        })
        .flatten()
        .boxed()
    }

    async fn describe(&self, id: &str) -> Result<Option<Described>, ApiError> {
        let out = match self.client.describe_secret().secret_id(id).send().await {
            Ok(o) => o,
            Err(e) => {
                let e = api_err("DescribeSecret", e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let rules = out.rotation_rules();
        let mut versions: Vec<VersionLabels> = out
            .version_ids_to_stages()
            .map(|m| {
                m.iter()
                    .filter(|(_, labels)| !labels.is_empty())
                    .map(|(id, labels)| VersionLabels {
                        version_id: id.clone(),
                        labels: labels.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort_by(|a, b| a.version_id.cmp(&b.version_id));
        Ok(Some(Described {
            meta: SecretMeta {
                name: out.name().unwrap_or_default().to_string(),
                arn: out.arn().unwrap_or_default().to_string(),
                description: out.description().map(String::from),
                kms_key_id: out.kms_key_id().map(String::from),
                tags: sm_tags(out.tags()),
                resource_policy: None,
                rotation: Rotation {
                    enabled: out.rotation_enabled().unwrap_or(false),
                    lambda_arn: out.rotation_lambda_arn().map(String::from),
                    automatically_after_days: rules.and_then(|r| r.automatically_after_days()),
                    schedule_expression: rules
                        .and_then(|r| r.schedule_expression())
                        .map(String::from),
                    duration: rules.and_then(|r| r.duration()).map(String::from),
                },
                owning_service: out.owning_service().map(String::from),
                created: out.created_date().and_then(to_chrono),
            },
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
        let out = self
            .client
            .get_secret_value()
            .secret_id(id)
            .version_id(version_id)
            .send()
            .await
            .map_err(|e| api_err("GetSecretValue", e))?;
        if let Some(s) = out.secret_string {
            Ok(SecretValue::String(Zeroizing::new(s)))
        } else if let Some(b) = out.secret_binary {
            Ok(SecretValue::Binary(Zeroizing::new(b.into_inner())))
        } else {
            Err(ApiError::other("GetSecretValue: the version has no value"))
        }
    }

    async fn create(&self, new: NewSecret<'_>) -> Result<String, ApiError> {
        let mut req = self
            .client
            .create_secret()
            .name(new.name)
            .set_description(new.description.map(String::from))
            .set_kms_key_id(new.kms_key_id.map(String::from))
            .set_tags((!new.tags.is_empty()).then(|| new.tags.iter().map(to_sm_tag).collect()))
            .client_request_token(new.client_request_token);
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
}

/// The snapshot bucket over the SDK. Every object is written with SSE-KMS and
/// `If-None-Match: *`.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    sse_kms_key_id: Option<String>,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: String, sse_kms_key_id: Option<String>) -> Self {
        S3Store {
            client,
            bucket,
            sse_kms_key_id,
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_new(
        &self,
        key: &str,
        body: Body,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<(), ApiError> {
        let body = match body {
            Body::Bytes(b) => ByteStream::from(b),
            Body::File(path) => ByteStream::from_path(&path)
                .await
                .map_err(|e| ApiError::other(format!("reading {}: {e}", path.display())))?,
        };
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .content_type(content_type)
            .if_none_match("*")
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .bucket_key_enabled(true);
        for (k, v) in metadata {
            req = req.metadata(*k, v);
        }
        req.send().await.map_err(|e| api_err("PutObject", e))?;
        Ok(())
    }

    async fn get(&self, key: &str, max_len: u64) -> Result<Option<Vec<u8>>, ApiError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let e = api_err("GetObject", e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let len = out.content_length().unwrap_or(0).max(0) as u64;
        if len > max_len {
            return Err(ApiError::other(format!(
                "GetObject: {key} is {len} bytes, more than the {max_len} expected"
            )));
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| ApiError::other(format!("GetObject {key}: reading the body: {e}")))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn head(&self, key: &str) -> Result<Option<HashMap<String, String>>, ApiError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(o.metadata().cloned().unwrap_or_default())),
            Err(e) => {
                let e = api_err("HeadObject", e);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = vec![];
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| api_err("ListObjectsV2", e))?;
            out.extend(
                page.common_prefixes()
                    .iter()
                    .filter_map(|p| p.prefix().map(String::from)),
            );
        }
        out.sort();
        Ok(out)
    }
}

/// KMS over the SDK.
#[derive(Clone, Debug)]
pub struct KmsKeys {
    client: aws_sdk_kms::Client,
    key_id: Option<String>,
}

impl KmsKeys {
    /// `key_id` is needed to generate data keys; decrypting finds the key in the ciphertext.
    pub fn new(client: aws_sdk_kms::Client, key_id: Option<String>) -> Self {
        KmsKeys { client, key_id }
    }
}

fn context_map(context: &[(&str, &str)]) -> HashMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[async_trait]
impl KeyService for KmsKeys {
    async fn generate_data_key(&self, context: &[(&str, &str)]) -> Result<DataKey, ApiError> {
        let key_id = self
            .key_id
            .as_deref()
            .ok_or_else(|| ApiError::other("no KMS key configured (BACKUP_KMS_KEY_ID)"))?;
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|e| api_err("GenerateDataKey", e))?;
        let key_arn = out.key_id().unwrap_or(key_id).to_string();
        let wrapped = out
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| ApiError::other("GenerateDataKey returned no ciphertext"))?;
        let plaintext = out
            .plaintext
            .map(|b| Zeroizing::new(b.into_inner()))
            .ok_or_else(|| ApiError::other("GenerateDataKey returned no plaintext"))?;
        Ok(DataKey {
            plaintext,
            wrapped,
            key_id: key_arn,
        })
    }

    async fn decrypt(
        &self,
        wrapped: &[u8],
        context: &[(&str, &str)],
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|e| api_err("Decrypt", e))?;
        out.plaintext
            .map(|b| Zeroizing::new(b.into_inner()))
            .ok_or_else(|| ApiError::other("Decrypt returned no plaintext"))
    }
}

/// STS GetCallerIdentity, asked once and remembered.
#[derive(Debug)]
pub struct StsIdentity {
    client: aws_sdk_sts::Client,
    account: tokio::sync::OnceCell<String>,
}

impl StsIdentity {
    pub fn new(client: aws_sdk_sts::Client) -> Self {
        StsIdentity {
            client,
            account: tokio::sync::OnceCell::new(),
        }
    }
}

#[async_trait]
impl Identity for StsIdentity {
    async fn account_id(&self) -> Result<String, ApiError> {
        self.account
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| api_err("GetCallerIdentity", e))?;
                out.account()
                    .map(String::from)
                    .ok_or_else(|| ApiError::other("GetCallerIdentity returned no account"))
            })
            .await
            .cloned()
    }
}

/// The SDK configuration of the source account: from the environment, with standard retries
/// (exponential backoff with jitter, throttling included) unless `AWS_MAX_ATTEMPTS` or
/// `AWS_RETRY_MODE` say otherwise. Does no network I/O.
pub async fn base_config() -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if std::env::var_os("AWS_MAX_ATTEMPTS").is_none()
        && std::env::var_os("AWS_RETRY_MODE").is_none()
    {
        loader = loader.retry_config(
            RetryConfig::standard()
                .with_max_attempts(8)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(10)),
        );
    }
    loader.load().await
}

/// The configuration for the destination (bucket and key): another region and, with a role,
/// another account. Credentials are fetched by STS lazily, on the first S3 or KMS call.
pub async fn destination_config(
    base: &SdkConfig,
    region: Option<&str>,
    role_arn: Option<&str>,
    external_id: Option<&str>,
) -> SdkConfig {
    let mut builder = base.to_builder();
    if let Some(r) = region {
        builder = builder.region(Region::new(r.to_string()));
    }
    if let Some(role) = role_arn {
        let mut provider = AssumeRoleProvider::builder(role)
            .session_name("secrets-backup")
            .configure(base);
        if let Some(id) = external_id {
            provider = provider.external_id(id);
        }
        let provider = provider.build().await;
        builder = builder.credentials_provider(SharedCredentialsProvider::new(provider));
    }
    builder.build()
}

/// Path-style S3 addressing: for emulators and custom endpoints (`AWS_ENDPOINT_URL[_S3]`), or
/// when `BACKUP_S3_FORCE_PATH_STYLE` is true.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let truthy = |k: &str| {
        std::env::var(k)
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "y"
                )
            })
            .unwrap_or(false)
    };
    let custom = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let path_style = truthy("BACKUP_S3_FORCE_PATH_STYLE") || custom;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build(),
    )
}

/// Everything the function and the CLI talk to, built once.
pub struct AwsPorts {
    pub secrets: AwsSecrets,
    pub store: S3Store,
    pub keys: KmsKeys,
    pub identity: StsIdentity,
    pub source_region: String,
    pub destination_region: String,
}

impl AwsPorts {
    pub async fn new(
        base: &SdkConfig,
        bucket: &str,
        destination_region: Option<&str>,
        role_arn: Option<&str>,
        external_id: Option<&str>,
        kms_key_id: Option<&str>,
        s3_kms_key_id: Option<&str>,
    ) -> Self {
        let dest = destination_config(base, destination_region, role_arn, external_id).await;
        let source_region = base
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let destination_region = dest
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| source_region.clone());
        AwsPorts {
            secrets: AwsSecrets::new(aws_sdk_secretsmanager::Client::new(base)),
            store: S3Store::new(
                s3_client(&dest),
                bucket.to_string(),
                s3_kms_key_id.or(kms_key_id).map(String::from),
            ),
            keys: KmsKeys::new(
                aws_sdk_kms::Client::new(&dest),
                kms_key_id.map(String::from),
            ),
            identity: StsIdentity::new(aws_sdk_sts::Client::new(base)),
            source_region,
            destination_region,
        }
    }
}
