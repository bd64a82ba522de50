//! The throwaway PostgreSQL server: SCRAM logins, TLS against the test CA, cleanup on drop, on
//! the default binaries and on every supported major.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use testkit::postgres::PgServer;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Connects as the superuser with TLS required, trusting only the CA certificates in `ca_pem`.
async fn connect_tls(pg: &PgServer, ca_pem: &Path) -> Result<tokio_postgres::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("open the CA PEM file") {
        roots
            .add(cert.expect("parse a CA certificate"))
            .expect("add the CA to the root store");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (user, password) = pg.superuser();
    let (client, connection) = tokio_postgres::Config::new()
        .host(pg.host())
        .port(pg.port())
        .user(user)
        .password(password)
        .dbname("postgres")
        .ssl_mode(SslMode::Require)
        .connect(MakeRustlsConnect::new(tls))
        .await
        .map_err(|e| format!("{e:?}"))?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn scram_logins_accept_the_password_and_reject_others() {
    let pg = PgServer::start();
    assert_eq!(pg.host(), "127.0.0.1");
    let (superuser, superuser_password) = pg.superuser();
    assert_eq!(superuser, "postgres");
    pg.try_login(superuser, superuser_password, "postgres")
        .await
        .expect("the superuser logs in");

    pg.exec(
        "CREATE ROLE app LOGIN PASSWORD 'Correct-Horse-1'; CREATE ROLE same LOGIN PASSWORD 'same';",
    )
    .await;
    let stored: String = pg
        .admin()
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'",
            &[],
        )
        .await
        .expect("read the stored verifier")
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$"), "{stored}");

    pg.try_login("app", "Correct-Horse-1", "postgres")
        .await
        .expect("the right password logs in");
    let error = pg
        .try_login("app", "Wrong-Horse-2", "postgres")
        .await
        .expect_err("a wrong password is rejected");
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(!error.contains("Wrong-Horse-2"), "{error}");

    // The password never appears in the error, even where it equals other text in it.
    let error = pg
        .try_login("same", "postgres", "postgres")
        .await
        .expect_err("a wrong password is rejected");
    assert!(!error.contains("postgres"), "{error}");

    assert!(pg.log().contains("password authentication failed"));
}

#[tokio::test]
async fn tls_is_verified_against_the_test_ca_only() {
    let pg = PgServer::start();
    assert_eq!(
        std::fs::read_to_string(pg.ca_pem_path()).expect("read the CA file"),
        pg.ca_pem()
    );
    for path in [pg.ca_pem_path(), pg.wrong_ca_pem_path()] {
        let mode = std::fs::metadata(path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o004, 0o004, "{} is world-readable", path.display());
    }

    let client = connect_tls(&pg, pg.ca_pem_path())
        .await
        .expect("TLS verified against the test CA");
    let (ssl, version): (bool, String) = {
        let row = client
            .query_one(
                "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("query pg_stat_ssl");
        (row.get(0), row.get(1))
    };
    assert!(ssl, "the session is encrypted");
    assert!(version.starts_with("TLSv1."), "{version}");

    let error = connect_tls(&pg, pg.wrong_ca_pem_path())
        .await
        .expect_err("a server certificate from another CA is rejected");
    assert!(error.contains("UnknownIssuer"), "{error}");

    // Plaintext logins still work: the client decides.
    let (user, password) = pg.superuser();
    pg.try_login(user, password, "postgres")
        .await
        .expect("plaintext login");
}

#[test]
fn drop_stops_the_server_and_removes_its_directory_even_on_panic() {
    let (sender, receiver) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let pg = PgServer::start();
        sender
            .send((pg.data_dir().to_path_buf(), pg.port()))
            .expect("send");
        assert!(pg.data_dir().join("PG_VERSION").is_file());
        TcpStream::connect(("127.0.0.1", pg.port())).expect("the server listens");
        panic!("a failing test");
    });
    assert!(test.join().is_err(), "the thread panicked");
    let (data_dir, port) = receiver.recv().expect("the server started");
    assert!(!data_dir.exists(), "{} removed", data_dir.display());
    assert!(
        !data_dir.parent().expect("temp dir").exists(),
        "temporary directory removed"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on {port} any more"
    );
}

