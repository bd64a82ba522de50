//! finishSecret: moves AWSCURRENT to the token (Secrets Manager moves AWSPREVIOUS itself).

use super::StepContext;
use crate::error::ErrorKind;
use crate::rotator::{Outcome, Rotator};
use crate::store::{SecretStore, AWSCURRENT};
use crate::target::CredentialTarget;

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    pub(crate) async fn finish_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
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
