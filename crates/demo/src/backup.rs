//! The backup part of `make demo`: the real `backup-lambda` takes an encrypted snapshot of the
//! secrets (triggered by a classic scheduled event), the real `secrets-backup` CLI lists and
//! verifies it, an "incident" changes one secret and deletes another, and a restore (dry run,
//! then `--apply --include-rotated`: the changed value is a new AWSCURRENT, which restore skips by
//! default) brings them back; then the newest manifest is edited in the bucket, as someone with
//! write access and no key could, and `verify` refuses it. Never prints a value.

use std::process::Command;
use std::time::Instant;

use aws_sdk_secretsmanager::primitives::Blob;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::json;
use testkit::lambda::LambdaHost;
use testkit::moto::Moto;

const BUCKET: &str = "demo-secrets-backup";

/// A random token for a demo value.
fn secret_value_token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 24)
}

fn secret_value() -> String {
    format!(
        "{{\"api_key\":\"{}\"}}",
        Alphanumeric.sample_string(&mut rand::rng(), 32)
    )
}

/// Runs `secrets-backup ARGS` and prints its output, indented; returns (exit code, output).
fn cli(env: &[(String, String)], args: &[&str]) -> (i32, String) {
    println!("\n  $ secrets-backup {}", args.join(" "));
    let mut command = Command::new(testkit::binary("secrets-backup"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args);
    let out =
        testkit::cleanup::output(&mut command, "stop secrets-backup").expect("run secrets-backup");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for line in stdout.lines() {
        println!("    {line}");
    }
    // Progress goes to stderr; what a reader must see (an error, a warning) is shown.
    for line in stderr
        .lines()
        .filter(|l| l.starts_with("error:") || l.starts_with("warning:"))
    {
        println!("    {line}");
    }
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        println!("    (exit status {code})");
    }
    (code, format!("{stdout}{stderr}"))
}

