//! Rotation errors: each names the secret, the step and what is at fault, never a value.

use crate::secret::FieldError;
use crate::store::StoreError;
use crate::target::TargetError;
use crate::topology::TopologyError;

/// A failed rotation step.
#[derive(Debug, thiserror::Error)]
#[error("{step} for secret {secret}: {kind}")]
pub struct RotationError {
    /// The secret's ARN (or the `SecretId` of the event when it could not be described).
    pub secret: String,
    /// The step as named in the event.
    pub step: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl RotationError {
    /// A short, stable name for the kind of failure (used as the Lambda `errorType`).
    pub fn error_type(&self) -> &'static str {
        self.kind.name()
    }
}

/// What went wrong in a step. Field values are never part of a message; user names, hosts and
/// ARNs are.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    /// The secret's `RotationEnabled` is false.
    #[error("Secret is not enabled for rotation")]
    NotEnabled,
    /// The token is not a version of the secret.
    #[error("Secret version {token} has no stage for rotation")]
    TokenNotAVersion {
        /// The event's token.
        token: String,
    },
    /// The token is a version but not AWSPENDING.
    #[error("Secret version {token} not set as AWSPENDING for rotation")]
    TokenNotPending {
        /// The event's token.
        token: String,
    },
    /// The event's step is not one of the four.
    #[error("invalid step {0:?}: expected createSecret, setSecret, testSecret or finishSecret")]
    UnknownStep(String),
    /// No version carries the label.
    #[error("no version is labelled {stage}")]
    NoVersion {
        /// The staging label.
        stage: &'static str,
    },
    /// The labelled version has no value.
    #[error("the {stage} version has no value{hint}")]
    NoValue {
        /// The staging label.
        stage: &'static str,
        /// What to do, or empty.
        hint: &'static str,
    },
    /// A field of the labelled version is missing or invalid.
    #[error("the {stage} version: {source}")]
    Field {
        /// The staging label.
        stage: &'static str,
        #[source]
        /// The field at fault.
        source: FieldError,
    },
    /// A field of the labelled version differs from AWSCURRENT's.
    #[error("field '{field}' of the {stage} version must equal AWSCURRENT's{detail}")]
    Mismatch {
        /// The field.
        field: &'static str,
        /// The staging label.
        stage: &'static str,
        /// Both values, or what went wrong.
        detail: String,
    },
    /// The alternate user's name would exceed the engine's identifier limit.
    #[error("username {username:?} cannot get the alternate suffix: the result would be {len} bytes, over {engine}'s {limit}-byte limit")]
    NameTooLong {
        /// The user name.
        username: String,
        /// The alternate name's length, in bytes.
        len: usize,
        /// The engine, e.g. PostgreSQL.
        engine: &'static str,
        /// The engine's limit, in bytes.
        limit: usize,
    },
    /// No credential could log in.
    #[error("unable to log into the database with the {attempts}")]
    LoginFailed {
        /// Each credential tried and why it failed.
        attempts: String,
    },
    /// AWSPENDING's session acts as another role than expected.
    #[error("logged in with AWSPENDING but current_user is {actual:?}, expected {expected:?}")]
    WrongUser {
        /// What the session reported.
        actual: String,
        /// What it should be.
        expected: String,
    },
    /// A version logged in as another user than its own (checked before anything changes).
    #[error(
        "logged in with {stage} but session_user is {actual:?}, expected {expected:?}{consequence}"
    )]
    WrongSessionUser {
        /// The staging label whose credentials logged in.
        stage: &'static str,
        /// `; nothing was changed` when found before a change, else empty.
        consequence: &'static str,
        /// What the session reported.
        actual: String,
        /// What it should be.
        expected: String,
    },
    /// finishSecret, single user: AWSPENDING no longer logs in, so AWSCURRENT is not moved.
    #[error("AWSCURRENT was not moved: AWSPENDING no longer logs into the database ({reason}); the password changed after testSecret (another rotation or a manual change?): run setSecret again or cancel this rotation")]
    PendingNoLongerLogsIn {
        /// Why the login failed.
        reason: String,
    },
    /// finishSecret: the database cannot be reached to confirm AWSPENDING, so AWSCURRENT is not
    /// moved (unlike [`ErrorKind::PendingNoLongerLogsIn`], nothing suggests the password changed).
    #[error("AWSCURRENT was not moved: the database cannot be reached to confirm that AWSPENDING logs in ({reason}); nothing was changed: retry finishSecret once the database answers")]
    DatabaseUnreachable {
        /// Why, naming host and port.
        reason: String,
    },
    /// AWSPENDING's user is not AWSCURRENT's alternate.
    #[error("field 'username' of the AWSPENDING version must be the alternate of AWSCURRENT's (AWSCURRENT has {current:?}, so AWSPENDING must have {expected:?}, but has {pending:?})")]
    NotAlternate {
        /// AWSCURRENT's user.
        current: String,
        /// AWSPENDING's user.
        pending: String,
        /// What it should be.
        expected: String,
    },
    /// Alternating users: AWSCURRENT cannot log in, so nothing is changed.
    #[error("refusing to change anything: AWSCURRENT cannot log into the database ({reason}); the alternating-users strategy only rotates a user whose current credentials work")]
    CurrentLoginFailed {
        /// Why.
        reason: String,
    },
    /// The master secret cannot be read.
    #[error("master secret {master}: {detail}")]
    MasterSecret {
        /// The master secret's ARN.
        master: String,
        /// Both values, or what went wrong.
        detail: String,
    },
    /// A field of the master secret is missing or invalid.
    #[error("master secret {master}: {source}{hint}")]
    MasterField {
        /// The master secret's ARN.
        master: String,
        #[source]
        /// The field at fault.
        source: FieldError,
        /// What to do, or empty.
        hint: &'static str,
    },
    /// The master secret cannot log in.
    #[error("unable to log into the database with the master secret {master} ({reason})")]
    MasterLoginFailed {
        /// The master secret's ARN.
        master: String,
        /// Why.
        reason: String,
    },
    /// The master's server is neither the user's nor its primary.
    #[error("AWSCURRENT's server {current_host} is neither the server of master secret {master} ({master_host}{origin}) nor a replica of it that RDS knows (a read replica of its instance; an Aurora reader or custom endpoint of its cluster; a secondary cluster of its Global Database): {reason}")]
    MasterElsewhere {
        /// The master secret's ARN.
        master: String,
        /// AWSCURRENT's `host:port`.
        current_host: String,
        /// The master's `host:port`.
        master_host: String,
        /// Where the master's host came from.
        origin: String,
        /// Why.
        reason: String,
    },
    /// testSecret: AWSPENDING is still refused by a standby after the bounded wait; the
    /// password change made on the primary has not been replayed there.
    #[error("AWSPENDING still cannot log into {host}: the replica has not replayed the password change made on the primary (the server is a standby, in recovery, and AWSCURRENT logs in there); refused again on each of {attempts} retries over {waited} s ({reason}); check the replica's replication lag (paused or broken replay), then retry the rotation, or allow a longer replica wait")]
    ReplicaNotReplayed {
        /// The standby's `host:port`.
        host: String,
        /// The retries made after the first refusal.
        attempts: usize,
        /// The total wait, in seconds (`30`, `2.5`).
        waited: String,
        /// The last refusal.
        reason: String,
    },
    /// An RDS look-up failed.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// No password can be generated with the deployment's password policy.
    #[error("the password policy: {0}")]
    Policy(String),
    /// The target cannot do what the strategy needs.
    #[error("{0}")]
    Unsupported(String),
    /// A Secrets Manager call failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A database operation failed.
    #[error(transparent)]
    Target(#[from] TargetError),
}

