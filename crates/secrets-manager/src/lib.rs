//! [`SecretStore`] over `aws-sdk-secretsmanager`.
//!
//! One client, built once in the Lambda's `main`; every call reads an explicit version and stage.
//! [`rds::RdsTopology`] is the alternating-users strategy's RDS look-ups over `aws-sdk-rds`.
//! Each Secrets Manager call sits between the fail points `sm.<call>.before` and
//! `sm.<call>.after` (`crates/failpoints`; nothing in a release build).

pub mod rds;

pub use rds::RdsTopology;

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::Client;
use rotation::{
    SecretMetadata, SecretStore, SecretsManager, Service, ServiceError, StoreError, VersionEntry,
    AWSPENDING,
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

    /// `GetSecretValue` for `stage` and/or `version_id` (at least one given): the
    /// `SecretString`, or `None` on `ResourceNotFoundException` when `missing_is_none`.
    async fn read_string(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
        stage: Option<&str>,
        missing_is_none: bool,
    ) -> Result<Option<String>, StoreError> {
        let result = failpoints::around!(
            "sm.get_secret_value",
            self.client
                .get_secret_value()
                .secret_id(secret_id)
                .set_version_id(version_id.map(str::to_string))
                .set_version_stage(stage.map(str::to_string))
                .send()
                .await
        );
        match result {
            Ok(out) => match out.secret_string() {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(StoreError::new(
                    "GetSecretValue",
                    None,
                    format!(
                        "the {} version has no SecretString (binary secrets cannot be rotated)",
                        stage.or(version_id).unwrap_or_default()
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
        R: std::fmt::Debug + 'static,
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
        let out = failpoints::around!(
            "sm.describe_secret",
            self.client
                .describe_secret()
                .secret_id(secret_id)
                .send()
                .await
        )
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
        self.read_string(secret_id, Some(version_id), Some(stage), true)
            .await
    }

    async fn get_stage_value(
        &self,
        secret_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        // Not found here means the secret is missing (or unreadable): say so, from the service.
        self.read_string(secret_id, None, Some(stage), false).await
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionEntry>, StoreError> {
        // IncludeDeprecated: the versions without a label are the point of the call.
        let mut pages = self
            .client
            .list_secret_version_ids()
            .secret_id(secret_id)
            .include_deprecated(true)
            .max_results(100)
            .into_paginator()
            .send();
        let mut listed = Vec::new();
        while let Some(page) = failpoints::around!("sm.list_secret_version_ids", pages.next().await)
        {
            let page = page.map_err(|e| SecretsManager::sdk_error("ListSecretVersionIds", e))?;
            listed.extend(page.versions().iter().cloned());
        }
        Ok(newest_first(listed))
    }

    async fn get_version_value(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Option<String>, StoreError> {
        self.read_string(secret_id, Some(version_id), None, true)
            .await
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        secret_string: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        failpoints::around!(
            "sm.put_secret_value",
            self.client
                .put_secret_value()
                .secret_id(secret_id)
                .client_request_token(token)
                .secret_string(secret_string)
                .version_stages(AWSPENDING)
                .set_rotation_token(rotation_token.map(str::to_string))
                .send()
                .await
        )
        .map_err(|e| SecretsManager::sdk_error("PutSecretValue", e))?;
        Ok(())
    }

    async fn move_current(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), StoreError> {
        failpoints::around!(
            "sm.update_secret_version_stage",
            self.client
                .update_secret_version_stage()
                .secret_id(secret_id)
                .version_stage(rotation::AWSCURRENT)
                .move_to_version_id(to_version)
                .set_remove_from_version_id(from_version.map(str::to_string))
                .send()
                .await
        )
        .map_err(|e| SecretsManager::sdk_error("UpdateSecretVersionStage", e))?;
        Ok(())
    }
}

/// The listed versions, newest first by `CreatedDate`. Versions with the same date (or none) keep
/// the reverse of the order they were listed in: the later listed counts as the newer, which is
/// creation order where the service lists oldest first. (moto, the emulator the tests use, lists
/// in creation order and reports the time of the call as every version's `CreatedDate`, so there
/// the order falls to the listing alone; Secrets Manager's dates have sub-second precision.)
fn newest_first(
    listed: Vec<aws_sdk_secretsmanager::types::SecretVersionsListEntry>,
) -> Vec<VersionEntry> {
    let mut indexed: Vec<_> = listed.into_iter().enumerate().collect();
    indexed.sort_by(|(ia, a), (ib, b)| {
        let date = |v: &aws_sdk_secretsmanager::types::SecretVersionsListEntry| {
            v.created_date().map(|d| (d.secs(), d.subsec_nanos()))
        };
        date(b).cmp(&date(a)).then(ib.cmp(ia))
    });
    indexed
        .into_iter()
        .filter_map(|(_, v)| {
            Some(VersionEntry {
                id: v.version_id()?.to_string(),
                stages: v.version_stages().to_vec(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::newest_first;
    use aws_sdk_secretsmanager::primitives::DateTime;
    use aws_sdk_secretsmanager::types::SecretVersionsListEntry;

    fn entry(id: &str, secs: i64, stages: &[&str]) -> SecretVersionsListEntry {
        SecretVersionsListEntry::builder()
            .version_id(id)
            .created_date(DateTime::from_secs(secs))
            .set_version_stages(Some(stages.iter().map(|s| s.to_string()).collect()))
            .build()
    }

    #[test]
    fn versions_come_newest_first_by_date_then_by_listing_order() {
        let ids = |listed| {
            newest_first(listed)
                .into_iter()
                .map(|v| v.id)
                .collect::<Vec<_>>()
        };
        // Dates decide, whatever the listing order.
        assert_eq!(
            ids(vec![
                entry("b", 20, &[]),
                entry("c", 30, &["AWSPENDING"]),
                entry("a", 10, &["AWSCURRENT"]),
            ]),
            ["c", "b", "a"]
        );
        // Equal dates (moto): the later listed is the newer.
        assert_eq!(
            ids(vec![
                entry("a", 10, &["AWSCURRENT"]),
                entry("b", 10, &[]),
                entry("c", 10, &["AWSPENDING"]),
            ]),
            ["c", "b", "a"]
        );
        let stages = newest_first(vec![entry("a", 10, &["AWSCURRENT"]), entry("b", 10, &[])]);
        assert!(stages[0].stages.is_empty());
        assert_eq!(stages[1].stages, ["AWSCURRENT"]);
    }
}
