//! The gate and the four rotation steps, generic over a [`SecretStore`] and a [`CredentialTarget`].

use crate::error::{ErrorKind, RotationError};
use crate::event::{RotationEvent, Step};
use crate::policy::PasswordPolicy;
use crate::secret::{DbCredentials, FieldError, SecretJson};
use crate::store::{SecretMetadata, SecretStore, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use crate::target::{ActAs, AlternateChange, AlternateUser, CredentialTarget, TargetSession};
use crate::topology::{DbTopology, MasterLocation, NoTopology, RdsResource, Relation};
use std::sync::Arc;
use std::time::Instant;

/// Suffix that marks the alternate user of the alternating-users strategy.
pub const CLONE_SUFFIX: &str = "_clone";
/// PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// How a secret's password is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The user changes its own password.
    SingleUser,
    /// A master secret maintains `user` and `user_clone`; each rotation switches between them.
    AlternatingUsers,
}

impl Strategy {
    /// `masterarn` present → alternating users, else single user.
    pub fn for_secret(secret: &SecretJson) -> Result<Strategy, crate::FieldError> {
        Ok(match secret.master_arn()? {
            Some(_) => Strategy::AlternatingUsers,
            None => Strategy::SingleUser,
        })
    }

    /// Parses `ROTATION_STRATEGY` (`single` or `alternating`).
    pub fn parse_env(value: &str) -> Result<Strategy, crate::ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "single" | "single-user" | "single_user" => Ok(Strategy::SingleUser),
            "alternating" | "alternating-users" | "alternating_users" | "multi" | "multi-user" => {
                Ok(Strategy::AlternatingUsers)
            }
            _ => Err(crate::ConfigError {
                name: "ROTATION_STRATEGY",
                value: value.to_string(),
                expected: "expected single or alternating",
            }),
        }
    }
}

/// The alternate of `username`: `_clone` stripped if present, else appended (63-byte limit).
pub fn alternate_username(username: &str) -> Result<String, ErrorKind> {
    if let Some(original) = original_of(username) {
        return Ok(original.to_string());
    }
    let clone = format!("{username}{CLONE_SUFFIX}");
    if clone.len() > MAX_IDENTIFIER_BYTES {
        return Err(ErrorKind::NameTooLong {
            username: username.to_string(),
            len: clone.len(),
        });
    }
    Ok(clone)
}

/// The `(clone, original)` pair of the alternating users that `username` belongs to: the user
/// with the `_clone` suffix and the one without.
pub fn user_pair(username: &str) -> Result<(String, String), ErrorKind> {
    match original_of(username) {
        Some(original) => Ok((username.to_string(), original.to_string())),
        None => Ok((alternate_username(username)?, username.to_string())),
    }
}

/// The original user's name when `username` is a clone (`name_clone` with a non-empty `name`).
fn original_of(username: &str) -> Option<&str> {
    username
        .strip_suffix(CLONE_SUFFIX)
        .filter(|original| !original.is_empty())
}

/// The master secret of the alternating-users strategy, ready to log in.
#[derive(Debug, Clone)]
pub struct MasterSecret {
    /// `masterarn` as given in the user's secret.
    pub arn: String,
    pub credentials: DbCredentials,
    /// The RDS resource named by the secret's `aws:rds:primary…Arn` tag, when host, port and
    /// engine came from RDS (an RDS-managed master secret).
    pub resource: Option<RdsResource>,
}

impl MasterSecret {
    /// Where the master's host came from, for messages.
    pub fn origin(&self) -> String {
        match &self.resource {
            Some(resource) => format!(", from its {} tag {}", resource.tag(), resource.arn()),
            None => String::new(),
        }
    }
}

/// Whether two credentials point at the same server (host names compare case-insensitively).
pub fn same_server(a: &DbCredentials, b: &DbCredentials) -> bool {
    a.host.eq_ignore_ascii_case(&b.host) && a.port == b.port
}

