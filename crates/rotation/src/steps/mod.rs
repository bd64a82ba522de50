//! The four steps, one file each, as methods of [`Rotator`]; here what they share: the
//! [`StepContext`], reading a labelled version, and the field comparisons.
//!
//! * `create.rs`: createSecret, a new AWSPENDING value (the alternate user for alternating users).
//! * `set.rs`: setSecret, the database accepts AWSPENDING (single user, or through the master).
//! * `test.rs`: testSecret, AWSPENDING logs in as the expected user and role.
//! * `finish.rs`: finishSecret, AWSCURRENT moves to the token (once AWSPENDING is
//!   confirmed to log in).

mod create;
mod finish;
mod set;
mod test;

use crate::error::ErrorKind;
use crate::event::{RotationEvent, Step};
use crate::rotator::Rotator;
use crate::secret::{DbCredentials, SecretJson};
use crate::settings::Strategy;
use crate::store::{SecretMetadata, SecretStore, StoreError, AWSCURRENT, AWSPENDING};
use crate::target::CredentialTarget;
use std::sync::{Mutex, OnceLock};

/// Everything one step works on: the event, the secret's metadata (one `DescribeSecret`) and the
/// versions read at the same time.
pub(crate) struct StepContext<'a> {
    pub(crate) event: &'a RotationEvent,
    pub(crate) meta: SecretMetadata,
    pub(crate) prefetched: Prefetched,
    /// The strategy, once a step has resolved it (told to the observer).
    pub(crate) strategy: &'a OnceLock<Strategy>,
}

/// A `GetSecretValue` answer read before it was asked for.
type Read = Mutex<Option<Result<Option<String>, StoreError>>>;

/// The versions a step reads, fetched concurrently with the gate's `DescribeSecret` (neither
/// depends on the metadata: AWSPENDING is the event's token, AWSCURRENT is read by its label).
/// Each is used at most once; a second read goes to the store.
#[derive(Default)]
pub(crate) struct Prefetched {
    pending: Read,
    current: Read,
}

/// Which versions `step` reads first: (AWSPENDING, AWSCURRENT).
pub(crate) fn reads_of(step: Step) -> (bool, bool) {
    match step {
        Step::CreateSecret | Step::SetSecret => (true, true),
        Step::TestSecret | Step::FinishSecret => (true, false),
    }
}

impl Prefetched {
    /// Answers already received for AWSPENDING and AWSCURRENT (`None`: not read).
    pub(crate) fn new(
        pending: Option<Result<Option<String>, StoreError>>,
        current: Option<Result<Option<String>, StoreError>>,
    ) -> Self {
        Prefetched {
            pending: Mutex::new(pending),
            current: Mutex::new(current),
        }
    }

    fn take(&self, stage: &str) -> Option<Result<Option<String>, StoreError>> {
        let slot = match stage {
            AWSPENDING => &self.pending,
            AWSCURRENT => &self.current,
            _ => return None,
        };
        slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl StepContext<'_> {
    pub(crate) fn arn(&self) -> &str {
        &self.meta.arn
    }

    pub(crate) fn token(&self) -> &str {
        &self.event.client_request_token
    }
}

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    /// Reads and parses the version labelled `stage`; `Ok(None)` when there is none.
    pub(crate) async fn read_stage(
        &self,
        ctx: &StepContext<'_>,
        stage: &'static str,
    ) -> Result<Option<SecretJson>, ErrorKind> {
        let text = match ctx.prefetched.take(stage) {
            Some(answer) => answer?,
            None => {
                let version = if stage == AWSPENDING {
                    Some(ctx.token())
                } else {
                    ctx.meta.version_with(stage)
                };
                let Some(version) = version else {
                    return Ok(None);
                };
                self.store.get_value(ctx.arn(), version, stage).await?
            }
        };
        let Some(text) = text else {
            return Ok(None);
        };
        let secret = SecretJson::parse(&text).map_err(ErrorKind::field(stage))?;
        // The first version read says which strategy the rotation follows (for the observer;
        // a step that needs the strategy checks it itself).
        if let Ok(strategy) = self.settings.strategy_for(&secret) {
            let _ = ctx.strategy.set(strategy);
        }
        Ok(Some(secret))
    }

    /// Like [`Rotator::read_stage`], but a missing value is an error.
    pub(crate) async fn require_stage(
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

    /// The credentials in the version labelled `stage`, read with the target's engine profile.
    pub(crate) fn credentials(
        &self,
        secret: &SecretJson,
        stage: &'static str,
    ) -> Result<DbCredentials, ErrorKind> {
        secret
            .credentials(self.target.profile())
            .map_err(ErrorKind::field(stage))
    }

    /// The strategy for the version labelled `stage`.
    pub(crate) fn strategy(
        &self,
        secret: &SecretJson,
        stage: &'static str,
    ) -> Result<Strategy, ErrorKind> {
        self.settings
            .strategy_for(secret)
            .map_err(ErrorKind::field(stage))
    }
}

/// `field` of the version labelled `stage` must equal AWSCURRENT's.
pub(crate) fn require_same(
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
