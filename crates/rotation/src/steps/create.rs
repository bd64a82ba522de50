//! createSecret: stores a new AWSPENDING value, a copy of AWSCURRENT with a new password (and,
//! for alternating users, the alternate user's name).

use super::StepContext;
use crate::alternating::alternate_username;
use crate::error::ErrorKind;
use crate::rotator::{Outcome, Rotator};
use crate::settings::Strategy;
use crate::store::{SecretStore, AWSCURRENT, AWSPENDING};
use crate::target::CredentialTarget;

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    pub(crate) async fn create_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
        // Both versions were read with the gate's DescribeSecret, in one round trip; they are taken
        // in the templates' order (an existing AWSPENDING wins), so only a retried createSecret
        // pays for a read it did not need. Nothing is written before.
        if self.read_stage(ctx, AWSPENDING).await?.is_some() {
            return Ok(Outcome::PendingExists);
        }
        let current = self.require_stage(ctx, AWSCURRENT).await?;
        // Refuse to copy a secret that could never log in.
        self.credentials(&current, AWSCURRENT)?;
        let mut pending = current.clone();
        if self.strategy(&current, AWSCURRENT)? == Strategy::AlternatingUsers {
            let username = current.username().map_err(ErrorKind::field(AWSCURRENT))?;
            pending = pending.with_str(
                "username",
                &alternate_username(username, self.target.profile())?,
            );
        }
        let password = self
            .settings
            .policy
            .generate()
            .map_err(|e| ErrorKind::Policy(e.to_string()))?;
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
}
