//! What a database engine declares to the engine-neutral core: its [`EngineProfile`] (accepted
//! `engine` names, defaults, identifier limit, privilege names) and its [`EngineAdvice`] (the fix
//! texts an operator reads in a preflight report).
//!
//! The core holds no engine facts: a target supplies both through
//! [`CredentialTarget`](crate::CredentialTarget). The PostgreSQL ones live in the
//! `postgres-target` crate.

/// The facts about an engine that secret parsing, the alternating-users strategy and the
/// preflight need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineProfile {
    /// The engine's name in messages, e.g. `PostgreSQL`.
    pub name: &'static str,
    /// The values of the secret's `engine` field this target accepts, e.g. `postgres`.
    pub engines: &'static [&'static str],
    /// The port used when the secret has none.
    pub default_port: u16,
    /// The database used when the secret has no `dbname`.
    pub default_database: &'static str,
    /// The longest user name the engine accepts, in bytes.
    pub max_identifier_bytes: usize,
    /// The engine's name for the privilege of a superuser, e.g. `SUPERUSER`.
    pub superuser_privilege: &'static str,
    /// The engine's name for the privilege of creating users, e.g. `CREATEROLE`.
    pub create_role_privilege: &'static str,
}

impl EngineProfile {
    /// Whether the secret's `engine` value names this engine.
    pub fn accepts(&self, engine: &str) -> bool {
        self.engines.contains(&engine)
    }

    /// The accepted engine names, quoted, for messages: `"a" or "b"`.
    pub fn engine_list(&self) -> String {
        self.engines
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

/// Engine-specific advice for the preflight report: what to do about a failed check.
pub trait EngineAdvice: Send + Sync {
    /// The fix when the secret's `engine` is not one the target accepts.
    fn engine_fix(&self) -> String;

    /// The fix when `who` (a staging label, e.g. `AWSCURRENT`) is refused at login.
    fn login_fix(&self, who: &str) -> String;

    /// The fix when the master user may not create users.
    fn create_role_fix(&self, master_user: &str) -> String;

    /// The fix when the master cannot read the role catalog.
    fn role_catalog_fix(&self) -> String;

    /// How the shared-owner opt-in makes `clone` act as the original, e.g. the statement it runs.
    fn shared_owner_mechanism(&self, clone: &str) -> String;

    /// The fix when a role named like the alternate user (`clone`) exists but was never granted
    /// `original`.
    fn alternate_membership_fix(&self, original: &str, clone: &str) -> String;

    /// The fix when `member` must act as `role` (the shared-owner opt-in, or the original's own
    /// acting role) but may not.
    fn act_as_fix(&self, role: &str, member: &str) -> String;
}
