//! The alternating-users strategy against the in-memory store, database and RDS look-ups.

use rotation::testing::{
    alternating_secret as user_secret, master_secret, RotationFixture, MASTER_ARN,
    PRIMARY_HOST as HOST, REPLICA_HOST as REPLICA,
};
use rotation::{
    DbEndpoint, ErrorKind, Outcome, Relation, SecretJson, Step, AWSCURRENT, AWSPENDING, AWSPREVIOUS,
};

fn fixture_with(user_host: &str, master_value: &str) -> RotationFixture {
    RotationFixture::alternating(user_host, master_value)
}

fn fixture() -> RotationFixture {
    fixture_with(HOST, &master_secret(HOST))
}

#[tokio::test]
async fn two_cycles_alternate_and_keep_previous_working() {
    let f = fixture();
    let outcomes = f.rotate("t1").await;
    assert_eq!(outcomes[1], Outcome::UserCreated);
    let current = f.credentials(AWSCURRENT);
    assert_eq!(current.username, "app_clone");
    assert_eq!(
        f.db.password_of("app_clone").as_deref(),
        Some(current.password.expose())
    );
    // The previous credentials still work: that is the point of the strategy.
    assert_eq!(f.db.password_of("app").as_deref(), Some("app-pw"));
    assert!(f.db.memberships_of("app_clone").contains("app"));
    assert_eq!(
        f.db.settings_of("app_clone")
            .get("search_path")
            .map(String::as_str),
        Some("app, public")
    );
    // Every other field is kept with its type.
    let map = f.stage(AWSCURRENT).as_map().clone();
    assert_eq!(map["port"], serde_json::json!(5432));
    assert_eq!(map["note"], serde_json::json!(["kept", 1]));
    assert_eq!(map["masterarn"], serde_json::json!(MASTER_ARN));

    let outcomes = f.rotate("t2").await;
    assert_eq!(outcomes[1], Outcome::PasswordSet);
    let current = f.credentials(AWSCURRENT);
    assert_eq!(current.username, "app");
    assert_eq!(
        f.db.password_of("app").as_deref(),
        Some(current.password.expose())
    );
    let previous = f.credentials(AWSPREVIOUS);
    assert_eq!(previous.username, "app_clone");
    assert_eq!(
        f.db.password_of("app_clone").as_deref(),
        Some(previous.password.expose())
    );
}

#[tokio::test]
async fn every_step_twice_changes_nothing() {
    let f = fixture();
    f.store.begin_rotation(&f.arn, "t1");
    for step in Step::ALL {
        let step = step.as_str();
        f.step(step, "t1").await.unwrap();
        let labels = f.store.labels(&f.arn);
        let pending = f.store.value_at(&f.arn, AWSPENDING);
        let clone_pw = f.db.password_of("app_clone");
        let again = f.step(step, "t1").await.unwrap();
        assert!(
            matches!(
                again,
                Outcome::PendingExists
                    | Outcome::PasswordAlreadySet
                    | Outcome::Tested
                    | Outcome::AlreadyCurrent
            ),
            "{step}: {again:?}"
        );
        assert_eq!(f.store.labels(&f.arn), labels, "{step}");
        assert_eq!(f.store.value_at(&f.arn, AWSPENDING), pending, "{step}");
        assert_eq!(f.db.password_of("app_clone"), clone_pw, "{step}");
    }
}

#[tokio::test]
async fn current_that_cannot_log_in_is_refused_and_nothing_changes() {
    let f = fixture();
    f.db.add_user("app", "drifted");
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::CurrentLoginFailed { .. }),
        "{err}"
    );
    assert_eq!(f.db.password_of("app_clone"), None);
    assert!(!err.to_string().contains("drifted"));
}

#[tokio::test]
async fn master_that_cannot_log_in_is_a_clear_error() {
    let f = fixture();
    f.db.add_creator("master", "changed");
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::MasterLoginFailed { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(MASTER_ARN), "{err}");
    assert!(!err.to_string().contains("master-pw"));
    assert_eq!(f.db.password_of("app_clone"), None);
}

#[tokio::test]
async fn pending_user_that_is_not_the_alternate_is_refused() {
    let f = fixture();
    f.store.begin_rotation(&f.arn, "t1");
    f.store.put_version(
        &f.arn,
        "t1",
        &user_secret(HOST, "someone_else", "x-pw"),
        &[AWSPENDING],
    );
    let err = f.step("setSecret", "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::NotAlternate { .. }), "{err}");
    assert!(err.to_string().contains("app_clone"), "{err}");
    assert_eq!(f.db.password_of("someone_else"), None);
}

#[tokio::test]
async fn managed_master_secret_is_resolved_from_its_tag() {
    let db_arn = "arn:aws:rds:us-east-1:123456789012:db:primary";
    let f = fixture_with(
        HOST,
        &serde_json::json!({"username": "master", "password": "master-pw"}).to_string(),
    );
    f.store
        .set_tags(MASTER_ARN, &[("aws:rds:primaryDBInstanceArn", db_arn)]);
    f.topology.add_endpoint(
        db_arn,
        DbEndpoint {
            host: HOST.into(),
            port: 5432,
            engine: "postgres".into(),
        },
    );
    f.rotate("t1").await;
    assert_eq!(f.stage(AWSCURRENT).username().unwrap(), "app_clone");
    assert!(f.topology.calls() >= 1);
}

#[tokio::test]
async fn managed_master_secret_without_tag_names_the_missing_host() {
    let f = fixture_with(
        HOST,
        &serde_json::json!({"username": "master", "password": "master-pw"}).to_string(),
    );
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("'host'") && text.contains("aws:rds:primaryDBInstanceArn"),
        "{text}"
    );
}

