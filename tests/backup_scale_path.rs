//! The read path that respects the quotas (issue 11), through the real `backup-lambda` and
//! `secrets-backup` binaries against moto, with every Secrets Manager call counted by a proxy
//! (`tests/common/backup.rs`: `FaultProxy`): calls per secret, an incremental run that reads
//! only what changed and still restores alone into a clean moto, a run cut by its deadline that
//! completes in later invocations with the same manifest content, and the limiter's share per
//! one-second window.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use e2e::backup::{policy, scheduled_event, tag, BackupWorld, FaultProxy};
use serde_json::{json, Value};
use testkit::moto::Moto;

const N: usize = 26;
/// `BACKUP_QUOTA_SHARE` of the test: 10 % of 50 GetResourcePolicy a second is 5.
const SHARE: &str = "10";

async fn create(w: &BackupWorld, i: usize) -> String {
    let name = format!("scale/s{i:03}");
    w.sm.create_secret()
        .name(&name)
        .description(format!("scale secret {i}"))
        .tags(tag("index", &i.to_string()))
        .secret_string(w.string_value())
        .send()
        .await
        .unwrap();
    if i.is_multiple_of(4) {
        w.sm.put_resource_policy()
            .secret_id(&name)
            .resource_policy(policy(i))
            .send()
            .await
            .unwrap();
    }
    if i.is_multiple_of(5) {
        w.put_new_value(&name, false, &["AWSPENDING"]).await;
    }
    name
}

/// Label → value of every labelled version, and the description.
async fn live(sm: &Client, name: &str) -> (Option<String>, BTreeMap<String, String>) {
    let d = sm.describe_secret().secret_id(name).send().await.unwrap();
    let mut labels = BTreeMap::new();
    for (vid, stages) in d.version_ids_to_stages().cloned().unwrap_or_default() {
        for l in stages {
            let v = sm
                .get_secret_value()
                .secret_id(name)
                .version_id(&vid)
                .send()
                .await
                .unwrap();
            labels.insert(l, v.secret_string().unwrap_or_default().to_string());
        }
    }
    (d.description().map(String::from), labels)
}

