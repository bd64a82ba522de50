//! Backup under adversity, end to end against moto: tampered parts (flipped byte, swapped
//! part, wrong encryption context; the attacks on the snapshot as a whole are in
//! `backup_integrity.rs`), a secret that cannot be read, and a destination in another
//! account and region reached through STS AssumeRole.

use aws_config::sts::AssumeRoleProvider;
use aws_config::Region;
use backup::ports::aws::KmsKeys;
use backup::snapshot::crypto;
use e2e::backup::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::vault::{create_key, create_locked_bucket, create_signing_key};

async fn manifest(w: &BackupWorld) -> (String, Value) {
    let keys = w.objects().await;
    let key = keys
        .iter()
        .find(|k| k.ends_with("/manifest.json"))
        .expect("a manifest")
        .clone();
    let m: Value = serde_json::from_slice(&w.get_object(&key).await).unwrap();
    (key, m)
}

/// The newest snapshot's manifest (folder names sort by time).
async fn newest_manifest(w: &BackupWorld) -> (String, Value) {
    let mut keys: Vec<String> = w
        .objects()
        .await
        .into_iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .collect();
    keys.sort();
    let key = keys.pop().expect("a manifest");
    let m: Value = serde_json::from_slice(&w.get_object(&key).await).unwrap();
    (key, m)
}

