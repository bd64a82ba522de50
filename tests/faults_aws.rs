//! Faults between the functions and AWS, end to end: the real binaries reach moto through
//! `testkit::faults::AwsFaults`, which throttles, fails with 500s, resets connections and slows
//! answers at a seeded rate. With the functions' bounded SDK retries (`lambda_support::limits`),
//! a rotation and a backup succeed at 20 % of requests failing; at 100 % every step fails with
//! one line naming the call, and nothing is half-changed: versions, labels and the database
//! password stay as they were, no snapshot is complete, and the retry once AWS answers again
//! completes the rotation.
//!
//! `TESTKIT_FAULT_SEED=<n>` replays a run with another seed (each test prints the one it used).

use e2e::backup::{scheduled_event, BackupWorld};
use e2e::{assert_no_secrets, World};
use serde_json::Value;
use testkit::faults::{AwsFaults, Fault, FaultPlan};
use testkit::rotation::{AWSCURRENT, AWSPENDING};

/// The seed of the 20 % runs.
const SEED: u64 = 20_260_901;

/// The secret's state as Secrets Manager and the database see it.
#[derive(Debug, PartialEq)]
struct Snapshot {
    labels: std::collections::BTreeMap<String, Vec<String>>,
    current: Option<(String, Value)>,
    /// AWSPENDING's value; `None` while it has none (a rotation just begun).
    pending: Option<String>,
}

