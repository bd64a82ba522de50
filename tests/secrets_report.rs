//! `secrets-backup report` through the real CLI against moto: secrets in each state (rotation
//! off, on and on time, overdue, never backed up, backed up but not its current version,
//! covered by a drill and not, key disabled, key pending deletion, owned by a service, a name
//! that needs escaping), the snapshots written by the real `backup-lambda`, the drill's
//! `verify summary` line as the real function logged it, put into the drill's log group; each
//! format (CSV and JSON parsed, the HTML page's rows and escaping) and the exit codes.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::types::RotationRulesType;
use e2e::backup::*;
use serde_json::{json, Value};

const DRILL_LOG_GROUP: &str = "/aws/lambda/test-secrets-backup-drill";
/// Allowed by moto (Secrets Manager itself allows only letters, digits and `/_+=.@-`): the
/// page must escape whatever a name holds.
const ESCAPED_NAME: &str = "r/esc<b>&\"q\"'a'";

/// Legal in Secrets Manager (`=`, `+`, `@`), and a formula to a spreadsheet.
const FORMULA_NAME: &str = "=1+2@x";

async fn create(w: &BackupWorld, name: &str, key: Option<&str>, owner: Option<&str>) {
    let mut req =
        w.sm.create_secret()
            .name(name)
            .secret_string(w.string_value());
    if let Some(k) = key {
        req = req.kms_key_id(k);
    }
    if let Some(o) = owner {
        // moto reports OwningService from this reserved tag (AWS sets it for the service).
        req = req.tags(tag("aws:secretsmanager:owningService", o));
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("CreateSecret {name}: {e:?}"));
}

async fn rotate_every(w: &BackupWorld, name: &str, days: i64) {
    w.sm.rotate_secret()
        .secret_id(name)
        .rotation_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:rotate")
        .rotation_rules(
            RotationRulesType::builder()
                .automatically_after_days(days)
                .build(),
        )
        .rotate_immediately(false)
        .send()
        .await
        .unwrap_or_else(|e| panic!("RotateSecret {name}: {e:?}"));
}

