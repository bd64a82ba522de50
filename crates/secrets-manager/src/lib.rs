//! [`SecretStore`] over `aws-sdk-secretsmanager`.
//!
//! One client, built once in the Lambda's `main`; every call reads an explicit version and stage.
//! [`rds::RdsTopology`] is the alternating-users strategy's RDS look-ups over `aws-sdk-rds`.

pub mod rds;

pub use rds::RdsTopology;

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::Client;
use rotation::{
    SecretMetadata, SecretStore, SecretsManager, Service, ServiceError, StoreError, AWSPENDING,
};

/// The Secrets Manager service as a [`SecretStore`].
#[derive(Debug, Clone)]
pub struct SecretsManagerStore {
    client: Client,
}

impl SecretsManagerStore {
    /// A store over `client` (endpoint and credentials as the client was built).
    pub fn new(client: Client) -> Self {
        SecretsManagerStore { client }
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `GetSecretValue` for `stage` (and `version_id` when given): the `SecretString`, or `None`
    /// on `ResourceNotFoundException` when `missing_is_none`.
    async fn read_string(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: &str,
        missing_is_none: bool,
    ) -> Result<Option<String>, StoreError> {
        let result = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_id(version_id.map(str::to_string))
            .version_stage(stage)
            .send()
            .await;
        match result {
            Ok(out) => match out.secret_string() {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(StoreError::new(
                    "GetSecretValue",
                    None,
                    format!(
                        "the {stage} version has no SecretString (binary secrets cannot be rotated)"
                    ),
                )),
            },
            Err(e) if missing_is_none && e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(SecretsManager::sdk_error("GetSecretValue", e)),
        }
    }
}

/// Converts an SDK error into the port's [`ServiceError`] with the service's code and message
/// (which never contain secret values), or the transport failure's description; the one mapping
/// for both services of this crate (`SecretsManager::sdk_error(..)`, `Rds::sdk_error(..)`).
pub trait FromSdkError: Service {
    /// The error of `operation` that failed with `err`.
    fn sdk_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> ServiceError<Self>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let lambda_support::SdkErrorText { code, message } =
            lambda_support::describe_sdk_error(&err);
        ServiceError::new(operation, code, message)
    }
}

impl<S: Service> FromSdkError for S {}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretMetadata, StoreError> {
        let out = self
            .client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| SecretsManager::sdk_error("DescribeSecret", e))?;
        Ok(SecretMetadata {
            arn: out.arn().unwrap_or(secret_id).to_string(),
            name: out.name().unwrap_or_default().to_string(),
            rotation_enabled: out.rotation_enabled(),
            tags: out
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_string(),
                        t.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect(),
            rotation_lambda_arn: out.rotation_lambda_arn().map(str::to_string),
            kms_key_id: out.kms_key_id().map(str::to_string),
            versions: out
                .version_ids_to_stages()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        })
    }

    async fn get_value(
        &self,
        secret_id: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        // A version that does not exist (or has no value yet) is an answer, not a failure.
        self.read_string(secret_id, Some(version_id), stage, true)
            .await
    }

    async fn get_stage_value(
        &self,
        secret_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        // Not found here means the secret is missing (or unreadable): say so, from the service.
        self.read_string(secret_id, None, stage, false).await
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        secret_string: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(token)
            .secret_string(secret_string)
            .version_stages(AWSPENDING)
            .set_rotation_token(rotation_token.map(str::to_string))
            .send()
            .await
            .map_err(|e| SecretsManager::sdk_error("PutSecretValue", e))?;
        Ok(())
    }

    async fn move_current(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), StoreError> {
        self.client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(rotation::AWSCURRENT)
            .move_to_version_id(to_version)
            .set_remove_from_version_id(from_version.map(str::to_string))
            .send()
            .await
            .map_err(|e| SecretsManager::sdk_error("UpdateSecretVersionStage", e))?;
        Ok(())
    }
}
