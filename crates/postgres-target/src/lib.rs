//! [`CredentialTarget`] for PostgreSQL (RDS, Aurora, self-managed).
//!
//! * TLS with rustls, as the secret's `ssl` says: verify-full (chain and host name, the default),
//!   verify-ca (the chain only) or none (`ssl: false`); there is no plaintext fallback. Trusted
//!   roots ([`Trust`], table in `tls.rs`): the public web roots and the built-in Amazon RDS CAs
//!   ([`RDS_CA_BUNDLE_PEM`]) plus `DB_CA_BUNDLE` (PEM), or that bundle alone. The TLS
//!   configuration is built once, on first use.
//! * Passwords reach the server only as SCRAM-SHA-256 verifiers; identifiers and literals are
//!   escaped with `postgres-protocol`.
//! * [`profile`]: PostgreSQL's engine profile ([`POSTGRES`]: engine names, port 5432, database
//!   `postgres`, the 63-byte identifier limit) and its fix texts ([`PostgresAdvice`]).
//! * [`alternate`]: the SQL that creates the alternate user of the alternating-users strategy.
//! * Each connection, statement, `BEGIN` and `COMMIT` sits between the fail points
//!   `pg.<statement>.before` and `.after` (`crates/failpoints`; nothing in a release build).

pub mod alternate;
pub mod profile;
mod sql;
mod tls;

pub use profile::{PostgresAdvice, POSTGRES};
pub use sql::{
    alter_password_sql, scram_verifier, scram_verifier_with, PasswordStorage,
    DEFAULT_SCRAM_ITERATIONS, WRITE_PREAMBLE,
};
pub use tls::{TlsConfigError, TlsRoots, Trust, RDS_CA_BUNDLE_PEM};

use alternate::{RoleAttributes, RoleSetting};
use async_trait::async_trait;
use rotation::{
    AlternateChange, AlternatePlan, AlternateUser, ConnectError, CredentialTarget, DbCredentials,
    EngineAdvice, EngineProfile, LoginIdentity, MissingPrivilege, Password, RolePrivileges,
    SkippedSetting, TargetError, TargetSession, TlsMode,
};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, GenericClient, NoTls, Socket};

/// Default connect timeout (TCP + TLS + authentication).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a write ([`TargetSession::set_password`], [`TargetSession::ensure_alternate`]: every
/// round trip of it, its reads included) may take in all before the client gives up on the
/// server. A little above the server's own bounds ([`WRITE_PREAMBLE`]: `lock_timeout` 5 s,
/// `statement_timeout` 6 s), so that a merely slow server or a lock held elsewhere is still
/// judged by the server (a clear SQL error, the transaction rolled back); this bound is for a
/// server that stops answering mid-write, which would otherwise hold setSecret until Lambda's
/// timeout. `crates/lambda-support/src/limits.rs` counts it in setSecret's worst case.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(7);

/// How new passwords are stored (`PASSWORD_ENCRYPTION`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PasswordEncryption {
    /// Follow the server: its `password_encryption` (as the session that changes the password
    /// sees it, per-role settings included) and, for SCRAM, its `scram_iterations` (16+).
    #[default]
    Auto,
    /// SCRAM-SHA-256 whatever the server says (iterations still follow `scram_iterations`).
    ScramSha256,
    /// md5, for servers whose `pg_hba.conf` or clients still need it (deprecated by PostgreSQL 18).
    Md5,
}

impl PasswordEncryption {
    /// What `PASSWORD_ENCRYPTION` accepts.
    pub const EXPECTED: &'static str = "expected auto, scram-sha-256 or md5";

    /// Parses `auto`, `scram-sha-256` or `md5` (any case).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(PasswordEncryption::Auto),
            "scram-sha-256" => Some(PasswordEncryption::ScramSha256),
            "md5" => Some(PasswordEncryption::Md5),
            _ => None,
        }
    }
}

/// PostgreSQL as a [`CredentialTarget`]. Cheap to build: nothing happens before the first connect.
pub struct PostgresTarget {
    roots: TlsRoots,
    connect_timeout: Duration,
    application_name: String,
    encryption: PasswordEncryption,
}

impl PostgresTarget {
    /// `trust`: the roots TLS trusts (`DB_CA_BUNDLE`, `DB_CA_BUNDLE_ONLY`).
    pub fn new(trust: Trust) -> Self {
        PostgresTarget {
            roots: TlsRoots::new(trust),
            connect_timeout: CONNECT_TIMEOUT,
            application_name: "rotate-postgres".into(),
            encryption: PasswordEncryption::Auto,
        }
    }

    /// How new passwords are stored (default [`PasswordEncryption::Auto`]).
    pub fn with_password_encryption(mut self, encryption: PasswordEncryption) -> Self {
        self.encryption = encryption;
        self
    }

