//! The Secrets Manager rotation protocol, independent of AWS and of any database.
//!
//! * [`event`]: the event Secrets Manager sends and the four [`Step`]s.
//! * [`secret`]: the secret JSON model (unknown fields and JSON types preserved).
//! * [`policy`]: the password policy read from the environment (same variables as AWS's templates).
//! * [`store`] / [`target`]: the two small traits the steps run against.
//! * [`topology`]: the RDS look-ups of the alternating-users strategy (trait only).
//! * [`rotator`]: the gate and the four steps.
//! * [`memory`]: in-memory implementations of both traits for fast unit tests.
//!
//! No AWS SDK, no SQL: adapters live in the `secrets-manager` and `postgres-target` crates.

pub mod error;
pub mod event;
pub mod memory;
pub mod policy;
pub mod preflight;
pub mod rotator;
pub mod secret;
pub mod store;
pub mod target;
pub mod topology;

pub use error::{ErrorKind, RotationError};
pub use event::{RotationEvent, Step};
pub use policy::{ConfigError, PasswordPolicy};
pub use rotator::{MasterSecret, Outcome, Rotator, Strategy};
pub use secret::{DbCredentials, Engine, FieldError, Password, SecretJson, TlsMode};
pub use store::{SecretMetadata, SecretStore, StoreError, AWSCURRENT, AWSPENDING, AWSPREVIOUS};
pub use target::{
    ActAs, AlternateChange, AlternateUser, ConnectError, CredentialTarget, RolePrivileges,
    TargetError, TargetSession,
};
pub use topology::{
    DbEndpoint, DbTopology, MasterLocation, NoTopology, RdsResource, Relation, TopologyError,
};
