//! [`Rotator`]: reads the secret's metadata, runs the gate (`src/gate.rs`), dispatches to the
//! step (`src/steps/`), logs one line and tells the [`RotationObserver`].

use crate::error::{ErrorKind, RotationError};
use crate::event::{RotationEvent, Step};
use crate::gate::gate;
use crate::observer::{NoopObserver, RotationObserver, StepNotice};
use crate::policy::PasswordPolicy;
use crate::settings::{RotationSettings, Strategy};
use crate::steps::{reads_of, Prefetched, StepContext};
use crate::store::{SecretStore, AWSCURRENT, AWSPENDING};
use crate::target::CredentialTarget;
use crate::topology::{DbTopology, NoTopology};
use crate::wait::{ReplicaWait, Sleeper};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

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
    /// The outcome's name in logs and in the function's answer.
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
    pub(crate) store: S,
    pub(crate) target: T,
    pub(crate) settings: RotationSettings,
    pub(crate) topology: Arc<dyn DbTopology>,
    observer: Arc<dyn RotationObserver>,
    /// testSecret's wait for a standby, and what it sleeps with (`None`: no waiting).
    pub(crate) replica_wait: Option<(ReplicaWait, Arc<dyn Sleeper>)>,
}

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    /// A rotator with `policy`, no RDS look-ups, no forced strategy, no observer and no replica
    /// wait.
    pub fn new(store: S, target: T, policy: PasswordPolicy) -> Self {
        Rotator {
            store,
            target,
            settings: RotationSettings {
                policy,
                ..RotationSettings::default()
            },
            topology: Arc::new(NoTopology),
            observer: Arc::new(NoopObserver),
            replica_wait: None,
        }
    }

    /// testSecret's bounded wait when AWSPENDING is refused by a standby that may not have
    /// replayed the password change yet (see [`crate::wait`]); `sleeper` does the waiting. The
    /// default, and a disabled `wait`, fail testSecret at once.
    pub fn with_replica_wait(mut self, wait: ReplicaWait, sleeper: Arc<dyn Sleeper>) -> Self {
        self.replica_wait = (!wait.is_disabled()).then_some((wait, sleeper));
        self
    }

    /// testSecret's wait for a standby ([`ReplicaWait::disabled`] unless set).
    pub fn replica_wait(&self) -> ReplicaWait {
        self.replica_wait
            .as_ref()
            .map(|(wait, _)| *wait)
            .unwrap_or_default()
    }

    /// The RDS look-ups (managed master secrets, replicas); without them only a master on the
    /// user's own host is accepted.
    pub fn with_topology(mut self, topology: Arc<dyn DbTopology>) -> Self {
        self.topology = topology;
        self
    }

    /// The shared-owner opt-in for secrets that do not say (`ALTERNATING_SHARED_OWNER`).
    pub fn with_shared_owner_default(mut self, enabled: bool) -> Self {
        self.settings.shared_owner_default = enabled;
        self
    }

    /// Forces one strategy for every secret (`ROTATION_STRATEGY`).
    pub fn with_strategy_override(mut self, strategy: Option<Strategy>) -> Self {
        self.settings.strategy_override = strategy;
        self
    }

    /// Every setting at once (policy, strategy override, shared-owner default).
    pub fn with_settings(mut self, settings: RotationSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Told about every step's outcome or failure (default: [`NoopObserver`]).
    pub fn with_observer(mut self, observer: Arc<dyn RotationObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The password policy.
    pub fn policy(&self) -> &PasswordPolicy {
        &self.settings.policy
    }

    /// The deployment's settings.
    pub fn settings(&self) -> &RotationSettings {
        &self.settings
    }

    /// Handles one event: writes one JSON log line for it (ARN, step, token, outcome, duration;
    /// never a value) and tells the observer.
    pub async fn handle(&self, event: &RotationEvent) -> Result<Outcome, RotationError> {
        let started = Instant::now();
        let strategy = OnceLock::new();
        let result = self.run(event, &strategy).await;
        let duration = started.elapsed();
        let duration_ms = duration.as_secs_f64() * 1000.0;
        let secret = match &result {
            Ok((arn, outcome)) => {
                tracing::info!(
                    secret_arn = %arn,
                    step = %event.step,
                    token = %event.client_request_token,
                    outcome = outcome.as_str(),
                    duration_ms,
                    "rotation step finished"
                );
                arn.as_str()
            }
            Err(error) => {
                tracing::error!(
                    secret_arn = %error.secret,
                    step = %event.step,
                    token = %event.client_request_token,
                    outcome = "error",
                    error_type = error.error_type(),
                    error = %error,
                    duration_ms,
                    "rotation step failed"
                );
                error.secret.as_str()
            }
        };
        self.observer
            .step_finished(&StepNotice {
                secret,
                step: &event.step,
                token: &event.client_request_token,
                result: result.as_ref().map(|(_, outcome)| *outcome),
                duration,
                strategy: strategy.get().copied(),
            })
            .await;
        result.map(|(_, outcome)| outcome)
    }

    /// Describes the secret while reading the versions the step needs (one round trip), runs
    /// the gate, then the step. Nothing is written before the gate has decided; a read the gate
    /// makes useless is dropped. Returns the ARN with the outcome.
    async fn run(
        &self,
        event: &RotationEvent,
        strategy: &OnceLock<Strategy>,
    ) -> Result<(String, Outcome), RotationError> {
        let fail = |secret: &str, kind: ErrorKind| RotationError {
            secret: secret.to_string(),
            step: event.step.clone(),
            kind,
        };
        let (read_pending, read_current) = event
            .step
            .parse::<Step>()
            .map(reads_of)
            .unwrap_or((false, false));
        let id = event.secret_id.as_str();
        let token = event.client_request_token.as_str();
        let (meta, pending, current) = futures::join!(
            self.store.describe(id),
            async {
                if read_pending {
                    Some(self.store.get_value(id, token, AWSPENDING).await)
                } else {
                    None
                }
            },
            async {
                if read_current {
                    Some(self.store.get_stage_value(id, AWSCURRENT).await)
                } else {
                    None
                }
            },
        );
        let meta = meta.map_err(|e| fail(&event.secret_id, e.into()))?;
        let ctx = StepContext {
            event,
            meta,
            prefetched: Prefetched::new(pending, current),
            strategy,
        };
        let outcome = match gate(&ctx.meta, ctx.token()) {
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
}
