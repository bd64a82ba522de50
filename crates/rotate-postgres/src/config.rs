//! Configuration from the environment, read once at start-up: the password policy (the
//! variables of AWS's rotation templates), `ROTATION_STRATEGY`, `DB_CA_BUNDLE`,
//! `DB_CA_BUNDLE_ONLY`, `SECRETS_MANAGER_ENDPOINT`, `ALTERNATING_SHARED_OWNER`, `PASSWORD_ENCRYPTION`,
//! `TEST_SECRET_REPLICA_WAIT_SECONDS`, `DB_CONNECT_TIMEOUT_SECONDS`,
//! `AWS_LAMBDA_FUNCTION_NAME`, `ROTATION_EVENT_BUS` (`rotation_signals::EventBus`), and the SDK's `AWS_MAX_ATTEMPTS` / `AWS_RETRY_MODE` over the
//! function's bounded retries and timeouts (`lambda_support::SdkLimits::ROTATION`, where the
//! arithmetic against the Lambda timeout is).
//!
//! Every boolean goes through `lambda_support::parse_bool`; a value that cannot be used is an
//! error naming the variable, never silently the default.

use lambda_support::env::{non_empty, parse_bool, ConfigError};
use lambda_support::SdkLimits;
use postgres_target::{PasswordEncryption, Trust};
use preflight::PreflightOptions;
use rotation::policy::{PolicyError, PASSWORD_LENGTHS};
use rotation::{PasswordPolicy, ReplicaWait, RotationSettings, Strategy};
use std::path::PathBuf;
use std::time::Duration;

/// What `ROTATION_STRATEGY` (and the preflight's `--strategy`) accepts.
pub const STRATEGY_EXPECTED: &str = "expected single or alternating";
/// The variable of testSecret's wait for a standby, in whole seconds.
pub const REPLICA_WAIT_VAR: &str = "TEST_SECRET_REPLICA_WAIT_SECONDS";
/// The longest replica wait accepted, in seconds (Lambda stops a function after 900 s).
pub const REPLICA_WAIT_MAX_SECONDS: u64 = 600;

/// The variable of the database connect timeout (TCP, TLS and login), in whole seconds.
pub const CONNECT_TIMEOUT_VAR: &str = "DB_CONNECT_TIMEOUT_SECONDS";
/// The accepted connect timeouts, in seconds: the default, 5 s, keeps three logins (setSecret's
/// worst case) at 15 s of the function's 60 s (`lambda_support::limits`).
pub const CONNECT_TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 1..=10;

