//! `make bench`: the performance budget of DESIGN.md, measured on this machine.
//!
//! * cold init of the release `rotate-postgres` (process start → first request to the Runtime API)
//! * per-step latency of warm invocations against a local PostgreSQL and moto
//! * Secrets Manager calls per single-user rotation (moto's request recorder)
//! * cold rotation time, on loopback and with every Secrets Manager request 25 ms late (a latency
//!   proxy), and from the difference the sequential round trips a rotation waits for
//!   (`BENCH_ROTATE_BINARY=path` measures another build, e.g. an older commit's, the same way;
//!   `BENCH_PART=cold-rotation` runs only this part)
//! * peak RSS of the function process (VmHWM, what Lambda reports as "Max Memory Used")
//! * size of the arm64 artifacts (`rotate-postgres`, `backup-lambda`), zipped, when `make build`
//!   has produced them
//! * what applications feel while rotations run: K clients with cached credentials, the window
//!   in which AWSCURRENT does not log in (`load/mod.rs`; `BENCH_PART=load` runs only this part)
//!
//! * backup at scale (`BENCH_PART=scale`, not part of the default run: it takes about half an
//!   hour): the release backup-lambda against the quota emulator for 1,000 / 10,000 / 100,000
//!   secrets, an incremental run, the targets and a projection (`scale_bench.rs`)
//!
//! Figures are printed, never asserted: timings depend on the machine.

use clap::Parser;

mod backup_bench; // backup-lambda: memory as secrets grow, cold init
mod load; // application clients while rotations run
mod scale_bench; // backup-lambda at 1,000 / 10,000 / 100,000 secrets against the quota emulator

use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use testkit::lambda::LambdaHost;
use testkit::latency::LatencyProxy;
use testkit::moto::Moto;
use testkit::postgres::PgServer;
use testkit::rotation::{run_steps, Step};

const COLD_STARTS: usize = 20;
const COLD_ROTATIONS: usize = 5;
/// One-way delay added to each Secrets Manager request: on AWS a round trip from Lambda to
/// Secrets Manager costs tens of milliseconds.
const SM_LATENCY: Duration = Duration::from_millis(25);
const ROTATIONS: usize = 5;

fn stats(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "min {:.1}  median {:.1}  p90 {:.1}  max {:.1}",
        pick(0.0),
        pick(0.5),
        pick(0.9),
        pick(1.0)
    )
}

fn wait_for_init(host: &LambdaHost) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(d) = host.init_duration() {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "the function never asked for an event"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn zipped_size(path: &Path) -> Option<u64> {
    let dir = {
        let _starting = testkit::cleanup::starting();
        let dir = tempfile::tempdir().ok()?;
        (testkit::cleanup::register_path(dir.path()), dir)
    };
    let zip = dir.1.path().join("bootstrap.zip");
    let mut command = Command::new("python3");
    command.args(["-m", "zipfile", "-c"]).arg(&zip).arg(path);
    let ok = testkit::cleanup::output(&mut command, "stop python3 -m zipfile")
        .ok()?
        .status
        .success();
    ok.then(|| std::fs::metadata(&zip).ok().map(|m| m.len()))
        .flatten()
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "within budget"
    } else {
        "OVER BUDGET"
    }
}

/// `make bench`: the performance budget of DESIGN.md measured on this machine (cold init, step
/// latency, Secrets Manager calls per rotation, cold rotation with AWS-like latency, peak RSS,
/// artifact size, and backup-lambda's memory as secrets grow). Figures are printed, never
/// asserted. Everything it starts is stopped and removed on exit, also on Ctrl-C (SIGINT) or
/// SIGTERM (exit status 130 / 143).
///
/// Environment: BENCH_ROTATE_BINARY=path measures another build of rotate-postgres;
/// BENCH_PART=cold-rotation runs only the cold rotations; BENCH_PART=load only the application
/// clients; BENCH_PART=scale only the backup at scale (BENCH_SCALE_* in scale_bench.rs).
#[derive(Parser)]
#[command(name = "bench")]
struct Args {}

