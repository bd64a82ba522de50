//! The ports over the AWS SDK, one file per service, and the SDK configuration (built once, no
//! network I/O). `api_err` here is the one mapping of an SDK error to an [`ApiError`].

mod kms;
mod logs;
mod s3;
mod secrets;
mod spokes;
mod sts;

use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::SharedCredentialsProvider;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use lambda_support::SdkLimits;

use crate::ports::{ApiError, ErrorKind, Ports};

pub use kms::KmsKeys;
pub use logs::CloudWatchDrillLog;
pub use s3::S3Store;
pub use secrets::AwsSecrets;
pub use spokes::{AwsSpokes, SESSION_NAME};
pub use sts::StsIdentity;

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Map an SDK error to an [`ApiError`] naming the operation, the error code and message.
fn api_err<E>(op: &str, e: aws_sdk_secretsmanager::error::SdkError<E>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = lambda_support::describe_sdk_error(&e);
    let kind = match text.code() {
        "ResourceNotFoundException" | "NoSuchKey" | "NotFound" => ErrorKind::NotFound,
        "PreconditionFailed" => ErrorKind::AlreadyExists,
        "InvalidCiphertextException" | "IncorrectKeyException" => ErrorKind::InvalidCiphertext,
        "KMSInvalidSignatureException" => ErrorKind::InvalidSignature,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "SlowDown"
        | "RequestLimitExceeded" => ErrorKind::Throttled,
        _ => ErrorKind::Other,
    };
    ApiError::new(kind, format!("{op}: {text}"))
}

/// The SDK configuration of the source account: from the environment, with `limits`' bounded
/// retries (standard mode: exponential backoff with jitter, throttling included) and timeouts
/// (see `lambda_support::limits`). Does no network I/O.
pub async fn base_config(limits: &SdkLimits) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(limits.retry_config())
        .timeout_config(limits.timeout_config())
        .load()
        .await
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
/// when `force_path_style` (`BACKUP_S3_FORCE_PATH_STYLE`) is set.
pub fn s3_client(config: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let custom = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(force_path_style || custom)
            .build(),
    )
}

/// Where the snapshots go and which keys protect them: what the adapters need besides the
/// source account's SDK configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// The snapshot bucket.
    pub bucket: String,
    /// Region of the bucket and key; `None`: the source region.
    pub destination_region: Option<String>,
    /// Role assumed (STS) for the S3 and KMS calls when the bucket is in another account.
    pub role_arn: Option<String>,
    /// External id for that role.
    pub external_id: Option<String>,
    /// KMS key that wraps the parts' data keys (needed to write snapshots, not to read them).
    pub kms_key_id: Option<String>,
    /// SSE-KMS key of the objects; `None`: `kms_key_id`.
    pub s3_kms_key_id: Option<String>,
    /// Path-style S3 addressing.
    pub s3_force_path_style: bool,
}

/// Everything the function and the CLI talk to, built once.
pub struct AwsPorts {
    /// Secrets Manager of the source account.
    pub secrets: AwsSecrets,
    /// The snapshot bucket.
    pub store: S3Store,
    /// The KMS key of the snapshots.
    pub keys: KmsKeys,
    /// The source account.
    pub identity: StsIdentity,
    /// Region of the secrets.
    pub source_region: String,
    /// Region of the bucket and key.
    pub destination_region: String,
}

impl AwsPorts {
    /// Builds the clients (no network I/O: STS credentials for a role are fetched lazily).
    pub async fn new(base: &SdkConfig, settings: &Settings) -> Self {
        let dest = destination_config(
            base,
            settings.destination_region.as_deref(),
            settings.role_arn.as_deref(),
            settings.external_id.as_deref(),
        )
        .await;
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
                s3_client(&dest, settings.s3_force_path_style),
                settings.bucket.clone(),
                settings
                    .s3_kms_key_id
                    .clone()
                    .or_else(|| settings.kms_key_id.clone()),
            ),
            keys: KmsKeys::new(aws_sdk_kms::Client::new(&dest), settings.kms_key_id.clone()),
            identity: StsIdentity::new(aws_sdk_sts::Client::new(base)),
            source_region,
            destination_region,
        }
    }

    /// The ports the operations use.
    pub fn ports(&self) -> Ports<'_> {
        Ports {
            secrets: &self.secrets,
            store: &self.store,
            keys: &self.keys,
        }
    }
}
