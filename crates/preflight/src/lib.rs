//! Preflight: tells an operator whether a secret can rotate, without changing anything.
//!
//! Each check ends as pass, fail, warn (rotation works, but look), skip (an earlier failure
//! makes it meaningless) or info, with what was found and, when it is not a pass, the fix. Only
//! reads: `DescribeSecret`, `GetSecretValue` (`ListSecretVersionIds` only when neither AWSCURRENT
//! nor AWSPREVIOUS logs in), RDS describe calls, logins and catalog queries.
//! Nothing in a report is a secret value: hosts, user names, ARNs and error texts only.
//!
//! * [`report`]: the report model and its text and JSON rendering.
//! * `checks/`: the checks by topic: `secret.rs` (the secret, its JSON, engine, strategy),
//!   `database.rs` (reachability, TLS, AWSCURRENT's login, a standby host), `alternating.rs`
//!   (the alternate user, the master secret, its server, login and privileges, ownership),
//!   `rotation.rs` (rotation settings, a rotation in progress), `permissions.rs` (what the
//!   execution role needs, the one list of required permissions).
//!
//! The checks run over the rotation core's ports ([`Ports`]); engine facts and fix texts come
//! from the target's profile and advice. Depends on the `rotation` crate only.

mod checks;
pub mod report;

pub use report::{Check, Report, Status};

use rotation::{CredentialTarget, DbTopology, ReplicaWait, RotationSettings, SecretStore};

/// What the preflight runs against: the same ports and settings as the rotator.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// Secrets Manager.
    pub store: &'a dyn SecretStore,
    /// The database.
    pub target: &'a dyn CredentialTarget,
    /// The RDS look-ups.
    pub topology: &'a dyn DbTopology,
    /// The deployment's settings (strategy override, shared-owner default).
    pub settings: &'a RotationSettings,
}

/// What the preflight knows about where it runs.
#[derive(Debug, Clone, Default)]
pub struct PreflightOptions {
    /// The function's own name when it runs as the rotation Lambda (`AWS_LAMBDA_FUNCTION_NAME`).
    pub function_name: Option<String>,
    /// How long testSecret waits for a standby to replay the password change (the rotator's).
    pub replica_wait: ReplicaWait,
}

/// Runs every check for `secret_id`.
pub async fn preflight(ports: &Ports<'_>, secret_id: &str, options: &PreflightOptions) -> Report {
    checks::run(ports, secret_id, options).await
}