/// The drill's log group with its summary line, as Lambda ships a function's stdout.
async fn log_drill(w: &BackupWorld, line: &str) {
    let logs = aws_sdk_cloudwatchlogs::Client::new(&w.moto.sdk_config().await);
    logs.create_log_group()
        .log_group_name(DRILL_LOG_GROUP)
        .send()
        .await
        .expect("CreateLogGroup");
    logs.create_log_stream()
        .log_group_name(DRILL_LOG_GROUP)
        .log_stream_name("2026/01/01/[$LATEST]drill")
        .send()
        .await
        .expect("CreateLogStream");
    logs.put_log_events()
        .log_group_name(DRILL_LOG_GROUP)
        .log_stream_name("2026/01/01/[$LATEST]drill")
        .log_events(
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(chrono::Utc::now().timestamp_millis())
                .message(line)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("PutLogEvents");
}

fn findings_by_secret(report: &Value) -> BTreeMap<String, Vec<String>> {
    report["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let kinds = s["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["kind"].as_str().unwrap().to_string())
                .collect();
            (s["name"].as_str().unwrap().to_string(), kinds)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_shows_each_state_in_every_format_and_gates_on_policy() {
    let w = BackupWorld::start().await;
    let enabled = testkit::vault::create_key(&w.kms, TEST_KEY_DESCRIPTION).await;
    let disabled = testkit::vault::create_key(&w.kms, TEST_KEY_DESCRIPTION).await;
    let pending = testkit::vault::create_key(&w.kms, TEST_KEY_DESCRIPTION).await;

    create(&w, "r/ok", Some(&enabled), None).await;
    rotate_every(&w, "r/ok", 30).await;
    create(&w, "r/rotation-off", None, None).await;
    create(&w, "r/overdue", None, None).await;
    rotate_every(&w, "r/overdue", 1).await;
    create(&w, "r/not-current", None, None).await;
    rotate_every(&w, "r/not-current", 30).await;
    create(&w, "r/key-disabled", Some(&disabled), None).await;
    rotate_every(&w, "r/key-disabled", 30).await;
    create(&w, "r/key-pending", Some(&pending), None).await;
    rotate_every(&w, "r/key-pending", 30).await;
    create(&w, "r/owned", None, Some("rds")).await;
    rotate_every(&w, "r/owned", 7).await;
    create(&w, ESCAPED_NAME, None, None).await;
    rotate_every(&w, ESCAPED_NAME, 30).await;
    // A legal Secrets Manager name a spreadsheet would run as a formula.
    create(&w, FORMULA_NAME, None, None).await;
    rotate_every(&w, FORMULA_NAME, 30).await;

    // Snapshot 1, then the drill on it (its summary line as the function logged it).
    let host = w.lambda(&[]).await;
    w.invoke(&host, &scheduled_event()).unwrap();
    let drill = w.invoke(&host, &json!({"mode": "verify"})).unwrap();
    assert_eq!(drill["outcome"], "intact", "{drill:#}");
    let out = w.output_containing(&host, "\"verify summary\"");
    let line = out
        .lines()
        .find(|l| l.contains("\"message\":\"verify summary\""))
        .unwrap_or_else(|| panic!("no verify summary line in:\n{out}"));
    log_drill(&w, line).await;

    // Backed up (snapshot 2) but never drilled; then a secret never backed up, and a new
    // current version no snapshot holds.
    create(&w, "r/no-drill", None, None).await;
    rotate_every(&w, "r/no-drill", 30).await;
    w.invoke(&host, &scheduled_event()).unwrap();
    w.capture(&host);
    drop(host);
    create(&w, "r/never-backed-up", None, None).await;
    rotate_every(&w, "r/never-backed-up", 30).await;
    w.put_new_value("r/not-current", false, &["AWSCURRENT"])
        .await;
    // By key id: moto's DisableKey and ScheduleKeyDeletion do not resolve an ARN.
    let id = |arn: &str| arn.rsplit('/').next().unwrap().to_string();
    w.kms
        .disable_key()
        .key_id(id(&disabled))
        .send()
        .await
        .unwrap();
    w.kms
        .schedule_key_deletion()
        .key_id(id(&pending))
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();

    // Judged three days on: r/overdue's one-day schedule plus a day's grace has passed; the
    // snapshots and the drill are within 7 and 14 days.
    let at = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    let base = [
        "report",
        "--drill-log-group",
        DRILL_LOG_GROUP,
        "--at",
        &at,
        "--max-backup-age",
        "7d",
    ];
    let run = |format: &str| {
        let mut args = base.to_vec();
        args.extend(["--format", format]);
        w.cli_ok(&args, 1)
    };

    let report = run("json").json();
    let expected: BTreeMap<String, Vec<String>> = [
        ("r/ok", vec![]),
        ("r/rotation-off", vec!["rotation-off"]),
        ("r/overdue", vec!["rotation-overdue"]),
        (
            "r/not-current",
            vec!["current-version-not-backed-up", "no-recent-drill"],
        ),
        ("r/key-disabled", vec!["key-disabled"]),
        ("r/key-pending", vec!["key-pending-deletion"]),
        ("r/owned", vec![]),
        (ESCAPED_NAME, vec![]),
        (FORMULA_NAME, vec![]),
        ("r/no-drill", vec!["no-recent-drill"]),
        (
            "r/never-backed-up",
            vec!["never-backed-up", "no-recent-drill"],
        ),
    ]
    .into_iter()
    .map(|(n, f)| (n.to_string(), f.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(findings_by_secret(&report), expected, "{report:#}");
    let row = |name: &str| {
        report["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let ok = row("r/ok");
    assert_eq!(ok["rotationEnabled"], true);
    assert_eq!(ok["schedule"]["text"], "every 30 days");
    assert_eq!(ok["keyState"], "Enabled");
    assert_eq!(ok["kmsKey"], enabled.as_str());
    // Drilled on snapshot 1, backed up last in snapshot 2 (the same version).
    assert_ne!(
        ok["lastDrill"]["snapshotId"],
        ok["lastBackup"]["snapshotId"]
    );
    assert_eq!(ok["lastDrill"]["versionId"], ok["currentVersion"]);
    assert_eq!(row("r/owned")["owningService"], "rds");
    assert_eq!(row("r/rotation-off")["rotationEnabled"], false);
    assert_eq!(row("r/rotation-off")["kmsKey"], "aws/secretsmanager");
    assert!(row("r/rotation-off")["keyState"].is_null());
    assert_eq!(row("r/key-pending")["keyState"], "PendingDeletion");
    let nc = row("r/not-current");
    assert!(nc["lastBackup"].is_null() && !nc["latestSnapshotWithSecret"].is_null());
    assert!(row("r/no-drill")["lastDrill"].is_null());
    assert_eq!(report["snapshotsRead"], 2);
    assert_eq!(report["drillsRead"], 1);
    assert_eq!(report["totals"]["outOfPolicy"], 7);
    assert_eq!(
        report["totals"]["byFinding"],
        json!([
            {"kind": "rotation-off", "secrets": 1},
            {"kind": "rotation-overdue", "secrets": 1},
            {"kind": "never-backed-up", "secrets": 1},
            {"kind": "current-version-not-backed-up", "secrets": 1},
            {"kind": "no-recent-drill", "secrets": 3},
            {"kind": "key-disabled", "secrets": 1},
            {"kind": "key-pending-deletion", "secrets": 1}
        ])
    );

    // CSV: a header, one row per secret, the same findings.
    let csv_out = run("csv");
    let mut rd = csv::Reader::from_reader(csv_out.stdout.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "secret");
    let fi = header.iter().position(|h| h == "findings").unwrap();
    let pi = header.iter().position(|h| h == "in_policy").unwrap();
    let from_csv: BTreeMap<String, Vec<String>> = rd
        .records()
        .map(|r| {
            let r = r.unwrap();
            let f: Vec<String> = r[fi].split_whitespace().map(String::from).collect();
            assert_eq!(&r[pi], if f.is_empty() { "yes" } else { "no" });
            // A cell a spreadsheet would run as a formula is quoted with `'`.
            let name = match r[0].strip_prefix('\'') {
                Some(n) if n == FORMULA_NAME => n.to_string(),
                _ => r[0].to_string(),
            };
            (name, f)
        })
        .collect();
    assert_eq!(from_csv, expected);
    assert!(csv_out.stdout.lines().all(|l| !l.starts_with('=')));

    // HTML: self-contained, a row per secret, every value escaped.
    let html = run("html").stdout;
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
    // The chart: a bar for in / out of policy and one per finding present.
    assert_eq!(html.matches("<rect ").count(), 2 + 7, "{html}");
    for asset in ["<script", "<link", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(asset), "external asset or script: {asset}");
    }
    assert_eq!(html.matches("<tr class=").count(), expected.len());
    for name in expected.keys().filter(|n| *n != ESCAPED_NAME) {
        assert!(html.contains(&format!("data-secret=\"{name}\"")), "{name}");
    }
    let escaped = "r/esc&lt;b&gt;&amp;&quot;q&quot;&#39;a&#39;";
    assert!(
        html.contains(&format!("data-secret=\"{escaped}\"")),
        "{html}"
    );
    assert!(html.contains(&format!("<td>{escaped}</td>")));
    assert!(!html.contains("<b>") && !html.contains("\"q\""));

    // The table names each finding with its detail.
    let table = run("table").stdout;
    assert!(table.contains("r/overdue: rotation-overdue: rotation was due"));
    assert!(table.contains("7 out of policy"));

    // Metadata only: through a proxy that counts the Secrets Manager calls, the report makes
    // ListSecrets calls and nothing else (no GetSecretValue, no BatchGetSecretValue).
    let proxy = FaultProxy::start(w.moto.endpoint(), "\u{1}nothing-denied");
    let counted = w.cli(
        &base,
        &[("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy.url().as_str())],
    );
    assert_eq!(counted.code, 1, "{}", counted.stderr);
    assert!(proxy.count("ListSecrets") >= 1);
    for op in [
        "GetSecretValue",
        "BatchGetSecretValue",
        "DescribeSecret",
        "GetResourcePolicy",
        "ListSecretVersionIds",
    ] {
        assert_eq!(proxy.count(op), 0, "{op}");
    }

    // Only in-policy secrets, now, with the default policy: exit 0.
    w.cli_ok(
        &[
            "report",
            "--drill-log-group",
            DRILL_LOG_GROUP,
            "--filter",
            "r/ok",
            "--filter",
            "r/owned",
        ],
        0,
    );
    // The default backup age (48 h, twice the daily schedule) three days on: stale.
    let stale = w
        .cli_ok(&["report", "--filter", "r/ok", "--at", &at, "--json"], 1)
        .json();
    assert_eq!(
        findings_by_secret(&stale)["r/ok"],
        ["backup-stale"],
        "{stale:#}"
    );
    assert_eq!(stale["drillsRead"], Value::Null);

    // No report: bad arguments, no bucket, no such log group: exit 2, naming the cause.
    let bad = w.cli(&["report", "--max-backup-age", "soon"], &[]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let no_bucket = w.cli(&["report", "--bucket", "no-such-bucket"], &[]);
    assert_eq!(no_bucket.code, 2, "{}", no_bucket.stderr);
    assert!(
        no_bucket.stderr.contains("no-such-bucket"),
        "{}",
        no_bucket.stderr
    );
    let no_group = w.cli(&["report", "--drill-log-group", "/no/such/group"], &[]);
    assert_eq!(no_group.code, 2, "{}", no_group.stderr);
    assert!(
        no_group.stderr.contains("/no/such/group"),
        "{}",
        no_group.stderr
    );
    // BackupWorld's drop: no secret value in anything the CLI or the function printed.
}
