//! Single-user rotation end to end: the real `rotate-postgres` binary behind a Lambda Runtime
//! API, a real PostgreSQL with TLS, and moto as Secrets Manager. The test plays Secrets Manager.

use e2e::{assert_no_secrets, World};
use rotation::{Step, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn rotates_three_times_and_reruns_change_nothing() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world.rotation_lambda(&[]).await;
    let mut seen = vec!["initial-Password-1".to_string()];

    for round in 1..=3 {
        let before = world.password_at(&arn, AWSCURRENT).await;
        let token = lambda.rotate(&world, &arn).await;
        let current = world.password_at(&arn, AWSCURRENT).await;
        let previous = world.password_at(&arn, AWSPREVIOUS).await;
        assert_ne!(current, before, "round {round}: the password changed");
        assert_eq!(current.len(), 32, "default PASSWORD_LENGTH");
        assert_eq!(
            previous, before,
            "round {round}: AWSPREVIOUS holds the old one"
        );
        assert!(world.can_login("app", &current).await, "round {round}");
        assert!(!world.can_login("app", &previous).await, "round {round}");
        let labels = world.labels(&arn).await;
        assert!(labels[&token].contains(&AWSCURRENT.to_string()));
        seen.push(current.clone());

        // Secrets Manager retries: every finished step again changes nothing.
        for step in Step::ALL {
            let response = lambda.step(step, &arn, &token).unwrap();
            assert_eq!(response["outcome"], "already_current", "{step}");
        }
        assert_eq!(world.labels(&arn).await, labels);
        assert!(world.can_login("app", &current).await);
    }
    // Every other field of the secret is untouched.
    let (_, value) = world.stage(&arn, AWSCURRENT).await.unwrap();
    let mut expected = world.secret_json("app", "x");
    expected["password"] = value["password"].clone();
    assert_eq!(value, expected);
    assert_no_secrets(&lambda.output(), &seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_step_twice_within_a_rotation_is_a_no_op() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.assert_preflight_passes(&arn);
    let token = world.begin_rotation(&arn).await;

    assert_eq!(
        lambda.step("createSecret", &arn, &token).unwrap()["outcome"],
        "pending_created"
    );
    let pending = world.password_at(&arn, AWSPENDING).await;
    assert_eq!(
        lambda.step("createSecret", &arn, &token).unwrap()["outcome"],
        "pending_exists"
    );
    assert_eq!(world.password_at(&arn, AWSPENDING).await, pending);

    assert_eq!(
        lambda.step("setSecret", &arn, &token).unwrap()["outcome"],
        "password_set"
    );
    assert_eq!(
        lambda.step("setSecret", &arn, &token).unwrap()["outcome"],
        "password_already_set"
    );
    assert!(world.can_login("app", &pending).await);
    assert!(!world.can_login("app", "initial-Password-1").await);
    for _ in 0..2 {
        assert_eq!(
            lambda.step("testSecret", &arn, &token).unwrap()["outcome"],
            "tested"
        );
    }
    assert_eq!(
        lambda.step("finishSecret", &arn, &token).unwrap()["outcome"],
        "finished"
    );
    assert_eq!(
        lambda.step("finishSecret", &arn, &token).unwrap()["outcome"],
        "already_current"
    );
    assert_eq!(world.password_at(&arn, AWSCURRENT).await, pending);
    assert_no_secrets(
        &lambda.output(),
        &["initial-Password-1".to_string(), pending],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn drifted_current_password_still_rotates_via_previous() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(&world, &arn).await;
    let current = world.password_at(&arn, AWSCURRENT).await;
    // Someone puts the old password back: AWSCURRENT no longer logs in, AWSPREVIOUS does.
    world.set_password("app", "initial-Password-1").await;
    assert!(!world.can_login("app", &current).await);

    lambda.rotate(&world, &arn).await;
    let newest = world.password_at(&arn, AWSCURRENT).await;
    assert!(world.can_login("app", &newest).await);
    assert!(!world.can_login("app", "initial-Password-1").await);
    assert_no_secrets(
        &lambda.output(),
        &["initial-Password-1".to_string(), current, newest],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_logs_in_fails_naming_each_attempt_and_changes_nothing() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    world.set_password("app", "changed-by-someone-9").await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.assert_preflight_fails(&arn, "current-login");
    let token = world.begin_rotation(&arn).await;
    lambda.step("createSecret", &arn, &token).unwrap();
    let err = lambda.step("setSecret", &arn, &token).unwrap_err();
    assert_eq!(err.error_type, "LoginFailed");
    for needle in [
        "setSecret",
        arn.as_str(),
        AWSPENDING,
        AWSCURRENT,
        AWSPREVIOUS,
    ] {
        assert!(err.error_message.contains(needle), "{needle}: {err}");
    }
    assert!(world.can_login("app", "changed-by-someone-9").await);
    let pending = world.password_at(&arn, AWSPENDING).await;
    assert_no_secrets(
        &format!("{}{}", lambda.output(), err.error_message),
        &[
            "initial-Password-1".into(),
            "changed-by-someone-9".into(),
            pending,
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_ca_fails_without_plaintext_fallback() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let wrong_ca = world.pg.wrong_ca_pem_path().display().to_string();
    let lambda = world
        .rotation_lambda(&[("DB_CA_BUNDLE", wrong_ca.as_str())])
        .await;
    lambda.assert_preflight_fails(&arn, "tls");
    let token = world.begin_rotation(&arn).await;
    lambda.step("createSecret", &arn, &token).unwrap();
    // The server also accepts plaintext: only the refusal to fall back keeps this failing.
    let err = lambda.step("setSecret", &arn, &token).unwrap_err();
    assert_eq!(err.error_type, "LoginFailed", "{err}");
    assert!(err.error_message.contains("TLS"), "{err}");
    assert!(world.can_login("app", "initial-Password-1").await);
    let err = lambda.step("testSecret", &arn, &token).unwrap_err();
    assert!(err.error_message.contains("TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ssl_false_rotates_without_tls() {
    let world = World::start().await;
    // With the wrong CA configured, success proves TLS was not used at all.
    let wrong_ca = world.pg.wrong_ca_pem_path().display().to_string();
    let lambda = world
        .rotation_lambda(&[("DB_CA_BUNDLE", wrong_ca.as_str())])
        .await;
    for (user, ssl) in [("plain_bool", json!(false)), ("plain_str", json!("FALSE"))] {
        world.create_role(user, "initial-Password-1").await;
        let mut secret = world.secret_json(user, "initial-Password-1");
        secret["ssl"] = ssl.clone();
        let arn = world.create_secret(user, &secret).await;
        lambda.rotate(&world, &arn).await;
        let (_, value) = world.stage(&arn, AWSCURRENT).await.unwrap();
        assert_eq!(value["ssl"], ssl, "ssl keeps its value and JSON type");
        let current = value["password"].as_str().unwrap();
        assert!(world.can_login(user, current).await);
        assert!(!world.can_login(user, "initial-Password-1").await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usernames_and_passwords_that_need_quoting_rotate() {
    let world = World::start().await;
    let lambda = world.rotation_lambda(&[]).await;
    let mut secrets = Vec::new();
    for (user, initial, next) in [
        ("App User", "it's-a\\pass$1", "n3w'pass\\with$dollar"),
        ("CamelCase", "pa$$word'\\x1", "O'Brien\\$$1!"),
        ("quote\"inside", "'\\$'\\$'\\$", "$1'; DROP ROLE x; --"),
    ] {
        world.create_role(user, initial).await;
        let arn = world
            .create_secret(
                &user.replace(['"', ' '], "_"),
                &world.secret_json(user, initial),
            )
            .await;
        // Play createSecret's part with a chosen password so the awkward characters are certain.
        let token = world.begin_rotation(&arn).await;
        world
            .sm
            .put_secret_value()
            .secret_id(&arn)
            .client_request_token(&token)
            .secret_string(world.secret_json(user, next).to_string())
            .version_stages(AWSPENDING)
            .send()
            .await
            .unwrap();
        for step in Step::ALL {
            lambda
                .step(step, &arn, &token)
                .unwrap_or_else(|e| panic!("{user}: {step}: {e}"));
        }
        assert!(world.can_login(user, next).await, "{user}");
        assert!(!world.can_login(user, initial).await, "{user}");
        // And a generated password works for the same user afterwards.
        lambda.rotate(&world, &arn).await;
        let generated = world.password_at(&arn, AWSCURRENT).await;
        assert!(world.can_login(user, &generated).await, "{user}");
        secrets.extend([initial.to_string(), next.to_string(), generated]);
    }
    assert_no_secrets(&lambda.output(), &secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn gate_errors_come_back_as_function_errors() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world.rotation_lambda(&[]).await;

    let err = lambda
        .step("createSecret", &arn, "00000000-0000-4000-8000-00000000beef")
        .unwrap_err();
    assert_eq!(err.error_type, "TokenNotAVersion");
    assert!(err.error_message.contains(&arn), "{err}");

    let token = world.begin_rotation(&arn).await;
    let err = lambda.step("deleteSecret", &arn, &token).unwrap_err();
    assert_eq!(err.error_type, "UnknownStep");
    assert!(err.error_message.contains("deleteSecret"), "{err}");

    world
        .sm
        .cancel_rotate_secret()
        .secret_id(&arn)
        .send()
        .await
        .unwrap();
    let err = lambda.step("createSecret", &arn, &token).unwrap_err();
    assert_eq!(err.error_type, "RotationNotEnabled", "{err}");
    assert!(err.error_message.contains("not enabled for rotation"));

    // A bad configuration is reported on every event, naming the variable.
    let bad = world.rotation_lambda(&[("PASSWORD_LENGTH", "lots")]).await;
    let err = bad.step("createSecret", &arn, &token).unwrap_err();
    assert_eq!(err.error_type, "InvalidConfiguration");
    assert!(err.error_message.contains("PASSWORD_LENGTH"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn password_policy_from_the_environment_reaches_the_new_password() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world
        .rotation_lambda(&[
            ("PASSWORD_LENGTH", "48"),
            ("EXCLUDE_PUNCTUATION", "true"),
            ("EXCLUDE_UPPERCASE", "yes"),
        ])
        .await;
    lambda.rotate(&world, &arn).await;
    let current = world.password_at(&arn, AWSCURRENT).await;
    assert_eq!(current.len(), 48);
    assert!(current
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert!(world.can_login("app", &current).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_role_rotates_itself() {
    let world = World::start().await;
    let arn = world.role_with_secret("reader", "initial-Password-1").await;
    // The role's own settings make every transaction read-only by default.
    world
        .pg
        .exec("ALTER ROLE reader SET default_transaction_read_only = on")
        .await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(&world, &arn).await;
    let current = world.password_at(&arn, AWSCURRENT).await;
    assert!(world.can_login("reader", &current).await);
    assert!(!world.can_login("reader", "initial-Password-1").await);
    assert_no_secrets(&lambda.output(), &[current]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_elsewhere_fails_set_secret_cleanly_and_the_retry_succeeds() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world.rotation_lambda(&[]).await;
    // A lock held by another session is transient: preflight cannot see it, and the
    // rotation does succeed once the lock is gone.
    lambda.assert_preflight_passes(&arn);
    let token = world.begin_rotation(&arn).await;
    lambda.step(Step::CreateSecret, &arn, &token).unwrap();
    let pending = world.password_at(&arn, AWSPENDING).await;

    // Another session changes the role and keeps its transaction open: our ALTER ROLE waits for
    // the row, and must give up after the lock timeout instead of hanging until Lambda's.
    let blocker = world.pg.admin().await;
    blocker
        .batch_execute("BEGIN; ALTER ROLE app CONNECTION LIMIT 50")
        .await
        .unwrap();
    let err = lambda
        .step(Step::SetSecret, &arn, &token)
        .expect_err("setSecret cannot take the role's row")
        .to_string();
    assert!(err.contains("lock timeout"), "{err}");
    assert!(err.contains("setSecret") && err.contains(&arn), "{err}");
    // Nothing changed.
    assert!(world.can_login("app", "initial-Password-1").await);
    assert!(!world.can_login("app", &pending).await);

    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        lambda.step(Step::SetSecret, &arn, &token).unwrap()["outcome"],
        "password_set"
    );
    lambda.step(Step::TestSecret, &arn, &token).unwrap();
    lambda.step(Step::FinishSecret, &arn, &token).unwrap();
    assert!(world.can_login("app", &pending).await);
    assert_no_secrets(&lambda.output(), &[pending]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_end_with_a_terminate_message() {
    let world = World::start().await;
    world
        .pg
        .exec("ALTER SYSTEM SET log_min_messages = debug1")
        .await;
    world
        .pg
        .exec("ALTER SYSTEM SET log_disconnections = on")
        .await;
    world.pg.exec("SELECT pg_reload_conf()").await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(&world, &arn).await;
    // The server logs a connection closed without the protocol's Terminate message; give it a
    // moment to notice the last one.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let log = world.pg.log();
    for abrupt in [
        "unexpected EOF on client connection",
        "could not receive data from client",
        "SSL error",
    ] {
        assert!(
            !log.contains(abrupt),
            "a connection ended without Terminate ({abrupt}):\n{log}"
        );
    }
    assert!(
        log.contains("disconnection") || log.contains("DEBUG"),
        "{log}"
    );
}

/// The check every test gets when its `World` is dropped (no stored or remembered password in
/// any function output, at the most verbose log level) can fail: here a "password" that the
/// function does print (the secret's ARN, which it logs) must be caught.
#[tokio::test(flavor = "multi_thread")]
#[should_panic(expected = "a password appears in a function's output")]
async fn the_leak_check_at_the_end_of_every_test_catches_a_printed_value() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(&world, &arn).await;
    assert!(lambda.output().contains(&arn));
    world.remember(&arn);
}
