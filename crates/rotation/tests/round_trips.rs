//! How many Secrets Manager round trips a rotation waits for, one after the other: every call of
//! a store that answers after a fixed latency, on tokio's paused clock (virtual time, so the
//! count is exact and independent of the machine).

use async_trait::async_trait;
use rotation::testing::{MemoryStore, RotationFixture};
use rotation::{
    PasswordPolicy, RotationEvent, Rotator, SecretMetadata, SecretStore, Step, StoreError,
};
use std::time::Duration;
use tokio::time::{sleep, Instant};

const LATENCY: Duration = Duration::from_millis(10);

/// The in-memory store, each call answered after [`LATENCY`].
struct Distant(MemoryStore);

#[async_trait]
impl SecretStore for Distant {
    async fn describe(&self, secret_id: &str) -> Result<SecretMetadata, StoreError> {
        sleep(LATENCY).await;
        self.0.describe(secret_id).await
    }

    async fn get_value(
        &self,
        secret_id: &str,
        version_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        sleep(LATENCY).await;
        self.0.get_value(secret_id, version_id, stage).await
    }

    async fn get_stage_value(
        &self,
        secret_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        sleep(LATENCY).await;
        self.0.get_stage_value(secret_id, stage).await
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        token: &str,
        secret_string: &str,
        rotation_token: Option<&str>,
    ) -> Result<(), StoreError> {
        sleep(LATENCY).await;
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
        sleep(LATENCY).await;
        self.0
            .move_current(secret_id, to_version, from_version)
            .await
    }
}

#[tokio::test(start_paused = true)]
async fn a_single_user_rotation_waits_for_six_sequential_round_trips() {
    let f = RotationFixture::single_user();
    let rotator = Rotator::new(
        Distant(f.store.clone()),
        f.db.clone(),
        PasswordPolicy::default(),
    );
    f.store.begin_rotation(&f.arn, "t1");
    f.store.reset_calls();
    let mut waited = Vec::new();
    for step in Step::ALL {
        let started = Instant::now();
        rotator
            .handle(&RotationEvent::for_step(step, &f.arn, "t1"))
            .await
            .unwrap_or_else(|e| panic!("{step}: {e}"));
        waited.push((started.elapsed().as_millis() / LATENCY.as_millis()) as usize);
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