async fn snapshot(world: &World, arn: &str) -> Snapshot {
    let pending = world
        .sm
        .get_secret_value()
        .secret_id(arn)
        .version_stage(AWSPENDING)
        .send()
        .await
        .ok()
        .and_then(|out| out.secret_string().map(str::to_string));
    Snapshot {
        labels: world.labels(arn).await,
        current: world.stage(arn, AWSCURRENT).await,
        pending,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotations_ride_out_transient_faults_and_fail_cleanly_when_aws_keeps_failing() {
    let world = World::start().await;
    let initial = "initial-Password-1";
    let arn = world.role_with_secret("app", initial).await;
    let faults = AwsFaults::start(world.moto.socket_addr(), FaultPlan::none()).await;
    let endpoint = faults.endpoint();
    let lambda = world
        .rotation_lambda(&[("AWS_ENDPOINT_URL", endpoint.as_str())])
        .await;

    // 100 % of every call from the start: createSecret fails at its first call, the gate's
    // DescribeSecret, naming it; nothing changed.
    let before = snapshot(&world, &arn).await;
    let token = world.begin_rotation(&arn).await;
    let before_token = snapshot(&world, &arn).await;
    faults.set_plan(FaultPlan::new(1.0, &Fault::FAILING, SEED));
    let err = lambda.step("createSecret", &arn, &token).unwrap_err();
    let message = err.error_message.clone();
    assert!(
        message.starts_with(&format!("createSecret for secret {arn}: "))
            && message.contains("Secrets Manager DescribeSecret failed: "),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    let injected = faults.counts();
    assert_eq!(
        injected.total(),
        injected.requests,
        "every attempt failed: {injected}"
    );
    assert!(
        injected.requests >= 5,
        "the SDK retried (5 attempts per call): {injected}"
    );
    assert_eq!(snapshot(&world, &arn).await, before_token);
    assert!(world.can_login("app", initial).await);
    println!("100 %, createSecret: {message}");

    // 100 % of PutSecretValue only: createSecret reads, then cannot write; AWSPENDING keeps no
    // value and the password is unchanged.
    faults.set_plan(FaultPlan::new(1.0, &Fault::FAILING, SEED).only(&["PutSecretValue"]));
    let err = lambda.step("createSecret", &arn, &token).unwrap_err();
    assert!(
        err.error_message
            .contains("Secrets Manager PutSecretValue failed: "),
        "{err}"
    );
    assert_eq!(snapshot(&world, &arn).await, before_token);
    assert!(world.can_login("app", initial).await);

    // AWS answers again: createSecret and setSecret succeed; then UpdateSecretVersionStage fails
    // at 100 %: finishSecret fails naming it, AWSCURRENT does not move.
    faults.set_plan(FaultPlan::none());
    for step in ["createSecret", "setSecret", "testSecret"] {
        lambda
            .step(step, &arn, &token)
            .unwrap_or_else(|e| panic!("{step}: {e}"));
    }
    let mid = snapshot(&world, &arn).await;
    faults.set_plan(FaultPlan::new(1.0, &Fault::FAILING, SEED).only(&["UpdateSecretVersionStage"]));
    let err = lambda.step("finishSecret", &arn, &token).unwrap_err();
    assert!(
        err.error_message.starts_with("finishSecret for secret ")
            && err
                .error_message
                .contains("Secrets Manager UpdateSecretVersionStage failed: "),
        "{err}"
    );
    assert_eq!(snapshot(&world, &arn).await, mid);
    assert_eq!(mid.current, before.current, "AWSCURRENT did not move");
    // Secrets Manager retries the step once AWS answers: the rotation completes.
    faults.set_plan(FaultPlan::none());
    lambda.step("finishSecret", &arn, &token).unwrap();
    let rotated = world.password_at(&arn, AWSCURRENT).await;
    assert!(world.can_login("app", &rotated).await);
    assert!(!world.can_login("app", initial).await);

    // 20 % of every request fails or is slow: three rotations succeed, the retries absorb it.
    faults.reset_counts();
    faults.set_plan(FaultPlan::new(0.2, &Fault::ALL, SEED));
    let mut passwords = vec![initial.to_string(), rotated];
    for _ in 0..3 {
        lambda.rotate(&world, &arn).await;
        let password = world.password_at(&arn, AWSCURRENT).await;
        assert!(world.can_login("app", &password).await);
        passwords.push(password);
    }
    let counts = faults.counts();
    println!("20 % faults, seed {}: {counts}", faults.seed());
    for kind in Fault::FAILING {
        assert!(counts.of(kind) > 0, "no {kind:?} injected: {counts}");
    }
    assert_no_secrets(&lambda.output(), &passwords);
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_ride_out_transient_faults_and_leave_nothing_complete_when_aws_keeps_failing() {
    let w = BackupWorld::start().await;
    let names = w.populate("faults/", 12).await;
    let faults = AwsFaults::start(w.moto.socket_addr(), FaultPlan::none()).await;
    let endpoint = faults.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("BACKUP_PART_SIZE", "4KiB"),
    ];
    // The failing runs with two attempts per call: the failure is as clean with eight, only
    // slower (each failing call backs off up to 12.7 s with the defaults).
    let failing = w.lambda(&[env[0], env[1], ("AWS_MAX_ATTEMPTS", "2")]).await;
    let host = w.lambda(&env).await;

    // 100 %: the run fails with one line naming the call; nothing is written.
    faults.set_plan(FaultPlan::new(1.0, &Fault::FAILING, SEED));
    let err = w.invoke(&failing, &scheduled_event()).unwrap_err();
    println!("backup, 100 %: {err}");
    assert!(!err.error_message.contains('\n'), "one line: {err}");
    // The run's first call: the account id, from STS.
    assert!(
        err.error_message.contains("GetCallerIdentity"),
        "the error names the call: {err}"
    );
    assert!(faults.counts().total() >= 2, "{}", faults.counts());
    assert!(w.objects().await.is_empty(), "nothing written");

    // 100 % of S3 writes only: the run lease cannot be written (`crates/backup/src/lambda/lease.rs`),
    // no part and no manifest lands, so verify and latest find no snapshot.
    faults.set_plan(FaultPlan::new(1.0, &Fault::FAILING, SEED).only(&["s3.PUT"]));
    let err = w.invoke(&failing, &scheduled_event()).unwrap_err();
    println!("backup, 100 % of S3 writes: {err}");
    assert!(err.error_message.contains("PutObject"), "{err}");
    assert!(
        !w.objects()
            .await
            .iter()
            .any(|k| k.ends_with("manifest.json")),
        "no manifest: {:?}",
        w.objects().await
    );
    let verify = w.cli(&["verify"], &[]);
    assert_ne!(verify.code, 0, "verify finds no complete snapshot");

    // 20 %: the backup succeeds, and verify (straight to moto) finds it complete and equal.
    faults.reset_counts();
    faults.set_plan(FaultPlan::new(0.2, &Fault::ALL, SEED));
    let summary = w
        .invoke(&host, &scheduled_event())
        .unwrap_or_else(|e| panic!("backup under 20 % faults: {e}\n{}", host.output()));
    assert_eq!(summary["secrets"], names.len(), "{summary}");
    let counts = faults.counts();
    println!("backup, 20 % faults, seed {}: {counts}", faults.seed());
    for kind in Fault::FAILING {
        assert!(counts.of(kind) > 0, "no {kind:?} injected: {counts}");
    }
    w.cli_ok(&["verify"], 0);
    w.capture(&host);
    w.capture(&failing);
    drop((host, failing));
    w.assert_no_values_leaked(&[]);
}
