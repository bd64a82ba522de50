//! [`MemoryDatabase`]: an in-memory PostgreSQL-like database as a [`CredentialTarget`].
//!
//! Users and passwords reachable at one host (and its aliases, which stand for read replicas),
//! with what the alternating-users strategy needs: role memberships, per-role settings and which
//! users may create roles. A standby ([`MemoryDatabase::add_standby`]) answers that it is in
//! recovery, and its replay can be paused, so that it keeps the users and passwords of that
//! moment, and resumed after a number of logins. Its engine profile ([`MEMORY_PROFILE`]) accepts the same `engine`
//! names and defaults as PostgreSQL, so the tests' secrets read as they do in production.

use crate::profile::{EngineAdvice, EngineProfile};
use crate::secret::{DbCredentials, Password, TlsMode};
use crate::target::{
    AlternateChange, AlternateUser, ConnectError, CredentialTarget, LoginIdentity, RolePrivileges,
    TargetError, TargetSession,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The in-memory database's engine profile.
pub const MEMORY_PROFILE: EngineProfile = EngineProfile {
    name: "the in-memory database",
    engines: &["postgres", "aurora-postgresql"],
    default_port: 5432,
    default_database: "postgres",
    max_identifier_bytes: 63,
    superuser_privilege: "SUPERUSER",
    create_role_privilege: "CREATEROLE",
};

/// The in-memory database's fix texts: short, naming what its set-up methods change.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryAdvice;

impl EngineAdvice for MemoryAdvice {
    fn engine_fix(&self) -> String {
        format!("set engine to {}", MEMORY_PROFILE.engine_list())
    }

    fn login_fix(&self, who: &str) -> String {
        format!("give the user the password in {who} (MemoryDatabase::add_user)")
    }

    fn create_role_fix(&self, master_user: &str) -> String {
        format!("give {master_user} CREATEROLE (MemoryDatabase::add_creator)")
    }

    fn role_catalog_fix(&self) -> String {
        "the in-memory database always lists its roles".into()
    }

    fn shared_owner_mechanism(&self, clone: &str) -> String {
        format!("the role setting of {clone}")
    }

    fn alternate_membership_fix(&self, original: &str, clone: &str) -> String {
        format!("grant {original} to {clone}, or remove {clone}")
    }

    fn act_as_fix(&self, role: &str, member: &str) -> String {
        format!("let {member} act as {role}")
    }
}

/// An in-memory database: users and passwords, reachable at one host (and its aliases, which
/// stand for read replicas), with what the alternating-users strategy needs: role memberships,
/// per-role settings and which users may create roles.
#[derive(Debug, Clone)]
pub struct MemoryDatabase {
    host: String,
    users: Arc<Mutex<HashMap<String, String>>>,
    connects: Arc<AtomicU64>,
    roles: Arc<Mutex<Roles>>,
}

#[derive(Debug, Default)]
struct Roles {
    aliases: BTreeSet<String>,
    /// Role → roles it was granted.
    members: HashMap<String, BTreeSet<String>>,
    /// Role → `name=value` settings.
    settings: HashMap<String, BTreeMap<String, String>>,
    /// Users with CREATEROLE.
    creators: BTreeSet<String>,
    /// Every connection fails with this TLS error.
    tls_failure: Option<String>,
    /// Login user → the user the session ends up as (a pooler or proxy that maps users).
    login_map: HashMap<String, String>,
    /// Host → its standby state (a standby is also an alias).
    standbys: HashMap<String, Standby>,
}

/// A standby's replay.
#[derive(Debug, Default)]
struct Standby {
    /// While replay is paused: the users and passwords it has replayed.
    replayed: Option<HashMap<String, String>>,
    /// Replay resumes once this many more logins have been refused by the paused standby.
    resume_after: Option<u32>,
}

impl MemoryDatabase {
    /// A database reachable at `host`, without users.
    pub fn new(host: &str) -> Self {
        MemoryDatabase {
            host: host.to_string(),
            users: Arc::default(),
            connects: Arc::default(),
            roles: Arc::default(),
        }
    }

    /// Another host name for the same users (a read replica).
    pub fn add_alias(&self, host: &str) {
        self.roles.lock().unwrap().aliases.insert(host.to_string());
    }

    /// `GRANT role TO member`.
    pub fn grant(&self, member: &str, role: &str) {
        self.roles
            .lock()
            .unwrap()
            .members
            .entry(member.to_string())
            .or_default()
            .insert(role.to_string());
    }

    /// Sessions of `login` end up as `session_user` (a pooler or proxy that maps users).
    pub fn map_login(&self, login: &str, session_user: &str) {
        self.roles
            .lock()
            .unwrap()
            .login_map
            .insert(login.to_string(), session_user.to_string());
    }

    /// Another host name for the same users that is a standby (`is_standby` is true); it
    /// replays every change at once until [`MemoryDatabase::pause_replay`].
    pub fn add_standby(&self, host: &str) {
        let mut roles = self.roles.lock().unwrap();
        roles.aliases.insert(host.to_string());
        roles.standbys.insert(host.to_string(), Standby::default());
    }

    /// The standby `host` stops replaying: it keeps the users and passwords of this moment.
    pub fn pause_replay(&self, host: &str) {
        let users = self.users.lock().unwrap().clone();
        let mut roles = self.roles.lock().unwrap();
        let standby = roles.standbys.get_mut(host).expect("a standby");
        standby.replayed = Some(users);
        standby.resume_after = None;
    }

    /// The paused standby `host` resumes replaying after `logins` more logins to it (whoever
    /// logs in; the login after those sees every change).
    pub fn resume_replay_after(&self, host: &str, logins: u32) {
        let mut roles = self.roles.lock().unwrap();
        roles
            .standbys
            .get_mut(host)
            .expect("a standby")
            .resume_after = Some(logins);
    }

    /// A user with CREATEROLE (a master user).
    pub fn add_creator(&self, name: &str, password: &str) {
        self.add_user(name, password);
        self.roles.lock().unwrap().creators.insert(name.to_string());
    }

    /// Sets a per-role setting.
    pub fn set_setting(&self, role: &str, name: &str, value: &str) {
        self.roles
            .lock()
            .unwrap()
            .settings
            .entry(role.to_string())
            .or_default()
            .insert(name.to_string(), value.to_string());
    }

    /// The per-role settings of `role`.
    pub fn settings_of(&self, role: &str) -> BTreeMap<String, String> {
        self.roles
            .lock()
            .unwrap()
            .settings
            .get(role)
            .cloned()
            .unwrap_or_default()
    }

    /// The roles `role` was granted.
    pub fn memberships_of(&self, role: &str) -> BTreeSet<String> {
        self.roles
            .lock()
            .unwrap()
            .members
            .get(role)
            .cloned()
            .unwrap_or_default()
    }

    /// Makes every connection fail TLS verification.
    pub fn fail_tls(&self, reason: &str) {
        self.roles.lock().unwrap().tls_failure = Some(reason.to_string());
    }

    /// Adds a user (or changes its password).
    pub fn add_user(&self, name: &str, password: &str) {
        self.users
            .lock()
            .unwrap()
            .insert(name.to_string(), password.to_string());
    }

    /// The password of `name`, if it is a user.
    pub fn password_of(&self, name: &str) -> Option<String> {
        self.users.lock().unwrap().get(name).cloned()
    }

    /// Login attempts so far.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::SeqCst)
    }
}

