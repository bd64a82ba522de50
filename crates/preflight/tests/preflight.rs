//! The preflight against the in-memory store, database and RDS look-ups (the shared rotation
//! fixture of `rotation::testing`).

use preflight::{preflight, Ports, PreflightOptions, Report, Status};
use rotation::testing::{
    master_secret, RotationFixture, MASTER_ARN, PRIMARY_HOST as HOST, REPLICA_HOST as REPLICA,
};
use rotation::{Relation, ReplicaWait, AWSCURRENT};

fn fixture() -> RotationFixture {
    RotationFixture::alternating(HOST, &master_secret(HOST))
}

/// The preflight over the fixture's ports and its rotator's settings.
async fn run(f: &RotationFixture) -> Report {
    let ports = Ports {
        store: &f.store,
        target: &f.db,
        topology: &f.topology,
        settings: f.rotator.settings(),
    };
    preflight(&ports, &f.arn, &PreflightOptions::default()).await
}

#[tokio::test]
async fn preflight_healthy_alternating_secret_passes() {
    let f = fixture();
    f.store
        .set_rotation_lambda(&f.arn, Some("arn:aws:lambda:us-east-1:1:function:rotate"));
    let report = run(&f).await;
    assert!(report.passed(), "{}", report.to_text());
    for name in [
        "secret",
        "secret-json",
        "engine",
        "host-reachable",
        "tls",
        "current-login",
        "alternate-user",
        "master-secret",
        "master-host",
        "master-login",
        "master-create-role",
        "rotation",
        "pending-version",
    ] {
        assert_eq!(
            report.check(name).map(|c| c.status),
            Some(Status::Pass),
            "{name}\n{}",
            report.to_text()
        );
    }
    assert!(report
        .check("permissions")
        .unwrap()
        .detail
        .contains(MASTER_ARN));
    assert!(!report.to_text().contains("app-pw"));
    assert!(!report.to_text().contains("master-pw"));
}

#[tokio::test]
async fn preflight_names_the_failing_check_and_its_fix() {
    // Master without CREATEROLE.
    let f = fixture();
    f.db.add_user("weak", "weak-pw");
    f.store.put_version(
        MASTER_ARN,
        "m1",
        &serde_json::json!({"engine":"postgres","host":HOST,"username":"weak","password":"weak-pw"})
            .to_string(),
        &[AWSCURRENT],
    );
    let report = run(&f).await;
    let check = report.check("master-create-role").unwrap();
    assert_eq!(check.status, Status::Fail, "{}", report.to_text());
    assert!(check.fix.as_deref().unwrap().contains("CREATEROLE"));
    assert!(!report.passed());

    // TLS failure: reachable, TLS fails, login skipped.
    let f = fixture();
    f.db.fail_tls("invalid peer certificate: UnknownIssuer");
    let report = run(&f).await;
    assert_eq!(report.check("host-reachable").unwrap().status, Status::Pass);
    assert_eq!(report.check("tls").unwrap().status, Status::Fail);
    assert!(report
        .check("tls")
        .unwrap()
        .fix
        .as_deref()
        .unwrap()
        .contains("DB_CA_BUNDLE"));
    assert_eq!(report.check("current-login").unwrap().status, Status::Skip);

    // Bad JSON.
    let f = fixture();
    f.store
        .put_version(&f.arn, "v1", "{\"password\": \"hunter2\"", &[AWSCURRENT]);
    let report = run(&f).await;
    assert_eq!(report.check("secret-json").unwrap().status, Status::Fail);
    assert!(!report.to_text().contains("hunter2"));
    assert!(!serde_json::to_string(&report.to_json())
        .unwrap()
        .contains("hunter2"));
}

/// The preflight with `options` (e.g. the replica wait the function uses).
async fn run_with(f: &RotationFixture, options: &PreflightOptions) -> Report {
    let ports = Ports {
        store: &f.store,
        target: &f.db,
        topology: &f.topology,
        settings: f.rotator.settings(),
    };
    preflight(&ports, &f.arn, options).await
}

/// Alternating users whose host is a standby that RDS calls a read replica of the master's.
fn on_standby() -> RotationFixture {
    let f = RotationFixture::alternating(REPLICA, &master_secret(HOST));
    f.store
        .set_rotation_lambda(&f.arn, Some("arn:aws:lambda:us-east-1:1:function:rotate"));
    f.db.add_standby(REPLICA);
    f.topology.set_relation(
        REPLICA,
        HOST,
        Relation::ReadReplica {
            replica: "replica".into(),
            source: "primary".into(),
        },
    );
    f
}

