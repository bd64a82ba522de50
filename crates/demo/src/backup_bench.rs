//! The backup part of `make bench`: peak RSS and duration of the release `backup-lambda` as the
//! number of secrets grows (memory must stay flat: parts are streamed, the manifest is spooled to
//! a temporary file), and its cold init. Figures are printed, never asserted.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use testkit::lambda::LambdaHost;
use testkit::moto::Moto;

/// Secret counts measured, each in a fresh moto and a fresh function process.
const SIZES: [usize; 3] = [250, 1000, 2000];
/// Bytes per value (two labelled versions per secret).
const VALUE_BYTES: usize = 4096;

async fn populate(moto: &Moto, n: usize) {
    let sm = moto.secrets_client().await;
    let value = "x".repeat(VALUE_BYTES);
    futures::stream::iter(0..n)
        .map(|i| {
            let (sm, value) = (sm.clone(), value.clone());
            async move {
                let name = format!("bench/{i:05}");
                sm.create_secret()
                    .name(&name)
                    .secret_string(&value)
                    .send()
                    .await
                    .expect("CreateSecret");
                sm.put_secret_value()
                    .secret_id(&name)
                    .secret_string(format!("{value}2"))
                    .send()
                    .await
                    .expect("PutSecretValue");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

pub async fn run() {
    println!("\n== make bench: backup-lambda (release build) ==\n");
    let binary = &testkit::release_binary("backup-lambda");
    println!(
        "  {:>7}  {:>8}  {:>6}  {:>10}  {:>12}",
        "secrets", "versions", "parts", "time, s", "peak RSS, MiB"
    );
    for n in SIZES {
        let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
        let s3 = moto.s3_client().await;
        testkit::vault::create_bucket(&s3, "bench-backup", None).await;
        let kms = aws_sdk_kms::Client::new(&moto.sdk_config().await);
        let key = testkit::vault::create_key(&kms, "bench secrets backup").await;
        let signing_key = testkit::vault::create_signing_key(&kms, "bench signing").await;
        populate(&moto, n).await;
        let mut env = moto.env();
        env.push(("BACKUP_BUCKET".into(), "bench-backup".into()));
        env.push(("BACKUP_KMS_KEY_ID".into(), key));
        env.push(("BACKUP_SIGNING_KEY_ID".into(), signing_key));
        env.push(("BACKUP_PART_SIZE".into(), "1MiB".into()));
        env.push(("BACKUP_CONCURRENCY".into(), "16".into()));
        let host = LambdaHost::start(binary, &env);
        let t = Instant::now();
        let out = tokio::task::block_in_place(|| host.invoke(&json!({})))
            .unwrap_or_else(|e| panic!("backup failed: {e}"));
        let secs = t.elapsed().as_secs_f64();
        let rss = host.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
        println!(
            "  {:>7}  {:>8}  {:>6}  {:>10.2}  {:>12.1}",
            out["secrets"].as_u64().unwrap_or(0),
            out["versions"].as_u64().unwrap_or(0),
            out["parts"].as_u64().unwrap_or(0),
            secs,
            rss
        );
        host.stop();
    }
    println!(
        "  ({VALUE_BYTES}-byte values, 1 MiB parts, concurrency 16; against moto, so time is the emulator's)"
    );
    let mut inits = vec![];
    for _ in 0..10 {
        let env = [
            ("BACKUP_BUCKET", "b"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let host = LambdaHost::start(binary, &env);
        let deadline = Instant::now() + Duration::from_secs(10);
        while host.init_duration().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(d) = host.init_duration() {
            inits.push(d.as_secs_f64() * 1000.0);
        }
        host.stop();
    }
    inits.sort_by(f64::total_cmp);
    if !inits.is_empty() {
        println!(
            "\nCold init of backup-lambda, ms (10 starts): median {:.1}, max {:.1}",
            inits[inits.len() / 2],
            inits[inits.len() - 1]
        );
    }
}
