//! How passwords are stored, who logs in, and what the clone copies, on the real server (every
//! major in `make test-majors`): `PASSWORD_ENCRYPTION` and the server's `password_encryption` /
//! `scram_iterations`, a role whose own settings say `SET role`, finishSecret's last check, and
//! the clone following the original's attributes and settings on every rotation.

use e2e::alternating::{master_json, role_profile, setup_roles, user_json, verifier, APP_PASSWORD};
use e2e::{assert_no_secrets, World};
use rotation::{AWSCURRENT, AWSPENDING};
use serde_json::json;
use testkit::rotation::Step;

async fn single_user(world: &World, user: &str) -> String {
    world.role_with_secret(user, "Initial-Password-1").await
}

fn stored_kind(verifier: &str) -> String {
    match verifier.strip_prefix("SCRAM-SHA-256$") {
        Some(rest) => format!("scram:{}", rest.split(':').next().unwrap_or_default()),
        None if verifier.starts_with("md5") => "md5".into(),
        None => format!("other:{}", &verifier[..verifier.len().min(8)]),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_follows_the_servers_password_encryption_and_iterations() {
    let world = World::start().await;
    world.pg.allow_md5_logins().await;
    let scram = single_user(&world, "app_scram").await;
    let md5 = single_user(&world, "app_md5").await;
    // Per-role settings are what the user's own session sees, as server-wide settings would be.
    world
        .pg
        .exec("ALTER ROLE app_md5 SET password_encryption = 'md5'")
        .await;
    let iterations = if world.pg.major() >= 16 {
        world
            .pg
            .exec("ALTER ROLE app_scram SET scram_iterations = 10000")
            .await;
        "10000"
    } else {
        "4096"
    };
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(&world, &scram).await;
    lambda.rotate(&world, &md5).await;
    let stored = stored_kind(&verifier(&world, "app_scram").await.unwrap());
    assert_eq!(stored, format!("scram:{iterations}"));
    assert_eq!(
        stored_kind(&verifier(&world, "app_md5").await.unwrap()),
        "md5"
    );
    for (user, arn) in [("app_scram", &scram), ("app_md5", &md5)] {
        let password = world.password_at(arn, AWSCURRENT).await;
        assert!(world.can_login(user, &password).await, "{user}");
    }
    let output = lambda.output();
    assert!(
        output.contains(&format!("scram-sha-256 ({iterations} iterations)")),
        "{output}"
    );
    let mut values = vec!["Initial-Password-1".to_string()];
    for arn in [&scram, &md5] {
        values.push(world.password_at(arn, AWSCURRENT).await);
    }
    assert_no_secrets(&output, &values);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_encryption_variable_overrides_the_server() {
    let world = World::start().await;
    world.pg.allow_md5_logins().await;
    let forced_scram = single_user(&world, "forced_scram").await;
    world
        .pg
        .exec("ALTER ROLE forced_scram SET password_encryption = 'md5'")
        .await;
    let lambda = world
        .rotation_lambda(&[("PASSWORD_ENCRYPTION", "scram-sha-256")])
        .await;
    lambda.rotate(&world, &forced_scram).await;
    assert!(stored_kind(&verifier(&world, "forced_scram").await.unwrap()).starts_with("scram:"));

    let forced_md5 = single_user(&world, "forced_md5").await;
    let lambda = world
        .rotation_lambda(&[("PASSWORD_ENCRYPTION", "md5")])
        .await;
    lambda.rotate(&world, &forced_md5).await;
    assert_eq!(
        stored_kind(&verifier(&world, "forced_md5").await.unwrap()),
        "md5"
    );
    let password = world.password_at(&forced_md5, AWSCURRENT).await;
    assert!(world.can_login("forced_md5", &password).await);

    // A value that is none of the three: the function refuses to start, naming the variable.
    let bad = world
        .rotation_lambda(&[("PASSWORD_ENCRYPTION", "sha1")])
        .await;
    let token = world.begin_rotation(&forced_md5).await;
    let err = bad
        .step(Step::CreateSecret, &forced_md5, &token)
        .unwrap_err();
    assert!(err.to_string().contains("PASSWORD_ENCRYPTION"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_whose_settings_say_set_role_rotates_itself() {
    let world = World::start().await;
    world.pg.exec("CREATE ROLE app_owner NOLOGIN").await;
    let arn = single_user(&world, "app").await;
    world
        .pg
        .exec("GRANT app_owner TO app; ALTER ROLE app SET role = 'app_owner'")
        .await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(&world, &arn).await;
    let password = world.password_at(&arn, AWSCURRENT).await;
    assert!(world.can_login("app", &password).await);
    assert!(!world.can_login("app", "Initial-Password-1").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn finish_secret_does_not_move_current_to_a_password_changed_since_test_secret() {
    let world = World::start().await;
    let arn = single_user(&world, "app").await;
    let lambda = world.rotation_lambda(&[]).await;
    // The password is changed by hand after testSecret: nothing preflight could see before.
    lambda.assert_preflight_passes(&arn);
    let token = world.begin_rotation(&arn).await;
    for step in [Step::CreateSecret, Step::SetSecret, Step::TestSecret] {
        lambda.step(step, &arn, &token).unwrap();
    }
    world.set_password("app", "Changed-By-Hand-1").await;
    let labels = world.labels(&arn).await;
    let err = lambda.step(Step::FinishSecret, &arn, &token).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("PendingLoginFailed"), "{text}");
    assert!(text.contains("AWSCURRENT was not moved"), "{text}");
    assert_eq!(world.labels(&arn).await, labels, "no label moved");
    // Once the database accepts AWSPENDING again, the retried finishSecret completes.
    let pending = world.password_at(&arn, AWSPENDING).await;
    world.set_password("app", &pending).await;
    lambda.step(Step::FinishSecret, &arn, &token).unwrap();
    assert_eq!(world.password_at(&arn, AWSCURRENT).await, pending);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_clone_follows_the_originals_attributes_and_settings_every_rotation() {
    let world = World::start().await;
    setup_roles(&world).await;
    let master = world
        .create_secret("rds/master", &master_json(&world))
        .await;
    let arn = world
        .create_secret("prod/app", &user_json(&world, "app", APP_PASSWORD, &master))
        .await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(&world, &arn).await; // app_clone created
                                       // A DBA changes the original afterwards: attributes, a new setting, a removed one.
    world
        .pg
        .exec(
            "ALTER ROLE app NOCREATEDB CONNECTION LIMIT 9 VALID UNTIL '2040-06-01 00:00:00+00';
             ALTER ROLE app SET lock_timeout TO '3s';
             ALTER ROLE app RESET statement_timeout;",
        )
        .await;
    // Rotation 2 changes app's password (app_clone is current); rotation 3 the clone's. Both
    // bring the clone in line.
    for _ in 0..2 {
        lambda.rotate(&world, &arn).await;
        let original = role_profile(&world, "app").await.unwrap();
        let clone = role_profile(&world, "app_clone").await.unwrap();
        assert_eq!(clone, original);
        assert_eq!(original["connlimit"], json!(9));
        assert_eq!(original["createdb"], json!(false));
        let settings = original["settings"].to_string();
        assert!(settings.contains("lock_timeout=3s"), "{settings}");
        assert!(!settings.contains("statement_timeout"), "{settings}");
    }
    assert!(lambda
        .output()
        .contains("the clone now follows the original"));
}

#[tokio::test(flavor = "multi_thread")]
async fn on_16_and_later_the_shared_owner_needs_the_set_option_of_the_membership() {
    let world = World::start().await;
    setup_roles(&world).await;
    let master = world
        .create_secret("rds/master", &master_json(&world))
        .await;
    let mut value = user_json(&world, "app", APP_PASSWORD, &master);
    value["shared_owner"] = json!(true);
    let arn = world.create_secret("prod/app", &value).await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(&world, &arn).await; // app_clone created, acting as app
    if world.pg.major() < 16 {
        return; // membership is all SET ROLE needs before 16
    }
    // A DBA keeps the membership (the clone still inherits app's privileges) but takes away the
    // right to SET ROLE app, which the opt-in relies on: the option of the grant the master made
    // (a grant by another grantor would be a second membership, with its own options).
    world
        .pg
        .exec("GRANT app TO app_clone WITH SET FALSE GRANTED BY master")
        .await;
    lambda.assert_preflight_fails(&arn, "ownership");
    let verifier_before = verifier(&world, "app").await;
    let token = world.begin_rotation(&arn).await;
    lambda.step(Step::CreateSecret, &arn, &token).unwrap();
    let err = lambda.step(Step::SetSecret, &arn, &token).unwrap_err();
    assert!(err.error_message.contains("WITH SET TRUE"), "{err}");
    assert_eq!(
        verifier(&world, "app").await,
        verifier_before,
        "nothing changed"
    );
}
