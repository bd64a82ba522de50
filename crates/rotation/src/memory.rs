//! In-memory [`SecretStore`] and [`CredentialTarget`] for fast unit tests of the protocol.
//!
//! The store follows Secrets Manager's label rules: one version per label, AWSPREVIOUS moved to the
//! old AWSCURRENT on promotion, idempotent `PutSecretValue` for a token, a valueless AWSPENDING
//! version created by [`MemoryStore::begin_rotation`] (what `RotateSecret` does before it invokes
//! the function). It also counts calls, so tests can hold rotation to its call budget.

use crate::policy::PasswordPolicy;
use crate::secret::{DbCredentials, Password};
use crate::store::{SecretMetadata, SecretStore, StoreError, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use crate::target::{
    AlternateChange, AlternateUser, ConnectError, CredentialTarget, RolePrivileges, TargetError,
    TargetSession,
};
use crate::topology::{
    DbEndpoint, DbTopology, MasterLocation, RdsResource, Relation, TopologyError,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Version {
    value: Option<String>,
    stages: Vec<String>,
}

#[derive(Debug, Clone)]
struct Secret {
    arn: String,
    name: String,
    rotation_enabled: Option<bool>,
    rotation_lambda_arn: Option<String>,
    tags: Vec<(String, String)>,
    versions: BTreeMap<String, Version>,
}

impl Secret {
    /// Secrets Manager accepts a secret's ARN or its name as `SecretId`.
    fn answers_to(&self, secret_id: &str) -> bool {
        self.arn == secret_id || self.name == secret_id
    }

    /// Stores version `id` with `stages`; each of those labels leaves any other version first.
    fn place(&mut self, id: &str, value: Option<&str>, stages: &[&str]) {
        for v in self.versions.values_mut() {
            v.stages.retain(|l| !stages.contains(&l.as_str()));
        }
        self.versions.insert(
            id.to_string(),
            Version {
                value: value.map(str::to_string),
                stages: stages.iter().map(|l| l.to_string()).collect(),
            },
        );
    }
}

/// An in-memory Secrets Manager (one account, one region).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    secrets: Arc<Mutex<HashMap<String, Secret>>>,
    calls: Arc<Mutex<Vec<&'static str>>>,
    passwords: Arc<AtomicU64>,
}

fn not_found(operation: &'static str, what: &str) -> StoreError {
    StoreError {
        operation,
        code: Some("ResourceNotFoundException".into()),
        message: format!("Secrets Manager can't find {what}"),
    }
}

fn invalid(operation: &'static str, message: String) -> StoreError {
    StoreError {
        operation,
        code: Some("InvalidRequestException".into()),
        message,
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a secret whose first version (id `initial_version`) is AWSCURRENT. Returns the ARN.
    pub fn create_secret(&self, name: &str, initial_version: &str, value: &str) -> String {
        let arn = format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf");
        let mut versions = BTreeMap::new();
        versions.insert(
            initial_version.to_string(),
            Version {
                value: Some(value.to_string()),
                stages: vec![AWSCURRENT.to_string()],
            },
        );
        self.secrets.lock().unwrap().insert(
            arn.clone(),
            Secret {
                arn: arn.clone(),
                name: name.to_string(),
                rotation_enabled: Some(true),
                rotation_lambda_arn: None,
                tags: Vec::new(),
                versions,
            },
        );
        arn
    }

    fn with_secret<R>(
        &self,
        operation: &'static str,
        secret_id: &str,
        f: impl FnOnce(&mut Secret) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.calls.lock().unwrap().push(operation);
        let mut secrets = self.secrets.lock().unwrap();
        let secret = secrets
            .values_mut()
            .find(|s| s.answers_to(secret_id))
            .ok_or_else(|| not_found(operation, "the specified secret"))?;
        f(secret)
    }

    /// Test set-up and inspection: `f` on the secret, no call counted; panics if it is missing.
    fn set_up<R>(&self, secret_id: &str, f: impl FnOnce(&mut Secret) -> R) -> R {
        let mut secrets = self.secrets.lock().unwrap();
        let secret = secrets
            .values_mut()
            .find(|s| s.answers_to(secret_id))
            .unwrap_or_else(|| panic!("secret {secret_id} exists"));
        f(secret)
    }

    /// Sets `RotationEnabled` (`None` = the flag is absent).
    pub fn set_rotation_enabled(&self, secret_id: &str, enabled: Option<bool>) {
        self.set_up(secret_id, |s| s.rotation_enabled = enabled);
    }

    /// Sets the secret's tags (test set-up).
    pub fn set_tags(&self, secret_id: &str, tags: &[(&str, &str)]) {
        self.set_up(secret_id, |s| {
            s.tags = tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
    }

    /// Sets `RotationLambdaARN` (test set-up).
    pub fn set_rotation_lambda(&self, secret_id: &str, arn: Option<&str>) {
        self.set_up(secret_id, |s| {
            s.rotation_lambda_arn = arn.map(str::to_string)
        });
    }

    /// What `RotateSecret` does before invoking createSecret: a valueless version `token` labelled
    /// AWSPENDING (the label leaves any older version).
    pub fn begin_rotation(&self, secret_id: &str, token: &str) {
        self.set_up(secret_id, |s| s.place(token, None, &[AWSPENDING]));
    }

    /// Adds a labelled version with a value directly (test set-up, no call counted).
    pub fn put_version(&self, secret_id: &str, version: &str, value: &str, stages: &[&str]) {
        self.set_up(secret_id, |s| s.place(version, Some(value), stages));
    }

    /// The value of the version carrying `stage` (test inspection, no call counted).
    pub fn value_at(&self, secret_id: &str, stage: &str) -> Option<String> {
        let secrets = self.secrets.lock().unwrap();
        let secret = secrets.values().find(|s| s.answers_to(secret_id))?;
        secret
            .versions
            .values()
            .find(|v| v.stages.iter().any(|s| s == stage))
            .and_then(|v| v.value.clone())
    }

    /// Version id → labels (test inspection, no call counted).
    pub fn labels(&self, secret_id: &str) -> BTreeMap<String, Vec<String>> {
        self.set_up(secret_id, |s| {
            s.versions
                .iter()
                .map(|(id, v)| (id.clone(), v.stages.clone()))
                .collect()
        })
    }

    /// Every call made so far, by operation name.
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }

    pub fn reset_calls(&self) {
        self.calls.lock().unwrap().clear();
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn describe(&self, secret_id: &str) -> Result<SecretMetadata, StoreError> {
        self.with_secret("DescribeSecret", secret_id, |s| {
            Ok(SecretMetadata {
                arn: s.arn.clone(),
                name: s.name.clone(),
                rotation_enabled: s.rotation_enabled,
                tags: s.tags.clone(),
                rotation_lambda_arn: s.rotation_lambda_arn.clone(),
                kms_key_id: None,
                versions: s
                    .versions
                    .iter()
                    .filter(|(_, v)| !v.stages.is_empty())
                    .map(|(id, v)| (id.clone(), v.stages.clone()))
                    .collect(),
            })
        })
    }

    async fn get_value(
        &self,
        secret_id: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        self.with_secret("GetSecretValue", secret_id, |s| {
            let Some(version) = s.versions.get(version_id) else {
                return Ok(None);
            };
            if !version.stages.iter().any(|l| l == stage) {
                return Err(invalid(
                    "GetSecretValue",
                    "You provided a VersionStage that is not associated to the provided VersionId."
                        .into(),
                ));
            }
            Ok(version.value.clone())
        })
    }

    async fn get_stage_value(
        &self,
        secret_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        self.with_secret("GetSecretValue", secret_id, |s| {
            Ok(s.versions
                .values()
                .find(|v| v.stages.iter().any(|l| l == stage))
                .and_then(|v| v.value.clone()))
        })
    }

    async fn random_password(&self, policy: &PasswordPolicy) -> Result<Password, StoreError> {
        self.calls.lock().unwrap().push("GetRandomPassword");
        let mut classes: Vec<&str> = Vec::new();
        if !policy.exclude_lowercase {
            classes.push("abcdefghijklmnopqrstuvwxyz");
        }
        if !policy.exclude_uppercase {
            classes.push("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        }
        if !policy.exclude_numbers {
            classes.push("0123456789");
        }
        if !policy.exclude_punctuation {
            classes.push("!#$%&()*+,-.;<=>?[]^_`{|}~'\"\\:/@");
        }
        let pool: Vec<Vec<char>> = classes
            .iter()
            .map(|c| {
                c.chars()
                    .filter(|ch| !policy.exclude_characters.contains(*ch))
                    .collect::<Vec<_>>()
            })
            .filter(|c| !c.is_empty())
            .collect();
        // Deterministic but distinct per call: a counter spread over the allowed characters.
        let n = self.passwords.fetch_add(1, Ordering::SeqCst) + 1;
        let password: String = (0..policy.length as u64)
            .map(|i| {
                let class = &pool[(i as usize) % pool.len()];
                class[((n * 7919 + i * 104_729) as usize) % class.len()]
            })
            .collect();
        Ok(Password::new(password))
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        secret_string: &str,
        _rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        self.with_secret("PutSecretValue", secret_id, |s| {
            if let Some(existing) = s.versions.get(token) {
                match &existing.value {
                    Some(v) if v == secret_string => return Ok(()),
                    Some(_) => {
                        return Err(StoreError {
                            operation: "PutSecretValue",
                            code: Some("ResourceExistsException".into()),
                            message: format!("version {token} already exists with another value"),
                        })
                    }
                    None => {}
                }
            }
            s.place(token, Some(secret_string), &[AWSPENDING]);
            Ok(())
        })
    }

    async fn move_current(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), StoreError> {
        const OP: &str = "UpdateSecretVersionStage";
        self.with_secret(OP, secret_id, |s| {
            if !s.versions.contains_key(to_version) {
                return Err(invalid(OP, format!("Not a valid version: {to_version}")));
            }
            let holder = s
                .versions
                .iter()
                .find(|(_, v)| v.stages.iter().any(|l| l == AWSCURRENT))
                .map(|(id, _)| id.clone());
            if holder.as_deref() != from_version {
                return Err(invalid(
                    OP,
                    "RemoveFromVersionId must name the version that carries AWSCURRENT".into(),
                ));
            }
            if let Some(from) = from_version {
                for v in s.versions.values_mut() {
                    v.stages.retain(|l| l != AWSPREVIOUS);
                }
                let old = s.versions.get_mut(from).expect("holder exists");
                old.stages.retain(|l| l != AWSCURRENT);
                old.stages.push(AWSPREVIOUS.to_string());
            }
            s.versions
                .get_mut(to_version)
                .expect("checked above")
                .stages
                .push(AWSCURRENT.to_string());
            Ok(())
        })
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
}

impl MemoryDatabase {
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

    pub fn add_user(&self, name: &str, password: &str) {
        self.users
            .lock()
            .unwrap()
            .insert(name.to_string(), password.to_string());
    }

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
}

#[async_trait]
impl CredentialTarget for MemoryDatabase {
    async fn connect(
        &self,
        credentials: &DbCredentials,
    ) -> Result<Box<dyn TargetSession>, ConnectError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let (alias, tls_failure) = {
            let roles = self.roles.lock().unwrap();
            (
                roles.aliases.contains(&credentials.host),
                roles.tls_failure.clone(),
            )
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
        match self.users.lock().unwrap().get(&credentials.username) {
            Some(p) if p == credentials.password.expose() => Ok(Box::new(MemorySession {
                user: credentials.username.clone(),
                db: self.clone(),
            })),
            _ => Err(ConnectError::Authentication {
                user: credentials.username.clone(),
            }),
        }
    }
}

#[async_trait]
impl TargetSession for MemorySession {
    async fn current_user(&mut self) -> Result<String, TargetError> {
        Ok(self.user.clone())
    }

    async fn set_password(
        &mut self,
        username: &str,
        password: &Password,
    ) -> Result<(), TargetError> {
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

    async fn login_identity(&mut self) -> Result<(String, String), TargetError> {
        let acting = self
            .db
            .settings_of(&self.user)
            .get("role")
            .cloned()
            .unwrap_or_else(|| self.user.clone());
        Ok((self.user.clone(), acting))
    }

    async fn ensure_alternate(
        &mut self,
        request: &AlternateUser<'_>,
    ) -> Result<AlternateChange, TargetError> {
        let mut users = self.db.users.lock().unwrap();
        let mut roles = self.db.roles.lock().unwrap();
        if !roles.creators.contains(&self.user) {
            return Err(TargetError {
                operation: "CREATE ROLE",
                message: "permission denied to create role".into(),
            });
        }
        let change = if users.contains_key(request.pending) {
            AlternateChange::PasswordChanged
        } else {
            if !users.contains_key(request.current) {
                return Err(TargetError {
                    operation: "CREATE ROLE",
                    message: format!("role {:?} does not exist", request.current),
                });
            }
            let mut settings = roles
                .settings
                .get(request.current)
                .cloned()
                .unwrap_or_default();
            settings.remove("role");
            roles.settings.insert(request.pending.to_string(), settings);
            roles
                .members
                .entry(request.pending.to_string())
                .or_default()
                .insert(request.current.to_string());
            AlternateChange::Created
        };
        if let Some(act_as) = request.act_as {
            let member = roles
                .members
                .get(act_as.clone)
                .is_some_and(|m| m.contains(act_as.owner));
            if !member {
                return Err(TargetError {
                    operation: "ALTER ROLE ... SET role",
                    message: format!("{:?} is not a member of {:?}", act_as.clone, act_as.owner),
                });
            }
            roles
                .settings
                .entry(act_as.clone.to_string())
                .or_default()
                .insert("role".into(), act_as.owner.to_string());
        }
        users.insert(
            request.pending.to_string(),
            request.password.expose().to_string(),
        );
        Ok(change)
    }

    async fn role_exists(&mut self, role: &str) -> Result<bool, TargetError> {
        Ok(self.db.users.lock().unwrap().contains_key(role))
    }

    async fn privileges(&mut self) -> Result<RolePrivileges, TargetError> {
        Ok(RolePrivileges {
            superuser: false,
            create_role: self.db.roles.lock().unwrap().creators.contains(&self.user),
        })
    }
}

/// In-memory RDS look-ups: endpoints by ARN and relations by (host, master host).
#[derive(Debug, Clone, Default)]
pub struct MemoryTopology {
    endpoints: Arc<Mutex<HashMap<String, DbEndpoint>>>,
    relations: Arc<Mutex<HashMap<(String, String), Relation>>>,
    calls: Arc<AtomicU64>,
}

impl MemoryTopology {
    pub fn new() -> Self {
        Self::default()
    }

    /// What `DescribeDBInstances` / `DescribeDBClusters` says of `arn`.
    pub fn add_endpoint(&self, arn: &str, endpoint: DbEndpoint) {
        self.endpoints
            .lock()
            .unwrap()
            .insert(arn.to_string(), endpoint);
    }

    /// How `host` relates to the master at `master_host` (unrelated unless set).
    pub fn set_relation(&self, host: &str, master_host: &str, relation: Relation) {
        self.relations
            .lock()
            .unwrap()
            .insert((host.to_string(), master_host.to_string()), relation);
    }

    /// RDS calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl DbTopology for MemoryTopology {
    async fn endpoint_of(&self, resource: &RdsResource) -> Result<DbEndpoint, TopologyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.endpoints
            .lock()
            .unwrap()
            .get(resource.arn())
            .cloned()
            .ok_or_else(|| TopologyError {
                operation: "DescribeDBInstances",
                code: Some("DBInstanceNotFound".into()),
                message: format!("{} not found", resource.arn()),
            })
    }

    async fn relation(
        &self,
        host: &str,
        master: MasterLocation<'_>,
    ) -> Result<Relation, TopologyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .relations
            .lock()
            .unwrap()
            .get(&(host.to_string(), master.host.to_string()))
            .cloned()
            .unwrap_or_else(|| Relation::Unrelated {
                reason: format!("{host} is not an RDS endpoint"),
            }))
    }
}
