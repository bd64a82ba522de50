//! `preflight --secret-id X`: can this secret rotate? Changes nothing.
//!
//! Reads the same environment as the rotation function (`DB_CA_BUNDLE`, `DB_CA_BUNDLE_ONLY`,
//! `ROTATION_STRATEGY`, `ALTERNATING_SHARED_OWNER`, `SECRETS_MANAGER_ENDPOINT`, the AWS SDK's
//! variables) and runs the checks of the `{"preflight": true}` event. Exit status: 0 when no
//! check failed, 1 when one did, 2 for a usage or configuration error.

use clap::Parser;
use rotate_postgres::config::{tls_trust, STRATEGY_EXPECTED};
use rotate_postgres::{build_service, Config};
use rotation::Strategy;
use std::path::PathBuf;
use std::process::ExitCode;

/// Checks whether a PostgreSQL secret in AWS Secrets Manager can be rotated, without changing
/// anything: secret JSON, engine, host reachable, TLS, AWSCURRENT login, (alternating users) the
/// master secret, its login, CREATEROLE and replica relationship, rotation settings, and the
/// permissions the rotation function's role needs.
#[derive(Debug, Parser)]
#[command(name = "preflight", version)]
struct Args {
    /// The secret's ARN or name.
    #[arg(long)]
    secret_id: String,
    /// Print the report as JSON (the Lambda event's answer) instead of text.
    #[arg(long)]
    json: bool,
    /// PEM file of extra trusted CAs (default: DB_CA_BUNDLE).
    #[arg(long)]
    ca_bundle: Option<PathBuf>,
    /// Trust only the CAs of the bundle (default: DB_CA_BUNDLE_ONLY).
    #[arg(long)]
    ca_bundle_only: bool,
    /// Force a strategy, single or alternating (default: ROTATION_STRATEGY, else masterarn decides).
    #[arg(long)]
    strategy: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("preflight: {e}");
            return ExitCode::from(2);
        }
    };
    if args.ca_bundle.is_some() || args.ca_bundle_only {
        let bundle = args
            .ca_bundle
            .or_else(|| config.trust.ca_bundle().map(PathBuf::from));
        let only = args.ca_bundle_only || config.trust.bundle_only();
        match tls_trust(bundle, only) {
            Ok(trust) => config.trust = trust,
            Err(e) => {
                eprintln!("preflight: --ca-bundle-only: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(strategy) = &args.strategy {
        match Strategy::from_name(strategy) {
            Some(s) => config.strategy = Some(s),
            None => {
                eprintln!("preflight: --strategy: {STRATEGY_EXPECTED}");
                return ExitCode::from(2);
            }
        }
    }
    let sdk = rotate_postgres::sdk_config(Ok(&config)).await;
    let report = build_service(&config, &sdk)
        .preflight(&args.secret_id)
        .await;
    if args.json {
        println!("{:#}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
