//! The function's configuration, read once from the environment at start.
//!
//! Every variable follows `lambda_support::env`: unset or blank means the default, an unusable
//! value is a [`ConfigError`] naming the variable, and booleans go through
//! [`lambda_support::parse_bool`].

use lambda_support::env::{non_empty, parse_bool, ConfigError};
use lambda_support::SdkLimits;

pub use crate::domain::filters::ExpectedUnreadable;
use crate::domain::filters::{Filters, TagFilter};
use crate::domain::settings::{
    list_entries, normalize_prefix, parse_concurrency, parse_part_size, DEFAULT_CONCURRENCY,
    DEFAULT_PART_SIZE, DEFAULT_PREFIX,
};
use crate::domain::sources::HubConfig;
use crate::lambda::metrics::DEFAULT_NAMESPACE;
use crate::ports::aws::Settings;

/// Where snapshots go and how a run behaves. Read once from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupConfig {
    /// `BACKUP_BUCKET` (required).
    pub bucket: String,
    /// `BACKUP_PREFIX`, default `secrets-backup`.
    pub prefix: String,
    /// `BACKUP_KMS_KEY_ID`: the key that wraps each part's data key (required for backups).
    pub kms_key_id: Option<String>,
    /// `BACKUP_SIGNING_KEY_ID` (required): the asymmetric KMS key (ECC_NIST_P256, SIGN_VERIFY)
    /// that signs each manifest, and with which verify checks them. Without it the function
    /// does not start: an unsigned snapshot could not be told from a forged one.
    pub signing_key_id: String,
    /// `BACKUP_S3_KMS_KEY_ID`: the SSE-KMS key for the objects; defaults to `kms_key_id`.
    pub s3_kms_key_id: Option<String>,
    /// `BACKUP_ROLE_ARN`: role assumed (STS) for the S3 and KMS calls of another account.
    pub role_arn: Option<String>,
    /// `BACKUP_ROLE_EXTERNAL_ID`.
    pub external_id: Option<String>,
    /// `BACKUP_REGION`: region of the bucket and key; defaults to the function's region.
    pub destination_region: Option<String>,
    /// `BACKUP_S3_FORCE_PATH_STYLE`: path-style S3 addressing (also implied by a custom endpoint).
    pub s3_force_path_style: bool,
    /// `BACKUP_NAME_PREFIXES` (comma-separated) and `BACKUP_TAGS` (`k=v,k2`).
    pub filters: Filters,
    /// `BACKUP_CONCURRENCY`, default 8: secrets read at the same time.
    pub concurrency: usize,
    /// `BACKUP_PART_SIZE` (bytes, or with KiB/MiB), default 4 MiB.
    pub part_size: usize,
    /// `BACKUP_METRICS_NAMESPACE`, default `SecretsBackup`: CloudWatch namespace of the metrics.
    pub metrics_namespace: String,
    /// The SDK's retries and timeouts: [`SdkLimits::BACKUP`] with `AWS_MAX_ATTEMPTS` and
    /// `AWS_RETRY_MODE` applied.
    pub sdk: SdkLimits,
    // --- The vault's guards (issue 10): expected unreadable secrets, the run lease ---
    /// `BACKUP_EXPECTED_UNREADABLE`: secrets whose failure to read does not fail a run.
    pub expected_unreadable: ExpectedUnreadable,
    /// `BACKUP_LEASE_SECONDS`, default [`DEFAULT_LEASE_SECONDS`]: how long a run's lease on its
    /// source holds if the run never releases it (killed); 0 = no lease.
    pub lease_seconds: u64,
    // --- The read path (issue 11): quotas, checkpoints ---
    /// `BACKUP_QUOTA_SHARE`, percent of each published quota, default
    /// [`DEFAULT_QUOTA_SHARE_PERCENT`].
    pub quota_share_percent: u32,
    /// `BACKUP_DEADLINE_MARGIN_SECONDS`, default [`DEFAULT_DEADLINE_MARGIN_SECONDS`].
    pub deadline_margin_seconds: u64,
    /// `BACKUP_LIST_PAGE_SIZE`, 1–100, default 100: secrets per ListSecrets page (the deadline
    /// is checked between pages).
    pub list_page_size: i32,
    // --- Many accounts and regions (issue 11) ---
    /// `BACKUP_SOURCE_ACCOUNTS`, `BACKUP_SOURCE_REGIONS`, `BACKUP_SOURCE_ROLE_NAME`,
    /// `BACKUP_SOURCE_EXTERNAL_ID`: a hub's sources; `None`: its own account and region only.
    pub hub: Option<HubConfig>,
}

