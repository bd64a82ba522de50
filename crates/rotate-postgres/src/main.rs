//! Lambda entry point: read configuration once, build clients once, serve events.

use postgres_target::PostgresTarget;
use rotate_postgres::{Config, Handler};
use rotation::Rotator;
use secrets_manager::SecretsManagerStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_support::init_json_logging();
    let config = Config::from_env();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Ok(Config {
        secrets_manager_endpoint: Some(endpoint),
        ..
    }) = &config
    {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = loader.load().await;
    let store = SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk));
    let rotator = config.map(|c| {
        Rotator::new(store, PostgresTarget::new(c.ca_bundle), c.policy)
            .with_strategy_override(c.strategy)
    });
    let handler = Handler::new(rotator);
    lambda_runtime::run(lambda_runtime::service_fn(|event| handler.handle(event))).await
}
