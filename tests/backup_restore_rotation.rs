//! Restore that knows about rotation, replicas and regions (issue 10): the real `secrets-backup`
//! CLI (backup, then restore) against moto, one moto for every case.
//!
//! * A secret rotated since the snapshot (its snapshot AWSCURRENT now AWSPREVIOUS, rotation on)
//!   is skipped with the reason in the plan; `--include-rotated` restores it by moving
//!   AWSCURRENT back to the snapshot's version: no version is written (counted). Rotated twice
//!   (the snapshot's version gone, rotation on, a newer AWSCURRENT): skipped too, and put back as
//!   a new version with the flag.
//! * A secret with a rotation in flight (AWSPENDING on another version than AWSCURRENT) is
//!   refused, named, even with `--include-rotated`, and left as it is.
//! * A replica met in a snapshot of its region is reported as skipped; nothing is written there.
//! * A deleted replicated secret is recreated with its replica regions, and with its rotation
//!   configuration only under `--restore-rotation`.
//! * Into another region: a customer KMS key without a `--kms-key-map` entry is refused, naming
//!   the key; with one, the secret is created under the mapped key.
//! * Every resource policy is put with BlockPublicPolicy: a public one is refused by the service
//!   (moto, with testkit's addition); the plan flags a policy that widens access.
//!
//! moto 5.2.5 gaps filled in `crates/testkit/moto/sitecustomize.py`: RotateSecret with
//! RotateImmediately=false, BlockPublicPolicy, GetResourcePolicy on a replica.

use std::time::Instant;

use aws_sdk_secretsmanager::types::{ReplicaRegionType, RotationRulesType};
use e2e::backup::*;
use serde_json::{json, Value};

const OTHER_REGION: &str = "eu-west-1";
const ROTATION_FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:rotate-postgres";
const APP_ROLE: &str = "arn:aws:iam::123456789012:role/app";

/// The outcome of `name` in a restore report.
fn outcome<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["secrets"]
        .as_array()
        .unwrap_or_else(|| panic!("no secrets in {report:#}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {report:#}"))
}

