//! In-memory fakes of every port, one file each, and the shared rotation fixture (cargo feature
//! `testing`). For fast tests of the protocol here and of the crates that build on it.
//!
//! * [`MemoryStore`] (`store.rs`): Secrets Manager's label rules, call counting.
//! * [`MemoryDatabase`] (`target.rs`): users, passwords, roles, standbys whose replay can be
//!   paused, with its engine profile.
//! * [`MemoryTopology`] (`topology.rs`): RDS endpoints and replica relations.
//! * [`RecordingObserver`] (`observer.rs`): remembers every step notice.
//! * [`RecordingSleeper`] (`sleeper.rs`): remembers every wait, and does not wait.
//! * [`RotationFixture`] (`fixture.rs`): a rotator over the fakes and one secret.

mod fixture;
mod observer;
mod sleeper;
mod store;
mod target;
mod topology;

pub use fixture::{
    alternating_secret, master_secret, single_user_secret, RotationFixture, INITIAL_PASSWORD,
    MASTER_ARN, PRIMARY_HOST, REPLICA_HOST, SINGLE_USER_HOST,
};
pub use observer::{Notice, RecordingObserver};
pub use sleeper::RecordingSleeper;
pub use store::MemoryStore;
pub use target::{MemoryAdvice, MemoryDatabase, MEMORY_PROFILE};
pub use topology::MemoryTopology;
