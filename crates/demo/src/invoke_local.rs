//! `make invoke-local EVENT=events/rotation-create-secret.json`: a local invoke that needs no AWS
//! account. Starts the demo's stack (a throwaway PostgreSQL with TLS and moto, the AWS
//! emulator), seeds it to match the events' placeholders (a role and the secret the `SecretId`
//! names, a rotation begun with the event's `ClientRequestToken`), and runs each event through
//! the real `rotate-postgres` binary behind the local Lambda Runtime API host. Prints the
//! function's answer and what changed (the secret's versions and labels, which staged password
//! logs in), never a secret value. Ctrl-C (SIGINT) or SIGTERM stops and removes everything it
//! started (`testkit::cleanup`), and so does a normal exit.
//!
//! Several `--event`s run in order against one stack (e.g. the four rotation steps). A step whose
//! earlier steps have not run for its token gets them first, marked as set-up, so that any one
//! sample event works on its own. The sample `SecretId` is an ARN whose random suffix no
//! emulator reproduces: the event is sent with the ARN of the secret seeded under its name.
//!
//! Exit status: 0 when every event succeeded, 1 when one failed (or the output held a secret
//! value), 2 for an event it cannot run.

use clap::Parser;
use postgres_protocol::escape::{escape_identifier, escape_literal};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use testkit::lambda::LambdaHost;
use testkit::moto::Moto;
use testkit::postgres::PgServer;
use testkit::rotation::{Step, AWSCURRENT, AWSPENDING, AWSPREVIOUS};

/// Run the rotation function's sample events locally (PostgreSQL + moto + the real
/// `rotate-postgres` binary), with no AWS account. Prints each answer and what changed; never a
/// secret value. Everything started is removed on exit, Ctrl-C included.
#[derive(Parser)]
#[command(name = "invoke-local")]
struct Args {
    /// Event JSON file: a rotation step (`events/rotation-*.json`) or a preflight
    /// (`events/preflight.json`); repeat to run several in order against one stack.
    #[arg(long = "event", required = true)]
    events: Vec<PathBuf>,
}

/// One event, checked before anything starts.
struct Invocation {
    path: PathBuf,
    event: Value,
    /// `Some((step, token))` for a rotation step, `None` for a preflight.
    step: Option<(Step, String)>,
}

/// The secret name a `SecretId` names: the name part of a Secrets Manager ARN without its
/// six-character suffix, or the id itself.
fn secret_name(secret_id: &str) -> String {
    let Some(name) = secret_id
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":secret:"))
        .map(|(_, name)| name)
    else {
        return secret_id.to_string();
    };
    match name.rsplit_once('-') {
        Some((base, suffix)) if suffix.len() == 6 => base.to_string(),
        _ => name.to_string(),
    }
}

fn load(path: &Path) -> Result<Invocation, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let event: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    if event.get("SecretId").and_then(Value::as_str).is_none() {
        return Err(format!(
            "{} is not an event of the rotation function (no SecretId); invoke-local runs \
             events/rotation-*.json and events/preflight.json (the backup function's events \
             need a vault: `make demo` runs that function locally)",
            path.display()
        ));
    }
    let step = match event.get("Step") {
        None if event.get("preflight") == Some(&Value::Bool(true)) => None,
        None => {
            return Err(format!(
                "{}: neither a rotation step (Step) nor a preflight (\"preflight\": true)",
                path.display()
            ))
        }
        Some(step) => {
            let name = step.as_str().unwrap_or_default();
            let step = Step::ALL
                .into_iter()
                .find(|known| known.as_str() == name)
                .ok_or_else(|| format!("{}: unknown Step {step}", path.display()))?;
            let token = event
                .get("ClientRequestToken")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{}: no ClientRequestToken", path.display()))?;
            Some((step, token.to_string()))
        }
    };
    Ok(Invocation {
        path: path.to_path_buf(),
        event,
        step,
    })
}

