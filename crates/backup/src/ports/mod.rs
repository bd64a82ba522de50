//! One small trait per AWS dependency. The library is written against these; [`aws`] implements
//! them over the SDK and [`fakes`] (cargo feature `testing`) in memory, one file per port.

pub mod aws;
#[cfg(any(test, feature = "testing"))]
pub mod fakes;
pub mod limited;

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use zeroize::Zeroizing;

use crate::domain::model::{
    Described, Replica, Rotation, SecretMeta, SecretValue, SourceKind, Tag, VersionValue,
};

/// An AWS call that failed. `message` is the service's error code and message: Secrets Manager,
/// S3 and KMS never put a secret value in those.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ApiError {
    /// What the caller may act on.
    pub kind: ErrorKind,
    /// The operation, error code and message.
    pub message: String,
}

/// The failures callers treat differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The secret, object or key does not exist.
    NotFound,
    /// S3 `If-None-Match: *` found an object already there.
    AlreadyExists,
    /// KMS could not decrypt (wrong key, wrong encryption context or damaged ciphertext).
    InvalidCiphertext,
    /// KMS `Verify`: the signature does not verify with that key.
    InvalidSignature,
    /// The service throttled the call (`ThrottlingException`, `TooManyRequestsException`,
    /// `SlowDown`, …) after the SDK's own retries.
    Throttled,
    /// Anything else.
    Other,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    /// An error of kind [`ErrorKind::Other`].
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// Whether the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

/// A secret as ListSecrets returns it: everything DescribeSecret would say (name, ARN, tags,
/// KMS key, rotation, owning service, primary region, replication, dates) and its labelled
/// versions (`SecretVersionsToStages`), so the backup needs no DescribeSecret per secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedSecret {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Its tags as listed.
    pub tags: Vec<Tag>,
    /// Its metadata (no resource policy: ListSecrets does not return it) and the versions that
    /// carry a label, sorted by version id.
    pub described: Described,
}

/// One page of ListSecrets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The secrets on the page.
    pub secrets: Vec<ListedSecret>,
    /// The token of the next page (`None`: this was the last).
    pub next_token: Option<String>,
}

/// One secret's answer in a BatchGetSecretValue call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchValue {
    /// The secret id as asked (its ARN).
    pub id: String,
    /// The `AWSCURRENT` version's id and value, or the per-secret error (`Errors` in the
    /// answer).
    pub result: Result<(String, VersionValue), ApiError>,
}

/// The most secrets one BatchGetSecretValue call takes by id (`SecretIdList`: 1–20).
pub const BATCH_GET_MAX: usize = 20;

/// Everything needed to create a secret again.
#[derive(Clone, Debug)]
pub struct NewSecret<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its description.
    pub description: Option<&'a str>,
    /// Its KMS key (`None`: the account's default key).
    pub kms_key_id: Option<&'a str>,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Becomes the version id of the first version.
    pub client_request_token: &'a str,
    /// The value of the first version (labelled `AWSCURRENT`).
    pub value: &'a SecretValue,
    /// Regions to replicate it to (`AddReplicaRegions`), with their KMS keys.
    pub replica_regions: Vec<Replica>,
}

