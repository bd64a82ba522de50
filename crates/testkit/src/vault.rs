//! The backup destination in moto: a KMS key, a manifest signing key and a snapshot bucket (plain, or versioned with
//! Object Lock), as the backup tests, the demo and the benchmark create them.

use aws_sdk_s3::types::{
    BucketVersioningStatus, CreateBucketConfiguration, DefaultRetention, ObjectLockConfiguration,
    ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule, VersioningConfiguration,
};

/// Creates a symmetric KMS key and returns its ARN.
pub async fn create_key(kms: &aws_sdk_kms::Client, description: &str) -> String {
    kms.create_key()
        .description(description)
        .send()
        .await
        .expect("CreateKey")
        .key_metadata()
        .and_then(|m| m.arn().map(String::from))
        .expect("CreateKey returns the key's ARN")
}

/// Creates an asymmetric signing key (ECC_NIST_P256, SIGN_VERIFY: the manifest signing key of
/// `BACKUP_SIGNING_KEY_ID`) and returns its ARN.
pub async fn create_signing_key(kms: &aws_sdk_kms::Client, description: &str) -> String {
    kms.create_key()
        .description(description)
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .expect("CreateKey (signing)")
        .key_metadata()
        .and_then(|m| m.arn().map(String::from))
        .expect("CreateKey returns the key's ARN")
}

/// Creates a bucket in `region` (`None` or `us-east-1`: without a location constraint).
pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str, region: Option<&str>) {
    create(s3, bucket, region, false).await;
}

/// Creates a versioned bucket with Object Lock (governance mode, 1 day default retention), as
/// the deployed snapshot bucket is.
pub async fn create_locked_bucket(s3: &aws_sdk_s3::Client, bucket: &str, region: Option<&str>) {
    create(s3, bucket, region, true).await;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("PutBucketVersioning");
    s3.put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(
                            DefaultRetention::builder()
                                .mode(ObjectLockRetentionMode::Governance)
                                .days(1)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("PutObjectLockConfiguration");
}

async fn create(s3: &aws_sdk_s3::Client, bucket: &str, region: Option<&str>, object_lock: bool) {
    let mut req = s3.create_bucket().bucket(bucket);
    if object_lock {
        req = req.object_lock_enabled_for_bucket(true);
    }
    if let Some(r) = region.filter(|r| *r != "us-east-1") {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(r.into())
                .build(),
        );
    }
    req.send().await.expect("CreateBucket");
}
