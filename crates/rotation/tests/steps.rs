//! The protocol against the in-memory store and database: gate, steps, idempotency, call budget.

use rotation::alternating::alternate_username;
use rotation::testing::{
    single_user_secret as secret_json, MemoryDatabase, RotationFixture, MEMORY_PROFILE,
    SINGLE_USER_HOST as HOST,
};
use rotation::{
    ErrorKind, Outcome, PasswordPolicy, RotationEvent, RotationSettings, SecretJson, Step,
    Strategy, AWSCURRENT, AWSPENDING, AWSPREVIOUS,
};

fn fixture() -> RotationFixture {
    RotationFixture::single_user()
}

#[tokio::test]
async fn full_rotation_changes_the_password_and_moves_labels() {
    let f = fixture();
    f.rotate("t1").await;
    let current = f.credentials(AWSCURRENT);
    assert_ne!(current.password.expose(), "initial-password");
    assert_eq!(current.password.expose().len(), 32);
    assert_eq!(f.db.password_of("app").unwrap(), current.password.expose());
    assert_eq!(
        f.credentials(AWSPREVIOUS).password.expose(),
        "initial-password"
    );
    let labels = f.store.labels(&f.arn);
    assert_eq!(labels["t1"], vec![AWSPENDING, AWSCURRENT]);
    assert_eq!(labels["v0"], vec![AWSPREVIOUS]);
}

#[tokio::test]
async fn every_field_but_the_password_keeps_its_value_and_type() {
    let f = fixture();
    f.rotate("t1").await;
    let before = SecretJson::parse(&secret_json("app", "x")).unwrap();
    let after = f.stage(AWSCURRENT);
    let keys = |s: &SecretJson| s.as_map().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&before), keys(&after), "same fields in the same order");
    for (k, v) in before.as_map() {
        if k != "password" {
            assert_eq!(&after.as_map()[k], v, "field {k}");
        }
    }
    // port stays a string, dbname stays absent.
    assert!(after.as_map()["port"].is_string());
    assert!(!after.as_map().contains_key("dbname"));
}

#[tokio::test]
async fn every_step_run_twice_is_a_no_op_the_second_time() {
    let f = fixture();
    f.store.begin_rotation(&f.arn, "t1");

    assert_eq!(
        f.step("createSecret", "t1").await.unwrap(),
        Outcome::PendingCreated
    );
    let pending = f.store.value_at(&f.arn, AWSPENDING).unwrap();
    assert_eq!(
        f.step("createSecret", "t1").await.unwrap(),
        Outcome::PendingExists
    );
    assert_eq!(f.store.value_at(&f.arn, AWSPENDING).unwrap(), pending);

    assert_eq!(
        f.step("setSecret", "t1").await.unwrap(),
        Outcome::PasswordSet
    );
    let db_password = f.db.password_of("app");
    assert_eq!(
        f.step("setSecret", "t1").await.unwrap(),
        Outcome::PasswordAlreadySet
    );
    assert_eq!(f.db.password_of("app"), db_password);

    assert_eq!(f.step("testSecret", "t1").await.unwrap(), Outcome::Tested);
    assert_eq!(f.step("testSecret", "t1").await.unwrap(), Outcome::Tested);

    assert_eq!(
        f.step("finishSecret", "t1").await.unwrap(),
        Outcome::Finished
    );
    let labels = f.store.labels(&f.arn);
    for step in Step::ALL {
        assert_eq!(
            f.step(step.as_str(), "t1").await.unwrap(),
            Outcome::AlreadyCurrent,
            "{step} after finish"
        );
    }
    assert_eq!(f.store.labels(&f.arn), labels);
    assert_eq!(f.db.password_of("app"), db_password);
}

#[tokio::test]
async fn gate_rotation_disabled_is_an_error_but_a_missing_flag_is_tolerated() {
    let f = fixture();
    f.store.begin_rotation(&f.arn, "t1");
    f.store.set_rotation_enabled(&f.arn, Some(false));
    let err = f.step("createSecret", "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::NotEnabled));
    assert!(err.to_string().contains("not enabled for rotation"));
    assert!(err.to_string().contains(&f.arn));
    assert!(err.to_string().contains("createSecret"));
    assert_eq!(
        f.store.value_at(&f.arn, AWSPENDING),
        None,
        "nothing written"
    );

    f.store.set_rotation_enabled(&f.arn, None);
    assert_eq!(
        f.step("createSecret", "t1").await.unwrap(),
        Outcome::PendingCreated
    );
}

#[tokio::test]
async fn gate_token_that_is_not_a_version_is_an_error() {
    let f = fixture();
    let err = f.step("createSecret", "nope").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::TokenNotAVersion { .. }));
    assert!(err.to_string().contains("nope"));
}

