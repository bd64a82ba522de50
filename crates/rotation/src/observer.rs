//! [`RotationObserver`]: a hook called after every step, for notifications and metrics.
//!
//! The rotator calls it once per event with what the step did, including the gate's and
//! finishSecret's "already current" answer (so a retried step still notifies) and failures.
//! A notice carries the secret's ARN, the step, the token, the strategy and the outcome or the
//! error; never a secret value. An adapter (e.g. one that publishes to a topic) implements the trait in its own
//! crate and the Lambda crate sets it with `Rotator::with_observer`.

use crate::error::RotationError;
use crate::rotator::Outcome;
use crate::settings::Strategy;
use async_trait::async_trait;
use std::time::Duration;

/// What one step did.
#[derive(Debug)]
pub struct StepNotice<'a> {
    /// The secret's ARN (or the event's `SecretId` when it could not be described).
    pub secret: &'a str,
    /// The step as named in the event.
    pub step: &'a str,
    /// The event's `ClientRequestToken`.
    pub token: &'a str,
    /// The outcome, or the error (whose message names no value).
    pub result: Result<Outcome, &'a RotationError>,
    /// How long the step took.
    pub duration: Duration,
    /// The strategy, when the step got as far as reading the secret's JSON (`None`: the gate
    /// answered, or the step failed before).
    pub strategy: Option<Strategy>,
}

/// Told about every step the rotator handles.
#[async_trait]
pub trait RotationObserver: Send + Sync {
    /// Called once per event, after the step, whatever its result. It cannot fail the step.
    async fn step_finished(&self, notice: &StepNotice<'_>);
}

/// The default observer: does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

#[async_trait]
impl RotationObserver for NoopObserver {
    async fn step_finished(&self, _notice: &StepNotice<'_>) {}
}
