//! The compatibility matrix: on the running major (`TESTKIT_PG_MAJOR`, or the system's), each
//! strategy under each role model is rotated through the real binary, after preflight gave its
//! verdict, and the outcome is recorded in `target/compat/` for `tools/compat-table`, which
//! renders the README's table from those records (and `make test` checks the README agrees).
//!
//! Role models (`tests/common/alternating.rs`): `rds` — the RDS master (not a superuser) created
//! `app`; `superuser` — a DBA created `app` and the master.

use e2e::alternating::{
    logs_in, master_json, role_exists, setup_roles_by, user_json, RoleModel, APP_PASSWORD,
};
use e2e::World;
use serde_json::{json, Value};
use testkit::rotation::Step;

/// Runs one cell: preflight, then two rotations; returns (preflight verdict, outcome).
async fn cell(world: &World, arn: &str) -> (String, String) {
    let lambda = world.rotation_lambda(&[]).await;
    let failures = lambda.preflight_failures(arn);
    let verdict = if failures.is_empty() {
        "ok".to_string()
    } else {
        let names: Vec<&str> = failures
            .iter()
            .map(|f| f.split(':').next().unwrap_or(f))
            .collect();
        format!("FAIL {}", names.join(", "))
    };
    let mut outcome = String::from("rotates");
    for _ in 0..2 {
        let token = world.begin_rotation(arn).await;
        let failed = Step::ALL
            .iter()
            .find_map(|step| lambda.step(*step, arn, &token).err());
        if let Some(err) = failed {
            outcome = format!("refused: {}", err.error_type);
            if err.error_message.contains("ADMIN OPTION") {
                outcome.push_str(" (ADMIN OPTION)");
            }
            break;
        }
    }
    // Preflight is truthful: a FAIL exactly when the rotation fails.
    assert_eq!(
        verdict == "ok",
        outcome == "rotates",
        "preflight said {verdict}, the rotation {outcome}: {failures:?}"
    );
    (verdict, outcome)
}

fn record(world: &World, strategy: &str, model: &str, verdict: &str, outcome: &str) {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("compat");
    std::fs::create_dir_all(&dir).unwrap();
    let major = world.pg.major();
    let record = json!({
        "major": major,
        "server_version": world.pg.server_version(),
        "strategy": strategy,
        "role_model": model,
        "preflight": verdict,
        "outcome": outcome,
    });
    std::fs::write(
        dir.join(format!("pg{major}-{strategy}-{model}.json")),
        serde_json::to_string_pretty(&record).unwrap(),
    )
    .unwrap();
}

async fn single_user(model: RoleModel, name: &str) {
    let world = World::start().await;
    setup_roles_by(&world, model).await;
    let mut value: Value = world.secret_json("app", APP_PASSWORD);
    value["dbname"] = json!("appdb");
    let arn = world.create_secret("prod/app-single", &value).await;
    let (verdict, outcome) = cell(&world, &arn).await;
    assert_eq!(
        outcome, "rotates",
        "a user can always change its own password"
    );
    record(&world, "single", name, &verdict, &outcome);
}

async fn alternating(model: RoleModel, name: &str) {
    let world = World::start().await;
    setup_roles_by(&world, model).await;
    let master = world
        .create_secret("rds/master", &master_json(&world))
        .await;
    let arn = world
        .create_secret("prod/app", &user_json(&world, "app", APP_PASSWORD, &master))
        .await;
    let (verdict, outcome) = cell(&world, &arn).await;
    let refused = world.pg.major() >= 16 && model == RoleModel::Superuser;
    assert_eq!(outcome != "rotates", refused, "{outcome}");
    if refused {
        // Refused before any change: no clone, the original's password untouched.
        assert!(!role_exists(&world, "app_clone").await);
        assert!(logs_in(&world, "app", APP_PASSWORD).await);
    }
    record(&world, "alternating", name, &verdict, &outcome);
}

#[tokio::test(flavor = "multi_thread")]
async fn single_user_rds_role_model() {
    single_user(RoleModel::RdsMaster, "rds").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn single_user_superuser_role_model() {
    single_user(RoleModel::Superuser, "superuser").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alternating_rds_role_model() {
    alternating(RoleModel::RdsMaster, "rds").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alternating_superuser_role_model() {
    alternating(RoleModel::Superuser, "superuser").await;
}
