//! Crash anywhere (issue 9), backup side: the real `backup-lambda` and `secrets-backup` binaries,
//! built with the fail points (`crates/failpoints`), killed (abort) at every hit of every point of
//! the snapshot writer and at the first hit of every point of `restore --apply`, against moto. A
//! traced run first lists the hits.
//!
//! * A backup killed at any hit leaves nothing `list`, `latest` or `verify` takes as complete:
//!   the folder has no manifest (or, killed after the manifest's upload, the snapshot is whole
//!   and verifies); `latest` is still the last whole snapshot and `verify` passes on it.
//! * A `restore --apply` killed at any hit completes when run again, and changes nothing twice:
//!   the versions each existing secret gains equal those of an uninterrupted restore, the
//!   restored state (values behind AWSCURRENT and custom labels, metadata) equals the snapshot's,
//!   and a third run has nothing left to do. A secret whose recreation was cut short after its
//!   CreateSecret (it carries restore's marker tag until the recreation is complete) is finished
//!   by the re-run: its versions, ids and labels (AWSPREVIOUS and custom ones included) equal the
//!   snapshot's, with no extra version, and its rotation configuration (`--restore-rotation`) is
//!   back.
//! * Every `backup.*` and `restore.*` point in the sources is reached (else the test fails).
//!
//! Two worlds (each its own moto, the same secrets) run at once and share the restore kills; the
//! first also kills the backup. Their traced restores must hit the same points, and together they
//! kill at every first hit.

use aws_sdk_secretsmanager::types::Tag;
use e2e::backup::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use testkit::failpoints::{in_sources, names, Hit, Trace};
use testkit::lambda::InvokeError;

/// Secrets of the varied set (see `BackupWorld::create_varied`).
const N: usize = 12;
const PREFIX_NAMES: &str = "fp/svc-";
const ROTATION_FUNCTION: &str = "arn:aws:lambda:us-east-1:123456789012:function:rotate";

fn name(i: usize) -> String {
    format!("{PREFIX_NAMES}{i:03}")
}

fn died(e: &InvokeError) -> bool {
    e.error_type == "Runtime.ExitError"
        && (e.error_message.contains("SIGABRT") || e.error_message.contains("signal: 6"))
}

