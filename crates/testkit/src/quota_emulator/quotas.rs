//! The per-account request quotas the emulator enforces, one token bucket per quota row.
//!
//! Sources of the figures (each row says whether it is published):
//! - Secrets Manager quotas page (docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html):
//!   combined DeleteResourcePolicy + GetResourcePolicy + PutResourcePolicy + ValidateResourcePolicy
//!   50 per second, not adjustable; BatchGetSecretValue 100 per second.
//! - "AWS Secrets Manager increases API requests per second" (What's New, 2022-11-11): ListSecrets
//!   100 per second; (What's New, 2025-03-04): GetSecretValue 10,000 and DescribeSecret 40,000
//!   per second.
//! - Parameter Store, "AWS Systems Manager endpoints and quotas" (as quoted by AWS's knowledge
//!   centre and the Parameter Store throughput page): default throughput 40 per second shared by
//!   GetParameter, GetParameters and GetParametersByPath; with higher throughput enabled 3,000
//!   for GetParameter + GetParameters and 100 for GetParametersByPath ([`Quotas::ssm_high_throughput`]).
//! - Not found in those sources, so **assumed** (marked `published: false`, printed as such by
//!   the bench): ListSecretVersionIds 50, GetParameterHistory 40, DescribeParameters 40,
//!   ListTagsForResource 40.
//!
//! A bucket holds one second of its rate (AWS does not publish burst sizes) and refills
//! continuously (governor's GCRA, equivalent to a token bucket).

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// One quota: a name, the operations that share it, its rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRow {
    /// The name printed in reports (the operation's, or the shared family's).
    pub name: String,
    /// The service's target prefix: `secretsmanager` or `AmazonSSM`.
    pub service: &'static str,
    /// The operations that draw from this bucket.
    pub operations: Vec<&'static str>,
    /// Requests per second.
    pub per_second: u32,
    /// Whether AWS publishes the figure (else it is an assumption, see the module docs).
    pub published: bool,
}

/// Every quota row the emulator enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// The rows; an operation in none of them is not limited.
    pub rows: Vec<QuotaRow>,
}