impl ErrorKind {
    /// A short, stable name for the kind of failure (the Lambda `errorType`).
    pub fn name(&self) -> &'static str {
        match self {
            ErrorKind::NotEnabled => "RotationNotEnabled",
            ErrorKind::TokenNotAVersion { .. } => "TokenNotAVersion",
            ErrorKind::TokenNotPending { .. } => "TokenNotPending",
            ErrorKind::UnknownStep(_) => "UnknownStep",
            ErrorKind::NoVersion { .. } => "NoVersion",
            ErrorKind::NoValue { .. } => "NoValue",
            ErrorKind::Field { .. } => "InvalidSecretField",
            ErrorKind::Mismatch { .. } => "SecretMismatch",
            ErrorKind::NameTooLong { .. } => "NameTooLong",
            ErrorKind::LoginFailed { .. } => "LoginFailed",
            ErrorKind::WrongUser { .. } => "WrongUser",
            ErrorKind::WrongSessionUser { .. } => "WrongUser",
            ErrorKind::PendingNoLongerLogsIn { .. } => "PendingLoginFailed",
            ErrorKind::DatabaseUnreachable { .. } => "DatabaseUnreachable",
            ErrorKind::NotAlternate { .. } => "NotAlternateUser",
            ErrorKind::CurrentLoginFailed { .. } => "CurrentLoginFailed",
            ErrorKind::MasterSecret { .. } => "MasterSecretError",
            ErrorKind::MasterField { .. } => "InvalidMasterSecret",
            ErrorKind::MasterLoginFailed { .. } => "MasterLoginFailed",
            ErrorKind::MasterElsewhere { .. } => "MasterHostMismatch",
            ErrorKind::ReplicaNotReplayed { .. } => "ReplicaNotReplayed",
            ErrorKind::Topology(_) => "RdsError",
            ErrorKind::Policy(_) => "PasswordPolicy",
            ErrorKind::Unsupported(_) => "Unsupported",
            ErrorKind::Store(_) => "SecretsManagerError",
            ErrorKind::Target(_) => "DatabaseError",
        }
    }

    /// Wraps a field problem found in the version labelled `stage`.
    pub fn field(stage: &'static str) -> impl FnOnce(FieldError) -> ErrorKind {
        move |source| ErrorKind::Field { stage, source }
    }
}
