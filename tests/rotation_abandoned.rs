//! An abandoned single-user rotation, end to end (the real binary, a real PostgreSQL, moto):
//! setSecret changed the password, then the stuck AWSPENDING label was removed (AWS's
//! troubleshooting advice) and a new rotation began. The working password sits in a version
//! without a label; the new rotation's setSecret finds it and every step succeeds.

use e2e::{assert_no_secrets, World};
use rotation::{AWSCURRENT, AWSPENDING};

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_after_an_abandoned_one_recovers_through_the_unlabelled_version() {
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world.rotation_lambda(&[]).await;

    // A rotation gets as far as setSecret, then is abandoned.
    lambda.assert_preflight_passes(&arn);
    let abandoned = world.begin_rotation(&arn).await;
    for (step, outcome) in [
        ("createSecret", "pending_created"),
        ("setSecret", "password_set"),
    ] {
        assert_eq!(
            lambda.step(step, &arn, &abandoned).unwrap()["outcome"],
            outcome
        );
    }
    let stuck = world.password_at(&arn, AWSPENDING).await;
    world.remove_pending(&arn, &abandoned).await;
    assert!(!world.can_login("app", "initial-Password-1").await);
    assert!(world.can_login("app", &stuck).await);

    // moto keeps the version without a label, and lists it with IncludeDeprecated.
    let listed = world
        .sm
        .list_secret_version_ids()
        .secret_id(&arn)
        .include_deprecated(true)
        .send()
        .await
        .expect("ListSecretVersionIds");
    let entry = listed
        .versions()
        .iter()
        .find(|v| v.version_id() == Some(abandoned.as_str()))
        .expect("the abandoned version is listed");
    assert!(entry.version_stages().is_empty());

    // Preflight: a warning naming the version, no failure.
    let report = lambda.preflight(&arn);
    let login = report["preflight"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "current-login")
        .cloned()
        .expect("current-login check");
    assert!(
        login["status"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("warn")),
        "{login}"
    );
    assert!(
        login["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("version {abandoned}")),
        "{login}"
    );

    // A new rotation (preflight first, then all four steps) succeeds.
    let token = lambda.rotate(&world, &arn).await;
    let current = world.password_at(&arn, AWSCURRENT).await;
    assert!(world.labels(&arn).await[&token].contains(&AWSCURRENT.to_string()));
    assert!(world.can_login("app", &current).await);
    assert!(!world.can_login("app", &stuck).await);

    let output = lambda.output();
    assert!(
        output
            .lines()
            .any(|l| l.contains("unlabelled version") && l.contains(&abandoned)),
        "the recovering version is logged by id"
    );
    assert_no_secrets(&output, &["initial-Password-1".to_string(), stuck, current]);
}