fn entries(manifest: &Value) -> Vec<(String, Value)> {
    let mut e: Vec<_> = manifest["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                json!({"versions": s["versions"], "lastChanged": s["lastChanged"]}),
            )
        })
        .collect();
    e.sort_by(|a, b| a.0.cmp(&b.0));
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_within_the_quotas_incrementally_and_across_invocations() {
    let w = BackupWorld::start().await;
    let mut names = vec![];
    for i in 0..N {
        names.push(create(&w, i).await);
    }
    let proxy = FaultProxy::start(w.moto.endpoint(), "\u{1}nothing-denied");
    let url = proxy.url();
    let env = [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", url.as_str()),
        ("BACKUP_NAME_PREFIXES", "scale/"),
        ("BACKUP_QUOTA_SHARE", SHARE),
    ];
    let host = w.lambda(&env).await;

    // 1. A full run: per secret one DescribeSecret (replication) and one GetResourcePolicy,
    //    AWSCURRENT by batches of 20, GetSecretValue only for the other labels.
    let full = w.invoke(&host, &scheduled_event()).unwrap();
    assert_eq!(full["outcome"], "complete", "{full:#}");
    assert_eq!(full["read"], N as u64);
    assert_eq!(full["carriedOver"], 0);
    let pending = (0..N).filter(|i| i.is_multiple_of(5)).count();
    assert_eq!(proxy.count("ListSecrets"), 1);
    assert_eq!(proxy.count("BatchGetSecretValue"), N.div_ceil(20));
    assert_eq!(proxy.count("GetSecretValue"), pending);
    assert_eq!(proxy.count("DescribeSecret"), N);
    assert_eq!(proxy.count("GetResourcePolicy"), N);
    // The share: 10 % of 50 a second is 5 GetResourcePolicy a second (burst 1: at most 6 in
    // any one-second window), counted at the proxy.
    let most = proxy.max_in_window("GetResourcePolicy", Duration::from_secs(1));
    assert!(
        most <= 6,
        "{most} GetResourcePolicy calls within one second"
    );
    assert!(proxy.max_in_window("BatchGetSecretValue", Duration::from_secs(1)) <= 11);

    // 2. Three secrets change: only they are read; the rest is carried over.
    let changed = [1usize, 7, 20];
    for i in changed {
        w.put_new_value(&names[i], false, &["AWSCURRENT"]).await;
    }
    proxy.reset_calls();
    let incr = w.invoke(&host, &scheduled_event()).unwrap();
    assert_eq!(incr["outcome"], "complete", "{incr:#}");
    assert_eq!(incr["read"], changed.len() as u64);
    assert_eq!(incr["carriedOver"], (N - changed.len()) as u64);
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(proxy.count("DescribeSecret"), changed.len());
    assert_eq!(proxy.count("GetResourcePolicy"), changed.len());
    // Their AWSPREVIOUS (and s020's AWSPENDING) versions are read by id.
    let pending_changed = changed.iter().filter(|i| i.is_multiple_of(5)).count();
    assert_eq!(
        proxy.count("GetSecretValue"),
        changed.len() + pending_changed
    );
    let incr_manifest: Value =
        serde_json::from_slice(&w.get_object(incr["manifest"].as_str().unwrap()).await).unwrap();
    assert_eq!(
        incr_manifest["summary"]["carriedOver"],
        (N - changed.len()) as u64
    );
    assert_eq!(incr_manifest["summary"]["read"], changed.len() as u64);
    let verify = w.cli_ok(&["verify", "--json"], 0).json();
    assert_eq!(verify["snapshotId"], incr["snapshotId"], "{verify:#}");

    // 3. The same run cut by its deadline: one page of 5 per invocation (a margin as long as
    //    the invocation), each leaving a checkpoint; the manifest comes with the last one.
    let cut = w
        .lambda(&[
            env[0],
            env[1],
            env[2],
            ("BACKUP_LIST_PAGE_SIZE", "5"),
            ("BACKUP_DEADLINE_MARGIN_SECONDS", "900"),
        ])
        .await;
    // Force a full read in the cut run too: every secret changed once more.
    for name in &names {
        w.sm.tag_resource()
            .secret_id(name)
            .tags(tag("round", "3"))
            .send()
            .await
            .unwrap();
    }
    let mut invocations = 0;
    let last = loop {
        invocations += 1;
        let out = w.invoke(&cut, &scheduled_event()).unwrap();
        match out["outcome"].as_str() {
            Some("continue") => {
                assert!(out["checkpoint"]
                    .as_str()
                    .unwrap()
                    .contains("/checkpoints/"));
                assert!(out.get("manifest").is_none(), "{out:#}");
            }
            Some("complete") => break out,
            _ => panic!("{out:#}"),
        }
        assert!(invocations < 20);
    };
    assert_eq!(invocations, N.div_ceil(5));
    assert_eq!(last["invocations"], N.div_ceil(5) as u64);
    w.capture(&cut);
    // A one-shot run of the same state, for comparison.
    let one = w.invoke(&host, &scheduled_event()).unwrap();
    assert_eq!(one["outcome"], "complete");
    let cut_manifest: Value =
        serde_json::from_slice(&w.get_object(last["manifest"].as_str().unwrap()).await).unwrap();
    let one_manifest: Value =
        serde_json::from_slice(&w.get_object(one["manifest"].as_str().unwrap()).await).unwrap();
    assert_eq!(entries(&cut_manifest), entries(&one_manifest));
    assert_eq!(cut_manifest["secrets"].as_array().unwrap().len(), N);
    w.capture(&host);

    // 4. The incremental snapshot restores alone into a clean moto.
    let clean = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let clean_sm = Client::new(&clean.sdk_config().await);
    let clean_url = clean.endpoint();
    let out = w.cli(
        &[
            "restore",
            "--snapshot",
            incr["snapshotId"].as_str().unwrap(),
            "--apply",
            "--json",
        ],
        &[("AWS_ENDPOINT_URL_SECRETS_MANAGER", clean_url.as_str())],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for name in &names {
        let (desc, labels) = live(&clean_sm, name).await;
        let (_, now) = live(&w.sm, name).await;
        let i: usize = name["scale/s".len()..].parse().unwrap();
        assert_eq!(desc, Some(format!("scale secret {i}")), "{name}");
        assert_eq!(labels.get("AWSCURRENT"), now.get("AWSCURRENT"), "{name}");
    }
}
