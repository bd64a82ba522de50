//! testSecret: AWSPENDING logs in, as its own user, acting as the expected role.
//!
//! A standby (read replica, Aurora reader) may refuse AWSPENDING for a moment after setSecret,
//! until it replays the change the master made on the primary. When AWSPENDING's login fails
//! with an authentication error, the step asks the server, logged in with AWSCURRENT (still
//! valid), whether it is a standby; only then does it retry, waiting as the rotator's
//! [`ReplicaWait`](crate::wait::ReplicaWait) says, and logs each retry (attempt, wait; never a
//! value). A refusal by a primary, or any other login failure, fails at once.

use super::StepContext;
use crate::alternating::{same_server, UserPair};
use crate::error::ErrorKind;
use crate::rotator::{Outcome, Rotator};
use crate::secret::{DbCredentials, SecretJson};
use crate::settings::Strategy;
use crate::store::{SecretStore, AWSCURRENT, AWSPENDING};
use crate::target::{ConnectError, CredentialTarget, LoginIdentity, TargetSession};
use crate::wait::seconds;
use std::time::Duration;

/// What AWSCURRENT's session says about AWSPENDING's server.
enum Server {
    /// A standby: the change may not be replayed yet.
    Standby,
    /// Not a standby, or it cannot be told; why (no value).
    NotStandby(String),
}

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    pub(crate) async fn test_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
        let pending = self.require_stage(ctx, AWSPENDING).await?;
        let creds = self.credentials(&pending, AWSPENDING)?;
        let mut session = match self.target.connect(&creds).await {
            Ok(session) => session,
            Err(error) => self.wait_for_replay(ctx, &creds, error).await?,
        };
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

    /// AWSPENDING was refused with `error`. On a standby, retries until it logs in or the
    /// replica wait is used up; anywhere else, fails at once.
    async fn wait_for_replay(
        &self,
        ctx: &StepContext<'_>,
        pending: &DbCredentials,
        error: ConnectError,
    ) -> Result<Box<dyn TargetSession>, ErrorKind> {
        let login_failed = |e: &ConnectError| ErrorKind::LoginFailed {
            attempts: format!("AWSPENDING ({e})"),
        };
        let Some((wait, sleeper)) = &self.replica_wait else {
            return Err(login_failed(&error));
        };
        if !matches!(error, ConnectError::Authentication { .. }) {
            return Err(login_failed(&error));
        }
        let host = format!("{}:{}", pending.host, pending.port);
        if let Server::NotStandby(reason) = self.server_of(ctx, pending).await {
            tracing::info!(
                secret_arn = %ctx.arn(),
                host = %host,
                reason = %reason,
                "AWSPENDING refused and the server is not a standby: failing without waiting"
            );
            return Err(login_failed(&error));
        }
        let delays = wait.delays();
        let mut waited = Duration::ZERO;
        let mut last = error;
        for (index, delay) in delays.iter().enumerate() {
            let attempt = index + 1;
            tracing::warn!(
                secret_arn = %ctx.arn(),
                host = %host,
                attempt,
                of = delays.len(),
                wait_ms = delay.as_millis() as u64,
                "testSecret retry: AWSPENDING refused by a standby that may not have replayed \
                 the password change yet; waiting before the next login"
            );
            sleeper.sleep(*delay).await;
            waited += *delay;
            match self.target.connect(pending).await {
                Ok(session) => {
                    tracing::info!(
                        secret_arn = %ctx.arn(),
                        host = %host,
                        retries = attempt,
                        waited_ms = waited.as_millis() as u64,
                        "AWSPENDING logs in: the standby has replayed the password change"
                    );
                    return Ok(session);
                }
                Err(refused @ ConnectError::Authentication { .. }) => last = refused,
                Err(other) => return Err(login_failed(&other)),
            }
        }
        Err(ErrorKind::ReplicaNotReplayed {
            host,
            attempts: delays.len(),
            waited: seconds(waited),
            reason: last.to_string(),
        })
    }

    /// Whether AWSPENDING's server is a standby, asked with AWSCURRENT (on the same server, and
    /// still valid while the rotation runs).
    async fn server_of(&self, ctx: &StepContext<'_>, pending: &DbCredentials) -> Server {
        let current = match self.read_stage(ctx, AWSCURRENT).await {
            Ok(Some(json)) => self.credentials(&json, AWSCURRENT),
            Ok(None) => return Server::NotStandby("there is no AWSCURRENT value".into()),
            Err(e) => Err(e),
        };
        let current = match current {
            Ok(current) => current,
            Err(e) => return Server::NotStandby(format!("AWSCURRENT cannot be used: {e}")),
        };
        if !same_server(&current, pending) {
            return Server::NotStandby(format!(
                "AWSCURRENT is on another server ({}:{})",
                current.host, current.port
            ));
        }
        let mut session = match self.target.connect(&current).await {
            Ok(session) => session,
            Err(e) => return Server::NotStandby(format!("AWSCURRENT cannot log in either ({e})")),
        };
        match session.is_standby().await {
            Ok(true) => Server::Standby,
            Ok(false) => Server::NotStandby("the server is not in recovery (a primary)".into()),
            Err(e) => Server::NotStandby(format!("cannot tell whether it is a standby: {e}")),
        }
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
