//! An abandoned single-user rotation: setSecret changed the password, then an operator removed
//! the stuck AWSPENDING label (AWS's troubleshooting advice) and rotation started again with a
//! new token. The only password that logs in then sits in a version without a label; the next
//! setSecret finds it among the unlabelled versions newer than AWSCURRENT.

use rotation::testing::{master_secret, single_user_secret, RotationFixture, PRIMARY_HOST};
use rotation::{ErrorKind, Outcome, AWSCURRENT, AWSPENDING, UNLABELLED_VERSIONS_TRIED};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything logged while the guard lives (the tests run on tokio's current-thread runtime).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Rotation `token` runs createSecret and setSecret, then its AWSPENDING label is removed.
/// Returns the password it set (now in a version without a label).
async fn abandon(f: &RotationFixture, token: &str) -> String {
    f.store.begin_rotation(&f.arn, token);
    assert_eq!(
        f.step("createSecret", token).await.unwrap(),
        Outcome::PendingCreated
    );
    let set = f.step("setSecret", token).await.unwrap();
    assert!(
        matches!(set, Outcome::PasswordSet | Outcome::UserCreated),
        "{set:?}"
    );
    let stuck = f.credentials(AWSPENDING).password.expose().to_string();
    f.store.remove_label(&f.arn, token, AWSPENDING);
    assert!(f.store.labels(&f.arn)[token].is_empty());
    stuck
}

/// setSecret of a new rotation `token` (after createSecret; the store counts setSecret's calls
/// only).
async fn set_secret(f: &RotationFixture, token: &str) -> Result<Outcome, rotation::RotationError> {
    f.store.begin_rotation(&f.arn, token);
    f.step("createSecret", token).await.unwrap();
    f.store.reset_calls();
    f.step("setSecret", token).await
}

#[tokio::test]
async fn a_rotation_after_an_abandoned_one_recovers_through_its_unlabelled_version() {
    let f = RotationFixture::single_user();
    let stuck = abandon(&f, "t1").await;
    assert_eq!(f.db.password_of("app").unwrap(), stuck);

    let logs = Logs::default();
    let _guard = logs.capture();
    f.store.reset_calls();
    f.rotate("t2").await;
    let current = f.credentials(AWSCURRENT);
    assert_eq!(f.db.password_of("app").unwrap(), current.password.expose());
    assert_eq!(f.store.labels(&f.arn)["t2"], vec![AWSPENDING, AWSCURRENT]);
    // The fallback lists the versions once, only on this path.
    let lists = f
        .store
        .calls()
        .iter()
        .filter(|c| **c == "ListSecretVersionIds")
        .count();
    assert_eq!(lists, 1);

    let text = logs.text();
    assert!(text.contains("version_id=t1"), "{text}");
    assert!(text.contains("unlabelled version t1"), "{text}");
    for value in [
        stuck.as_str(),
        current.password.expose(),
        "initial-password",
    ] {
        assert!(!text.contains(value), "a password was logged: {text}");
    }
    // The next rotation takes the normal path again.
    f.store.reset_calls();
    f.rotate("t3").await;
    assert!(!f.store.calls().contains(&"ListSecretVersionIds"));
}

#[tokio::test]
async fn at_most_the_newest_unlabelled_versions_are_tried() {
    for decoys in [UNLABELLED_VERSIONS_TRIED - 1, UNLABELLED_VERSIONS_TRIED] {
        let f = RotationFixture::single_user();
        let stuck = abandon(&f, "t1").await;
        // Newer unlabelled versions of the same user whose passwords do not log in.
        for n in 0..decoys {
            f.store.put_version(
                &f.arn,
                &format!("decoy-{n}"),
                &single_user_secret("app", &format!("wrong-password-{n}")),
                &[],
            );
        }
        let result = set_secret(&f, "t2").await;
        if decoys < UNLABELLED_VERSIONS_TRIED {
            assert_eq!(result.unwrap(), Outcome::PasswordSet, "{decoys} decoys");
            let pending = f.credentials(AWSPENDING);
            assert_eq!(f.db.password_of("app").unwrap(), pending.password.expose());
        } else {
            let err = result.unwrap_err();
            assert!(matches!(err.kind, ErrorKind::LoginFailed { .. }), "{err}");
            let text = err.to_string();
            for n in 0..decoys {
                assert!(
                    text.contains(&format!("unlabelled version decoy-{n}")),
                    "{text}"
                );
            }
            assert!(!text.contains("t1"), "t1 is beyond the bound: {text}");
            assert!(!text.contains("wrong-password"), "{text}");
            assert_eq!(f.db.password_of("app").unwrap(), stuck, "nothing changed");
            // One read per candidate tried, no more.
            let reads = f
                .store
                .calls()
                .iter()
                .filter(|c| **c == "GetSecretValue")
                .count();
            assert!(
                reads <= 4 + UNLABELLED_VERSIONS_TRIED,
                "{:?}",
                f.store.calls()
            );
        }
    }
}

#[tokio::test]
async fn an_unlabelled_version_of_another_user_or_host_or_malformed_is_skipped() {
    let f = RotationFixture::single_user();
    f.db.add_user("other", "other-password");
    let stuck = abandon(&f, "t1").await;
    // Newer than t1: another user (whose password logs in), another host, and a malformed one.
    f.store.put_version(
        &f.arn,
        "other-user",
        &single_user_secret("other", "other-password"),
        &[],
    );
    let other_host = serde_json::json!({
        "engine": "postgres", "host": "elsewhere.example", "username": "app",
        "password": stuck,
    });
    f.store
        .put_version(&f.arn, "other-host", &other_host.to_string(), &[]);
    f.store
        .put_version(&f.arn, "malformed", "not json, secret-ish text", &[]);

    let logs = Logs::default();
    let _guard = logs.capture();
    f.rotate("t2").await;
    let current = f.credentials(AWSCURRENT);
    assert_eq!(f.db.password_of("app").unwrap(), current.password.expose());
    assert_eq!(
        f.db.password_of("other").unwrap(),
        "other-password",
        "the other user was not touched"
    );
    let text = logs.text();
    for skipped in ["other-user", "other-host", "malformed"] {
        assert!(text.contains(&format!("version_id={skipped}")), "{text}");
    }
    assert!(text.contains("version_id=t1"), "{text}");
    assert!(!text.contains("other-password"), "{text}");
    assert!(!text.contains("secret-ish"), "{text}");
    assert!(!text.contains(&stuck), "{text}");
}

#[tokio::test]
async fn another_users_version_alone_is_not_used_and_the_step_fails() {
    let f = RotationFixture::single_user();
    f.db.add_user("other", "other-password");
    f.db.add_user("app", "changed-behind-our-back");
    f.store.put_version(
        &f.arn,
        "other-user",
        &single_user_secret("other", "other-password"),
        &[],
    );
    let err = set_secret(&f, "t1").await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::LoginFailed { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("unlabelled version other-user (skipped"),
        "{text}"
    );
    assert_eq!(f.db.password_of("other").unwrap(), "other-password");
    assert_eq!(f.db.password_of("app").unwrap(), "changed-behind-our-back");
}

#[tokio::test]
async fn an_unlabelled_version_older_than_current_is_not_used() {
    let f = RotationFixture::single_user();
    f.rotate("t1").await;
    f.rotate("t2").await;
    // v0 (the initial password) is now unlabelled and older than AWSCURRENT.
    assert!(f.store.labels(&f.arn)["v0"].is_empty());
    f.db.add_user("app", "initial-password");
    let err = set_secret(&f, "t3").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("unlabelled versions newer than AWSCURRENT (none)"),
        "{text}"
    );
    assert_eq!(f.db.password_of("app").unwrap(), "initial-password");
}

#[tokio::test]
async fn alternating_users_after_an_abandoned_rotation_work_through_the_master() {
    let f = RotationFixture::alternating(PRIMARY_HOST, &master_secret(PRIMARY_HOST));
    let stuck = abandon(&f, "t1").await;
    assert_eq!(f.db.password_of("app_clone").unwrap(), stuck);
    f.store.reset_calls();
    f.rotate("t2").await;
    let current = f.credentials(AWSCURRENT);
    assert_eq!(current.username, "app_clone");
    assert_eq!(
        f.db.password_of("app_clone").unwrap(),
        current.password.expose()
    );
    assert!(!f.store.calls().contains(&"ListSecretVersionIds"));
}
