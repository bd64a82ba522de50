//! Configuration from the environment (read once at start) and the secret filters.

use serde::{Deserialize, Serialize};

use crate::model::Tag;

pub const DEFAULT_PREFIX: &str = "secrets-backup";
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_PART_SIZE: usize = 4 * 1024 * 1024;
/// Smallest accepted part size (tests use small parts to get many of them).
pub const MIN_PART_SIZE: usize = 1024;
/// Largest accepted part size: a part is built in memory, so this bounds memory.
pub const MAX_PART_SIZE: usize = 64 * 1024 * 1024;
pub const MAX_CONCURRENCY: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A tag the secret must carry: `key=value`, or just `key` for any value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagFilter {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl TagFilter {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
            None => (s, None),
        };
        if key.is_empty() {
            return Err(format!("tag filter {s:?} has an empty key"));
        }
        Ok(TagFilter {
            key: key.to_string(),
            value,
        })
    }

    fn matches(&self, tags: &[Tag]) -> bool {
        tags.iter()
            .any(|t| t.key == self.key && self.value.as_ref().is_none_or(|v| *v == t.value))
    }
}

/// Which secrets a run covers: any of the name prefixes (all when none) and every tag.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filters {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub name_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagFilter>,
}

impl Filters {
    pub fn is_empty(&self) -> bool {
        self.name_prefixes.is_empty() && self.tags.is_empty()
    }

    /// Name prefixes are case-sensitive (Secrets Manager's own `name` filter is not, so the
    /// server-side filter only narrows and this check decides).
    pub fn matches_name(&self, name: &str) -> bool {
        self.name_prefixes.is_empty() || self.name_prefixes.iter().any(|p| name.starts_with(p))
    }

    pub fn matches_tags(&self, tags: &[Tag]) -> bool {
        self.tags.iter().all(|f| f.matches(tags))
    }

    pub fn matches(&self, name: &str, tags: &[Tag]) -> bool {
        self.matches_name(name) && self.matches_tags(tags)
    }
}

/// A secret-name pattern for restore: `*` matches any run of characters; a pattern without `*`
/// is a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    pub fn new(p: impl Into<String>) -> Self {
        NamePattern(p.into())
    }

    pub fn matches(&self, name: &str) -> bool {
        if !self.0.contains('*') {
            return name.starts_with(&self.0);
        }
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] != b'*' && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    #[default]
    Backup,
    Verify,
}

/// Where snapshots go and how a run behaves. Read once from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupConfig {
    /// `BACKUP_BUCKET` (required).
    pub bucket: String,
    /// `BACKUP_PREFIX`, default `secrets-backup`.
    pub prefix: String,
    /// `BACKUP_KMS_KEY_ID`: the key that wraps each part's data key (required for backups).
    pub kms_key_id: Option<String>,
    /// `BACKUP_S3_KMS_KEY_ID`: the SSE-KMS key for the objects; defaults to `kms_key_id`.
    pub s3_kms_key_id: Option<String>,
    /// `BACKUP_ROLE_ARN`: role assumed (STS) for the S3 and KMS calls of another account.
    pub role_arn: Option<String>,
    /// `BACKUP_ROLE_EXTERNAL_ID`.
    pub external_id: Option<String>,
    /// `BACKUP_REGION`: region of the bucket and key; defaults to the function's region.
    pub destination_region: Option<String>,
    /// `BACKUP_NAME_PREFIXES` (comma-separated) and `BACKUP_TAGS` (`k=v,k2`).
    pub filters: Filters,
    /// `BACKUP_CONCURRENCY`, default 8: secrets read at the same time.
    pub concurrency: usize,
    /// `BACKUP_PART_SIZE` (bytes, or with KiB/MiB), default 4 MiB.
    pub part_size: usize,
}

