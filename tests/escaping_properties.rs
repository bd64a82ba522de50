//! Escaping and password verifiers against the real server, over generated user names and
//! passwords (proptest): any name PostgreSQL can hold and any password a secret can carry. For
//! each pair, a role is created (name escaped), logs in, changes its own password through the
//! production adapter (`postgres-target`: `ALTER ROLE <escaped> WITH PASSWORD '<verifier>'`,
//! computed here), then the new password logs in and the old one no longer does. The verifier
//! with another SCRAM iteration count (`scram_verifier_with`, PostgreSQL 16's
//! `scram_iterations`) is checked the same way.
//!
//! `ESCAPING_CASES` sets the number of generated pairs (default 32).

use e2e::{escape_identifier, escape_literal};
use postgres_target::{alter_password_sql, PasswordStorage, PostgresTarget, Trust};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rotation::{CredentialTarget, DbCredentials, Password, TlsMode};
use testkit::postgres::PgServer;

/// PostgreSQL's identifier limit (NAMEDATALEN - 1 bytes); longer names are truncated.
const MAX_NAME_BYTES: usize = 63;

/// Any string without NUL (the wire protocol's terminator) of at most `max_bytes`.
fn text(max_chars: usize, max_bytes: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        any::<char>().prop_filter("no NUL", |c| *c != '\0'),
        1..max_chars,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>())
    .prop_filter("byte limit", move |s| s.len() <= max_bytes)
}

/// A role name: anything but the reserved `pg_` prefix.
fn role_name() -> impl Strategy<Value = String> {
    text(16, MAX_NAME_BYTES).prop_filter("pg_ names are reserved", |s| !s.starts_with("pg_"))
}

fn cases() -> u32 {
    std::env::var("ESCAPING_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

#[test]
fn generated_names_and_passwords_rotate_on_the_real_server() {
    let pg = PgServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let target = PostgresTarget::new(Trust::Default {
        ca_bundle: Some(pg.ca_pem_path().to_path_buf()),
    });
    let mut runner = TestRunner::new(Config::with_cases(cases()));
    let strategy = (role_name(), text(40, 256), text(40, 256), 1u32..6000);
    let tried = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&strategy, |(user, old, new, iterations)| {
            prop_assume!(old != new);
            tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(async {
                let admin = pg.admin().await;
                admin
                    .batch_execute(&format!(
                        "CREATE ROLE {} LOGIN PASSWORD {}",
                        escape_identifier(&user),
                        escape_literal(&old)
                    ))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("CREATE ROLE: {e}")))?;

                // The role changes its own password through the production adapter.
                let credentials = DbCredentials {
                    engine: "postgres".into(),
                    host: pg.host().to_string(),
                    port: pg.port(),
                    dbname: "postgres".into(),
                    username: user.clone(),
                    password: Password::new(old.clone()),
                    tls: TlsMode::VerifyFull,
                };
                let mut session = target.connect(&credentials).await.map_err(|e| {
                    TestCaseError::fail(format!("log in with the first password: {e}"))
                })?;
                session
                    .set_password(&user, &Password::new(new.clone()))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("set_password: {e}")))?;
                drop(session);
                prop_assert!(
                    pg.try_login(&user, &new, "postgres").await.is_ok(),
                    "new password logs in"
                );
                prop_assert!(
                    pg.try_login(&user, &old, "postgres").await.is_err(),
                    "old password refused"
                );

                // Another iteration count (PostgreSQL 16+'s scram_iterations), set by the admin.
                let storage = PasswordStorage::Scram { iterations };
                admin
                    .batch_execute(&alter_password_sql(
                        &user,
                        &Password::new(old.clone()),
                        storage,
                    ))
                    .await
                    .map_err(|e| {
                        TestCaseError::fail(format!("ALTER ROLE with {iterations} iterations: {e}"))
                    })?;
                prop_assert!(
                    pg.try_login(&user, &old, "postgres").await.is_ok(),
                    "{} iterations",
                    iterations
                );

                admin
                    .batch_execute(&format!("DROP ROLE {}", escape_identifier(&user)))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("DROP ROLE: {e}")))?;
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!(
        "{} generated user names and password pairs rotated on PostgreSQL {}",
        tried.into_inner(),
        pg.major()
    );
}
