//! One small trait per AWS dependency. The library is written against these; `aws` implements
//! them over the SDK and the unit tests use in-memory fakes.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use futures::stream::BoxStream;
use zeroize::Zeroizing;

use crate::model::{Described, SecretValue, Tag};

/// An AWS call that failed. `message` is the service's error code and message: Secrets Manager,
/// S3 and KMS never put a secret value in those.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    /// S3 `If-None-Match: *` found an object already there.
    AlreadyExists,
    /// KMS could not decrypt (wrong key, wrong encryption context or damaged ciphertext).
    InvalidCiphertext,
    Other,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }
}

/// A secret as ListSecrets returns it: enough to apply filters before reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedSecret {
    pub name: String,
    pub arn: String,
    pub tags: Vec<Tag>,
}

/// Everything needed to create a secret again.
#[derive(Clone, Debug)]
pub struct NewSecret<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub kms_key_id: Option<&'a str>,
    pub tags: Vec<Tag>,
    /// Becomes the version id of the first version.
    pub client_request_token: &'a str,
    pub value: &'a SecretValue,
}

/// Secrets Manager.
#[async_trait]
pub trait SecretsApi: Send + Sync {
    /// Secrets (not those scheduled for deletion), optionally narrowed server-side by
    /// case-insensitive name prefixes; callers apply the exact filters.
    fn list<'a>(
        &'a self,
        name_prefixes: &'a [String],
    ) -> BoxStream<'a, Result<ListedSecret, ApiError>>;
    /// `Ok(None)` when the secret does not exist.
    async fn describe(&self, id: &str) -> Result<Option<Described>, ApiError>;
    async fn resource_policy(&self, id: &str) -> Result<Option<String>, ApiError>;
    /// Always by explicit version id (see DESIGN.md: the emulator can return a stale value
    /// otherwise, and ids make a snapshot consistent with the labels DescribeSecret returned).
    async fn get_value(&self, id: &str, version_id: &str) -> Result<SecretValue, ApiError>;

    async fn create(&self, secret: NewSecret<'_>) -> Result<String, ApiError>;
    /// Adds a version; returns its id. `token` becomes the version id when given.
    async fn put_value(
        &self,
        id: &str,
        value: &SecretValue,
        labels: &[String],
        token: Option<&str>,
    ) -> Result<String, ApiError>;
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
    async fn tag(&self, id: &str, tags: &[Tag]) -> Result<(), ApiError>;
    async fn untag(&self, id: &str, keys: &[String]) -> Result<(), ApiError>;
    async fn put_resource_policy(&self, id: &str, policy: &str) -> Result<(), ApiError>;
    async fn delete_resource_policy(&self, id: &str) -> Result<(), ApiError>;
    /// Cancel a scheduled deletion.
    async fn cancel_deletion(&self, id: &str) -> Result<(), ApiError>;
}

/// What to upload.
#[derive(Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// A local file, streamed (used for the manifest, which grows with the number of secrets).
    File(PathBuf),
}

/// The snapshot bucket (S3).
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Write a new object; fails with [`ErrorKind::AlreadyExists`] rather than overwrite.
    async fn put_new(
        &self,
        key: &str,
        body: Body,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<(), ApiError>;
    /// `Ok(None)` when missing. Errors when the object is larger than `max_len`.
    async fn get(&self, key: &str, max_len: u64) -> Result<Option<Vec<u8>>, ApiError>;
    /// User metadata of an object, `Ok(None)` when missing.
    async fn head(&self, key: &str) -> Result<Option<HashMap<String, String>>, ApiError>;
    /// "Folders" directly under `prefix` (which ends in `/`), as full key prefixes.
    async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, ApiError>;
}

/// A data key from KMS GenerateDataKey.
pub struct DataKey {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub wrapped: Vec<u8>,
    /// ARN of the KMS key that wrapped it.
    pub key_id: String,
}

/// KMS.
#[async_trait]
pub trait KeyService: Send + Sync {
    async fn generate_data_key(&self, context: &[(&str, &str)]) -> Result<DataKey, ApiError>;
    async fn decrypt(
        &self,
        wrapped: &[u8],
        context: &[(&str, &str)],
    ) -> Result<Zeroizing<Vec<u8>>, ApiError>;
}

/// STS: which account the source credentials belong to.
#[async_trait]
pub trait Identity: Send + Sync {
    async fn account_id(&self) -> Result<String, ApiError>;
}
