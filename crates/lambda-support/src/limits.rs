//! How long an AWS SDK call may take, in the worst case: bounded retries (standard mode,
//! exponential backoff with full jitter, throttling and 5xx and connection errors retried) and
//! explicit timeouts (connect, each attempt, the whole operation, retries and backoff included),
//! so that a slow or failing dependency ends a call with an error naming it well before Lambda
//! stops the function at its timeout (`template.yaml`).
//!
//! The operation timeout is the hard bound: whatever the number of attempts (even one raised by
//! `AWS_MAX_ATTEMPTS`), a call never takes longer. Each function states its arithmetic beside its
//! constant ([`SdkLimits::ROTATION`], [`SdkLimits::BACKUP`]); the tests below check it.
//!
//! The standard variables still work: `AWS_MAX_ATTEMPTS` (1 to 10) replaces the attempts and
//! `AWS_RETRY_MODE` (`standard` or `adaptive`) the mode; an unusable value is a [`ConfigError`]
//! naming the variable.

use std::time::Duration;

use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::env::{non_empty, ConfigError};

/// How long the rotation's database write (setSecret's `ALTER ROLE`, or alternating users' whole
/// transaction) may take before the client gives up on the server: `postgres_target::WRITE_TIMEOUT`
/// (`rotate-postgres` checks that the two agree), counted in setSecret's worst case below.
pub const DB_WRITE_TIMEOUT: Duration = Duration::from_secs(7);

/// The largest `AWS_MAX_ATTEMPTS` accepted (the operation timeout bounds the total anyway).
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;

/// The retry and timeout settings of one function's SDK clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdkLimits {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// `adaptive` (client-side rate limiting on throttling) instead of `standard`.
    pub adaptive: bool,
    /// The backoff before the first retry is drawn from 0 to this (then doubled each retry).
    pub initial_backoff: Duration,
    /// The backoff never exceeds this.
    pub max_backoff: Duration,
    /// Opening a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// One attempt: connect, send, the whole answer.
    pub attempt_timeout: Duration,
    /// The whole call: every attempt and every backoff.
    pub operation_timeout: Duration,
}

impl SdkLimits {
    /// The rotation function (Lambda timeout 60 s, `template.yaml`). A step waits for at most two
    /// Secrets Manager round trips one after the other (`crates/rotation/tests/round_trips.rs`);
    /// the database adds at most three logins (AWSPENDING, AWSCURRENT, AWSPREVIOUS) of at most
    /// `DB_CONNECT_TIMEOUT_SECONDS` (default 5 s) each, and testSecret a replica wait of at most
    /// `TEST_SECRET_REPLICA_WAIT_SECONDS` (default 30 s). The worst step, testSecret:
    /// 2 × 6 s (SDK) + 5 s (login) + 30 s (replica wait) = 47 s < 60 s; setSecret:
    /// 2 × 6 s + 3 × 5 s (logins) + 5 s (the read-only identity check, bounded like a login) +
    /// 7 s (the write, [`DB_WRITE_TIMEOUT`]) = 39 s; at the largest
    /// `DB_CONNECT_TIMEOUT_SECONDS`, 10 s, 52 s and 59 s.
    /// finishSecret reads the labels once more only when its label move failed (to tell a move
    /// whose answer was lost from one that did not happen): 3 × 6 s + 5 s = 23 s (28 s at 10 s).
    /// A server that accepts a login and then stops answering ends the step at its first
    /// unanswered read-only query, `DB_CONNECT_TIMEOUT_SECONDS` after it, or during setSecret's
    /// write, [`DB_WRITE_TIMEOUT`] after the write began.
    /// Not bounded by this sum: a larger replica wait (up to 600 s is accepted; the README says to
    /// keep it well below the timeout), and single user's last resort after an abandoned
    /// rotation (a version listing and up to five more reads and logins), which only runs when
    /// AWSCURRENT and AWSPREVIOUS do not log in. Each call: 5 attempts of at most 2 s plus backoffs of at most
    /// 0.2, 0.4, 0.8 and 1.6 s is 13 s, cut at the 6 s operation timeout. Five attempts (the SDK's
    /// default is three) because a rotation makes few calls and each one matters: at 20 % failed
    /// requests a call fails only when five attempts in a row do (0.2⁵ = 0.03 %).
    pub const ROTATION: SdkLimits = SdkLimits {
        max_attempts: 5,
        adaptive: false,
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        attempt_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(6),
    };

