//! testSecret: AWSPENDING logs in, as its own user, acting as the expected role.

use super::StepContext;
use crate::alternating::UserPair;
use crate::error::ErrorKind;
use crate::rotator::{Outcome, Rotator};
use crate::secret::SecretJson;
use crate::settings::Strategy;
use crate::store::{SecretStore, AWSPENDING};
use crate::target::{CredentialTarget, LoginIdentity};

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    pub(crate) async fn test_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
        let pending = self.require_stage(ctx, AWSPENDING).await?;
        let creds = self.credentials(&pending, AWSPENDING)?;
        let mut session =
            self.target
                .connect(&creds)
                .await
                .map_err(|e| ErrorKind::LoginFailed {
                    attempts: format!("AWSPENDING ({e})"),
                })?;
        let LoginIdentity {
            session_user,
            current_user,
        } = session.login_identity().await?;
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

    /// The role AWSPENDING's login acts as: its own, or the original's under the shared-owner
    /// opt-in when AWSPENDING is the `_clone` user.
    fn expected_role(&self, pending: &SecretJson, username: &str) -> Result<String, ErrorKind> {
        if self.strategy(pending, AWSPENDING)? != Strategy::AlternatingUsers
            || !self
                .settings
                .shared_owner_for(pending)
                .map_err(ErrorKind::field(AWSPENDING))?
        {
            return Ok(username.to_string());
        }
        let pair = UserPair::of(username, self.target.profile())?;
        Ok(if pair.clone == username {
            pair.original
        } else {
            username.to_string()
        })
    }
}
