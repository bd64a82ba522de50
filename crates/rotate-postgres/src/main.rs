//! Lambda entry point: read configuration once, build clients once, serve events.

use rotate_postgres::{build_service, sdk_config, Config, Handler};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_support::init_json_logging();
    let config = Config::from_env();
    let sdk = sdk_config(config.as_ref()).await;
    let handler = Handler::new(config.map(|c| build_service(&c, &sdk)));
    lambda_runtime::run(lambda_runtime::service_fn(|event| handler.handle(event))).await
}
