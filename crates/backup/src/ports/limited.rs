//! A client-side rate limiter in front of Secrets Manager's read calls, so that a backup never
//! takes more than a configured share of the account's quotas (the rest is left to production
//! traffic), and slows down further when the service throttles anyway.
//!
//! One token bucket (`governor`, GCRA, burst 1) per API family, each set to `share` × the
//! published per-account, per-region quota of that family. The published figures (AWS Secrets
//! Manager User Guide, "AWS Secrets Manager quotas"; the 2022 and 2025 "increases API requests
//! per second" announcements):
//!
//! | Family | Quota |
//! |---|---|
//! | ListSecrets | 100 per second |
//! | BatchGetSecretValue | 100 per second |
//! | GetSecretValue, DescribeSecret | 10,000 and 40,000 per second: one bucket at the lower |
//! | GetResourcePolicy (combined with Put/Delete/ValidateResourcePolicy) | 50 per second |
//!
//! Adaptive: a throttled answer (after the SDK's own retries) doubles the family's slowdown
//! (each call then takes that many tokens, up to [`MAX_SLOWDOWN`]) and the call is tried again
//! (at most [`THROTTLE_RETRIES`] times); [`RECOVER_AFTER`] answers in a row without throttling
//! halve it again. Write calls (restore) pass through unlimited.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::domain::model::{Described, Rotation, SecretValue, SourceKind, Tag, VersionValue};
use crate::ports::{ApiError, BatchValue, ErrorKind, ListPage, NewSecret, SecretsApi};

/// Published quotas, requests per second (see the module documentation for the sources).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quotas {
    /// ListSecrets.
    pub list: f64,
    /// BatchGetSecretValue.
    pub batch: f64,
    /// GetSecretValue and DescribeSecret (one bucket).
    pub get: f64,
    /// GetResourcePolicy.
    pub policy: f64,
}

/// The published per-account, per-region quotas of AWS Secrets Manager.
pub const PUBLISHED: Quotas = Quotas {
    list: 100.0,
    batch: 100.0,
    get: 10_000.0,
    policy: 50.0,
};

/// The largest slowdown factor throttling can reach.
pub const MAX_SLOWDOWN: u32 = 16;
/// How many times a throttled call is tried again (after slowing down).
pub const THROTTLE_RETRIES: u32 = 3;
/// Answers in a row without throttling that halve the slowdown.
pub const RECOVER_AFTER: u32 = 50;

/// One API family's bucket and slowdown.
pub struct Family {
    name: &'static str,
    per_second: f64,
    limiter: DefaultDirectRateLimiter,
    slowdown: AtomicU32,
    streak: AtomicU32,
}

impl Family {
    /// A bucket of `per_second` requests a second (burst 1).
    pub fn new(name: &'static str, per_second: f64) -> Family {
        let per_second = per_second.max(0.01);
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / per_second))
            .expect("a positive period")
            .allow_burst(NonZeroU32::MIN);
        Family {
            name,
            per_second,
            limiter: RateLimiter::direct(quota),
            slowdown: AtomicU32::new(1),
            streak: AtomicU32::new(0),
        }
    }

    /// The family's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Requests a second allowed (before any slowdown).
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// The current slowdown factor (1: none).
    pub fn slowdown(&self) -> u32 {
        self.slowdown.load(Ordering::Relaxed)
    }

    async fn call<T, F, Fut>(&self, f: F) -> Result<T, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 0;
        loop {
            for _ in 0..self.slowdown() {
                self.limiter.until_ready().await;
            }
            match f().await {
                Err(e) if e.kind == ErrorKind::Throttled => {
                    self.throttled();
                    attempt += 1;
                    if attempt > THROTTLE_RETRIES {
                        return Err(e);
                    }
                    tracing::warn!(
                        family = self.name,
                        slowdown = self.slowdown(),
                        "throttled: slowing down"
                    );
                }
                other => {
                    self.answered();
                    return other;
                }
            }
        }
    }

    fn throttled(&self) {
        self.streak.store(0, Ordering::Relaxed);
        let _ = self
            .slowdown
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some((s * 2).min(MAX_SLOWDOWN))
            });
    }

    fn answered(&self) {
        if self.slowdown() > 1 && self.streak.fetch_add(1, Ordering::Relaxed) + 1 >= RECOVER_AFTER {
            self.streak.store(0, Ordering::Relaxed);
            let _ = self
                .slowdown
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                    Some((s / 2).max(1))
                });
        }
    }
}

/// [`SecretsApi`] with its read calls limited to a share of [`PUBLISHED`].
pub struct RateLimited {
    inner: Arc<dyn SecretsApi>,
    /// ListSecrets.
    pub list: Family,
    /// BatchGetSecretValue.
    pub batch: Family,
    /// GetSecretValue and DescribeSecret.
    pub get: Family,
    /// GetResourcePolicy.
    pub policy: Family,
}

impl RateLimited {
    /// `inner` limited to `share` (0 < share ≤ 1) of `quotas`.
    pub fn new(inner: Arc<dyn SecretsApi>, share: f64, quotas: Quotas) -> RateLimited {
        RateLimited {
            inner,
            list: Family::new("ListSecrets", quotas.list * share),
            batch: Family::new("BatchGetSecretValue", quotas.batch * share),
            get: Family::new("GetSecretValue/DescribeSecret", quotas.get * share),
            policy: Family::new("GetResourcePolicy", quotas.policy * share),
        }
    }
}