/// Everything read from the environment, once, at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The password policy (`GetRandomPassword`'s options, from the templates' variables).
    pub policy: PasswordPolicy,
    /// `ROTATION_STRATEGY`: forces one strategy for every secret.
    pub strategy: Option<Strategy>,
    /// The roots TLS trusts: `DB_CA_BUNDLE` (a PEM file of extra roots) and `DB_CA_BUNDLE_ONLY`
    /// (trust that file alone), checked together by [`tls_trust`].
    pub trust: Trust,
    /// `SECRETS_MANAGER_ENDPOINT`: as in AWS's templates (e.g. a VPC endpoint).
    pub secrets_manager_endpoint: Option<String>,
    /// `ALTERNATING_SHARED_OWNER`: the shared-owner opt-in for alternating-users secrets that
    /// have no `shared_owner` field.
    pub shared_owner: bool,
    /// `PASSWORD_ENCRYPTION`: `auto` (default: the server's `password_encryption`),
    /// `scram-sha-256` or `md5`.
    pub password_encryption: PasswordEncryption,
    /// `TEST_SECRET_REPLICA_WAIT_SECONDS`: how long testSecret waits, in total, for a standby to
    /// replay the password change (default 30 s; 0 disables).
    pub replica_wait: ReplicaWait,
    /// `AWS_LAMBDA_FUNCTION_NAME`: set by Lambda; the preflight compares it with the function
    /// attached to the secret.
    pub function_name: Option<String>,
    /// `DB_CONNECT_TIMEOUT_SECONDS`: how long one database login (TCP, TLS, authentication) and
    /// one read-only query after it may take (default 5 s, from 1 to 10); writes are bounded by
    /// the server's `lock_timeout` and `statement_timeout`.
    pub db_timeout: Duration,
    /// The SDK's retries and timeouts: [`SdkLimits::ROTATION`] with `AWS_MAX_ATTEMPTS` and
    /// `AWS_RETRY_MODE` applied.
    pub sdk: SdkLimits,
    /// `ROTATION_EVENT_BUS`: the EventBridge bus (name or ARN) told when a rotation succeeds or
    /// fails; `None`: no events (the EMF metrics are written either way).
    pub event_bus: Option<rotation_signals::EventBus>,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the variables through `lookup` (a variable that is unset yields `None`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| non_empty(&lookup, name);
        Ok(Config {
            policy: password_policy(&lookup)?,
            strategy: var("ROTATION_STRATEGY")
                .map(|v| parse_strategy("ROTATION_STRATEGY", &v))
                .transpose()?,
            trust: tls_trust(
                var("DB_CA_BUNDLE").map(PathBuf::from),
                var("DB_CA_BUNDLE_ONLY")
                    .map(|v| parse_bool("DB_CA_BUNDLE_ONLY", &v))
                    .transpose()?
                    .unwrap_or(false),
            )?,
            secrets_manager_endpoint: var("SECRETS_MANAGER_ENDPOINT"),
            shared_owner: var("ALTERNATING_SHARED_OWNER")
                .map(|v| parse_bool("ALTERNATING_SHARED_OWNER", &v))
                .transpose()?
                .unwrap_or(false),
            password_encryption: var("PASSWORD_ENCRYPTION")
                .map(|v| {
                    PasswordEncryption::parse(&v).ok_or_else(|| {
                        ConfigError::invalid("PASSWORD_ENCRYPTION", v, PasswordEncryption::EXPECTED)
                    })
                })
                .transpose()?
                .unwrap_or_default(),
            replica_wait: var(REPLICA_WAIT_VAR)
                .map(|v| parse_replica_wait(&v))
                .transpose()?
                .unwrap_or(ReplicaWait::up_to(ReplicaWait::DEFAULT_TOTAL)),
            function_name: var("AWS_LAMBDA_FUNCTION_NAME"),
            db_timeout: var(CONNECT_TIMEOUT_VAR)
                .map(|v| parse_connect_timeout(&v))
                .transpose()?
                .unwrap_or(postgres_target::CONNECT_TIMEOUT),
            sdk: SdkLimits::ROTATION.with_env(&lookup)?,
            event_bus: rotation_signals::EventBus::from_lookup(&lookup)?,
        })
    }

    /// The settings the rotator and the preflight share.
    pub fn settings(&self) -> RotationSettings {
        RotationSettings {
            policy: self.policy.clone(),
            strategy_override: self.strategy,
            shared_owner_default: self.shared_owner,
        }
    }

    /// The preflight's view of where it runs.
    pub fn preflight_options(&self) -> PreflightOptions {
        PreflightOptions {
            function_name: self.function_name.clone(),
            replica_wait: self.replica_wait,
        }
    }
}

/// `TEST_SECRET_REPLICA_WAIT_SECONDS`: a whole number of seconds from 0 (no wait) to
/// [`REPLICA_WAIT_MAX_SECONDS`].
pub fn parse_replica_wait(value: &str) -> Result<ReplicaWait, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(secs) if secs <= REPLICA_WAIT_MAX_SECONDS => {
            Ok(ReplicaWait::up_to(Duration::from_secs(secs)))
        }
        _ => Err(ConfigError::invalid(
            REPLICA_WAIT_VAR,
            value,
            format!(
                "expected a whole number of seconds from 0 (no wait) to {REPLICA_WAIT_MAX_SECONDS}"
            ),
        )),
    }
}

/// `DB_CONNECT_TIMEOUT_SECONDS`: a whole number of seconds in [`CONNECT_TIMEOUT_SECONDS`].
pub fn parse_connect_timeout(value: &str) -> Result<Duration, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(secs) if CONNECT_TIMEOUT_SECONDS.contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(ConfigError::invalid(
            CONNECT_TIMEOUT_VAR,
            value,
            format!(
                "expected a whole number of seconds from {} to {}",
                CONNECT_TIMEOUT_SECONDS.start(),
                CONNECT_TIMEOUT_SECONDS.end()
            ),
        )),
    }
}

/// The trusted roots from `DB_CA_BUNDLE` (`ca_bundle`) and `DB_CA_BUNDLE_ONLY` (`bundle_only`):
/// the defaults (public web roots, Amazon RDS CAs) plus the bundle, or the bundle alone. Trusting
/// the bundle alone without a bundle is an error naming both variables.
pub fn tls_trust(ca_bundle: Option<PathBuf>, bundle_only: bool) -> Result<Trust, ConfigError> {
    match (ca_bundle, bundle_only) {
        (Some(path), true) => Ok(Trust::BundleOnly(path)),
        (None, true) => Err(ConfigError::invalid(
            "DB_CA_BUNDLE_ONLY",
            "true",
            "DB_CA_BUNDLE_ONLY=true trusts only the CAs of DB_CA_BUNDLE, which is not set: set \
             DB_CA_BUNDLE to a PEM file of the CAs to trust, or unset DB_CA_BUNDLE_ONLY",
        )),
        (ca_bundle, false) => Ok(Trust::Default { ca_bundle }),
    }
}

