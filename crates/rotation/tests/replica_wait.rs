//! testSecret's bounded wait for a standby that has not replayed the password change yet,
//! against the in-memory fakes and a sleeper that records its waits and never sleeps.

use rotation::testing::{
    master_secret, RecordingSleeper, RotationFixture, PRIMARY_HOST as HOST, REPLICA_HOST as REPLICA,
};
use rotation::{ErrorKind, Outcome, Relation, ReplicaWait, AWSCURRENT, AWSPENDING};
use std::sync::Arc;
use std::time::Duration;

/// Alternating users whose secret names `user_host`, the master on the primary, testSecret
/// waiting `wait` through a recording sleeper; AWSPENDING created.
fn fixture(user_host: &str, wait: ReplicaWait) -> (RotationFixture, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let f = RotationFixture::alternating(user_host, &master_secret(HOST)).with_rotator({
        let sleeper = sleeper.clone();
        move |r| r.with_replica_wait(wait, Arc::new(sleeper))
    });
    (f, sleeper)
}

/// The user's host is a standby of the primary that RDS calls a read replica of it.
fn on_standby(wait: ReplicaWait) -> (RotationFixture, RecordingSleeper) {
    let (f, sleeper) = fixture(REPLICA, wait);
    f.db.add_standby(REPLICA);
    f.topology.set_relation(
        REPLICA,
        HOST,
        Relation::ReadReplica {
            replica: "replica".into(),
            source: "primary".into(),
        },
    );
    (f, sleeper)
}

fn default_wait() -> ReplicaWait {
    ReplicaWait::up_to(ReplicaWait::DEFAULT_TOTAL)
}

/// createSecret, then setSecret while the standby's replay is paused: the clone exists on the
/// primary only.
async fn set_while_paused(f: &RotationFixture) {
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    f.db.pause_replay(REPLICA);
    assert_eq!(
        f.step("setSecret", "t1").await.unwrap(),
        Outcome::UserCreated
    );
}

#[tokio::test]
async fn a_lagging_standby_is_retried_until_it_has_replayed_the_change() {
    let (f, sleeper) = on_standby(default_wait());
    set_while_paused(&f).await;
    // Logins to the standby: AWSPENDING (refused), AWSCURRENT (the standby check), two retries
    // refused; the third retry sees the change.
    f.db.resume_replay_after(REPLICA, 4);
    assert_eq!(f.step("testSecret", "t1").await.unwrap(), Outcome::Tested);
    assert_eq!(sleeper.waits(), default_wait().delays()[..3]);
    f.step("finishSecret", "t1").await.unwrap();
    assert_eq!(f.credentials(AWSCURRENT).username, "app_clone");
}

#[tokio::test]
async fn a_standby_that_does_not_replay_fails_after_the_bounded_wait() {
    let wait = ReplicaWait::up_to(Duration::from_secs(3));
    let (f, sleeper) = on_standby(wait);
    set_while_paused(&f).await;
    let labels = f.store.labels(&f.arn);
    let err = f.step("testSecret", "t1").await.unwrap_err();
    assert_eq!(
        sleeper.waits(),
        [
            Duration::from_millis(500),
            Duration::from_millis(1000),
            Duration::from_millis(1500)
        ]
    );
    assert!(
        matches!(
            &err.kind,
            ErrorKind::ReplicaNotReplayed { attempts: 3, host, waited, .. }
                if host == &format!("{REPLICA}:5432") && waited == "3"
        ),
        "{err:?}"
    );
    assert_eq!(err.error_type(), "ReplicaNotReplayed");
    let message = err.to_string();
    assert!(
        message.contains("the replica has not replayed the password change"),
        "{message}"
    );
    let pending = f.credentials(AWSPENDING);
    assert!(!message.contains(pending.password.expose()), "{message}");
    // Nothing else changed: the labels, the clone's password on the primary.
    assert_eq!(f.store.labels(&f.arn), labels);
    assert_eq!(
        f.db.password_of("app_clone").as_deref(),
        Some(pending.password.expose())
    );

    // Once the standby has replayed, Secrets Manager's retry of the step passes without waiting.
    f.db.resume_replay_after(REPLICA, 0);
    assert_eq!(f.step("testSecret", "t1").await.unwrap(), Outcome::Tested);
    assert_eq!(sleeper.waits().len(), 3);
}

#[tokio::test]
async fn a_refusal_by_a_primary_fails_at_once() {
    let (f, sleeper) = fixture(HOST, default_wait());
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    f.step("setSecret", "t1").await.unwrap();
    // The clone's password changed behind the rotation's back: a wrong AWSPENDING on a primary.
    f.db.add_user("app_clone", "changed-behind-our-back");
    let err = f.step("testSecret", "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::LoginFailed { .. }), "{err}");
    assert!(sleeper.waits().is_empty(), "{:?}", sleeper.waits());
    assert!(!err.to_string().contains("changed-behind-our-back"));
}

#[tokio::test]
async fn single_user_refused_by_a_primary_fails_at_once() {
    let sleeper = RecordingSleeper::new();
    let f = RotationFixture::single_user().with_rotator({
        let sleeper = sleeper.clone();
        move |r| r.with_replica_wait(default_wait(), Arc::new(sleeper))
    });
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    f.step("setSecret", "t1").await.unwrap();
    f.db.add_user("app", "changed-behind-our-back");
    let err = f.step("testSecret", "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::LoginFailed { .. }), "{err}");
    assert!(sleeper.waits().is_empty());
}

#[tokio::test]
async fn without_a_replica_wait_a_lagging_standby_fails_at_once() {
    let (f, sleeper) = on_standby(ReplicaWait::disabled());
    set_while_paused(&f).await;
    let logins = f.db.connects();
    let err = f.step("testSecret", "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::LoginFailed { .. }), "{err}");
    assert!(sleeper.waits().is_empty());
    assert_eq!(f.db.connects(), logins + 1, "only AWSPENDING's own login");
}

#[tokio::test]
async fn a_failure_other_than_authentication_is_not_retried() {
    let (f, sleeper) = on_standby(default_wait());
    set_while_paused(&f).await;
    f.db.fail_tls("invalid peer certificate: UnknownIssuer");
    let err = f.step("testSecret", "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::LoginFailed { .. }), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert!(sleeper.waits().is_empty());
}