    /// Replaces the connect timeout (default [`CONNECT_TIMEOUT`]).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Opens a session and returns the raw client (for crates that need more SQL than the
    /// [`TargetSession`] trait offers).
    pub async fn open(&self, creds: &DbCredentials) -> Result<PgSession, ConnectError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&creds.host)
            .port(creds.port)
            .user(&creds.username)
            .password(creds.password.expose())
            .dbname(&creds.dbname)
            .application_name(&self.application_name)
            .connect_timeout(self.connect_timeout);
        let tls = match creds.tls {
            TlsMode::Disabled => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                return self.connect_with(&config, NoTls, creds).await;
            }
            TlsMode::VerifyFull => self.roots.verify_full(),
            TlsMode::VerifyCa => self.roots.verify_ca(),
        };
        // Require: the server must speak TLS; tokio-postgres never falls back.
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        let tls = tls.map_err(|e| ConnectError::Tls(e.to_string()))?;
        self.connect_with(&config, tls, creds)
            .await
            .map_err(|e| match e {
                // Say what was verified against which roots.
                ConnectError::Tls(text) => ConnectError::Tls(format!(
                    "{text}; {} against {}",
                    creds.tls.name(),
                    self.roots.trust().describe(creds.tls)
                )),
                other => other,
            })
    }

    /// Connects with `tls` under the connect timeout and drives the connection in a task.
    async fn connect_with<T>(
        &self,
        config: &tokio_postgres::Config,
        tls: T,
        creds: &DbCredentials,
    ) -> Result<PgSession, ConnectError>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
    {
        match failpoints::around!(
            "pg.connect",
            tokio::time::timeout(self.connect_timeout, config.connect(tls)).await
        ) {
            Ok(Ok((client, conn))) => {
                // Detached: the task ends when the client is dropped and the server closes.
                tokio::spawn(drive(conn));
                Ok(PgSession {
                    client,
                    encryption: self.encryption,
                    endpoint: format!("{}:{}", creds.host, creds.port),
                    answer_timeout: self.connect_timeout,
                    write_timeout: WRITE_TIMEOUT,
                })
            }
            Ok(Err(e)) => Err(classify(creds, &e)),
            Err(_) => Err(timed_out(creds, self.connect_timeout)),
        }
    }
}

async fn drive<F, E>(connection: F)
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "database connection closed with an error");
    }
}

fn timed_out(creds: &DbCredentials, timeout: Duration) -> ConnectError {
    ConnectError::Unreachable {
        host: creds.host.clone(),
        port: creds.port,
        reason: format!("timed out after {} s", timeout.as_secs_f32()),
    }
}

