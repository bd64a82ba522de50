//! Lambda entry point: read configuration once, build clients once, serve events.

use rotate_postgres::{build_service, sdk_config, Config, Handler};

/// What `--help` prints.
const USAGE: &str = "\
rotate-postgres: the AWS Lambda function that rotates a PostgreSQL password kept in AWS Secrets
Manager (single user or alternating users), and answers {\"preflight\": true} events.

Usage: rotate-postgres        (run by Lambda: serves events from AWS_LAMBDA_RUNTIME_API)
       rotate-postgres --help (this text; starts nothing)

Environment (all optional): ROTATION_STRATEGY (single | alternating), DB_CA_BUNDLE,
DB_CA_BUNDLE_ONLY, ALTERNATING_SHARED_OWNER, PASSWORD_ENCRYPTION, PASSWORD_LENGTH,
EXCLUDE_CHARACTERS, EXCLUDE_NUMBERS, EXCLUDE_PUNCTUATION, EXCLUDE_UPPERCASE, EXCLUDE_LOWERCASE,
REQUIRE_EACH_INCLUDED_TYPE, SECRETS_MANAGER_ENDPOINT, TEST_SECRET_REPLICA_WAIT_SECONDS,
ROTATION_EVENT_BUS, AWS_LAMBDA_LOG_LEVEL; and the AWS SDK's variables. See the README.
";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_support::exit_on_help(USAGE);
    lambda_support::init_json_logging();
    let config = Config::from_env();
    let sdk = sdk_config(config.as_ref()).await;
    let handler = Handler::new(config.map(|c| build_service(&c, &sdk)));
    lambda_runtime::run(lambda_runtime::service_fn(|event| handler.handle(event))).await
}