    /// The backup function (Lambda timeout 900 s, `template.yaml`): throughput first, so more
    /// attempts and longer backoffs ride out throttling at the API quotas (8 attempts, backoff up
    /// to 10 s), and an attempt may move a 4 MiB part (15 s). Each call ends within 60 s, so a
    /// stalled dependency fails that call (listed in the run's summary and manifest) instead of
    /// holding the run until Lambda stops it without a summary.
    pub const BACKUP: SdkLimits = SdkLimits {
        max_attempts: 8,
        adaptive: false,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(15),
        operation_timeout: Duration::from_secs(60),
    };

    /// These limits with `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE` applied (read through
    /// `lookup`; unset or blank keeps the value).
    pub fn with_env(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SdkLimits, ConfigError> {
        if let Some(v) = non_empty(&lookup, "AWS_MAX_ATTEMPTS") {
            self.max_attempts = match v.parse::<u32>() {
                Ok(n) if (1..=MAX_ATTEMPTS_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ConfigError::invalid(
                        "AWS_MAX_ATTEMPTS",
                        v,
                        format!("expected a whole number from 1 to {MAX_ATTEMPTS_LIMIT}"),
                    ))
                }
            };
        }
        if let Some(v) = non_empty(&lookup, "AWS_RETRY_MODE") {
            self.adaptive = match v.to_ascii_lowercase().as_str() {
                "standard" => false,
                "adaptive" => true,
                _ => {
                    return Err(ConfigError::invalid(
                        "AWS_RETRY_MODE",
                        v,
                        "expected standard or adaptive",
                    ))
                }
            };
        }
        Ok(self)
    }

    /// The SDK's retry configuration.
    pub fn retry_config(&self) -> RetryConfig {
        let base = if self.adaptive {
            RetryConfig::adaptive()
        } else {
            RetryConfig::standard()
        };
        base.with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }

    /// The SDK's timeout configuration.
    pub fn timeout_config(&self) -> TimeoutConfig {
        TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build()
    }

