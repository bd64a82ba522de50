//! testSecret: AWSPENDING logs in, as its own user, acting as the expected role.

use super::StepContext;
use crate::alternating::UserPair;
use crate::error::ErrorKind;
use crate::rotator::{Outcome, Rotator};
use crate::secret::SecretJson;
use crate::settings::Strategy;
use crate::store::{SecretStore, AWSPENDING};
use crate::target::{CredentialTarget, LoginIdentity, TargetSession};

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
                stage: AWSPENDING,
                consequence: "",
                actual: session_user,
                expected: creds.username,
            });
        }
        let expected = self
            .expected_role(session.as_mut(), &pending, &creds.username)
            .await?;
        if current_user != expected {
            return Err(ErrorKind::WrongUser {
                actual: current_user,
                expected,
            });
        }
        Ok(Outcome::Tested)
    }

    /// The role AWSPENDING's login must act as. A user acts as its own `role` setting when it
    /// has one (`ALTER ROLE … SET role`), else as itself. The `_clone` user of alternating users
    /// acts as the original acts: the original's own `role` setting, else the original under the
    /// shared-owner opt-in, else itself.
    async fn expected_role(
        &self,
        session: &mut dyn TargetSession,
        pending: &SecretJson,
        username: &str,
    ) -> Result<String, ErrorKind> {
        let alternating = self.strategy(pending, AWSPENDING)? == Strategy::AlternatingUsers;
        let clone_of = if alternating {
            let pair = UserPair::of(username, self.target.profile())?;
            (pair.clone == username).then_some(pair.original)
        } else {
            None
        };
        let Some(original) = clone_of else {
            return Ok(session
                .role_setting(username)
                .await?
                .unwrap_or_else(|| username.to_string()));
        };
        if let Some(role) = session.role_setting(&original).await? {
            return Ok(role);
        }
        let shared = self
            .settings
            .shared_owner_for(pending)
            .map_err(ErrorKind::field(AWSPENDING))?;
        Ok(if shared {
            original
        } else {
            username.to_string()
        })
    }
}
