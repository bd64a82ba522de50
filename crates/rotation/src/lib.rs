//! The Secrets Manager rotation protocol, independent of AWS and of any database engine.
//!
//! * [`event`]: the event Secrets Manager sends and the four [`Step`]s ([`Step::ALL`]).
//! * [`rotator`]: [`Rotator`], which describes the secret, runs the [`gate`] and dispatches to
//!   the step; [`steps`] holds one file per step (`create`, `set`, `test`, `finish`).
//! * [`alternating`]: the alternating-users strategy's pieces (user pair, master secret, master
//!   resolution, server relation) as functions over the traits, shared with the preflight.
//! * [`secret`]: the secret JSON model (unknown fields and JSON types preserved).
//! * [`policy`]: the password policy (plain data; the Lambda crate reads it from the
//!   environment). [`settings`]: the strategy and the per-deployment settings.
//! * [`store`] / [`target`] / [`topology`]: the ports the steps run against (Secrets Manager, the
//!   database, the RDS look-ups). [`profile`]: what a target declares about its engine.
//! * [`observer`]: [`RotationObserver`], told about every step's outcome or failure.
//! * [`wait`]: the [`Sleeper`] port and testSecret's bounded wait for a standby
//!   ([`ReplicaWait`]).
//! * `testing` (cargo feature `testing`): in-memory fakes of every port and one shared fixture.
//!
//! No AWS SDK, no SQL, no engine facts: adapters live in the `secrets-manager` and
//! `postgres-target` crates, and the `rotate-postgres` crate wires them.

pub mod alternating;
pub mod error;
pub mod event;
pub mod gate;
pub mod observer;
pub mod policy;
pub mod profile;
pub mod rotator;
pub mod secret;
pub mod service;
pub mod settings;
pub mod steps;
pub mod store;
pub mod target;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topology;
pub mod wait;

pub use alternating::{MasterSecret, UserPair, CLONE_SUFFIX};
pub use error::{ErrorKind, RotationError};
pub use event::{RotationEvent, Step};
pub use observer::{NoopObserver, RotationObserver, StepNotice};
pub use policy::PasswordPolicy;
pub use profile::{EngineAdvice, EngineProfile};
pub use rotator::{Outcome, Rotator};
pub use secret::{DbCredentials, FieldError, Password, SecretJson, TlsMode};
pub use service::{Rds, SecretsManager, Service, ServiceError};
pub use settings::{RotationSettings, Strategy};
pub use store::{
    unlabelled_newer_than_current, SecretMetadata, SecretStore, StoreError, VersionEntry,
    AWSCURRENT, AWSPENDING, AWSPREVIOUS, UNLABELLED_VERSIONS_TRIED,
};
pub use target::{
    ActAs, AlternateChange, AlternatePlan, AlternateUser, ConnectError, CredentialTarget,
    LoginIdentity, MissingPrivilege, RolePrivileges, SkippedSetting, TargetError, TargetSession,
};
pub use topology::{
    DbEndpoint, DbTopology, MasterLocation, NoTopology, RdsResource, Relation, TopologyError,
};
pub use wait::{ReplicaWait, Sleeper};
