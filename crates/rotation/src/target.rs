//! `CredentialTarget`: the database whose password rotation changes.

use crate::profile::{EngineAdvice, EngineProfile};
use crate::secret::{DbCredentials, Password, TlsMode};
use async_trait::async_trait;

/// Why a login attempt failed. Never carries a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The server refused the user or password.
    #[error("authentication failed for user {user:?}")]
    Authentication {
        /// The user that tried to log in.
        user: String,
    },
    /// TLS could not be set up or the certificate did not verify.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The server did not answer.
    #[error("cannot reach {host}:{port}: {reason}")]
    Unreachable {
        /// The host tried.
        host: String,
        /// The port tried.
        port: u16,
        /// Why it failed.
        reason: String,
    },
    /// Anything else the server or driver reported.
    #[error("{0}")]
    Other(String),
}

/// A failed database operation after login. Never carries a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database {operation} failed: {message}")]
pub struct TargetError {
    /// The statement or operation, e.g. `ALTER ROLE`.
    pub operation: &'static str,
    /// The server's or driver's message.
    pub message: String,
}

/// What the alternating-users strategy asks of the master's session.
#[derive(Debug, Clone, Copy)]
pub struct AlternateUser<'a> {
    /// AWSCURRENT's user: the role whose attributes, settings and membership a new alternate
    /// copies.
    pub current: &'a str,
    /// AWSPENDING's user: created when missing, else its password is changed (an existing
    /// `<current>_clone` only when it is a direct member of `current`).
    pub pending: &'a str,
    /// AWSPENDING's password (reaches the database only as a verifier, never in clear).
    pub password: &'a Password,
    /// The pair's `_clone` user (`pending` or `current`).
    pub clone: &'a str,
    /// The shared-owner opt-in: make `clone` act as `owner` (`ALTER ROLE clone SET role`), so
    /// that whatever either user creates is owned by `owner`. `None` turns it off: a `role`
    /// setting left on the clone by an earlier opt-in is removed.
    pub act_as: Option<ActAs<'a>>,
}

/// The `_clone` user and the original role it acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActAs<'a> {
    /// The `_clone` user.
    pub clone: &'a str,
    /// The original user it acts as.
    pub owner: &'a str,
}

/// What [`TargetSession::ensure_alternate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlternateChange {
    /// The pending user did not exist and was created from the current user.
    Created,
    /// The pending user existed; its password was changed.
    PasswordChanged,
}

/// What the master may and may not do for the alternate user, found before anything changes
/// (by setSecret, inside its transaction, and by the preflight).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlternatePlan {
    /// Privileges the master lacks: setSecret fails naming each, nothing changed.
    pub missing: Vec<MissingPrivilege>,
    /// Per-role settings of the original the master may not set: not copied to the clone (the
    /// clone logs in and works without them); a warning names each.
    pub skipped: Vec<SkippedSetting>,
}

/// A privilege the master lacks, and the statement that grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPrivilege {
    /// What is missing, e.g. `ADMIN OPTION on role app`.
    pub privilege: String,
    /// The statement that grants it, e.g. `GRANT app TO master WITH ADMIN OPTION`.
    pub grant: String,
}

/// A setting the master may not copy, and how to let it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSetting {
    /// The setting's name (never its value).
    pub name: String,
    /// How to let the master set it.
    pub fix: String,
}

