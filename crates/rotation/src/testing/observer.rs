//! [`RecordingObserver`]: remembers every notice, for tests of the observer hook.

use crate::observer::{RotationObserver, StepNotice};
use crate::rotator::Outcome;
use crate::settings::Strategy;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};

/// One notice as recorded: owned copies of what the observer was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The secret's ARN (or the event's id when it could not be described).
    pub secret: String,
    /// The step as named in the event.
    pub step: String,
    /// The token.
    pub token: String,
    /// The outcome, or the failure's error type and message.
    pub result: Result<Outcome, (&'static str, String)>,
    /// The strategy, when the step read a version.
    pub strategy: Option<Strategy>,
}

/// Records every notice it is given. Clones share the record.
#[derive(Debug, Clone, Default)]
pub struct RecordingObserver {
    notices: Arc<Mutex<Vec<Notice>>>,
}

impl RecordingObserver {
    /// An observer with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every notice so far, in order.
    pub fn notices(&self) -> Vec<Notice> {
        self.notices.lock().unwrap().clone()
    }

    /// Forgets the notices so far.
    pub fn clear(&self) {
        self.notices.lock().unwrap().clear();
    }
}

#[async_trait]
impl RotationObserver for RecordingObserver {
    async fn step_finished(&self, notice: &StepNotice<'_>) {
        self.notices.lock().unwrap().push(Notice {
            secret: notice.secret.to_string(),
            step: notice.step.to_string(),
            token: notice.token.to_string(),
            result: notice.result.map_err(|e| (e.error_type(), e.to_string())),
            strategy: notice.strategy,
        });
    }
}