/// Secrets Manager.
#[async_trait]
pub trait SecretsApi: Send + Sync {
    /// The service behind this port, stamped on every record read through it.
    fn source(&self) -> SourceKind {
        SourceKind::SecretsManager
    }
    /// One page of ListSecrets (not those scheduled for deletion), from `token` (`None`: the
    /// first page), at most `page_size` secrets, optionally narrowed server-side by
    /// case-insensitive name prefixes; callers apply the exact filters.
    async fn list_page(
        &self,
        name_prefixes: &[String],
        page_size: i32,
        token: Option<String>,
    ) -> Result<ListPage, ApiError>;
    /// Every secret, page after page (100 a page); the stream ends after an error.
    fn list<'a>(
        &'a self,
        name_prefixes: &'a [String],
    ) -> BoxStream<'a, Result<ListedSecret, ApiError>> {
        futures::stream::unfold(Some(None::<String>), move |state| async move {
            let token = state?;
            match self.list_page(name_prefixes, 100, token).await {
                Ok(page) => {
                    let next = page.next_token.map(Some);
                    let items: Vec<_> = page.secrets.into_iter().map(Ok).collect();
                    Some((futures::stream::iter(items), next))
                }
                Err(e) => Some((futures::stream::iter(vec![Err(e)]), None)),
            }
        })
        .flatten()
        .boxed()
    }
    /// BatchGetSecretValue by id (at most [`BATCH_GET_MAX`]): each secret's `AWSCURRENT`
    /// version id, value and creation date. An `Err` is a failure of the whole call.
    async fn batch_current(&self, ids: &[String]) -> Result<Vec<BatchValue>, ApiError>;
    /// `Ok(None)` when the secret does not exist.
    async fn describe(&self, id: &str) -> Result<Option<Described>, ApiError>;
    /// The resource policy, `Ok(None)` when there is none.
    async fn resource_policy(&self, id: &str) -> Result<Option<String>, ApiError>;
    /// Always by explicit version id (see DESIGN.md: the emulator can return a stale value
    /// otherwise, and ids make a snapshot consistent with the labels DescribeSecret returned).
    async fn get_value(&self, id: &str, version_id: &str) -> Result<SecretValue, ApiError>;
    /// Like [`get_value`](Self::get_value), with the version's creation date when the service
    /// reports it (GetSecretValue's `CreatedDate`).
    async fn get_version(&self, id: &str, version_id: &str) -> Result<VersionValue, ApiError> {
        Ok(VersionValue {
            value: self.get_value(id, version_id).await?,
            created: None,
        })
    }

    /// CreateSecret; returns the new secret's ARN.
    async fn create(&self, secret: NewSecret<'_>) -> Result<String, ApiError>;
    /// Adds a version; returns its id. `token` becomes the version id when given.
    async fn put_value(
        &self,
        id: &str,
        value: &SecretValue,
        labels: &[String],
        token: Option<&str>,
    ) -> Result<String, ApiError>;
    /// UpdateSecretVersionStage: move `label` to `to_version` (from `from_version`, if given).
    async fn move_label(
        &self,
        id: &str,
        label: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), ApiError>;
    /// UpdateSecret for metadata only (never a value). `None` leaves a field alone; an empty
    /// description clears it.
    async fn update_metadata(
        &self,
        id: &str,
        description: Option<&str>,
        kms_key_id: Option<&str>,
    ) -> Result<(), ApiError>;
    /// TagResource: set these tags.
    async fn tag(&self, id: &str, tags: &[Tag]) -> Result<(), ApiError>;
    /// UntagResource: remove these tag keys.
    async fn untag(&self, id: &str, keys: &[String]) -> Result<(), ApiError>;
    /// PutResourcePolicy, always with `BlockPublicPolicy` (a policy that grants broad access is
    /// refused by the service).
    async fn put_resource_policy(&self, id: &str, policy: &str) -> Result<(), ApiError>;
    /// DeleteResourcePolicy.
    async fn delete_resource_policy(&self, id: &str) -> Result<(), ApiError>;
    /// Cancel a scheduled deletion.
    async fn cancel_deletion(&self, id: &str) -> Result<(), ApiError>;
    /// RotateSecret with the rotation function and rules of `rotation`, without rotating now
    /// (`RotateImmediately=false`: the service only tests the configuration).
    async fn configure_rotation(&self, id: &str, rotation: &Rotation) -> Result<(), ApiError>;
}

/// Parameter Store: the [`SecretsApi`] reads (its `list_page` takes the configured paths in
/// place of name prefixes; see `aws/parameters.rs`), label moves (LabelParameterVersion) and
/// tags, and the one write Secrets Manager has no counterpart for.
#[async_trait]
pub trait ParametersApi: SecretsApi {
    /// PutParameter: `value` as a new version of the parameter `meta` describes, with its type,
    /// KMS key (SecureString), tier, data type, description and policies; `overwrite` when it
    /// exists (tags are set only on creation, otherwise with [`SecretsApi::tag`]). Returns the
    /// new version.
    async fn put_parameter(
        &self,
        meta: &SecretMeta,
        value: &SecretValue,
        overwrite: bool,
    ) -> Result<String, ApiError>;
}

/// What to upload.
#[derive(Debug)]
pub enum Body {
    /// Bytes in memory (a part).
    Bytes(Vec<u8>),
    /// A local file, streamed (used for the manifest, which grows with the number of secrets).
    File(PathBuf),
}

/// An object as read, with the version id S3 reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedObject {
    /// The content.
    pub data: Vec<u8>,
    /// The object's version id (`None` on an unversioned bucket).
    pub version_id: Option<String>,
}