impl AlternatePlan {
    /// The error text when privileges are missing: each, with its statement.
    pub fn missing_text(&self) -> Option<String> {
        (!self.missing.is_empty()).then(|| {
            self.missing
                .iter()
                .map(|m| format!("{} (grant it with: {})", m.privilege, m.grant))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// The privileges of the logged-in role that matter for the alternating-users strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolePrivileges {
    /// A superuser (may do anything).
    pub superuser: bool,
    /// May create users and change their passwords.
    pub create_role: bool,
}

/// Who a session is: the user that logged in and the role it acts as (they differ when the user
/// has a `role` setting, as with the shared-owner opt-in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIdentity {
    /// The user that logged in (`session_user`).
    pub session_user: String,
    /// The role the session acts as (`current_user`).
    pub current_user: String,
}

/// Opens sessions on the database named by a secret.
#[async_trait]
pub trait CredentialTarget: Send + Sync {
    /// Logs in with `credentials` (TLS as they say, no fallback).
    async fn connect(
        &self,
        credentials: &DbCredentials,
    ) -> Result<Box<dyn TargetSession>, ConnectError>;

    /// The engine this target speaks: accepted `engine` names, defaults, identifier limit.
    fn profile(&self) -> &EngineProfile;

    /// The engine's fix texts for the preflight report.
    fn advice(&self) -> &dyn EngineAdvice;

    /// The roots a connection in `mode` trusts, in words for reports (e.g. "the public web roots
    /// and the Amazon RDS CAs"); names files, never their content.
    fn tls_roots(&self, mode: TlsMode) -> String;
}

/// A shared target is a target: the Lambda crate hands one to the rotator and the preflight.
#[async_trait]
impl<T: CredentialTarget + ?Sized> CredentialTarget for std::sync::Arc<T> {
    async fn connect(
        &self,
        credentials: &DbCredentials,
    ) -> Result<Box<dyn TargetSession>, ConnectError> {
        (**self).connect(credentials).await
    }

    fn profile(&self) -> &EngineProfile {
        (**self).profile()
    }

    fn advice(&self) -> &dyn EngineAdvice {
        (**self).advice()
    }

    fn tls_roots(&self, mode: TlsMode) -> String {
        (**self).tls_roots(mode)
    }
}

/// An open, authenticated database session.
#[async_trait]
pub trait TargetSession: Send {
    /// Sets `username`'s password (as a verifier, never in clear; identifier escaped).
    async fn set_password(
        &mut self,
        username: &str,
        password: &Password,
    ) -> Result<(), TargetError>;

    /// The user that logged in (`session_user`) and the role it acts as (`current_user`).
    async fn login_identity(&mut self) -> Result<LoginIdentity, TargetError>;

    /// Alternating users, run as the master: create `pending` from `current` (attributes,
    /// per-role settings, `GRANT current TO pending`) or change its password; apply the
    /// shared-owner opt-in. All or nothing.
    async fn ensure_alternate(
        &mut self,
        _request: &AlternateUser<'_>,
    ) -> Result<AlternateChange, TargetError> {
        Err(unsupported("alternating users"))
    }

    /// What the logged-in master may not do to make `pending` the alternate of `current` (see
    /// [`AlternatePlan`]). The default: nothing known to be missing.
    async fn alternate_plan(
        &mut self,
        _current: &str,
        _pending: &str,
    ) -> Result<AlternatePlan, TargetError> {
        Ok(AlternatePlan::default())
    }

    /// The database-independent `role` setting of `role` (`ALTER ROLE … SET role`): the role a
    /// login as `role` acts as. The default: none.
    async fn role_setting(&mut self, _role: &str) -> Result<Option<String>, TargetError> {
        Ok(None)
    }

    /// Whether `member` may act as `role` (`SET ROLE`): a member of it, and on engines that
    /// have one, with the option that allows it. The default: yes.
    async fn may_act_as(&mut self, _member: &str, _role: &str) -> Result<bool, TargetError> {
        Ok(true)
    }

    /// Whether a role exists.
    async fn role_exists(&mut self, _role: &str) -> Result<bool, TargetError> {
        Err(unsupported("role look-up"))
    }

    /// Whether `member` was granted `role` directly (an existing alternate user must have been:
    /// the rotation never changes the password of an unrelated role with the alternate's name).
    async fn is_direct_member(&mut self, _member: &str, _role: &str) -> Result<bool, TargetError> {
        Err(unsupported("membership look-up"))
    }

    /// The logged-in role's privileges.
    async fn privileges(&mut self) -> Result<RolePrivileges, TargetError> {
        Err(unsupported("privilege look-up"))
    }

    /// Whether the server is a standby replaying a primary's changes (a read replica, an Aurora
    /// reader; PostgreSQL: `pg_is_in_recovery()`). testSecret asks, logged in with AWSCURRENT,
    /// before it waits for a replica to replay the password change. The default: not a standby,
    /// so nothing waits.
    async fn is_standby(&mut self) -> Result<bool, TargetError> {
        Ok(false)
    }
}

fn unsupported(what: &str) -> TargetError {
    TargetError {
        operation: "unsupported",
        message: format!("this database target does not support {what}"),
    }
}