/// What the tool shows of the secret and the database: labels per version, and whether each
/// staged password logs in. Values stay in memory (for the leak check) and are never printed.
#[derive(PartialEq)]
struct State {
    labels: BTreeMap<String, Vec<String>>,
    logins: BTreeMap<&'static str, Option<bool>>,
}

struct Stack {
    pg: PgServer,
    sm: aws_sdk_secretsmanager::Client,
    arn: String,
    role: String,
    /// Every password seen at any stage (for the leak check).
    seen: Vec<String>,
}

impl Stack {
    async fn password_at(&self, stage: &str) -> Option<String> {
        let out = self
            .sm
            .get_secret_value()
            .secret_id(&self.arn)
            .version_stage(stage)
            .send()
            .await
            .ok()?;
        let value: Value = serde_json::from_str(out.secret_string()?).ok()?;
        value["password"].as_str().map(str::to_string)
    }

    async fn state(&mut self) -> State {
        let labels = testkit::secrets::labels(&self.sm, &self.arn).await;
        let mut logins = BTreeMap::new();
        for stage in [AWSCURRENT, AWSPENDING, AWSPREVIOUS] {
            let login = match self.password_at(stage).await {
                Some(password) => {
                    let ok = self
                        .pg
                        .try_login(&self.role, &password, "postgres")
                        .await
                        .is_ok();
                    if !self.seen.contains(&password) {
                        self.seen.push(password);
                    }
                    Some(ok)
                }
                None => None,
            };
            logins.insert(stage, login);
        }
        State { labels, logins }
    }
}

fn stages(stages: Option<&Vec<String>>) -> String {
    match stages {
        None => "(none)".into(),
        Some(stages) if stages.is_empty() => "(no label)".into(),
        Some(stages) => stages.join(", "),
    }
}

fn login(login: Option<bool>) -> &'static str {
    match login {
        None => "no value",
        Some(true) => "logs in",
        Some(false) => "refused",
    }
}

/// Prints what differs between `before` and `after`, or that nothing did.
fn print_changes(before: &State, after: &State, role: &str) {
    if before == after {
        println!("  changed:  nothing");
        return;
    }
    let mut versions: Vec<&String> = before.labels.keys().chain(after.labels.keys()).collect();
    versions.sort();
    versions.dedup();
    for version in versions {
        let (old, new) = (before.labels.get(version), after.labels.get(version));
        if old != new {
            println!(
                "  changed:  version {version}: {} -> {}",
                stages(old),
                stages(new)
            );
        }
    }
    for (stage, new) in &after.logins {
        let old = before.logins[stage];
        if old != *new {
            println!(
                "  changed:  {stage} password as \"{role}\": {} -> {}",
                login(old),
                login(*new)
            );
        }
    }
}

