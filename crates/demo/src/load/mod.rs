//! The load part of `make bench` (`BENCH_PART=load` runs it alone): what applications feel while
//! rotations run.
//!
//! K application clients (`client.rs`: credentials cached with a TTL, `AWSCURRENT` re-read from
//! Secrets Manager at once after an authentication failure) each open a TLS connection to the
//! real PostgreSQL, run a query and close it, in a loop, while R rotations run back to back
//! through the release `rotate-postgres` behind a local Lambda Runtime API (the harness plays
//! Secrets Manager: `RotateSecret` for a fresh token, then the four steps). A probe reads
//! `AWSCURRENT` afresh and logs in with it, one probe after the other, to measure the window in
//! which `AWSCURRENT` does not log in. Runs: a control without rotations, each strategy with
//! rotations back to back, single user with clients that fall back to `AWSPENDING`, and each
//! strategy with rotations further apart than the cache lifetime.
//!
//! Settings (environment): `BENCH_LOAD_CLIENTS` (8), `BENCH_LOAD_ROTATIONS` (back-to-back
//! rotations per run, 40), `BENCH_LOAD_SPACED_ROTATIONS` (5), `BENCH_LOAD_TTL_MS` (cache
//! lifetime, 2000), `BENCH_LOAD_PAUSE_MS` (a client's pause between attempts, 20),
//! `BENCH_LOAD_CONTROL_SECONDS` (5). Figures are printed, never asserted.

pub mod client;

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use client::{AppClient, Credential, Database, LoginError, ProbeSample, SecretSource, Tally};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use postgres_target::{TlsRoots, Trust};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::lambda::LambdaHost;
use testkit::moto::Moto;
use testkit::postgres::PgServer;
use testkit::rotation::Step;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;

/// The database every client and the probe log in to.
const DBNAME: &str = "postgres";
/// Connect timeout of a client's login.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the clients run before the first rotation (their caches fill).
const WARM_UP: Duration = Duration::from_millis(500);
/// How often the harness retries a failed step before giving up, as Secrets Manager retries.
const STEP_ATTEMPTS: usize = 5;

/// The settings of the part, from the environment.
#[derive(Debug, Clone)]
struct Settings {
    clients: usize,
    rotations: usize,
    spaced_rotations: usize,
    ttl: Duration,
    pause: Duration,
    control: Duration,
}

/// `name` parsed as a number, else `default`; panics naming the variable on a bad value.
fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
        _ => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        let settings = Settings {
            clients: env_number("BENCH_LOAD_CLIENTS", 8) as usize,
            rotations: env_number("BENCH_LOAD_ROTATIONS", 40) as usize,
            spaced_rotations: env_number("BENCH_LOAD_SPACED_ROTATIONS", 5) as usize,
            ttl: Duration::from_millis(env_number("BENCH_LOAD_TTL_MS", 2000)),
            pause: Duration::from_millis(env_number("BENCH_LOAD_PAUSE_MS", 20)),
            control: Duration::from_secs(env_number("BENCH_LOAD_CONTROL_SECONDS", 5)),
        };
        assert!(
            settings.clients > 0,
            "BENCH_LOAD_CLIENTS must be at least 1"
        );
        settings
    }

    /// Idle time between two spaced rotations: longer than the cache lifetime.
    fn spaced_gap(&self) -> Duration {
        self.ttl + Duration::from_secs(1)
    }
}

/// One secret under load: its ARN and the strategy's name.
#[derive(Clone)]
struct Subject {
    arn: String,
    strategy: &'static str,
}

/// Secrets Manager through the SDK: `GetSecretValue` by stage (never without one: moto can serve
/// a stale value then, see `crates/testkit/src/secrets.rs`).
#[derive(Clone)]
struct SdkSecrets {
    sm: aws_sdk_secretsmanager::Client,
    arn: String,
}

impl SecretSource for SdkSecrets {
    async fn read(&self, stage: &'static str) -> Result<Option<Credential>, String> {
        let out = match self
            .sm
            .get_secret_value()
            .secret_id(&self.arn)
            .version_stage(stage)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(None)
            }
            Err(e) => {
                return Err(format!(
                    "GetSecretValue {stage}: {}",
                    DisplayErrorContext(e)
                ))
            }
        };
        let value: Value = out
            .secret_string()
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| format!("{stage} is not a JSON secret string"))?;
        let field = |name: &str| {
            value[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{stage} has no string {name:?}"))
        };
        Ok(Some(Credential {
            username: field("username")?,
            password: field("password")?,
        }))
    }
}

