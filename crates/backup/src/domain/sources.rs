//! Which accounts and regions a hub deployment backs up (hub-and-spoke pull), with no I/O.
//!
//! A hub lists its sources with `BACKUP_SOURCE_ACCOUNTS` (account ids, or `organization`: every
//! active account of its AWS Organization) × `BACKUP_SOURCE_REGIONS`, and reads each one through
//! the read-only role `BACKUP_SOURCE_ROLE_NAME` that `spoke-role.yaml` creates in that account,
//! presenting `BACKUP_SOURCE_EXTERNAL_ID`. The state machine of `template.yaml` asks the function
//! for the list (mode `sources`) and runs one backup per source.

use lambda_support::env::{non_empty, ConfigError};
use serde::{Deserialize, Serialize};

use crate::domain::settings::list_entries;

/// One account × region to back up.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    /// The 12-digit account id.
    pub account: String,
    /// The region, such as `eu-west-1`.
    pub region: String,
}

impl SourceRef {
    /// Checks both fields; the error names the field and the value at fault.
    pub fn checked(account: &str, region: &str) -> Result<SourceRef, String> {
        check_account(account).map_err(|e| format!("account: {e}"))?;
        check_region(region).map_err(|e| format!("region: {e}"))?;
        Ok(SourceRef {
            account: account.into(),
            region: region.into(),
        })
    }
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// A 12-digit AWS account id.
pub fn check_account(v: &str) -> Result<(), String> {
    if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("{v:?} is not a 12-digit AWS account id"))
    }
}

/// A region name: lowercase words and a number joined by `-` (`us-east-1`, `us-gov-west-1`).
pub fn check_region(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('-').collect();
    let ok = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!("{v:?} is not an AWS region name (like eu-west-1)"))
    }
}

/// The ARN partition of a region.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Where the hub's accounts come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceAccounts {
    /// `BACKUP_SOURCE_ACCOUNTS=111111111111,222222222222`.
    List(Vec<String>),
    /// `BACKUP_SOURCE_ACCOUNTS=organization`: every active account of the organization
    /// (Organizations `ListAccounts`, from the management or a delegated administrator account).
    Organization,
}

/// A hub deployment's sources and how it reaches them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// `BACKUP_SOURCE_ACCOUNTS`.
    pub accounts: SourceAccounts,
    /// `BACKUP_SOURCE_REGIONS`; empty: the function's own region.
    pub regions: Vec<String>,
    /// `BACKUP_SOURCE_ROLE_NAME`: the read-only role in every spoke (`spoke-role.yaml`).
    pub role_name: String,
    /// `BACKUP_SOURCE_EXTERNAL_ID`: presented when assuming it.
    pub external_id: String,
}

