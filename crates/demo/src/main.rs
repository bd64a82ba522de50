//! `make demo`: starts a throwaway PostgreSQL and moto, creates a role and its secret, rotates it
//! through the real `rotate-postgres` binary behind a local Lambda Runtime API, proves the new
//! password logs in and the old one does not, and prints a short report. Never prints a value.
//! Ctrl-C (SIGINT) or SIGTERM stops and removes everything it started (`testkit::cleanup`) and
//! exits with 130 / 143.

mod alternating; // alternating users + preflight (see alternating.rs)
mod backup; // scheduled encrypted backup, verify, restore (see backup.rs)
mod crash; // killed mid-rotation, then retried (see crash.rs)

use clap::Parser;
use postgres_protocol::escape::{escape_identifier, escape_literal};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;
use testkit::lambda::LambdaHost;
use testkit::moto::Moto;
use testkit::postgres::PgServer;
use testkit::rotation::{run_steps, AWSCURRENT, AWSPREVIOUS};

type Labels = BTreeMap<String, Vec<String>>;

async fn labels(sm: &aws_sdk_secretsmanager::Client, arn: &str) -> Labels {
    testkit::secrets::labels(sm, arn).await
}

async fn password_at(sm: &aws_sdk_secretsmanager::Client, arn: &str, stage: &str) -> String {
    let (_, value) = testkit::secrets::stage_json(sm, arn, stage)
        .await
        .expect("stage exists");
    value["password"].as_str().unwrap().to_string()
}

fn print_labels(title: &str, labels: &Labels) {
    println!("  {title}");
    for (version, stages) in labels {
        println!("    {version}  {}", stages.join(", "));
    }
}

fn yes_no(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "no"
    }
}

/// `make demo`: rotate a PostgreSQL password (single user, then alternating users), run the
/// preflight, and back up, verify and restore secrets, all on this machine: a throwaway
/// PostgreSQL, moto (the AWS emulator) and the real Lambda binaries behind a local Runtime API.
/// Prints no secret value. Everything it starts is stopped and removed on exit, also on Ctrl-C
/// (SIGINT) or SIGTERM (exit status 130 / 143).
#[derive(Parser)]
#[command(name = "demo")]
struct Args {}

fn main() {
    Args::parse();
    testkit::cleanup::exit_on_signals();
    run();
    testkit::cleanup::exit(0);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn run() {
    let started = Instant::now();
    println!("== Demo: rotate a PostgreSQL password through the real Lambda binary ==\n");

    print!("Starting PostgreSQL (TLS, scram-sha-256) ... ");
    let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    println!(
        "PostgreSQL {} listening on {}:{}",
        pg.server_version(),
        pg.host(),
        pg.port()
    );
    print!("Starting moto (AWS emulator) ... ");
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    println!("{}", moto.endpoint());
    let sm = moto.secrets_client().await;

    // A role and its secret. The password is random and never printed.
    let initial = Alphanumeric.sample_string(&mut rand::rng(), 24);
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN PASSWORD {}",
        escape_identifier("app"),
        escape_literal(&initial)
    ))
    .await;
    let secret = json!({
        "engine": "postgres", "host": pg.host(), "port": pg.port(),
        "username": "app", "password": initial, "dbname": "postgres"
    });
    let arn = sm
        .create_secret()
        .name("demo/postgres/app")
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("CreateSecret")
        .arn()
        .unwrap()
        .to_string();
    println!("Created role \"app\" and secret {arn}\n");
    print_labels("Versions before rotation:", &labels(&sm, &arn).await);

    print!("\nBuilding and starting the rotate-postgres Lambda ... ");
    let mut env = moto.env();
    env.push((
        "DB_CA_BUNDLE".into(),
        pg.ca_pem_path().display().to_string(),
    ));
    let function_env = env.clone();
    let host = tokio::task::spawn_blocking(move || {
        LambdaHost::start(&testkit::binary("rotate-postgres"), &env)
    })
    .await
    .unwrap();
    println!("ok");

    let token = moto.begin_rotation(&sm, &arn).await;
    println!("Secrets Manager starts rotation with token {token}");
    println!("\n  {:<14} {:<22} {:>9}", "step", "outcome", "time");
    let run = tokio::task::block_in_place(|| run_steps(&host, &arn, &token));
    let (done, failure) = match run {
        Ok(done) => (done, None),
        Err(failure) => (failure.done.clone(), Some(failure)),
    };
    for step in &done {
        println!(
            "  {:<14} {:<22} {:>7.1} ms",
            step.step.as_str(),
            step.outcome(),
            step.elapsed.as_secs_f64() * 1000.0
        );
    }
    if let Some(failure) = failure {
        println!("  {:<14} FAILED: {}", failure.step.as_str(), failure.error);
        testkit::cleanup::exit(1);
    }
    if let Some(init) = host.init_duration() {
        println!(
            "  (cold init of the function: {:.1} ms)",
            init.as_secs_f64() * 1000.0
        );
    }
    println!();
    print_labels("Versions after rotation:", &labels(&sm, &arn).await);

    let current = password_at(&sm, &arn, AWSCURRENT).await;
    let previous = password_at(&sm, &arn, AWSPREVIOUS).await;
    let new_ok = pg.try_login("app", &current, "postgres").await.is_ok();
    let old_ok = pg.try_login("app", &previous, "postgres").await.is_ok();
    println!("\nDatabase check:");
    println!("  AWSCURRENT password logs in:  {}", yes_no(new_ok));
    println!("  AWSPREVIOUS password logs in: {}", yes_no(old_ok));
    let output = host.stop();
    let leaked = output.contains(&current) || output.contains(&previous);
    println!("  function output contains a password: {}", yes_no(leaked));
    let log_lines = output
        .lines()
        .filter(|l| l.contains("rotation step finished"))
        .count();
    println!("  JSON log lines, one per step: {log_lines}");

    let ok = new_ok && !old_ok && !leaked && log_lines == 4;
    let ok = crash::run(&pg, &moto, &sm, &arn, &function_env).await && ok; // killed, retried
    let ok = alternating::run(&pg, &moto, &sm).await && ok; // alternating users + preflight
    let ok = backup::run(&moto, &sm).await && ok; // secrets backup (see backup.rs)
    println!(
        "\nDemo {}: rotation (single and alternating users), a kill mid-rotation and its retry, preflight, backup and restore, a tampered snapshot refused, a hub backing up a spoke account, in {:.1} s.\nEverything started here is stopped and removed on exit.",
        if ok { "succeeded" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if !ok {
        testkit::cleanup::exit(1);
    }
}
