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
        self.store
            .move_current(ctx.arn(), ctx.token(), current)
            .await?;
        Ok(Outcome::Finished)
    }
}
