//! The observer hook: told once per step, on the "already current" paths too, and on failure,
//! never with a value.

use rotation::testing::{Notice, RotationFixture, INITIAL_PASSWORD};
use rotation::{Outcome, Step, Strategy, AWSPENDING};

fn fixture() -> RotationFixture {
    RotationFixture::single_user()
}

#[tokio::test]
async fn called_once_per_step_with_its_outcome() {
    let f = fixture();
    f.rotate("t1").await;
    let notices = f.observer.notices();
    let expected = [
        (Step::CreateSecret, Outcome::PendingCreated),
        (Step::SetSecret, Outcome::PasswordSet),
        (Step::TestSecret, Outcome::Tested),
        (Step::FinishSecret, Outcome::Finished),
    ];
    assert_eq!(notices.len(), expected.len(), "{notices:?}");
    for (notice, (step, outcome)) in notices.iter().zip(expected) {
        assert_eq!(
            notice,
            &Notice {
                secret: f.arn.clone(),
                step: step.as_str().to_string(),
                token: "t1".into(),
                result: Ok(outcome),
                strategy: Some(Strategy::SingleUser),
            }
        );
    }
}

#[tokio::test]
async fn called_on_the_already_current_paths() {
    let f = fixture();
    f.rotate("t1").await;
    f.observer.clear();
    // A retried finishSecret (and any other step) after the token became AWSCURRENT: the gate
    // answers, and the observer still hears of it.
    for step in Step::ALL {
        assert_eq!(
            f.step(step.as_str(), "t1").await.unwrap(),
            Outcome::AlreadyCurrent
        );
    }
    let notices = f.observer.notices();
    assert_eq!(notices.len(), 4, "{notices:?}");
    for (notice, step) in notices.iter().zip(Step::ALL) {
        assert_eq!(notice.step, step.as_str());
        assert_eq!(notice.result, Ok(Outcome::AlreadyCurrent));
        assert_eq!(notice.secret, f.arn);
        assert_eq!(notice.strategy, None, "the gate answered before any read");
    }
}

#[tokio::test]
async fn called_on_failure_with_the_error_kind_and_no_value() {
    let f = fixture();
    f.db.add_user("app", "something-else-entirely");
    f.store.begin_rotation(&f.arn, "t1");
    f.step("createSecret", "t1").await.unwrap();
    let err = f.step("setSecret", "t1").await.unwrap_err();
    let notices = f.observer.notices();
    assert_eq!(notices.len(), 2, "{notices:?}");
    let failure = &notices[1];
    assert_eq!(failure.step, "setSecret");
    assert_eq!(failure.token, "t1");
    assert_eq!(failure.secret, f.arn);
    let (error_type, message) = failure.result.clone().unwrap_err();
    assert_eq!(error_type, "LoginFailed");
    assert_eq!(message, err.to_string());
    let pending = f.credentials(AWSPENDING);
    for value in [pending.password.expose(), INITIAL_PASSWORD] {
        assert!(!message.contains(value), "{message}");
    }

    // A secret that cannot even be described is reported under the id asked for.
    f.observer.clear();
    f.rotator
        .handle(&rotation::RotationEvent::new(
            "createSecret",
            "missing",
            "t9",
        ))
        .await
        .unwrap_err();
    let notices = f.observer.notices();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].secret, "missing");
    assert_eq!(
        notices[0].result.clone().unwrap_err().0,
        "SecretsManagerError"
    );
}

#[tokio::test]
async fn the_default_observer_changes_nothing() {
    // A rotator without an observer rotates exactly as one with it.
    let f = fixture();
    let plain =
        fixture().with_rotator(|r| r.with_observer(std::sync::Arc::new(rotation::NoopObserver)));
    assert_eq!(f.rotate("t1").await, plain.rotate("t1").await);
    assert!(plain.observer.notices().is_empty());
}
