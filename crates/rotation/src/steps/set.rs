//! setSecret: makes the database accept AWSPENDING. Single user: the user changes its own
//! password, logged in with AWSCURRENT, else AWSPREVIOUS, else an unlabelled version newer than
//! AWSCURRENT (what an abandoned rotation leaves behind). Alternating users: the master creates
//! the alternate user or changes its password.

use super::{require_same, StepContext};
use crate::alternating::{load_master, master_relation, UserPair};
use crate::error::ErrorKind;
use crate::rotator::{Outcome, Rotator};
use crate::secret::{DbCredentials, SecretJson};
use crate::settings::Strategy;
use crate::store::{
    unlabelled_newer_than_current, SecretStore, AWSCURRENT, AWSPENDING, AWSPREVIOUS,
    UNLABELLED_VERSIONS_TRIED,
};
use crate::target::{
    ActAs, AlternateChange, AlternateUser, ConnectError, CredentialTarget, TargetSession,
};

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    pub(crate) async fn set_secret(&self, ctx: &StepContext<'_>) -> Result<Outcome, ErrorKind> {
        // Both versions were read with the gate's DescribeSecret, in one round trip; AWSCURRENT's
        // is used only when AWSPENDING does not log in yet (a retried setSecret pays for one read
        // it did not need).
        let pending = self.require_stage(ctx, AWSPENDING).await?;
        let pending_creds = self.credentials(&pending, AWSPENDING)?;
        let pending_error = match self.target.connect(&pending_creds).await {
            Ok(_) => return Ok(Outcome::PasswordAlreadySet),
            Err(e) => e,
        };
        let current = self.require_stage(ctx, AWSCURRENT).await?;
        match self.strategy(&current, AWSCURRENT)? {
            Strategy::SingleUser => {
                self.set_single_user(ctx, &pending_creds, pending_error, &current)
                    .await
            }
            Strategy::AlternatingUsers => {
                self.set_alternating(&pending_creds, &pending, &current)
                    .await
            }
        }
    }

    /// setSecret for alternating users: PENDING's user must be CURRENT's alternate on the same
    /// host, CURRENT must log in, and the master (same server, or the primary of CURRENT's read
    /// replica / Aurora reader) creates the alternate or changes its password.
    async fn set_alternating(
        &self,
        pending: &DbCredentials,
        pending_json: &SecretJson,
        current: &SecretJson,
    ) -> Result<Outcome, ErrorKind> {
        let profile = self.target.profile();
        let current_creds = self.credentials(current, AWSCURRENT)?;
        let pair = UserPair::of(&current_creds.username, profile)?;
        let expected = if pair.original == current_creds.username {
            pair.clone.clone()
        } else {
            pair.original.clone()
        };
        if pending.username != expected {
            return Err(ErrorKind::NotAlternate {
                current: current_creds.username.clone(),
                pending: pending.username.clone(),
                expected,
            });
        }
        require_same(AWSPENDING, "host", &current_creds.host, &pending.host)?;
        // Only a credential that works is rotated: this keeps a caller from using the master
        // to take over a user it cannot log in as (the templates' confused-deputy check).
        match self.target.connect(&current_creds).await {
            Ok(mut session) => {
                require_identity(session.as_mut(), AWSCURRENT, &current_creds.username).await?
            }
            Err(e) => {
                return Err(ErrorKind::CurrentLoginFailed {
                    reason: e.to_string(),
                })
            }
        }
        let master = load_master(&self.store, self.topology.as_ref(), profile, current).await?;
        match master_relation(self.topology.as_ref(), &current_creds, &master).await? {
            None => {}
            Some(relation) if relation.is_accepted() => {
                tracing::info!(
                    master_secret = %master.arn,
                    relation = %relation.describe(),
                    "AWSCURRENT's host is a replica of the master's database"
                );
            }
            Some(relation) => {
                return Err(ErrorKind::MasterElsewhere {
                    master: master.arn.clone(),
                    current_host: format!("{}:{}", current_creds.host, current_creds.port),
                    master_host: format!("{}:{}", master.credentials.host, master.credentials.port),
                    origin: master.origin(),
                    reason: relation.describe(),
                })
            }
        }
        let mut session = self
            .target
            .connect(&master.credentials)
            .await
            .map_err(|e| ErrorKind::MasterLoginFailed {
                master: master.arn.clone(),
                reason: e.to_string(),
            })?;
        let shared_owner = self
            .settings
            .shared_owner_for(pending_json)
            .map_err(ErrorKind::field(AWSPENDING))?;
        let act_as = shared_owner.then(|| ActAs {
            clone: &pair.clone,
            owner: &pair.original,
        });
        let change = session
            .ensure_alternate(&AlternateUser {
                current: &current_creds.username,
                pending: &pending.username,
                password: &pending.password,
                clone: &pair.clone,
                act_as,
            })
            .await?;
        Ok(match change {
            AlternateChange::Created => Outcome::UserCreated,
            AlternateChange::PasswordChanged => Outcome::PasswordSet,
        })
    }

    async fn set_single_user(
        &self,
        ctx: &StepContext<'_>,
        pending: &DbCredentials,
        pending_error: ConnectError,
        current: &SecretJson,
    ) -> Result<Outcome, ErrorKind> {
        let current_creds = self.credentials(current, AWSCURRENT)?;
        require_same(
            AWSPENDING,
            "username",
            &current_creds.username,
            &pending.username,
        )?;
        require_same(AWSPENDING, "host", &current_creds.host, &pending.host)?;

        let mut attempts = vec![format!("AWSPENDING ({pending_error})")];
        let mut stage = AWSCURRENT;
        let mut session = match self.target.connect(&current_creds).await {
            Ok(session) => Some(session),
            Err(e) => {
                attempts.push(format!("AWSCURRENT ({e})"));
                None
            }
        };
        if session.is_none() {
            stage = AWSPREVIOUS;
            session = self
                .login_previous(ctx, &current_creds, pending, &mut attempts)
                .await?;
        }
        if session.is_none() {
            stage = UNLABELLED;
            session = self
                .login_unlabelled(ctx, &current_creds, pending, &mut attempts)
                .await?;
        }
        let Some(mut session) = session else {
            return Err(ErrorKind::LoginFailed {
                attempts: attempts.join(", "),
            });
        };
        // The session must be the user's own before it changes "its" password: a proxy or pooler
        // that maps logins to another user would otherwise change someone else's.
        require_identity(session.as_mut(), stage, &pending.username).await?;
        session
            .set_password(&pending.username, &pending.password)
            .await?;
        Ok(Outcome::PasswordSet)
    }

    /// Logs in with AWSPREVIOUS (with AWSCURRENT's TLS setting, as the templates do), after
    /// checking its user and host match. A malformed AWSPREVIOUS (not JSON, a field missing or
    /// invalid) is treated as absent, as the templates do, and logged (field name only).
    async fn login_previous(
        &self,
        ctx: &StepContext<'_>,
        current: &DbCredentials,
        pending: &DbCredentials,
        attempts: &mut Vec<String>,
    ) -> Result<Option<Box<dyn TargetSession>>, ErrorKind> {
        let previous = match self.read_stage(ctx, AWSPREVIOUS).await {
            Ok(Some(json)) => self.credentials(&json, AWSPREVIOUS),
            Ok(None) => {
                attempts.push("AWSPREVIOUS (no such version)".into());
                return Ok(None);
            }
            Err(e) => Err(e),
        };
        let mut previous = match previous {
            Ok(previous) => previous,
            Err(malformed @ ErrorKind::Field { .. }) => {
                tracing::warn!(
                    secret_arn = %ctx.arn(),
                    error = %malformed,
                    "AWSPREVIOUS is malformed; treated as absent"
                );
                attempts.push(format!("AWSPREVIOUS (malformed, ignored: {malformed})"));
                return Ok(None);
            }
            Err(other) => return Err(other),
        };
        require_same(
            AWSPREVIOUS,
            "username",
            &pending.username,
            &previous.username,
        )?;
        require_same(AWSPREVIOUS, "host", &pending.host, &previous.host)?;
        previous.tls = current.tls;
        match self.target.connect(&previous).await {
            Ok(session) => Ok(Some(session)),
            Err(e) => {
                attempts.push(format!("AWSPREVIOUS ({e})"));
                Ok(None)
            }
        }
    }
}

