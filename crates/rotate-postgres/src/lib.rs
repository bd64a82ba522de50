//! The PostgreSQL rotation function: configuration (`config.rs`), the handler (`handler.rs`) and
//! the wiring of the adapters. The binaries (`main.rs`, `bin/preflight.rs`) only call these.
//!
//! This is the one crate that knows every adapter: Secrets Manager and RDS
//! (`secrets-manager`), PostgreSQL (`postgres-target`), the protocol (`rotation`) and the
//! preflight (`preflight`).

pub mod config;
pub mod handler;

pub use config::Config;
pub use handler::{Handler, Service};

use postgres_target::PostgresTarget;
use secrets_manager::{RdsTopology, SecretsManagerStore};
use std::sync::Arc;

/// The production service: Secrets Manager (through `SECRETS_MANAGER_ENDPOINT` when set), RDS
/// look-ups and PostgreSQL, configured once. No network I/O happens here.
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
        PostgresTarget::new(config.trust.clone()),
        Arc::new(rds),
        config.settings(),
        config.preflight_options(),
    )
}
