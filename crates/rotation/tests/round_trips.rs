//! How many Secrets Manager round trips a rotation waits for, one after the other: every call of
//! the store is one round trip on a logical clock (no real or paused time, so the count is exact
//! and independent of the machine; and tokio's `test-util` feature, which paused time needs, is
//! not a dev-dependency: it would give the test build another tokio, and a second build of
//! everything above it, from the one the binaries are built with).

use async_trait::async_trait;
use rotation::testing::{MemoryStore, RotationFixture};
use rotation::{
    PasswordPolicy, RotationEvent, Rotator, SecretMetadata, SecretStore, Step, StoreError,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A logical clock of round trips: a call reads the clock when it starts, lets every call made
/// alongside it start too (it yields to the executor), and ends one round trip after its start.
/// Calls made together (joined) end at the same tick; a call made after another ended starts
/// from that end: the clock counts the round trips waited for one after the other.
#[derive(Clone, Default)]
struct RoundTrips(Arc<AtomicUsize>);

impl RoundTrips {
    async fn trip(&self) {
        let start = self.0.load(Ordering::SeqCst);
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        self.0.fetch_max(start + 1, Ordering::SeqCst);
    }

    fn now(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The in-memory store, each call one round trip on [`RoundTrips`].
struct Distant(MemoryStore, RoundTrips);

#[async_trait]
impl SecretStore for Distant {
    async fn describe(&self, secret_id: &str) -> Result<SecretMetadata, StoreError> {
        self.1.trip().await;
        self.0.describe(secret_id).await
    }

    async fn get_value(
        &self,
        secret_id: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        self.1.trip().await;
        self.0.get_value(secret_id, version_id, stage).await
    }

    async fn get_stage_value(
        &self,
        secret_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        self.1.trip().await;
        self.0.get_stage_value(secret_id, stage).await
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        secret_string: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        self.1.trip().await;
        self.0
            .put_pending(secret_id, token, secret_string, rotation_token)
            .await
    }

    async fn move_current(
        &self,
        secret_id: &str,
        to_version: &str,
        from_version: Option<&str>,
    ) -> Result<(), StoreError> {
        self.1.trip().await;
        self.0
            .move_current(secret_id, to_version, from_version)
            .await
    }
}

#[tokio::test]
async fn a_single_user_rotation_waits_for_six_sequential_round_trips() {
    let f = RotationFixture::single_user();
    let clock = RoundTrips::default();
    let rotator = Rotator::new(
        Distant(f.store.clone(), clock.clone()),
        f.db.clone(),
        PasswordPolicy::default(),
    );
    f.store.begin_rotation(&f.arn, "t1");
    f.store.reset_calls();
    let mut waited = Vec::new();
    for step in Step::ALL {
        let started = clock.now();
        rotator
            .handle(&RotationEvent::for_step(step, &f.arn, "t1"))
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        waited.push(clock.now() - started);
    }
    // Every step reads the versions it needs together with the gate's DescribeSecret.
    // createSecret: DescribeSecret + both GetSecretValue (the password is generated locally),
    // then PutSecretValue. setSecret: DescribeSecret + both GetSecretValue. testSecret:
    // DescribeSecret + GetSecretValue. finishSecret: DescribeSecret + GetSecretValue (does
    // AWSPENDING still log in?), then UpdateSecretVersionStage.
    assert_eq!(waited, [2, 1, 1, 2]);
    // Twelve calls in all (the Python template makes fourteen, in ten sequential round trips).
    assert_eq!(f.store.calls().len(), 12, "{:?}", f.store.calls());
}
