//! The PostgreSQL rotation function: configuration (`config.rs`), the handler (`handler.rs`) and
//! the wiring of the adapters. The binaries (`main.rs`, `bin/preflight.rs`) only call these.
//!
//! This is the one crate that knows every adapter: Secrets Manager and RDS
//! (`secrets-manager`), PostgreSQL (`postgres-target`), the protocol (`rotation`) and the
//! preflight (`preflight`).

pub mod config;
pub mod handler;
pub mod untrusted;

pub use config::Config;
pub use handler::{Handler, Service};

use postgres_target::PostgresTarget;
use rotation::Sleeper;
use rotation_signals::{EventPublisher, SignalsObserver};
use secrets_manager::{RdsTopology, SecretsManagerStore};
use std::sync::Arc;
use std::time::Duration;

/// The rotator's [`Sleeper`]: tokio's timer (testSecret's wait for a standby).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

#[async_trait::async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// The SDK configuration of both binaries: the environment's, with the function's bounded
/// retries and timeouts (`config.sdk`; an invalid configuration keeps the ROTATION limits, and
/// every invocation fails with it anyway). Does no network I/O.
pub async fn sdk_config(
    config: Result<&Config, &lambda_support::ConfigError>,
) -> aws_config::SdkConfig {
    let limits = config
        .map(|c| c.sdk)
        .unwrap_or(lambda_support::SdkLimits::ROTATION);
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(limits.retry_config())
        .timeout_config(limits.timeout_config())
        .load()
        .await
}

/// The production service: Secrets Manager (through `SECRETS_MANAGER_ENDPOINT` when set), RDS
/// look-ups and PostgreSQL, testSecret's replica wait on tokio's timer, and the signals
/// observer (EMF per step on stdout; EventBridge events when `ROTATION_EVENT_BUS` is set),
/// configured once. No network I/O happens here.
pub fn build_service(
    config: &Config,
    sdk: &aws_config::SdkConfig,
) -> Service<SecretsManagerStore, PostgresTarget> {
    let mut sm = aws_sdk_secretsmanager::config::Builder::from(sdk);
    if let Some(endpoint) = &config.secrets_manager_endpoint {
        sm = sm.endpoint_url(endpoint);
    }
    let store = SecretsManagerStore::new(aws_sdk_secretsmanager::Client::from_conf(sm.build()));
    let rds = RdsTopology::new(aws_sdk_rds::Client::new(sdk));
    Service::new(
        store,
        PostgresTarget::new(config.trust.clone())
            .with_password_encryption(config.password_encryption)
            .with_connect_timeout(config.db_timeout),
        Arc::new(rds),
        config.settings(),
        config.preflight_options(),
    )
    .with_replica_wait(config.replica_wait, Arc::new(TokioSleeper))
    .with_observer(Arc::new(signals(config, sdk)))
}

/// The signals observer: EMF lines on stdout for the function (`AWS_LAMBDA_FUNCTION_NAME`, else
/// `rotate-postgres`), and events on `ROTATION_EVENT_BUS` when set.
pub fn signals(config: &Config, sdk: &aws_config::SdkConfig) -> SignalsObserver {
    let publisher = config
        .event_bus
        .clone()
        .map(|bus| EventPublisher::new(aws_sdk_eventbridge::Client::new(sdk), bus));
    let function = config
        .function_name
        .clone()
        .unwrap_or_else(|| "rotate-postgres".into());
    SignalsObserver::to_stdout(function, publisher)
}
