//! The database down, refusing or hanging during each rotation step that touches it, end to end
//! (the real binary, a real PostgreSQL behind `testkit::faults::DbSwitch`, moto): the step fails
//! with one line naming the step and the host, nothing changed (versions, labels, the password
//! the database accepts), and the same step succeeds once the database answers again.
//! `DB_CONNECT_TIMEOUT_SECONDS=1` keeps the hanging cases short.

use e2e::{assert_no_secrets, World};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Instant;
use testkit::faults::{DbMode, DbSwitch};
use testkit::rotation::{AWSCURRENT, AWSPENDING};

/// The secret's labels and the values of AWSCURRENT and AWSPENDING.
async fn state(
    world: &World,
    arn: &str,
) -> (
    BTreeMap<String, Vec<String>>,
    Option<(String, Value)>,
    Option<(String, Value)>,
) {
    (
        world.labels(arn).await,
        world.stage(arn, AWSCURRENT).await,
        world.stage(arn, AWSPENDING).await,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_step_fails_cleanly_while_the_database_is_away_and_succeeds_after() {
    let world = World::start().await;
    let switch = DbSwitch::start(([127, 0, 0, 1], world.pg.port()).into()).await;
    let initial = "initial-Password-1";
    world.create_role("app", initial).await;
    let mut value = world.secret_json("app", initial);
    value["port"] = switch.port().into();
    let arn = world.create_secret("app", &value).await;
    let lambda = world
        .rotation_lambda(&[("DB_CONNECT_TIMEOUT_SECONDS", "1")])
        .await;
    let endpoint = format!("{}:{}", world.pg.host(), switch.port());
    let mut passwords = vec![initial.to_string()];
    let mut working = initial.to_string();

    for mode in [DbMode::Refuse, DbMode::Down, DbMode::Hang] {
        let token = world.begin_rotation(&arn).await;
        lambda.step("createSecret", &arn, &token).unwrap();
        let pending = world.password_at(&arn, AWSPENDING).await;
        passwords.push(pending.clone());
        for step in ["setSecret", "testSecret", "finishSecret"] {
            let before = state(&world, &arn).await;
            switch.set(mode).await;
            let started = Instant::now();
            let err = lambda.step(step, &arn, &token).unwrap_err();
            let took = started.elapsed();
            switch.set(DbMode::Pass).await;
            let message = &err.error_message;
            assert!(
                message.starts_with(&format!("{step} for secret {arn}: "))
                    && message.contains(&endpoint)
                    && !message.contains('\n'),
                "{mode:?} during {step}: the error names the step and {endpoint}: {message}"
            );
            if step == "finishSecret" {
                assert!(
                    message.contains("the database cannot be reached")
                        && message.contains("retry finishSecret"),
                    "{message}"
                );
            }
            println!(
                "{mode:?} during {step} ({:.1} s): {message}",
                took.as_secs_f32()
            );
            assert_eq!(state(&world, &arn).await, before, "{mode:?} during {step}");
            // The database still accepts what it accepted before the step.
            assert!(
                world.can_login("app", &working).await,
                "{mode:?} during {step}"
            );
            // Secrets Manager retries the step: it succeeds now.
            lambda
                .step(step, &arn, &token)
                .unwrap_or_else(|e| panic!("{step} after {mode:?}: {e}"));
            if step == "setSecret" {
                working = pending.clone();
            }
        }
        assert_eq!(world.password_at(&arn, AWSCURRENT).await, pending);
        assert!(world.can_login("app", &pending).await);
    }

    // The server accepts the login, then answers no query: setSecret's and testSecret's
    // read-only checks (`SELECT session_user, current_user`) give up after the bound (the
    // connect timeout, 1 s here), naming the step and the host; nothing changed; the retry
    // after recovery succeeds. (The switch reads the protocol, so this secret has no TLS.)
    let initial = "plain-Password-1";
    world.create_role("plain", initial).await;
    let mut value = world.secret_json("plain", initial);
    value["port"] = switch.port().into();
    value["ssl"] = false.into();
    let plain = world.create_secret("plain", &value).await;
    let token = world.begin_rotation(&plain).await;
    lambda.step("createSecret", &plain, &token).unwrap();
    let pending = world.password_at(&plain, AWSPENDING).await;
    passwords.push(pending.clone());
    let mut working = initial.to_string();
    for step in ["setSecret", "testSecret"] {
        let before = state(&world, &plain).await;
        switch.set(DbMode::HangAfterLogin).await;
        let started = Instant::now();
        let err = lambda.step(step, &plain, &token).unwrap_err();
        let took = started.elapsed();
        switch.set(DbMode::Pass).await;
        let message = &err.error_message;
        println!(
            "HangAfterLogin during {step} ({:.1} s): {message}",
            took.as_secs_f32()
        );
        assert!(
            message.starts_with(&format!("{step} for secret {plain}: "))
                && message.contains(&format!("{endpoint} accepted the login but did not answer"))
                && !message.contains('\n'),
            "{message}"
        );
        // The bound, not Lambda's timeout: one login, one unanswered query of 1 s each.
        assert!(took.as_secs_f32() < 10.0, "{took:?}");
        assert_eq!(state(&world, &plain).await, before, "{step}");
        assert!(world.can_login("plain", &working).await, "{step}");
        lambda
            .step(step, &plain, &token)
            .unwrap_or_else(|e| panic!("{step} after the hang: {e}"));
        if step == "setSecret" {
            working = pending.clone();
        }
    }
    lambda.step("finishSecret", &plain, &token).unwrap();
    assert!(world.can_login("plain", &pending).await);
    assert_no_secrets(&lambda.output(), &passwords);
}
