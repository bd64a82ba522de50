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

/// One case of [`a_server_that_stops_answering_mid_write_fails_set_secret_within_the_bound`]:
/// a secret behind its own switch, the switch's mode during setSecret, what its error must say.
struct MidWrite {
    what: &'static str,
    switch: DbSwitch,
    mode: DbMode,
    arn: String,
    token: String,
    lambda: e2e::Lambda,
    expected: [&'static str; 2],
}

/// Every switch hangs at setSecret's first write (`ALTER ROLE` / `CREATE ROLE`) or `COMMIT`, each
/// case in its own function process, the four at once (their bound is 7 s each, not 28 s in a
/// row):
/// * single user, the `ALTER ROLE` never reaches the server: the old password still works;
/// * single user, the server applies the `ALTER ROLE`, its answer never arrives: AWSPENDING's
///   password already works, and the retry finds that out (`password_already_set`);
/// * alternating users, the `CREATE ROLE` of the clone never reaches the server: the open
///   transaction ends with the connection, the clone does not exist;
/// * alternating users, the server commits the new clone and the `COMMIT`'s answer never
///   arrives: the clone logs in with AWSPENDING's password, the retry finds that out.
///
/// Each fails setSecret within the client's write bound (`postgres_target::WRITE_TIMEOUT`, 7 s:
/// Lambda's 60 s would otherwise end it), with one line naming the step, the operation and the
/// host; Secrets Manager's state is unchanged; after recovery the retry completes the rotation
/// and AWSCURRENT logs in. The switch reads the protocol: these secrets have `"ssl": false`.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_stops_answering_mid_write_fails_set_secret_within_the_bound() {
    let world = World::start().await;
    let upstream = ([127, 0, 0, 1], world.pg.port());
    e2e::alternating::setup_roles(&world).await;
    // A second application role of the master's, for the second alternating case.
    let master = e2e::alternating::connect(
        &world,
        "master",
        e2e::alternating::MASTER_PASSWORD,
        "postgres",
    )
    .await
    .unwrap();
    world.remember("app2-Password-1");
    master
        .batch_execute("CREATE ROLE app2 LOGIN PASSWORD 'app2-Password-1'")
        .await
        .unwrap();
    drop(master);
    let mut cases = Vec::new();
    for (what, mode, user) in [
        ("single user, the write lost", DbMode::HangAtWrite, "solo_a"),
        (
            "single user, the answer lost",
            DbMode::HangAfterWrite,
            "solo_b",
        ),
        (
            "alternating users, the write lost",
            DbMode::HangAtWrite,
            "app",
        ),
        (
            "alternating users, the COMMIT's answer lost",
            DbMode::HangAfterCommit,
            "app2",
        ),
    ] {
        let switch = DbSwitch::start(upstream.into()).await;
        let arn = if user.starts_with("app") {
            let mut master = e2e::alternating::master_json(&world);
            master["port"] = switch.port().into();
            master["ssl"] = false.into();
            let master_arn = world
                .create_secret(&format!("master-for-{user}"), &master)
                .await;
            let password = if user == "app" {
                e2e::alternating::APP_PASSWORD
            } else {
                "app2-Password-1"
            };
            let mut value = e2e::alternating::user_json(&world, user, password, &master_arn);
            value["port"] = switch.port().into();
            value["ssl"] = false.into();
            world
                .create_secret(&format!("{user}-mid-write"), &value)
                .await
        } else {
            let initial = format!("{user}-Password-1");
            world.create_role(user, &initial).await;
            let mut value = world.secret_json(user, &initial);
            value["port"] = switch.port().into();
            value["ssl"] = false.into();
            world.create_secret(user, &value).await
        };
        let lambda = world
            .rotation_lambda(&[("DB_CONNECT_TIMEOUT_SECONDS", "1")])
            .await;
        let token = world.begin_rotation(&arn).await;
        lambda.step("createSecret", &arn, &token).unwrap();
        let expected = if user == "app" {
            [
                "database CREATE ROLE failed: ",
                "did not answer within 7 s, mid-write; nothing was committed",
            ]
        } else {
            [
                if user == "app2" {
                    "database COMMIT failed: "
                } else {
                    "database ALTER ROLE ... PASSWORD failed: "
                },
                "did not answer within 7 s, mid-write; whether the change was applied is \
                 unknown: retry setSecret once the database answers, it finds out (it first \
                 logs in with AWSPENDING",
            ]
        };
        cases.push(MidWrite {
            what,
            switch,
            mode,
            arn,
            token,
            lambda,
            expected,
        });
    }
    let mut before = Vec::new();
    for case in &cases {
        before.push(state(&world, &case.arn).await);
        case.switch.set(case.mode).await;
    }
    let results: Vec<_> = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            let runs: Vec<_> = cases
                .iter()
                .map(|case| {
                    scope.spawn(move || {
                        let event = testkit::rotation::event("setSecret", &case.arn, &case.token);
                        let started = Instant::now();
                        let result = case.lambda.host.invoke(&event);
                        (result, started.elapsed())
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        })
    });
    let mut passwords = Vec::new();
    for ((case, (result, took)), before) in cases.iter().zip(results).zip(before) {
        case.switch.set(DbMode::Pass).await;
        let err = result.expect_err(case.what);
        let message = &err.error_message;
        println!("{} ({:.1} s): {message}", case.what, took.as_secs_f32());
        let endpoint = format!("{}:{}", world.pg.host(), case.switch.port());
        assert!(
            message.starts_with(&format!("setSecret for secret {}: ", case.arn))
                && message.contains(&format!(
                    "{}{endpoint} {}",
                    case.expected[0], case.expected[1]
                ))
                && !message.contains('\n'),
            "{}: {message}",
            case.what
        );
        // The client's bound (7 s), not Lambda's timeout (60 s).
        assert!(
            took.as_secs_f32() >= 7.0 && took.as_secs_f32() < 15.0,
            "{}: {took:?}",
            case.what
        );
        assert_eq!(state(&world, &case.arn).await, before, "{}", case.what);
        let pending = world.password_at(&case.arn, AWSPENDING).await;
        passwords.push(pending.clone());
        match case.mode {
            DbMode::HangAfterWrite => {
                // The server applied the change: the new password already works.
                assert!(world.can_login("solo_b", &pending).await);
                assert!(!world.can_login("solo_b", "solo_b-Password-1").await);
            }
            DbMode::HangAfterCommit => {
                // The server committed: the clone exists and its password works.
                assert!(e2e::alternating::logs_in(&world, "app2_clone", &pending).await);
            }
            _ if case.arn.contains("app-mid-write") => {
                assert!(!e2e::alternating::role_exists(&world, "app_clone").await);
            }
            _ => {
                assert!(world.can_login("solo_a", "solo_a-Password-1").await);
                assert!(!world.can_login("solo_a", &pending).await);
            }
        }
        // Secrets Manager retries setSecret: it finds out, and the rotation completes.
        let answer = case
            .lambda
            .step("setSecret", &case.arn, &case.token)
            .unwrap_or_else(|e| panic!("{}: setSecret after recovery: {e}", case.what));
        let outcome = if matches!(case.mode, DbMode::HangAfterWrite | DbMode::HangAfterCommit) {
            "password_already_set"
        } else if case.arn.contains("app-mid-write") {
            "user_created"
        } else {
            "password_set"
        };
        assert!(
            answer.to_string().contains(outcome),
            "{}: {answer}",
            case.what
        );
        for step in ["testSecret", "finishSecret"] {
            case.lambda
                .step(step, &case.arn, &case.token)
                .unwrap_or_else(|e| panic!("{}: {step}: {e}", case.what));
        }
        assert_eq!(world.password_at(&case.arn, AWSCURRENT).await, pending);
        let (_, current) = world.stage(&case.arn, AWSCURRENT).await.unwrap();
        let user = current["username"].as_str().unwrap();
        let logs_in = if user.ends_with("_clone") {
            e2e::alternating::logs_in(&world, user, &pending).await
        } else {
            world.can_login(user, &pending).await
        };
        assert!(logs_in, "{}: AWSCURRENT ({user}) logs in", case.what);
    }
    for case in &cases {
        assert_no_secrets(&case.lambda.output(), &passwords);
    }
}
