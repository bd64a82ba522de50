//! The alternating-users part of `make demo`: a master secret maintains `report` and
//! `report_clone`; two rotations switch between them while the previous credentials keep
//! working; then the `preflight` CLI checks the secret. Never prints a value.

use postgres_protocol::escape::{escape_identifier, escape_literal};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};
use testkit::lambda::LambdaHost;
use testkit::moto::Moto;
use testkit::postgres::PgServer;
use testkit::rotation::{run_steps, AWSCURRENT, AWSPREVIOUS};

async fn stage(sm: &aws_sdk_secretsmanager::Client, arn: &str, stage: &str) -> (String, String) {
    let (_, value) = testkit::secrets::stage_json(sm, arn, stage)
        .await
        .expect("stage exists");
    (
        value["username"].as_str().unwrap().to_string(),
        value["password"].as_str().unwrap().to_string(),
    )
}

/// Runs the alternating-users demo; `true` when everything checked out.
pub async fn run(pg: &PgServer, moto: &Moto, sm: &aws_sdk_secretsmanager::Client) -> bool {
    println!(
        "\n== Alternating users: a master secret maintains \"report\" and \"report_clone\" ==\n"
    );
    let master_pw = Alphanumeric.sample_string(&mut rand::rng(), 24);
    let user_pw = Alphanumeric.sample_string(&mut rand::rng(), 24);
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}; \
         CREATE ROLE {} LOGIN CONNECTION LIMIT 20 PASSWORD {}; \
         ALTER ROLE {} SET statement_timeout TO '30s'; \
         GRANT {} TO {} WITH ADMIN OPTION",
        escape_identifier("master"),
        escape_literal(&master_pw),
        escape_identifier("report"),
        escape_literal(&user_pw),
        escape_identifier("report"),
        // PostgreSQL 16+: a CREATEROLE master alters only the roles it has ADMIN OPTION on (as
        // RDS's master has on the roles it created); the README's "PostgreSQL versions and the
        // master's privileges" says so, and preflight asks for this grant.
        escape_identifier("report"),
        escape_identifier("master"),
    ))
    .await;
    let base =
        json!({"engine": "postgres", "host": pg.host(), "port": pg.port(), "dbname": "postgres"});
    let mut master = base.clone();
    master["username"] = json!("master");
    master["password"] = json!(master_pw);
    let create = |name: &'static str, value: Value| async move {
        sm.create_secret()
            .name(name)
            .secret_string(value.to_string())
            .send()
            .await
            .expect("CreateSecret")
            .arn()
            .unwrap()
            .to_string()
    };
    let master_arn = create("demo/postgres/master", master).await;
    let mut user = base;
    user["username"] = json!("report");
    user["password"] = json!(user_pw);
    user["masterarn"] = json!(master_arn);
    let arn = create("demo/postgres/report", user).await;
    println!(
        "Created roles \"master\" (CREATEROLE) and \"report\", and secret {arn} (masterarn set)"
    );

    let mut env = moto.env();
    env.push((
        "DB_CA_BUNDLE".into(),
        pg.ca_pem_path().display().to_string(),
    ));
    let env_for_preflight = env.clone();
    let host = tokio::task::spawn_blocking(move || {
        LambdaHost::start(&testkit::binary("rotate-postgres"), &env)
    })
    .await
    .unwrap();

    let mut ok = true;
    let mut seen = vec![master_pw.clone(), user_pw.clone()];
    for round in 1..=2 {
        let token = moto.begin_rotation(sm, &arn).await;
        let outcomes: Vec<String> =
            match tokio::task::block_in_place(|| run_steps(&host, &arn, &token)) {
                Ok(done) => done.iter().map(|s| s.outcome().to_string()).collect(),
                Err(failure) => {
                    println!("  {} FAILED: {}", failure.step, failure.error);
                    return false;
                }
            };
        let (cur_user, cur_pw) = stage(sm, &arn, AWSCURRENT).await;
        let (prev_user, prev_pw) = stage(sm, &arn, AWSPREVIOUS).await;
        let cur_ok = pg.try_login(&cur_user, &cur_pw, "postgres").await.is_ok();
        let prev_ok = pg.try_login(&prev_user, &prev_pw, "postgres").await.is_ok();
        println!(
            "  rotation {round}: {}\n    AWSCURRENT  {cur_user:<13} logs in: {}\n    AWSPREVIOUS {prev_user:<13} logs in: {} (still valid until the next rotation)",
            outcomes.join(" → "),
            super::yes_no(cur_ok),
            super::yes_no(prev_ok)
        );
        ok &= cur_ok && prev_ok;
        seen.push(cur_pw);
    }
    let output = host.stop();
    let leaked = seen.iter().any(|p| output.contains(p.as_str()));
    println!(
        "  function output contains a password: {}",
        super::yes_no(leaked)
    );
    ok &= !leaked;

    println!("\n== Preflight: preflight --secret-id {arn} ==\n");
    let preflight = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(testkit::binary("preflight"));
        command
            .args(["--secret-id", &arn])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env_for_preflight);
        testkit::cleanup::output(&mut command, "stop preflight").expect("run preflight")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&preflight.stdout);
    print!("{report}");
    let leaked = seen.iter().any(|p| report.contains(p.as_str()));
    ok && preflight.status.success() && !leaked
}