fn row(
    name: &str,
    service: &'static str,
    operations: &[&'static str],
    per_second: u32,
    published: bool,
) -> QuotaRow {
    QuotaRow {
        name: name.to_string(),
        service,
        operations: operations.to_vec(),
        per_second,
        published,
    }
}

impl Quotas {
    /// The published per-account, per-region defaults (see the module docs for sources).
    pub fn published() -> Quotas {
        const SM: &str = "secretsmanager";
        const SSM: &str = "AmazonSSM";
        Quotas {
            rows: vec![
                row("GetSecretValue", SM, &["GetSecretValue"], 10_000, true),
                row("DescribeSecret", SM, &["DescribeSecret"], 40_000, true),
                row("ListSecrets", SM, &["ListSecrets"], 100, true),
                row(
                    "BatchGetSecretValue",
                    SM,
                    &["BatchGetSecretValue"],
                    100,
                    true,
                ),
                row(
                    "*ResourcePolicy",
                    SM,
                    &[
                        "GetResourcePolicy",
                        "PutResourcePolicy",
                        "DeleteResourcePolicy",
                        "ValidateResourcePolicy",
                    ],
                    50,
                    true,
                ),
                row(
                    "ListSecretVersionIds",
                    SM,
                    &["ListSecretVersionIds"],
                    50,
                    false,
                ),
                row(
                    "GetParameter(s|sByPath)",
                    SSM,
                    &["GetParameter", "GetParameters", "GetParametersByPath"],
                    40,
                    true,
                ),
                row(
                    "GetParameterHistory",
                    SSM,
                    &["GetParameterHistory"],
                    40,
                    false,
                ),
                row(
                    "DescribeParameters",
                    SSM,
                    &["DescribeParameters"],
                    40,
                    false,
                ),
                row(
                    "ListTagsForResource",
                    SSM,
                    &["ListTagsForResource"],
                    40,
                    false,
                ),
            ],
        }
    }

    /// Parameter Store with higher throughput enabled: GetParameter + GetParameters 3,000,
    /// GetParametersByPath 100 (published).
    pub fn ssm_high_throughput(mut self) -> Quotas {
        self.rows.retain(|r| r.name != "GetParameter(s|sByPath)");
        self.rows.push(row(
            "GetParameter(s)",
            "AmazonSSM",
            &["GetParameter", "GetParameters"],
            3_000,
            true,
        ));
        self.rows.push(row(
            "GetParametersByPath",
            "AmazonSSM",
            &["GetParametersByPath"],
            100,
            true,
        ));
        self
    }

    /// The same rows with the rate of the row named `name` set to `per_second` (panics on an
    /// unknown name).
    pub fn with(mut self, name: &str, per_second: u32) -> Quotas {
        let row = self
            .rows
            .iter_mut()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no quota row named {name:?}"));
        row.per_second = per_second;
        self
    }

    /// Every rate multiplied by `factor` (e.g. to measure memory and CPU at full size quickly,
    /// when time is not the question).
    pub fn scaled(mut self, factor: u32) -> Quotas {
        for row in &mut self.rows {
            row.per_second = row.per_second.saturating_mul(factor);
        }
        self
    }

    /// The row `operation` of `service` draws from.
    pub fn row_of(&self, service: &str, operation: &str) -> Option<&QuotaRow> {
        self.rows
            .iter()
            .find(|r| r.service == service && r.operations.contains(&operation))
    }
}

/// One token bucket.
type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The token buckets of a [`Quotas`] table, on clock `C` (a fake clock in the unit tests).
pub struct Buckets<C: Clock = DefaultClock> {
    limiters: BTreeMap<String, Limiter<C>>,
    quotas: Quotas,
}

impl Buckets<DefaultClock> {
    /// Full buckets on the monotonic clock.
    pub fn new(quotas: Quotas) -> Self {
        Self::with_clock(quotas, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> Buckets<C> {
    /// Full buckets on `clock`.
    pub fn with_clock(quotas: Quotas, clock: &C) -> Self {
        let limiters = quotas
            .rows
            .iter()
            .map(|r| {
                let rate = NonZeroU32::new(r.per_second.max(1)).expect("non-zero");
                (
                    r.name.clone(),
                    RateLimiter::direct_with_clock(Quota::per_second(rate), clock.clone()),
                )
            })
            .collect();
        Buckets { limiters, quotas }
    }

    /// Takes a token for `operation` of `service`: `Ok(row name)` (`None`: not limited), or
    /// `Err(row name)` when the bucket is empty (the call is throttled).
    pub fn take(&self, service: &str, operation: &str) -> Result<Option<&str>, &str> {
        let Some(row) = self.quotas.row_of(service, operation) else {
            return Ok(None);
        };
        match self.limiters[&row.name].check() {
            Ok(()) => Ok(Some(&row.name)),
            Err(_) => Err(&row.name),
        }
    }

    /// The table these buckets enforce.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn a_bucket_holds_one_second_and_refills_at_its_rate() {
        let clock = FakeRelativeClock::default();
        let buckets = Buckets::with_clock(Quotas::published(), &clock);
        // 50 GetResourcePolicy at once pass, the 51st is throttled.
        for _ in 0..50 {
            assert_eq!(
                buckets.take("secretsmanager", "GetResourcePolicy"),
                Ok(Some("*ResourcePolicy"))
            );
        }
        assert_eq!(
            buckets.take("secretsmanager", "GetResourcePolicy"),
            Err("*ResourcePolicy")
        );
        // The family is shared: PutResourcePolicy is throttled too, ListSecrets is not.
        assert!(buckets.take("secretsmanager", "PutResourcePolicy").is_err());
        assert!(buckets.take("secretsmanager", "ListSecrets").is_ok());
        // One token every 20 ms.
        clock.advance(Duration::from_millis(20));
        assert!(buckets.take("secretsmanager", "GetResourcePolicy").is_ok());
        assert!(buckets.take("secretsmanager", "GetResourcePolicy").is_err());
        // A second refills the whole bucket, not more.
        clock.advance(Duration::from_secs(5));
        let passed = (0..200)
            .filter(|_| buckets.take("secretsmanager", "GetResourcePolicy").is_ok())
            .count();
        assert_eq!(passed, 50);
    }

    #[test]
    fn rows_can_be_changed_and_unknown_operations_pass() {
        let clock = FakeRelativeClock::default();
        let quotas = Quotas::published().with("ListSecrets", 2);
        let buckets = Buckets::with_clock(quotas, &clock);
        assert!(buckets.take("secretsmanager", "ListSecrets").is_ok());
        assert!(buckets.take("secretsmanager", "ListSecrets").is_ok());
        assert!(buckets.take("secretsmanager", "ListSecrets").is_err());
        assert_eq!(buckets.take("secretsmanager", "CreateSecret"), Ok(None));
        // SSM's default throughput is shared by the three reads; higher throughput splits it.
        let shared = Quotas::published();
        assert_eq!(
            shared.row_of("AmazonSSM", "GetParametersByPath"),
            shared.row_of("AmazonSSM", "GetParameters")
        );
        let lifted = Quotas::published().scaled(10);
        assert_eq!(
            lifted
                .row_of("secretsmanager", "ListSecrets")
                .unwrap()
                .per_second,
            1_000
        );
        let high = Quotas::published().ssm_high_throughput();
        assert_eq!(
            high.row_of("AmazonSSM", "GetParameters")
                .unwrap()
                .per_second,
            3_000
        );
        assert_eq!(
            high.row_of("AmazonSSM", "GetParametersByPath")
                .unwrap()
                .per_second,
            100
        );
    }
}
