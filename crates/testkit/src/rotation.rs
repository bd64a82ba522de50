//! Rotation helpers for the end-to-end tests, the demo and the benchmark: the event Secrets
//! Manager sends for a step, and "run the four steps" against a [`LambdaHost`].
//!
//! The step names and staging labels are the rotation core's ([`Step::ALL`], [`AWSCURRENT`],
//! …), re-exported here so that callers use the same constants.

use crate::lambda::{InvokeError, LambdaHost};
use serde_json::Value;
use std::fmt;
use std::time::{Duration, Instant};

pub use rotation::{RotationEvent, Step, AWSCURRENT, AWSPENDING, AWSPREVIOUS};

/// The event Secrets Manager sends for `step` (a wire name, known or not) of the rotation of
/// `secret_id` to version `token`: `{"Step","SecretId","ClientRequestToken"}`.
pub fn event(step: &str, secret_id: &str, token: &str) -> Value {
    serde_json::to_value(RotationEvent::new(step, secret_id, token))
        .expect("a rotation event serializes")
}

/// One step of [`run_steps`] that succeeded.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// The step.
    pub step: Step,
    /// The function's answer, e.g. `{"step": "createSecret", "outcome": "pending_created"}`.
    pub response: Value,
    /// How long the invocation took.
    pub elapsed: Duration,
}

impl StepRun {
    /// The answer's `outcome`, or `?` when it has none.
    pub fn outcome(&self) -> &str {
        self.response["outcome"].as_str().unwrap_or("?")
    }
}

/// The step of [`run_steps`] that failed, and how.
#[derive(Debug, Clone)]
pub struct StepFailure {
    /// The step.
    pub step: Step,
    /// The function's error.
    pub error: InvokeError,
    /// The steps that succeeded before it.
    pub done: Vec<StepRun>,
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {}", self.step, self.error)
    }
}

impl std::error::Error for StepFailure {}

/// Invokes the four steps ([`Step::ALL`]) in order for version `token`, the way Secrets Manager
/// does after `RotateSecret`; stops at the first failure. Blocks: from an async test, call it
/// inside `tokio::task::block_in_place`.
pub fn run_steps(
    host: &LambdaHost,
    secret_id: &str,
    token: &str,
) -> Result<Vec<StepRun>, StepFailure> {
    let mut done = Vec::new();
    for step in Step::ALL {
        let started = Instant::now();
        match host.invoke(&event(step.as_str(), secret_id, token)) {
            Ok(response) => done.push(StepRun {
                step,
                response,
                elapsed: started.elapsed(),
            }),
            Err(error) => return Err(StepFailure { step, error, done }),
        }
    }
    Ok(done)
}
