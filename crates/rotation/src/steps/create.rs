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
        // The three reads do not depend on each other: one round trip instead of three. Their
        // results are then taken in the templates' order (an existing AWSPENDING wins), so only a
        // retried createSecret pays for two reads it did not need. Nothing is written before.
        let (pending, current, password) = futures::join!(
            self.read_stage(ctx, AWSPENDING),
            self.require_stage(ctx, AWSCURRENT),
            self.store.random_password(&self.settings.policy),
        );
        if pending?.is_some() {
            return Ok(Outcome::PendingExists);
        }
        let current = current?;
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
        let password = password?;
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