/// PostgreSQL over TLS (verify-full against the test CA, as the function connects), one
/// connection per login; the query checks who logged in.
#[derive(Clone)]
struct TlsPostgres {
    host: String,
    port: u16,
    tls: Arc<TlsRoots>,
}

impl Database for TlsPostgres {
    async fn login(&self, credential: &Credential) -> Result<Duration, LoginError> {
        let tls = self
            .tls
            .verify_full()
            .map_err(|e| LoginError::Other(e.to_string()))?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&credential.username)
            .password(&credential.password)
            .dbname(DBNAME)
            .ssl_mode(SslMode::Require)
            .connect_timeout(CONNECT_TIMEOUT);
        let started = Instant::now();
        let (client, connection) = config.connect(tls).await.map_err(|e| {
            if e.code() == Some(&SqlState::INVALID_PASSWORD) {
                LoginError::Auth
            } else {
                LoginError::Other(format!("login as {:?}: {e}", credential.username))
            }
        })?;
        let took = started.elapsed();
        let connection = tokio::spawn(connection);
        let rows = client
            .simple_query("SELECT session_user")
            .await
            .map_err(|e| LoginError::Other(format!("query: {e}")))?;
        let user = rows.iter().find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        });
        drop(client);
        // The client is gone: the connection sends Terminate and ends.
        let _ = connection.await;
        match user {
            Some(user) if user == credential.username => Ok(took),
            other => Err(LoginError::Other(format!(
                "logged in as {:?}, session_user is {other:?}",
                credential.username
            ))),
        }
    }
}

/// When each step of one rotation started and ended.
#[derive(Debug, Clone, Copy)]
struct RotationTimes {
    /// Start and end of each step, in [`Step::ALL`] order.
    steps: [(Instant, Instant); 4],
}

impl RotationTimes {
    fn step(&self, step: Step) -> (Instant, Instant) {
        self.steps[Step::ALL.iter().position(|s| *s == step).unwrap()]
    }
}

/// One run's plan.
struct Run {
    name: String,
    subject: Subject,
    pending_fallback: bool,
    rotations: usize,
    /// Idle time between rotations; `None`: back to back.
    gap: Option<Duration>,
}

/// What one run measured.
struct Measured {
    name: String,
    strategy: &'static str,
    rotations: Vec<RotationTimes>,
    step_retries: usize,
    tally: Tally,
    probes: Vec<ProbeSample>,
    seconds: f64,
}

/// The whole part: set-up, the runs, the tables. `binary` is the release `rotate-postgres`.
pub async fn run(binary: &Path, pg: &PgServer, moto: &Moto) {
    let settings = Settings::from_env();
    println!(
        "\n== make bench: load — {} application clients while rotations run ==\n",
        settings.clients
    );
    let sm = moto.secrets_client().await;
    let (single, alternating, mut passwords) = subjects(pg, &sm).await;
    let mut env = moto.env();
    env.push((
        "DB_CA_BUNDLE".into(),
        pg.ca_pem_path().display().to_string(),
    ));
    let host = Arc::new(LambdaHost::start(binary, &env));
    let db = TlsPostgres {
        host: pg.host().to_string(),
        port: pg.port(),
        tls: Arc::new(TlsRoots::new(Trust::BundleOnly(
            pg.ca_pem_path().to_path_buf(),
        ))),
    };
    let spaced = settings.spaced_rotations;
    let gap = settings.spaced_gap();
    let plan = [
        (
            single.clone(),
            false,
            0,
            None,
            "control: no rotation".to_string(),
        ),
        (
            alternating.clone(),
            false,
            0,
            None,
            "control: no rotation".to_string(),
        ),
        (
            single.clone(),
            false,
            settings.rotations,
            None,
            "back to back".into(),
        ),
        (
            single.clone(),
            true,
            settings.rotations,
            None,
            "back to back, clients fall back to AWSPENDING".into(),
        ),
        (
            alternating.clone(),
            false,
            settings.rotations,
            None,
            "back to back".into(),
        ),
        (
            single,
            false,
            spaced,
            Some(gap),
            format!("{:.1} s apart", gap.as_secs_f64()),
        ),
        (
            alternating,
            false,
            spaced,
            Some(gap),
            format!("{:.1} s apart", gap.as_secs_f64()),
        ),
    ];
    let mut results = Vec::new();
    for (subject, pending_fallback, rotations, gap, name) in plan {
        let run = Run {
            name,
            subject,
            pending_fallback,
            rotations,
            gap,
        };
        let (measured, seen) = one_run(&run, &settings, &host, moto, &sm, &db).await;
        passwords.extend(seen);
        results.push(measured);
    }
    report(&settings, &results);
    let host = Arc::try_unwrap(host).unwrap_or_else(|_| panic!("the Lambda host is still shared"));
    let output = host.stop();
    let leaked = passwords.iter().any(|p| output.contains(p.as_str()));
    println!(
        "\n  function output contains a password: {}",
        if leaked { "YES" } else { "no" }
    );
    assert!(!leaked, "the function printed a password");
}