/// A strategy name (`single` or `alternating`) given in variable or option `name`.
pub fn parse_strategy(name: &'static str, value: &str) -> Result<Strategy, ConfigError> {
    Strategy::from_name(value).ok_or_else(|| ConfigError::invalid(name, value, STRATEGY_EXPECTED))
}

/// The password policy from the templates' variables (`EXCLUDE_CHARACTERS`, `PASSWORD_LENGTH`,
/// `EXCLUDE_NUMBERS`, `EXCLUDE_PUNCTUATION`, `EXCLUDE_UPPERCASE`, `EXCLUDE_LOWERCASE`,
/// `REQUIRE_EACH_INCLUDED_TYPE`).
pub fn password_policy(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<PasswordPolicy, ConfigError> {
    let mut policy = PasswordPolicy::default();
    // Read as given: an empty exclusion list means "exclude nothing".
    if let Some(chars) = lookup("EXCLUDE_CHARACTERS") {
        policy.exclude_characters = chars;
    }
    if let Some(length) = lookup("PASSWORD_LENGTH") {
        policy.length = match length.trim().parse::<u32>() {
            Ok(n) if PASSWORD_LENGTHS.contains(&n) => n,
            _ => {
                return Err(ConfigError::invalid(
                    "PASSWORD_LENGTH",
                    length,
                    format!(
                        "expected a whole number from {} to {}",
                        PASSWORD_LENGTHS.start(),
                        PASSWORD_LENGTHS.end()
                    ),
                ))
            }
        };
    }
    let flags: [(&'static str, &mut bool); 5] = [
        ("EXCLUDE_NUMBERS", &mut policy.exclude_numbers),
        ("EXCLUDE_PUNCTUATION", &mut policy.exclude_punctuation),
        ("EXCLUDE_UPPERCASE", &mut policy.exclude_uppercase),
        ("EXCLUDE_LOWERCASE", &mut policy.exclude_lowercase),
        (
            "REQUIRE_EACH_INCLUDED_TYPE",
            &mut policy.require_each_included_type,
        ),
    ];
    for (name, slot) in flags {
        if let Some(value) = lookup(name) {
            *slot = parse_bool(name, &value)?;
        }
    }
    match policy.validate() {
        Ok(()) => Ok(policy),
        Err(PolicyError::NothingIncluded) => Err(ConfigError::invalid(
            "EXCLUDE_LOWERCASE",
            "true",
            "at least one character type must stay included",
        )),
        Err(e @ PolicyError::TypeEmptied { .. }) => Err(ConfigError::invalid(
            "EXCLUDE_CHARACTERS",
            policy.exclude_characters.clone(),
            e.to_string(),
        )),
        Err(e @ PolicyError::Length(_)) => Err(ConfigError::invalid(
            "PASSWORD_LENGTH",
            policy.length.to_string(),
            e.to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|k| map.get(k).map(|v| v.to_string()))
    }

    fn policy(vars: &[(&str, &str)]) -> Result<PasswordPolicy, ConfigError> {
        config(vars).map(|c| c.policy)
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.policy, PasswordPolicy::default());
        assert_eq!(c.strategy, None);
        assert_eq!(c.trust, Trust::Default { ca_bundle: None });
        assert_eq!(c.secrets_manager_endpoint, None);
        assert!(!c.shared_owner);
        assert_eq!(c.replica_wait, ReplicaWait::up_to(Duration::from_secs(30)));
        assert_eq!(c.preflight_options().replica_wait, c.replica_wait);
        assert_eq!(c.function_name, None);
        assert_eq!(c.password_encryption, PasswordEncryption::Auto);
        assert_eq!(c.settings(), RotationSettings::default());
        assert_eq!(c.db_timeout, Duration::from_secs(5));
        assert_eq!(c.sdk, SdkLimits::ROTATION);
    }

    #[test]
    fn the_write_bound_is_the_one_the_60_s_arithmetic_counts() {
        assert_eq!(
            postgres_target::WRITE_TIMEOUT,
            lambda_support::limits::DB_WRITE_TIMEOUT
        );
    }

    #[test]
    fn connect_timeout_and_sdk_retries_come_from_the_environment() {
        let c = config(&[
            (CONNECT_TIMEOUT_VAR, "2"),
            ("AWS_MAX_ATTEMPTS", "4"),
            ("AWS_RETRY_MODE", "adaptive"),
        ])
        .unwrap();
        assert_eq!(c.db_timeout, Duration::from_secs(2));
        assert_eq!(c.sdk.max_attempts, 4);
        assert!(c.sdk.adaptive);
        // The timeouts stay: the operation timeout still bounds every call.
        assert_eq!(
            c.sdk.operation_timeout,
            SdkLimits::ROTATION.operation_timeout
        );
        for bad in ["0", "11", "1.5", "5s"] {
            let err = config(&[(CONNECT_TIMEOUT_VAR, bad)]).unwrap_err();
            assert_eq!(err.name(), CONNECT_TIMEOUT_VAR, "{bad}");
            assert!(err.to_string().contains("from 1 to 10"), "{err}");
        }
        let err = config(&[("AWS_MAX_ATTEMPTS", "many")]).unwrap_err();
        assert_eq!(err.name(), "AWS_MAX_ATTEMPTS");
    }

    #[test]
    fn password_encryption_is_one_of_three() {
        for (value, expected) in [
            ("auto", PasswordEncryption::Auto),
            ("SCRAM-SHA-256", PasswordEncryption::ScramSha256),
            ("md5", PasswordEncryption::Md5),
        ] {
            let c = config(&[("PASSWORD_ENCRYPTION", value)]).unwrap();
            assert_eq!(c.password_encryption, expected, "{value}");
        }
        let err = config(&[("PASSWORD_ENCRYPTION", "sha1")]).unwrap_err();
        assert_eq!(err.name(), "PASSWORD_ENCRYPTION");
        assert!(err.to_string().contains("scram-sha-256"), "{err}");
    }

    #[test]
    fn a_policy_that_empties_a_required_type_names_exclude_characters() {
        let err = policy(&[("EXCLUDE_CHARACTERS", "0123456789")]).unwrap_err();
        assert_eq!(err.name(), "EXCLUDE_CHARACTERS");
        assert!(err.to_string().contains("numbers"), "{err}");
        // Not required: the digits are simply not used.
        let p = policy(&[
            ("EXCLUDE_CHARACTERS", "0123456789"),
            ("REQUIRE_EACH_INCLUDED_TYPE", "false"),
        ])
        .unwrap();
        assert!(!p
            .generate()
            .unwrap()
            .expose()
            .chars()
            .any(|c| c.is_ascii_digit()));
    }

    #[test]
    fn shared_owner_and_function_name() {
        let c = config(&[
            ("ALTERNATING_SHARED_OWNER", "yes"),
            ("AWS_LAMBDA_FUNCTION_NAME", "rotate"),
        ])
        .unwrap();
        assert!(c.shared_owner);
        assert!(c.settings().shared_owner_default);
        assert_eq!(
            c.preflight_options().function_name.as_deref(),
            Some("rotate")
        );
        let err = config(&[("ALTERNATING_SHARED_OWNER", "sometimes")]).unwrap_err();
        assert_eq!(err.name(), "ALTERNATING_SHARED_OWNER");
    }

    #[test]
    fn reads_every_variable() {
        let c = config(&[
            ("ROTATION_STRATEGY", "alternating"),
            ("DB_CA_BUNDLE", "rds-global-bundle.pem"),
            ("SECRETS_MANAGER_ENDPOINT", "https://vpce.example"),
            ("PASSWORD_LENGTH", "40"),
        ])
        .unwrap();
        assert_eq!(c.strategy, Some(Strategy::AlternatingUsers));
        assert_eq!(
            c.settings().strategy_override,
            Some(Strategy::AlternatingUsers)
        );
        assert_eq!(
            c.trust,
            Trust::Default {
                ca_bundle: Some(PathBuf::from("rds-global-bundle.pem"))
            }
        );
        assert_eq!(
            c.secrets_manager_endpoint.as_deref(),
            Some("https://vpce.example")
        );
        assert_eq!(c.policy.length, 40);
        assert_eq!(
            config(&[("ROTATION_STRATEGY", "single")]).unwrap().strategy,
            Some(Strategy::SingleUser)
        );
    }

    #[test]
    fn replica_wait_is_whole_seconds_and_zero_disables_it() {
        let wait = |v: &str| config(&[(REPLICA_WAIT_VAR, v)]).map(|c| c.replica_wait);
        assert_eq!(
            wait("5").unwrap(),
            ReplicaWait::up_to(Duration::from_secs(5))
        );
        assert_eq!(wait(" 600 ").unwrap().total(), Duration::from_secs(600));
        assert!(wait("0").unwrap().is_disabled());
        // Blank means the default, as for every variable.
        assert_eq!(wait("").unwrap().total(), Duration::from_secs(30));
        for bad in ["-1", "2.5", "30s", "601", "ten"] {
            let err = wait(bad).unwrap_err();
            assert_eq!(err.name(), REPLICA_WAIT_VAR, "{bad}");
            assert!(
                err.to_string().ends_with(
                    "is invalid: expected a whole number of seconds from 0 (no wait) to 600"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn bundle_only_trusts_the_bundle_and_needs_one() {
        let c = config(&[
            ("DB_CA_BUNDLE", "/opt/ca.pem"),
            ("DB_CA_BUNDLE_ONLY", "yes"),
        ])
        .unwrap();
        assert_eq!(c.trust, Trust::BundleOnly(PathBuf::from("/opt/ca.pem")));
        let c = config(&[("DB_CA_BUNDLE", "/opt/ca.pem"), ("DB_CA_BUNDLE_ONLY", "0")]).unwrap();
        assert_eq!(
            c.trust,
            Trust::Default {
                ca_bundle: Some(PathBuf::from("/opt/ca.pem"))
            }
        );
        // Blank is unset: the default.
        assert_eq!(
            config(&[("DB_CA_BUNDLE_ONLY", " ")]).unwrap().trust,
            Trust::default()
        );
        for vars in [
            &[("DB_CA_BUNDLE_ONLY", "true")][..],
            &[("DB_CA_BUNDLE_ONLY", "true"), ("DB_CA_BUNDLE", "  ")][..],
        ] {
            let err = config(vars).unwrap_err();
            assert_eq!(err.name(), "DB_CA_BUNDLE_ONLY");
            let text = err.to_string();
            assert!(
                text.contains("DB_CA_BUNDLE_ONLY") && text.contains("DB_CA_BUNDLE,"),
                "{text}"
            );
        }
        let err = config(&[
            ("DB_CA_BUNDLE", "/opt/ca.pem"),
            ("DB_CA_BUNDLE_ONLY", "only"),
        ])
        .unwrap_err();
        assert_eq!(err.name(), "DB_CA_BUNDLE_ONLY");
    }

    #[test]
    fn bad_strategy_names_the_variable() {
        let err = config(&[("ROTATION_STRATEGY", "both")]).unwrap_err();
        assert_eq!(err.name(), "ROTATION_STRATEGY");
        assert_eq!(
            err.to_string(),
            "environment variable ROTATION_STRATEGY=\"both\" is invalid: expected single or alternating"
        );
    }

    #[test]
    fn each_policy_variable_is_read() {
        let p = policy(&[
            ("EXCLUDE_CHARACTERS", "abc"),
            ("PASSWORD_LENGTH", "64"),
            ("EXCLUDE_NUMBERS", "true"),
            ("EXCLUDE_PUNCTUATION", "1"),
            ("EXCLUDE_UPPERCASE", "Y"),
            ("EXCLUDE_LOWERCASE", "no"),
            ("REQUIRE_EACH_INCLUDED_TYPE", "FALSE"),
        ])
        .unwrap();
        assert_eq!(
            p,
            PasswordPolicy {
                length: 64,
                exclude_characters: "abc".into(),
                exclude_numbers: true,
                exclude_punctuation: true,
                exclude_uppercase: true,
                exclude_lowercase: false,
                require_each_included_type: false,
            }
        );
        // An empty exclusion list is allowed and means "exclude nothing".
        assert_eq!(
            policy(&[("EXCLUDE_CHARACTERS", "")])
                .unwrap()
                .exclude_characters,
            ""
        );
    }

    #[test]
    fn bad_policy_values_name_the_variable() {
        let err = policy(&[("EXCLUDE_NUMBERS", "sometimes")]).unwrap_err();
        assert_eq!(err.name(), "EXCLUDE_NUMBERS");
        assert!(err.to_string().contains("EXCLUDE_NUMBERS"));
        for bad in ["3", "4097", "abc", "-5", ""] {
            let err = policy(&[("PASSWORD_LENGTH", bad)]).unwrap_err();
            assert_eq!(err.name(), "PASSWORD_LENGTH");
            assert!(
                err.to_string()
                    .ends_with("is invalid: expected a whole number from 4 to 4096"),
                "{err}"
            );
        }
        assert!(policy(&[
            ("EXCLUDE_NUMBERS", "1"),
            ("EXCLUDE_PUNCTUATION", "1"),
            ("EXCLUDE_UPPERCASE", "1"),
            ("EXCLUDE_LOWERCASE", "1"),
        ])
        .is_err());
    }
}