struct MemorySession {
    user: String,
    db: MemoryDatabase,
    standby: bool,
}

#[async_trait]
impl CredentialTarget for MemoryDatabase {
    async fn connect(
        &self,
        credentials: &DbCredentials,
    ) -> Result<Box<dyn TargetSession>, ConnectError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let (alias, tls_failure, standby, replayed) = {
            let mut roles = self.roles.lock().unwrap();
            let alias = roles.aliases.contains(&credentials.host);
            let tls_failure = roles.tls_failure.clone();
            let standby = roles.standbys.get_mut(&credentials.host);
            let is_standby = standby.is_some();
            let replayed = standby.and_then(|standby| {
                if standby.resume_after == Some(0) {
                    *standby = Standby::default();
                }
                standby.resume_after = standby.resume_after.map(|n| n.saturating_sub(1));
                standby.replayed.clone()
            });
            (alias, tls_failure, is_standby, replayed)
        };
        if credentials.host != self.host && !alias {
            return Err(ConnectError::Unreachable {
                host: credentials.host.clone(),
                port: credentials.port,
                reason: "no such host".into(),
            });
        }
        if let Some(reason) = tls_failure {
            return Err(ConnectError::Tls(reason));
        }
        let users = match replayed {
            Some(replayed) => replayed,
            None => self.users.lock().unwrap().clone(),
        };
        match users.get(&credentials.username) {
            Some(p) if p == credentials.password.expose() => Ok(Box::new(MemorySession {
                user: self
                    .roles
                    .lock()
                    .unwrap()
                    .login_map
                    .get(&credentials.username)
                    .cloned()
                    .unwrap_or_else(|| credentials.username.clone()),
                db: self.clone(),
                standby,
            })),
            _ => Err(ConnectError::Authentication {
                user: credentials.username.clone(),
            }),
        }
    }

    fn profile(&self) -> &EngineProfile {
        &MEMORY_PROFILE
    }

    fn advice(&self) -> &dyn EngineAdvice {
        &MemoryAdvice
    }

    fn tls_roots(&self, mode: TlsMode) -> String {
        format!("the in-memory roots ({})", mode.name())
    }
}