/// The roles and secrets: single user `load_single`; alternating users `load_alt` (and the
/// `load_alt_clone` its first rotation creates) maintained by `load_master`, which created
/// `load_alt` (the RDS role model: on PostgreSQL 16+ it holds ADMIN OPTION on it). Returns the
/// passwords created, for the leak check.
async fn subjects(
    pg: &PgServer,
    sm: &aws_sdk_secretsmanager::Client,
) -> (Subject, Subject, HashSet<String>) {
    let new_password = || Alphanumeric.sample_string(&mut rand::rng(), 24);
    let (single_pw, master_pw, alt_pw) = (new_password(), new_password(), new_password());
    pg.exec(&format!(
        "CREATE ROLE {single} LOGIN PASSWORD {single_pw};
         CREATE ROLE {master} LOGIN CREATEROLE PASSWORD {master_pw};
         SET ROLE {master};
         CREATE ROLE {alt} LOGIN PASSWORD {alt_pw};
         RESET ROLE;",
        single = escape_identifier("load_single"),
        single_pw = escape_literal(&single_pw),
        master = escape_identifier("load_master"),
        master_pw = escape_literal(&master_pw),
        alt = escape_identifier("load_alt"),
        alt_pw = escape_literal(&alt_pw),
    ))
    .await;
    let base =
        json!({"engine": "postgres", "host": pg.host(), "port": pg.port(), "dbname": DBNAME});
    let create = |name: &'static str, user: &str, password: &str, master: Option<&str>| {
        let mut value = base.clone();
        value["username"] = json!(user);
        value["password"] = json!(password);
        if let Some(arn) = master {
            value["masterarn"] = json!(arn);
        }
        async move {
            sm.create_secret()
                .name(name)
                .secret_string(value.to_string())
                .send()
                .await
                .unwrap_or_else(|e| panic!("CreateSecret {name}: {}", DisplayErrorContext(e)))
                .arn()
                .expect("CreateSecret returns the ARN")
                .to_string()
        }
    };
    let single = create("load/single", "load_single", &single_pw, None).await;
    let master = create("load/master", "load_master", &master_pw, None).await;
    let alternating = create("load/alternating", "load_alt", &alt_pw, Some(&master)).await;
    (
        Subject {
            arn: single,
            strategy: "single user",
        },
        Subject {
            arn: alternating,
            strategy: "alternating users",
        },
        HashSet::from([single_pw, master_pw, alt_pw]),
    )
}

/// One run: the clients and the probe start, the rotations run, the clients go on for one cache
/// lifetime more (a credential cached before the last rotation is tried once more), then stop.
/// Returns what was measured and every password read.
async fn one_run(
    run: &Run,
    settings: &Settings,
    host: &Arc<LambdaHost>,
    moto: &Moto,
    sm: &aws_sdk_secretsmanager::Client,
    db: &TlsPostgres,
) -> (Measured, HashSet<String>) {
    let source = SdkSecrets {
        sm: sm.clone(),
        arn: run.subject.arn.clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..settings.clients)
        .map(|_| {
            let mut app = AppClient::new(
                source.clone(),
                db.clone(),
                settings.ttl,
                run.pending_fallback,
            );
            let (stop, pause) = (stop.clone(), settings.pause);
            tokio::spawn(async move {
                let (mut tally, mut seen) = (Tally::default(), HashSet::new());
                while !stop.load(Ordering::Relaxed) {
                    app.attempt(Instant::now(), &mut tally, &mut |c: &Credential| {
                        seen.insert(c.password.clone());
                    })
                    .await;
                    tokio::time::sleep(pause).await;
                }
                (tally, seen)
            })
        })
        .collect();
    let probe = {
        let (source, db, stop) = (source.clone(), db.clone(), stop.clone());
        tokio::spawn(async move { probe(&source, &db, &stop).await })
    };

    tokio::time::sleep(WARM_UP).await;
    let mut rotations = Vec::new();
    let mut step_retries = 0;
    if run.rotations == 0 {
        tokio::time::sleep(settings.control).await;
    }
    for i in 0..run.rotations {
        if let (Some(gap), true) = (run.gap, i > 0) {
            tokio::time::sleep(gap).await;
        }
        let token = moto.begin_rotation(sm, &run.subject.arn).await;
        let (times, retries) = rotate(host, &run.subject.arn, &token);
        rotations.push(times);
        step_retries += retries;
    }
    if run.rotations > 0 {
        tokio::time::sleep(settings.ttl).await;
    }
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();

    let (mut tally, mut seen) = (Tally::default(), HashSet::new());
    for client in clients {
        let (one, passwords) = client.await.expect("a client task panicked");
        tally.merge(one);
        seen.extend(passwords);
    }
    let (probes, probe_seen) = probe.await.expect("the probe task panicked");
    seen.extend(probe_seen);
    let measured = Measured {
        name: run.name.clone(),
        strategy: run.subject.strategy,
        rotations,
        step_retries,
        tally,
        probes,
        seconds,
    };
    (measured, seen)
}

