//! [`RotationFixture`]: a rotator over the in-memory fakes and one secret, with the helpers
//! every protocol test uses (run a step, rotate, read a stage).

use super::{MemoryDatabase, MemoryStore, MemoryTopology, RecordingObserver, MEMORY_PROFILE};
use crate::error::RotationError;
use crate::event::{RotationEvent, Step};
use crate::policy::PasswordPolicy;
use crate::rotator::{Outcome, Rotator};
use crate::secret::{DbCredentials, SecretJson};
use std::sync::Arc;

/// The host of the single-user fixture's database.
pub const SINGLE_USER_HOST: &str = "db.example.internal";
/// The password `app` starts with in the single-user fixture.
pub const INITIAL_PASSWORD: &str = "initial-password";
/// The host of the alternating-users fixture's database (the primary).
pub const PRIMARY_HOST: &str = "primary.db.internal";
/// Another name of the primary's users, standing for a read replica.
pub const REPLICA_HOST: &str = "replica.db.internal";
/// The master secret's ARN in the alternating-users fixture.
pub const MASTER_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:master-AbCdEf";

/// A single-user secret on [`SINGLE_USER_HOST`], with fields rotation must keep as they are.
pub fn single_user_secret(user: &str, password: &str) -> String {
    serde_json::json!({
        "engine": "postgres",
        "host": SINGLE_USER_HOST,
        "username": user,
        "password": password,
        "port": "5432",
        "custom": {"team": "payments", "n": [1, 2.5, null]},
        "flag": false
    })
    .to_string()
}

/// An alternating-users secret on `host` whose master is [`MASTER_ARN`].
pub fn alternating_secret(host: &str, user: &str, password: &str) -> String {
    serde_json::json!({
        "engine": "postgres",
        "host": host,
        "username": user,
        "password": password,
        "dbname": "app",
        "masterarn": MASTER_ARN,
        "port": 5432,
        "note": ["kept", 1]
    })
    .to_string()
}

/// The master secret's value for a master on `host` (user `master`, password `master-pw`).
pub fn master_secret(host: &str) -> String {
    serde_json::json!({
        "engine": "postgres", "host": host, "username": "master", "password": "master-pw"
    })
    .to_string()
}

/// The fakes, the rotator over them and the secret under test.
pub struct RotationFixture {
    /// The in-memory Secrets Manager.
    pub store: MemoryStore,
    /// The in-memory database.
    pub db: MemoryDatabase,
    /// The in-memory RDS look-ups the rotator uses.
    pub topology: MemoryTopology,
    /// The observer the rotator tells about each step.
    pub observer: RecordingObserver,
    /// The rotator: default policy, `topology`, `observer`.
    pub rotator: Rotator<MemoryStore, MemoryDatabase>,
    /// The ARN of the secret under test.
    pub arn: String,
}

impl RotationFixture {
    /// A rotator over `store`, `db`, a fresh topology and observer, for the secret `arn`.
    pub fn new(store: MemoryStore, db: MemoryDatabase, arn: &str) -> Self {
        let topology = MemoryTopology::new();
        let observer = RecordingObserver::new();
        let rotator = Rotator::new(store.clone(), db.clone(), PasswordPolicy::default())
            .with_topology(Arc::new(topology.clone()))
            .with_observer(Arc::new(observer.clone()));
        RotationFixture {
            store,
            db,
            topology,
            observer,
            rotator,
            arn: arn.to_string(),
        }
    }

    /// User `app` with [`INITIAL_PASSWORD`] and its single-user secret `app` (version `v0`).
    pub fn single_user() -> Self {
        let store = MemoryStore::new();
        let db = MemoryDatabase::new(SINGLE_USER_HOST);
        db.add_user("app", INITIAL_PASSWORD);
        let arn = store.create_secret("app", "v0", &single_user_secret("app", INITIAL_PASSWORD));
        Self::new(store, db, &arn)
    }

    /// Alternating users on [`PRIMARY_HOST`]: user `app` (password `app-pw`, a `search_path`
    /// setting), master `master` with CREATEROLE whose secret holds `master_value`, and `app`'s
    /// secret (version `v0`) on `user_host`.
    pub fn alternating(user_host: &str, master_value: &str) -> Self {
        let store = MemoryStore::new();
        let db = MemoryDatabase::new(PRIMARY_HOST);
        db.add_user("app", "app-pw");
        db.add_creator("master", "master-pw");
        db.set_setting("app", "search_path", "app, public");
        let master = store.create_secret("master", "m0", master_value);
        assert_eq!(master, MASTER_ARN);
        let arn = store.create_secret("app", "v0", &alternating_secret(user_host, "app", "app-pw"));
        Self::new(store, db, &arn)
    }

    /// Changes the rotator (e.g. a forced strategy or another policy).
    pub fn with_rotator(
        mut self,
        change: impl FnOnce(
            Rotator<MemoryStore, MemoryDatabase>,
        ) -> Rotator<MemoryStore, MemoryDatabase>,
    ) -> Self {
        self.rotator = change(self.rotator);
        self
    }

    /// Handles the event for `step` (a wire name, known or not) and `token`.
    pub async fn step(&self, step: &str, token: &str) -> Result<Outcome, RotationError> {
        self.rotator
            .handle(&RotationEvent::new(step, &self.arn, token))
            .await
    }

    /// A whole rotation to `token`: begins it as `RotateSecret` does, then runs every step of
    /// [`Step::ALL`], each of which must succeed. Returns the outcomes in order.
    pub async fn rotate(&self, token: &str) -> Vec<Outcome> {
        self.store.begin_rotation(&self.arn, token);
        let mut outcomes = Vec::new();
        for step in Step::ALL {
            match self.step(step.as_str(), token).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => panic!("{step} failed: {e}"),
            }
        }
        outcomes
    }

    /// The value labelled `stage`, parsed.
    pub fn stage(&self, stage: &str) -> SecretJson {
        let text = self
            .store
            .value_at(&self.arn, stage)
            .unwrap_or_else(|| panic!("a value is labelled {stage}"));
        SecretJson::parse(&text).expect("the value is a JSON object")
    }

    /// The credentials of the value labelled `stage`.
    pub fn credentials(&self, stage: &str) -> DbCredentials {
        self.stage(stage)
            .credentials(&MEMORY_PROFILE)
            .expect("valid credentials")
    }
}