fn main() {
    Args::parse();
    testkit::cleanup::exit_on_signals();
    run();
    testkit::cleanup::exit(0);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn run() {
    // BENCH_PART=scale: the backup at scale needs neither PostgreSQL nor the rotation function.
    if std::env::var("BENCH_PART").as_deref() == Ok("scale") {
        scale_bench::run().await;
        return;
    }
    println!("== make bench: rotate-postgres (release build, this machine) ==\n");
    // BENCH_ROTATE_BINARY: measure another build (e.g. an older commit's) with the same bench.
    let binary = std::env::var_os("BENCH_ROTATE_BINARY")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| testkit::release_binary("rotate-postgres"));
    let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let mut env = moto.env();
    env.push((
        "DB_CA_BUNDLE".into(),
        pg.ca_pem_path().display().to_string(),
    ));

    // BENCH_PART=cold-rotation: only the cold rotations (e.g. for an older build).
    // BENCH_PART=load: only the application clients under rotations.
    match std::env::var("BENCH_PART").as_deref() {
        Ok("cold-rotation") => {
            let (sm, arn) = bench_secret(&pg, &moto).await;
            cold_rotations(&binary, &moto, &sm, &arn, pg.ca_pem_path()).await;
            return;
        }
        Ok("load") => {
            load::run(&binary, &pg, &moto).await;
            return;
        }
        Ok(part) if !part.is_empty() => {
            panic!("BENCH_PART={part:?}: the parts are cold-rotation, load and scale (unset: everything but scale)")
        }
        _ => {}
    }

    // Cold init.
    let mut inits = Vec::new();
    for _ in 0..COLD_STARTS {
        let host = LambdaHost::start(&binary, &env);
        inits.push(wait_for_init(&host).as_secs_f64() * 1000.0);
        host.stop();
    }
    let init_median = {
        let mut s = inits.clone();
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    println!("Cold init, ms ({COLD_STARTS} starts):   {}", stats(inits));
    println!("  budget < 50 ms: {}\n", verdict(init_median < 50.0));

    // Rotations.
    let (sm, arn) = bench_secret(&pg, &moto).await;
    let host = LambdaHost::start(&binary, &env);
    let mut per_step: Vec<Vec<f64>> = vec![Vec::new(); Step::ALL.len()];
    let mut calls_per_rotation = Vec::new();
    let mut breakdown = String::new();
    for round in 0..ROTATIONS {
        let token = moto.begin_rotation(&sm, &arn).await;
        moto.start_recording();
        let done = tokio::task::block_in_place(|| run_steps(&host, &arn, &token))
            .unwrap_or_else(|failure| panic!("{failure}"));
        for (i, step) in done.iter().enumerate() {
            per_step[i].push(step.elapsed.as_secs_f64() * 1000.0);
        }
        let ops: Vec<String> = moto
            .recorded_operations()
            .into_iter()
            .filter(|op| op.starts_with("secretsmanager."))
            .collect();
        if round == 0 {
            breakdown = ops
                .iter()
                .map(|op| op.trim_start_matches("secretsmanager."))
                .collect::<Vec<_>>()
                .join(", ");
        }
        calls_per_rotation.push(ops.len());
    }
    println!("Step latency, ms ({ROTATIONS} rotations; first includes connection set-up):");
    for (i, step) in Step::ALL.iter().enumerate() {
        println!("  {:<13} {}", step.as_str(), stats(per_step[i].clone()));
    }
    let max_calls = calls_per_rotation.iter().copied().max().unwrap_or(0);
    println!("\nSecrets Manager calls per rotation: {calls_per_rotation:?}");
    println!("  {breakdown}");
    println!(
        "  budget <= 12 (AWS's Python template makes 14): {}",
        verdict(max_calls <= 12)
    );
    let rss = host.peak_rss_kib().unwrap_or(0);
    println!(
        "\nPeak RSS after {ROTATIONS} rotations: {:.1} MiB",
        rss as f64 / 1024.0
    );
    println!("  budget < 32 MiB: {}", verdict(rss < 32 * 1024));
    let output = host.stop();
    assert!(
        !output.contains("bench-initial-password"),
        "a password was printed"
    );

    cold_rotations(&binary, &moto, &sm, &arn, pg.ca_pem_path()).await;

    for function in ["rotate-postgres", "backup-lambda"] {
        let artifact = testkit::target_dir()
            .join("lambda")
            .join(function)
            .join("bootstrap");
        match std::fs::metadata(&artifact) {
            Ok(meta) => {
                let zipped = zipped_size(&artifact).unwrap_or(0);
                println!(
                    "\narm64 artifact {function}: {} bytes ({:.2} MiB), {} bytes zipped ({:.2} MiB)",
                    meta.len(),
                    meta.len() as f64 / 1048576.0,
                    zipped,
                    zipped as f64 / 1048576.0
                );
                println!("  budget < 5 MiB zipped: {}", verdict(zipped < 5 * 1048576));
            }
            Err(_) => println!("\narm64 artifact {function}: not built (run `make build` first)"),
        }
    }
    load::run(&binary, &pg, &moto).await; // application clients under rotations (load/mod.rs)
    backup_bench::run().await; // secrets backup (see backup_bench.rs)
}

/// The role `bench` and its single-user secret `bench/app`; returns the client and the ARN.
async fn bench_secret(pg: &PgServer, moto: &Moto) -> (aws_sdk_secretsmanager::Client, String) {
    pg.exec("CREATE ROLE bench LOGIN PASSWORD 'bench-initial-password'")
        .await;
    let sm = moto.secrets_client().await;
    let secret = json!({"engine": "postgres", "host": pg.host(), "port": pg.port(),
        "username": "bench", "password": "bench-initial-password"});
    let arn = sm
        .create_secret()
        .name("bench/app")
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    (sm, arn)
}

/// Cold rotations: a new function process for each, the four steps, timed from process start to
/// finishSecret's answer; once straight to moto and once through a proxy that makes every
/// Secrets Manager request [`SM_LATENCY`] late. The difference, divided by the latency, is the
/// number of round trips the rotation waits for one after the other.
async fn cold_rotations(
    binary: &Path,
    moto: &Moto,
    sm: &aws_sdk_secretsmanager::Client,
    arn: &str,
    ca: &Path,
) {
    let upstream: std::net::SocketAddr = moto
        .endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("moto address");
    let proxy = LatencyProxy::start(upstream, SM_LATENCY).await;
    let mut medians = Vec::new();
    for endpoint in [moto.endpoint(), proxy.endpoint()] {
        let mut env = moto.env();
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL".into(), endpoint));
        env.push(("DB_CA_BUNDLE".into(), ca.display().to_string()));
        let mut samples = Vec::new();
        for _ in 0..COLD_ROTATIONS {
            let token = moto.begin_rotation(sm, arn).await;
            let started = Instant::now();
            let host = LambdaHost::start(binary, &env);
            tokio::task::block_in_place(|| run_steps(&host, arn, &token))
                .unwrap_or_else(|failure| panic!("{failure}"));
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
            host.stop();
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        medians.push(sorted[sorted.len() / 2]);
        println!(
            "\nCold rotation (new process, four steps), ms, Secrets Manager {}: {}",
            if medians.len() == 1 {
                "on loopback".to_string()
            } else {
                format!("{} ms late per request", SM_LATENCY.as_millis())
            },
            stats(samples)
        );
    }
    let waited = (medians[1] - medians[0]) / SM_LATENCY.as_secs_f64() / 1000.0;
    println!(
        "  sequential Secrets Manager round trips: {waited:.1} (AWS's Python template: 10); at \
         {} ms each that is {:.0} ms of a rotation",
        SM_LATENCY.as_millis(),
        medians[1] - medians[0]
    );
}