/// Sorts a connection error into authentication, TLS, reachability or other. tokio-postgres error
/// texts never include the password.
fn classify(creds: &DbCredentials, e: &tokio_postgres::Error) -> ConnectError {
    if let Some(code) = e.code() {
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return ConnectError::Authentication {
                user: creds.username.clone(),
            };
        }
        return ConnectError::Other(e.to_string());
    }
    let text = error_chain(e);
    if text.contains("TLS") || text.contains("certificate") || text.contains("SSL") {
        ConnectError::Tls(text)
    } else if text.contains("error connecting to server")
        || text.contains("timed out")
        // Accepted, then closed or reset before the login ended (a server shutting down, a
        // proxy or load balancer without a target): as unreachable as a refused connection.
        || text.contains("error communicating with the server")
        || text.contains("connection closed")
    {
        ConnectError::Unreachable {
            host: creds.host.clone(),
            port: creds.port,
            reason: text,
        }
    } else {
        ConnectError::Other(text)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// An authenticated PostgreSQL session. When it is dropped, the driver sends the protocol's
/// Terminate message and closes the connection (its task ends by itself; it is not aborted, which
/// would drop the connection without a goodbye and leave the server logging an unexpected EOF).
pub struct PgSession {
    client: Client,
    encryption: PasswordEncryption,
    /// `host:port`, for errors.
    endpoint: String,
    /// How long a read-only query may go unanswered (the connect timeout).
    answer_timeout: Duration,
    /// How long a whole write may take ([`WRITE_TIMEOUT`]).
    write_timeout: Duration,
}

/// A read-only query of the session, bounded: a server that accepted the login and then stops
/// answering (a stuck backend, a failover that black-holes established connections) would
/// otherwise hold the step until Lambda's timeout. The bound is the connect timeout: these are
/// catalog reads that answer in milliseconds, and a server slower than a login to answer one is
/// not answering. Nothing is changed by a read, so giving up on one changes nothing. Writes have
/// their own bound ([`written`]).
async fn answered<T>(
    endpoint: &str,
    within: Duration,
    operation: &'static str,
    query: impl std::future::Future<Output = Result<T, TargetError>>,
) -> Result<T, TargetError> {
    match tokio::time::timeout(within, query).await {
        Ok(answer) => answer,
        Err(_) => Err(TargetError {
            operation,
            message: format!(
                "{endpoint} accepted the login but did not answer within {} s",
                within.as_secs_f32()
            ),
        }),
    }
}

/// Where a write stands, for the error when its server stops answering: the operation waiting
/// for an answer, and whether the server may have applied the change by now (its `ALTER ROLE`
/// of single user, its `COMMIT` of alternating users) or nothing can have been committed yet.
struct Progress(std::sync::Mutex<(&'static str, bool)>);

impl Progress {
    fn new(operation: &'static str) -> Progress {
        Progress(std::sync::Mutex::new((operation, false)))
    }

    /// `operation` is sent next; `commits`: its success is the change.
    fn at(&self, operation: &'static str, commits: bool) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (operation, commits);
    }

    fn get(&self) -> (&'static str, bool) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A write of the session (every round trip of it), bounded on the client side: a server that
/// stops answering mid-write (a stuck backend, a failover that black-holes established
/// connections, a synchronous standby that never confirms) would otherwise hold setSecret until
/// Lambda's timeout, because the server's own `statement_timeout` only helps a server that still
/// counts. When the bound hits while the change itself was on its way, the server may or may not
/// have applied it: the error says so, and that the retry finds out (setSecret first logs in with
/// AWSPENDING, whichever the strategy, and is done if that works). Before that point nothing was
/// committed: the open transaction, if any, ends with the connection.
async fn written<T>(
    endpoint: &str,
    within: Duration,
    progress: &Progress,
    write: impl std::future::Future<Output = Result<T, TargetError>>,
) -> Result<T, TargetError> {
    match tokio::time::timeout(within, write).await {
        Ok(answer) => answer,
        Err(_) => {
            let (operation, commits) = progress.get();
            let outcome = if commits {
                "whether the change was applied is unknown: retry setSecret once the database \
                 answers, it finds out (it first logs in with AWSPENDING, which works if the \
                 change was applied)"
            } else {
                "nothing was committed (the transaction ends with the connection): retry \
                 setSecret once the database answers"
            };
            Err(TargetError {
                operation,
                message: format!(
                    "{endpoint} did not answer within {} s, mid-write; {outcome}",
                    within.as_secs_f32()
                ),
            })
        }
    }
}

impl PgSession {
    /// The driver's client, for SQL beyond the [`TargetSession`] trait.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// How a password set in this session is stored: `PASSWORD_ENCRYPTION`, and for `auto` the
/// session's `password_encryption`; SCRAM's iteration count is the session's `scram_iterations`
/// (PostgreSQL 16+; 4096 before). One query, none for md5.
async fn storage(
    client: &impl GenericClient,
    encryption: PasswordEncryption,
) -> Result<PasswordStorage, TargetError> {
    if encryption == PasswordEncryption::Md5 {
        return Ok(PasswordStorage::Md5);
    }
    let sql = "SELECT current_setting('password_encryption'), \
               current_setting('scram_iterations', true)";
    let row = failpoints::around!(
        "pg.show_password_encryption",
        client.query_one(sql, &[]).await
    )
    .map_err(|e| db_error("SHOW password_encryption", e))?;
    let method: String = row.get(0);
    let iterations = row
        .get::<_, Option<String>>(1)
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_SCRAM_ITERATIONS);
    // Before PostgreSQL 14, `on` / `true` were accepted as md5.
    if encryption == PasswordEncryption::Auto && !method.eq_ignore_ascii_case("scram-sha-256") {
        return Ok(PasswordStorage::Md5);
    }
    Ok(PasswordStorage::Scram { iterations })
}

/// The database-independent `role` setting of `role` (`ALTER ROLE … SET role`), if any.
async fn role_setting_of(
    client: &impl GenericClient,
    role: &str,
) -> Result<Option<String>, TargetError> {
    Ok(failpoints::around!(
        "pg.select_role_setting",
        client
            .query_opt(alternate::ROLE_SETTING_QUERY, &[&role])
            .await
    )
    .map_err(|e| db_error("SELECT FROM pg_db_role_setting", e))?
    .and_then(|row| row.get::<_, Option<String>>(0)))
}

/// The `_clone` user of the pair `current` / `pending`, whichever carries the suffix.
fn clone_of<'a>(current: &'a str, pending: &'a str) -> &'a str {
    let suffix = rotation::alternating::CLONE_SUFFIX;
    if pending.strip_suffix(suffix) == Some(current) {
        pending
    } else if current.strip_suffix(suffix) == Some(pending) {
        current
    } else {
        pending
    }
}

/// What the logged-in master may not do to make `pending` the alternate of `current`, read from
/// the catalog without changing anything:
/// * PostgreSQL 16+, a master that is not a superuser needs ADMIN OPTION on the role it grants
///   (`current`, when creating the clone) or alters (`pending`, when it exists), and CREATEDB to
///   give a new clone the original's CREATEDB;
/// * a per-role setting only a superuser may set (context `superuser`, unless PostgreSQL 15+'s
///   `GRANT SET ON PARAMETER` allows it) is not copied: the clone works without it.
async fn plan(
    client: &impl GenericClient,
    current: &str,
    pending: &str,
) -> Result<AlternatePlan, TargetError> {
    let mut plan = AlternatePlan::default();
    let sql = "SELECT current_setting('server_version_num')::int, r.rolsuper, r.rolcreatedb, \
               current_user::text FROM pg_catalog.pg_roles r WHERE r.rolname = current_user";
    let master = failpoints::around!("pg.select_master", client.query_one(sql, &[]).await)
        .map_err(|e| db_error("SELECT FROM pg_roles", e))?;
    let (version, superuser, master_createdb, master_name): (i32, bool, bool, String) =
        (master.get(0), master.get(1), master.get(2), master.get(3));
    if superuser {
        return Ok(plan);
    }
    // The original (the role without the suffix) is what the clone copies.
    let clone = clone_of(current, pending);
    let source = if clone == pending { current } else { pending };
    let original = failpoints::around!(
        "pg.select_original",
        client
            .query_opt(
                "SELECT rolcreatedb FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&source],
            )
            .await
    )
    .map_err(|e| db_error("SELECT FROM pg_roles", e))?;
    let exists = |role: &str| {
        let role = role.to_string();
        async move {
            failpoints::around!(
                "pg.select_role_exists",
                client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
                        &[&role],
                    )
                    .await
            )
            .map_err(|e| db_error("SELECT FROM pg_roles", e))
            .map(|row| row.get::<_, bool>(0))
        }
    };
    let pending_exists = exists(pending).await?;
    let clone_exists = if clone == pending {
        pending_exists
    } else {
        exists(clone).await?
    };
    if version >= 160_000 {
        // The role whose password changes (or, for a new clone, the role it is granted), and an
        // existing clone, which each rotation brings in line with the original.
        let mut administered = vec![if pending_exists { pending } else { current }];
        if clone_exists && !administered.contains(&clone) {
            administered.push(clone);
        }
        for role in administered {
            let sql = "SELECT pg_catalog.pg_has_role($1::text::name, 'MEMBER WITH ADMIN OPTION')";
            let admin: bool = failpoints::around!(
                "pg.select_admin_option",
                client.query_one(sql, &[&role]).await
            )
            .map_err(|e| db_error("SELECT pg_has_role", e))?
            .get(0);
            if !admin {
                plan.missing.push(MissingPrivilege {
                    privilege: format!(
                        "ADMIN OPTION on role {role} (PostgreSQL 16+ requires it to grant or \
                         alter a role the master did not create)"
                    ),
                    grant: alternate::grant_admin_sql(role, &master_name),
                });
            }
        }
        let original_createdb = original.as_ref().is_some_and(|r| r.get::<_, bool>(0));
        let clone_createdb = if clone_exists {
            failpoints::around!(
                "pg.select_clone_createdb",
                client
                    .query_one(
                        "SELECT rolcreatedb FROM pg_catalog.pg_roles WHERE rolname = $1",
                        &[&clone],
                    )
                    .await
            )
            .map_err(|e| db_error("SELECT FROM pg_roles", e))?
            .get::<_, bool>(0)
        } else {
            false
        };
        if original_createdb && !clone_createdb && !master_createdb {
            plan.missing.push(MissingPrivilege {
                privilege: format!(
                    "CREATEDB (PostgreSQL 16+ requires it to give {clone} the CREATEDB of \
                     {source})"
                ),
                grant: alternate::grant_createdb_sql(&master_name),
            });
        }
    }
    {
        // One query for every setting the master may not copy.
        let query = if version >= 150_000 {
            alternate::SUPERUSER_SETTINGS_QUERY
        } else {
            alternate::SUPERUSER_SETTINGS_QUERY_14
        };
        let rows = failpoints::around!(
            "pg.select_superuser_settings",
            client.query(query, &[&source]).await
        )
        .map_err(|e| db_error("SELECT FROM pg_db_role_setting", e))?;
        plan.skipped = rows
            .iter()
            .map(|row| row.get::<_, String>(0))
            .filter(|name| !alternate::is_identity_setting(name))
            .map(|name| SkippedSetting {
                fix: alternate::grant_set_parameter_fix(&name, &master_name),
                name,
            })
            .collect();
    }
    Ok(plan)
}

/// Whether `member` was granted `role` directly, read from the catalog (see
/// [`alternate::DIRECT_MEMBER_QUERY`]), in a transaction or not.
async fn direct_member(
    client: &impl GenericClient,
    member: &str,
    role: &str,
) -> Result<bool, TargetError> {
    Ok(failpoints::around!(
        "pg.select_direct_member",
        client
            .query_one(alternate::DIRECT_MEMBER_QUERY, &[&role, &member])
            .await
    )
    .map_err(|e| db_error("SELECT FROM pg_auth_members", e))?
    .get(0))
}

/// A role's attributes (`None`: no such role). Run after `SET LOCAL datestyle/timezone`.
async fn role_attributes(
    client: &impl GenericClient,
    role: &str,
) -> Result<Option<RoleAttributes>, TargetError> {
    Ok(failpoints::around!(
        "pg.select_role_attributes",
        client
            .query_opt(alternate::ROLE_ATTRIBUTES_QUERY, &[&role])
            .await
    )
    .map_err(|e| db_error("SELECT FROM pg_roles", e))?
    .map(|row| RoleAttributes {
        login: row.get(0),
        create_db: row.get(1),
        create_role: row.get(2),
        connection_limit: row.get(3),
        valid_until: row.get(4),
    }))
}

/// A role's per-role settings, identity settings (`role`) left out.
async fn role_settings(
    client: &impl GenericClient,
    role: &str,
) -> Result<Vec<RoleSetting>, TargetError> {
    Ok(failpoints::around!(
        "pg.select_role_settings",
        client.query(alternate::ROLE_SETTINGS_QUERY, &[&role]).await
    )
    .map_err(|e| db_error("SELECT FROM pg_db_role_setting", e))?
    .iter()
    .filter_map(|row| RoleSetting::parse(row.get(0), row.get::<_, &str>(1)))
    .filter(|s| !s.is_identity())
    .collect())
}

/// Brings `clone` in line with `original`: the attributes that differ (`LOGIN`, `CREATEDB`,
/// `CREATEROLE`, `CONNECTION LIMIT`, `VALID UNTIL`) and the per-role settings (added, changed,
/// removed), except the superuser-only settings the master may not set (`plan.skipped`: left as
/// they are on the clone, a DBA may have set them by hand; a warning names each). Returns what
/// changed, by name.
async fn follow_original(
    client: &impl GenericClient,
    original: &str,
    clone: &str,
    plan: &AlternatePlan,
) -> Result<Vec<String>, TargetError> {
    let (Some(want), Some(have)) = (
        role_attributes(client, original).await?,
        role_attributes(client, clone).await?,
    ) else {
        return Ok(Vec::new());
    };
    let mut changed = Vec::new();
    if let Some((sql, names)) = alternate::alter_attributes_sql(clone, &want, &have) {
        failpoints::around!("pg.alter_role_attributes", client.batch_execute(&sql).await)
            .map_err(|e| db_error("ALTER ROLE ... WITH", e))?;
        changed.extend(names.into_iter().map(str::to_string));
    }
    let skipped = |s: &RoleSetting| {
        plan.skipped
            .iter()
            .any(|k| k.name.eq_ignore_ascii_case(&s.name))
    };
    let wanted = role_settings(client, original).await?;
    let present = role_settings(client, clone).await?;
    for setting in &wanted {
        if skipped(setting) {
            tracing::warn!(
                setting = %setting.name,
                role = clone,
                "the master may not set this per-role setting; not copied to the clone"
            );
            continue;
        }
        if present.iter().any(|p| p == setting) {
            continue;
        }
        failpoints::around!(
            "pg.alter_role_set",
            client
                .batch_execute(&alternate::set_setting_sql(clone, setting))
                .await
        )
        .map_err(|e| db_error("ALTER ROLE ... SET", e))?;
        changed.push(format!("setting {}", setting.name));
    }
    for setting in &present {
        if skipped(setting) || wanted.iter().any(|w| w.same_variable(setting)) {
            continue;
        }
        failpoints::around!(
            "pg.alter_role_reset",
            client
                .batch_execute(&alternate::reset_setting_sql(clone, setting))
                .await
        )
        .map_err(|e| db_error("ALTER ROLE ... RESET", e))?;
        changed.push(format!("setting {} removed", setting.name));
    }
    Ok(changed)
}

/// Whether `member` may `SET ROLE` to `role` (PostgreSQL 16+: the membership's SET option;
/// before: membership), with the server's version number.
async fn may_act_as(
    client: &impl GenericClient,
    member: &str,
    role: &str,
) -> Result<(bool, i32), TargetError> {
    let version: i32 = failpoints::around!(
        "pg.show_server_version",
        client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
    )
    .map_err(|e| db_error("SHOW server_version_num", e))?
    .get(0);
    let option = if version >= 160_000 { "SET" } else { "MEMBER" };
    let may: bool = failpoints::around!(
        "pg.select_may_act_as",
        client
            .query_one(
                "SELECT pg_catalog.pg_has_role($1::text::name, $2::text::name, $3)",
                &[&member, &role, &option],
            )
            .await
    )
    .map_err(|e| db_error("SELECT pg_has_role", e))?
    .get(0);
    Ok((may, version))
}

/// The clone acts as the original acts: the original's own `role` setting when it has one, else
/// the original itself under the shared-owner opt-in, else the clone itself (a `role` setting
/// left by an earlier opt-in is removed). Acting as a role needs membership, and on PostgreSQL
/// 16+ the SET option of it: checked before the setting is written.
async fn apply_acting_role(
    client: &impl GenericClient,
    original: &str,
    request: &AlternateUser<'_>,
) -> Result<(), TargetError> {
    let clone = request.clone;
    let desired = match role_setting_of(client, original).await? {
        Some(role) => Some(role),
        None => request.act_as.map(|a| a.owner.to_string()),
    };
    let present = role_setting_of(client, clone).await?;
    let Some(target) = desired else {
        if present.is_some() {
            failpoints::around!(
                "pg.alter_role_reset_role",
                client
                    .batch_execute(&alternate::reset_act_as_sql(clone))
                    .await
            )
            .map_err(|e| db_error("ALTER ROLE ... RESET role", e))?;
            tracing::info!(
                clone,
                "shared-owner opt-in off: the clone's role setting was removed"
            );
        }
        return Ok(());
    };
    let (may, version) = may_act_as(client, clone, &target).await?;
    if !may {
        return Err(TargetError {
            operation: "ALTER ROLE ... SET role",
            message: format!(
                "{clone:?} must act as {target:?} (the role {original:?} acts as), but may not \
                 SET ROLE to it: {}",
                alternate::grant_set_role_sql(&target, clone, version >= 160_000)
            ),
        });
    }
    if present.as_deref() != Some(target.as_str()) {
        failpoints::around!(
            "pg.alter_role_set_role",
            client
                .batch_execute(&alternate::act_as_sql(clone, &target))
                .await
        )
        .map_err(|e| db_error("ALTER ROLE ... SET role", e))?;
    }
    Ok(())
}

/// [`TargetSession::ensure_alternate`]'s transaction; `progress` follows it for [`written`].
async fn alternate_transaction(
    client: &mut Client,
    encryption: PasswordEncryption,
    request: &AlternateUser<'_>,
    progress: &Progress,
) -> Result<AlternateChange, TargetError> {
    let tx = failpoints::around!("pg.begin", client.transaction().await)
        .map_err(|e| db_error("BEGIN", e))?;
    progress.at("SET TRANSACTION", false);
    // rolvaliduntil is read as text: make its form independent of the server's defaults.
    failpoints::around!(
        "pg.set_transaction",
        tx.batch_execute(&format!(
            "{WRITE_PREAMBLE}; SET LOCAL datestyle TO 'ISO, YMD'; SET LOCAL timezone TO 'UTC'"
        ))
        .await
    )
    .map_err(|e| db_error("SET TRANSACTION", e))?;
    progress.at("SELECT FROM pg_roles", false);
    let exists = role_attributes(&tx, request.pending).await?.is_some();
    // An existing `<user>_clone` must be this secret's alternate (created by an earlier
    // rotation with `GRANT <user> TO <user>_clone`): the master never resets the password of
    // an unrelated role that happens to have that name.
    if exists
        && request.pending == request.clone
        && !direct_member(&tx, request.pending, request.current).await?
    {
        return Err(TargetError {
            operation: "ALTER ROLE ... PASSWORD",
            message: format!(
                "role {:?} exists but is not a member of {:?}, so it is not this secret's \
                     alternate user and its password is left alone: rename or drop that role, \
                     or, if it is the alternate: {}",
                request.pending,
                request.current,
                alternate::grant_sql(request.current, request.pending)
            ),
        });
    }
    // What else the master lacks is found before anything changes.
    let plan = plan(&tx, request.current, request.pending).await?;
    if let Some(missing) = plan.missing_text() {
        return Err(TargetError {
            operation: "the master's privileges",
            message: format!("the master lacks {missing}"),
        });
    }
    let storage = storage(&tx, encryption).await?;
    let change = if exists {
        progress.at("ALTER ROLE ... PASSWORD", false);
        failpoints::around!(
            "pg.alter_clone_password",
            tx.batch_execute(&alter_password_sql(
                request.pending,
                request.password,
                storage,
            ))
            .await
        )
        .map_err(|e| db_error("ALTER ROLE ... PASSWORD", e))?;
        AlternateChange::PasswordChanged
    } else {
        let attrs = role_attributes(&tx, request.current)
            .await?
            .ok_or_else(|| TargetError {
                operation: "SELECT FROM pg_roles",
                message: format!(
                    "role {:?} (AWSCURRENT's user) does not exist",
                    request.current
                ),
            })?;
        progress.at("CREATE ROLE", false);
        failpoints::around!(
            "pg.create_role",
            tx.batch_execute(&alternate::create_role_sql(
                request.pending,
                &attrs,
                request.password,
                storage,
            ))
            .await
        )
        .map_err(|e| db_error("CREATE ROLE", e))?;
        progress.at("GRANT", false);
        failpoints::around!(
            "pg.grant",
            tx.batch_execute(&alternate::grant_sql(request.current, request.pending))
                .await
        )
        .map_err(|e| db_error("GRANT", e))?;
        AlternateChange::Created
    };
    tracing::info!(
        role = request.pending,
        storage = %storage.describe(),
        "password verifier computed here; the password itself is not sent"
    );
    // The clone follows the original, every rotation: attributes, settings, acting role.
    let original = if request.clone == request.pending {
        request.current
    } else {
        request.pending
    };
    progress.at("ALTER ROLE (the clone follows the original)", false);
    let changed = follow_original(&tx, original, request.clone, &plan).await?;
    apply_acting_role(&tx, original, request).await?;
    if !changed.is_empty() {
        tracing::info!(
            clone = request.clone,
            original,
            changed = %changed.join(", "),
            "the clone now follows the original"
        );
    }
    progress.at("COMMIT", true);
    failpoints::around!("pg.commit", tx.commit().await).map_err(|e| db_error("COMMIT", e))?;
    Ok(change)
}

pub(crate) fn db_error(operation: &'static str, e: tokio_postgres::Error) -> TargetError {
    TargetError {
        operation,
        message: error_chain(&e),
    }
}

#[async_trait]
impl CredentialTarget for PostgresTarget {
    async fn connect(
        &self,
        credentials: &DbCredentials,
    ) -> Result<Box<dyn TargetSession>, ConnectError> {
        Ok(Box::new(self.open(credentials).await?))
    }

    fn profile(&self) -> &EngineProfile {
        &POSTGRES
    }

    fn advice(&self) -> &dyn EngineAdvice {
        &PostgresAdvice
    }

    fn tls_roots(&self, mode: TlsMode) -> String {
        self.roots.trust().describe(mode)
    }
}

#[async_trait]
impl TargetSession for PgSession {
    async fn set_password(
        &mut self,
        username: &str,
        password: &Password,
    ) -> Result<(), TargetError> {
        let progress = Progress::new("SHOW password_encryption");
        let (client, encryption) = (&self.client, self.encryption);
        let storage = written(&self.endpoint, self.write_timeout, &progress, async {
            let storage = storage(client, encryption).await?;
            // One implicit transaction, one round trip: the preamble, then the change. `SET
            // LOCAL ROLE NONE`: a user whose own settings say `SET role …` acts as that role
            // after login, and only the user itself may change its password without CREATEROLE.
            progress.at("ALTER ROLE ... PASSWORD", true);
            failpoints::around!(
                "pg.alter_role_password",
                client
                    .batch_execute(&format!(
                        "{WRITE_PREAMBLE}; SET LOCAL ROLE NONE; {}",
                        alter_password_sql(username, password, storage)
                    ))
                    .await
            )
            .map_err(|e| db_error("ALTER ROLE ... PASSWORD", e))?;
            Ok(storage)
        })
        .await?;
        tracing::info!(
            role = username,
            storage = %storage.describe(),
            "password verifier computed here; the password itself is not sent"
        );
        Ok(())
    }

    async fn login_identity(&mut self) -> Result<LoginIdentity, TargetError> {
        let client = &self.client;
        let operation = "SELECT session_user, current_user";
        let row = answered(&self.endpoint, self.answer_timeout, operation, async {
            failpoints::around!(
                "pg.select_login_identity",
                client
                    .query_one("SELECT session_user::text, current_user::text", &[])
                    .await
            )
            .map_err(|e| db_error(operation, e))
        })
        .await?;
        Ok(LoginIdentity {
            session_user: row.get(0),
            current_user: row.get(1),
        })
    }

    async fn ensure_alternate(
        &mut self,
        request: &AlternateUser<'_>,
    ) -> Result<AlternateChange, TargetError> {
        let progress = Progress::new("BEGIN");
        let encryption = self.encryption;
        let client = &mut self.client;
        written(
            &self.endpoint,
            self.write_timeout,
            &progress,
            alternate_transaction(client, encryption, request, &progress),
        )
        .await
    }

    async fn role_setting(&mut self, role: &str) -> Result<Option<String>, TargetError> {
        let operation = "SELECT FROM pg_db_role_setting";
        answered(&self.endpoint, self.answer_timeout, operation, async {
            role_setting_of(&self.client, role).await
        })
        .await
    }

    async fn may_act_as(&mut self, member: &str, role: &str) -> Result<bool, TargetError> {
        let operation = "pg_has_role";
        answered(&self.endpoint, self.answer_timeout, operation, async {
            Ok(may_act_as(&self.client, member, role).await?.0)
        })
        .await
    }

    async fn alternate_plan(
        &mut self,
        current: &str,
        pending: &str,
    ) -> Result<AlternatePlan, TargetError> {
        let operation = "SELECT FROM pg_roles";
        answered(&self.endpoint, self.answer_timeout, operation, async {
            plan(&self.client, current, pending).await
        })
        .await
    }

    async fn is_direct_member(&mut self, member: &str, role: &str) -> Result<bool, TargetError> {
        let operation = "SELECT FROM pg_auth_members";
        answered(&self.endpoint, self.answer_timeout, operation, async {
            direct_member(&self.client, member, role).await
        })
        .await
    }

    async fn role_exists(&mut self, role: &str) -> Result<bool, TargetError> {
        let client = &self.client;
        let operation = "SELECT FROM pg_roles";
        let row = answered(&self.endpoint, self.answer_timeout, operation, async {
            failpoints::around!(
                "pg.select_role_exists",
                client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
                        &[&role],
                    )
                    .await
            )
            .map_err(|e| db_error(operation, e))
        })
        .await?;
        Ok(row.get(0))
    }

    async fn privileges(&mut self) -> Result<RolePrivileges, TargetError> {
        let sql = "SELECT rolsuper, rolcreaterole FROM pg_catalog.pg_roles \
                   WHERE rolname = current_user";
        let client = &self.client;
        let operation = "SELECT FROM pg_roles";
        let row = answered(&self.endpoint, self.answer_timeout, operation, async {
            failpoints::around!("pg.select_privileges", client.query_one(sql, &[]).await)
                .map_err(|e| db_error(operation, e))
        })
        .await?;
        Ok(RolePrivileges {
            superuser: row.get(0),
            create_role: row.get(1),
        })
    }

    /// `pg_is_in_recovery()`: true on a streaming standby, an RDS read replica, an Aurora reader.
    async fn is_standby(&mut self) -> Result<bool, TargetError> {
        let client = &self.client;
        let operation = "SELECT pg_is_in_recovery()";
        let row = answered(&self.endpoint, self.answer_timeout, operation, async {
            failpoints::around!(
                "pg.select_is_standby",
                client
                    .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
                    .await
            )
            .map_err(|e| db_error(operation, e))
        })
        .await?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seconds of `SET LOCAL <name> = '<n>s'` in the preamble.
    fn preamble_seconds(name: &str) -> u64 {
        let at = WRITE_PREAMBLE.find(name).unwrap() + name.len();
        let rest = WRITE_PREAMBLE[at..].trim_start_matches([' ', '=', '\'']);
        rest[..rest.find('s').unwrap()].parse().unwrap()
    }

    #[test]
    fn the_client_gives_up_on_a_write_just_after_the_server_would() {
        let lock = preamble_seconds("lock_timeout");
        let statement = preamble_seconds("statement_timeout");
        assert_eq!((lock, statement), (5, 6));
        assert!(lock < statement && statement < WRITE_TIMEOUT.as_secs());
        assert!(WRITE_TIMEOUT <= Duration::from_secs(statement + 1));
    }

    #[tokio::test]
    async fn a_write_that_is_never_answered_says_whether_it_may_have_landed() {
        let progress = Progress::new("SHOW password_encryption");
        let within = Duration::from_millis(10);
        let never = std::future::pending::<Result<(), TargetError>>();
        let err = written("db.example:5432", within, &progress, never)
            .await
            .unwrap_err();
        assert_eq!(err.operation, "SHOW password_encryption");
        assert!(err
            .message
            .contains("db.example:5432 did not answer within 0.01 s"));
        assert!(err.message.contains("nothing was committed"), "{err}");
        progress.at("ALTER ROLE ... PASSWORD", true);
        let never = std::future::pending::<Result<(), TargetError>>();
        let err = written("db.example:5432", within, &progress, never)
            .await
            .unwrap_err();
        assert_eq!(err.operation, "ALTER ROLE ... PASSWORD");
        assert!(
            err.message
                .contains("whether the change was applied is unknown")
                && err.message.contains("AWSPENDING"),
            "{err}"
        );
        // An answer within the bound is the answer.
        let quick = async { Ok::<_, TargetError>(7) };
        assert_eq!(written("h:1", within, &progress, quick).await.unwrap(), 7);
    }
}