#[tokio::test]
async fn gate_token_already_current_succeeds_without_change() {
    let f = fixture();
    f.store.reset_calls();
    assert_eq!(
        f.step("setSecret", "v0").await.unwrap(),
        Outcome::AlreadyCurrent
    );
    // The versions setSecret needs were read with the DescribeSecret (same round trip); the
    // gate then stopped: nothing written, no database session.
    let calls = f.store.calls();
    assert_eq!(calls.first(), Some(&"DescribeSecret"), "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| *c == "DescribeSecret" || *c == "GetSecretValue"),
        "{calls:?}"
    );
    assert_eq!(f.db.connects(), 0);
}

#[tokio::test]
async fn gate_token_not_pending_is_an_error() {
    let f = fixture();
    f.rotate("t1").await; // v0 is now AWSPREVIOUS only
    let err = f.step("setSecret", "v0").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::TokenNotPending { .. }));
    assert!(err.to_string().contains("AWSPENDING"));
}

#[tokio::test]
async fn gate_unknown_step_is_an_error_naming_it_after_the_gate() {
    let f = fixture();
    f.store.begin_rotation(&f.arn, "t1");
    let err = f.step("rotateEverything", "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::UnknownStep(ref s) if s == "rotateEverything"));
    assert!(err.to_string().contains("rotateEverything"));
    // The gate still runs first: an unknown step on a disabled secret reports the gate.
    f.store.set_rotation_enabled(&f.arn, Some(false));
    let err = f.step("rotateEverything", "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::NotEnabled));
}

#[tokio::test]
async fn unknown_secret_is_a_store_error_naming_the_id() {
    let f = fixture();
    let err = f
        .rotator
        .handle(&RotationEvent::new("createSecret", "missing-secret", "t1"))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Store(_)));
    assert_eq!(err.secret, "missing-secret");
}

#[tokio::test]
async fn drifted_current_password_rotates_through_previous() {
    let f = fixture();
    f.rotate("t1").await;
    // Someone changes the password behind our back to the AWSPREVIOUS value.
    f.db.add_user("app", "initial-password");
    f.rotate("t2").await;
    let current = f.credentials(AWSCURRENT);
    assert_eq!(f.db.password_of("app").unwrap(), current.password.expose());
}

#[tokio::test]
async fn no_working_password_fails_naming_every_attempt_without_values() {
    let f = fixture();
    f.db.add_user("app", "something-else-entirely");
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    let text = err.to_string();
    for stage in [AWSPENDING, AWSCURRENT, AWSPREVIOUS] {
        assert!(text.contains(stage), "{text}");
    }
    assert!(!text.contains("initial-password"));
    let pending = f.credentials(AWSPENDING);
    assert!(!text.contains(pending.password.expose()));
}

#[tokio::test]
async fn a_malformed_previous_is_treated_as_absent() {
    for malformed in [
        "not json at all".to_string(),
        r#"{"engine":"postgres","username":"app","password":"p"}"#.to_string(),
    ] {
        let f = fixture();
        f.rotate("t1").await;
        f.store
            .put_version(&f.arn, "v-bad", &malformed, &[AWSPREVIOUS]);
        // AWSCURRENT no longer logs in, so setSecret falls back to AWSPREVIOUS.
        f.db.add_user("app", "changed-behind-our-back");
        f.store.begin_rotation(&f.arn, "t2");
        f.step("createSecret", "t2").await.unwrap();
        let err = f.step("setSecret", "t2").await.unwrap_err();
        assert!(
            matches!(err.kind, ErrorKind::LoginFailed { .. }),
            "a malformed AWSPREVIOUS must not fail the step by itself: {err}"
        );
        let text = err.to_string();
        assert!(text.contains("AWSPREVIOUS (malformed, ignored"), "{text}");
        assert!(!text.contains("not json at all"), "{text}");
    }
}