/// Returns whether every check passed.
pub async fn run(moto: &Moto, sm: &aws_sdk_secretsmanager::Client) -> bool {
    println!(
        "\n== Backup: encrypted snapshots through the real backup-lambda and secrets-backup ==\n"
    );
    let config = moto.sdk_config().await;
    let s3 = moto.s3_client().await;
    let kms = aws_sdk_kms::Client::new(&config);
    testkit::vault::create_locked_bucket(&s3, BUCKET, None).await;
    let key = testkit::vault::create_key(&kms, "demo secrets backup").await;
    let signing_key = testkit::vault::create_signing_key(&kms, "demo manifest signing").await;
    println!(
        "Bucket s3://{BUCKET} (versioning + Object Lock), KMS key {key}, signing key {signing_key}"
    );

    // A few more secrets next to the rotated one: string, binary, tags, a resource policy.
    let mut values = vec![];
    for (name, binary) in [
        ("demo/app-config", false),
        ("demo/api-key", false),
        ("demo/tls-key", true),
    ] {
        let mut req = sm
            .create_secret()
            .name(name)
            .description(format!("demo secret {name}"))
            .tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key("team")
                    .value("demo")
                    .build(),
            );
        if binary {
            let bytes = Alphanumeric
                .sample_string(&mut rand::rng(), 48)
                .into_bytes();
            values.push(String::from_utf8(bytes.clone()).unwrap());
            req = req.secret_binary(Blob::new(bytes));
        } else {
            let v = secret_value();
            values.push(v.clone());
            req = req.secret_string(v);
        }
        req.send().await.expect("CreateSecret");
    }
    sm.put_resource_policy()
        .secret_id("demo/api-key")
        .resource_policy(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",
                   "Action": "secretsmanager:DeleteSecret", "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("PutResourcePolicy");

    // Parameter Store, the second source: a SecureString and a String under /demo.
    let ssm = aws_sdk_ssm::Client::new(&config);
    let db_url = format!("postgres://app:{}@db.internal/app", secret_value_token());
    values.push(db_url.clone());
    for (name, kind, value) in [
        (
            "/demo/app/db-url",
            aws_sdk_ssm::types::ParameterType::SecureString,
            db_url,
        ),
        (
            "/demo/app/feature-flags",
            aws_sdk_ssm::types::ParameterType::String,
            "checkout=on".to_string(),
        ),
    ] {
        ssm.put_parameter()
            .name(name)
            .r#type(kind)
            .value(value)
            .send()
            .await
            .expect("PutParameter");
    }

    let mut env = moto.env();
    env.extend(
        [
            ("BACKUP_PARAMETER_PATHS", "/demo".to_string()),
            ("BACKUP_BUCKET", BUCKET.to_string()),
            ("BACKUP_KMS_KEY_ID", key.clone()),
            ("BACKUP_SIGNING_KEY_ID", signing_key.clone()),
            ("BACKUP_PREFIX", "snapshots".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let lambda_env = env.clone();
    let host = tokio::task::spawn_blocking(move || {
        LambdaHost::start(&testkit::binary("backup-lambda"), &lambda_env)
    })
    .await
    .unwrap();
    let event = json!({
        "version": "0", "id": "demo", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": moto.account_id(), "time": "2025-01-01T03:00:00Z", "region": moto.region(),
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/secrets-backup"], "detail": {}
    });
    let t = Instant::now();
    let result = tokio::task::block_in_place(|| host.invoke(&event));
    let mut ok = match &result {
        Ok(summary) => {
            println!(
                "Scheduled backup: snapshot {} with {} secrets, {} versions in {} part(s), {:.0} ms",
                summary["snapshotId"].as_str().unwrap_or("?"),
                summary["secrets"],
                summary["versions"],
                summary["parts"],
                t.elapsed().as_secs_f64() * 1000.0
            );
            true
        }
        Err(e) => {
            println!("Scheduled backup FAILED: {e}");
            false
        }
    };

    let mut outputs = vec![];
    let (code, out) = cli(&env, &["list"]);
    ok &= code == 0;
    outputs.push(out);
    let (code, out) = cli(&env, &["verify"]);
    ok &= code == 0;
    outputs.push(out);

    println!(
        "\nIncident: demo/app-config gets a wrong value, demo/api-key and the parameter \
         /demo/app/db-url are deleted."
    );
    ssm.delete_parameter()
        .name("/demo/app/db-url")
        .send()
        .await
        .expect("DeleteParameter");
    let wrong = secret_value();
    values.push(wrong.clone());
    sm.put_secret_value()
        .secret_id("demo/app-config")
        .secret_string(wrong)
        .send()
        .await
        .expect("PutSecretValue");
    sm.delete_secret()
        .secret_id("demo/api-key")
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("DeleteSecret");
    // The wrong value is a new AWSCURRENT, as a rotation's would be: the plan skips it (the
    // snapshot's value is now AWSPREVIOUS) and says why; here the new value is the damage, so the
    // apply says --include-rotated.
    for args in [
        &["verify"][..],
        &["restore", "--snapshot", "latest"][..],
        &[
            "restore",
            "--snapshot",
            "latest",
            "--apply",
            "--include-rotated",
        ][..],
    ] {
        let (code, out) = cli(&env, args);
        ok &= code == 0;
        outputs.push(out);
    }
    let (code, out) = cli(&env, &["verify", "--fail-on-drift"]);
    ok &= code == 0 && out.contains("no differences");
    outputs.push(out);

    // The auditor's view: each secret's rotation, last backup of its current version, drill and
    // key, judged against the policy (exit 1 when a secret is out of policy: here, rotation is
    // off for the backup's demo secrets).
    let (code, out) = cli(&env, &["report"]);
    ok &= code == 0 || code == 1;
    outputs.push(out);

    // Someone who can write the bucket but not use the keys edits the newest manifest (drops a
    // secret from it, as a truncation would): the signature no longer matches, verify names it.
    println!(
        "\nAttack: someone with write access to the bucket (no KMS access) removes demo/api-key \
         from the newest snapshot's manifest.json."
    );
    let tampered = tamper_with_newest_manifest(&s3).await;
    let (code, out) = cli(&env, &["verify", "--no-live"]);
    let named = code == 3 && out.contains("changed after it was signed");
    println!(
        "  verify refused the edited snapshot ({tampered}), naming it: {}",
        super::yes_no(named)
    );
    ok &= named;
    outputs.push(out);

    outputs.push(host.stop());

    // A hub backs up another account (a spoke) through the spoke's read-only role.
    let (hub_ok, hub_out) = hub_and_spoke(moto, &env, &mut values).await;
    ok &= hub_ok;
    outputs.push(hub_out);

    let leaked = values
        .iter()
        .any(|v| outputs.iter().any(|o| o.contains(v.as_str())));
    println!(
        "\n  function or CLI output contains a secret value: {}",
        super::yes_no(leaked)
    );
    println!(
        "Backup and restore {}.",
        if ok && !leaked { "succeeded" } else { "FAILED" }
    );
    ok && !leaked
}

/// Rewrites the newest `manifest.json` in the bucket without `demo/api-key`, as an attacker
/// with `s3:PutObject` could (a new object version: the bucket never loses the genuine one);
/// returns the snapshot's folder.
async fn tamper_with_newest_manifest(s3: &aws_sdk_s3::Client) -> String {
    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("snapshots/")
        .send()
        .await
        .expect("ListObjectsV2");
    let key = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|k| k.ends_with("/manifest.json"))
        .max()
        .expect("a manifest in the bucket")
        .to_string();
    let body = s3
        .get_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .expect("GetObject")
        .body
        .collect()
        .await
        .expect("the manifest's body")
        .into_bytes();
    let mut manifest: serde_json::Value = serde_json::from_slice(&body).expect("manifest JSON");
    if let Some(secrets) = manifest["secrets"].as_array_mut() {
        secrets.retain(|s| s["name"] != "demo/api-key");
    }
    s3.put_object()
        .bucket(BUCKET)
        .key(&key)
        .body(serde_json::to_vec_pretty(&manifest).unwrap().into())
        .send()
        .await
        .expect("PutObject");
    key.trim_end_matches("manifest.json").to_string()
}

/// The spoke account of the hub part.
const SPOKE: &str = "210987654321";

/// Many accounts: a secret in a spoke account (moto ties an assumed role's credentials to the
/// role's account), then a hub `backup-lambda` lists its sources and backs each one up, as
/// `template.yaml`'s state machine does (once per source, again while a run answers
/// `continue`). Returns whether every source completed, and the function's output.
async fn hub_and_spoke(
    moto: &Moto,
    env: &[(String, String)],
    values: &mut Vec<String>,
) -> (bool, String) {
    println!(
        "\nMany accounts: a hub deployment backs up its own account and spoke account {SPOKE}, \
         reading the spoke through its read-only role (spoke-role.yaml) with an external id."
    );
    let spoke_config = moto.sdk_config_in_account(SPOKE).await;
    let value = secret_value();
    values.push(value.clone());
    aws_sdk_secretsmanager::Client::new(&spoke_config)
        .create_secret()
        .name("spoke/payments-db")
        .secret_string(value)
        .send()
        .await
        .expect("CreateSecret in the spoke");
    let mut hub_env = env.to_vec();
    hub_env.extend(
        [
            (
                "BACKUP_SOURCE_ACCOUNTS",
                format!("{},{SPOKE}", moto.account_id()),
            ),
            (
                "BACKUP_SOURCE_ROLE_NAME",
                "secrets-backup-reader".to_string(),
            ),
            (
                "BACKUP_SOURCE_EXTERNAL_ID",
                "demo-hub-external-id".to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let host = tokio::task::spawn_blocking(move || {
        LambdaHost::start(&testkit::binary("backup-lambda"), &hub_env)
    })
    .await
    .unwrap();
    let mut ok = true;
    let sources = tokio::task::block_in_place(|| host.invoke(&json!({"mode": "sources"})));
    let sources = match sources {
        Ok(s) => s["sources"].as_array().cloned().unwrap_or_default(),
        Err(e) => {
            println!("  listing the sources FAILED: {e}");
            return (false, host.stop());
        }
    };
    for source in &sources {
        let mut invocations = 0;
        let answer = loop {
            invocations += 1;
            let a = tokio::task::block_in_place(|| host.invoke(&json!({"source": source})));
            match a {
                Ok(a) if a["outcome"] == "continue" && invocations < 10 => continue,
                other => break other,
            }
        };
        match answer {
            Ok(a) => println!(
                "  source {}/{}: {} ({} secret(s), snapshot {})",
                source["account"].as_str().unwrap_or("?"),
                source["region"].as_str().unwrap_or("?"),
                a["outcome"].as_str().unwrap_or("?"),
                a["secrets"],
                a["snapshotId"].as_str().unwrap_or("?"),
            ),
            Err(e) => {
                ok = false;
                println!("  source {source}: FAILED: {e}");
            }
        }
    }
    ok &= sources.len() == 2;
    (ok, host.stop())
}