    /// The longest one call can take: every attempt at its timeout and every backoff at its
    /// largest, cut at the operation timeout.
    pub fn worst_case_call(&self) -> Duration {
        let mut total = self.attempt_timeout * self.max_attempts;
        for retry in 0..self.max_attempts.saturating_sub(1) {
            let backoff = self.initial_backoff.saturating_mul(1 << retry.min(20));
            total += backoff.min(self.max_backoff);
        }
        total.min(self.operation_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::retry::RetryMode;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<SdkLimits, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        SdkLimits::ROTATION.with_env(|k| map.get(k).map(|v| v.to_string()))
    }

    const ROTATION_LAMBDA_TIMEOUT: Duration = Duration::from_secs(60);
    const BACKUP_LAMBDA_TIMEOUT: Duration = Duration::from_secs(900);

    #[test]
    fn the_functions_timeouts_match_the_template() {
        let template = include_str!("../../../template.yaml");
        let timeouts: Vec<&str> = template
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Timeout: "))
            .collect();
        // RotationFunction first, then BackupFunction and BackupDrillFunction (one binary).
        assert_eq!(
            timeouts,
            ["60", "900", "900"],
            "template.yaml changed: redo the sums"
        );
        assert_eq!(ROTATION_LAMBDA_TIMEOUT.as_secs(), 60);
        assert_eq!(BACKUP_LAMBDA_TIMEOUT.as_secs(), 900);
    }

    #[test]
    fn the_rotation_arithmetic_holds() {
        let limits = SdkLimits::ROTATION;
        // 5 × 2 s + 0.2 + 0.4 + 0.8 + 1.6 s = 13 s, cut at 6 s.
        let uncut = SdkLimits {
            operation_timeout: Duration::from_secs(60),
            ..limits
        };
        assert_eq!(uncut.worst_case_call(), Duration::from_secs(13));
        assert_eq!(limits.worst_case_call(), Duration::from_secs(6));
        let login = Duration::from_secs(5);
        let replica_wait = Duration::from_secs(30);
        let test_secret = limits.worst_case_call() * 2 + login + replica_wait;
        // Three logins, the identity check (a read bounded like a login), the write.
        let set_secret = limits.worst_case_call() * 2 + login * 3 + login + DB_WRITE_TIMEOUT;
        assert_eq!(test_secret, Duration::from_secs(47));
        assert_eq!(set_secret, Duration::from_secs(39));
        assert!(test_secret < ROTATION_LAMBDA_TIMEOUT && set_secret < ROTATION_LAMBDA_TIMEOUT);
        // At the largest DB_CONNECT_TIMEOUT_SECONDS (10 s).
        let login = Duration::from_secs(10);
        let test_secret = limits.worst_case_call() * 2 + login + replica_wait;
        let set_secret = limits.worst_case_call() * 2 + login * 3 + login + DB_WRITE_TIMEOUT;
        assert_eq!(test_secret, Duration::from_secs(52));
        assert_eq!(set_secret, Duration::from_secs(59));
        assert!(test_secret < ROTATION_LAMBDA_TIMEOUT && set_secret < ROTATION_LAMBDA_TIMEOUT);
        // finishSecret after a failed label move: the gate, the move, one more read; one login.
        let finish_secret = limits.worst_case_call() * 3 + login;
        assert_eq!(finish_secret, Duration::from_secs(28));
        assert!(finish_secret < ROTATION_LAMBDA_TIMEOUT);
        // Even at AWS_MAX_ATTEMPTS=10 a call stays within the operation timeout.
        let many = with(&[("AWS_MAX_ATTEMPTS", "10")]).unwrap();
        assert_eq!(many.worst_case_call(), Duration::from_secs(6));
    }

    #[test]
    fn the_backup_calls_end_well_before_the_function() {
        let limits = SdkLimits::BACKUP;
        assert_eq!(limits.worst_case_call(), Duration::from_secs(60));
        assert!(limits.worst_case_call() * 10 < BACKUP_LAMBDA_TIMEOUT);
        // Without the operation timeout: 8 × 15 s + 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 6.4 s.
        let uncut = SdkLimits {
            operation_timeout: Duration::from_secs(3600),
            ..limits
        };
        assert_eq!(uncut.worst_case_call(), Duration::from_millis(132_700));
    }

    #[test]
    fn configs_carry_every_limit() {
        let limits = SdkLimits::ROTATION;
        let retry = limits.retry_config();
        assert_eq!(retry.mode(), RetryMode::Standard);
        assert_eq!(retry.max_attempts(), 5);
        assert_eq!(retry.initial_backoff(), Duration::from_millis(200));
        assert_eq!(retry.max_backoff(), Duration::from_secs(2));
        let timeouts = limits.timeout_config();
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(1)));
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(timeouts.operation_timeout(), Some(Duration::from_secs(6)));
    }

    #[test]
    fn the_standard_variables_still_work() {
        assert_eq!(with(&[]).unwrap(), SdkLimits::ROTATION);
        assert_eq!(
            with(&[("AWS_MAX_ATTEMPTS", " ")]).unwrap(),
            SdkLimits::ROTATION
        );
        let c = with(&[("AWS_MAX_ATTEMPTS", "5"), ("AWS_RETRY_MODE", "Adaptive")]).unwrap();
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.retry_config().mode(), RetryMode::Adaptive);
        assert_eq!(c.retry_config().max_attempts(), 5);
        for (name, bad) in [
            ("AWS_MAX_ATTEMPTS", "0"),
            ("AWS_MAX_ATTEMPTS", "11"),
            ("AWS_MAX_ATTEMPTS", "three"),
            ("AWS_RETRY_MODE", "legacy"),
        ] {
            let err = with(&[(name, bad)]).unwrap_err();
            assert_eq!(err.name(), name, "{bad}");
            assert!(err.to_string().contains("expected"), "{err}");
        }
    }
}