/// What a step did; logged as `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The token is already AWSCURRENT: nothing to do (gate).
    AlreadyCurrent,
    /// createSecret: the AWSPENDING value already existed.
    PendingExists,
    /// createSecret: a new AWSPENDING value was stored.
    PendingCreated,
    /// setSecret: AWSPENDING could already log in.
    PasswordAlreadySet,
    /// setSecret: the database now accepts AWSPENDING.
    PasswordSet,
    /// setSecret (alternating users): the alternate user was created from the current one.
    UserCreated,
    /// testSecret: AWSPENDING logs in as its user.
    Tested,
    /// finishSecret: AWSCURRENT moved to the token.
    Finished,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::AlreadyCurrent => "already_current",
            Outcome::PendingExists => "pending_exists",
            Outcome::PendingCreated => "pending_created",
            Outcome::PasswordAlreadySet => "password_already_set",
            Outcome::PasswordSet => "password_set",
            Outcome::UserCreated => "user_created",
            Outcome::Tested => "tested",
            Outcome::Finished => "finished",
        }
    }
}

/// Runs rotation steps. Build it once per process; it holds no per-secret state.
pub struct Rotator<S, T> {
    store: S,
    target: T,
    policy: PasswordPolicy,
    strategy_override: Option<Strategy>,
    topology: Arc<dyn DbTopology>,
    shared_owner_default: bool,
}

/// Everything one step works on: the event, the secret's metadata (one `DescribeSecret`).
struct StepContext<'a> {
    event: &'a RotationEvent,
    meta: SecretMetadata,
}

