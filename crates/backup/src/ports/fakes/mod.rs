//! In-memory fakes of the ports, one file per port, for the crate's tests and for other crates'
//! tests (cargo feature `testing`). The real adapters (`ports::aws`) are tested against moto in
//! the end-to-end tests.

mod identity;
mod kms;
mod parameters;
mod secrets;
mod store;

pub use identity::FakeIdentity;
pub use kms::{FakeKms, FAKE_KEY_ARN, FAKE_SIGNING_KEY_ARN};
pub use parameters::{FakeParameterVersion, FakeParameters};
pub use secrets::{FakeSecret, FakeSecrets, FakeVersion};
pub use store::{FakeStore, StoredObject};