/// The snapshots `list` reports: id → complete.
fn snapshots(w: &BackupWorld) -> BTreeMap<String, bool> {
    w.cli_ok(&["list", "--json"], 0)
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["complete"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The id of the snapshot `latest` selects.
fn latest(w: &BackupWorld) -> String {
    let shown = w.cli_ok(&["show", "latest", "--json"], 0).json();
    shown["snapshotId"]
        .as_str()
        .or_else(|| shown["head"]["snapshotId"].as_str())
        .unwrap_or_else(|| panic!("no snapshot id in {shown:#}"))
        .to_string()
}

/// Integrity of one snapshot (no live comparison): exit 0.
fn assert_verifies(w: &BackupWorld, id: &str) {
    w.cli_ok(&["verify", "--snapshot", id, "--no-live"], 0);
}

/// Number of versions of every secret of the set (0: missing).
async fn version_counts(w: &BackupWorld) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in 0..N {
        let listed =
            w.sm.list_secret_version_ids()
                .secret_id(name(i))
                .include_deprecated(true)
                .send()
                .await;
        counts.insert(name(i), listed.map(|l| l.versions().len()).unwrap_or(0));
    }
    counts
}

/// Damage that makes `restore --apply` use every kind of write: values (AWSCURRENT and a custom
/// label), description, KMS key, tags added and removed, resource policy removed and added, three
/// secrets deleted for good (one with a policy and AWSPREVIOUS, one with a custom label on its
/// AWSCURRENT version, one with a custom-labelled version), one scheduled for deletion.
async fn damage(w: &BackupWorld) {
    w.put_new_value(&name(1), false, &["AWSCURRENT"]).await;
    w.put_new_value(&name(5), false, &[CUSTOM_LABEL]).await;
    w.sm.update_secret()
        .secret_id(name(2))
        .description("edited")
        .send()
        .await
        .unwrap();
    w.sm.update_secret()
        .secret_id(name(3))
        .kms_key_id(&w.key_arn)
        .send()
        .await
        .unwrap();
    w.sm.tag_resource()
        .secret_id(name(6))
        .tags(Tag::builder().key("index").value("999").build())
        .tags(Tag::builder().key("extra").value("x").build())
        .send()
        .await
        .unwrap();
    w.sm.delete_resource_policy()
        .secret_id(name(4))
        .send()
        .await
        .unwrap();
    w.sm.put_resource_policy()
        .secret_id(name(7))
        .resource_policy(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "secretsmanager:DeleteSecret", "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    for i in [8, 9, 10] {
        w.delete_for_good(&name(i)).await;
    }
    w.sm.delete_secret()
        .secret_id(name(11))
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
}

/// Versions each secret gained between `before` and `after` (a recreated secret counts all).
fn gained(
    before: &BTreeMap<String, usize>,
    after: &BTreeMap<String, usize>,
    recreated: &BTreeSet<String>,
) -> BTreeMap<String, usize> {
    after
        .iter()
        .map(|(k, a)| {
            let b = if recreated.contains(k) { 0 } else { before[k] };
            (k.clone(), a - b)
        })
        .collect()
}

/// The tag restore puts on a secret it recreates until the recreation is complete.
const MARKER: &str = "secrets-backup:restore-incomplete";

/// The recreated secrets have the snapshot's versions: every label (AWSPREVIOUS and custom ones;
/// AWSPENDING is not recreated) on the snapshot's version id with its value, no marker tag left,
/// and the rotation configuration of name(8) back.
async fn assert_recreated(
    w: &BackupWorld,
    original: &BTreeMap<String, Option<SecretState>>,
    recreated: &BTreeSet<String>,
    when: &str,
) {
    for n in recreated {
        let now = w
            .state(n)
            .await
            .unwrap_or_else(|| panic!("{when}: {n} not recreated"));
        assert_eq!(
            now.recreatable_labels(),
            original[n].as_ref().unwrap().recreatable_labels(),
            "{when}: {n}: labels and versions after recreation"
        );
        assert!(!now.tags.contains_key(MARKER), "{when}: {n}: marker left");
    }
    let d =
        w.sm.describe_secret()
            .secret_id(name(8))
            .send()
            .await
            .unwrap();
    assert_eq!(
        d.rotation_enabled(),
        Some(true),
        "{when}: rotation of {}",
        name(8)
    );
    assert_eq!(d.rotation_lambda_arn(), Some(ROTATION_FUNCTION), "{when}");
}

/// What one world exercised.
struct Part {
    /// The fail points its runs reached.
    reached: BTreeSet<String>,
    /// The first hit of each point in its traced restore (the same in both worlds).
    restore_first_hits: BTreeSet<String>,
    /// The hits it killed `restore --apply` at.
    killed: BTreeSet<String>,
    /// Its report lines.
    lines: Vec<String>,
}

/// Each world sets up the same secrets (`populate`, a custom label, a rotation configuration)
/// in its own moto; world 0 also kills the backup at every hit; each kills `restore --apply` at
/// its half of the first hits (alternately, in the order of their specs).
const WORLDS: usize = 2;

async fn world(shard: usize) -> Part {
    let started = Instant::now();
    let w = BackupWorld::start().await;
    let names_all = w.populate(PREFIX_NAMES, N).await;
    // A custom label on an AWSCURRENT version: recreating the secret moves it there.
    let current_of_9 = w.state(&name(9)).await.unwrap().labels["AWSCURRENT"]
        .0
        .clone();
    w.sm.update_secret_version_stage()
        .secret_id(name(9))
        .version_stage("GREEN")
        .move_to_version_id(current_of_9)
        .send()
        .await
        .unwrap();
    // Rotation configured on a secret that is deleted below: `--restore-rotation` puts it back.
    w.sm.rotate_secret()
        .secret_id(name(8))
        .rotation_lambda_arn(ROTATION_FUNCTION)
        .rotation_rules(
            aws_sdk_secretsmanager::types::RotationRulesType::builder()
                .automatically_after_days(7)
                .build(),
        )
        .rotate_immediately(false)
        .send()
        .await
        .unwrap();
    let original = w.states(&names_all).await;
    let part_size = [("BACKUP_PART_SIZE", "2KiB")];
    let mut lines = Vec::new();

    // A whole snapshot, traced: the writer's hits.
    let trace = Trace::new();
    let (key, path) = trace.env();
    let host = w
        .lambda(&[part_size[0], (key.as_str(), path.as_str())])
        .await;
    let out = w
        .invoke(&host, &json!({"mode": "backup"}))
        .unwrap_or_else(|e| panic!("backup: {e}\n{}", host.output()));
    w.capture(&host);
    drop(host);
    assert_eq!(out["outcome"], "complete", "{out:#}");
    let whole = out["snapshotId"].as_str().unwrap().to_string();
    let backup_hits: Vec<Hit> = trace.hits();
    assert!(
        backup_hits.len() >= 6,
        "a few parts and the manifest: {backup_hits:?} (built without the fail points? build \
         from the workspace root: `cargo build --bin backup-lambda`)"
    );
    let mut reached: BTreeSet<String> = names(&backup_hits);

    // Killed at each hit (world 0).
    let mut last_whole = whole.clone();
    for hit in backup_hits.iter().filter(|_| shard == 0) {
        let spec = hit.spec();
        // No run lease: each killed run would hold it for the next (`BACKUP_LEASE_SECONDS`).
        let host = w
            .lambda(&[
                part_size[0],
                ("FAILPOINTS", spec.as_str()),
                ("BACKUP_LEASE_SECONDS", "0"),
            ])
            .await;
        match w.invoke(&host, &json!({"mode": "backup"})) {
            Err(e) if died(&e) => {}
            other => panic!("{spec}: the backup did not die: {other:?}"),
        }
        w.capture(&host);
        drop(host);
        let listed = snapshots(&w);
        for (id, complete) in &listed {
            if *complete {
                // Only a run killed after the manifest's upload leaves a new complete snapshot,
                // and that one is whole.
                if *id != last_whole && *id != whole {
                    assert_eq!(hit.name, "backup.manifest.after", "{spec}: {listed:?}");
                    assert_verifies(&w, id);
                    last_whole = id.clone();
                }
            }
        }
        assert_eq!(latest(&w), last_whole, "{spec}: latest");
    }
    if shard == 0 {
        // `verify` (latest) passes: the incomplete folders are not looked at.
        w.cli_ok(&["verify", "--no-live"], 0);
        let incomplete = snapshots(&w).values().filter(|c| !**c).count();
        lines.push(format!(
            "backup: {} points, {} hits, killed at each ({:.0} s); {incomplete} incomplete \
             snapshots left, none taken as complete",
            names(&backup_hits).len(),
            backup_hits.len(),
            started.elapsed().as_secs_f64()
        ));
    }

    // Restore: an uninterrupted, traced one first (the reference).
    let recreated: BTreeSet<String> = [name(8), name(9), name(10)].into();
    damage(&w).await;
    let before = version_counts(&w).await;
    let trace = Trace::new();
    let (key, path) = trace.env();
    // name(1) gets a new AWSCURRENT in `damage`: the snapshot's is then AWSPREVIOUS, which restore
    // skips unless told (`--include-rotated`).
    let args = [
        "restore",
        "--snapshot",
        whole.as_str(),
        "--apply",
        "--include-rotated",
        "--restore-rotation",
        "--json",
    ];
    let reference = w.cli(&args, &[(key.as_str(), path.as_str())]);
    assert_eq!(
        reference.code, 0,
        "{}\n{}",
        reference.stdout, reference.stderr
    );
    let expected = gained(&before, &version_counts(&w).await, &recreated);
    let restored = w.states(&names_all).await;
    for n in &names_all {
        let (o, r) = (original[n].as_ref().unwrap(), restored[n].as_ref());
        assert_eq!(
            r.unwrap_or_else(|| panic!("{n} not restored")).restorable(),
            o.restorable(),
            "{n}"
        );
    }
    assert_recreated(&w, &original, &recreated, "uninterrupted").await;
    let restore_hits = trace.hits();
    assert!(!restore_hits.is_empty());
    reached.extend(names(&restore_hits));

    // Killed at the first hit of each point (a later hit of the same point is the same code on
    // another secret of the set; every hit costs three CLI runs, and `make test` has a budget),
    // this world's half of them (alternately in the order of their specs: the trace's order
    // varies from run to run, restore writes several secrets at once).
    let mut first_hits: Vec<&Hit> = restore_hits.iter().filter(|h| h.skip == 0).collect();
    first_hits.sort_by_key(|h| h.spec());
    let killed_at: Vec<&Hit> = first_hits
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| i % WORLDS == shard)
        .map(|(_, hit)| hit)
        .collect();
    let mut short = Vec::new();
    for hit in killed_at.iter().copied() {
        let spec = hit.spec();
        damage(&w).await;
        let before = version_counts(&w).await;
        let killed = w.cli(&args, &[("FAILPOINTS", spec.as_str())]);
        assert!(
            killed.code == -1 && killed.stderr.contains(&format!("fail point {}", hit.name)),
            "{spec}: restore did not die there ({}):\n{}",
            killed.code,
            killed.stderr
        );
        let rerun = w.cli(&args, &[]);
        assert_eq!(rerun.code, 0, "{spec}: {}\n{}", rerun.stdout, rerun.stderr);
        // Nothing is written twice: every secret gains exactly the versions of one uninterrupted
        // restore, a recreated one included (a recreation cut short is finished by the re-run:
        // labels moved to the versions already there, the missing ones put under their ids).
        let got = gained(&before, &version_counts(&w).await, &recreated);
        for (secret, n) in &got {
            assert_eq!(
                *n, expected[secret],
                "{spec}: {secret}: versions created (killed run + re-run vs one run)"
            );
        }
        assert_recreated(&w, &original, &recreated, &spec).await;
        if w.sm
            .list_secrets()
            .send()
            .await
            .unwrap()
            .secret_list()
            .iter()
            .any(|s| s.tags().iter().any(|t| t.key() == Some(MARKER)))
        {
            short.push(spec.clone());
        }
        let state = w.states(&names_all).await;
        for n in &names_all {
            assert_eq!(
                state[n]
                    .as_ref()
                    .unwrap_or_else(|| panic!("{spec}: {n} not restored"))
                    .restorable(),
                original[n].as_ref().unwrap().restorable(),
                "{spec}: {n}"
            );
        }
        let again: Value = w.cli_ok(&args, 0).json();
        assert_eq!(
            again["secrets"],
            json!([]),
            "{spec}: a third run: {again:#}"
        );
    }
    assert!(
        short.is_empty(),
        "marker tag left after a re-run: {short:?}"
    );
    lines.push(format!(
        "restore (world {shard}): {} points, {} hits, killed at {} of the {} first hits, each \
         completed by a re-run, no version written twice, recreated secrets' versions and \
         labels equal to the snapshot's; this world in {:.0} s",
        names(&restore_hits).len(),
        restore_hits.len(),
        killed_at.len(),
        first_hits.len(),
        started.elapsed().as_secs_f64()
    ));
    w.assert_no_values_leaked(&[]);
    Part {
        reached,
        restore_first_hits: first_hits.iter().map(|h| h.spec()).collect(),
        killed: killed_at.iter().map(|h| h.spec()).collect(),
        lines,
    }
}

