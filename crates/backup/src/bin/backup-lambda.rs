//! AWS Lambda: scheduled encrypted snapshots of Secrets Manager secrets (and verify drills).
//! Wiring only: configuration and SDK clients are built once here, with no network I/O before
//! the first event; the logic is `backup::lambda::function`.

use std::sync::Arc;

use backup::lambda::config::BackupConfig;
use backup::lambda::function::Function;
use backup::ports::aws::{base_config, AwsPorts, AwsSpokes};
use backup::ports::limited::{RateLimited, PUBLISHED};
use lambda_runtime::{service_fn, LambdaEvent};
use lambda_support::InvocationError;
use serde_json::Value;

/// What `--help` prints.
const USAGE: &str = "\
backup-lambda: the AWS Lambda function that writes encrypted snapshots of AWS Secrets Manager
secrets to S3 on a schedule (and runs verify drills).

Usage: backup-lambda        (run by Lambda: serves events from AWS_LAMBDA_RUNTIME_API)
       backup-lambda --help (this text; starts nothing)

Environment: BACKUP_BUCKET (required), BACKUP_SIGNING_KEY_ID (required: the manifest signing key),
BACKUP_KMS_KEY_ID (required for backups), BACKUP_PREFIX,
BACKUP_S3_KMS_KEY_ID, BACKUP_ROLE_ARN, BACKUP_ROLE_EXTERNAL_ID, BACKUP_REGION,
BACKUP_S3_FORCE_PATH_STYLE, BACKUP_NAME_PREFIXES, BACKUP_TAGS, BACKUP_CONCURRENCY,
BACKUP_PART_SIZE, BACKUP_METRICS_NAMESPACE, BACKUP_EXPECTED_UNREADABLE, BACKUP_LEASE_SECONDS,
BACKUP_QUOTA_SHARE, BACKUP_DEADLINE_MARGIN_SECONDS, BACKUP_LIST_PAGE_SIZE,
BACKUP_SOURCE_ACCOUNTS, BACKUP_SOURCE_REGIONS, BACKUP_SOURCE_ROLE_NAME, BACKUP_SOURCE_EXTERNAL_ID,
AWS_LAMBDA_LOG_LEVEL; and the AWS SDK's variables.
See the README.
";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_support::exit_on_help(USAGE);
    lambda_support::init_json_logging();
    let config = match BackupConfig::from_env() {
        Ok(config) => config,
        // As the rotation function does: every event fails with the reason, naming the
        // variable, so the problem shows in the alarm and the failure destination.
        Err(e) => {
            return serve_config_error(InvocationError::invalid_configuration(e.to_string())).await
        }
    };
    let base = base_config(&config.sdk).await;
    let ports = AwsPorts::new(&base, &config.aws_settings()).await;
    // Every Secrets Manager read through the limiter: BACKUP_QUOTA_SHARE of the quotas.
    let secrets = RateLimited::new(
        Arc::new(ports.secrets),
        f64::from(config.quota_share_percent) / 100.0,
        PUBLISHED,
    );
    // A hub: its spokes through their read-only role (BACKUP_SOURCE_*).
    let spokes = config.hub.clone().map(|hub| {
        Arc::new(AwsSpokes::new(
            base.clone(),
            hub,
            f64::from(config.quota_share_percent) / 100.0,
        )) as Arc<dyn backup::ports::SourceAccess>
    });
    let function = Function {
        spokes,
        secrets: Arc::new(secrets),
        store: Arc::new(ports.store),
        keys: Arc::new(ports.keys),
        identity: Arc::new(ports.identity),
        source_region: ports.source_region,
        destination_region: ports.destination_region,
        emit: Box::new(|line| println!("{line}")),
        config,
    };
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // The invocation's deadline (milliseconds since the epoch) as an Instant.
        let left = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.context.deadline);
        let deadline = left
            .duration_since(std::time::SystemTime::now())
            .ok()
            .map(|d| std::time::Instant::now() + d);
        let result = function.handle_until(event.payload, deadline).await;
        if let Err(e) = &result {
            tracing::error!(error_type = %e.error_type, error = %e.message, "invocation failed");
        }
        result
    }))
    .await
}

async fn serve_config_error(error: InvocationError) -> Result<(), lambda_runtime::Error> {
    let error = &error;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        tracing::error!(error_type = %error.error_type, error = %error.message, "invocation failed");
        Err::<Value, _>(error.clone())
    }))
    .await
}