#[tokio::test]
async fn a_standby_user_host_is_reported_with_the_replica_wait() {
    let f = on_standby();
    let options = PreflightOptions {
        replica_wait: ReplicaWait::up_to(ReplicaWait::DEFAULT_TOTAL),
        ..PreflightOptions::default()
    };
    let report = run_with(&f, &options).await;
    assert!(report.passed(), "{}", report.to_text());
    let standby = report.check("standby").expect("a standby check");
    assert_eq!(standby.status, Status::Info);
    assert!(
        standby.detail.contains("testSecret waits up to 30 s"),
        "{}",
        standby.detail
    );
    assert_eq!(
        report.check("master-host").map(|c| c.status),
        Some(Status::Pass)
    );

    // Without the wait, a lagging replica fails the rotation: a warning, not a failure.
    let report = run_with(&f, &PreflightOptions::default()).await;
    assert!(report.passed(), "{}", report.to_text());
    let standby = report.check("standby").unwrap();
    assert_eq!(standby.status, Status::Warn);
    assert!(standby
        .fix
        .as_deref()
        .unwrap()
        .contains("TEST_SECRET_REPLICA_WAIT_SECONDS"));

    // A primary gets no standby check at all.
    let report = run(&fixture()).await;
    assert!(report.check("standby").is_none(), "{}", report.to_text());
}

#[tokio::test]
async fn single_user_on_a_standby_fails_as_set_secret_would() {
    let store = rotation::testing::MemoryStore::new();
    let db = rotation::testing::MemoryDatabase::new(HOST);
    db.add_standby(REPLICA);
    db.add_user("app", "app-pw");
    let arn = store.create_secret(
        "app",
        "v0",
        &serde_json::json!({"engine": "postgres", "host": REPLICA, "username": "app",
            "password": "app-pw"})
        .to_string(),
    );
    let f = RotationFixture::new(store, db, &arn);
    let report = run(&f).await;
    let standby = report.check("standby").expect("a standby check");
    assert_eq!(standby.status, Status::Fail, "{}", report.to_text());
    assert!(standby.detail.contains("read-only"), "{}", standby.detail);

    // And the rotation does fail at setSecret, as predicted, changing nothing.
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert_eq!(f.db.password_of("app").as_deref(), Some("app-pw"));
}

#[tokio::test]
async fn a_master_secret_on_a_standby_fails_master_login() {
    // The master secret names the standby itself (same server as the user): refused.
    let f = RotationFixture::alternating(REPLICA, &master_secret(REPLICA));
    f.db.add_standby(REPLICA);
    let report = run(&f).await;
    let check = report.check("master-login").unwrap();
    assert_eq!(check.status, Status::Fail, "{}", report.to_text());
    assert!(check.detail.contains("is a standby"), "{}", check.detail);
    assert_eq!(
        report.check("master-create-role").map(|c| c.status),
        Some(Status::Skip)
    );
    // setSecret fails there too, before any change.
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert_eq!(f.db.password_of("app_clone"), None);
}

#[tokio::test]
async fn custom_endpoints_and_global_secondaries_pass_master_host() {
    for relation in [
        Relation::AuroraCustomEndpoint {
            endpoint: "reporting".into(),
            cluster: "aurora".into(),
        },
        Relation::GlobalSecondary {
            member: "the reader endpoint".into(),
            cluster: "aurora-eu".into(),
            global: "orders".into(),
            primary: "aurora".into(),
        },
    ] {
        let f = RotationFixture::alternating(REPLICA, &master_secret(HOST));
        f.db.add_alias(REPLICA);
        f.topology.set_relation(REPLICA, HOST, relation.clone());
        let report = run(&f).await;
        let check = report.check("master-host").unwrap();
        assert_eq!(check.status, Status::Pass, "{}", report.to_text());
        assert!(
            check.detail.contains(&relation.describe()),
            "{}",
            check.detail
        );
        // The rotation accepts what the preflight accepted.
        f.rotate("t1").await;
    }
}

#[tokio::test]
async fn the_tls_check_names_the_mode_its_roots_and_the_fix_of_each_failure() {
    // verify-ca: the mode and the target's roots are reported, and it passes.
    let f = RotationFixture::single_user();
    let mut value: serde_json::Value = serde_json::from_str(
        &rotation::testing::single_user_secret("app", "initial-password"),
    )
    .unwrap();
    value["ssl"] = "verify-ca".into();
    f.store
        .put_version(&f.arn, "v1", &value.to_string(), &[AWSCURRENT]);
    let report = run(&f).await;
    let tls = report.check("tls").unwrap();
    assert_eq!(tls.status, Status::Pass, "{}", report.to_text());
    assert!(tls.detail.starts_with("verify-ca: "), "{}", tls.detail);
    assert!(
        tls.detail.contains("the in-memory roots (verify-ca)")
            && tls.detail.contains("host name is not checked"),
        "{}",
        tls.detail
    );
    assert!(report
        .check("secret-json")
        .unwrap()
        .detail
        .contains("TLS verify-ca"));

    // verify-full (the default) against a certificate for another name: the fix is the host name
    // or verify-ca.
    let f = RotationFixture::single_user();
    let report = run(&f).await;
    let tls = report.check("tls").unwrap();
    assert!(tls.detail.starts_with("verify-full: "), "{}", tls.detail);
    f.db.fail_tls(
        "invalid peer certificate: certificate not valid for name \"db.example.internal\"",
    );
    let report = run(&f).await;
    let tls = report.check("tls").unwrap();
    assert_eq!(tls.status, Status::Fail);
    let fix = tls.fix.as_deref().unwrap();
    assert!(
        fix.contains("does not name db.example.internal") && fix.contains("\"verify-ca\""),
        "{fix}"
    );

    // An unknown issuer: the fix names the roots of the mode and DB_CA_BUNDLE.
    f.db.fail_tls("invalid peer certificate: UnknownIssuer");
    let report = run(&f).await;
    let fix = report.check("tls").unwrap().fix.clone().unwrap();
    assert!(
        fix.contains("the in-memory roots (verify-full)") && fix.contains("DB_CA_BUNDLE"),
        "{fix}"
    );
    assert_eq!(report.check("current-login").unwrap().status, Status::Skip);
}

