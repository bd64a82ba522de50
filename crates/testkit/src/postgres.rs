//! A throwaway PostgreSQL server for tests: SCRAM-SHA-256 authentication, TLS with a generated
//! test CA, listening only on 127.0.0.1 on a free port, everything in a temporary directory that
//! is removed on drop.
//!
//! [`PgServer::start_major`] runs a given major from the pinned binaries in the workspace's cache
//! ([`crate::pgdist`]); [`PgServer::start`] runs the default: the major named by
//! `TESTKIT_PG_MAJOR` if set, else the system's binaries.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

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

/// A running throwaway PostgreSQL server.
///
/// Started by [`PgServer::start`]; stopped (`pg_ctl -m immediate stop`) and its directory removed
/// on drop, also when the test panics.
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
    ca: TestCa,
    run_as: Option<Owner>,
    version: String,
    major: u32,
    port: u16,
    password: String,
    running: bool,
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
        let run_as = if running_as_root() {
            Some(lookup_owner("postgres"))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("testkit-pg-")
            .tempdir()
            .expect("create a temporary directory for PostgreSQL");
        let root = dir.path().to_path_buf();
        let ca = TestCa::new("testkit PostgreSQL test CA");
        let wrong_ca = TestCa::new("testkit unrelated (wrong) CA");
        let mut server = PgServer {
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
            password: format!("pw-{}", uuid::Uuid::new_v4().simple()),
            running: false,
        };
        // The directory must be reachable by the server user, and the CA files by anyone.
        server.chmod_chown(&root, 0o755);
        server.write_file(&server.ca_pem_path, &server.ca_pem, 0o644);
        server.write_file(&server.wrong_ca_pem_path, &wrong_ca.cert_pem(), 0o644);
        fs::create_dir(root.join("socket")).expect("create the socket directory");
        server.chmod_chown(&root.join("socket"), 0o700);

        server.initdb(&root);
        server.configure(&root);
        server.start_on_free_port();
        server
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
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
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
                std::time::Instant::now() < deadline,
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
        let output = initdb
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
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
        self.write_server_cert(&self.ca.issue_localhost_server_cert());
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

    fn start_on_free_port(&mut self) {
        for _ in 0..PORT_ATTEMPTS {
            let port = crate::free_port();
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
                return;
            }
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
            let result = self
                .tool("pg_ctl")
                .arg("--pgdata")
                .arg(&self.data_dir)
                .args(["--mode=immediate", "--wait", "--timeout=30", "stop"])
                .output();
            match result {
                Ok(output) if output.status.success() => {}
                Ok(output) => eprintln!(
                    "testkit: pg_ctl stop failed ({}): {}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
                Err(e) => eprintln!("testkit: could not run pg_ctl stop: {e}"),
            }
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
fn running_as_root() -> bool {
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