/// The four steps for `token`, each retried (up to [`STEP_ATTEMPTS`]) as Secrets Manager would;
/// returns when each step started and ended (its last attempt) and the retries made.
fn rotate(host: &LambdaHost, arn: &str, token: &str) -> (RotationTimes, usize) {
    let mut steps = [(Instant::now(), Instant::now()); 4];
    let mut retries = 0;
    for (i, step) in Step::ALL.into_iter().enumerate() {
        let event = testkit::rotation::event(step.as_str(), arn, token);
        let mut attempt = 1;
        loop {
            let start = Instant::now();
            let result = tokio::task::block_in_place(|| host.invoke(&event));
            steps[i] = (start, Instant::now());
            match result {
                Ok(_) => break,
                Err(error) if attempt < STEP_ATTEMPTS => {
                    println!("  (retrying {step} after: {error})");
                    attempt += 1;
                    retries += 1;
                }
                Err(error) => panic!("{step} failed {STEP_ATTEMPTS} times, last: {error}"),
            }
        }
    }
    (RotationTimes { steps }, retries)
}

/// Reads `AWSCURRENT` afresh and logs in with it, one probe after the other, until `stop`.
async fn probe(
    source: &SdkSecrets,
    db: &TlsPostgres,
    stop: &AtomicBool,
) -> (Vec<ProbeSample>, HashSet<String>) {
    let (mut samples, mut seen) = (Vec::new(), HashSet::new());
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let ok = match source.read(client::AWSCURRENT).await {
            Ok(Some(current)) => {
                seen.insert(current.password.clone());
                db.login(&current).await.is_ok()
            }
            _ => false,
        };
        samples.push(ProbeSample {
            start,
            end: Instant::now(),
            ok,
        });
    }
    (samples, seen)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `p50 / max` of `values` (milliseconds), or `-`.
fn p50_max(values: &[f64]) -> String {
    match (client::quantile(values, 0.5), client::quantile(values, 1.0)) {
        (Some(p50), Some(max)) => format!("{p50:.0} / {max:.0}"),
        _ => "-".into(),
    }
}

