//! TLS modes end to end: the real `rotate-postgres` binary (the four steps and the preflight
//! event) and the `preflight` CLI against a real PostgreSQL, whose certificate names another host
//! (verify-full against verify-ca), or with the trusted roots pinned to one CA
//! (`DB_CA_BUNDLE_ONLY`). Whatever fails rotation fails the preflight's `tls` check too.

use e2e::{assert_no_secrets, Lambda, World};
use rotation::{Step, AWSCURRENT, AWSPENDING};
use serde_json::{json, Value};
use std::process::Command;

/// The only name of the server's certificate in the host-name tests; the secret says 127.0.0.1.
const CERT_NAME: &str = "db.internal.example";
const INITIAL: &str = "initial-Password-1";

/// The preflight event's report, from inside the function.
fn preflight_event(lambda: &Lambda, arn: &str) -> Value {
    let event = json!({"preflight": true, "SecretId": arn});
    tokio::task::block_in_place(|| lambda.host.invoke(&event)).expect("the preflight answers")
}

/// (status, detail, fix) of one check of a report.
fn check(report: &Value, name: &str) -> (String, String, String) {
    let checks = report["preflight"]["checks"].as_array().expect("checks");
    let found = checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"));
    let text = |key: &str| found[key].as_str().unwrap_or_default().to_string();
    (text("status"), text("detail"), text("fix"))
}