/// The checks `every_supported_major_serves_scram_over_tls` makes on one server.
async fn check_major(pg: &PgServer, major: u32) {
    assert_eq!(pg.major(), major);
    assert!(
        pg.server_version().starts_with(&format!("{major}.")),
        "{}",
        pg.server_version()
    );
    assert!(
        pg.bindir()
            .starts_with(testkit::workspace_root().join(".cache/postgres")),
        "{} runs from the workspace's cache",
        pg.bindir().display()
    );

    // SCRAM over TLS, verified against the test CA.
    let client = connect_tls(pg, pg.ca_pem_path())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL {major}: TLS login: {e}"));
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
                    ssl, version \
             FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("query the version and pg_stat_ssl");
    let (version, version_num, ssl, tls): (String, i32, bool, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(version, pg.server_version(), "SHOW server_version");
    assert_eq!(version_num / 10000, major as i32, "{version_num}");
    assert!(ssl, "PostgreSQL {major}: the session is encrypted");
    assert!(tls.starts_with("TLSv1."), "{tls}");

    // Every verifier is SCRAM, the superuser's (set by initdb) and a new role's.
    client
        .batch_execute("CREATE ROLE app LOGIN PASSWORD 'Correct-Horse-1'")
        .await
        .expect("create a role");
    for role in ["postgres", "app"] {
        let stored: String = client
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[&role],
            )
            .await
            .expect("read the stored verifier")
            .get(0);
        assert!(
            stored.starts_with("SCRAM-SHA-256$"),
            "PostgreSQL {major}: {role}'s verifier is {:?}",
            &stored[..stored.len().min(14)]
        );
    }
    pg.try_login("app", "Correct-Horse-1", "postgres")
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL {major}: {e}"));
    let error = pg
        .try_login("app", "Wrong-Horse-2", "postgres")
        .await
        .expect_err("a wrong password is rejected");
    assert!(
        error.contains("password authentication failed"),
        "PostgreSQL {major}: {error}"
    );

    // A server certificate from another CA is refused.
    let error = connect_tls(pg, pg.wrong_ca_pem_path())
        .await
        .expect_err("a server certificate from another CA is rejected");
    assert!(
        error.contains("UnknownIssuer"),
        "PostgreSQL {major}: {error}"
    );
}

/// Starts each major in `majors` in turn and checks it; returns one timing line per major.
async fn check_majors(majors: Vec<u32>) -> Vec<String> {
    let mut timings = Vec::new();
    for major in majors {
        let started = Instant::now();
        let pg = tokio::task::spawn_blocking(move || PgServer::start_major(major))
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL {major} did not start: {e}"));
        let start_time = started.elapsed();
        check_major(&pg, major).await;
        timings.push(format!(
            "{major} ({}): started in {:.2} s",
            pg.server_version(),
            start_time.as_secs_f64()
        ));
    }
    timings
}

#[tokio::test]
async fn every_supported_major_serves_scram_over_tls() {
    // One after another: each start is initdb plus a server start (a second or two); two at a
    // time measured no faster on a two-core machine.
    let timings = check_majors(testkit::pgdist::SUPPORTED_MAJORS.to_vec()).await;
    eprintln!("PostgreSQL majors:\n  {}", timings.join("\n  "));
}

/// Whether `role` exists on `pg`.
async fn has_role(pg: &PgServer, role: &str) -> bool {
    pg.admin()
        .await
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .is_some()
}

/// Polls `condition` every 50 ms for up to 60 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, condition: impl Fn() -> F) {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while !condition().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_replays_the_primary_until_its_replay_is_paused() {
    let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    pg.exec("CREATE ROLE before_backup LOGIN PASSWORD 'Before-Backup-1'")
        .await;
    let standby = pg.start_standby(&["replica.example.test"]).await;
    assert_ne!(standby.port(), pg.port());
    assert_eq!(standby.major(), pg.major());
    let recovery: bool = standby
        .admin()
        .await
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(recovery, "a standby is in recovery");
    // What the backup copied, the same superuser, TLS against the same CA.
    standby
        .try_login("before_backup", "Before-Backup-1", "postgres")
        .await
        .expect("the copied role logs in on the standby");
    connect_tls(&standby, standby.ca_pem_path())
        .await
        .expect("the standby's certificate verifies against the test CA");
    // A hot standby is read-only.
    let write = standby
        .admin()
        .await
        .batch_execute("CREATE ROLE nope")
        .await
        .unwrap_err();
    assert!(
        format!("{write:?}").contains("read-only transaction"),
        "{write:?}"
    );

    // Streaming: a change on the primary reaches the standby.
    pg.exec("CREATE ROLE streamed").await;
    eventually("the standby replays CREATE ROLE streamed", || {
        has_role(&standby, "streamed")
    })
    .await;

    // Paused: the change is received but not replayed, until resumed.
    standby.exec("SELECT pg_wal_replay_pause()").await;
    pg.exec("CREATE ROLE while_paused").await;
    let written: String = pg
        .admin()
        .await
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    eventually(
        "the standby receives the WAL of CREATE ROLE while_paused",
        || async {
            standby
                .admin()
                .await
                .query_one(
                    "SELECT pg_last_wal_receive_lsn() >= $1::text::pg_lsn",
                    &[&written],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        },
    )
    .await;
    assert!(!has_role(&standby, "while_paused").await, "not replayed");
    standby.exec("SELECT pg_wal_replay_resume()").await;
    eventually("the standby replays once resumed", || {
        has_role(&standby, "while_paused")
    })
    .await;

    let data_dir = standby.data_dir().to_path_buf();
    drop(standby);
    assert!(!data_dir.exists(), "the standby's directory is removed");
}