/// How the error texts name a version without a label.
const UNLABELLED: &str = "an unlabelled version";

impl<S: SecretStore, T: CredentialTarget> Rotator<S, T> {
    /// The last resort of single user's setSecret: the unlabelled versions newer than AWSCURRENT,
    /// newest first, at most [`UNLABELLED_VERSIONS_TRIED`]. An abandoned rotation leaves one: its
    /// setSecret changed the password, then its AWSPENDING label was removed (as AWS's
    /// troubleshooting guide suggests for a stuck rotation), so the only password that logs in
    /// sits in a version no label points at. Each is checked like AWSPREVIOUS (same user and
    /// host, AWSCURRENT's TLS setting); a malformed one, or one of another user or host, is
    /// skipped and logged. The one that logs in is logged by version id. Called only when no
    /// labelled version logs in, so the normal path makes no extra call.
    async fn login_unlabelled(
        &self,
        ctx: &StepContext<'_>,
        current: &DbCredentials,
        pending: &DbCredentials,
        attempts: &mut Vec<String>,
    ) -> Result<Option<Box<dyn TargetSession>>, ErrorKind> {
        let versions = match self.store.list_versions(ctx.arn()).await {
            Ok(versions) => versions,
            Err(e) => {
                attempts.push(format!("unlabelled versions (cannot list them: {e})"));
                return Ok(None);
            }
        };
        let candidates = unlabelled_newer_than_current(&versions, UNLABELLED_VERSIONS_TRIED);
        if candidates.is_empty() {
            attempts.push("unlabelled versions newer than AWSCURRENT (none)".into());
            return Ok(None);
        }
        for id in candidates {
            let text = match self.store.get_version_value(ctx.arn(), id).await {
                Ok(Some(text)) => text,
                Ok(None) => {
                    attempts.push(format!("unlabelled version {id} (no value)"));
                    continue;
                }
                Err(e) => {
                    attempts.push(format!("unlabelled version {id} (cannot read it: {e})"));
                    continue;
                }
            };
            let parsed =
                SecretJson::parse(&text).and_then(|json| json.credentials(self.target.profile()));
            let mut candidate = match parsed {
                Ok(candidate) => candidate,
                Err(e) => {
                    let malformed = ErrorKind::field(UNLABELLED)(e);
                    tracing::warn!(
                        secret_arn = %ctx.arn(),
                        version_id = %id,
                        error = %malformed,
                        "unlabelled version is malformed; skipped"
                    );
                    attempts.push(format!(
                        "unlabelled version {id} (malformed, skipped: {malformed})"
                    ));
                    continue;
                }
            };
            if let Err(mismatch) = require_same(
                UNLABELLED,
                "username",
                &pending.username,
                &candidate.username,
            )
            .and_then(|()| require_same(UNLABELLED, "host", &pending.host, &candidate.host))
            {
                tracing::warn!(
                    secret_arn = %ctx.arn(),
                    version_id = %id,
                    error = %mismatch,
                    "unlabelled version is for another user or host; skipped"
                );
                attempts.push(format!("unlabelled version {id} (skipped: {mismatch})"));
                continue;
            }
            candidate.tls = current.tls;
            match self.target.connect(&candidate).await {
                Ok(session) => {
                    tracing::warn!(
                        secret_arn = %ctx.arn(),
                        version_id = %id,
                        "AWSCURRENT and AWSPREVIOUS do not log in, but the unlabelled version {id} \
                         (left by an abandoned rotation) does: changing the password through it"
                    );
                    return Ok(Some(session));
                }
                Err(e) => attempts.push(format!("unlabelled version {id} ({e})")),
            }
        }
        Ok(None)
    }
}

/// The session logged in as `username` (`session_user`), checked before anything changes.
async fn require_identity(
    session: &mut dyn TargetSession,
    stage: &'static str,
    username: &str,
) -> Result<(), ErrorKind> {
    let identity = session.login_identity().await?;
    if identity.session_user != username {
        return Err(ErrorKind::WrongSessionUser {
            stage,
            consequence: "; nothing was changed",
            actual: identity.session_user,
            expected: username.to_string(),
        });
    }
    Ok(())
}
