//! Waiting inside a step: the [`Sleeper`] port and testSecret's bounded wait for a standby.
//!
//! With alternating users the master changes the password on the primary, but the user's host
//! may be a read replica (an Aurora reader, a Global Database secondary) that has not replayed
//! the change yet: AWSPENDING is refused there for a moment. testSecret then retries, waiting
//! [`ReplicaWait::delays`] between attempts (0.5 s doubling, at most 4 s each, adding up to the
//! configured total), but only on a standby: a refusal by a primary fails at once
//! (`src/steps/test.rs`).
//!
//! The waiting goes through [`Sleeper`], so the core's tests never sleep for real; the Lambda
//! crate gives the rotator tokio's timer.

use async_trait::async_trait;
use std::time::Duration;

/// Waits for a while. The core has no timer of its own.
#[async_trait]
pub trait Sleeper: Send + Sync {
    /// Returns after `duration`.
    async fn sleep(&self, duration: Duration);
}

/// How long testSecret waits, in total, for a standby to replay the password change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplicaWait {
    total: Duration,
}

impl ReplicaWait {
    /// The first wait before a retry.
    pub const FIRST_DELAY: Duration = Duration::from_millis(500);
    /// No single wait is longer than this.
    pub const MAX_DELAY: Duration = Duration::from_secs(4);
    /// The default total of the Lambda function (`TEST_SECRET_REPLICA_WAIT_SECONDS`).
    pub const DEFAULT_TOTAL: Duration = Duration::from_secs(30);

    /// Waits adding up to at most `total` (zero: no waiting at all).
    pub fn up_to(total: Duration) -> Self {
        ReplicaWait { total }
    }

    /// No waiting: a refused AWSPENDING fails testSecret at once (the default of the core).
    pub fn disabled() -> Self {
        ReplicaWait::default()
    }

    /// The total of the waits.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// Whether testSecret never waits.
    pub fn is_disabled(&self) -> bool {
        self.total.is_zero()
    }

    /// The wait before each retry, in order: [`Self::FIRST_DELAY`], doubling, at most
    /// [`Self::MAX_DELAY`], the last one shortened so that they add up to [`Self::total`].
    /// Empty when disabled.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays = Vec::new();
        let mut left = self.total;
        let mut next = Self::FIRST_DELAY;
        while !left.is_zero() {
            let delay = next.min(left);
            delays.push(delay);
            left -= delay;
            next = (next * 2).min(Self::MAX_DELAY);
        }
        delays
    }

    /// The wait in words, for logs and reports: `up to 30 s` or `no wait`.
    pub fn describe(&self) -> String {
        if self.is_disabled() {
            "no wait".into()
        } else {
            format!("up to {} s", seconds(self.total))
        }
    }
}

/// A duration in seconds, without a fraction when it is whole (`30`, `2.5`).
pub fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0}")
    } else {
        format!("{secs:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn delays_double_up_to_the_cap_and_add_up_to_the_total() {
        let delays = ReplicaWait::up_to(ReplicaWait::DEFAULT_TOTAL).delays();
        assert_eq!(
            delays,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(4000),
                ms(4000),
                ms(4000),
                ms(4000),
                ms(4000),
                ms(2500)
            ]
        );
        assert_eq!(delays.iter().sum::<Duration>(), ReplicaWait::DEFAULT_TOTAL);
        assert_eq!(
            ReplicaWait::up_to(Duration::from_secs(3)).delays(),
            [ms(500), ms(1000), ms(1500)]
        );
        assert_eq!(ReplicaWait::up_to(ms(200)).delays(), [ms(200)]);
        assert!(ReplicaWait::disabled().delays().is_empty());
        assert!(ReplicaWait::up_to(Duration::ZERO).is_disabled());
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            ReplicaWait::up_to(Duration::from_secs(30)).describe(),
            "up to 30 s"
        );
        assert_eq!(ReplicaWait::up_to(ms(2500)).describe(), "up to 2.5 s");
        assert_eq!(ReplicaWait::disabled().describe(), "no wait");
    }
}
