//! The rotation's signals, through the core's observer hook (`rotation::RotationObserver`):
//!
//! * one CloudWatch Embedded Metric Format line per step on stdout ([`emf`]): duration, success
//!   or failure, a finished rotation, a failed event delivery; the step as a dimension; the
//!   outcome, strategy and error kind as properties;
//! * when a bus is configured (`ROTATION_EVENT_BUS`), one EventBridge event when a rotation
//!   succeeds (finishSecret moved AWSCURRENT) or a step fails ([`events`]): ids, step, outcome
//!   and error kind, never a value.
//!
//! An EventBridge failure never fails the step: it is logged and counted
//! ([`emf::EVENT_PUBLISH_FAILED`]). The Lambda crate builds a [`SignalsObserver`] and sets it with
//! `Rotator::with_observer`.

pub mod emf;
pub mod events;

pub use events::{EventBus, EventPublisher, EVENT_BUS_VAR};

use async_trait::async_trait;
use rotation::{Outcome, RotationObserver, StepNotice};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the EMF lines go: stdout in Lambda (CloudWatch Logs reads them from there).
pub type LineSink = Box<dyn Fn(&str) + Send + Sync>;

/// The observer of the rotation function: EMF per step, EventBridge events when configured.
pub struct SignalsObserver {
    function: String,
    sink: LineSink,
    publisher: Option<EventPublisher>,
}

impl SignalsObserver {
    /// An observer for the function named `function` (the `Function` dimension) writing its EMF
    /// lines to `sink`, and putting events through `publisher` when there is one.
    pub fn new(
        function: impl Into<String>,
        sink: LineSink,
        publisher: Option<EventPublisher>,
    ) -> Self {
        SignalsObserver {
            function: function.into(),
            sink,
            publisher,
        }
    }

    /// Like [`SignalsObserver::new`], writing to stdout (one line each, written at once).
    pub fn to_stdout(function: impl Into<String>, publisher: Option<EventPublisher>) -> Self {
        Self::new(
            function,
            Box::new(|line: &str| {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }),
            publisher,
        )
    }
}

/// Whether a step's notice ends a rotation: finishSecret moved AWSCURRENT, or found the token
/// already AWSCURRENT (success), or any step failed (failure). `None`: the rotation goes on.
///
/// A retried finishSecret tells the success again: the events are at least once (a crash
/// between moving AWSCURRENT and putting the event loses nothing, since Secrets Manager retries
/// the step); consumers deduplicate on the secret and `clientRequestToken`.
pub fn rotation_end(notice: &StepNotice<'_>) -> Option<events::RotationEnd> {
    match notice.result {
        Ok(Outcome::Finished) => Some(events::RotationEnd::Succeeded),
        Ok(Outcome::AlreadyCurrent) if notice.step == rotation::Step::FinishSecret.as_str() => {
            Some(events::RotationEnd::Succeeded)
        }
        Ok(_) => None,
        Err(_) => Some(events::RotationEnd::Failed),
    }
}

#[async_trait]
impl RotationObserver for SignalsObserver {
    async fn step_finished(&self, notice: &StepNotice<'_>) {
        let published = match (&self.publisher, rotation_end(notice)) {
            (Some(publisher), Some(end)) => {
                Some(publisher.publish(&self.function, notice, end).await)
            }
            _ => None,
        };
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let line = emf::step_line(&self.function, notice, published, timestamp_ms);
        (self.sink)(&line);
    }
}