/// AWSCURRENT becomes `value` (a new version), as an operator's `put-secret-value` does.
async fn put_current(world: &World, arn: &str, value: &Value) {
    world
        .sm
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value.to_string())
        .version_stages(AWSCURRENT)
        .send()
        .await
        .expect("PutSecretValue");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_refuses_a_host_the_certificate_does_not_name_and_verify_ca_rotates() {
    let world = World::start().await;
    world.pg.serve_certificate_for(&[CERT_NAME]).await;
    let arn = world.role_with_secret("app", INITIAL).await;
    // DB_CA_BUNDLE is the CA that signed the certificate: only the name is wrong.
    let lambda = world.rotation_lambda(&[]).await;

    // verify-full (no `ssl` field): the preflight fails `tls` and says why and what to do.
    let report = preflight_event(&lambda, &arn);
    assert_eq!(report["preflight"]["ok"], json!(false), "{report:#}");
    let (status, detail, fix) = check(&report, "tls");
    println!("tls: {status} {detail}\n  fix: {fix}"); // shown with --nocapture
    assert_eq!(status, "fail", "{detail}");
    assert!(
        detail.contains("not valid for name \"127.0.0.1\"") && detail.contains(CERT_NAME),
        "{detail}"
    );
    assert!(detail.contains("verify-full against"), "{detail}");
    assert!(fix.contains("\"verify-ca\""), "{fix}");
    assert_eq!(check(&report, "current-login").0, "skip");

    // Rotation fails at setSecret with the same TLS error, and nothing changes.
    let token = world.begin_rotation(&arn).await;
    lambda.step(Step::CreateSecret, &arn, &token).unwrap();
    let err = lambda.step(Step::SetSecret, &arn, &token).unwrap_err();
    println!("setSecret: {err}");
    assert_eq!(err.error_type, "LoginFailed", "{err}");
    for needle in ["TLS failed", "not valid for name \"127.0.0.1\"", CERT_NAME] {
        assert!(err.error_message.contains(needle), "{needle}: {err}");
    }
    assert!(world.can_login("app", INITIAL).await);
    assert_eq!(world.password_at(&arn, AWSCURRENT).await, INITIAL);
    let pending = world.password_at(&arn, AWSPENDING).await;
    assert!(!world.can_login("app", &pending).await);

    // The same secret with "ssl": "verify-ca": the preflight passes and rotation succeeds (the
    // abandoned rotation's AWSPENDING is cleared first, as a new rotation does).
    world.remove_pending(&arn, &token).await;
    let mut value = world.secret_json("app", INITIAL);
    value["ssl"] = json!("verify-ca");
    put_current(&world, &arn, &value).await;
    let report = preflight_event(&lambda, &arn);
    let (status, detail, _) = check(&report, "tls");
    println!("tls: {status} {detail}");
    assert_eq!(status, "pass", "{report:#}");
    assert!(
        detail.starts_with("verify-ca: ")
            && detail.contains("the Amazon RDS CAs and DB_CA_BUNDLE")
            && detail.contains("not the public web roots"),
        "{detail}"
    );
    assert_eq!(check(&report, "current-login").0, "pass");
    lambda.rotate(&world, &arn).await;
    let (_, current) = world.stage(&arn, AWSCURRENT).await.unwrap();
    assert_eq!(current["ssl"], json!("verify-ca"), "ssl is kept");
    let password = current["password"].as_str().unwrap().to_string();
    assert!(world.can_login("app", &password).await);
    assert!(!world.can_login("app", INITIAL).await);

    // verify-ca still verifies the chain: with another CA as DB_CA_BUNDLE, both fail.
    let wrong_ca = world.pg.wrong_ca_pem_path().display().to_string();
    let wrong = world
        .rotation_lambda(&[("DB_CA_BUNDLE", wrong_ca.as_str())])
        .await;
    let report = preflight_event(&wrong, &arn);
    let (status, detail, fix) = check(&report, "tls");
    assert_eq!(status, "fail", "{detail}");
    assert!(detail.contains("UnknownIssuer"), "{detail}");
    assert!(fix.contains("DB_CA_BUNDLE"), "{fix}");
    let token = world.begin_rotation(&arn).await;
    wrong.step(Step::CreateSecret, &arn, &token).unwrap();
    let err = wrong.step(Step::SetSecret, &arn, &token).unwrap_err();
    assert!(err.error_message.contains("UnknownIssuer"), "{err}");
    assert!(world.can_login("app", &password).await);

    let pending = world.password_at(&arn, AWSPENDING).await;
    let secrets = [INITIAL.to_string(), password, pending];
    assert_no_secrets(&lambda.output(), &secrets);
    assert_no_secrets(&wrong.output(), &secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn bundle_only_trusts_the_bundle_alone() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", INITIAL).await;
    let wrong_ca = world.pg.wrong_ca_pem_path().display().to_string();

    // Pinned to another CA: the preflight fails `tls`, rotation fails at setSecret.
    let pinned_wrong = world
        .rotation_lambda(&[
            ("DB_CA_BUNDLE", wrong_ca.as_str()),
            ("DB_CA_BUNDLE_ONLY", "true"),
        ])
        .await;
    let report = preflight_event(&pinned_wrong, &arn);
    let (status, detail, fix) = check(&report, "tls");
    println!("tls: {status} {detail}\n  fix: {fix}");
    assert_eq!(status, "fail", "{report:#}");
    assert!(detail.contains("UnknownIssuer"), "{detail}");
    assert!(detail.contains("only DB_CA_BUNDLE"), "{detail}");
    assert!(fix.contains("DB_CA_BUNDLE"), "{fix}");
    let token = world.begin_rotation(&arn).await;
    pinned_wrong.step(Step::CreateSecret, &arn, &token).unwrap();
    let err = pinned_wrong
        .step(Step::SetSecret, &arn, &token)
        .unwrap_err();
    assert_eq!(err.error_type, "LoginFailed", "{err}");
    assert!(
        err.error_message.contains("TLS failed") && err.error_message.contains("only DB_CA_BUNDLE"),
        "{err}"
    );
    assert!(world.can_login("app", INITIAL).await);

    // Pinned to the CA that signed the server's certificate: the preflight passes, and the same
    // rotation, retried, completes.
    let pinned = world
        .rotation_lambda(&[("DB_CA_BUNDLE_ONLY", "true")])
        .await;
    let report = preflight_event(&pinned, &arn);
    let (status, detail, _) = check(&report, "tls");
    println!("tls: {status} {detail}");
    assert_eq!(status, "pass", "{report:#}");
    assert!(
        detail.starts_with("verify-full: ") && detail.contains("only DB_CA_BUNDLE"),
        "{detail}"
    );
    for step in Step::ALL {
        pinned
            .step(step, &arn, &token)
            .unwrap_or_else(|e| panic!("{step}: {e}"));
    }
    let current = world.password_at(&arn, AWSCURRENT).await;
    assert!(world.can_login("app", &current).await);
    assert!(!world.can_login("app", INITIAL).await);

    // Pinning without a bundle is a configuration error naming both variables, for every event
    // and for the CLI.
    let unpinned = world
        .rotation_lambda(&[("DB_CA_BUNDLE", ""), ("DB_CA_BUNDLE_ONLY", "true")])
        .await;
    let err = unpinned.step(Step::CreateSecret, &arn, &token).unwrap_err();
    assert_eq!(err.error_type, "InvalidConfiguration", "{err}");
    assert!(
        err.error_message.contains("DB_CA_BUNDLE_ONLY")
            && err.error_message.contains("DB_CA_BUNDLE,"),
        "{err}"
    );
    let event = json!({"preflight": true, "SecretId": arn});
    let err = tokio::task::block_in_place(|| unpinned.host.invoke(&event)).unwrap_err();
    assert_eq!(err.error_type, "InvalidConfiguration", "{err}");
    let env = world.lambda_env(&[("DB_CA_BUNDLE", "")]);
    let arn_arg = arn.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(testkit::binary("preflight"))
            .args(["--secret-id", &arn_arg, "--ca-bundle-only"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .output()
            .expect("run preflight")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("DB_CA_BUNDLE_ONLY"), "{stderr}");

    let secrets = [INITIAL.to_string(), current];
    assert_no_secrets(&pinned_wrong.output(), &secrets);
    assert_no_secrets(&pinned.output(), &secrets);
}
