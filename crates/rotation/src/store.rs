//! `SecretStore`: the few Secrets Manager operations rotation needs.

use async_trait::async_trait;
use std::collections::BTreeMap;

/// The staging label of the version in use.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The staging label of the version a rotation is creating.
pub const AWSPENDING: &str = "AWSPENDING";
/// The staging label of the version AWSCURRENT replaced.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// What `DescribeSecret` tells rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMetadata {
    /// The secret's ARN.
    pub arn: String,
    /// The secret's name.
    pub name: String,
    /// `None` when Secrets Manager did not say (tolerated, as in the templates).
    pub rotation_enabled: Option<bool>,
    /// Version id → staging labels.
    pub versions: BTreeMap<String, Vec<String>>,
    /// Tags (key, value), e.g. RDS's `aws:rds:primaryDBInstanceArn` on a managed master secret.
    pub tags: Vec<(String, String)>,
    /// `RotationLambdaARN`: the function rotation invokes, when one is attached.
    pub rotation_lambda_arn: Option<String>,
    /// `KmsKeyId`: the customer managed key that encrypts the secret (`None`: `aws/secretsmanager`).
    pub kms_key_id: Option<String>,
}

impl SecretMetadata {
    /// The version that carries `stage`, if any.
    pub fn version_with(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }

    /// The labels of `version_id`, if it is a version of the secret.
    pub fn stages_of(&self, version_id: &str) -> Option<&[String]> {
        self.versions.get(version_id).map(Vec::as_slice)
    }

    /// Whether `version_id` carries `stage`.
    pub fn has_stage(&self, version_id: &str, stage: &str) -> bool {
        self.stages_of(version_id)
            .is_some_and(|stages| stages.iter().any(|s| s == stage))
    }
}

/// One version of a secret as `ListSecretVersionIds` reports it (no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionEntry {
    /// The version id.
    pub id: String,
    /// Its staging labels (empty: an unlabelled version, which Secrets Manager may delete).
    pub stages: Vec<String>,
}

/// How many unlabelled versions newer than AWSCURRENT single user's setSecret tries, newest
/// first, when AWSCURRENT and AWSPREVIOUS do not log in (see [`unlabelled_newer_than_current`]).
pub const UNLABELLED_VERSIONS_TRIED: usize = 5;

/// The ids of the versions without a label that are newer than AWSCURRENT, newest first, at
/// most `limit`. `versions` is newest first ([`SecretStore::list_versions`]). Such a version is
/// what an abandoned rotation leaves when its AWSPENDING label was removed after setSecret had
/// changed the password: it may hold the only password that still logs in. Empty when no
/// version carries AWSCURRENT.
pub fn unlabelled_newer_than_current(versions: &[VersionEntry], limit: usize) -> Vec<&str> {
    let Some(current) = versions
        .iter()
        .position(|v| v.stages.iter().any(|s| s == AWSCURRENT))
    else {
        return Vec::new();
    };
    versions[..current]
        .iter()
        .filter(|v| v.stages.is_empty())
        .take(limit)
        .map(|v| v.id.as_str())
        .collect()
}

/// A failed Secrets Manager call.
pub type StoreError = crate::service::ServiceError<crate::service::SecretsManager>;

/// The Secrets Manager operations used by the rotation steps.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// `DescribeSecret`.
    async fn describe(&self, secret_id: &str) -> Result<SecretMetadata, StoreError>;

    /// `GetSecretValue(VersionId, VersionStage)`: the `SecretString` of that version. `Ok(None)`
    /// when the version does not exist or has no value yet (Secrets Manager's
    /// `ResourceNotFoundException`). Always reads an explicit version and stage.
    async fn get_value(
        &self,
        secret_id: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError>;

    /// `GetSecretValue(VersionStage = stage)` of another secret (the master secret of the
    /// alternating-users strategy), whose version ids the caller does not know. `Ok(None)` when
    /// no version carries the stage. The default describes the secret first (two calls);
    /// implementations should make it one.
    async fn get_stage_value(
        &self,
        secret_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        let meta = self.describe(secret_id).await?;
        match meta.version_with(stage) {
            Some(version) => self.get_value(&meta.arn, version, stage).await,
            None => Ok(None),
        }
    }

    /// `ListSecretVersionIds(IncludeDeprecated = true)`: every version of the secret, labelled or
    /// not, **newest first** (by creation date). Used only when no labelled version logs in
    /// (single user's setSecret, preflight). The default answers that this store cannot list
    /// versions (a store that serves only the normal path, such as a test double).
    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionEntry>, StoreError> {
        let _ = secret_id;
        Err(StoreError::new(
            "ListSecretVersionIds",
            None,
            "this store cannot list versions",
        ))
    }

    /// `GetSecretValue(VersionId)` without a stage: the `SecretString` of a version that carries
    /// no label. `Ok(None)` when the version does not exist (or has no value). The default
    /// answers that this store cannot read unlabelled versions.
    async fn get_version_value(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let _ = (secret_id, version_id);
        Err(StoreError::new(
            "GetSecretValue",
            None,
            "this store cannot read unlabelled versions",
        ))
    }

    /// `PutSecretValue(ClientRequestToken = token, VersionStages = [AWSPENDING])`, passing
    /// `RotationToken` on when the event carried one.
    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        secret_string: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError>;

    /// `UpdateSecretVersionStage(AWSCURRENT, MoveToVersionId = to, RemoveFromVersionId = from)`.
    /// Secrets Manager moves AWSPREVIOUS to `from` itself.
    async fn move_current(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), StoreError>;
}

/// A shared store is a store: the Lambda crate hands one client to the rotator and the preflight.
#[async_trait]
impl<S: SecretStore + ?Sized> SecretStore for std::sync::Arc<S> {
    async fn describe(&self, secret_id: &str) -> Result<SecretMetadata, StoreError> {
        (**self).describe(secret_id).await
    }

    async fn get_value(
        &self,
        secret_id: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        (**self).get_value(secret_id, version_id, stage).await
    }

    async fn get_stage_value(
        &self,
        secret_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        (**self).get_stage_value(secret_id, stage).await
    }

    async fn list_versions(&self, secret_id: &str) -> Result<Vec<VersionEntry>, StoreError> {
        (**self).list_versions(secret_id).await
    }

    async fn get_version_value(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Option<String>, StoreError> {
        (**self).get_version_value(secret_id, version_id).await
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        secret_string: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        (**self)
            .put_pending(secret_id, token, secret_string, rotation_token)
            .await
    }

    async fn move_current(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), StoreError> {
        (**self)
            .move_current(secret_id, to_version, from_version)
            .await
    }
}
