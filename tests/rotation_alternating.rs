//! Alternating-users rotation end to end: the real `rotate-postgres` binary behind a Lambda
//! Runtime API, a real PostgreSQL 15 with TLS, and moto as Secrets Manager. The test plays
//! Secrets Manager. The master secret lives on the same server as the user (the RDS replica and
//! managed-secret look-ups are in `rotation_alternating_rds.rs`).

use e2e::alternating::{
    connect, has_privileges_of, ident, logs_in, master_json, role_exists, role_profile,
    setup_roles, user_json, verifier, APP_DB, APP_PASSWORD, APP_SCHEMA, MASTER_PASSWORD,
};
use e2e::{assert_no_secrets, World};
use rotation::{Step, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use serde_json::{json, Value};

struct Setup {
    world: World,
    master_arn: String,
    arn: String,
}

async fn setup(extra_fields: &[(&str, Value)]) -> Setup {
    let world = World::start().await;
    setup_roles(&world).await;
    let master_arn = world
        .create_secret("rds/master", &master_json(&world))
        .await;
    let mut value = user_json(&world, "app", APP_PASSWORD, &master_arn);
    for (field, v) in extra_fields {
        value[*field] = v.clone();
    }
    let arn = world.create_secret("prod/app", &value).await;
    Setup {
        world,
        master_arn,
        arn,
    }
}

impl Setup {
    async fn user_and_password(&self, stage: &str) -> (String, String) {
        let (_, value) = self.world.stage(&self.arn, stage).await.expect(stage);
        (
            value["username"].as_str().unwrap().to_string(),
            value["password"].as_str().unwrap().to_string(),
        )
    }
}

/// The clone's attributes and settings equal the original's, and it has the original's
/// privileges (membership in `app`, and through it `app_group`).
async fn assert_clone_matches_original(world: &World) {
    let original = role_profile(world, "app").await.unwrap();
    let clone = role_profile(world, "app_clone").await.unwrap();
    assert_eq!(
        clone, original,
        "app_clone copies app's attributes and settings"
    );
    assert_eq!(original["createdb"], json!(true));
    assert_eq!(original["connlimit"], json!(7));
    assert_eq!(
        original["valid_until"],
        json!("2031-01-01 00:00:00+00"),
        "{original}"
    );
    let settings = original["settings"].to_string();
    for expected in [
        "search_path=\\\"$user\\\", app_schema, \\\"Odd Schema\\\"",
        "statement_timeout=5s",
        "work_mem=8MB",
    ] {
        assert!(settings.contains(expected), "{expected} in {settings}");
    }
    assert!(has_privileges_of(world, "app_clone", "app").await);
    assert!(has_privileges_of(world, "app_clone", "app_group").await);
    assert!(!has_privileges_of(world, "app", "app_clone").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_cycles_alternate_users_and_the_previous_credentials_keep_working() {
    let s = setup(&[]).await;
    let world = &s.world;
    let lambda = world.rotation_lambda(&[]).await;
    let mut seen = vec![APP_PASSWORD.to_string(), MASTER_PASSWORD.to_string()];

    // Cycle 1: app → app_clone (created), every step run twice.
    lambda.assert_preflight_passes(&s.arn);
    let token = world.begin_rotation(&s.arn).await;
    let mut outcomes = Vec::new();
    for step in Step::ALL {
        outcomes.push(lambda.step(step, &s.arn, &token).unwrap()["outcome"].clone());
        let labels = world.labels(&s.arn).await;
        let pending = world.stage(&s.arn, AWSPENDING).await;
        let clone_verifier = verifier(world, "app_clone").await;
        let app_verifier = verifier(world, "app").await;
        let again = lambda.step(step, &s.arn, &token).unwrap();
        assert!(
            [
                "pending_exists",
                "password_already_set",
                "tested",
                "already_current"
            ]
            .contains(&again["outcome"].as_str().unwrap()),
            "{step} twice: {again}"
        );
        assert_eq!(world.labels(&s.arn).await, labels, "{step} twice");
        assert_eq!(
            world.stage(&s.arn, AWSPENDING).await,
            pending,
            "{step} twice"
        );
        assert_eq!(
            verifier(world, "app_clone").await,
            clone_verifier,
            "{step} twice"
        );
        assert_eq!(verifier(world, "app").await, app_verifier, "{step} twice");
    }
    assert_eq!(
        outcomes,
        vec![
            json!("pending_created"),
            json!("user_created"),
            json!("tested"),
            json!("finished")
        ]
    );
    let (user, password) = s.user_and_password(AWSCURRENT).await;
    assert_eq!(user, "app_clone");
    assert_eq!(password.len(), 32);
    seen.push(password.clone());
    assert!(
        logs_in(world, "app_clone", &password).await,
        "AWSCURRENT logs in"
    );
    let (prev_user, prev_password) = s.user_and_password(AWSPREVIOUS).await;
    assert_eq!(
        (prev_user.as_str(), prev_password.as_str()),
        ("app", APP_PASSWORD)
    );
    assert!(
        logs_in(world, "app", APP_PASSWORD).await,
        "AWSPREVIOUS still logs in: the point of the strategy"
    );
    assert_clone_matches_original(world).await;
    // The password reached the server only as a SCRAM verifier.
    assert!(verifier(world, "app_clone")
        .await
        .unwrap()
        .starts_with("SCRAM-SHA-256$4096:"));

    // Cycle 2: app_clone → app (password changed).
    let token = world.begin_rotation(&s.arn).await;
    let mut outcomes = Vec::new();
    for step in Step::ALL {
        outcomes.push(lambda.step(step, &s.arn, &token).unwrap()["outcome"].clone());
    }
    assert_eq!(outcomes[1], json!("password_set"));
    let (user, password) = s.user_and_password(AWSCURRENT).await;
    assert_eq!(user, "app");
    seen.push(password.clone());
    assert!(logs_in(world, "app", &password).await, "AWSCURRENT logs in");
    assert!(
        !logs_in(world, "app", APP_PASSWORD).await,
        "app's old password is gone"
    );
    let (prev_user, prev_password) = s.user_and_password(AWSPREVIOUS).await;
    assert_eq!(prev_user, "app_clone");
    assert!(
        logs_in(world, "app_clone", &prev_password).await,
        "AWSPREVIOUS still logs in"
    );
    assert_clone_matches_original(world).await;

    // Every field but username and password is untouched, with its JSON type.
    let (_, value) = world.stage(&s.arn, AWSCURRENT).await.unwrap();
    let mut expected = user_json(world, "app", &password, &s.master_arn);
    expected["password"] = value["password"].clone();
    assert_eq!(value, expected);
    assert!(value["port"].is_string());

    // The master secret was only read.
    let (_, master) = world.stage(&s.master_arn, AWSCURRENT).await.unwrap();
    assert_eq!(master, master_json(world));
    assert_no_secrets(&lambda.output(), &seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn current_that_cannot_log_in_is_refused_and_nothing_changes() {
    let s = setup(&[]).await;
    let world = &s.world;
    world.set_password("app", "Drifted-Password-9").await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.assert_preflight_fails(&s.arn, "current-login");
    let token = world.begin_rotation(&s.arn).await;
    lambda.step("createSecret", &s.arn, &token).unwrap();
    let err = lambda.step("setSecret", &s.arn, &token).unwrap_err();
    assert_eq!(err.error_type, "CurrentLoginFailed", "{err}");
    assert!(err.error_message.contains(&s.arn), "{err}");
    assert!(
        err.error_message.contains("AWSCURRENT cannot log in"),
        "{err}"
    );
    assert!(
        !role_exists(world, "app_clone").await,
        "nothing was created"
    );
    assert!(logs_in(world, "app", "Drifted-Password-9").await);
    let pending = world.password_at(&s.arn, AWSPENDING).await;
    assert_no_secrets(
        &lambda.output(),
        &[pending, MASTER_PASSWORD.into(), "Drifted-Password-9".into()],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn master_that_cannot_log_in_is_a_clear_error() {
    let s = setup(&[]).await;
    let world = &s.world;
    world.set_password("master", "Master-Changed-7").await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.assert_preflight_fails(&s.arn, "master-login");
    let token = world.begin_rotation(&s.arn).await;
    lambda.step("createSecret", &s.arn, &token).unwrap();
    let err = lambda.step("setSecret", &s.arn, &token).unwrap_err();
    assert_eq!(err.error_type, "MasterLoginFailed", "{err}");
    assert!(
        err.error_message.contains(&format!(
            "unable to log into the database with the master secret {}",
            s.master_arn
        )),
        "{err}"
    );
    assert!(
        err.error_message
            .contains("authentication failed for user \"master\""),
        "{err}"
    );
    assert!(!role_exists(world, "app_clone").await);
    let pending = world.password_at(&s.arn, AWSPENDING).await;
    assert_no_secrets(&lambda.output(), &[pending, MASTER_PASSWORD.into()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn master_without_createrole_fails_and_creates_nothing() {
    let s = setup(&[]).await;
    let world = &s.world;
    world.pg.exec("ALTER ROLE master NOCREATEROLE").await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.assert_preflight_fails(&s.arn, "master-create-role");
    let token = world.begin_rotation(&s.arn).await;
    lambda.step("createSecret", &s.arn, &token).unwrap();
    let err = lambda.step("setSecret", &s.arn, &token).unwrap_err();
    assert_eq!(err.error_type, "DatabaseError", "{err}");
    assert!(err.error_message.contains("CREATE ROLE"), "{err}");
    assert!(err.error_message.contains("permission denied"), "{err}");
    assert!(
        !role_exists(world, "app_clone").await,
        "the transaction rolled back"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_user_that_is_not_the_alternate_is_refused() {
    let s = setup(&[]).await;
    let world = &s.world;
    let lambda = world.rotation_lambda(&[]).await;
    let token = world.begin_rotation(&s.arn).await;
    // Someone else wrote AWSPENDING for this token with another user.
    world
        .sm
        .put_secret_value()
        .secret_id(&s.arn)
        .client_request_token(&token)
        .secret_string(
            user_json(world, "intruder", "Intruder-Password-1", &s.master_arn).to_string(),
        )
        .version_stages(AWSPENDING)
        .send()
        .await
        .unwrap();
    // Preflight sees the same AWSPENDING the retry would refuse.
    lambda.assert_preflight_fails(&s.arn, "pending-version");
    let err = lambda.step("setSecret", &s.arn, &token).unwrap_err();
    assert_eq!(err.error_type, "NotAlternateUser", "{err}");
    assert!(err.error_message.contains("\"app_clone\""), "{err}");
    assert!(err.error_message.contains("\"intruder\""), "{err}");
    assert!(!role_exists(world, "intruder").await);
    assert!(!role_exists(world, "app_clone").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn username_whose_clone_would_pass_63_bytes_is_refused() {
    let world = World::start().await;
    let long = "u".repeat(58);
    world.create_role(&long, APP_PASSWORD).await;
    let arn = world
        .create_secret(
            "long",
            &user_json(
                &world,
                &long,
                APP_PASSWORD,
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:m",
            ),
        )
        .await;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.assert_preflight_fails(&arn, "alternate-user");
    let token = world.begin_rotation(&arn).await;
    let err = lambda.step("createSecret", &arn, &token).unwrap_err();
    assert_eq!(err.error_type, "NameTooLong", "{err}");
    assert!(err.error_message.contains("63-byte"), "{err}");
    assert!(err.error_message.contains("64 bytes"), "{err}");
    let pending = world
        .sm
        .get_secret_value()
        .secret_id(&arn)
        .version_id(&token)
        .version_stage(AWSPENDING)
        .send()
        .await;
    assert!(pending.is_err(), "nothing was stored for the token");
    // 57 bytes fit exactly.
    let fits = "v".repeat(57);
    let arn = world
        .create_secret(
            "fits",
            &user_json(
                &world,
                &fits,
                APP_PASSWORD,
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:m",
            ),
        )
        .await;
    let token = world.begin_rotation(&arn).await;
    lambda.step("createSecret", &arn, &token).unwrap();
    let (_, pending) = world.stage(&arn, AWSPENDING).await.unwrap();
    assert_eq!(pending["username"].as_str().unwrap().len(), 63);
}

/// The server's message of a failed statement.
fn db_message(e: tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// Creates a table through `creator`'s credentials and uses it (read, write, drop) through
/// `user`'s. `Err` names the first operation that failed.
async fn share_table(
    world: &World,
    creator: (&str, &str),
    user: (&str, &str),
    table: &str,
) -> Result<(), String> {
    let c = connect(world, creator.0, creator.1, APP_DB).await?;
    let qualified = format!("{}.{}", ident(APP_SCHEMA), ident(table));
    c.batch_execute(&format!(
        "CREATE TABLE {qualified} (id int); INSERT INTO {qualified} VALUES (1)"
    ))
    .await
    .map_err(|e| format!("create as {}: {}", creator.0, db_message(e)))?;
    let u = connect(world, user.0, user.1, APP_DB).await?;
    let count: i64 = u
        .query_one(&format!("SELECT count(*) FROM {qualified}"), &[])
        .await
        .map_err(|e| format!("read as {}: {}", user.0, db_message(e)))?
        .get(0);
    assert_eq!(count, 1);
    u.batch_execute(&format!("INSERT INTO {qualified} VALUES (2)"))
        .await
        .map_err(|e| format!("write as {}: {}", user.0, db_message(e)))?;
    u.batch_execute(&format!("DROP TABLE {qualified}"))
        .await
        .map_err(|e| format!("drop as {}: {}", user.0, db_message(e)))?;
    Ok(())
}

async fn table_owner(world: &World, table: &str) -> Option<String> {
    let (user, password) = world.pg.superuser();
    let admin = connect(world, user, password, APP_DB).await.unwrap();
    admin
        .query_opt(
            "SELECT tableowner::text FROM pg_tables WHERE schemaname = $1 AND tablename = $2",
            &[&APP_SCHEMA, &table],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_owner_opt_in_keeps_objects_usable_by_both_users() {
    let s = setup(&[("shared_owner", json!(true))]).await;
    let world = &s.world;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(world, &s.arn).await;
    let (clone, clone_pw) = s.user_and_password(AWSCURRENT).await;
    let (original, original_pw) = s.user_and_password(AWSPREVIOUS).await;
    assert_eq!((clone.as_str(), original.as_str()), ("app_clone", "app"));

    // A table created through the clone's credentials is owned by app, and app can read, write
    // and drop it.
    let c = connect(world, &clone, &clone_pw, APP_DB).await.unwrap();
    let row = c
        .query_one("SELECT session_user::text, current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("app_clone".into(), "app".into())
    );
    c.batch_execute("CREATE TABLE app_schema.made_by_clone (id int)")
        .await
        .unwrap();
    assert_eq!(
        table_owner(world, "made_by_clone").await.as_deref(),
        Some("app")
    );
    c.batch_execute("DROP TABLE app_schema.made_by_clone")
        .await
        .unwrap();
    share_table(world, (&clone, &clone_pw), (&original, &original_pw), "t1")
        .await
        .unwrap();
    // And the reverse.
    share_table(world, (&original, &original_pw), (&clone, &clone_pw), "t2")
        .await
        .unwrap();

    // The next cycle (back to app) keeps it so, and testSecret accepts app_clone acting as app.
    lambda.rotate(world, &s.arn).await;
    let (user, password) = s.user_and_password(AWSCURRENT).await;
    let (prev, prev_pw) = s.user_and_password(AWSPREVIOUS).await;
    assert_eq!((user.as_str(), prev.as_str()), ("app", "app_clone"));
    share_table(world, (&prev, &prev_pw), (&user, &password), "t3")
        .await
        .unwrap();
    share_table(world, (&user, &password), (&prev, &prev_pw), "t4")
        .await
        .unwrap();
    lambda.rotate(world, &s.arn).await;
    assert_no_secrets(
        &lambda.output(),
        &[
            clone_pw,
            original_pw,
            password,
            prev_pw,
            MASTER_PASSWORD.into(),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_owner_from_the_environment() {
    let s = setup(&[]).await;
    let world = &s.world;
    let lambda = world
        .rotation_lambda(&[("ALTERNATING_SHARED_OWNER", "true")])
        .await;
    lambda.rotate(world, &s.arn).await;
    let (clone, clone_pw) = s.user_and_password(AWSCURRENT).await;
    share_table(world, (&clone, &clone_pw), ("app", APP_PASSWORD), "t1")
        .await
        .unwrap();
    let acting_as = |password: String| async move {
        let c = connect(world, "app_clone", &password, APP_DB)
            .await
            .unwrap();
        c.query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    assert_eq!(acting_as(clone_pw.clone()).await, "app");

    // The opt-in turned off: the next rotation removes the clone's role setting.
    drop(lambda);
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(world, &s.arn).await;
    let (prev, prev_pw) = s.user_and_password(AWSPREVIOUS).await;
    assert_eq!(prev, "app_clone");
    assert_eq!(acting_as(prev_pw).await, "app_clone");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_opt_in_the_original_cannot_use_what_the_clone_creates() {
    // The AWS templates' behaviour, kept by default and documented: the clone can use what the
    // original owns (it is a member of it), but what the clone creates belongs to the clone.
    let s = setup(&[]).await;
    let world = &s.world;
    let lambda = world.rotation_lambda(&[]).await;
    lambda.rotate(world, &s.arn).await;
    let (clone, clone_pw) = s.user_and_password(AWSCURRENT).await;
    share_table(
        world,
        ("app", APP_PASSWORD),
        (&clone, &clone_pw),
        "from_original",
    )
    .await
    .unwrap();
    let err = share_table(
        world,
        (&clone, &clone_pw),
        ("app", APP_PASSWORD),
        "from_clone",
    )
    .await
    .unwrap_err();
    assert!(err.starts_with("read as app"), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert_eq!(
        table_owner(world, "from_clone").await.as_deref(),
        Some("app_clone")
    );
}