fn first_action(report: &Value, name: &str) -> String {
    outcome(report, name)["actions"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn enable_rotation(w: &BackupWorld, name: &str) {
    w.sm.rotate_secret()
        .secret_id(name)
        .rotation_lambda_arn(ROTATION_FUNCTION)
        .rotation_rules(
            RotationRulesType::builder()
                .automatically_after_days(30)
                .build(),
        )
        .rotate_immediately(false)
        .send()
        .await
        .unwrap_or_else(|e| panic!("RotateSecret {name}: {e:?}"));
}

async fn create(w: &BackupWorld, name: &str) {
    w.sm.create_secret()
        .name(name)
        .secret_string(w.string_value())
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateSecret {name}: {e:?}"));
}

async fn put_policy(w: &BackupWorld, name: &str, policy: Value) {
    w.sm.put_resource_policy()
        .secret_id(name)
        .resource_policy(policy.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutResourcePolicy {name}: {e:?}"));
}

fn grant(principal: Value, condition: Option<Value>) -> Value {
    let mut s = json!({"Effect": "Allow", "Principal": principal,
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"});
    if let Some(c) = condition {
        s["Condition"] = c;
    }
    json!({"Version": "2012-10-17", "Statement": [s]})
}

async fn version_count(w: &BackupWorld, name: &str) -> usize {
    w.sm.list_secret_version_ids()
        .secret_id(name)
        .include_deprecated(true)
        .send()
        .await
        .unwrap()
        .versions()
        .len()
}

/// Description and labels (a rotation in flight has a version without a value: not read).
async fn described(w: &BackupWorld, name: &str) -> (Option<String>, Vec<(String, Vec<String>)>) {
    let d = w.sm.describe_secret().secret_id(name).send().await.unwrap();
    let mut stages: Vec<(String, Vec<String>)> = d
        .version_ids_to_stages()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    stages.sort();
    (d.description().map(String::from), stages)
}

/// Removes the replicas (AWS refuses to delete a primary that has some), then deletes for good.
async fn delete_replicated(w: &BackupWorld, name: &str) {
    w.sm.remove_regions_from_replication()
        .secret_id(name)
        .remove_replica_regions(OTHER_REGION)
        .send()
        .await
        .unwrap();
    w.delete_for_good(name).await;
}

/// The CLI in the other region (the snapshot bucket and key stay in us-east-1).
fn in_other_region<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "--region",
        OTHER_REGION,
        "--destination-region",
        "us-east-1",
    ];
    all.extend_from_slice(args);
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_respects_rotation_replicas_regions_and_policies() {
    let started = Instant::now();
    let w = BackupWorld::start().await;
    let eu = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&w.moto.sdk_config().await)
            .region(aws_sdk_secretsmanager::config::Region::new(OTHER_REGION))
            .build(),
    );
    let eu_kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&w.moto.sdk_config().await)
            .region(aws_sdk_kms::config::Region::new(OTHER_REGION))
            .build(),
    );

    // The secrets, as they are when the snapshots are taken.
    for name in [
        "rot/rotated",
        "rot/twice",
        "rot/inflight",
        "rot/public",
        "rot/narrowed",
    ] {
        create(&w, name).await;
    }
    enable_rotation(&w, "rot/rotated").await;
    enable_rotation(&w, "rot/twice").await;
    enable_rotation(&w, "rot/inflight").await;
    w.sm.create_secret()
        .name("rot/replicated")
        .secret_string(w.string_value())
        .add_replica_regions(ReplicaRegionType::builder().region(OTHER_REGION).build())
        .send()
        .await
        .unwrap();
    enable_rotation(&w, "rot/replicated").await;
    put_policy(&w, "rot/public", grant(json!("*"), None)).await;
    put_policy(&w, "rot/narrowed", grant(json!({"AWS": APP_ROLE}), None)).await;
    let cmk = testkit::vault::create_key(&w.kms, TEST_KEY_DESCRIPTION).await;
    w.sm.create_secret()
        .name("rot/cmk")
        .kms_key_id(&cmk)
        .secret_string(w.string_value())
        .send()
        .await
        .unwrap();
    let before_rotated = w.state("rot/rotated").await.unwrap();

    // Snapshots through the CLI: us-east-1, and the other region (where the replica is).
    w.cli_ok(&["backup", "--name-prefix", "rot/"], 0);
    let eu_backup = w.cli(&in_other_region(&["backup", "--json"]), &[]);
    assert_eq!(
        eu_backup.code, 0,
        "{}\n{}",
        eu_backup.stdout, eu_backup.stderr
    );
    assert_eq!(
        eu_backup.json()["summary"]["secrets"],
        1,
        "{}",
        eu_backup.stdout
    );

    // The replica, met in the snapshot of its region: reported as skipped, nothing written.
    let eu_restore = w.cli(&in_other_region(&["restore", "--apply", "--json"]), &[]);
    assert_eq!(
        eu_restore.code, 0,
        "{}\n{}",
        eu_restore.stdout, eu_restore.stderr
    );
    let eu_report = eu_restore.json();
    assert!(
        first_action(&eu_report, "rot/replicated")
            .starts_with("skip: a replica (its primary is in us-east-1)"),
        "{eu_report:#}"
    );

    // Since the snapshot: a new AWSCURRENT on a rotated secret; a rotation started (and its
    // description edited); the replicated secret deleted; a public policy removed; a policy
    // narrowed by a condition.
    w.put_new_value("rot/rotated", false, &["AWSCURRENT"]).await;
    w.put_new_value("rot/twice", false, &["AWSCURRENT"]).await;
    w.put_new_value("rot/twice", false, &["AWSCURRENT"]).await;
    let rotated_current = w.state("rot/rotated").await.unwrap().labels["AWSCURRENT"].clone();
    let versions_rotated = version_count(&w, "rot/rotated").await;
    w.moto.begin_rotation(&w.sm, "rot/inflight").await;
    w.sm.update_secret()
        .secret_id("rot/inflight")
        .description("edited during the incident")
        .send()
        .await
        .unwrap();
    let inflight = described(&w, "rot/inflight").await;
    delete_replicated(&w, "rot/replicated").await;
    w.sm.delete_resource_policy()
        .secret_id("rot/public")
        .send()
        .await
        .unwrap();
    put_policy(
        &w,
        "rot/narrowed",
        grant(
            json!({"AWS": APP_ROLE}),
            Some(json!({"StringEquals": {"aws:SourceVpce": "vpce-1"}})),
        ),
    )
    .await;

    // The plan: each rule with its reason.
    let dry = w.cli(&["restore", "--filter", "rot/", "--json"], &[]);
    assert_eq!(
        dry.code, 1,
        "a refused secret fails the run: {}",
        dry.stdout
    );
    let plan = dry.json();
    let skipped = first_action(&plan, "rot/rotated");
    assert!(
        skipped.starts_with(&format!(
            "skip: rotated since the snapshot: its AWSCURRENT version {} is now AWSPREVIOUS",
            before_rotated.labels["AWSCURRENT"].0
        )) && skipped.contains("--include-rotated"),
        "{plan:#}"
    );
    // Rotated twice: the snapshot's version is gone, rotation is on and the live AWSCURRENT is
    // newer than the snapshot.
    assert!(
        first_action(&plan, "rot/twice")
            .starts_with("skip: rotation is enabled and the live AWSCURRENT (version "),
        "{plan:#}"
    );
    let refused = outcome(&plan, "rot/inflight");
    assert_eq!(refused["refused"], true, "{plan:#}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("refused: rotation in progress: AWSPENDING is on version"),
        "{plan:#}"
    );
    assert!(
        first_action(&plan, "rot/replicated").starts_with(&format!(
            "recreate with 1 version(s) and its metadata, replicated to {OTHER_REGION}"
        )),
        "{plan:#}"
    );
    assert!(
        !first_action(&plan, "rot/replicated").contains("rotation configured"),
        "{plan:#}"
    );
    assert_eq!(
        first_action(&plan, "rot/public"),
        "put resource policy (WIDENS ACCESS: grants everyone (principal *))"
    );
    assert_eq!(
        first_action(&plan, "rot/narrowed"),
        format!("put resource policy (WIDENS ACCESS: removes the conditions on AWS {APP_ROLE})")
    );
    let text = w.cli(&["restore", "--filter", "rot/"], &[]).stdout;
    assert!(
        text.contains("REFUSED: refused: rotation in progress") && text.contains("WIDENS ACCESS"),
        "{text}"
    );

    // Apply without the flags: the rotated secret is left alone, the in-flight one refused, the
    // public policy refused by the service (BlockPublicPolicy), the rest restored.
    let applied = w.cli(&["restore", "--filter", "rot/", "--apply", "--json"], &[]);
    assert_eq!(applied.code, 1, "{}", applied.stdout);
    let report = applied.json();
    let public = outcome(&report, "rot/public")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        public.starts_with("secret rot/public: put resource policy")
            && public.contains("PublicPolicyException"),
        "{report:#}"
    );
    assert_eq!(w.state("rot/public").await.unwrap().policy, None);
    assert_eq!(
        w.state("rot/rotated").await.unwrap().labels["AWSCURRENT"],
        rotated_current,
        "skipped: untouched"
    );
    assert_eq!(
        described(&w, "rot/inflight").await,
        inflight,
        "refused: untouched"
    );
    assert_eq!(
        w.state("rot/narrowed").await.unwrap().policy,
        Some(grant(json!({"AWS": APP_ROLE}), None))
    );
    let replicated =
        w.sm.describe_secret()
            .secret_id("rot/replicated")
            .send()
            .await
            .unwrap();
    let regions: Vec<&str> = replicated
        .replication_status()
        .iter()
        .filter_map(|r| r.region())
        .collect();
    assert_eq!(
        regions,
        [OTHER_REGION],
        "recreated with its replica regions"
    );
    let replica = eu
        .describe_secret()
        .secret_id("rot/replicated")
        .send()
        .await
        .unwrap();
    assert_eq!(replica.primary_region(), Some("us-east-1"));
    assert_ne!(
        replicated.rotation_enabled(),
        Some(true),
        "rotation is restored only when asked"
    );

    // With --include-rotated and --restore-rotation: the rotated secret's AWSCURRENT moves back
    // to the snapshot's version (no version written); the recreated secret gets its rotation.
    delete_replicated(&w, "rot/replicated").await;
    let applied = w.cli(
        &[
            "restore",
            "--filter",
            "rot/",
            "--apply",
            "--include-rotated",
            "--restore-rotation",
            "--json",
        ],
        &[],
    );
    assert_eq!(applied.code, 1, "rot/inflight and rot/public still fail");
    let report = applied.json();
    assert_eq!(
        first_action(&report, "rot/rotated"),
        format!(
            "move AWSCURRENT back to existing version {} (from {})",
            before_rotated.labels["AWSCURRENT"].0, rotated_current.0
        )
    );
    assert!(
        first_action(&report, "rot/twice").starts_with("put snapshot version "),
        "{report:#}"
    );
    let after = w.state("rot/rotated").await.unwrap();
    assert_eq!(
        after.labels["AWSCURRENT"],
        before_rotated.labels["AWSCURRENT"]
    );
    assert_eq!(after.labels["AWSPREVIOUS"], rotated_current);
    assert_eq!(
        version_count(&w, "rot/rotated").await,
        versions_rotated,
        "moved back, no copy written"
    );
    assert_eq!(outcome(&report, "rot/inflight")["refused"], true);
    let replicated =
        w.sm.describe_secret()
            .secret_id("rot/replicated")
            .send()
            .await
            .unwrap();
    assert_eq!(replicated.rotation_enabled(), Some(true));
    assert_eq!(replicated.rotation_lambda_arn(), Some(ROTATION_FUNCTION));
    assert_eq!(
        replicated
            .rotation_rules()
            .and_then(|r| r.automatically_after_days()),
        Some(30)
    );
    assert_eq!(replicated.replication_status().len(), 1);

    // Into another region: the customer key must be mapped; named when it is not.
    let into_eu = [
        "restore",
        "--snapshot-region",
        "us-east-1",
        "--filter",
        "rot/cmk",
        "--apply",
        "--json",
    ];
    let unmapped = w.cli(&in_other_region(&into_eu), &[]);
    assert_eq!(unmapped.code, 1, "{}", unmapped.stdout);
    let error = outcome(&unmapped.json(), "rot/cmk")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        error,
        format!(
            "refused: secret rot/cmk: KMS key {cmk} (region us-east-1) has no mapping into \
             region {OTHER_REGION}: add --kms-key-map {cmk}=<a key in {OTHER_REGION}>"
        )
    );
    assert!(eu
        .describe_secret()
        .secret_id("rot/cmk")
        .send()
        .await
        .is_err());
    let eu_key = testkit::vault::create_key(&eu_kms, TEST_KEY_DESCRIPTION).await;
    let map = format!("{cmk}={eu_key}");
    let mut mapped_args = into_eu.to_vec();
    mapped_args.extend(["--kms-key-map", map.as_str()]);
    let mapped = w.cli(&in_other_region(&mapped_args), &[]);
    assert_eq!(mapped.code, 0, "{}\n{}", mapped.stdout, mapped.stderr);
    let created = eu
        .describe_secret()
        .secret_id("rot/cmk")
        .send()
        .await
        .unwrap();
    assert_eq!(created.kms_key_id(), Some(eu_key.as_str()));

    w.assert_no_values_leaked(&[]);
    println!(
        "restore rules (rotation, replicas, key map, policies) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
