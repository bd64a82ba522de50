//! The crash part of `make demo`: the function is killed (abort, as a Lambda timeout or an
//! out-of-memory kill would) right after setSecret's `ALTER ROLE` committed, through the fail
//! point `pg.alter_role_password.after` (`crates/failpoints`, compiled into the debug builds the
//! demo runs, never into a release build). Then Secrets Manager's part: a new execution
//! environment retries setSecret and the rotation completes. Never prints a value.

use testkit::failpoints::abort_at;
use testkit::lambda::LambdaHost;
use testkit::postgres::PgServer;
use testkit::rotation::{event, AWSCURRENT, AWSPENDING};

/// Where the function is killed.
const POINT: &str = "pg.alter_role_password.after";

async fn password(sm: &aws_sdk_secretsmanager::Client, arn: &str, stage: &str) -> String {
    let (_, value) = testkit::secrets::stage_json(sm, arn, stage)
        .await
        .expect("stage exists");
    value["password"].as_str().expect("password").to_string()
}

async fn start(env: &[(String, String)]) -> LambdaHost {
    let env = env.to_vec();
    tokio::task::spawn_blocking(move || {
        LambdaHost::start(&testkit::binary("rotate-postgres"), &env)
    })
    .await
    .unwrap()
}

/// Runs the crash demo on the single-user secret `arn`; `true` when everything checked out.
pub async fn run(
    pg: &PgServer,
    moto: &testkit::moto::Moto,
    sm: &aws_sdk_secretsmanager::Client,
    arn: &str,
    env: &[(String, String)],
) -> bool {
    println!("\n== Killed mid-rotation, then retried as Secrets Manager does ==\n");
    let token = moto.begin_rotation(sm, arn).await;
    let mut killing = env.to_vec();
    killing.push(("FAILPOINTS".into(), abort_at(POINT, 0)));
    let first = start(&killing).await;
    let invoke = |host: &LambdaHost, step: &str| {
        tokio::task::block_in_place(|| host.invoke(&event(step, arn, &token)))
    };
    if let Err(e) = invoke(&first, "createSecret") {
        println!("  createSecret FAILED: {e}");
        return false;
    }
    println!("  createSecret   AWSPENDING stored");
    match invoke(&first, "setSecret") {
        Err(e) if e.error_type == "Runtime.ExitError" => println!(
            "  setSecret      the process died (abort) right after ALTER ROLE committed, before answering"
        ),
        Err(e) => {
            println!("  setSecret FAILED, but not by the kill: {e}");
            return false;
        }
        Ok(_) => {
            println!("  setSecret      answered: this build has no fail points (skipped)");
            return true;
        }
    }
    let first_output = first.stop();
    let current = password(sm, arn, AWSCURRENT).await;
    let pending = password(sm, arn, AWSPENDING).await;
    let current_ok = pg.try_login("app", &current, "postgres").await.is_ok();
    let pending_ok = pg.try_login("app", &pending, "postgres").await.is_ok();
    println!(
        "  after the kill: AWSCURRENT logs in: {}, AWSPENDING logs in: {}",
        super::yes_no(current_ok),
        super::yes_no(pending_ok)
    );

    // Lambda starts a new execution environment; Secrets Manager retries the failed step.
    let second = start(env).await;
    let mut ok = current_ok || pending_ok;
    for step in ["setSecret", "testSecret", "finishSecret"] {
        match invoke(&second, step) {
            Ok(answer) => println!(
                "  {step:<14} {} (new process)",
                answer["outcome"].as_str().unwrap_or("?")
            ),
            Err(e) => {
                println!("  {step:<14} FAILED: {e}");
                ok = false;
            }
        }
    }
    let output = format!("{first_output}{}", second.stop());
    let now = password(sm, arn, AWSCURRENT).await;
    let now_ok = pg.try_login("app", &now, "postgres").await.is_ok();
    let leaked = [&current, &pending, &now]
        .iter()
        .any(|p| output.contains(p.as_str()));
    println!(
        "  AWSCURRENT is the new password and logs in: {}",
        super::yes_no(now == pending && now_ok)
    );
    println!(
        "  function output contains a password: {}",
        super::yes_no(leaked)
    );
    ok && now == pending && now_ok && !leaked
}
