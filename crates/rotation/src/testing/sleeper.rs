//! [`RecordingSleeper`]: a [`Sleeper`] that returns at once and remembers every wait.

use crate::wait::Sleeper;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Remembers each wait it was asked for, and does not wait.
#[derive(Debug, Clone, Default)]
pub struct RecordingSleeper {
    waits: Arc<Mutex<Vec<Duration>>>,
}

impl RecordingSleeper {
    /// No waits yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every wait so far, in order.
    pub fn waits(&self) -> Vec<Duration> {
        self.waits.lock().unwrap().clone()
    }
}

#[async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, duration: Duration) {
        self.waits.lock().unwrap().push(duration);
    }
}