#[async_trait]
impl SecretsApi for RateLimited {
    fn source(&self) -> SourceKind {
        self.inner.source()
    }
    async fn list_page(
        &self,
        name_prefixes: &[String],
        page_size: i32,
        token: Option<String>,
    ) -> Result<ListPage, ApiError> {
        self.list
            .call(|| {
                self.inner
                    .list_page(name_prefixes, page_size, token.clone())
            })
            .await
    }
    async fn batch_current(&self, ids: &[String]) -> Result<Vec<BatchValue>, ApiError> {
        self.batch.call(|| self.inner.batch_current(ids)).await
    }
    async fn describe(&self, id: &str) -> Result<Option<Described>, ApiError> {
        self.get.call(|| self.inner.describe(id)).await
    }
    async fn resource_policy(&self, id: &str) -> Result<Option<String>, ApiError> {
        self.policy.call(|| self.inner.resource_policy(id)).await
    }
    async fn get_value(&self, id: &str, version_id: &str) -> Result<SecretValue, ApiError> {
        self.get.call(|| self.inner.get_value(id, version_id)).await
    }
    async fn get_version(&self, id: &str, version_id: &str) -> Result<VersionValue, ApiError> {
        self.get
            .call(|| self.inner.get_version(id, version_id))
            .await
    }
    async fn create(&self, secret: NewSecret<'_>) -> Result<String, ApiError> {
        self.inner.create(secret).await
    }
    async fn put_value(
        &self,
        id: &str,
        value: &SecretValue,
        labels: &[String],
        token: Option<&str>,
    ) -> Result<String, ApiError> {
        self.inner.put_value(id, value, labels, token).await
    }
    async fn move_label(
        &self,
        id: &str,
        label: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), ApiError> {
        self.inner
            .move_label(id, label, to_version, from_version)
            .await
    }
    async fn update_metadata(
        &self,
        id: &str,
        description: Option<&str>,
        kms_key_id: Option<&str>,
    ) -> Result<(), ApiError> {
        self.inner
            .update_metadata(id, description, kms_key_id)
            .await
    }
    async fn tag(&self, id: &str, tags: &[Tag]) -> Result<(), ApiError> {
        self.inner.tag(id, tags).await
    }
    async fn untag(&self, id: &str, keys: &[String]) -> Result<(), ApiError> {
        self.inner.untag(id, keys).await
    }
    async fn put_resource_policy(&self, id: &str, policy: &str) -> Result<(), ApiError> {
        self.inner.put_resource_policy(id, policy).await
    }
    async fn delete_resource_policy(&self, id: &str) -> Result<(), ApiError> {
        self.inner.delete_resource_policy(id).await
    }
    async fn cancel_deletion(&self, id: &str) -> Result<(), ApiError> {
        self.inner.cancel_deletion(id).await
    }
    async fn configure_rotation(&self, id: &str, rotation: &Rotation) -> Result<(), ApiError> {
        self.inner.configure_rotation(id, rotation).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn throttling_slows_a_family_down_and_answers_bring_it_back() {
        let f = Family::new("test", 1000.0);
        let throttles = AtomicUsize::new(2);
        let calls = AtomicUsize::new(0);
        let r: Result<u32, ApiError> = f
            .call(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                if throttles.load(Ordering::SeqCst) > 0 {
                    throttles.fetch_sub(1, Ordering::SeqCst);
                    Err(ApiError::new(ErrorKind::Throttled, "ThrottlingException"))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "tried again after each throttle"
        );
        assert_eq!(f.slowdown(), 4);
        for _ in 0..RECOVER_AFTER {
            f.call(|| async { Ok::<_, ApiError>(()) }).await.unwrap();
        }
        assert_eq!(f.slowdown(), 2);
        // Throttled every time: given up after THROTTLE_RETRIES, slowdown capped.
        let r: Result<(), ApiError> = f
            .call(|| async { Err(ApiError::new(ErrorKind::Throttled, "SlowDown")) })
            .await;
        assert_eq!(r.unwrap_err().kind, ErrorKind::Throttled);
        assert_eq!(f.slowdown(), MAX_SLOWDOWN);
        // Other errors neither slow down nor retry.
        let n = AtomicUsize::new(0);
        let _ = f
            .call(|| async {
                n.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(ApiError::other("AccessDenied"))
            })
            .await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_family_keeps_to_its_rate() {
        // Burst 1: right after a call, the next one has to wait (no timing measured).
        let f = Family::new("test", 5.0);
        f.call(|| async { Ok::<_, ApiError>(()) }).await.unwrap();
        assert!(
            f.limiter.check().is_err(),
            "a second call at once is held back"
        );
        let shares = RateLimited::new(
            Arc::new(crate::ports::fakes::FakeSecrets::default()),
            0.2,
            PUBLISHED,
        );
        assert_eq!(shares.list.per_second(), 20.0);
        assert_eq!(shares.batch.per_second(), 20.0);
        assert_eq!(shares.get.per_second(), 2000.0);
        assert_eq!(shares.policy.per_second(), 10.0);
    }
}