impl HubConfig {
    /// Reads the hub's variables through `lookup`: `None` when `BACKUP_SOURCE_ACCOUNTS` is
    /// unset (the deployment backs up its own account and region only). Errors name the
    /// variable and the entry at fault.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let get = |name: &str| non_empty(&lookup, name);
        let Some(accounts_v) = get("BACKUP_SOURCE_ACCOUNTS") else {
            for name in [
                "BACKUP_SOURCE_REGIONS",
                "BACKUP_SOURCE_ROLE_NAME",
                "BACKUP_SOURCE_EXTERNAL_ID",
            ] {
                if get(name).is_some() {
                    return Err(ConfigError::invalid(
                        name,
                        "(set)",
                        "to be set only with BACKUP_SOURCE_ACCOUNTS (the hub's source accounts)",
                    ));
                }
            }
            return Ok(None);
        };
        let accounts = if accounts_v.trim().eq_ignore_ascii_case("organization") {
            SourceAccounts::Organization
        } else {
            let mut list = Vec::new();
            for entry in list_entries(&accounts_v) {
                check_account(entry).map_err(|e| {
                    ConfigError::invalid(
                        "BACKUP_SOURCE_ACCOUNTS",
                        &accounts_v,
                        format!("account ids separated by commas, or `organization`: {e}"),
                    )
                })?;
                if !list.iter().any(|a: &String| a == entry) {
                    list.push(entry.to_string());
                }
            }
            if list.is_empty() {
                return Err(ConfigError::invalid(
                    "BACKUP_SOURCE_ACCOUNTS",
                    &accounts_v,
                    "account ids separated by commas, or `organization`",
                ));
            }
            SourceAccounts::List(list)
        };
        let mut regions = Vec::new();
        if let Some(v) = get("BACKUP_SOURCE_REGIONS") {
            for entry in list_entries(&v) {
                check_region(entry).map_err(|e| {
                    ConfigError::invalid(
                        "BACKUP_SOURCE_REGIONS",
                        &v,
                        format!("region names separated by commas: {e}"),
                    )
                })?;
                if !regions.iter().any(|r: &String| r == entry) {
                    regions.push(entry.to_string());
                }
            }
        }
        let role_name = get("BACKUP_SOURCE_ROLE_NAME")
            .ok_or(ConfigError::missing("BACKUP_SOURCE_ROLE_NAME"))?;
        // IAM role names: 1-64 of letters, digits and +=,.@_-
        if role_name.is_empty()
            || role_name.len() > 64
            || !role_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
            return Err(ConfigError::invalid(
                "BACKUP_SOURCE_ROLE_NAME",
                role_name,
                "an IAM role name (1-64 letters, digits and +=,.@_-)",
            ));
        }
        let external_id = get("BACKUP_SOURCE_EXTERNAL_ID")
            .ok_or(ConfigError::missing("BACKUP_SOURCE_EXTERNAL_ID"))?;
        // STS ExternalId: 2-1224 of letters, digits and +=,.@:/-_ (the value is not echoed: it
        // is a shared secret of sorts).
        if external_id.len() < 2
            || external_id.len() > 1224
            || !external_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c))
        {
            return Err(ConfigError::invalid(
                "BACKUP_SOURCE_EXTERNAL_ID",
                "(not shown)",
                "2-1224 letters, digits and +=,.@:/-_",
            ));
        }
        Ok(Some(HubConfig {
            accounts,
            regions,
            role_name,
            external_id,
        }))
    }

    /// The regions to back up, `own_region` when none is configured.
    pub fn regions_or<'a>(&'a self, own_region: &'a str) -> Vec<&'a str> {
        if self.regions.is_empty() {
            vec![own_region]
        } else {
            self.regions.iter().map(String::as_str).collect()
        }
    }

    /// Every account × region, in a stable order.
    pub fn sources(&self, accounts: &[String], own_region: &str) -> Vec<SourceRef> {
        let mut out = Vec::new();
        for a in accounts {
            for r in self.regions_or(own_region) {
                out.push(SourceRef {
                    account: a.clone(),
                    region: r.to_string(),
                });
            }
        }
        out
    }

    /// Whether `source` is one this hub was configured to read (organization mode: any
    /// account, since membership is checked by the spoke's role trust).
    pub fn allows(&self, source: &SourceRef, own_region: &str) -> Result<(), String> {
        if !self
            .regions_or(own_region)
            .contains(&source.region.as_str())
        {
            return Err(format!(
                "region {} is not one of BACKUP_SOURCE_REGIONS ({})",
                source.region,
                self.regions_or(own_region).join(",")
            ));
        }
        match &self.accounts {
            SourceAccounts::Organization => Ok(()),
            SourceAccounts::List(list) if list.contains(&source.account) => Ok(()),
            SourceAccounts::List(_) => Err(format!(
                "account {} is not one of BACKUP_SOURCE_ACCOUNTS",
                source.account
            )),
        }
    }

    /// The spoke's role ARN in `source`'s account.
    pub fn role_arn(&self, source: &SourceRef) -> String {
        format!(
            "arn:{}:iam::{}:role/{}",
            partition_of(&source.region),
            source.account,
            self.role_name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn hub(vars: &[(&str, &str)]) -> Result<Option<HubConfig>, ConfigError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubConfig::from_lookup(|k| m.get(k).cloned())
    }

    const OK: [(&str, &str); 3] = [
        (
            "BACKUP_SOURCE_ACCOUNTS",
            "111111111111, 222222222222,111111111111",
        ),
        ("BACKUP_SOURCE_ROLE_NAME", "secrets-backup-reader"),
        ("BACKUP_SOURCE_EXTERNAL_ID", "hub-7f3a"),
    ];

    #[test]
    fn no_accounts_no_hub_and_hub_variables_alone_are_refused() {
        assert_eq!(hub(&[]).unwrap(), None);
        let e = hub(&[("BACKUP_SOURCE_REGIONS", "eu-west-1")]).unwrap_err();
        assert!(e.to_string().contains("BACKUP_SOURCE_REGIONS"), "{e}");
    }

    #[test]
    fn accounts_deduplicated_regions_default_to_own() {
        let h = hub(&OK).unwrap().unwrap();
        assert_eq!(
            h.accounts,
            SourceAccounts::List(vec!["111111111111".into(), "222222222222".into()])
        );
        let s = h.sources(&["111111111111".into(), "222222222222".into()], "eu-west-1");
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].to_string(), "222222222222/eu-west-1");
        assert_eq!(
            h.role_arn(&s[0]),
            "arn:aws:iam::111111111111:role/secrets-backup-reader"
        );
        assert!(h.allows(&s[0], "eu-west-1").is_ok());
        let other = SourceRef::checked("333333333333", "eu-west-1").unwrap();
        assert!(h
            .allows(&other, "eu-west-1")
            .unwrap_err()
            .contains("333333333333"));
        let region = SourceRef::checked("111111111111", "us-east-1").unwrap();
        assert!(h
            .allows(&region, "eu-west-1")
            .unwrap_err()
            .contains("us-east-1"));
    }

    #[test]
    fn organization_and_regions() {
        let mut v = OK.to_vec();
        v[0].1 = "Organization";
        v.push(("BACKUP_SOURCE_REGIONS", "eu-west-1,us-east-1"));
        let h = hub(&v).unwrap().unwrap();
        assert_eq!(h.accounts, SourceAccounts::Organization);
        assert_eq!(h.sources(&["111111111111".into()], "x-y-1").len(), 2);
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value, needle) in [
            ("BACKUP_SOURCE_ACCOUNTS", "12345", "BACKUP_SOURCE_ACCOUNTS"),
            ("BACKUP_SOURCE_ACCOUNTS", ",", "BACKUP_SOURCE_ACCOUNTS"),
            (
                "BACKUP_SOURCE_REGIONS",
                "eu_west_1",
                "BACKUP_SOURCE_REGIONS",
            ),
            ("BACKUP_SOURCE_ROLE_NAME", "a/b", "BACKUP_SOURCE_ROLE_NAME"),
            (
                "BACKUP_SOURCE_EXTERNAL_ID",
                "x",
                "BACKUP_SOURCE_EXTERNAL_ID",
            ),
        ] {
            let mut v: Vec<(&str, &str)> = OK.iter().filter(|(k, _)| *k != name).copied().collect();
            v.push((name, value));
            let e = hub(&v).unwrap_err().to_string();
            assert!(e.contains(needle), "{name}={value}: {e}");
        }
        let v: Vec<(&str, &str)> = OK
            .iter()
            .filter(|(k, _)| *k != "BACKUP_SOURCE_EXTERNAL_ID")
            .copied()
            .collect();
        assert!(hub(&v)
            .unwrap_err()
            .to_string()
            .contains("BACKUP_SOURCE_EXTERNAL_ID"));
    }

    #[test]
    fn source_refs_are_checked() {
        assert!(SourceRef::checked("111111111111", "eu-west-1").is_ok());
        assert!(SourceRef::checked("11111111111a", "eu-west-1")
            .unwrap_err()
            .starts_with("account:"));
        assert!(SourceRef::checked("111111111111", "west")
            .unwrap_err()
            .starts_with("region:"));
        assert!(check_region("us-gov-west-1").is_ok());
    }
}