impl StepContext<'_> {
    fn arn(&self) -> &str {
        &self.meta.arn
    }

    fn token(&self) -> &str {
        &self.event.client_request_token
    }
}

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    pub fn new(store: S, target: T, policy: PasswordPolicy) -> Self {
        Rotator {
            store,
            target,
            policy,
            strategy_override: None,
            topology: Arc::new(NoTopology),
            shared_owner_default: false,
        }
    }

    /// The RDS look-ups (managed master secrets, replicas); without them only a master on the
    /// user's own host is accepted.
    pub fn with_topology(mut self, topology: Arc<dyn DbTopology>) -> Self {
        self.topology = topology;
        self
    }

    /// The shared-owner opt-in for secrets that do not say (`ALTERNATING_SHARED_OWNER`).
    pub fn with_shared_owner_default(mut self, enabled: bool) -> Self {
        self.shared_owner_default = enabled;
        self
    }

    pub fn topology(&self) -> &dyn DbTopology {
        self.topology.as_ref()
    }

    pub fn policy(&self) -> &PasswordPolicy {
        &self.policy
    }

    /// The strategy for a secret: the override, else `masterarn` decides.
    pub fn strategy_for(&self, secret: &SecretJson) -> Result<Strategy, FieldError> {
        match self.strategy_override {
            Some(strategy) => Ok(strategy),
            None => Strategy::for_secret(secret),
        }
    }

    /// Whether the shared-owner opt-in applies to `secret` (its field, else the default).
    pub fn shared_owner_for(&self, secret: &SecretJson) -> Result<bool, FieldError> {
        Ok(secret.shared_owner()?.unwrap_or(self.shared_owner_default))
    }

    /// Forces one strategy for every secret (`ROTATION_STRATEGY`).
    pub fn with_strategy_override(mut self, strategy: Option<Strategy>) -> Self {
        self.strategy_override = strategy;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn target(&self) -> &T {
        &self.target
    }

    /// Handles one event and writes one JSON log line for it (ARN, step, token, outcome,
    /// duration; never a value).
    pub async fn handle(&self, event: &RotationEvent) -> Result<Outcome, RotationError> {
        let started = Instant::now();
        let result = self.run(event).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok((arn, outcome)) => tracing::info!(
                secret_arn = %arn,
                step = %event.step,
                token = %event.client_request_token,
                outcome = outcome.as_str(),
                duration_ms,
                "rotation step finished"
            ),
            Err(error) => tracing::error!(
                secret_arn = %error.secret,
                step = %event.step,
                token = %event.client_request_token,
                outcome = "error",
                error_type = error.error_type(),
                error = %error,
                duration_ms,
                "rotation step failed"
            ),
        }
        result.map(|(_, outcome)| outcome)
    }

    async fn run(&self, event: &RotationEvent) -> Result<(String, Outcome), RotationError> {
        let fail = |secret: &str, kind: ErrorKind| RotationError {
            secret: secret.to_string(),
            step: event.step.clone(),
            kind,
        };
        let meta = self
            .store
            .describe(&event.secret_id)
            .await
            .map_err(|e| fail(&event.secret_id, e.into()))?;
        let ctx = StepContext { event, meta };
        let outcome = match self.gate(&ctx) {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => match event.step.parse::<Step>() {
                Ok(Step::CreateSecret) => self.create_secret(&ctx).await,
                Ok(Step::SetSecret) => self.set_secret(&ctx).await,
                Ok(Step::TestSecret) => self.test_secret(&ctx).await,
                Ok(Step::FinishSecret) => self.finish_secret(&ctx).await,
                Err(unknown) => Err(ErrorKind::UnknownStep(unknown.0)),
            },
            Err(kind) => Err(kind),
        };
        outcome
            .map(|o| (ctx.arn().to_string(), o))
            .map_err(|kind| fail(ctx.arn(), kind))
    }

    /// The templates' checks, in their order. `Some` means: stop here with success.
    fn gate(&self, ctx: &StepContext<'_>) -> Result<Option<Outcome>, ErrorKind> {
        if ctx.meta.rotation_enabled == Some(false) {
            return Err(ErrorKind::NotEnabled);
        }
        let token = ctx.token();
        if ctx.meta.stages_of(token).is_none() {
            return Err(ErrorKind::TokenNotAVersion {
                token: token.to_string(),
            });
        }
        if ctx.meta.has_stage(token, AWSCURRENT) {
            return Ok(Some(Outcome::AlreadyCurrent));
        }
        if !ctx.meta.has_stage(token, AWSPENDING) {
            return Err(ErrorKind::TokenNotPending {
                token: token.to_string(),
            });
        }
        Ok(None)
    }

    /// Reads and parses the version labelled `stage`; `Ok(None)` when there is none.
    async fn read_stage(
        &self,
        ctx: &StepContext<'_>,
        stage: &'static str,
    ) -> Result<Option<SecretJson>, ErrorKind> {
        let version = if stage == AWSPENDING {
            Some(ctx.token())
        } else {
            ctx.meta.version_with(stage)
        };
        let Some(version) = version else {
            return Ok(None);
        };
        match self.store.get_value(ctx.arn(), version, stage).await? {
            Some(text) => SecretJson::parse(&text)
                .map(Some)
                .map_err(ErrorKind::field(stage)),
            None => Ok(None),
        }
    }

    async fn require_stage(
        &self,
        ctx: &StepContext<'_>,
        stage: &'static str,
    ) -> Result<SecretJson, ErrorKind> {
        let hint = if stage == AWSPENDING {
            " (createSecret has not run for this token)"
        } else {
            ""
        };
        self.read_stage(ctx, stage)
            .await?
            .ok_or(ErrorKind::NoValue { stage, hint })
    }

    fn strategy(&self, secret: &SecretJson, stage: &'static str) -> Result<Strategy, ErrorKind> {
        self.strategy_for(secret).map_err(ErrorKind::field(stage))
    }

    async fn create_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
        if self.read_stage(ctx, AWSPENDING).await?.is_some() {
            return Ok(Outcome::PendingExists);
        }
        let current = self.require_stage(ctx, AWSCURRENT).await?;
        // Refuse to copy a secret that could never log in.
        current
            .credentials()
            .map_err(ErrorKind::field(AWSCURRENT))?;
        let mut pending = current.clone();
        if self.strategy(&current, AWSCURRENT)? == Strategy::AlternatingUsers {
            let username = current.username().map_err(ErrorKind::field(AWSCURRENT))?;
            pending = pending.with_str("username", &alternate_username(username)?);
        }
        let password = self.store.random_password(&self.policy).await?;
        let pending = pending.with_str("password", password.expose());
        self.store
            .put_pending(
                ctx.arn(),
                ctx.token(),
                &pending.to_json_string(),
                ctx.event.rotation_token.as_deref(),
            )
            .await?;
        Ok(Outcome::PendingCreated)
    }

    async fn set_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
        let pending = self.require_stage(ctx, AWSPENDING).await?;
        let pending_creds = pending
            .credentials()
            .map_err(ErrorKind::field(AWSPENDING))?;
        let pending_error = match self.target.connect(&pending_creds).await {
            Ok(_) => return Ok(Outcome::PasswordAlreadySet),
            Err(e) => e,
        };
        let current = self.require_stage(ctx, AWSCURRENT).await?;
        match self.strategy(&current, AWSCURRENT)? {
            Strategy::SingleUser => {
                self.set_single_user(ctx, &pending_creds, pending_error, &current)
                    .await
            }
            Strategy::AlternatingUsers => {
                self.set_alternating(&pending_creds, &pending, &current)
                    .await
            }
        }
    }

    /// setSecret for alternating users: PENDING's user must be CURRENT's alternate on the same
    /// host, CURRENT must log in, and the master (same server, or the primary of CURRENT's read
    /// replica / Aurora reader) creates the alternate or changes its password.
    async fn set_alternating(
        &self,
        pending: &DbCredentials,
        pending_json: &SecretJson,
        current: &SecretJson,
    ) -> Result<Outcome, ErrorKind> {
        let current_creds = current
            .credentials()
            .map_err(ErrorKind::field(AWSCURRENT))?;
        let expected = alternate_username(&current_creds.username)?;
        if pending.username != expected {
            return Err(ErrorKind::NotAlternate {
                current: current_creds.username.clone(),
                pending: pending.username.clone(),
                expected,
            });
        }
        require_same(AWSPENDING, "host", &current_creds.host, &pending.host)?;
        // Only a credential that works is rotated: this keeps a caller from using the master
        // to take over a user it cannot log in as (the templates' confused-deputy check).
        match self.target.connect(&current_creds).await {
            Ok(session) => drop(session),
            Err(e) => {
                return Err(ErrorKind::CurrentLoginFailed {
                    reason: e.to_string(),
                })
            }
        }
        let master = self.load_master(current).await?;
        match self.master_relation(&current_creds, &master).await? {
            None => {}
            Some(relation) if relation.is_accepted() => {
                tracing::info!(
                    master_secret = %master.arn,
                    relation = %relation.describe(),
                    "AWSCURRENT's host is a replica of the master's database"
                );
            }
            Some(relation) => {
                return Err(ErrorKind::MasterElsewhere {
                    master: master.arn.clone(),
                    current_host: format!("{}:{}", current_creds.host, current_creds.port),
                    master_host: format!("{}:{}", master.credentials.host, master.credentials.port),
                    origin: master.origin(),
                    reason: relation.describe(),
                })
            }
        }
        let mut session = self
            .target
            .connect(&master.credentials)
            .await
            .map_err(|e| ErrorKind::MasterLoginFailed {
                master: master.arn.clone(),
                reason: e.to_string(),
            })?;
        let shared_owner = self
            .shared_owner_for(pending_json)
            .map_err(ErrorKind::field(AWSPENDING))?;
        let pair = user_pair(&current_creds.username)?;
        let act_as = shared_owner.then(|| ActAs {
            clone: &pair.0,
            owner: &pair.1,
        });
        let change = session
            .ensure_alternate(&AlternateUser {
                current: &current_creds.username,
                pending: &pending.username,
                password: &pending.password,
                act_as,
            })
            .await?;
        Ok(match change {
            AlternateChange::Created => Outcome::UserCreated,
            AlternateChange::PasswordChanged => Outcome::PasswordSet,
        })
    }

    /// Reads the master secret named by `masterarn` in `user_secret` (AWSCURRENT). An RDS-managed
    /// master secret (only `username` and `password`) gets host, port and engine from RDS through
    /// its `aws:rds:primary…Arn` tag. The user's `dbname` is used when it has one.
    pub async fn load_master(&self, user_secret: &SecretJson) -> Result<MasterSecret, ErrorKind> {
        let arn = user_secret
            .master_arn()
            .map_err(ErrorKind::field(AWSCURRENT))?
            .filter(|arn| !arn.is_empty())
            .ok_or(ErrorKind::Field {
                stage: AWSCURRENT,
                source: FieldError::Missing("masterarn"),
            })?
            .to_string();
        let master_error = |detail: String| ErrorKind::MasterSecret {
            master: arn.clone(),
            detail,
        };
        let text = self
            .store
            .get_stage_value(&arn, AWSCURRENT)
            .await
            .map_err(|e| master_error(e.to_string()))?
            .ok_or_else(|| master_error("it has no AWSCURRENT value".into()))?;
        let field_error = |hint: &'static str| {
            let master = arn.clone();
            move |source| ErrorKind::MasterField {
                master,
                source,
                hint,
            }
        };
        let mut json = SecretJson::parse(&text).map_err(field_error(""))?;
        let mut resource = None;
        if json.is_username_password_only() {
            let meta = self
                .store
                .describe(&arn)
                .await
                .map_err(|e| master_error(e.to_string()))?;
            let Some(found) = RdsResource::from_tags(&meta.tags) else {
                return Err(ErrorKind::MasterField {
                    master: arn.clone(),
                    source: FieldError::Missing("host"),
                    hint: " (it holds only username and password and has no \
                           aws:rds:primaryDBInstanceArn or aws:rds:primaryDBClusterArn tag to \
                           look the database up with; add engine, host and port)",
                });
            };
            let endpoint = self.topology.endpoint_of(&found).await?;
            json = json
                .with_str("engine", &endpoint.engine)
                .with_str("host", &endpoint.host)
                .with_value("port", endpoint.port.into());
            resource = Some(found);
        }
        if let Some(dbname) = user_secret
            .optional_str("dbname")
            .map_err(ErrorKind::field(AWSCURRENT))?
        {
            json = json.with_str("dbname", dbname);
        }
        let credentials = json.credentials().map_err(field_error(""))?;
        Ok(MasterSecret {
            arn,
            credentials,
            resource,
        })
    }

    /// `None` when the master is on the user's server; else how RDS relates the two.
    pub async fn master_relation(
        &self,
        user: &DbCredentials,
        master: &MasterSecret,
    ) -> Result<Option<Relation>, ErrorKind> {
        if same_server(user, &master.credentials) {
            return Ok(None);
        }
        let relation = self
            .topology
            .relation(
                &user.host,
                MasterLocation {
                    host: &master.credentials.host,
                    resource: master.resource.as_ref(),
                },
            )
            .await?;
        Ok(Some(relation))
    }

    /// The role AWSPENDING's login acts as: its own, or the original's under the shared-owner
    /// opt-in when AWSPENDING is the `_clone` user.
    fn expected_role(&self, pending: &SecretJson, username: &str) -> Result<String, ErrorKind> {
        if self.strategy(pending, AWSPENDING)? != Strategy::AlternatingUsers
            || !self
                .shared_owner_for(pending)
                .map_err(ErrorKind::field(AWSPENDING))?
        {
            return Ok(username.to_string());
        }
        let (clone, original) = user_pair(username)?;
        Ok(if clone == username {
            original
        } else {
            username.to_string()
        })
    }

    async fn set_single_user(
        &self,
        ctx: &StepContext<'_>,
        pending: &DbCredentials,
        pending_error: crate::ConnectError,
        current: &SecretJson,
    ) -> Result<Outcome, ErrorKind> {
        let current_creds = current
            .credentials()
            .map_err(ErrorKind::field(AWSCURRENT))?;
        require_same(
            AWSPENDING,
            "username",
            &current_creds.username,
            &pending.username,
        )?;
        require_same(AWSPENDING, "host", &current_creds.host, &pending.host)?;

        let mut attempts = vec![format!("AWSPENDING ({pending_error})")];
        let mut session = match self.target.connect(&current_creds).await {
            Ok(session) => Some(session),
            Err(e) => {
                attempts.push(format!("AWSCURRENT ({e})"));
                None
            }
        };
        if session.is_none() {
            session = self
                .login_previous(ctx, &current_creds, pending, &mut attempts)
                .await?;
        }
        let Some(mut session) = session else {
            return Err(ErrorKind::LoginFailed {
                attempts: attempts.join(", "),
            });
        };
        session
            .set_password(&pending.username, &pending.password)
            .await?;
        Ok(Outcome::PasswordSet)
    }

    /// Logs in with AWSPREVIOUS (with AWSCURRENT's TLS setting, as the templates do), after
    /// checking its user and host match.
    async fn login_previous(
        &self,
        ctx: &StepContext<'_>,
        current: &DbCredentials,
        pending: &DbCredentials,
        attempts: &mut Vec<String>,
    ) -> Result<Option<Box<dyn TargetSession>>, ErrorKind> {
        let Some(previous) = self.read_stage(ctx, AWSPREVIOUS).await? else {
            attempts.push("AWSPREVIOUS (no such version)".into());
            return Ok(None);
        };
        let mut previous = previous
            .credentials()
            .map_err(ErrorKind::field(AWSPREVIOUS))?;
        require_same(
            AWSPREVIOUS,
            "username",
            &pending.username,
            &previous.username,
        )?;
        require_same(AWSPREVIOUS, "host", &pending.host, &previous.host)?;
        previous.tls = current.tls;
        match self.target.connect(&previous).await {
            Ok(session) => Ok(Some(session)),
            Err(e) => {
                attempts.push(format!("AWSPREVIOUS ({e})"));
                Ok(None)
            }
        }
    }

    async fn test_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
        let pending = self.require_stage(ctx, AWSPENDING).await?;
        let creds = pending
            .credentials()
            .map_err(ErrorKind::field(AWSPENDING))?;
        let mut session =
            self.target
                .connect(&creds)
                .await
                .map_err(|e| ErrorKind::LoginFailed {
                    attempts: format!("AWSPENDING ({e})"),
                })?;
        let (session_user, current_user) = session.login_identity().await?;
        if session_user != creds.username {
            return Err(ErrorKind::WrongSessionUser {
                actual: session_user,
                expected: creds.username,
            });
        }
        let expected = self.expected_role(&pending, &creds.username)?;
        if current_user != expected {
            return Err(ErrorKind::WrongUser {
                actual: current_user,
                expected,
            });
        }
        Ok(Outcome::Tested)
    }

    async fn finish_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
        let current = ctx.meta.version_with(AWSCURRENT);
        if current == Some(ctx.token()) {
            return Ok(Outcome::AlreadyCurrent);
        }
        self.store
            .move_current(ctx.arn(), ctx.token(), current)
            .await?;
        Ok(Outcome::Finished)
    }
}

fn require_same(
    stage: &'static str,
    field: &'static str,
    current: &str,
    other: &str,
) -> Result<(), ErrorKind> {
    if current == other {
        return Ok(());
    }
    // Usernames and hosts are not secret; naming both makes the mistake obvious.
    Err(ErrorKind::Mismatch {
        field,
        stage,
        detail: format!(" (AWSCURRENT has {current:?}, {stage} has {other:?})"),
    })
}