fn report(settings: &Settings, results: &[Measured]) {
    println!(
        "{} clients, each: a TLS connection (verify-full, SCRAM), `SELECT session_user`, close, \
         {} ms pause; credentials cached {:.1} s, AWSCURRENT re-read at once after a refused \
         login. Rotations: the release rotate-postgres, the four steps invoked by the harness.\n",
        settings.clients,
        settings.pause.as_millis(),
        settings.ttl.as_secs_f64()
    );
    println!(
        "  {:<18} {:<47} {:>4} {:>8} {:>5} {:>9} {:>5} {:>8} {:>8} {:>12}",
        "strategy",
        "run",
        "rot.",
        "attempts",
        "hard",
        "recovered",
        "other",
        "fail/rot",
        "hard/rot",
        "connect ms p50/p99"
    );
    for m in results {
        let t = &m.tally;
        let per_rotation = |n: u64| {
            if m.rotations.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}", n as f64 / m.rotations.len() as f64)
            }
        };
        let q = |q: f64| client::quantile(&t.connect_ms, q).unwrap_or(f64::NAN);
        println!(
            "  {:<18} {:<47} {:>4} {:>8} {:>5} {:>9} {:>5} {:>8} {:>8} {:>6.1} / {:.1}",
            m.strategy,
            m.name,
            m.rotations.len(),
            t.attempts,
            t.hard,
            t.recovered,
            t.other,
            per_rotation(t.failures()),
            per_rotation(t.hard),
            q(0.5),
            q(0.99),
        );
        if let Some(error) = &t.first_other {
            println!("      first other error: {error}");
        }
        if m.step_retries > 0 {
            println!("      steps retried: {}", m.step_retries);
        }
    }

    println!(
        "\n  The window in which AWSCURRENT does not log in, per rotation, ms (p50 / max):\n  \
         probe = AWSCURRENT read afresh and logged in with, one probe after the other; its \
         bounds: at least from the end of the first refused probe to the start of the last, at \
         most from the start of the probe before to the end of the probe after. harness = from \
         setSecret's answer to finishSecret's invocation (at least) and from setSecret's \
         invocation to finishSecret's answer (at most): the password changes inside setSecret, \
         AWSCURRENT moves inside finishSecret.\n"
    );
    println!(
        "  {:<18} {:<47} {:>7} {:>9} {:>14} {:>12} {:>12} {:>12} {:>12}",
        "strategy",
        "run",
        "probes",
        "probe ms",
        "rot. refused",
        "probe ≥",
        "probe ≤",
        "harness ≥",
        "harness ≤"
    );
    for m in results.iter().filter(|m| !m.rotations.is_empty()) {
        let periods: Vec<f64> = m.probes.iter().map(|p| ms(p.end - p.start)).collect();
        let windows: Vec<_> = m
            .rotations
            .iter()
            .map(|r| {
                let span = (r.step(Step::SetSecret).0, r.step(Step::FinishSecret).1);
                client::probe_window(&m.probes, span)
            })
            .collect();
        let refused_rotations = windows.iter().filter(|w| w.is_some()).count();
        // A rotation with no refused probe had a window shorter than a probe: bound 0.
        let at_least: Vec<f64> = windows
            .iter()
            .map(|w| w.map_or(0.0, |w| ms(w.at_least)))
            .collect();
        let at_most: Vec<f64> = windows.iter().flatten().map(|w| ms(w.at_most)).collect();
        let harness_min: Vec<f64> = m
            .rotations
            .iter()
            .map(|r| ms(r.step(Step::FinishSecret).0 - r.step(Step::SetSecret).1))
            .collect();
        let harness_max: Vec<f64> = m
            .rotations
            .iter()
            .map(|r| ms(r.step(Step::FinishSecret).1 - r.step(Step::SetSecret).0))
            .collect();
        println!(
            "  {:<18} {:<47} {:>7} {:>9.1} {:>14} {:>12} {:>12} {:>12} {:>12}",
            m.strategy,
            m.name,
            m.probes.len(),
            client::quantile(&periods, 0.5).unwrap_or(f64::NAN),
            format!("{refused_rotations} / {}", m.rotations.len()),
            if refused_rotations == 0 {
                "-".into()
            } else {
                p50_max(&at_least)
            },
            p50_max(&at_most),
            p50_max(&harness_min),
            p50_max(&harness_max),
        );
    }

    println!("\n  Where the window comes from: step durations under load, ms (p50 / max):\n");
    println!(
        "  {:<18} {:<47} {:>11} {:>11} {:>11} {:>11} {:>11} {:>8}",
        "strategy", "run", "create", "set", "test", "finish", "rotation", "seconds"
    );
    for m in results.iter().filter(|m| !m.rotations.is_empty()) {
        let of = |step: Step| -> Vec<f64> {
            m.rotations
                .iter()
                .map(|r| {
                    let (start, end) = r.step(step);
                    ms(end - start)
                })
                .collect()
        };
        let whole: Vec<f64> = m
            .rotations
            .iter()
            .map(|r| ms(r.step(Step::FinishSecret).1 - r.step(Step::CreateSecret).0))
            .collect();
        println!(
            "  {:<18} {:<47} {:>11} {:>11} {:>11} {:>11} {:>11} {:>8.1}",
            m.strategy,
            m.name,
            p50_max(&of(Step::CreateSecret)),
            p50_max(&of(Step::SetSecret)),
            p50_max(&of(Step::TestSecret)),
            p50_max(&of(Step::FinishSecret)),
            p50_max(&whole),
            m.seconds,
        );
    }
}
