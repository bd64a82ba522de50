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

pub mod alternate;
pub mod profile;
mod sql;
mod tls;

pub use profile::{PostgresAdvice, POSTGRES};
pub use sql::{alter_password_sql, scram_verifier, WRITE_PREAMBLE};
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

/// PostgreSQL as a [`CredentialTarget`]. Cheap to build: nothing happens before the first connect.
pub struct PostgresTarget {
    roots: TlsRoots,
    connect_timeout: Duration,
    application_name: String,
}

impl PostgresTarget {
    /// `trust`: the roots TLS trusts (`DB_CA_BUNDLE`, `DB_CA_BUNDLE_ONLY`).
    pub fn new(trust: Trust) -> Self {
        PostgresTarget {
            roots: TlsRoots::new(trust),
            connect_timeout: CONNECT_TIMEOUT,
            application_name: "rotate-postgres".into(),
        }
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
        match tokio::time::timeout(self.connect_timeout, config.connect(tls)).await {
            Ok(Ok((client, conn))) => {
                // Detached: the task ends when the client is dropped and the server closes.
                tokio::spawn(drive(conn));
                Ok(PgSession { client })
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
    } else if text.contains("error connecting to server") || text.contains("timed out") {
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
}

impl PgSession {
    /// The driver's client, for SQL beyond the [`TargetSession`] trait.
    pub fn client(&self) -> &Client {
        &self.client
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
    let master = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, r.rolsuper, r.rolcreatedb, \
             current_user::text FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| db_error("SELECT FROM pg_roles", e))?;
    let (version, superuser, master_createdb, master_name): (i32, bool, bool, String) =
        (master.get(0), master.get(1), master.get(2), master.get(3));
    if superuser {
        return Ok(plan);
    }
    let original = client
        .query_opt(
            "SELECT rolcreatedb FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&current],
        )
        .await
        .map_err(|e| db_error("SELECT FROM pg_roles", e))?;
    let pending_exists = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
            &[&pending],
        )
        .await
        .map_err(|e| db_error("SELECT FROM pg_roles", e))?
        .get::<_, bool>(0);
    if version >= 160_000 {
        let administered = if pending_exists { pending } else { current };
        let admin: bool = client
            .query_one(
                "SELECT pg_catalog.pg_has_role($1::text::name, 'MEMBER WITH ADMIN OPTION')",
                &[&administered],
            )
            .await
            .map_err(|e| db_error("SELECT pg_has_role", e))?
            .get(0);
        if !admin {
            plan.missing.push(MissingPrivilege {
                privilege: format!(
                    "ADMIN OPTION on role {administered} (PostgreSQL 16+ requires it to grant or \
                     alter a role the master did not create)"
                ),
                grant: alternate::grant_admin_sql(administered, &master_name),
            });
        }
        let original_createdb = original.as_ref().is_some_and(|r| r.get::<_, bool>(0));
        if !pending_exists && original_createdb && !master_createdb {
            plan.missing.push(MissingPrivilege {
                privilege: format!(
                    "CREATEDB (PostgreSQL 16+ requires it to give {pending} the CREATEDB of \
                     {current})"
                ),
                grant: alternate::grant_createdb_sql(&master_name),
            });
        }
    }
    if !pending_exists {
        // One query for every setting the master may not copy.
        let query = if version >= 150_000 {
            alternate::SUPERUSER_SETTINGS_QUERY
        } else {
            alternate::SUPERUSER_SETTINGS_QUERY_14
        };
        let rows = client
            .query(query, &[&current])
            .await
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
    Ok(client
        .query_one(alternate::DIRECT_MEMBER_QUERY, &[&role, &member])
        .await
        .map_err(|e| db_error("SELECT FROM pg_auth_members", e))?
        .get(0))
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
    async fn current_user(&mut self) -> Result<String, TargetError> {
        let row = self
            .client
            .query_one("SELECT current_user::text", &[])
            .await
            .map_err(|e| db_error("SELECT current_user", e))?;
        Ok(row.get(0))
    }

    async fn set_password(
        &mut self,
        username: &str,
        password: &Password,
    ) -> Result<(), TargetError> {
        // One implicit transaction, one round trip: the preamble, then the change.
        self.client
            .batch_execute(&format!(
                "{WRITE_PREAMBLE}; {}",
                alter_password_sql(username, password)
            ))
            .await
            .map_err(|e| db_error("ALTER ROLE ... PASSWORD", e))
    }

    async fn login_identity(&mut self) -> Result<LoginIdentity, TargetError> {
        let row = self
            .client
            .query_one("SELECT session_user::text, current_user::text", &[])
            .await
            .map_err(|e| db_error("SELECT session_user, current_user", e))?;
        Ok(LoginIdentity {
            session_user: row.get(0),
            current_user: row.get(1),
        })
    }

    async fn ensure_alternate(
        &mut self,
        request: &AlternateUser<'_>,
    ) -> Result<AlternateChange, TargetError> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_error("BEGIN", e))?;
        // rolvaliduntil is read as text: make its form independent of the server's defaults.
        tx.batch_execute(&format!(
            "{WRITE_PREAMBLE}; SET LOCAL datestyle TO 'ISO, YMD'; SET LOCAL timezone TO 'UTC'"
        ))
        .await
        .map_err(|e| db_error("SET TRANSACTION", e))?;
        let exists = tx
            .query_opt(alternate::ROLE_ATTRIBUTES_QUERY, &[&request.pending])
            .await
            .map_err(|e| db_error("SELECT FROM pg_roles", e))?
            .is_some();
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
        let change = if exists {
            tx.batch_execute(&alter_password_sql(request.pending, request.password))
                .await
                .map_err(|e| db_error("ALTER ROLE ... PASSWORD", e))?;
            AlternateChange::PasswordChanged
        } else {
            let row = tx
                .query_opt(alternate::ROLE_ATTRIBUTES_QUERY, &[&request.current])
                .await
                .map_err(|e| db_error("SELECT FROM pg_roles", e))?
                .ok_or_else(|| TargetError {
                    operation: "SELECT FROM pg_roles",
                    message: format!(
                        "role {:?} (AWSCURRENT's user) does not exist",
                        request.current
                    ),
                })?;
            let attrs = RoleAttributes {
                login: row.get(0),
                create_db: row.get(1),
                create_role: row.get(2),
                connection_limit: row.get(3),
                valid_until: row.get(4),
            };
            let settings: Vec<RoleSetting> = tx
                .query(alternate::ROLE_SETTINGS_QUERY, &[&request.current])
                .await
                .map_err(|e| db_error("SELECT FROM pg_db_role_setting", e))?
                .iter()
                .filter_map(|row| RoleSetting::parse(row.get(0), row.get::<_, &str>(1)))
                .filter(|s| !s.is_identity())
                .filter(|s| {
                    let skip = plan.skipped.iter().any(|k| k.name == s.name);
                    if skip {
                        tracing::warn!(
                            setting = %s.name,
                            role = request.pending,
                            "the master may not set this per-role setting; not copied to the clone"
                        );
                    }
                    !skip
                })
                .collect();
            tx.batch_execute(&alternate::create_role_sql(
                request.pending,
                &attrs,
                request.password,
            ))
            .await
            .map_err(|e| db_error("CREATE ROLE", e))?;
            tx.batch_execute(&alternate::grant_sql(request.current, request.pending))
                .await
                .map_err(|e| db_error("GRANT", e))?;
            for setting in &settings {
                tx.batch_execute(&alternate::set_setting_sql(request.pending, setting))
                    .await
                    .map_err(|e| db_error("ALTER ROLE ... SET", e))?;
            }
            AlternateChange::Created
        };
        if let Some(act_as) = request.act_as {
            let member: bool = tx
                .query_one(
                    "SELECT pg_catalog.pg_has_role($1::text::name, $2::text::name, 'MEMBER')",
                    &[&act_as.clone, &act_as.owner],
                )
                .await
                .map_err(|e| db_error("SELECT pg_has_role", e))?
                .get(0);
            if !member {
                return Err(TargetError {
                    operation: "ALTER ROLE ... SET role",
                    message: format!(
                        "the shared-owner opt-in needs {:?} to be a member of {:?} (GRANT {} TO {})",
                        act_as.clone, act_as.owner, act_as.owner, act_as.clone
                    ),
                });
            }
            tx.batch_execute(&alternate::act_as_sql(act_as.clone, act_as.owner))
                .await
                .map_err(|e| db_error("ALTER ROLE ... SET role", e))?;
        } else {
            let has_role: bool = tx
                .query_one(alternate::HAS_ROLE_SETTING_QUERY, &[&request.clone])
                .await
                .map_err(|e| db_error("SELECT FROM pg_db_role_setting", e))?
                .get(0);
            if has_role {
                tx.batch_execute(&alternate::reset_act_as_sql(request.clone))
                    .await
                    .map_err(|e| db_error("ALTER ROLE ... RESET role", e))?;
                tracing::info!(
                    clone = request.clone,
                    "shared-owner opt-in off: the clone's role setting was removed"
                );
            }
        }
        tx.commit().await.map_err(|e| db_error("COMMIT", e))?;
        Ok(change)
    }

    async fn alternate_plan(
        &mut self,
        current: &str,
        pending: &str,
    ) -> Result<AlternatePlan, TargetError> {
        plan(&self.client, current, pending).await
    }

    async fn is_direct_member(&mut self, member: &str, role: &str) -> Result<bool, TargetError> {
        direct_member(&self.client, member, role).await
    }

    async fn role_exists(&mut self, role: &str) -> Result<bool, TargetError> {
        let row = self
            .client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
                &[&role],
            )
            .await
            .map_err(|e| db_error("SELECT FROM pg_roles", e))?;
        Ok(row.get(0))
    }

    async fn privileges(&mut self) -> Result<RolePrivileges, TargetError> {
        let row = self
            .client
            .query_one(
                "SELECT rolsuper, rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(|e| db_error("SELECT FROM pg_roles", e))?;
        Ok(RolePrivileges {
            superuser: row.get(0),
            create_role: row.get(1),
        })
    }
}
