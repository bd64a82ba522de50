//! Preflight end to end: the real `preflight` CLI and the `{"preflight": true}` event of the real
//! `rotate-postgres` binary, against a real PostgreSQL with TLS and moto.

use e2e::alternating::{
    master_json, rds_fixture, setup_roles, user_json, APP_PASSWORD, MASTER_PASSWORD,
};
use e2e::{assert_no_secrets, World};
use rotation::AWSCURRENT;
use serde_json::{json, Value};
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `preflight --secret-id <id> [args]` with the function's environment.
async fn preflight(world: &World, secret_id: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let env = world.lambda_env(env);
    let mut command_args = vec!["--secret-id".to_string(), secret_id.to_string()];
    command_args.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        let output = Command::new(testkit::binary("preflight"))
            .args(&command_args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .output()
            .expect("run preflight");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// The checks of a JSON report: name → (status, detail, fix).
fn checks(report: &Value) -> Vec<(String, String, String, String)> {
    report["preflight"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
                c["fix"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn status_of(report: &Value, name: &str) -> (String, String, String) {
    checks(report)
        .into_iter()
        .find(|c| c.0 == name)
        .map(|c| (c.1, c.2, c.3))
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

async fn json_report(world: &World, secret_id: &str, env: &[(&str, &str)]) -> (i32, Value, String) {
    let run = preflight(world, secret_id, &["--json"], env).await;
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("preflight --json printed no JSON ({e}): {}", run.all()));
    (run.code, report, run.all())
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_secrets_pass_every_check_from_the_cli_and_the_lambda_event() {
    let world = World::start().await;
    setup_roles(&world).await;
    let master_arn = world
        .create_secret("rds/master", &master_json(&world))
        .await;
    let alternating = world
        .create_secret(
            "prod/app",
            &user_json(&world, "app", APP_PASSWORD, &master_arn),
        )
        .await;
    world.create_role("single", "Single-Password-1").await;
    let single = world
        .create_secret(
            "prod/single",
            &world.secret_json("single", "Single-Password-1"),
        )
        .await;
    // Rotation enabled with a function attached, and no rotation left in progress: rotate once.
    let lambda = world
        .rotation_lambda(&[("AWS_LAMBDA_FUNCTION_NAME", "rotation-under-test")])
        .await;
    lambda.rotate(&world, &alternating).await;
    lambda.rotate(&world, &single).await;
    let mut secrets = vec![
        APP_PASSWORD.to_string(),
        MASTER_PASSWORD.to_string(),
        "Single-Password-1".to_string(),
        world.password_at(&alternating, AWSCURRENT).await,
        world.password_at(&single, AWSCURRENT).await,
    ];
    secrets.sort();

    for (arn, expected) in [
        (
            &alternating,
            vec![
                "secret",
                "secret-json",
                "engine",
                "strategy",
                "host-reachable",
                "tls",
                "current-login",
                "alternate-user",
                "master-secret",
                "master-host",
                "master-login",
                "master-create-role",
                "ownership",
                "rotation",
                "pending-version",
                "permissions",
            ],
        ),
        (
            &single,
            vec![
                "secret",
                "secret-json",
                "engine",
                "strategy",
                "host-reachable",
                "tls",
                "current-login",
                "rotation",
                "pending-version",
                "permissions",
            ],
        ),
    ] {
        let text = preflight(&world, arn, &[], &[]).await;
        println!("{}", text.stdout); // shown with --nocapture and on failure
        assert_eq!(text.code, 0, "{}", text.all());
        assert!(text.stdout.contains("Result: OK (0 of"), "{}", text.stdout);
        assert!(!text.stdout.contains("FAIL"), "{}", text.stdout);
        assert_no_secrets(&text.all(), &secrets);

        let (code, report, all) = json_report(&world, arn, &[]).await;
        assert_eq!(code, 0);
        assert_eq!(report["preflight"]["ok"], json!(true));
        let got = checks(&report);
        assert_eq!(
            got.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            expected,
            "{report:#}"
        );
        for (name, status, detail, _) in &got {
            let want = if ["strategy", "ownership", "permissions"].contains(&name.as_str()) {
                "info"
            } else {
                "pass"
            };
            assert_eq!(status, want, "{name}: {detail}");
        }
        assert_no_secrets(&all, &secrets);

        // The same checks as a Lambda event, inside the function.
        let event = json!({"preflight": true, "SecretId": arn});
        let response = tokio::task::block_in_place(|| lambda.host.invoke(&event)).unwrap();
        assert_eq!(response["preflight"]["ok"], json!(true), "{response:#}");
        assert_eq!(
            checks(&response)
                .iter()
                .map(|c| (c.0.clone(), c.1.clone()))
                .collect::<Vec<_>>(),
            got.iter()
                .map(|c| (c.0.clone(), c.1.clone()))
                .collect::<Vec<_>>()
        );
    }
    let (_, detail, _) = status_of(
        &json_report(&world, &alternating, &[]).await.1,
        "master-create-role",
    );
    assert!(detail.contains("master has CREATEROLE"), "{detail}");
    assert!(detail.contains("app exists"), "{detail}"); // AWSCURRENT is app_clone after one rotation
    let (_, detail, _) = status_of(
        &json_report(&world, &alternating, &[]).await.1,
        "permissions",
    );
    assert!(detail.contains(&master_arn), "{detail}");
    assert!(detail.contains("rds:DescribeDBInstances"), "{detail}");
    assert_no_secrets(&lambda.output(), &secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_broken_secret_fails_the_right_check_with_its_fix() {
    let world = World::start().await;
    setup_roles(&world).await;
    world
        .pg
        .exec("CREATE ROLE weak LOGIN PASSWORD 'Weak-Password-1'")
        .await;
    let master_arn = world
        .create_secret("rds/master", &master_json(&world))
        .await;
    let mut weak = master_json(&world);
    weak["username"] = json!("weak");
    weak["password"] = json!("Weak-Password-1");
    let weak_arn = world.create_secret("rds/weak", &weak).await;
    let secrets = vec![
        APP_PASSWORD.to_string(),
        MASTER_PASSWORD.to_string(),
        "Weak-Password-1".to_string(),
        "Wrong-Password-1".to_string(),
        "Broken-Password-1".to_string(),
    ];

    // Bad JSON: the value is cut off.
    let bad = world
        .sm
        .create_secret()
        .name("bad-json")
        .secret_string("{\"engine\": \"postgres\", \"password\": \"Broken-Password-1\", \"host\": ")
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    // Wrong password.
    let wrong = world
        .create_secret(
            "wrong-password",
            &user_json(&world, "app", "Wrong-Password-1", &master_arn),
        )
        .await;
    // Unreachable: a port nothing listens on.
    let mut value = user_json(&world, "app", APP_PASSWORD, &master_arn);
    value["port"] = json!(testkit::free_port());
    let unreachable = world.create_secret("unreachable", &value).await;
    // A healthy secret, checked with the wrong CA.
    let healthy = world
        .create_secret(
            "healthy",
            &user_json(&world, "app", APP_PASSWORD, &master_arn),
        )
        .await;
    // A master without CREATEROLE.
    let weak_master = world
        .create_secret(
            "weak-master",
            &user_json(&world, "app", APP_PASSWORD, &weak_arn),
        )
        .await;
    // A wrong engine.
    let mut value = user_json(&world, "app", APP_PASSWORD, &master_arn);
    value["engine"] = json!("mysql");
    let mysql = world.create_secret("mysql", &value).await;

    let wrong_ca = world.pg.wrong_ca_pem_path().display().to_string();
    for (arn, env, check, detail_has, fix_has) in [
        (&bad, vec![], "secret-json", "not valid JSON", "JSON object"),
        (
            &wrong,
            vec![],
            "current-login",
            "authentication failed for user \"app\"",
            "ALTER ROLE",
        ),
        (
            &unreachable,
            vec![],
            "host-reachable",
            "cannot reach 127.0.0.1",
            "security group",
        ),
        (
            &healthy,
            vec![("DB_CA_BUNDLE", wrong_ca.as_str())],
            "tls",
            "certificate",
            "DB_CA_BUNDLE",
        ),
        (
            &weak_master,
            vec![],
            "master-create-role",
            "weak has neither CREATEROLE nor SUPERUSER",
            "ALTER ROLE weak CREATEROLE",
        ),
        (
            &mysql,
            vec![],
            "engine",
            "field 'engine' is invalid",
            "postgres",
        ),
    ] {
        let (code, report, all) = json_report(&world, arn, &env).await;
        assert_eq!(code, 1, "{check}: exit status\n{all}");
        assert_eq!(report["preflight"]["ok"], json!(false));
        let (status, detail, fix) = status_of(&report, check);
        assert_eq!(status, "fail", "{check}: {detail}\n{report:#}");
        assert!(
            detail.contains(detail_has),
            "{check}: {detail_has:?} in {detail:?}"
        );
        assert!(fix.contains(fix_has), "{check}: {fix_has:?} in {fix:?}");
        assert_no_secrets(&all, &secrets);

        let text = preflight(&world, arn, &[], &env).await;
        println!("{}", text.stdout);
        assert_eq!(text.code, 1);
        assert!(
            text.stdout
                .lines()
                .any(|l| l.trim_start().starts_with("FAIL") && l.contains(check)),
            "{}",
            text.stdout
        );
        assert!(text.stdout.contains("fix: "), "{}", text.stdout);
        assert!(text.stdout.contains("Result: FAIL"), "{}", text.stdout);
        assert_no_secrets(&text.all(), &secrets);
    }

    // What a failure leaves unchecked is skipped, not failed twice.
    let (_, report, _) = json_report(&world, &unreachable, &[]).await;
    assert_eq!(status_of(&report, "tls").0, "skip");
    assert_eq!(status_of(&report, "current-login").0, "skip");
    let (_, report, _) = json_report(&world, &healthy, &[("DB_CA_BUNDLE", &wrong_ca)]).await;
    assert_eq!(status_of(&report, "host-reachable").0, "pass");
    assert_eq!(status_of(&report, "current-login").0, "skip");
    // Rotation not enabled yet is a warning: preflight runs before it is enabled.
    let (status, _, fix) = status_of(&report, "rotation");
    assert_eq!(status, "warn");
    assert!(fix.contains("rotate-secret"), "{fix}");

    // Usage errors exit 2.
    let run = preflight(&world, &healthy, &["--strategy", "both"], &[]).await;
    assert_eq!(run.code, 2, "{}", run.all());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_managed_master_secret_is_resolved_and_its_host_checked() {
    let world = World::start().await;
    setup_roles(&world).await;
    let f = rds_fixture(&world).await;
    let arn = world
        .create_secret(
            "managed",
            &user_json(&world, "app", APP_PASSWORD, &f.primary_secret),
        )
        .await;
    let (_, managed) = world.stage(&f.primary_secret, AWSCURRENT).await.unwrap();
    let (code, report, all) = json_report(&world, &arn, &[]).await;
    assert_eq!(code, 1);
    let (status, detail, _) = status_of(&report, "master-secret");
    assert_eq!(status, "pass", "{detail}");
    for expected in [
        f.primary_host.as_str(),
        "aws:rds:primaryDBInstanceArn",
        f.primary_arn.as_str(),
        "user admin",
    ] {
        assert!(detail.contains(expected), "{expected} in {detail}");
    }
    let (status, detail, fix) = status_of(&report, "master-host");
    assert_eq!(status, "fail", "{detail}");
    assert!(detail.contains("127.0.0.1 is not the endpoint"), "{detail}");
    assert!(fix.contains("read replica"), "{fix}");
    // As setSecret, the preflight does not log in as a master it would refuse (and nothing
    // listens at moto's endpoint anyway).
    assert_eq!(status_of(&report, "master-login").0, "skip");
    assert_eq!(status_of(&report, "master-create-role").0, "skip");
    assert_eq!(status_of(&report, "current-login").0, "pass");
    assert_no_secrets(
        &all,
        &[
            managed["password"].as_str().unwrap().to_string(),
            APP_PASSWORD.into(),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unrelated_clone_role_is_a_preflight_fail_and_the_rotation_leaves_it_alone() {
    let (world, arn) = alternating_world(e2e::alternating::RoleModel::RdsMaster).await;
    // A role with the alternate's name that is not this secret's alternate (never granted app).
    world
        .pg
        .exec("CREATE ROLE app_clone LOGIN PASSWORD 'Unrelated-Password-1'")
        .await;

    // Preflight predicts the failure, with the fix.
    let (code, report, _) = json_report(&world, &arn, &[]).await;
    assert_eq!(code, 1, "{report:#}");
    let (status, detail, fix) = status_of(&report, "master-create-role");
    assert_eq!(status, "fail", "{detail}");
    assert!(
        detail.contains("app_clone exists but is not a member of app"),
        "{detail}"
    );
    assert!(fix.contains("GRANT app TO app_clone"), "{fix}");

    // The rotation then fails in setSecret, and the unrelated role keeps its password.
    let lambda = world.rotation_lambda(&[]).await;
    let token = world.begin_rotation(&arn).await;
    lambda.step("createSecret", &arn, &token).unwrap();
    let err = lambda
        .step("setSecret", &arn, &token)
        .expect_err("the unrelated role is refused")
        .to_string();
    assert!(err.contains("not a member of"), "{err}");
    assert!(e2e::alternating::logs_in(&world, "app_clone", "Unrelated-Password-1").await);
    assert!(e2e::alternating::logs_in(&world, "app", APP_PASSWORD).await);
    assert_no_secrets(
        &lambda.output(),
        &["Unrelated-Password-1".to_string(), APP_PASSWORD.to_string()],
    );
}

/// A world with `app` made under `model`, the master and app secrets, and a rotation function.
async fn alternating_world(model: e2e::alternating::RoleModel) -> (World, String) {
    let world = World::start().await;
    e2e::alternating::setup_roles_by(&world, model).await;
    let master_arn = world
        .create_secret("rds/master", &master_json(&world))
        .await;
    let arn = world
        .create_secret(
            "prod/app",
            &user_json(&world, "app", APP_PASSWORD, &master_arn),
        )
        .await;
    (world, arn)
}

/// Preflight's verdict on `master-create-role`, then the rotation: on PostgreSQL 16+ both name
/// `missing` and its `grant`, and nothing changes; before 16 both succeed.
async fn assert_master_privilege_rule(world: &World, arn: &str, missing: &str, grant: &str) {
    let needs_it = world.pg.major() >= 16;
    let (code, report, _) = json_report(world, arn, &[]).await;
    let (status, detail, fix) = status_of(&report, "master-create-role");
    let lambda = world.rotation_lambda(&[]).await;
    let token = world.begin_rotation(arn).await;
    lambda.step("createSecret", arn, &token).unwrap();
    let set = lambda.step("setSecret", arn, &token);
    if needs_it {
        assert_eq!((code, status.as_str()), (1, "fail"), "{detail}");
        assert!(detail.contains(missing), "{detail}");
        assert!(fix.contains(grant), "{fix}");
        let err = set.expect_err("setSecret needs the privilege").to_string();
        assert!(err.contains(missing) && err.contains(grant), "{err}");
        // Nothing changed.
        assert!(!e2e::alternating::role_exists(world, "app_clone").await);
        assert!(e2e::alternating::logs_in(world, "app", APP_PASSWORD).await);
    } else {
        assert_eq!((code, status.as_str()), (0, "pass"), "{detail}");
        set.expect("before PostgreSQL 16 CREATEROLE is enough");
    }
    assert_no_secrets(&lambda.output(), &[APP_PASSWORD.to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_made_by_someone_else_needs_admin_option_on_16_and_later() {
    let (world, arn) = alternating_world(e2e::alternating::RoleModel::Superuser).await;
    assert_master_privilege_rule(
        &world,
        &arn,
        "ADMIN OPTION on role app",
        "GRANT \"app\" TO \"master\" WITH ADMIN OPTION",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn copying_createdb_needs_createdb_on_16_and_later() {
    let (world, arn) = alternating_world(e2e::alternating::RoleModel::RdsMaster).await;
    world.pg.exec("ALTER ROLE master NOCREATEDB").await;
    assert_master_privilege_rule(&world, &arn, "CREATEDB", "ALTER ROLE \"master\" CREATEDB").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_superuser_only_setting_is_skipped_with_a_warning() {
    let (world, arn) = alternating_world(e2e::alternating::RoleModel::RdsMaster).await;
    // Set by a DBA: the master (not a superuser) may not copy it.
    world
        .pg
        .exec("ALTER ROLE app SET log_statement = 'all'")
        .await;
    let (code, report, _) = json_report(&world, &arn, &[]).await;
    assert_eq!(code, 0, "{report:#}");
    let (status, detail, fix) = status_of(&report, "clone-settings");
    assert_eq!(status, "warn", "{detail}");
    assert!(detail.contains("log_statement"), "{detail}");
    assert!(
        fix.contains("GRANT SET ON PARAMETER log_statement"),
        "{fix}"
    );

    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(&world, &arn).await;
    let clone = e2e::alternating::role_profile(&world, "app_clone")
        .await
        .expect("the clone exists");
    let settings = clone.to_string();
    assert!(!settings.contains("log_statement"), "{settings}");
    assert!(settings.contains("statement_timeout"), "{settings}");
    assert!(lambda.output().contains("log_statement"));
}
