//! The gate and the four rotation steps, generic over a [`SecretStore`] and a [`CredentialTarget`].

use crate::error::{ErrorKind, RotationError};
use crate::event::{RotationEvent, Step};
use crate::policy::PasswordPolicy;
use crate::secret::{DbCredentials, SecretJson};
use crate::store::{SecretMetadata, SecretStore, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
use crate::target::{CredentialTarget, TargetSession};
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
    if let Some(original) = username.strip_suffix(CLONE_SUFFIX) {
        if !original.is_empty() {
            return Ok(original.to_string());
        }
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
        }
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
        match self.strategy_override {
            Some(strategy) => Ok(strategy),
            None => Strategy::for_secret(secret).map_err(ErrorKind::field(stage)),
        }
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
            Strategy::AlternatingUsers => Err(ErrorKind::Unsupported(
                "the alternating-users strategy is not available in this build".into(),
            )),
        }
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
        let user = session.current_user().await?;
        if user != creds.username {
            return Err(ErrorKind::WrongUser {
                actual: user,
                expected: creds.username,
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