#[tokio::test]
async fn master_on_another_host_needs_a_replica_relationship() {
    let f = fixture_with(REPLICA, &master_secret(HOST));
    f.db.add_alias(REPLICA);
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    assert!(
        matches!(err.kind, ErrorKind::MasterElsewhere { .. }),
        "{err}"
    );
    assert_eq!(f.db.password_of("app_clone"), None);

    f.topology.set_relation(
        REPLICA,
        HOST,
        Relation::ReadReplica {
            replica: "replica".into(),
            source: "primary".into(),
        },
    );
    assert_eq!(
        f.step("setSecret", "t1").await.unwrap(),
        Outcome::UserCreated
    );
    f.step("testSecret", "t1").await.unwrap();
}

#[tokio::test]
async fn shared_owner_makes_the_clone_act_as_the_original() {
    let f = fixture();
    let secret = SecretJson::parse(&user_secret(HOST, "app", "app-pw"))
        .unwrap()
        .with_value("shared_owner", true.into());
    f.store
        .put_version(&f.arn, "v0", &secret.to_json_string(), &[AWSCURRENT]);
    f.rotate("t1").await;
    assert_eq!(
        f.db.settings_of("app_clone")
            .get("role")
            .map(String::as_str),
        Some("app")
    );
    // The second cycle keeps the setting, and testSecret accepts the original as current_user.
    f.rotate("t2").await;
    assert_eq!(f.stage(AWSCURRENT).username().unwrap(), "app");
}

#[tokio::test]
async fn clone_acting_as_another_role_without_the_opt_in_fails_test_secret() {
    let f = fixture();
    f.rotate("t1").await;
    f.rotate("t2").await;
    f.store.begin_rotation(&f.arn, "t3");
    f.step("createSecret", "t3").await.unwrap();
    f.step("setSecret", "t3").await.unwrap();
    // Someone makes the clone act as app behind the rotation's back (without the opt-in,
    // setSecret itself removes such a setting): testSecret catches it.
    f.db.set_setting("app_clone", "role", "app");
    let err = f.step("testSecret", "t3").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::WrongUser { .. }), "{err}");
}

#[tokio::test]
async fn without_the_opt_in_set_secret_removes_a_role_setting_left_on_the_clone() {
    let f = fixture();
    f.rotate("t1").await;
    f.db.set_setting("app_clone", "role", "app");
    f.rotate("t2").await;
    assert_eq!(f.db.settings_of("app_clone").get("role"), None);
}

#[tokio::test]
async fn alternating_rotation_makes_at_most_fourteen_secrets_manager_calls() {
    // Single user's thirteen, plus the master secret's GetSecretValue in setSecret.
    let f = fixture();
    f.rotate("t1").await;
    f.store.reset_calls();
    f.rotate("t2").await;
    let calls = f.store.calls();
    assert!(calls.len() <= 14, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|c| **c == "DescribeSecret").count(),
        4,
        "{calls:?}"
    );
}

#[tokio::test]
async fn an_unrelated_role_named_like_the_clone_keeps_its_password() {
    let f = fixture();
    // Someone else's role, never granted `app`.
    f.db.add_user("app_clone", "someone-elses-password");
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("not a member"), "{text}");
    assert_eq!(
        f.db.password_of("app_clone").as_deref(),
        Some("someone-elses-password")
    );
    assert!(!text.contains("someone-elses-password"));
}

#[tokio::test]
async fn the_clone_follows_the_original_settings_and_acting_role_every_rotation() {
    let f = fixture();
    f.rotate("t1").await;
    // A DBA changes the original after the clone exists.
    f.db.set_setting("app", "work_mem", "64MB");
    f.db.set_setting("app", "role", "app_owner");
    f.db.grant("app_clone", "app_owner");
    f.rotate("t2").await;
    let clone = f.db.settings_of("app_clone");
    assert_eq!(clone.get("work_mem").map(String::as_str), Some("64MB"));
    // The clone acts as the original acts, so testSecret expects app_owner for it.
    assert_eq!(clone.get("role").map(String::as_str), Some("app_owner"));
    f.rotate("t3").await;
    assert_eq!(f.credentials(AWSCURRENT).username, "app_clone");
}