#[tokio::test]
async fn pending_with_another_user_or_host_is_refused() {
    for (field, value) in [("username", "intruder"), ("host", "other.example")] {
        let f = fixture();
        f.store.begin_rotation(&f.arn, "t1");
        let pending = SecretJson::parse(&secret_json("app", "pw2"))
            .unwrap()
            .with_str(field, value);
        f.store
            .put_version(&f.arn, "t1", &pending.to_json_string(), &[AWSPENDING]);
        let err = f.step("setSecret", "t1").await.unwrap_err();
        assert!(
            matches!(err.kind, ErrorKind::Mismatch { field: got, .. } if got == field),
            "{err}"
        );
        assert_eq!(f.db.password_of("app").unwrap(), "initial-password");
    }
}

#[tokio::test]
async fn invalid_current_secret_names_the_field_and_writes_nothing() {
    let f = fixture();
    f.store.put_version(
        &f.arn,
        "v1",
        r#"{"engine":"postgres","host":"db","password":"p"}"#,
        &[AWSCURRENT],
    );
    f.store.begin_rotation(&f.arn, "t1");
    let err = f.step("createSecret", "t1").await.unwrap_err();
    assert!(err.to_string().contains("'username'"), "{err}");
    assert!(err.to_string().contains(AWSCURRENT), "{err}");
    assert_eq!(f.store.value_at(&f.arn, AWSPENDING), None);
}

#[tokio::test]
async fn test_secret_requires_the_pending_value() {
    let f = fixture();
    f.store.begin_rotation(&f.arn, "t1");
    let err = f.step("testSecret", "t1").await.unwrap_err();
    assert!(matches!(
        err.kind,
        ErrorKind::NoValue {
            stage: AWSPENDING,
            ..
        }
    ));
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("testSecret", "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::LoginFailed { .. }), "{err}");
}

#[tokio::test]
async fn rotation_stays_within_twelve_secrets_manager_calls() {
    let f = fixture();
    f.store.begin_rotation(&f.arn, "t1");
    f.store.reset_calls();
    for step in Step::ALL {
        f.step(step.as_str(), "t1").await.unwrap();
    }
    let calls = f.store.calls();
    assert!(calls.len() <= 12, "{} calls: {calls:?}", calls.len());
    assert_eq!(
        calls.iter().filter(|c| **c == "DescribeSecret").count(),
        4,
        "one DescribeSecret per step"
    );
}

#[tokio::test]
async fn password_policy_shapes_the_new_password() {
    let policy = PasswordPolicy {
        length: 48,
        exclude_punctuation: true,
        ..PasswordPolicy::default()
    };
    let f = fixture().with_rotator(|r| {
        r.with_settings(RotationSettings {
            policy,
            ..RotationSettings::default()
        })
    });
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let pending = f.credentials(AWSPENDING);
    assert_eq!(pending.password.expose().len(), 48);
    assert!(pending
        .password
        .expose()
        .chars()
        .all(|c| c.is_ascii_alphanumeric()));
}

#[tokio::test]
async fn alternating_strategy_toggles_the_clone_suffix_in_create() {
    let f = fixture();
    let json = SecretJson::parse(&secret_json("app", "pw"))
        .unwrap()
        .with_str(
            "masterarn",
            "arn:aws:secretsmanager:us-east-1:1:secret:master",
        );
    f.store
        .put_version(&f.arn, "v0", &json.to_json_string(), &[AWSCURRENT]);
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    assert_eq!(f.stage(AWSPENDING).username().unwrap(), "app_clone");

    // The override forces single user even with masterarn.
    let single = RotationFixture::new(f.store.clone(), MemoryDatabase::new(HOST), &f.arn)
        .with_rotator(|r| r.with_strategy_override(Some(Strategy::SingleUser)));
    f.store.begin_rotation(&f.arn, "t2");
    single.step("createSecret", "t2").await.unwrap();
    assert_eq!(f.stage(AWSPENDING).username().unwrap(), "app");
}

#[test]
fn alternate_username_toggles_and_enforces_63_bytes() {
    assert_eq!(
        alternate_username("app", &MEMORY_PROFILE).unwrap(),
        "app_clone"
    );
    assert_eq!(
        alternate_username("app_clone", &MEMORY_PROFILE).unwrap(),
        "app"
    );
    assert_eq!(
        alternate_username("_clone", &MEMORY_PROFILE).unwrap(),
        "_clone_clone"
    );
    let max = "a".repeat(57);
    assert_eq!(alternate_username(&max, &MEMORY_PROFILE).unwrap().len(), 63);
    let err = alternate_username(&"a".repeat(58), &MEMORY_PROFILE).unwrap_err();
    assert!(err.to_string().contains("63"), "{err}");
    // Multi-byte names are measured in bytes.
    assert!(alternate_username(&"é".repeat(29), &MEMORY_PROFILE).is_err());
}

#[test]
fn event_fixtures_round_trip_through_the_event_type() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("rotation-") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let event: RotationEvent = serde_json::from_value(original.clone()).unwrap();
        assert!(event.step.parse::<Step>().is_ok(), "{name}");
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            original,
            "{name} round-trips"
        );
        seen += 1;
    }
    assert_eq!(seen, 4, "one fixture per step");
}

