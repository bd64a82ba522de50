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
use e2e::{assert_no_secrets, Lambda, World};
use serde_json::Value;
use testkit::faults::{AwsFaults, Fault, FaultPlan};
use testkit::lambda::LambdaHost;
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

/// A backup world whose function reaches moto through [`AwsFaults`] (no fault planned yet): 12
/// secrets under `prefix`, small parts; `failing` makes two attempts per call (a failure is as
/// clean with eight, only slower: each failing call backs off up to 12.7 s with the defaults),
/// `host` the default eight.
struct FaultyBackup {
    w: BackupWorld,
    names: Vec<String>,
    faults: AwsFaults,
    failing: LambdaHost,
    host: LambdaHost,
}

impl FaultyBackup {
    async fn start(prefix: &str) -> FaultyBackup {
        let w = BackupWorld::start().await;
        let names = w.populate(prefix, 12).await;
        let faults = AwsFaults::start(w.moto.socket_addr(), FaultPlan::none()).await;
        let endpoint = faults.endpoint();
        let env = [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("BACKUP_PART_SIZE", "4KiB"),
        ];
        let failing = w.lambda(&[env[0], env[1], ("AWS_MAX_ATTEMPTS", "2")]).await;
        let host = w.lambda(&env).await;
        FaultyBackup {
            w,
            names,
            faults,
            failing,
            host,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_ride_out_transient_faults_and_leave_nothing_complete_when_aws_keeps_failing() {
    let FaultyBackup {
        w,
        names,
        faults,
        failing,
        host,
    } = FaultyBackup::start("faults/").await;

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

/// The versions of a secret (labelled or not) and their labels, with version ids replaced by
/// what they are to the rotation: `before` (AWSCURRENT before it), `token`, or `other`.
async fn shape(world: &World, arn: &str, before: &str, token: &str) -> Vec<(String, Vec<String>)> {
    let listed = world
        .sm
        .list_secret_version_ids()
        .secret_id(arn)
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    let mut out: Vec<(String, Vec<String>)> = listed
        .versions()
        .iter()
        .map(|v| {
            let id = v.version_id().unwrap_or_default();
            let name = if id == before {
                "before"
            } else if id == token {
                "token"
            } else {
                "other"
            };
            let mut labels = v.version_stages().to_vec();
            labels.sort();
            (name.to_string(), labels)
        })
        .collect();
    out.sort();
    out
}

/// AWSCURRENT's version id.
async fn current_id(world: &World, arn: &str) -> String {
    world.stage(arn, AWSCURRENT).await.expect("AWSCURRENT").0
}

/// One rotation of `arn` through `lambda`; returns the secret's shape after it.
async fn rotate_shape(world: &World, lambda: &Lambda, arn: &str) -> Vec<(String, Vec<String>)> {
    let before = current_id(world, arn).await;
    let token = lambda.rotate(world, arn).await;
    assert_eq!(
        current_id(world, arn).await,
        token,
        "AWSCURRENT on the token"
    );
    shape(world, arn, &before, &token).await
}

#[tokio::test(flavor = "multi_thread")]
async fn rotations_end_as_one_uninterrupted_run_when_answers_are_lost_after_aws_applied_them() {
    use e2e::alternating::{master_json, setup_roles, user_json, APP_PASSWORD};
    let world = World::start().await;
    setup_roles(&world).await;
    let master = world
        .create_secret("rds/master", &master_json(&world))
        .await;
    let alternating = world
        .create_secret("prod/app", &user_json(&world, "app", APP_PASSWORD, &master))
        .await;
    let single = world.role_with_secret("solo", "initial-Password-1").await;
    let faults = AwsFaults::start(world.moto.socket_addr(), FaultPlan::none()).await;
    let endpoint = faults.endpoint();
    let lambda = world
        .rotation_lambda(&[("AWS_ENDPOINT_URL", endpoint.as_str())])
        .await;
    let writes = ["PutSecretValue", "UpdateSecretVersionStage"];

    // An uninterrupted rotation: the shape every rotation below must end in (labels on the new
    // and the previous version; older versions stay, unlabelled).
    let clean = rotate_shape(&world, &lambda, &single).await;
    assert_eq!(clean.len(), 2, "{clean:?}");
    let labelled = |s: &[(String, Vec<String>)]| -> Vec<(String, Vec<String>)> {
        s.iter().filter(|(v, _)| v != "other").cloned().collect()
    };
    // The first attempt of each write takes effect and its answer is lost (reset: single user)
    // or comes after the SDK's 2 s attempt timeout (alternating users): the SDK repeats a write
    // that already happened.
    for (name, arn, kind) in [
        ("single user", &single, Fault::Lost),
        ("alternating users", &alternating, Fault::Late),
    ] {
        faults.reset_counts();
        faults.set_plan(
            FaultPlan::new(1.0, &[kind], SEED)
                .only(&writes)
                .up_to_attempt(1),
        );
        let versions = shape(&world, arn, "", "").await.len();
        let started = std::time::Instant::now();
        let after = rotate_shape(&world, &lambda, arn).await;
        let took = started.elapsed();
        let injected: Vec<String> = faults.injected().into_iter().map(|(op, _)| op).collect();
        println!(
            "{name}, the first answer of each write {kind:?}: rotated in {:.1} s, {injected:?}",
            took.as_secs_f32()
        );
        assert_eq!(
            injected,
            [
                "secretsmanager.PutSecretValue",
                "secretsmanager.UpdateSecretVersionStage"
            ],
            "{name}"
        );
        assert_eq!(
            after.len(),
            versions + 1,
            "{name}: one version more: {after:?}"
        );
        assert_eq!(labelled(&after), labelled(&clean), "{name}: {after:?}");
        assert!(
            after
                .iter()
                .filter(|(v, _)| v == "other")
                .all(|(_, labels)| labels.is_empty()),
            "{name}: {after:?}"
        );
        // Well within the function's 60 s (two late answers: 2 × 2 s).
        assert!(took.as_secs() < 20, "{name}: {took:?}");
        let (_, value) = world.stage(arn, AWSCURRENT).await.unwrap();
        let user = value["username"].as_str().unwrap();
        let password = value["password"].as_str().unwrap();
        assert!(world.can_login(user, password).await, "{name}");
    }

    // 20 % of every request lost after moto applied it: rotations of both strategies succeed.
    faults.reset_counts();
    faults.set_plan(FaultPlan::new(0.2, &[Fault::Lost], SEED));
    for arn in [&single, &alternating] {
        let before = current_id(&world, arn).await;
        let versions = shape(&world, arn, &before, "").await.len();
        let after = rotate_shape(&world, &lambda, arn).await;
        assert_eq!(after.len(), versions + 1, "one version more: {after:?}");
        assert_eq!(labelled(&after), labelled(&clean), "{after:?}");
    }
    let counts = faults.counts();
    println!("20 % lost answers, seed {}: {counts}", faults.seed());
    assert!(counts.of(Fault::Lost) >= 4, "{counts}");

    // Every answer lost, or late: the step fails naming its first call; nothing changed.
    for kind in Fault::APPLIED {
        let token = world.begin_rotation(&single).await;
        let before = snapshot(&world, &single).await;
        faults.reset_counts();
        faults.set_plan(FaultPlan::new(1.0, &[kind], SEED));
        let started = std::time::Instant::now();
        let err = lambda.step("createSecret", &single, &token).unwrap_err();
        let took = started.elapsed();
        println!("100 % {kind:?} ({:.1} s): {err}", took.as_secs_f32());
        assert!(
            err.error_message.starts_with("createSecret for secret ")
                && err
                    .error_message
                    .contains("Secrets Manager DescribeSecret failed: ")
                && !err.error_message.contains('\n'),
            "{err}"
        );
        // The operation timeout (6 s) bounds the call, whatever the attempts.
        assert!(took.as_secs() < 10, "{took:?}");
        faults.set_plan(FaultPlan::none());
        assert_eq!(snapshot(&world, &single).await, before, "{kind:?}");
        if kind == Fault::Lost {
            // Every PutSecretValue answer lost: createSecret fails naming it; the version it
            // wrote is AWSPENDING's, with its value, and the retry goes on from there.
            faults.set_plan(FaultPlan::new(1.0, &[Fault::Lost], SEED).only(&["PutSecretValue"]));
            let err = lambda.step("createSecret", &single, &token).unwrap_err();
            assert!(
                err.error_message
                    .contains("Secrets Manager PutSecretValue failed: "),
                "{err}"
            );
            faults.set_plan(FaultPlan::none());
            let pending = snapshot(&world, &single).await;
            assert_eq!(pending.current, before.current);
            assert!(
                pending.pending.is_some(),
                "AWSPENDING has the value written"
            );
        }
        for step in ["createSecret", "setSecret", "testSecret", "finishSecret"] {
            lambda
                .step(step, &single, &token)
                .unwrap_or_else(|e| panic!("{step}: {e}"));
        }
        assert_eq!(current_id(&world, &single).await, token);
    }
    assert!(
        lambda
            .output()
            .contains("the move had taken effect and only its answer was lost"),
        "finishSecret found its lost move landed"
    );
    let mut passwords = vec![];
    for arn in [&single, &alternating, &master] {
        passwords.push(world.password_at(arn, AWSCURRENT).await);
    }
    assert_no_secrets(&lambda.output(), &passwords);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_ends_as_one_uninterrupted_run_when_answers_are_lost_after_aws_applied_them() {
    let FaultyBackup {
        w,
        names,
        faults,
        failing,
        host,
    } = FaultyBackup::start("lost/").await;

    // Every answer lost: the run fails at its first call, naming it; nothing is written.
    faults.set_plan(FaultPlan::new(1.0, &[Fault::Lost], SEED));
    let err = w.invoke(&failing, &scheduled_event()).unwrap_err();
    println!("backup, 100 % lost answers: {err}");
    assert!(
        err.error_message.contains("GetCallerIdentity") && !err.error_message.contains('\n'),
        "{err}"
    );
    assert!(w.objects().await.is_empty(), "nothing written");

    // The first answer of every S3 write lost (the lease's claim and release, each part, the
    // signature, the manifest: all If-None-Match: *, so each retry is refused), then 20 % of
    // every answer lost, KMS and STS included: each run succeeds with one complete snapshot.
    for plan in [
        FaultPlan::new(1.0, &[Fault::Lost], SEED)
            .only(&["s3.PUT"])
            .up_to_attempt(1),
        FaultPlan::new(0.2, &[Fault::Lost], SEED),
    ] {
        faults.reset_counts();
        faults.set_plan(plan.clone());
        let summary = w
            .invoke(&host, &scheduled_event())
            .unwrap_or_else(|e| panic!("backup under {plan:?}: {e}\n{}", host.output()));
        assert_eq!(summary["secrets"], names.len(), "{summary}");
        let counts = faults.counts();
        let lost_writes = faults
            .injected()
            .iter()
            .filter(|(op, _)| op == "s3.PUT")
            .count();
        println!(
            "backup, {:.0} % lost answers{}, seed {}: {counts}, {lost_writes} of them S3 writes",
            plan.rate * 100.0,
            if plan.only.is_empty() {
                ""
            } else {
                " (the first of each S3 write)"
            },
            faults.seed()
        );
        assert!(counts.of(Fault::Lost) >= 5, "{counts}");
    }
    assert!(
        host.output()
            .contains("a retried write found its own object"),
        "a retried write met its own object"
    );
    faults.set_plan(FaultPlan::none());
    w.cli_ok(&["verify"], 0);
    let list = w.cli_ok(&["list", "--json"], 0).json();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(2),
        "two snapshots: {list:#}"
    );
    // Nothing written twice: each snapshot's folder holds exactly its parts, its signature and
    // its manifest, and the older one verifies too.
    let keys = w.objects().await;
    let manifests: Vec<&String> = keys
        .iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .collect();
    assert_eq!(manifests.len(), 2, "{keys:#?}");
    for manifest_key in manifests {
        let folder = manifest_key.trim_end_matches("manifest.json");
        let manifest: Value = serde_json::from_slice(&w.get_object(manifest_key).await).unwrap();
        assert_eq!(
            manifest["secrets"].as_array().map(Vec::len),
            Some(names.len())
        );
        let parts = manifest["parts"].as_array().unwrap().len();
        let in_folder = keys.iter().filter(|k| k.starts_with(folder)).count();
        assert_eq!(in_folder, parts + 2, "{keys:#?}");
        let id = manifest["snapshotId"].as_str().unwrap();
        w.cli_ok(&["verify", "--snapshot", id], 0);
    }
    w.capture(&host);
    w.capture(&failing);
    drop((host, failing));
    w.assert_no_values_leaked(&[]);
}