/// The worlds run at once, each on its own thread and runtime: a kill and its re-runs wait
/// mostly on process starts and moto's answers, so two of them share the two cores of CI.
#[test]
fn backup_and_restore_killed_at_every_fail_point_leave_nothing_half_done() {
    let started = Instant::now();
    let parts: Vec<Part> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WORLDS)
            .map(|shard| {
                scope.spawn(move || {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("a tokio runtime")
                        .block_on(world(shard))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for line in parts.iter().flat_map(|p| &p.lines) {
        println!("fail points: {line}");
    }
    // The worlds' traced restores hit the same points, and together they killed at every first
    // hit.
    let first_hits = &parts[0].restore_first_hits;
    for (shard, part) in parts.iter().enumerate() {
        assert_eq!(
            &part.restore_first_hits, first_hits,
            "world {shard}'s traced restore hit other points than world 0's"
        );
    }
    let killed: BTreeSet<String> = parts.iter().flat_map(|p| p.killed.clone()).collect();
    assert_eq!(&killed, first_hits, "restore killed at every first hit");
    println!(
        "fail points: backup and restore in {:.0} s ({WORLDS} worlds at once)",
        started.elapsed().as_secs_f64()
    );

    let reached: BTreeSet<String> = parts.iter().flat_map(|p| p.reached.clone()).collect();
    let points: BTreeSet<String> = in_sources()
        .into_iter()
        .filter(|(n, _)| n.starts_with("backup.") || n.starts_with("restore."))
        .map(|(n, _)| n)
        .collect();
    let missed: Vec<&String> = points.difference(&reached).collect();
    println!(
        "fail points: {} of the {} backup.* and restore.* points in the sources reached",
        points.len() - missed.len(),
        points.len()
    );
    assert!(missed.is_empty(), "points no run reached: {missed:?}");
}