/// The snapshot bucket (S3).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Write a new object; fails with [`ErrorKind::AlreadyExists`] rather than overwrite.
    /// Returns the version id S3 gave the object (`None` on an unversioned bucket).
    async fn put_new(
        &self,
        key: &str,
        body: Body,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<Option<String>, ApiError>;
    /// `Ok(None)` when missing. Errors when the object is larger than `max_len`.
    async fn get(&self, key: &str, max_len: u64) -> Result<Option<Vec<u8>>, ApiError> {
        Ok(self.get_versioned(key, max_len).await?.map(|o| o.data))
    }
    /// Like [`get`](Self::get), with the version id S3 reports for the object read (`None` on
    /// an unversioned bucket).
    async fn get_versioned(
        &self,
        key: &str,
        max_len: u64,
    ) -> Result<Option<VersionedObject>, ApiError>;
    /// User metadata of an object, `Ok(None)` when missing.
    async fn head(&self, key: &str) -> Result<Option<HashMap<String, String>>, ApiError>;
    /// "Folders" directly under `prefix` (which ends in `/`), as full key prefixes.
    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, ApiError>;
}

/// Writes a new object as [`ObjectStore::put_new`] does, and takes its
/// [`ErrorKind::AlreadyExists`] for success when the object already there has exactly the bytes
/// written: the SDK retried a write that had landed (its answer lost or too late), and
/// `If-None-Match: *` refused the retry. Every object the backup writes is new and unique (parts
/// are sealed under fresh data keys and nonces), so equal bytes are this write's. Anything else
/// at the key stays an error. Returns the version id of the object written.
pub async fn put_new_once(
    store: &dyn ObjectStore,
    key: &str,
    body: Body,
    content_type: &str,
    metadata: &[(&str, String)],
) -> Result<Option<String>, ApiError> {
    use sha2::{Digest, Sha256};
    let sent = match &body {
        Body::Bytes(bytes) => Ok((Sha256::digest(bytes), bytes.len() as u64)),
        Body::File(path) => Err(path.clone()),
    };
    let error = match store.put_new(key, body, content_type, metadata).await {
        Err(e) if e.kind == ErrorKind::AlreadyExists => e,
        other => return other,
    };
    let (digest, len) = match sent {
        Ok(sent) => sent,
        Err(path) => match std::fs::read(&path) {
            Ok(bytes) => (Sha256::digest(&bytes), bytes.len() as u64),
            Err(_) => return Err(error),
        },
    };
    match store.get_versioned(key, len).await {
        Ok(Some(found))
            if found.data.len() as u64 == len && Sha256::digest(&found.data) == digest =>
        {
            tracing::info!(
                key,
                "a retried write found its own object: the first attempt had landed"
            );
            Ok(found.version_id)
        }
        _ => Err(error),
    }
}

/// A data key from KMS GenerateDataKey.
pub struct DataKey {
    /// The key itself (zeroed on drop).
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The key encrypted under the KMS key, stored in the part's header.
    pub wrapped: Vec<u8>,
    /// ARN of the KMS key that wrapped it.
    pub key_id: String,
}

/// KMS.
#[async_trait]
pub trait KeyService: Send + Sync {
    /// GenerateDataKey (AES-256) under the encryption context.
    async fn generate_data_key(&self, context: &[(&str, &str)]) -> Result<DataKey, ApiError>;
    /// Decrypt a wrapped data key under the encryption context it was made with, naming the key
    /// (`KeyId`) that must have wrapped it: KMS refuses a ciphertext of any other key.
    async fn decrypt(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &[(&str, &str)],
    ) -> Result<Zeroizing<Vec<u8>>, ApiError>;
    /// Sign a SHA-256 digest with the asymmetric key `key_id` (`Sign`, ECDSA_SHA_256,
    /// MessageType DIGEST); returns the DER signature.
    async fn sign(&self, key_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, ApiError>;
    /// Whether `signature` is `key_id`'s signature of the SHA-256 `digest` (`Verify`). A
    /// signature that does not verify is `Ok(false)`, not an error.
    async fn verify(
        &self,
        key_id: &str,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<bool, ApiError>;
}

/// STS: which account the source credentials belong to.
#[async_trait]
pub trait Identity: Send + Sync {
    /// The account id.
    async fn account_id(&self) -> Result<String, ApiError>;
}

/// Another account or region to back up (a hub's spoke): its Secrets Manager, reached through
/// the spoke's read-only role when the account is not the function's own.
pub struct OpenedSource {
    /// Secrets Manager of the source, rate-limited like the function's own.
    pub secrets: std::sync::Arc<dyn SecretsApi>,
    /// Parameter Store of the source, rate-limited like the function's own (called only with
    /// parameter paths).
    pub parameters: std::sync::Arc<dyn ParametersApi>,
    /// The account the source's credentials belong to (STS GetCallerIdentity with them).
    pub account: String,
}

/// A hub's way to its sources (`crates/backup/src/ports/aws/spokes.rs`).
#[async_trait]
pub trait SourceAccess: Send + Sync {
    /// Opens `source`; `own_account` is the function's account (no role is assumed there).
    async fn open(
        &self,
        source: &crate::domain::sources::SourceRef,
        own_account: &str,
    ) -> Result<OpenedSource, ApiError>;

    /// The active accounts of the organization (Organizations ListAccounts, every page).
    async fn organization_accounts(&self) -> Result<Vec<String>, ApiError>;
}

/// The ports an operation uses: backup writes through them, verify and restore read (and restore
/// writes secrets) through them.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// Secrets Manager.
    pub secrets: &'a dyn SecretsApi,
    /// Parameter Store (called only when parameter paths are configured, or a snapshot holds
    /// parameters).
    pub parameters: &'a dyn ParametersApi,
    /// The snapshot bucket.
    pub store: &'a dyn ObjectStore,
    /// KMS.
    pub keys: &'a dyn KeyService,
}

impl<'a> Ports<'a> {
    /// The port of the service a record came from: the one place that dispatches on
    /// [`SourceKind`] (a second source adds its port here).
    pub fn secrets_of(&self, kind: SourceKind) -> &'a dyn SecretsApi {
        match kind {
            SourceKind::SecretsManager => self.secrets,
            SourceKind::ParameterStore => self.parameters,
        }
    }
}