fn main() {
    let args = Args::parse();
    testkit::cleanup::exit_on_signals();
    let invocations = match args
        .events
        .iter()
        .map(|path| load(path))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(invocations) => invocations,
        Err(message) => {
            eprintln!("invoke-local: {message}");
            std::process::exit(2);
        }
    };
    let names: Vec<String> = invocations
        .iter()
        .map(|i| secret_name(i.event["SecretId"].as_str().unwrap_or_default()))
        .collect();
    if names.iter().any(|name| *name != names[0]) {
        eprintln!("invoke-local: the events name different secrets ({names:?}); give one secret's");
        std::process::exit(2);
    }
    let ok = run(invocations, &names[0]);
    testkit::cleanup::exit(if ok { 0 } else { 1 });
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn run(invocations: Vec<Invocation>, name: &str) -> bool {
    println!("== invoke-local: the rotation function's events against PostgreSQL and moto, no AWS account ==");
    let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    println!(
        "PostgreSQL {} on {}:{} (TLS), moto (the AWS emulator) on {}",
        pg.server_version(),
        pg.host(),
        pg.port(),
        moto.endpoint()
    );
    let sm = moto.secrets_client().await;

    // The seed: a role and a single-user secret under the events' secret name.
    let role = "app".to_string();
    let initial = Alphanumeric.sample_string(&mut rand::rng(), 24);
    pg.exec(&format!(
        "CREATE ROLE {} LOGIN PASSWORD {}",
        escape_identifier(&role),
        escape_literal(&initial)
    ))
    .await;
    let secret = json!({
        "engine": "postgres", "host": pg.host(), "port": pg.port(),
        "username": role, "password": initial, "dbname": "postgres"
    });
    let arn = sm
        .create_secret()
        .name(name)
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("CreateSecret in moto")
        .arn()
        .expect("moto returns the ARN")
        .to_string();
    println!("Seeded: role \"{role}\" and its secret {name} (single user): {arn}");

    let mut env = moto.env();
    env.push((
        "DB_CA_BUNDLE".into(),
        pg.ca_pem_path().display().to_string(),
    ));
    let host = tokio::task::spawn_blocking(move || {
        LambdaHost::start(&testkit::binary("rotate-postgres"), &env)
    })
    .await
    .unwrap();
    println!("Function: the rotate-postgres binary behind the local Lambda Runtime API\n");

    let mut stack = Stack {
        pg,
        sm,
        arn,
        role,
        seen: vec![initial],
    };
    // Per token: the steps that ran.
    let mut begun: BTreeMap<String, Vec<Step>> = BTreeMap::new();
    let mut answers = Vec::new();
    let mut ok = true;
    for invocation in &invocations {
        let mut event = invocation.event.clone();
        let secret_id = event["SecretId"].as_str().unwrap_or_default().to_string();
        if secret_id.starts_with("arn:") {
            event["SecretId"] = json!(stack.arn);
        }
        let sent_id = event["SecretId"].as_str().unwrap_or_default().to_string();
        println!("== {}", invocation.path.display());
        if let Some((step, token)) = &invocation.step {
            // Secrets Manager's part: RotateSecret with this token, then the earlier steps.
            if !begun.contains_key(token) {
                moto.begin_rotation_with_token(&stack.sm, &stack.arn, token)
                    .await;
                println!(
                    "  set-up:   rotation begun with ClientRequestToken {token} (RotateSecret)"
                );
                begun.insert(token.clone(), Vec::new());
            }
            for earlier in Step::ALL.into_iter().take_while(|s| s != step) {
                if begun[token].contains(&earlier) {
                    continue;
                }
                let setup = testkit::rotation::event(earlier.as_str(), &sent_id, token);
                let result = tokio::task::block_in_place(|| host.invoke(&setup));
                match result {
                    Ok(answer) => {
                        println!("  set-up:   {earlier} first: {answer}");
                        answers.push(answer.to_string());
                    }
                    Err(error) => {
                        println!("  set-up:   {earlier} FAILED: {error}");
                        ok = false;
                        break;
                    }
                }
                begun.get_mut(token).unwrap().push(earlier);
            }
            if !ok {
                break;
            }
        }
        if secret_id != sent_id {
            println!("  SecretId: {secret_id} is the seeded {sent_id}");
        }
        let before = stack.state().await;
        let result = tokio::task::block_in_place(|| host.invoke(&event));
        let after = stack.state().await;
        match result {
            Ok(answer) => {
                println!("  answer:   {answer}");
                answers.push(answer.to_string());
                if let Some((step, token)) = &invocation.step {
                    begun.get_mut(token).unwrap().push(*step);
                }
            }
            Err(error) => {
                println!("  FAILED:   {error}");
                answers.push(error.to_string());
                ok = false;
            }
        }
        print_changes(&before, &after, &stack.role);
        if !ok {
            break;
        }
    }

    let output = host.stop();
    eprintln!("\n-- function log --\n{}", output.trim_end());
    let leaked = stack
        .seen
        .iter()
        .any(|password| output.contains(password) || answers.iter().any(|a| a.contains(password)));
    println!(
        "\n{}: {} event(s); a password in the function's output or answers: {}. Everything \
         started here is stopped and removed on exit.",
        if ok && !leaked { "Done" } else { "FAILED" },
        invocations.len(),
        if leaked { "YES" } else { "no" }
    );
    ok && !leaked
}
