//! CloudWatch Logs over the SDK: the restore drill's summaries in its log group.
//!
//! Each event's message is the line the function printed: Lambda does not encode again a line
//! that is already JSON, and for a custom runtime (`provided.al2023`) its JSON log format shapes
//! only the platform's own lines (AWS Lambda developer guide, "Configuring JSON and plain text
//! log formats").

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::api_err;
use crate::ports::{ApiError, DrillLog, LoggedEvent};

/// The term every drill summary line holds (`"message":"verify summary"`), as a CloudWatch Logs
/// filter pattern (a quoted term: the events that contain it).
const SUMMARY_PATTERN: &str = "\"verify summary\"";

/// The drill's log group, read with FilterLogEvents.
#[derive(Clone, Debug)]
pub struct CloudWatchDrillLog {
    client: aws_sdk_cloudwatchlogs::Client,
    group: String,
}

impl CloudWatchDrillLog {
    /// The log group `group` (the template's is `/aws/lambda/<stack>-secrets-backup-drill`).
    pub fn new(client: aws_sdk_cloudwatchlogs::Client, group: impl Into<String>) -> Self {
        CloudWatchDrillLog {
            client,
            group: group.into(),
        }
    }

    /// The log group `group` of the account and region of `config` (the source's: the drill
    /// runs there).
    pub fn from_config(config: &aws_config::SdkConfig, group: impl Into<String>) -> Self {
        Self::new(aws_sdk_cloudwatchlogs::Client::new(config), group)
    }
}

#[async_trait]
impl DrillLog for CloudWatchDrillLog {
    async fn summaries(&self, since: DateTime<Utc>) -> Result<Vec<LoggedEvent>, ApiError> {
        let mut out = vec![];
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .filter_log_events()
                .log_group_name(&self.group)
                .filter_pattern(SUMMARY_PATTERN)
                .start_time(since.timestamp_millis())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| api_err(&format!("FilterLogEvents {}", self.group), e))?;
            for e in page.events() {
                let (Some(ms), Some(message)) = (e.timestamp(), e.message()) else {
                    continue;
                };
                if let Some(time) = DateTime::from_timestamp_millis(ms) {
                    out.push(LoggedEvent {
                        time,
                        message: message.to_string(),
                    });
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by_key(|e| e.time);
        Ok(out)
    }
}
