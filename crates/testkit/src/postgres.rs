//! A throwaway PostgreSQL server for tests: SCRAM-SHA-256 authentication, TLS with a generated
//! test CA, listening only on 127.0.0.1 on a free port, everything in a temporary directory that
//! is removed on drop.
//!
//! [`PgServer::start_major`] runs a given major from the pinned binaries in the workspace's cache
//! ([`crate::pgdist`]); [`PgServer::start`] runs the default: the major named by
//! `TESTKIT_PG_MAJOR` if set, else the system's binaries.
//!
//! [`PgServer::start_standby`] starts a streaming standby of a server (a hot standby that
//! replays the primary's changes, as an RDS read replica does), and
//! [`PgServer::serve_host_names`] adds DNS names to a server's certificate, for tests that reach
//! the servers by other names (see [`crate::lambda::LambdaHost::start_with_hosts`]).

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;

use crate::certs::{ServerCert, TestCa};

/// The address the server listens on (and the only one).
const HOST: &str = "127.0.0.1";
/// The superuser created by `initdb`.
const SUPERUSER: &str = "postgres";
/// How long `try_login` waits for the server.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How many free ports `start` tries before giving up (another process may grab one first).
const PORT_ATTEMPTS: usize = 5;
/// Names the major [`PgServer::start`] runs from the cache instead of the system's binaries.
pub const MAJOR_ENV: &str = "TESTKIT_PG_MAJOR";
/// How long [`PgServer::start_standby`] and [`PgServer::serve_host_names`] wait for the server.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Files of a data directory a base backup leaves out (the server's runtime state).
const NOT_COPIED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "pg_internal.init",
    "backup_label",
    "tablespace_map",
    "standby.signal",
    "recovery.signal",
];
/// Directories of a data directory whose contents a base backup leaves out (kept empty).
const EMPTIED_DIRS: &[&str] = &[
    "pg_wal",
    "pg_replslot",
    "pg_stat_tmp",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// A running throwaway PostgreSQL server.
///
/// Started by [`PgServer::start`]; stopped (`pg_ctl -m immediate stop`) and its directory removed
/// on drop, also when the test panics, and on SIGINT / SIGTERM in a binary that installed
/// [`crate::cleanup::exit_on_signals`] (both are registered in [`crate::cleanup`]).
///
/// When the process runs as root (PostgreSQL refuses to), `initdb` and `pg_ctl` run as the
/// `postgres` user through `runuser`, and the temporary directory is owned by that user.
pub struct PgServer {
    dir: Option<TempDir>,
    bindir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    ca_pem_path: PathBuf,
    wrong_ca_pem_path: PathBuf,
    ca_pem: String,
    /// The CA that signs this server's certificate (shared with its standbys).
    ca: Arc<TestCa>,
    run_as: Option<Owner>,
    version: String,
    major: u32,
    port: u16,
    password: String,
    running: bool,
    /// The clean-up actions a signal runs: remove the directory, then (newer) stop the server.
    cleanups: Vec<crate::cleanup::Registration>,
}

/// The unprivileged user the server runs as when we are root.
#[derive(Clone)]
struct Owner {
    user: String,
    uid: u32,
    gid: u32,
}

impl PgServer {
    /// Creates, configures and starts a new server with the default binaries. Blocks until it
    /// accepts connections.
    ///
    /// The default is the major named by the `TESTKIT_PG_MAJOR` environment variable (as
    /// [`PgServer::start_major`]) when it is set and not empty, else the system's binaries
    /// (`TESTKIT_PG_BINDIR`, `pg_config --bindir`, or the newest `/usr/lib/postgresql/*/bin`).
    ///
    /// Panics with the tool output or the server log when any step fails.
    pub fn start() -> PgServer {
        match std::env::var(MAJOR_ENV) {
            Ok(major) if !major.trim().is_empty() => {
                let major = major.trim().parse().unwrap_or_else(|_| {
                    panic!("{MAJOR_ENV}={major:?} is not a PostgreSQL major such as 17")
                });
                PgServer::start_major(major)
            }
            _ => PgServer::start_in(find_bindir()),
        }
    }

    /// Like [`PgServer::start`], with PostgreSQL `major` (one of
    /// [`crate::pgdist::SUPPORTED_MAJORS`]) from the pinned binaries in the workspace's cache.
    ///
    /// Panics, naming the major and `make postgres-majors`, when the cache lacks it.
    pub fn start_major(major: u32) -> PgServer {
        let server = PgServer::start_in(crate::pgdist::bindir(major));
        assert_eq!(
            server.major, major,
            "the cached binaries for PostgreSQL {major} report version {}",
            server.version
        );
        server
    }

    fn start_in(bindir: PathBuf) -> PgServer {
        let version = server_version(&bindir);
        let major = major_of(&version);
        let ca = Arc::new(TestCa::new("testkit PostgreSQL test CA"));
        let mut server = PgServer::prepare(bindir, version, major, ca, None);
        let root = server.root();
        server.initdb(&root);
        server.configure(&root);
        server.start_on_free_port();
        server
    }

    /// A server not started yet: its temporary directory (reachable by the server user), the
    /// CA files and the socket directory. `password` is the superuser's (a new one if `None`).
    fn prepare(
        bindir: PathBuf,
        version: String,
        major: u32,
        ca: Arc<TestCa>,
        password: Option<String>,
    ) -> PgServer {
        let run_as = if running_as_root() {
            Some(lookup_owner("postgres"))
        } else {
            None
        };
        let (dir, registration) = {
            let _starting = crate::cleanup::starting();
            let dir = tempfile::Builder::new()
                .prefix("testkit-pg-")
                .tempdir()
                .expect("create a temporary directory for PostgreSQL");
            let registration = crate::cleanup::register_path(dir.path());
            (dir, registration)
        };
        let root = dir.path().to_path_buf();
        let wrong_ca = TestCa::new("testkit unrelated (wrong) CA");
        let server = PgServer {
            data_dir: root.join("data"),
            log_path: root.join("server.log"),
            ca_pem_path: root.join("ca.pem"),
            wrong_ca_pem_path: root.join("wrong-ca.pem"),
            ca_pem: ca.cert_pem(),
            ca,
            dir: Some(dir),
            bindir,
            run_as,
            version,
            major,
            port: 0,
            password: password.unwrap_or_else(|| format!("pw-{}", uuid::Uuid::new_v4().simple())),
            running: false,
            cleanups: vec![registration],
        };
        // The directory must be reachable by the server user, and the CA files by anyone.
        server.chmod_chown(&root, 0o755);
        server.write_file(&server.ca_pem_path, &server.ca_pem, 0o644);
        server.write_file(&server.wrong_ca_pem_path, &wrong_ca.cert_pem(), 0o644);
        fs::create_dir(root.join("socket")).expect("create the socket directory");
        server.chmod_chown(&root.join("socket"), 0o700);
        server
    }

    /// The temporary directory (data, log, socket, CA files).
    fn root(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|dir| dir.path().to_path_buf())
            .expect("the server's directory exists until drop")
    }

    /// Starts a streaming standby of this server: a base backup of its data directory taken
    /// while it runs (`pg_backup_start` / `pg_backup_stop`, `pg_start_backup` / `pg_stop_backup`
    /// before PostgreSQL 15, and a file copy: what `pg_basebackup` does, without needing its
    /// binary, which the pinned majors lack), then `standby.signal`, `primary_conninfo` and a
    /// physical replication slot, as `pg_basebackup -R -S` sets up. The standby has its own
    /// temporary directory and port, the same TLS set-up (a certificate from the same test CA,
    /// also naming `host_names`), the same superuser and binaries; it is a hot standby (logins
    /// and reads work, writes fail) and returns once it streams from this server. It is stopped
    /// and removed on drop like any [`PgServer`]; its replication slot stays on this server
    /// until this server is dropped too.
    ///
    /// Replay can be paused on the standby with `SELECT pg_wal_replay_pause()` (as superuser)
    /// and resumed with `SELECT pg_wal_replay_resume()`.
    pub async fn start_standby(&self, host_names: &[&str]) -> PgServer {
        let mut standby = {
            let (bindir, version, major) = (self.bindir.clone(), self.version.clone(), self.major);
            let (ca, password) = (Arc::clone(&self.ca), self.password.clone());
            tokio::task::spawn_blocking(move || {
                PgServer::prepare(bindir, version, major, ca, Some(password))
            })
            .await
            .expect("prepare the standby's directory")
        };
        self.allow_replication().await;
        let slot = format!(
            "testkit_standby_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin = self.admin().await;
        admin
            .execute(
                "SELECT pg_create_physical_replication_slot($1, true)",
                &[&slot],
            )
            .await
            .unwrap_or_else(|e| panic!("create replication slot {slot}: {}", error_chain(&e)));
        let (start, stop) = if self.major >= 15 {
            (
                "SELECT pg_backup_start('testkit standby', true)",
                "SELECT labelfile, spcmapfile FROM pg_backup_stop(false)",
            )
        } else {
            (
                "SELECT pg_start_backup('testkit standby', true, false)",
                "SELECT labelfile, spcmapfile FROM pg_stop_backup(false, false)",
            )
        };
        admin
            .batch_execute(start)
            .await
            .unwrap_or_else(|e| panic!("{start}: {}", error_chain(&e)));
        {
            let (from, to, owner) = (
                self.data_dir.clone(),
                standby.data_dir.clone(),
                standby.run_as.clone(),
            );
            tokio::task::spawn_blocking(move || copy_data_dir(&from, &to, owner.as_ref()))
                .await
                .expect("copy the data directory");
        }
        let row = admin
            .query_one(stop, &[])
            .await
            .unwrap_or_else(|e| panic!("{stop}: {}", error_chain(&e)));
        let (label, spcmap): (String, Option<String>) = (row.get(0), row.get(1));
        drop(admin);
        let primary_port = self.port;
        let names: Vec<String> = host_names.iter().map(|n| n.to_string()).collect();
        let standby = tokio::task::spawn_blocking(move || {
            standby.write_file(&standby.data_dir.join("backup_label"), &label, 0o600);
            if let Some(map) = spcmap.filter(|map| !map.is_empty()) {
                standby.write_file(&standby.data_dir.join("tablespace_map"), &map, 0o600);
            }
            standby.configure_standby(primary_port, &slot);
            standby.serve_certificate(&names);
            standby.start_on_free_port();
            standby
        })
        .await
        .expect("start the standby");
        standby.streaming_from(self).await
    }

    /// Adds `host_names` to the names this server's certificate is valid for (besides
    /// `127.0.0.1` and `localhost`), and returns once new connections get the new certificate
    /// (a configuration reload, confirmed through `pg_conf_load_time()`).
    pub async fn serve_host_names(&self, host_names: &[&str]) {
        let before = self.conf_load_time().await;
        let names: Vec<String> = host_names.iter().map(|n| n.to_string()).collect();
        self.serve_certificate(&names);
        self.reload_and_wait(before).await;
    }

    /// Writes `server.crt` / `server.key`: a certificate from the test CA for `127.0.0.1`,
    /// `localhost` and `host_names`. Read at start, or at the next configuration reload.
    fn serve_certificate(&self, host_names: &[String]) {
        let mut dns = vec!["localhost".to_string()];
        dns.extend(host_names.iter().cloned());
        let cert = self
            .ca
            .issue_server_cert("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)], &dns);
        self.write_file(&self.data_dir.join("server.crt"), &cert.cert_pem, 0o644);
        self.write_file(&self.data_dir.join("server.key"), &cert.key_pem, 0o600);
    }

    /// `pg_conf_load_time()` of a new session, in seconds since the epoch.
    async fn conf_load_time(&self) -> f64 {
        self.admin()
            .await
            .query_one(
                "SELECT extract(epoch FROM pg_conf_load_time())::float8",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_conf_load_time(): {}", error_chain(&e)))
            .get(0)
    }

    /// `pg_reload_conf()`, then waits until new sessions report a later load time than `before`.
    async fn reload_and_wait(&self, before: f64) {
        self.exec("SELECT pg_reload_conf()").await;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while self.conf_load_time().await <= before {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on port {} did not reload its configuration within {SETTLE_TIMEOUT:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets the superuser connect for replication from 127.0.0.1 (once).
    async fn allow_replication(&self) {
        const LINE: &str = "host replication all 127.0.0.1/32 scram-sha-256\n";
        let hba = self.data_dir.join("pg_hba.conf");
        let text = fs::read_to_string(&hba).expect("read pg_hba.conf");
        if text.contains(LINE) {
            return;
        }
        let before = self.conf_load_time().await;
        self.write_file(&hba, &format!("{text}{LINE}"), 0o600);
        self.reload_and_wait(before).await;
    }

    /// The settings of a standby of the server on `primary_port`, after the copied ones: its
    /// own socket directory, the connection to the primary and the slot, `standby.signal`.
    fn configure_standby(&self, primary_port: u16, slot: &str) {
        let settings = format!(
            "\n# testkit standby\n\
             unix_socket_directories = '{socket}'\n\
             hot_standby = on\n\
             primary_conninfo = 'host={HOST} port={primary_port} user={SUPERUSER} \
             password={password} application_name={slot} sslmode=disable'\n\
             primary_slot_name = '{slot}'\n",
            socket = self.root().join("socket").display(),
            password = self.password,
        );
        let conf = self.data_dir.join("postgresql.conf");
        let text = fs::read_to_string(&conf).expect("read the standby's postgresql.conf");
        self.write_file(&conf, &format!("{text}{settings}"), 0o600);
        self.write_file(&self.data_dir.join("standby.signal"), "", 0o600);
    }

    /// Waits until this standby streams from `primary` (its WAL receiver reports `streaming`).
    async fn streaming_from(self, primary: &PgServer) -> PgServer {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let status: Option<String> = self
                .admin()
                .await
                .query_opt("SELECT status FROM pg_stat_wal_receiver", &[])
                .await
                .unwrap_or_else(|e| panic!("read pg_stat_wal_receiver: {}", error_chain(&e)))
                .map(|row| row.get(0));
            if status.as_deref() == Some("streaming") {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "the standby on port {} does not stream from port {} after {SETTLE_TIMEOUT:?} \
                 (WAL receiver: {status:?}); standby log:\n{}",
                self.port,
                primary.port,
                crate::tail(&self.log(), 4000)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's major version, e.g. `16`.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The server's version number, e.g. `16.14`, from `postgres --version` (`SHOW
    /// server_version` reports the same, followed by a distribution's suffix where there is one).
    pub fn server_version(&self) -> &str {
        &self.version
    }

    /// The directory of the server binaries this server runs from.
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The host to connect to: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's name and password: `("postgres", <random>)`.
    pub fn superuser(&self) -> (&str, &str) {
        (SUPERUSER, &self.password)
    }

    /// PEM file of the test CA that signed the server certificate (readable by any user).
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// PEM file of an unrelated CA, for tests that expect certificate verification to fail.
    pub fn wrong_ca_pem_path(&self) -> &Path {
        &self.wrong_ca_pem_path
    }

    /// The test CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The server's data directory (inside the temporary directory; gone after drop).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// A client connected as the superuser to database `postgres`, without TLS. The connection
    /// runs on a spawned tokio task.
    pub async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) = self
            .config(SUPERUSER, &self.password, "postgres")
            .connect(NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "connect to the test PostgreSQL on port {} as superuser: {}\nserver log:\n{}",
                    self.port,
                    error_chain(&e),
                    crate::tail(&self.log(), 4000)
                )
            });
        tokio::spawn(async move {
            // Errors surface on the client side; nothing to do with them here.
            let _ = connection.await;
        });
        client
    }

    /// Runs `sql` (one or more statements) as the superuser; panics with the SQL error.
    pub async fn exec(&self, sql: &str) {
        self.admin()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("SQL failed: {}\n--- SQL ---\n{sql}", error_chain(&e)));
    }

    /// Makes the server present a new certificate from the test CA naming only `dns_names`
    /// (not 127.0.0.1 nor localhost, unless listed), as a server reached through an address its
    /// certificate does not name: rewrites the certificate, reloads the configuration and
    /// returns once new connections get it. The CA (and [`PgServer::ca_pem_path`]) stays the same.
    pub async fn serve_certificate_for(&self, dns_names: &[&str]) {
        let names: Vec<String> = dns_names.iter().map(|n| n.to_string()).collect();
        let common_name = names
            .first()
            .map(String::as_str)
            .unwrap_or("testkit server");
        self.write_server_cert(&self.ca.issue_server_cert(common_name, &[], &names));
        // Each new session inherits the postmaster's configuration (the TLS context included) as
        // of its last reload, which pg_conf_load_time() reports: wait until it changes.
        let load_time = "SELECT pg_conf_load_time()::text";
        let admin = self.admin().await;
        let before: String = admin.query_one(load_time, &[]).await.unwrap().get(0);
        admin.execute("SELECT pg_reload_conf()", &[]).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now: String = self
                .admin()
                .await
                .query_one(load_time, &[])
                .await
                .unwrap()
                .get(0);
            if now != before {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not reload its configuration within 30 s; log:\n{}",
                crate::tail(&self.log(), 4000)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !self.log().contains("SSL configuration was not reloaded"),
            "PostgreSQL refused the new certificate; log:\n{}",
            crate::tail(&self.log(), 4000)
        );
    }

    /// Tries to log in as `user` with `password` to `dbname` without TLS (5 s timeout).
    ///
    /// `Ok(())` when the server authenticated the user; otherwise the error, which never
    /// contains the password. Lets tests check what the database accepts independently of the
    /// product code.
    pub async fn try_login(&self, user: &str, password: &str, dbname: &str) -> Result<(), String> {
        let config = self.config(user, password, dbname);
        let redact = |message: String| {
            if password.is_empty() {
                message
            } else {
                message.replace(password, "<redacted>")
            }
        };
        match tokio::time::timeout(LOGIN_TIMEOUT, config.connect(NoTls)).await {
            Err(_) => Err(redact(format!(
                "login as {user:?} to database {dbname:?}: no answer within {LOGIN_TIMEOUT:?}"
            ))),
            Ok(Err(e)) => Err(redact(format!(
                "login as {user:?} to database {dbname:?} failed: {}",
                error_chain(&e)
            ))),
            Ok(Ok((client, connection))) => {
                drop(client);
                // The client is gone, so the connection closes promptly.
                let _ = connection.await;
                Ok(())
            }
        }
    }

    fn config(&self, user: &str, password: &str, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(HOST)
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(dbname)
            .ssl_mode(SslMode::Disable)
            .connect_timeout(LOGIN_TIMEOUT);
        config
    }

    fn initdb(&self, root: &Path) {
        let pwfile = root.join("pwfile");
        self.write_file(&pwfile, &self.password, 0o600);
        let mut initdb = self.tool("initdb");
        initdb.arg("--pgdata").arg(&self.data_dir).args([
            "--username",
            SUPERUSER,
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        if self.major >= 14 {
            // Added in 14; only quietens the output.
            initdb.arg("--no-instructions");
        }
        // In a section a signal's clean-up waits for: the folder is not removed under initdb.
        let output = {
            let _starting = crate::cleanup::starting();
            initdb
                .arg(format!("--pwfile={}", pwfile.display()))
                .output()
                .expect("run initdb")
        };
        let _ = fs::remove_file(&pwfile);
        check("initdb", &output);
    }

    /// Writes the server certificate and key that PostgreSQL reads (at start and on reload).
    fn write_server_cert(&self, server_cert: &ServerCert) {
        self.write_file(
            &self.data_dir.join("server.crt"),
            &server_cert.cert_pem,
            0o644,
        );
        self.write_file(
            &self.data_dir.join("server.key"),
            &server_cert.key_pem,
            0o600,
        );
    }

    fn configure(&self, root: &Path) {
        self.serve_certificate(&[]);
        let settings = format!(
            "\n# testkit\n\
             listen_addresses = '{HOST}'\n\
             unix_socket_directories = '{socket}'\n\
             password_encryption = 'scram-sha-256'\n\
             ssl = on\n\
             ssl_cert_file = 'server.crt'\n\
             ssl_key_file = 'server.key'\n\
             max_connections = 50\n\
             shared_buffers = '16MB'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             lc_messages = 'C'\n",
            socket = root.join("socket").display()
        );
        let conf = self.data_dir.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        self.write_file(&conf, &text, 0o600);
        let hba = "# testkit: password (SCRAM) logins only; TLS or not is the client's choice.\n\
                   local all all scram-sha-256\n\
                   host all all 127.0.0.1/32 scram-sha-256\n";
        self.write_file(&self.data_dir.join("pg_hba.conf"), hba, 0o600);
    }

    /// Switches `pg_hba.conf` to the `md5` method (which accepts md5 and SCRAM verifiers alike,
    /// as on servers still migrating from md5) and reloads the configuration.
    pub async fn allow_md5_logins(&self) {
        let hba = "# testkit: md5 method (md5 or SCRAM verifiers)\n\
                   local all all md5\n\
                   host all all 127.0.0.1/32 md5\n";
        // Written in place: the file keeps its owner and mode.
        fs::write(self.data_dir.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        // A probe role with an md5 verifier logs in once the postmaster has reloaded.
        self.exec(
            "SET password_encryption = 'md5'; \
             CREATE ROLE testkit_md5_probe LOGIN PASSWORD 'probe'; \
             SELECT pg_reload_conf()",
        )
        .await;
        for _ in 0..200 {
            if self
                .try_login("testkit_md5_probe", "probe", "postgres")
                .await
                .is_ok()
            {
                self.exec("DROP ROLE testkit_md5_probe").await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("pg_hba.conf reload not seen");
    }

    fn start_on_free_port(&mut self) {
        for _ in 0..PORT_ATTEMPTS {
            let port = crate::free_port();
            // Registered before the start, in a section a signal's clean-up waits for: a server
            // that starts is always stopped.
            let _starting = crate::cleanup::starting();
            let stop = {
                let command = self.stop_command();
                crate::cleanup::register(
                    format!("stop PostgreSQL ({})", self.data_dir.display()),
                    move || run_stop(command),
                )
            };
            let output = self
                .tool("pg_ctl")
                .arg("--pgdata")
                .arg(&self.data_dir)
                .arg("--log")
                .arg(&self.log_path)
                .args(["--wait", "--timeout=60", "-o"])
                .arg(format!("-p {port}"))
                .arg("start")
                .output()
                .expect("run pg_ctl start");
            if output.status.success() {
                self.port = port;
                self.running = true;
                self.cleanups.push(stop);
                return;
            }
            drop(stop);
            let log = self.log();
            if !(log.contains("could not bind") || log.contains("Address already in use")) {
                panic!(
                    "pg_ctl start failed ({}):\n{}{}\nserver log:\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr),
                    crate::tail(&log, 4000)
                );
            }
        }
        panic!(
            "PostgreSQL could not bind a free port in {PORT_ATTEMPTS} attempts; log:\n{}",
            crate::tail(&self.log(), 4000)
        );
    }

    /// A PostgreSQL tool from the server's bin directory, as the server user when we are root.
    fn tool(&self, name: &str) -> Command {
        let program = self.bindir.join(name);
        let mut command = match &self.run_as {
            Some(owner) => {
                let mut command = Command::new("runuser");
                command.args(["-u", &owner.user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        let cwd = self
            .dir
            .as_ref()
            .map(|dir| dir.path().to_path_buf())
            .unwrap_or_else(std::env::temp_dir);
        command.current_dir(cwd).env("LC_ALL", "C");
        command
    }

    /// `pg_ctl stop --mode=immediate` of this server (what drop and a signal run).
    fn stop_command(&self) -> Command {
        let mut command = self.tool("pg_ctl");
        command.arg("--pgdata").arg(&self.data_dir).args([
            "--mode=immediate",
            "--wait",
            "--timeout=30",
            "stop",
        ]);
        command
    }

    /// Writes a file with `mode`, owned by the server user.
    fn write_file(&self, path: &Path, contents: &str, mode: u32) {
        fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.chmod_chown(path, mode);
    }

    fn chmod_chown(&self, path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
        if let Some(owner) = &self.run_as {
            std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
                .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), owner.user));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            run_stop(self.stop_command());
            self.running = false;
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("testkit: could not remove {}: {e}", path.display());
            }
        }
    }
}

/// Runs a [`PgServer::stop_command`]; failures are printed (a drop or a signal cannot panic).
fn run_stop(mut command: Command) {
    match command.output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => eprintln!(
            "testkit: pg_ctl stop failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => eprintln!("testkit: could not run pg_ctl stop: {e}"),
    }
}

/// Copies a running server's data directory `from` into `to` (which exists) for a base backup:
/// everything but the runtime state ([`NOT_COPIED_FILES`], the contents of [`EMPTIED_DIRS`]);
/// files that vanish while copying are skipped (the WAL replayed from the backup's start
/// recreates them). Owned by `owner` when given; directories 0700, files 0600, as PostgreSQL
/// wants.
fn copy_data_dir(from: &Path, to: &Path, owner: Option<&Owner>) {
    let own = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
        if let Some(owner) = owner {
            std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
                .unwrap_or_else(|e| panic!("chown {} to {}: {e}", path.display(), owner.user));
        }
    };
    if !to.exists() {
        fs::create_dir(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    }
    own(to, 0o700);
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let source = from.join(&relative);
        let emptied = EMPTIED_DIRS.iter().any(|dir| relative == Path::new(dir));
        let entries = match fs::read_dir(&source) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("read {}: {e}", source.display()),
        };
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
            let name = entry.file_name();
            let path = relative.join(&name);
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("stat {}: {e}", entry.path().display()),
            };
            if emptied {
                // Left empty, subdirectories too (a slot's directory without its state file
                // would stop the standby); PostgreSQL recreates `pg_wal/archive_status`.
                continue;
            }
            if file_type.is_dir() {
                let target = to.join(&path);
                fs::create_dir(&target)
                    .unwrap_or_else(|e| panic!("create {}: {e}", target.display()));
                own(&target, 0o700);
                pending.push(path);
            } else if !NOT_COPIED_FILES.iter().any(|f| name == *f) {
                let target = to.join(&path);
                match fs::copy(entry.path(), &target) {
                    Ok(_) => own(&target, 0o600),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("copy {}: {e}", entry.path().display()),
                }
            }
        }
    }
}

/// An error and its sources, `outer: inner: ...` (tokio-postgres shows the server's message only
/// in the source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Panics with the tool's output unless it succeeded.
fn check(what: &str, output: &Output) {
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The directory holding the real server binaries (`postgres`, `initdb`, `pg_ctl`):
/// `TESTKIT_PG_BINDIR` if set, else `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn find_bindir() -> PathBuf {
    let has_server = |dir: &Path| {
        ["postgres", "initdb", "pg_ctl"]
            .iter()
            .all(|tool| dir.join(tool).is_file())
    };
    if let Some(dir) = std::env::var_os("TESTKIT_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(
            has_server(&dir),
            "TESTKIT_PG_BINDIR={} has no postgres/initdb/pg_ctl",
            dir.display()
        );
        return dir;
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(dir) = from_pg_config.filter(|dir| has_server(dir)) {
        return dir;
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates.pop().map(|(_, dir)| dir).unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries found (tried TESTKIT_PG_BINDIR, `pg_config --bindir`, \
             /usr/lib/postgresql/*/bin); install the PostgreSQL server package"
        )
    })
}

/// The version `postgres --version` prints (`postgres (PostgreSQL) 16.14`, possibly followed by
/// a distribution's suffix such as ` (Debian 16.14-1)`): `16.14`.
fn server_version(bindir: &Path) -> String {
    let program = bindir.join("postgres");
    let output = Command::new(&program)
        .arg("--version")
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("run {} --version: {e}", program.display()));
    check(&format!("{} --version", program.display()), &output);
    let text = String::from_utf8_lossy(&output.stdout);
    parse_version(&text).unwrap_or_else(|| {
        panic!(
            "{} --version printed no version: {text:?}",
            program.display()
        )
    })
}

fn parse_version(text: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    words.find(|word| *word == "(PostgreSQL)")?;
    words.next().map(str::to_string)
}

/// The major of a version such as `16.14`, `13.23` or `18beta1`.
fn major_of(version: &str) -> u32 {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no major in PostgreSQL version {version:?}"))
}

/// Whether this process runs with effective uid 0 (`/proc/self` belongs to the effective user).
pub(crate) fn running_as_root() -> bool {
    match fs::metadata("/proc/self") {
        Ok(meta) => meta.uid() == 0,
        Err(_) => id(&["-u"]) == 0,
    }
}

fn lookup_owner(user: &str) -> Owner {
    Owner {
        user: user.to_string(),
        uid: id(&["-u", user]),
        gid: id(&["-g", user]),
    }
}

/// Runs `id <args>` and parses the number it prints.
fn id(args: &[&str]) -> u32 {
    let output = Command::new("id")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run id {args:?}: {e}"));
    check(
        &format!("id {args:?} (PostgreSQL needs a non-root user to run as)"),
        &output,
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("id {args:?} printed no number: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_postgres_version_output() {
        let cases = [
            ("postgres (PostgreSQL) 16.14\n", "16.14", 16),
            (
                "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb13u1)\n",
                "15.14",
                15,
            ),
            ("postgres (PostgreSQL) 18beta1\n", "18beta1", 18),
        ];
        for (output, version, major) in cases {
            assert_eq!(parse_version(output).as_deref(), Some(version), "{output}");
            assert_eq!(major_of(version), major, "{version}");
        }
        assert_eq!(parse_version("something else 16.1"), None);
    }
}
