//! finishSecret: moves AWSCURRENT to the token (Secrets Manager moves AWSPREVIOUS itself), once
//! AWSPENDING is confirmed to still log in: moving AWSCURRENT to a value the database no longer
//! accepts (the password was changed again after testSecret) would lock every new reader of the
//! secret out. For a single user this is the only password the user has; for alternating users
//! the check costs the same and protects the same readers.

use super::StepContext;
use crate::error::ErrorKind;
use crate::rotator::{Outcome, Rotator};
use crate::store::{SecretStore, AWSCURRENT, AWSPENDING};
use crate::target::{ConnectError, CredentialTarget};

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    pub(crate) async fn finish_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
        let current = ctx.meta.version_with(AWSCURRENT);
        if current == Some(ctx.token()) {
            return Ok(Outcome::AlreadyCurrent);
        }
        let pending = self.require_stage(ctx, AWSPENDING).await?;
        let creds = self.credentials(&pending, AWSPENDING)?;
        match self.target.connect(&creds).await {
            Ok(_) => {}
            Err(e @ ConnectError::Unreachable { .. }) => {
                return Err(ErrorKind::DatabaseUnreachable {
                    reason: e.to_string(),
                })
            }
            Err(e) => {
                return Err(ErrorKind::PendingNoLongerLogsIn {
                    reason: e.to_string(),
                })
            }
        }
        if let Err(error) = self
            .store
            .move_current(ctx.arn(), ctx.token(), current)
            .await
        {
            // The move may have taken effect with its answer lost (the SDK's retry of a move that
            // had landed is refused: AWSCURRENT is no longer on `current`). One DescribeSecret
            // tells: done if AWSCURRENT is on the token; otherwise, or if it fails too, the
            // move's own error.
            let landed = self
                .store
                .describe(ctx.arn())
                .await
                .is_ok_and(|meta| meta.version_with(AWSCURRENT) == Some(ctx.token()));
            if !landed {
                return Err(error.into());
            }
            tracing::info!(
                version = ctx.token(),
                error = %error,
                "UpdateSecretVersionStage failed, but AWSCURRENT is on the token: the move had \
                 taken effect and only its answer was lost"
            );
        }
        Ok(Outcome::Finished)
    }
}
