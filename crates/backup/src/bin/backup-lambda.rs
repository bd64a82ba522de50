//! AWS Lambda: scheduled encrypted snapshots of Secrets Manager secrets (and verify drills).
//! Wiring only: configuration and SDK clients are built once here, with no network I/O before
//! the first event; the logic is `backup::function`.

use backup::aws::{base_config, AwsPorts};
use backup::config::BackupConfig;
use backup::function::Function;
use backup::metrics::DEFAULT_NAMESPACE;
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_support::init_json_logging();
    let config = match BackupConfig::from_env() {
        Ok(config) => config,
        // As the rotation function does: every event fails with the reason, naming the
        // variable, so the problem shows in the alarm and the failure destination.
        Err(e) => return serve_config_error(e.to_string()).await,
    };
    let base = base_config().await;
    let ports = AwsPorts::new(
        &base,
        &config.bucket,
        config.destination_region.as_deref(),
        config.role_arn.as_deref(),
        config.external_id.as_deref(),
        config.kms_key_id.as_deref(),
        config.s3_kms_key_id.as_deref(),
    )
    .await;
    let function = Function {
        secrets: Box::new(ports.secrets),
        store: Box::new(ports.store),
        keys: Box::new(ports.keys),
        identity: Box::new(ports.identity),
        source_region: ports.source_region,
        destination_region: ports.destination_region,
        metrics_namespace: std::env::var("BACKUP_METRICS_NAMESPACE")
            .unwrap_or_else(|_| DEFAULT_NAMESPACE.into()),
        emit: Box::new(|line| println!("{line}")),
        config,
    };
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let result = function.handle(event.payload).await;
        if let Err(e) = &result {
            tracing::error!(error_type = e.error_type, error = %e.message, "invocation failed");
        }
        result
    }))
    .await
}

async fn serve_config_error(message: String) -> Result<(), lambda_runtime::Error> {
    let message = &message;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        tracing::error!(error_type = "InvalidConfiguration", error = %message, "invocation failed");
        Err::<Value, _>(Diagnostic {
            error_type: "InvalidConfiguration".into(),
            error_message: message.clone(),
        })
    }))
    .await
}