#[tokio::test]
async fn finish_does_not_move_current_to_a_password_that_no_longer_logs_in() {
    let f = fixture();
    f.store.begin_rotation(&f.arn, "t1");
    for step in ["createSecret", "setSecret", "testSecret"] {
        f.step(step, "t1").await.unwrap();
    }
    // Someone changes the password between testSecret and finishSecret.
    f.db.add_user("app", "changed-by-hand");
    let err = f.step("finishSecret", "t1").await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::PendingNoLongerLogsIn { .. }),
        "{err}"
    );
    assert_eq!(err.error_type(), "PendingLoginFailed");
    assert!(
        err.to_string().contains("AWSCURRENT was not moved"),
        "{err}"
    );
    let labels = f.store.labels(&f.arn);
    assert_eq!(labels["v0"], vec![AWSCURRENT], "AWSCURRENT stayed");
    // Once the database accepts AWSPENDING again (setSecret re-run), finishSecret moves it.
    f.step("setSecret", "t1").await.unwrap_err();
    f.db.add_user("app", f.credentials(AWSPENDING).password.expose());
    assert_eq!(
        f.step("finishSecret", "t1").await.unwrap(),
        Outcome::Finished
    );
}

#[tokio::test]
async fn a_user_acting_as_its_own_role_setting_rotates() {
    let f = fixture();
    f.db.set_setting("app", "role", "app_owner");
    let outcomes = f.rotate("t1").await;
    assert_eq!(outcomes[2], Outcome::Tested);
    assert_eq!(
        f.db.password_of("app").unwrap(),
        f.credentials(AWSCURRENT).password.expose()
    );
}

#[tokio::test]
async fn set_secret_checks_who_logged_in_before_changing_anything() {
    let f = fixture();
    f.db.add_user("someone_else", "x");
    // A pooler maps the login `app` to another database user.
    f.db.map_login("app", "someone_else");
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    assert!(
        matches!(
            err.kind,
            ErrorKind::WrongSessionUser {
                stage: AWSCURRENT,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert_eq!(f.db.password_of("app").unwrap(), "initial-password");
    assert_eq!(f.db.password_of("someone_else").unwrap(), "x");
}

#[tokio::test]
async fn a_label_move_whose_answer_was_lost_finishes_the_rotation() {
    let f = fixture();
    f.store.begin_rotation(&f.arn, "t1");
    for step in ["createSecret", "setSecret", "testSecret"] {
        f.step(step, "t1").await.unwrap();
    }
    // The move takes effect; its answer is lost (after the SDK's retries, which Secrets Manager
    // refuses: AWSCURRENT is no longer on the version they name).
    f.store.lose_answers("UpdateSecretVersionStage", 1);
    f.store.reset_calls();
    assert_eq!(
        f.step("finishSecret", "t1").await.unwrap(),
        Outcome::Finished
    );
    let labels = f.store.labels(&f.arn);
    assert_eq!(labels["t1"], vec![AWSPENDING, AWSCURRENT]);
    assert_eq!(labels["v0"], vec![AWSPREVIOUS]);
    assert_eq!(
        f.store.calls().last(),
        Some(&"DescribeSecret"),
        "one read tells the move landed: {:?}",
        f.store.calls()
    );
    // A move that failed without landing keeps its error: `tests/faults_aws.rs` (100 % of
    // UpdateSecretVersionStage).
}