/// Single user, rotation `t1` abandoned after its setSecret changed the password, its
/// AWSPENDING label removed: the working password sits in the unlabelled version `t1`.
async fn abandoned_single_user() -> RotationFixture {
    let f = stopped_after_set_secret().await;
    f.store.remove_label(&f.arn, "t1", rotation::AWSPENDING);
    f
}

/// Single user, rotation `t1` stopped after its setSecret changed the password: AWSCURRENT no
/// longer logs in, AWSPENDING does.
async fn stopped_after_set_secret() -> RotationFixture {
    let f = RotationFixture::single_user();
    f.store
        .set_rotation_lambda(&f.arn, Some("arn:aws:lambda:us-east-1:1:function:rotate"));
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    f.step("setSecret", "t1").await.unwrap();
    f
}

#[tokio::test]
async fn an_abandoned_rotation_is_a_warning_naming_the_version_and_the_repair() {
    let f = abandoned_single_user().await;
    let report = run(&f).await;
    let check = report.check("current-login").unwrap();
    assert_eq!(check.status, Status::Warn, "{}", report.to_text());
    assert!(check.detail.contains("version t1"), "{}", check.detail);
    let fix = check.fix.as_deref().unwrap();
    assert!(fix.contains("next rotation"), "{fix}");
    assert!(
        fix.contains(&format!(
            "update-secret-version-stage --secret-id {} --version-stage AWSCURRENT \
             --move-to-version-id t1 --remove-from-version-id v0",
            f.arn
        )),
        "{fix}"
    );
    assert!(report.passed(), "{}", report.to_text());
    assert!(report
        .check("permissions")
        .unwrap()
        .detail
        .contains("ListSecretVersionIds"));
    let stuck = f.db.password_of("app").unwrap();
    assert!(!report.to_text().contains(&stuck));
    assert!(!serde_json::to_string(&report.to_json())
        .unwrap()
        .contains(&stuck));
    // What preflight predicts is what happens: the next rotation succeeds.
    f.rotate("t2").await;
    assert_eq!(
        f.db.password_of("app").unwrap(),
        f.credentials(AWSCURRENT).password.expose()
    );
}

#[tokio::test]
async fn an_unlabelled_version_of_another_user_does_not_save_the_login_check() {
    let f = RotationFixture::single_user();
    f.db.add_user("other", "other-password");
    f.db.add_user("app", "changed-behind-our-back");
    f.store.put_version(
        &f.arn,
        "other-user",
        &rotation::testing::single_user_secret("other", "other-password"),
        &[],
    );
    let report = run(&f).await;
    assert_eq!(
        report.check("current-login").unwrap().status,
        Status::Fail,
        "{}",
        report.to_text()
    );
    // As predicted, setSecret fails.
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    assert!(f.step("setSecret", "t1").await.is_err());
}

#[tokio::test]
async fn a_rotation_stopped_after_set_secret_is_a_warning_and_its_retry_finishes_it() {
    let f = stopped_after_set_secret().await;
    let report = run(&f).await;
    let check = report.check("current-login").unwrap();
    assert_eq!(check.status, Status::Warn, "{}", report.to_text());
    assert!(check.detail.contains("AWSPENDING does"), "{}", check.detail);
    let fix = check.fix.as_deref().unwrap();
    assert!(
        fix.contains(&format!("rotate-secret --secret-id {}", f.arn)),
        "{fix}"
    );
    let pending = f.db.password_of("app").unwrap();
    assert!(!report.to_text().contains(&pending));
    // What preflight predicts is what happens: the retry of the same rotation finishes it.
    f.step("setSecret", "t1").await.unwrap();
    f.step("testSecret", "t1").await.unwrap();
    f.step("finishSecret", "t1").await.unwrap();
    assert_eq!(
        f.db.password_of("app").unwrap(),
        f.credentials(AWSCURRENT).password.expose()
    );
}