/// The default of `BACKUP_QUOTA_SHARE`: the percentage of each published Secrets Manager quota a
/// run may use (`crates/backup/src/ports/limited.rs`).
pub const DEFAULT_QUOTA_SHARE_PERCENT: u32 = 20;
/// The default of `BACKUP_DEADLINE_MARGIN_SECONDS`: time left before the Lambda deadline at
/// which a run checkpoints (enough to upload a part and the checkpoint).
pub const DEFAULT_DEADLINE_MARGIN_SECONDS: u64 = 60;

/// The default of `BACKUP_LEASE_SECONDS`: Lambda's largest timeout, so no run outlives its lease.
pub const DEFAULT_LEASE_SECONDS: u64 = 900;

impl BackupConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the variables through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| non_empty(&lookup, name);
        let parsed = |name: &'static str, parse: fn(&str) -> Result<usize, String>| {
            get(name)
                .map(|v| parse(&v).map_err(|expected| ConfigError::invalid(name, v, expected)))
                .transpose()
        };
        let bucket = get("BACKUP_BUCKET").ok_or(ConfigError::missing("BACKUP_BUCKET"))?;
        let signing_key_id =
            get("BACKUP_SIGNING_KEY_ID").ok_or(ConfigError::missing("BACKUP_SIGNING_KEY_ID"))?;
        let prefix =
            normalize_prefix(&get("BACKUP_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.into()));
        let filters = filters_from(&lookup)?;
        let s3_force_path_style = match get("BACKUP_S3_FORCE_PATH_STYLE") {
            None => false,
            Some(v) => parse_bool("BACKUP_S3_FORCE_PATH_STYLE", &v)?,
        };
        Ok(BackupConfig {
            bucket,
            prefix,
            kms_key_id: get("BACKUP_KMS_KEY_ID"),
            signing_key_id,
            s3_kms_key_id: get("BACKUP_S3_KMS_KEY_ID"),
            role_arn: get("BACKUP_ROLE_ARN"),
            external_id: get("BACKUP_ROLE_EXTERNAL_ID"),
            destination_region: get("BACKUP_REGION"),
            s3_force_path_style,
            filters,
            concurrency: parsed("BACKUP_CONCURRENCY", parse_concurrency)?
                .unwrap_or(DEFAULT_CONCURRENCY),
            part_size: parsed("BACKUP_PART_SIZE", parse_part_size)?.unwrap_or(DEFAULT_PART_SIZE),
            metrics_namespace: get("BACKUP_METRICS_NAMESPACE")
                .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            sdk: SdkLimits::BACKUP.with_env(&lookup)?,
            // --- The vault's guards ---
            expected_unreadable: get("BACKUP_EXPECTED_UNREADABLE")
                .map(|v| {
                    ExpectedUnreadable::parse(&v).map_err(|expected| {
                        ConfigError::invalid("BACKUP_EXPECTED_UNREADABLE", v, expected)
                    })
                })
                .transpose()?
                .unwrap_or_default(),
            lease_seconds: match get("BACKUP_LEASE_SECONDS") {
                None => DEFAULT_LEASE_SECONDS,
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|s| *s <= 86_400)
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "BACKUP_LEASE_SECONDS",
                            v,
                            "whole seconds from 0 (no lease) to 86400",
                        )
                    })?,
            },
            // --- The read path ---
            quota_share_percent: match get("BACKUP_QUOTA_SHARE") {
                None => DEFAULT_QUOTA_SHARE_PERCENT,
                Some(v) => v
                    .trim_end_matches('%')
                    .parse::<u32>()
                    .ok()
                    .filter(|p| (1..=100).contains(p))
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            "BACKUP_QUOTA_SHARE",
                            v,
                            "a whole percentage from 1 to 100",
                        )
                    })?,
            },
            deadline_margin_seconds: match get("BACKUP_DEADLINE_MARGIN_SECONDS") {
                None => DEFAULT_DEADLINE_MARGIN_SECONDS,
                Some(v) => v.parse::<u64>().ok().filter(|s| *s <= 900).ok_or_else(|| {
                    ConfigError::invalid(
                        "BACKUP_DEADLINE_MARGIN_SECONDS",
                        v,
                        "whole seconds from 0 to 900",
                    )
                })?,
            },
            list_page_size: match get("BACKUP_LIST_PAGE_SIZE") {
                None => 100,
                Some(v) => v
                    .parse::<i32>()
                    .ok()
                    .filter(|s| (1..=100).contains(s))
                    .ok_or_else(|| {
                        ConfigError::invalid("BACKUP_LIST_PAGE_SIZE", v, "a number from 1 to 100")
                    })?,
            },
            hub: HubConfig::from_lookup(&lookup)?,
        })
    }

    /// What the AWS adapters need to reach the bucket and the key.
    pub fn aws_settings(&self) -> Settings {
        Settings {
            bucket: self.bucket.clone(),
            destination_region: self.destination_region.clone(),
            role_arn: self.role_arn.clone(),
            external_id: self.external_id.clone(),
            kms_key_id: self.kms_key_id.clone(),
            s3_kms_key_id: self.s3_kms_key_id.clone(),
            s3_force_path_style: self.s3_force_path_style,
        }
    }
}