/// A KMS key as DescribeKey reports it (metadata only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDescription {
    /// The key's ARN.
    pub arn: String,
    /// Its state (`Enabled`, `Disabled`, `PendingDeletion`, `PendingImport`, `Unavailable`, …).
    pub state: String,
    /// `AWS` for an AWS managed key (such as `aws/secretsmanager`), `CUSTOMER` otherwise.
    pub manager: Option<String>,
}

/// KMS DescribeKey on the keys of the secrets (the source account and region): what the report
/// says about each secret's key.
#[async_trait]
pub trait KeyDirectory: Send + Sync {
    /// DescribeKey of `key_id` (a key id, key ARN, alias name or alias ARN).
    async fn describe_key(&self, key_id: &str) -> Result<KeyDescription, ApiError>;
}

/// One log event: when it was logged, and its message as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEvent {
    /// The event's timestamp.
    pub time: chrono::DateTime<chrono::Utc>,
    /// The line the function wrote.
    pub message: String,
}

/// Where the restore drill's results are: its log group, in which each run writes one
/// `verify summary` line (`crate::lambda::summary::VerifySummary`). The drill writes nothing
/// else (its role cannot write an object), so this is its record.
#[async_trait]
pub trait DrillLog: Send + Sync {
    /// The drill's `verify summary` lines logged since `since`, oldest first.
    async fn summaries(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<LoggedEvent>, ApiError>;
}

#[cfg(test)]
mod put_new_once_tests {
    use super::*;
    use crate::ports::fakes::FakeStore;

    #[tokio::test]
    async fn a_retried_write_that_had_landed_succeeds_and_anything_else_stays_refused() {
        let store = FakeStore::default();
        let part = b"sealed part".to_vec();
        let first = put_new_once(&store, "p/1", Body::Bytes(part.clone()), "x", &[])
            .await
            .unwrap();
        assert!(first.is_some());
        // The SDK's retry after a lost answer: the same bytes, refused by If-None-Match, ours.
        let again = put_new_once(&store, "p/1", Body::Bytes(part.clone()), "x", &[])
            .await
            .unwrap();
        assert_eq!(again, first, "the version the first attempt wrote");
        // Other bytes at the key: not ours, still refused.
        let err = put_new_once(&store, "p/1", Body::Bytes(b"other".to_vec()), "x", &[])
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err:?}");
        // A file body (the manifest), compared by content.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        std::fs::write(&path, b"{\"m\":1}").unwrap();
        let first = put_new_once(&store, "p/m", Body::File(path.clone()), "x", &[])
            .await
            .unwrap();
        let again = put_new_once(&store, "p/m", Body::File(path.clone()), "x", &[])
            .await
            .unwrap();
        assert_eq!(again, first);
        std::fs::write(&path, b"{\"m\":2}").unwrap();
        let err = put_new_once(&store, "p/m", Body::File(path), "x", &[])
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::AlreadyExists);
    }
}
