//! Scheduled backup end to end: the real `backup-lambda` and `secrets-backup` binaries against
//! moto (Secrets Manager, KMS, S3, STS). A varied set of 210 secrets is backed up, verified,
//! damaged (changed, deleted, added), diffed, restored (dry run, apply, apply again), and the
//! snapshot chosen "as of" a time among several.

use std::collections::{BTreeMap, BTreeSet};

use e2e::backup::*;
use serde_json::{json, Value};

const N: usize = 210;

fn names_with_status(report: &Value, key: &str) -> BTreeMap<String, String> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {report:#}"))
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_diff_restore_round_trip() {
    let w = BackupWorld::start().await;
    let names = w.populate("app/svc-", N).await;
    let before = w.states(&names).await;
    assert!(before.values().all(Option::is_some));

    // Back up through the function, triggered by a classic scheduled rule event.
    let host = w.lambda(&[]).await;
    let started = std::time::Instant::now();
    let out = w
        .invoke(&host, &scheduled_event())
        .unwrap_or_else(|e| panic!("backup failed: {e}\n{}", host.output()));
    eprintln!(
        "backup of {N} secrets: {:?}, peak RSS {:?} KiB, cold init {:?}",
        started.elapsed(),
        host.peak_rss_kib(),
        host.init_duration()
    );
    assert_eq!(out["outcome"], "complete", "{out:#}");
    assert_eq!(out["secrets"], N);
    assert_eq!(out["versions"], BackupWorld::varied_versions(N));
    assert!(out["parts"].as_u64().unwrap() > 3, "16 KiB parts: {out:#}");
    let output = w.output_containing(&host, "\"_aws\"");
    let emf: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!(emf.len(), 1, "one summary line with EMF metrics:\n{output}");
    assert_eq!(emf[0]["Secrets"], N as f64);
    assert_eq!(emf[0]["Failures"], 0.0);
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "SecretsBackup"
    );

    // Layout: <prefix>/<account>/<region>/<time>-<id>/ with parts and the manifest; beside it
    // the run's lease, claimed and released (`crates/backup/src/lambda/lease.rs`).
    let (leases, keys): (Vec<String>, Vec<String>) = w
        .objects()
        .await
        .into_iter()
        .partition(|k| k.starts_with(&format!("{PREFIX}/leases/")));
    let lease = format!("{PREFIX}/leases/123456789012/us-east-1/00000000000000000001/");
    assert_eq!(
        leases,
        [
            format!("{lease}claim.json"),
            format!("{lease}released.json")
        ]
    );
    let snapshot_id = out["snapshotId"].as_str().unwrap();
    let claim: Value = serde_json::from_slice(&w.get_object(&leases[0]).await).unwrap();
    assert_eq!(claim["runId"], snapshot_id);
    let folder_prefix = format!("{PREFIX}/123456789012/us-east-1/");
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&folder_prefix) && k.contains(snapshot_id)),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.ends_with("/manifest.json")));

    // list / show.
    let list = w.cli_ok(&["list", "--json"], 0).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["secrets"], N);
    assert_eq!(list[0]["failures"], 0);
    assert_eq!(list[0]["complete"], true);
    let table = w.cli_ok(&["list"], 0).stdout;
    assert!(
        table.contains(snapshot_id) && table.contains("complete"),
        "{table}"
    );
    let shown = w.cli_ok(&["show", "latest"], 0).stdout;
    assert!(
        shown.contains("app/svc-007") && shown.contains("AWSCURRENT"),
        "{shown}"
    );
    let manifest = w.cli_ok(&["show", &snapshot_id[..8], "--json"], 0).json();
    assert_eq!(manifest["secrets"].as_array().unwrap().len(), N);
    assert_eq!(manifest["failures"], json!([]));

    // Verify right away: every part intact, no difference.
    let report = w.cli_ok(&["verify", "--json"], 0).json();
    assert!(report["parts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["sha256"] == "ok" && p["decrypt"] == "ok" && p["content"] == "ok"));
    assert_eq!(report["differences"], json!([]), "{report:#}");
    assert_eq!(report["counts"]["unchanged"], N);
    let text = w.cli_ok(&["verify"], 0).stdout;
    assert!(
        text.contains("INTACT") && text.contains("no differences"),
        "{text}"
    );

    // Damage: change values (a string, a binary, a custom label), metadata, delete (force and
    // scheduled), add.
    let changed_value = ["app/svc-001", "app/svc-014", "app/svc-020"];
    w.put_new_value("app/svc-001", false, &["AWSCURRENT"]).await;
    w.put_new_value("app/svc-014", true, &["AWSCURRENT"]).await;
    w.put_new_value("app/svc-020", false, &[CUSTOM_LABEL]).await;
    w.sm.update_secret()
        .secret_id("app/svc-002")
        .description("edited")
        .send()
        .await
        .unwrap();
    w.sm.tag_resource()
        .secret_id("app/svc-003")
        .tags(tag("index", "999"))
        .tags(tag("extra", "x"))
        .send()
        .await
        .unwrap();
    w.sm.delete_resource_policy()
        .secret_id("app/svc-008")
        .send()
        .await
        .unwrap();
    let forced = ["app/svc-010", "app/svc-035", "app/svc-039", "app/svc-052"];
    for name in forced {
        w.delete_for_good(name).await;
    }
    w.sm.delete_secret()
        .secret_id("app/svc-011")
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();
    let added = ["app/svc-new-1", "app/svc-new-2", "app/zz-new"];
    for name in added {
        w.sm.create_secret()
            .name(name)
            .secret_string(w.string_value())
            .send()
            .await
            .unwrap();
    }
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for n in changed_value
        .iter()
        .chain(&["app/svc-002", "app/svc-003", "app/svc-008"])
    {
        expected.insert(n.to_string(), "changed".into());
    }
    for n in forced.iter().chain(&["app/svc-011"]) {
        expected.insert(n.to_string(), "missing".into());
    }
    for n in added {
        expected.insert(n.to_string(), "new".into());
    }

    // Verify reports exactly those.
    let report = w.cli_ok(&["verify", "--json"], 0).json();
    assert_eq!(
        names_with_status(&report, "differences"),
        expected,
        "{report:#}"
    );
    assert_eq!(report["counts"]["unchanged"], N - 11);
    let drift = w.cli(&["verify", "--fail-on-drift"], &[]);
    assert_eq!(drift.code, 4, "{}", drift.stdout);
    assert!(
        drift.stdout.contains("app/svc-014") && drift.stdout.contains("AWSCURRENT value differs"),
        "{}",
        drift.stdout
    );

    // Restore dry run: exactly those, and nothing changes.
    let damaged_names: Vec<String> = names
        .iter()
        .cloned()
        .chain(added.iter().map(|s| s.to_string()))
        .collect();
    let damaged = w.states(&damaged_names).await;
    let plan = w
        .cli_ok(&["restore", "--snapshot", "latest", "--json"], 0)
        .json();
    assert_eq!(plan["applied"], false);
    let planned = names_with_status(&plan, "secrets");
    let expected_restore: BTreeMap<String, String> = expected
        .iter()
        .filter(|(_, s)| *s != "new")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(planned, expected_restore, "{plan:#}");
    assert_eq!(plan["new"], json!(added));
    // A new AWSCURRENT put since the snapshot (as a rotation does) is skipped by default: the
    // snapshot's AWSCURRENT is now AWSPREVIOUS. `--include-rotated` restores it (below).
    for s in plan["secrets"].as_array().unwrap() {
        let rotated = ["app/svc-001", "app/svc-014"].contains(&s["name"].as_str().unwrap());
        let action = s["actions"][0].as_str().unwrap();
        assert_eq!(
            action.starts_with("skip: rotated since the snapshot"),
            rotated,
            "{s:#}"
        );
    }
    let text = w.cli_ok(&["restore", "--snapshot", "latest"], 0).stdout;
    assert!(
        text.contains("dry run") && text.contains("app/svc-010") && text.contains("recreate"),
        "{text}"
    );
    assert_eq!(
        w.states(&damaged_names).await,
        damaged,
        "a dry run changes nothing"
    );

    // Apply (with --include-rotated): values and metadata come back byte-identical.
    let applied = w
        .cli_ok(
            &[
                "restore",
                "--snapshot",
                "latest",
                "--apply",
                "--include-rotated",
                "--json",
            ],
            0,
        )
        .json();
    assert_eq!(applied["applied"], true);
    assert_eq!(names_with_status(&applied, "secrets"), expected_restore);
    assert!(
        applied["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("error").is_none()),
        "{applied:#}"
    );
    let after = w.states(&names).await;
    for name in &names {
        let (b, a) = (
            before[name].as_ref().unwrap(),
            after[name]
                .as_ref()
                .unwrap_or_else(|| panic!("{name} not restored")),
        );
        assert_eq!(
            a.restorable(),
            b.restorable(),
            "{name} differs after restore"
        );
    }
    // Recreated secrets: every version id and label as before, AWSPREVIOUS included (a
    // rotation in flight, AWSPENDING, is not recreated).
    for name in forced {
        let (b, a) = (
            before[name].as_ref().unwrap(),
            after[name].as_ref().unwrap(),
        );
        assert_eq!(
            a.recreatable_labels(),
            b.recreatable_labels(),
            "{name}: versions differ after recreate"
        );
    }
    // History kept: the overwritten value is still there as AWSPREVIOUS.
    let d1 = damaged["app/svc-001"].as_ref().unwrap();
    assert_eq!(
        after["app/svc-001"].as_ref().unwrap().labels["AWSPREVIOUS"],
        d1.labels["AWSCURRENT"]
    );
    // New secrets were left alone.
    for name in added {
        assert!(w.state(name).await.is_some());
    }

    // A second apply changes nothing.
    let again = w
        .cli_ok(&["restore", "--snapshot", "latest", "--apply", "--json"], 0)
        .json();
    assert_eq!(again["secrets"], json!([]), "{again:#}");
    assert_eq!(w.states(&names).await, after);
    let report = w.cli_ok(&["verify", "--json"], 0).json();
    let only_new: BTreeMap<String, String> = added
        .iter()
        .map(|n| (n.to_string(), "new".to_string()))
        .collect();
    assert_eq!(names_with_status(&report, "differences"), only_new);

    // The function's verify mode (a restore drill on a schedule) agrees.
    let drill = w
        .invoke(&host, &json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {"mode": "verify"}}))
        .unwrap_or_else(|e| panic!("verify drill failed: {e}\n{}", host.output()));
    assert_eq!(drill["outcome"], "intact");
    assert_eq!(drill["counts"]["new"], 3);
    assert_eq!(drill["counts"]["unchanged"], N);
    w.capture(&host);
    w.assert_no_values_leaked(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_selects_the_right_snapshot_among_several() {
    let w = BackupWorld::start().await;
    let names = w.populate("db/", 12).await;
    let host = w.lambda(&[]).await;
    let mut snapshots = vec![];
    let mut values = vec![];
    // Scheduler input (plain JSON) this time.
    for round in 0..3 {
        if round > 0 {
            w.put_new_value("db/001", false, &["AWSCURRENT"]).await;
        }
        values.push(
            w.state("db/001").await.unwrap().labels["AWSCURRENT"]
                .1
                .clone(),
        );
        let out = w
            .invoke(&host, &json!({"mode": "backup", "namePrefixes": ["db/"]}))
            .unwrap_or_else(|e| panic!("{e}\n{}", host.output()));
        snapshots.push(out["snapshotId"].as_str().unwrap().to_string());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let list = w.cli_ok(&["list", "--json"], 0).json();
    let listed: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["signature"]["state"], "verified", "{s}");
            (
                s["id"].as_str().unwrap().to_string(),
                s["startedAt"].as_str().unwrap().to_string(),
                s["completedAt"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed
            .iter()
            .map(|(id, _, _)| id.clone())
            .collect::<Vec<_>>(),
        snapshots
    );
    let started: Vec<chrono::DateTime<chrono::Utc>> =
        listed.iter().map(|(_, t, _)| t.parse().unwrap()).collect();
    // "As of" compares the (signed) completion time.
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        listed.iter().map(|(_, _, t)| t.parse().unwrap()).collect();

    let pick = |at: String| -> String {
        w.cli_ok(&["verify", "--as-of", &at, "--no-live", "--json"], 0)
            .json()["snapshotId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mid01 = times[0] + (started[1] - times[0]) / 2;
    let mid12 = times[1] + (started[2] - times[1]) / 2;
    assert_eq!(pick(mid01.to_rfc3339()), snapshots[0]);
    // Started but not yet complete at that time: the one before.
    assert_eq!(pick(started[1].to_rfc3339()), snapshots[0]);
    assert_eq!(pick(times[1].to_rfc3339()), snapshots[1]);
    assert_eq!(pick(mid12.to_rfc3339()), snapshots[1]);
    assert_eq!(
        pick((times[2] + chrono::Duration::hours(1)).to_rfc3339()),
        snapshots[2]
    );
    let too_early = w.cli(
        &[
            "verify",
            "--as-of",
            &(started[0] - chrono::Duration::seconds(1)).to_rfc3339(),
        ],
        &[],
    );
    assert_eq!(too_early.code, 1);
    assert!(
        too_early
            .stderr
            .contains("no complete snapshot completed at or before"),
        "{}",
        too_early.stderr
    );

    // Restoring as of the first snapshot brings the first value back.
    let plan = w
        .cli_ok(&["restore", "--as-of", &mid01.to_rfc3339(), "--json"], 0)
        .json();
    assert_eq!(plan["snapshotId"], snapshots[0]);
    assert_eq!(
        names_with_status(&plan, "secrets")
            .keys()
            .collect::<Vec<_>>(),
        ["db/001"]
    );
    w.cli_ok(
        &[
            "restore",
            "--as-of",
            &mid01.to_rfc3339(),
            "--filter",
            "db/00*",
            "--apply",
        ],
        0,
    );
    assert_eq!(
        w.state("db/001").await.unwrap().labels["AWSCURRENT"].1,
        values[0]
    );
    let untouched: BTreeSet<_> = names.iter().filter(|n| *n != "db/001").collect();
    assert_eq!(untouched.len(), 11);
    w.capture(&host);
    w.assert_no_values_leaked(&[]);
}