/// The deployment's filters, `BACKUP_NAME_PREFIXES` (comma-separated) and `BACKUP_TAGS`
/// (`k=v,k2`), read through `lookup` (the CLI reads them too, to prefer the deployment's own
/// snapshots).
pub fn filters_from(lookup: impl Fn(&str) -> Option<String>) -> Result<Filters, ConfigError> {
    let get = |name: &str| non_empty(&lookup, name);
    let name_prefixes = get("BACKUP_NAME_PREFIXES")
        .map(|v| list_entries(&v).map(String::from).collect())
        .unwrap_or_default();
    let tags = match get("BACKUP_TAGS") {
        None => vec![],
        Some(v) => list_entries(&v)
            .map(TagFilter::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|expected| ConfigError::invalid("BACKUP_TAGS", v, expected))?,
    };
    Ok(Filters {
        name_prefixes,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SIGNING: (&str, &str) = ("BACKUP_SIGNING_KEY_ID", "alias/sign");

    fn cfg(vars: &[(&str, &str)]) -> Result<BackupConfig, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BackupConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn env_defaults_and_overrides() {
        assert_eq!(cfg(&[]).unwrap_err(), ConfigError::missing("BACKUP_BUCKET"));
        assert_eq!(
            cfg(&[("BACKUP_BUCKET", "b")]).unwrap_err(),
            ConfigError::missing("BACKUP_SIGNING_KEY_ID")
        );
        let c = cfg(&[("BACKUP_BUCKET", "b"), SIGNING]).unwrap();
        assert_eq!(c.prefix, "secrets-backup");
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.part_size, 4 << 20);
        assert_eq!(c.sdk, SdkLimits::BACKUP);
        let c = cfg(&[("BACKUP_BUCKET", "b"), SIGNING, ("AWS_MAX_ATTEMPTS", "3")]).unwrap();
        assert_eq!(c.sdk.max_attempts, 3);
        let err = cfg(&[("BACKUP_BUCKET", "b"), SIGNING, ("AWS_RETRY_MODE", "fast")]).unwrap_err();
        assert_eq!(err.name(), "AWS_RETRY_MODE");
        assert!(c.filters.is_empty());
        let c = cfg(&[
            ("BACKUP_BUCKET", "b"),
            SIGNING,
            ("BACKUP_PREFIX", "/backups/prod/"),
            ("BACKUP_NAME_PREFIXES", "app/, db/ ,"),
            ("BACKUP_TAGS", "env=prod, backup"),
            ("BACKUP_CONCURRENCY", "16"),
            ("BACKUP_PART_SIZE", "512KiB"),
            ("BACKUP_ROLE_ARN", "arn:aws:iam::222222222222:role/w"),
        ])
        .unwrap();
        assert_eq!(c.prefix, "backups/prod");
        assert_eq!(c.filters.name_prefixes, vec!["app/", "db/"]);
        assert_eq!(
            c.filters.tags,
            vec![
                TagFilter {
                    key: "env".into(),
                    value: Some("prod".into())
                },
                TagFilter {
                    key: "backup".into(),
                    value: None
                }
            ]
        );
        assert_eq!(c.concurrency, 16);
        assert_eq!(c.part_size, 512 * 1024);
        assert!(matches!(
            cfg(&[("BACKUP_BUCKET", "b"), SIGNING, ("BACKUP_CONCURRENCY", "0")]),
            Err(ConfigError::Invalid {
                name: "BACKUP_CONCURRENCY",
                ..
            })
        ));
        assert!(matches!(
            cfg(&[("BACKUP_BUCKET", "b"), SIGNING, ("BACKUP_PART_SIZE", "10")]),
            Err(ConfigError::Invalid {
                name: "BACKUP_PART_SIZE",
                ..
            })
        ));
        assert!(matches!(
            cfg(&[("BACKUP_BUCKET", "b"), SIGNING, ("BACKUP_TAGS", "=x")]),
            Err(ConfigError::Invalid {
                name: "BACKUP_TAGS",
                ..
            })
        ));
    }

    #[test]
    fn booleans_are_strict_and_errors_name_the_variable() {
        let c = cfg(&[
            ("BACKUP_BUCKET", "b"),
            SIGNING,
            ("BACKUP_S3_FORCE_PATH_STYLE", "yes"),
        ])
        .unwrap();
        assert!(c.s3_force_path_style);
        assert!(
            !cfg(&[("BACKUP_BUCKET", "b"), SIGNING])
                .unwrap()
                .s3_force_path_style
        );
        let err = cfg(&[
            ("BACKUP_BUCKET", "b"),
            SIGNING,
            ("BACKUP_S3_FORCE_PATH_STYLE", "maybe"),
        ])
        .unwrap_err();
        assert_eq!(err.name(), "BACKUP_S3_FORCE_PATH_STYLE");
        let err = cfg(&[
            ("BACKUP_BUCKET", "b"),
            SIGNING,
            ("BACKUP_CONCURRENCY", "lots"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("BACKUP_CONCURRENCY"), "{err}");
        assert_eq!(
            cfg(&[("BACKUP_BUCKET", "b"), SIGNING])
                .unwrap()
                .metrics_namespace,
            "SecretsBackup"
        );
    }

    // --- The read path ---
    #[test]
    fn quota_share_margin_and_page_size() {
        let c = cfg(&[("BACKUP_BUCKET", "b"), SIGNING]).unwrap();
        assert_eq!(c.quota_share_percent, 20);
        assert_eq!(c.deadline_margin_seconds, 60);
        assert_eq!(c.list_page_size, 100);
        let c = cfg(&[
            ("BACKUP_BUCKET", "b"),
            SIGNING,
            ("BACKUP_QUOTA_SHARE", "5%"),
            ("BACKUP_DEADLINE_MARGIN_SECONDS", "120"),
            ("BACKUP_LIST_PAGE_SIZE", "10"),
        ])
        .unwrap();
        assert_eq!(c.quota_share_percent, 5);
        assert_eq!(c.deadline_margin_seconds, 120);
        assert_eq!(c.list_page_size, 10);
        for (name, bad) in [
            ("BACKUP_QUOTA_SHARE", "0"),
            ("BACKUP_QUOTA_SHARE", "101"),
            ("BACKUP_QUOTA_SHARE", "lots"),
            ("BACKUP_DEADLINE_MARGIN_SECONDS", "901"),
            ("BACKUP_LIST_PAGE_SIZE", "0"),
            ("BACKUP_LIST_PAGE_SIZE", "101"),
        ] {
            let err = cfg(&[("BACKUP_BUCKET", "b"), SIGNING, (name, bad)]).unwrap_err();
            assert_eq!(err.name(), name, "{bad}");
        }
    }

    // --- The vault's guards ---
    #[test]
    fn expected_unreadable_names_and_prefixes() {
        let c = cfg(&[("BACKUP_BUCKET", "b"), SIGNING]).unwrap();
        assert_eq!(c.expected_unreadable, ExpectedUnreadable::default());
        assert!(!c.expected_unreadable.contains("anything"));
        assert_eq!(c.lease_seconds, 900);
        let c = cfg(&[
            ("BACKUP_BUCKET", "b"),
            SIGNING,
            (
                "BACKUP_EXPECTED_UNREADABLE",
                " legacy/one, other-team/* ,,x",
            ),
            ("BACKUP_LEASE_SECONDS", "0"),
        ])
        .unwrap();
        let e = &c.expected_unreadable;
        assert_eq!(e.names, ["legacy/one", "x"]);
        assert_eq!(e.prefixes, ["other-team/"]);
        assert!(e.contains("legacy/one"));
        // A name without `*` is exact, not a prefix.
        assert!(!e.contains("legacy/one-more"));
        assert!(!e.contains("legacy/"));
        assert!(e.contains("other-team/db"));
        assert!(e.contains("other-team/"));
        assert!(!e.contains("other-team"));
        assert_eq!(c.lease_seconds, 0);
        for bad in ["*", "a/*,*", "a*b", "a/**", "*a"] {
            let err = cfg(&[
                ("BACKUP_BUCKET", "b"),
                SIGNING,
                ("BACKUP_EXPECTED_UNREADABLE", bad),
            ])
            .unwrap_err();
            assert_eq!(err.name(), "BACKUP_EXPECTED_UNREADABLE", "{bad}");
            assert!(
                err.to_string().contains("BACKUP_EXPECTED_UNREADABLE"),
                "{err}"
            );
        }
        for bad in ["-1", "ten", "86401"] {
            let err = cfg(&[
                ("BACKUP_BUCKET", "b"),
                SIGNING,
                ("BACKUP_LEASE_SECONDS", bad),
            ])
            .unwrap_err();
            assert_eq!(err.name(), "BACKUP_LEASE_SECONDS", "{bad}");
        }
    }
}