impl MemorySession {
    /// A standby is read-only, as PostgreSQL's hot standby is.
    fn writable(&self, operation: &'static str) -> Result<(), TargetError> {
        if self.standby {
            return Err(TargetError {
                operation,
                message: format!("cannot execute {operation} in a read-only transaction"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl TargetSession for MemorySession {
    async fn set_password(
        &mut self,
        username: &str,
        password: &Password,
    ) -> Result<(), TargetError> {
        self.writable("ALTER ROLE")?;
        let mut users = self.db.users.lock().unwrap();
        match users.get_mut(username) {
            Some(p) => {
                *p = password.expose().to_string();
                Ok(())
            }
            None => Err(TargetError {
                operation: "ALTER ROLE",
                message: format!("role {username:?} does not exist"),
            }),
        }
    }

    async fn login_identity(&mut self) -> Result<LoginIdentity, TargetError> {
        let acting = self
            .db
            .settings_of(&self.user)
            .get("role")
            .cloned()
            .unwrap_or_else(|| self.user.clone());
        Ok(LoginIdentity {
            session_user: self.user.clone(),
            current_user: acting,
        })
    }

    async fn ensure_alternate(
        &mut self,
        request: &AlternateUser<'_>,
    ) -> Result<AlternateChange, TargetError> {
        self.writable("CREATE ROLE")?;
        let mut users = self.db.users.lock().unwrap();
        let mut roles = self.db.roles.lock().unwrap();
        if !roles.creators.contains(&self.user) {
            return Err(TargetError {
                operation: "CREATE ROLE",
                message: "permission denied to create role".into(),
            });
        }
        let change = if users.contains_key(request.pending) {
            let member = roles
                .members
                .get(request.pending)
                .is_some_and(|m| m.contains(request.current));
            if request.pending == request.clone && !member {
                return Err(TargetError {
                    operation: "ALTER ROLE ... PASSWORD",
                    message: format!(
                        "role {:?} exists but is not a member of {:?}",
                        request.pending, request.current
                    ),
                });
            }
            AlternateChange::PasswordChanged
        } else {
            if !users.contains_key(request.current) {
                return Err(TargetError {
                    operation: "CREATE ROLE",
                    message: format!("role {:?} does not exist", request.current),
                });
            }
            roles
                .members
                .entry(request.pending.to_string())
                .or_default()
                .insert(request.current.to_string());
            AlternateChange::Created
        };
        // The clone follows the original: its settings (the acting role aside) every rotation.
        let original = if request.clone == request.pending {
            request.current
        } else {
            request.pending
        };
        let original_settings = roles.settings.get(original).cloned().unwrap_or_default();
        let original_role = original_settings.get("role").cloned();
        let mut clone_settings = original_settings;
        clone_settings.remove("role");
        let desired = original_role.or_else(|| request.act_as.map(|a| a.owner.to_string()));
        if let Some(target) = &desired {
            let member = roles
                .members
                .get(request.clone)
                .is_some_and(|m| m.contains(target));
            if !member {
                return Err(TargetError {
                    operation: "ALTER ROLE ... SET role",
                    message: format!("{:?} is not a member of {:?}", request.clone, target),
                });
            }
            clone_settings.insert("role".into(), target.clone());
        }
        roles
            .settings
            .insert(request.clone.to_string(), clone_settings);
        users.insert(
            request.pending.to_string(),
            request.password.expose().to_string(),
        );
        Ok(change)
    }

    async fn may_act_as(&mut self, member: &str, role: &str) -> Result<bool, TargetError> {
        Ok(self.db.memberships_of(member).contains(role))
    }

    async fn role_setting(&mut self, role: &str) -> Result<Option<String>, TargetError> {
        Ok(self.db.settings_of(role).get("role").cloned())
    }

    async fn role_exists(&mut self, role: &str) -> Result<bool, TargetError> {
        Ok(self.db.users.lock().unwrap().contains_key(role))
    }

    async fn is_direct_member(&mut self, member: &str, role: &str) -> Result<bool, TargetError> {
        Ok(self.db.memberships_of(member).contains(role))
    }

    async fn privileges(&mut self) -> Result<RolePrivileges, TargetError> {
        Ok(RolePrivileges {
            superuser: false,
            create_role: self.db.roles.lock().unwrap().creators.contains(&self.user),
        })
    }

    async fn is_standby(&mut self) -> Result<bool, TargetError> {
        Ok(self.standby)
    }
}