impl BackupConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let bucket = get("BACKUP_BUCKET").ok_or(ConfigError::Missing("BACKUP_BUCKET"))?;
        let prefix =
            normalize_prefix(&get("BACKUP_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.into()));
        let name_prefixes = get("BACKUP_NAME_PREFIXES")
            .map(|v| split_list(&v))
            .unwrap_or_default();
        let tags = get("BACKUP_TAGS")
            .map(|v| {
                split_list(&v)
                    .iter()
                    .map(|t| TagFilter::parse(t))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|reason| ConfigError::Invalid {
                name: "BACKUP_TAGS",
                reason,
            })?
            .unwrap_or_default();
        let concurrency = match get("BACKUP_CONCURRENCY") {
            None => DEFAULT_CONCURRENCY,
            Some(v) => parse_concurrency(&v).map_err(|reason| ConfigError::Invalid {
                name: "BACKUP_CONCURRENCY",
                reason,
            })?,
        };
        let part_size = match get("BACKUP_PART_SIZE") {
            None => DEFAULT_PART_SIZE,
            Some(v) => parse_part_size(&v).map_err(|reason| ConfigError::Invalid {
                name: "BACKUP_PART_SIZE",
                reason,
            })?,
        };
        Ok(BackupConfig {
            bucket,
            prefix,
            kms_key_id: get("BACKUP_KMS_KEY_ID"),
            s3_kms_key_id: get("BACKUP_S3_KMS_KEY_ID"),
            role_arn: get("BACKUP_ROLE_ARN"),
            external_id: get("BACKUP_ROLE_EXTERNAL_ID"),
            destination_region: get("BACKUP_REGION"),
            filters: Filters {
                name_prefixes,
                tags,
            },
            concurrency,
            part_size,
        })
    }
}

/// `a/b/` and `/a/b` both become `a/b`.
pub fn normalize_prefix(p: &str) -> String {
    p.trim().trim_matches('/').to_string()
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

pub fn parse_concurrency(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(format!("{v:?} is not a number from 1 to {MAX_CONCURRENCY}")),
    }
}

/// `1048576`, `512KiB`, `4MiB`, `4MB` (MB taken as MiB).
pub fn parse_part_size(v: &str) -> Result<usize, String> {
    let s = v.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{v:?} is not a size such as 4MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("{v:?}: unknown unit {unit:?} (use B, KiB or MiB)")),
    };
    let size = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{v:?} is too large"))?;
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size) {
        return Err(format!(
            "{v:?} is outside {MIN_PART_SIZE} bytes to {} MiB",
            MAX_PART_SIZE / 1024 / 1024
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<BackupConfig, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BackupConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn env_defaults_and_overrides() {
        assert_eq!(cfg(&[]).unwrap_err(), ConfigError::Missing("BACKUP_BUCKET"));
        let c = cfg(&[("BACKUP_BUCKET", "b")]).unwrap();
        assert_eq!(c.prefix, "secrets-backup");
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.part_size, 4 << 20);
        assert!(c.filters.is_empty());
        let c = cfg(&[
            ("BACKUP_BUCKET", "b"),
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
            cfg(&[("BACKUP_BUCKET", "b"), ("BACKUP_CONCURRENCY", "0")]),
            Err(ConfigError::Invalid {
                name: "BACKUP_CONCURRENCY",
                ..
            })
        ));
        assert!(matches!(
            cfg(&[("BACKUP_BUCKET", "b"), ("BACKUP_PART_SIZE", "10")]),
            Err(ConfigError::Invalid {
                name: "BACKUP_PART_SIZE",
                ..
            })
        ));
        assert!(matches!(
            cfg(&[("BACKUP_BUCKET", "b"), ("BACKUP_TAGS", "=x")]),
            Err(ConfigError::Invalid {
                name: "BACKUP_TAGS",
                ..
            })
        ));
    }

    #[test]
    fn filters_match_prefixes_and_all_tags() {
        let tag = |k: &str, v: &str| Tag {
            key: k.into(),
            value: v.into(),
        };
        let f = Filters {
            name_prefixes: vec!["app/".into(), "db/".into()],
            tags: vec![
                TagFilter::parse("env=prod").unwrap(),
                TagFilter::parse("team").unwrap(),
            ],
        };
        let tags = [tag("env", "prod"), tag("team", "x")];
        assert!(f.matches("app/one", &tags));
        assert!(!f.matches("App/one", &tags), "prefixes are case-sensitive");
        assert!(!f.matches("web/one", &tags));
        assert!(!f.matches("db/one", &[tag("env", "prod")]));
        assert!(!f.matches("db/one", &[tag("env", "dev"), tag("team", "x")]));
        assert!(Filters::default().matches("anything", &[]));
    }

    #[test]
    fn name_patterns() {
        assert!(NamePattern::new("app/").matches("app/db"));
        assert!(!NamePattern::new("app/").matches("xapp/db"));
        assert!(NamePattern::new("*/db-?").matches("app/db-?"));
        assert!(NamePattern::new("app/*-1").matches("app/x-y-1"));
        assert!(!NamePattern::new("app/*-1").matches("app/x-y-12"));
        assert!(NamePattern::new("*").matches(""));
    }

    #[test]
    fn part_sizes() {
        assert_eq!(parse_part_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_part_size("2048"), Ok(2048));
        assert_eq!(parse_part_size("64 KiB"), Ok(64 << 10));
        assert!(parse_part_size("1GiB").is_err());
        assert!(parse_part_size("lots").is_err());
    }
}