/// verify must fail (exit 3) naming `part`, and restore must refuse (exit 3) naming it too.
fn assert_detected(w: &BackupWorld, part: u64, part_key: &str, reason: &str) {
    let v = w.cli(&["verify"], &[]);
    assert_eq!(
        v.code, 3,
        "verify should fail on {reason}:\n{}\n{}",
        v.stdout, v.stderr
    );
    assert!(v.stdout.contains("INTEGRITY FAILURE"), "{}", v.stdout);
    let report = w.cli(&["verify", "--json"], &[]).json();
    let failed: Vec<u64> = report["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["problems"].as_array().unwrap().is_empty())
        .map(|p| p["part"].as_u64().unwrap())
        .collect();
    assert_eq!(failed, vec![part], "{reason}: {report:#}");
    let problems = report["parts"][(part - 1) as usize]["problems"].to_string();
    assert!(
        problems.contains(reason),
        "expected {reason:?} in {problems}"
    );
    let r = w.cli(&["restore", "--apply"], &[]);
    assert_eq!(
        r.code, 3,
        "restore must refuse on {reason}:\n{}\n{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains(&format!("part {part}"))
            && r.stderr.contains(part_key)
            && r.stderr.contains("refusing"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_parts_are_named_and_refused() {
    let w = BackupWorld::start().await;
    let names = w.populate("t/", 40).await;
    let host = w.lambda(&[("BACKUP_PART_SIZE", "4KiB")]).await;
    w.invoke(&host, &scheduled_event())
        .unwrap_or_else(|e| panic!("{e}\n{}", host.output()));
    w.capture(&host);
    let (manifest_key, m) = manifest(&w).await;
    let parts = m["parts"].as_array().unwrap();
    assert!(parts.len() >= 3, "{m:#}");
    let key1 = parts[0]["key"].as_str().unwrap().to_string();
    let key2 = parts[1]["key"].as_str().unwrap().to_string();
    let original = w.get_object(&key1).await;
    w.cli_ok(&["verify"], 0);
    // The function never overwrites: a second write to the same key is refused by S3.
    let again =
        w.s3.put_object()
            .bucket(BUCKET)
            .key(&key1)
            .if_none_match("*")
            .body(original.clone().into())
            .send()
            .await;
    assert!(
        again.is_err(),
        "If-None-Match: * must refuse an existing key"
    );

    // 1. A flipped byte in the ciphertext.
    let mut flipped = original.clone();
    let i = flipped.len() - 40;
    flipped[i] ^= 0x20;
    w.overwrite_object(&key1, flipped).await;
    assert_detected(&w, 1, &key1, "SHA-256 mismatch");
    let report = w.cli(&["verify", "--json", "--no-live"], &[]).json();
    assert!(report["parts"][0]["problems"]
        .to_string()
        .contains("AES-GCM authentication failed"));

    // 2. Part 2 copied over part 1.
    w.overwrite_object(&key1, w.get_object(&key2).await).await;
    assert_detected(&w, 1, &key1, "does not belong here");

    // 3. A part sealed under another encryption context (through real KMS, same key), its
    //    header edited to claim to be part 1: KMS's context check refuses it.
    let kms = KmsKeys::new(w.kms.clone(), Some(w.key_arn.clone()));
    let mut plain = backup::snapshot::zbuf::ZeroBuf::default();
    plain.extend_from_slice(b"{}\n");
    let scope = crypto::Scope::new(
        "another-snapshot",
        "123456789012",
        "us-east-1",
        chrono::Utc::now(),
    );
    let sealed = crypto::seal(&kms, &scope, 1, plain).await.unwrap();
    let (mut header, body) = crypto::parse_header(&sealed).unwrap();
    header.snapshot_id = m["snapshotId"].as_str().unwrap().to_string();
    let forged = crypto::assemble(&header, body);
    w.overwrite_object(&key1, forged.clone()).await;
    assert_detected(&w, 1, &key1, "encryption context");
    // The manifest's hash updated to match: the manifest's signature no longer verifies.
    let mut m2 = m.clone();
    m2["parts"][0]["sha256"] = json!(hex::encode(Sha256::digest(&forged)));
    m2["parts"][0]["size"] = json!(forged.len());
    w.overwrite_object(&manifest_key, serde_json::to_vec(&m2).unwrap())
        .await;
    let v = w.cli(&["verify"], &[]);
    assert_eq!(v.code, 3, "{}\n{}", v.stdout, v.stderr);
    assert!(
        v.stderr.contains("changed after it was signed"),
        "{}",
        v.stderr
    );

    // A new snapshot is intact, and the drill passes on it.
    w.invoke(&host, &scheduled_event()).unwrap();
    w.cli_ok(&["verify", "--fail-on-drift"], 0);
    let drill = w.invoke(&host, &json!({"mode": "verify"})).unwrap();
    assert_eq!(drill["outcome"], "intact");
    let (_, m) = newest_manifest(&w).await;
    let key2 = m["parts"][1]["key"].as_str().unwrap().to_string();
    // The drill fails the invocation on a damaged part, naming it.
    let mut flipped = w.get_object(&key2).await;
    flipped[20] ^= 1;
    w.overwrite_object(&key2, flipped).await;
    let err = w.invoke(&host, &json!({"mode": "verify"})).unwrap_err();
    assert_eq!(err.error_type, "IntegrityFailure");
    assert!(err.error_message.contains(&key2), "{}", err.error_message);
    assert_eq!(names.len(), 40);
    w.capture(&host);
    w.assert_no_values_leaked(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_secret_is_recorded_and_fails_the_invocation() {
    let w = BackupWorld::start().await;
    let names = w.populate("f/", 30).await;
    let proxy = FaultProxy::start(w.moto.endpoint(), "f/017");
    let proxy_url = proxy.url();
    let host = w
        .lambda(&[("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy_url.as_str())])
        .await;
    let err = w.invoke(&host, &scheduled_event()).unwrap_err();
    assert_eq!(err.error_type, "SnapshotIncomplete", "{err}");
    assert!(
        err.error_message.contains("f/017") && err.error_message.contains("AccessDeniedException"),
        "{err}"
    );
    assert!(*proxy.denied.lock().unwrap() >= 1);
    let output = w.output_containing(&host, "\"outcome\":\"incomplete\"");
    assert!(output.contains("\"outcome\":\"incomplete\""), "{output}");

    // Every other secret is in the snapshot; the failure is in the manifest with its reason.
    let (_, m) = manifest(&w).await;
    let in_snapshot: Vec<&str> = m["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(in_snapshot.len(), 29);
    assert!(!in_snapshot.contains(&"f/017"));
    assert_eq!(m["failures"][0]["name"], "f/017");
    assert!(m["failures"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("AccessDeniedException"));
    let list = w.cli_ok(&["list", "--json"], 0).json();
    assert_eq!(list[0]["failures"], 1);
    assert_eq!(list[0]["secrets"], 29);
    // Verify: intact, the failure is reported, and the unreadable secret is not called "new".
    let report = w.cli_ok(&["verify", "--json"], 0).json();
    assert_eq!(report["differences"], json!([]), "{report:#}");
    assert_eq!(report["backupFailures"][0]["name"], "f/017");
    let text = w.cli_ok(&["show", "latest"], 0).stdout;
    assert!(
        text.contains("failed to read") && text.contains("f/017"),
        "{text}"
    );
    assert_eq!(names.len(), 30);
    w.capture(&host);
    drop(host);

    // BACKUP_EXPECTED_UNREADABLE: a run that misses only listed secrets succeeds; they are still
    // reported, marked expected, and not counted in the Failures metric the alarm watches. (A
    // list that does not name it fails the run as above: `crates/backup/tests/library.rs`.)
    let expected = w
        .lambda(&[
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy_url.as_str()),
            ("BACKUP_EXPECTED_UNREADABLE", "f/01*,other"),
        ])
        .await;
    let out = w
        .invoke(&expected, &scheduled_event())
        .unwrap_or_else(|e| panic!("{e}\n{}", expected.output()));
    assert_eq!(out["outcome"], "complete", "{out:#}");
    assert_eq!(out["secrets"], 29, "{out:#}");
    assert_eq!(out["failedSecrets"][0]["name"], "f/017", "{out:#}");
    assert_eq!(out["failedSecrets"][0]["expected"], true, "{out:#}");
    let output = w.output_containing(&expected, "\"ExpectedFailures\"");
    let emf: Value = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("_aws").is_some())
        .unwrap_or_else(|| panic!("no EMF line: {output}"));
    assert_eq!(emf["Failures"], 0.0, "{emf}");
    assert_eq!(emf["ExpectedFailures"], 1.0, "{emf}");
    let list = w.cli_ok(&["list", "--json"], 0).json();
    assert_eq!(
        list[1]["failures"], 1,
        "still a failure in the manifest: {list:#}"
    );
    // Marked expected in the signed manifest itself (so choosing a snapshot does not pass over it).
    let key = out["manifest"]
        .as_str()
        .unwrap_or_else(|| panic!("no manifest key: {out:#}"));
    let manifest: Value = serde_json::from_slice(&w.get_object(key).await).unwrap();
    let failures: Vec<(&str, &Value)> = manifest["failures"]
        .as_array()
        .unwrap_or_else(|| panic!("no failures: {manifest:#}"))
        .iter()
        .map(|f| (f["name"].as_str().unwrap_or_default(), &f["expected"]))
        .collect();
    assert_eq!(failures, [("f/017", &Value::Bool(true))], "{manifest:#}");
    w.capture(&expected);
    drop(expected);
    w.assert_no_values_leaked(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stops_while_another_holds_the_sources_lease() {
    let w = BackupWorld::start().await;
    w.populate("l/", 3).await;
    let host = w.lambda(&[]).await;
    // Another run in progress: its claim (written as a run writes it, If-None-Match: *).
    let lease = format!("{PREFIX}/leases/123456789012/us-east-1/");
    let claim = format!("{lease}00000000000000000004/claim.json");
    let now = chrono::Utc::now();
    let body = json!({
        "runId": "run-in-progress",
        "startedAt": now,
        "expiresAt": now + chrono::Duration::minutes(15),
    });
    w.s3.put_object()
        .bucket(BUCKET)
        .key(&claim)
        .if_none_match("*")
        .body(serde_json::to_vec(&body).unwrap().into())
        .send()
        .await
        .unwrap();
    let err = w.invoke(&host, &scheduled_event()).unwrap_err();
    assert_eq!(err.error_type, "BackupInProgress", "{err}");
    assert!(
        err.error_message.contains("run-in-progress") && err.error_message.contains(&claim),
        "{err}"
    );
    assert_eq!(
        w.objects().await,
        std::slice::from_ref(&claim),
        "nothing else written"
    );
    // The other run ends (releases): the next one takes claim 5 and releases it; then runs
    // follow each other freely.
    w.s3.put_object()
        .bucket(BUCKET)
        .key(claim.replace("claim.json", "released.json"))
        .if_none_match("*")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .unwrap();
    for _ in 0..2 {
        let out = w
            .invoke(&host, &scheduled_event())
            .unwrap_or_else(|e| panic!("{e}\n{}", host.output()));
        assert_eq!(out["outcome"], "complete");
    }
    let keys = w.objects().await;
    for n in [5, 6] {
        for end in ["claim.json", "released.json"] {
            let key = format!("{lease}{n:020}/{end}");
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
    }
    assert_eq!(
        w.cli_ok(&["list", "--json"], 0)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    w.capture(&host);
    drop(host);
    w.assert_no_values_leaked(&[]);
}

const DEST_ACCOUNT: &str = "222222222222";
const DEST_REGION: &str = "eu-west-1";
const DEST_BUCKET: &str = "secrets-backup-vault";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_account_destination_through_assume_role() {
    let w = BackupWorld::start().await;
    w.populate("x/", 20).await;
    let role = format!("arn:aws:iam::{DEST_ACCOUNT}:role/secrets-backup-writer");

    // The vault account: its own bucket and key, in another region, made with its credentials.
    let base = w.moto.sdk_config().await;
    let assumed = AssumeRoleProvider::builder(&role)
        .session_name("test-setup")
        .configure(&base)
        .build()
        .await;
    let vault = base
        .to_builder()
        .region(Region::new(DEST_REGION))
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(assumed))
        .build();
    let vault_s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&vault)
            .force_path_style(true)
            .build(),
    );
    let vault_kms = aws_sdk_kms::Client::new(&vault);
    create_locked_bucket(&vault_s3, DEST_BUCKET, Some(DEST_REGION)).await;
    let vault_key = create_key(&vault_kms, TEST_KEY_DESCRIPTION).await;
    let vault_signing_key = create_signing_key(&vault_kms, TEST_KEY_DESCRIPTION).await;
    assert!(
        vault_key.contains(DEST_ACCOUNT) && vault_key.contains(DEST_REGION),
        "{vault_key}"
    );

    let env = [
        ("BACKUP_BUCKET", DEST_BUCKET),
        ("BACKUP_KMS_KEY_ID", vault_key.as_str()),
        ("BACKUP_SIGNING_KEY_ID", vault_signing_key.as_str()),
        ("BACKUP_ROLE_ARN", role.as_str()),
        ("BACKUP_REGION", DEST_REGION),
    ];
    let host = w.lambda(&env).await;
    let out = w
        .invoke(&host, &scheduled_event())
        .unwrap_or_else(|e| panic!("{e}\n{}", host.output()));
    assert_eq!(out["secrets"], 20);
    w.capture(&host);

    // The snapshot is in the vault account's bucket, under the *source* account and region,
    // and its parts' data keys come from the vault account's key.
    let keys = list_keys(&vault_s3, DEST_BUCKET).await;
    assert!(
        keys.iter().any(
            |k| k.starts_with(&format!("{PREFIX}/123456789012/us-east-1/"))
                && k.ends_with("manifest.json")
        ),
        "{keys:?}"
    );
    let manifest_key = keys.iter().find(|k| k.ends_with("manifest.json")).unwrap();
    let m: Value = serde_json::from_slice(
        &vault_s3
            .get_object()
            .bucket(DEST_BUCKET)
            .key(manifest_key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert_eq!(m["source"]["accountId"], "123456789012");
    assert_eq!(m["destination"]["region"], DEST_REGION);
    let part_key = m["parts"][0]["key"].as_str().unwrap();
    let part = vault_s3
        .get_object()
        .bucket(DEST_BUCKET)
        .key(part_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        part.server_side_encryption().map(|s| s.as_str()),
        Some("aws:kms")
    );
    let (header, _) = crypto::parse_header(&part.body.collect().await.unwrap().to_vec()).unwrap();
    assert_eq!(header.kms_key_id, vault_key);
    // The source account has no such key: without the role, the key cannot be used.
    let err = w.kms.describe_key().key_id(&vault_key).send().await;
    assert!(
        err.is_err(),
        "the vault key must not exist in the source account"
    );

    // The CLI reads it back through the same role.
    let args = [
        "--bucket",
        DEST_BUCKET,
        "--role-arn",
        role.as_str(),
        "--destination-region",
        DEST_REGION,
        "--signing-key",
        vault_signing_key.as_str(),
    ];
    let list = w.cli(&[&["list", "--json"][..], &args].concat(), &[]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.json()[0]["secrets"], 20);
    let verify = w.cli(&[&["verify", "--json"][..], &args].concat(), &[]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    assert_eq!(verify.json()["differences"], json!([]));
    w.assert_no_values_leaked(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_fails_every_invocation_naming_the_variable() {
    let w = BackupWorld::start().await;
    let host = w.lambda(&[("BACKUP_CONCURRENCY", "lots")]).await;
    for _ in 0..2 {
        let err = w
            .invoke(&host, &scheduled_event())
            .expect_err("an invalid configuration must fail the invocation");
        assert_eq!(err.error_type, "InvalidConfiguration");
        assert!(
            err.error_message.contains("BACKUP_CONCURRENCY"),
            "{}",
            err.error_message
        );
    }
    assert!(w.objects().await.is_empty(), "nothing is written");
}
