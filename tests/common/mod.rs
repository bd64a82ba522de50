//! Helpers shared by the end-to-end tests: a real PostgreSQL, moto, and the rotation Lambda
//! binary behind a local Runtime API, with the test playing Secrets Manager.

use aws_sdk_secretsmanager::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use testkit::lambda::{InvokeError, LambdaHost, OutputLog};
use testkit::moto::Moto;
use testkit::postgres::PgServer;

pub mod alternating;
pub mod backup;
pub mod crash;

pub use postgres_protocol::escape::{escape_identifier, escape_literal};

/// PostgreSQL + moto + a Secrets Manager client. The Lambda is started separately so a test can
/// choose its environment.
pub struct World {
    /// The throwaway PostgreSQL server.
    pub pg: PgServer,
    /// The moto server.
    pub moto: Moto,
    /// A Secrets Manager client for moto.
    pub sm: Client,
    /// What every function this world started printed, and the passwords the test set directly:
    /// checked when the world is dropped (see the `Drop` impl).
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    outputs: Vec<OutputLog>,
    passwords: Vec<String>,
}

/// The level the binaries under test log at: `E2E_LOG_LEVEL`, else `trace`, the most verbose,
/// so that every leak check also covers what only a debug session would print. (`make
/// test-majors` runs at `info`: the log lines do not depend on the PostgreSQL major.)
pub fn log_level() -> String {
    std::env::var("E2E_LOG_LEVEL").unwrap_or_else(|_| "trace".to_string())
}

/// The passwords in a secret value (the `password` of a JSON object), or the whole string when
/// it is not a JSON object.
fn passwords_in(secret_string: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(secret_string) {
        Ok(Value::Object(map)) => map
            .get("password")
            .and_then(Value::as_str)
            .map(str::to_string)
            .into_iter()
            .collect(),
        _ => vec![secret_string.to_string()],
    }
}

/// Every password held by any version of any secret in moto (unlabelled versions included).
async fn all_stored_passwords(sm: &Client) -> Vec<String> {
    let mut found = Vec::new();
    let secrets = sm.list_secrets().send().await.expect("ListSecrets");
    for secret in secrets.secret_list() {
        let arn = secret.arn().expect("ARN");
        let versions = sm
            .list_secret_version_ids()
            .secret_id(arn)
            .include_deprecated(true)
            .send()
            .await
            .expect("ListSecretVersionIds");
        for version in versions.versions() {
            let Some(id) = version.version_id() else {
                continue;
            };
            let Ok(value) = sm
                .get_secret_value()
                .secret_id(arn)
                .version_id(id)
                .send()
                .await
            else {
                continue; // a valueless AWSPENDING version created by the harness
            };
            if let Some(text) = value.secret_string() {
                found.extend(passwords_in(text));
            }
        }
    }
    found
}

impl Drop for World {
    /// Every test that runs a binary through this world checks, at its end, that no password the
    /// test set and none stored in any version of any secret appears in anything a function
    /// printed (at [`log_level`]).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        if seen.outputs.is_empty() {
            return;
        }
        let moto = &self.moto;
        let stored = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(async {
                            all_stored_passwords(&moto.secrets_client().await).await
                        })
                })
                .join()
                .unwrap()
        });
        // Too short to search for reliably below 6 characters; one pass per output for all.
        let passwords: Vec<&String> = stored
            .iter()
            .chain(&seen.passwords)
            .filter(|p| p.len() >= 6)
            .collect();
        // A DFA: the outputs reach hundreds of MB at trace level, and the default automaton's
        // prefilter (rare bytes that hex and base64 text is full of) made this search take
        // minutes in the fail point suites.
        let finder = aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&passwords)
            .expect("patterns");
        for out in seen.outputs.iter().map(OutputLog::text) {
            assert!(
                !finder.is_match(out.as_str()),
                "a password appears in a function's output (at log level {})",
                log_level()
            );
        }
    }
}

impl World {
    /// Starts PostgreSQL and moto.
    pub async fn start() -> World {
        let pg = tokio::task::spawn_blocking(PgServer::start).await.unwrap();
        let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
        let sm = moto.secrets_client().await;
        World {
            pg,
            moto,
            sm,
            seen: Mutex::default(),
        }
    }

    /// The environment of the rotation function: moto's endpoint and dummy credentials, the test
    /// CA as `DB_CA_BUNDLE`, plus `extra` (which may override).
    pub fn lambda_env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.moto.env();
        env.push(("RUST_LOG".into(), log_level()));
        env.push((
            "DB_CA_BUNDLE".into(),
            self.pg.ca_pem_path().display().to_string(),
        ));
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    /// Starts the real `rotate-postgres` binary behind a Lambda Runtime API.
    pub async fn rotation_lambda(&self, extra_env: &[(&str, &str)]) -> Lambda {
        let env = self.lambda_env(extra_env);
        let host = tokio::task::spawn_blocking(move || {
            LambdaHost::start(&testkit::binary("rotate-postgres"), &env)
        })
        .await
        .unwrap();
        self.seen.lock().unwrap().outputs.push(host.output_log());
        Lambda { host }
    }

    /// Starts `artifact` (an arm64 `bootstrap` from `make build`) behind a Lambda Runtime API,
    /// run by `emulator` (`testkit::arm64`), with the environment of [`World::rotation_lambda`].
    pub async fn emulated_rotation_lambda(
        &self,
        emulator: &testkit::arm64::Emulator,
        artifact: &std::path::Path,
        extra_env: &[(&str, &str)],
    ) -> Lambda {
        let env = self.lambda_env(extra_env);
        let launcher = emulator.launcher();
        let artifact = artifact.to_path_buf();
        let host = tokio::task::spawn_blocking(move || {
            LambdaHost::start_launched(&launcher, &artifact, &env)
        })
        .await
        .unwrap();
        self.seen.lock().unwrap().outputs.push(host.output_log());
        Lambda { host }
    }

    /// Like [`World::rotation_lambda`], with `hosts` (names nothing resolves, such as the RDS
    /// endpoints moto reports) resolving to 127.0.0.1 for the function only
    /// ([`LambdaHost::start_with_hosts`]).
    pub async fn rotation_lambda_with_hosts(
        &self,
        extra_env: &[(&str, &str)],
        hosts: &[&str],
    ) -> Lambda {
        let env = self.lambda_env(extra_env);
        let hosts: Vec<(String, std::net::IpAddr)> = hosts
            .iter()
            .map(|name| (name.to_string(), std::net::Ipv4Addr::LOCALHOST.into()))
            .collect();
        let host = tokio::task::spawn_blocking(move || {
            LambdaHost::start_with_hosts(&testkit::binary("rotate-postgres"), &env, &hosts)
        })
        .await
        .unwrap();
        self.seen.lock().unwrap().outputs.push(host.output_log());
        Lambda { host }
    }

    /// `CREATE ROLE … LOGIN PASSWORD …` as the superuser (test set-up, escaped).
    pub async fn create_role(&self, user: &str, password: &str) {
        self.remember(password);
        self.pg
            .exec(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                escape_identifier(user),
                escape_literal(password)
            ))
            .await;
    }

    /// A role with `password` and its secret named after the user; returns the secret's ARN.
    pub async fn role_with_secret(&self, user: &str, password: &str) -> String {
        self.create_role(user, password).await;
        self.create_secret(user, &self.secret_json(user, password))
            .await
    }

    /// Sets a password behind the rotation function's back.
    pub async fn set_password(&self, user: &str, password: &str) {
        self.remember(password);
        self.pg
            .exec(&format!(
                "ALTER ROLE {} PASSWORD {}",
                escape_identifier(user),
                escape_literal(password)
            ))
            .await;
    }

    /// Remembers a password the test set, to check no function output contains it.
    pub fn remember(&self, password: &str) {
        self.seen
            .lock()
            .unwrap()
            .passwords
            .push(password.to_string());
    }

    /// A PostgreSQL secret JSON for this server.
    pub fn secret_json(&self, user: &str, password: &str) -> Value {
        self.remember(password);
        json!({
            "engine": "postgres",
            "host": self.pg.host(),
            "port": self.pg.port(),
            "username": user,
            "password": password,
            "dbname": "postgres",
        })
    }

    /// Creates a secret (its first version is AWSCURRENT); returns its ARN.
    pub async fn create_secret(&self, name: &str, value: &Value) -> String {
        let out = self
            .sm
            .create_secret()
            .name(name)
            .secret_string(value.to_string())
            .send()
            .await
            .expect("CreateSecret");
        out.arn().expect("ARN").to_string()
    }

    /// What an operator does to abandon a stuck rotation (AWS's troubleshooting guide): removes
    /// `AWSPENDING` from the version `token`.
    pub async fn remove_pending(&self, arn: &str, token: &str) {
        self.sm
            .update_secret_version_stage()
            .secret_id(arn)
            .version_stage(testkit::rotation::AWSPENDING)
            .remove_from_version_id(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("remove AWSPENDING from {token}: {e:?}"));
    }

    /// Version id → labels (sorted).
    pub async fn labels(&self, arn: &str) -> BTreeMap<String, Vec<String>> {
        testkit::secrets::labels(&self.sm, arn).await
    }

    /// The version carrying `stage` and its JSON, read by explicit VersionId and stage.
    pub async fn stage(&self, arn: &str, stage: &str) -> Option<(String, Value)> {
        testkit::secrets::stage_json(&self.sm, arn, stage).await
    }

    /// The `password` of the version carrying `stage`.
    pub async fn password_at(&self, arn: &str, stage: &str) -> String {
        let (_, value) = self.stage(arn, stage).await.expect(stage);
        value["password"].as_str().expect("password").to_string()
    }

    /// Whether the database accepts `user` / `password` right now.
    pub async fn can_login(&self, user: &str, password: &str) -> bool {
        self.pg.try_login(user, password, "postgres").await.is_ok()
    }

    /// Plays Secrets Manager: a valueless AWSPENDING version for a new token.
    pub async fn begin_rotation(&self, arn: &str) -> String {
        self.moto.begin_rotation(&self.sm, arn).await
    }
}

/// The rotation function running behind a local Runtime API.
pub struct Lambda {
    /// The Runtime API host running the binary.
    pub host: LambdaHost,
}

impl Lambda {
    /// Invokes one step (a [`Step`](testkit::rotation::Step) or any wire name) the way Secrets
    /// Manager does.
    pub fn step(
        &self,
        step: impl std::fmt::Display,
        arn: &str,
        token: &str,
    ) -> Result<Value, InvokeError> {
        let event = testkit::rotation::event(&step.to_string(), arn, token);
        tokio::task::block_in_place(|| self.host.invoke(&event))
    }

    /// The preflight report for `arn`, through the function's `{"preflight": true}` event (the
    /// same ports and settings as the rotation).
    pub fn preflight(&self, arn: &str) -> Value {
        let event = json!({ "preflight": true, "SecretId": arn });
        tokio::task::block_in_place(|| self.host.invoke(&event))
            .unwrap_or_else(|e| panic!("preflight event: {e}"))
    }

    /// The checks preflight FAILs for `arn`, with their details.
    pub fn preflight_failures(&self, arn: &str) -> Vec<String> {
        let report = self.preflight(arn);
        let checks = report["preflight"]["checks"]
            .as_array()
            .expect("preflight checks");
        // A real report: the secret, its JSON, the login, the rotation settings at least.
        assert!(checks.len() >= 5, "{report}");
        let failures: Vec<String> = checks
            .iter()
            .filter(|c| {
                c["status"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("fail"))
            })
            .map(|c| format!("{}: {}", c["check"].as_str().unwrap_or("?"), c["detail"]))
            .collect();
        assert_eq!(
            report["preflight"]["failed"],
            json!(failures.len()),
            "{report}"
        );
        failures
    }

    /// Preflight predicts that rotating `arn` fails: it FAILs `check`. Call before the steps of a
    /// scenario that expects a failure (a rotation that succeeds is checked by [`Lambda::rotate`]).
    pub fn assert_preflight_fails(&self, arn: &str, check: &str) {
        let failures = self.preflight_failures(arn);
        assert!(
            failures.iter().any(|f| f.starts_with(&format!("{check}:"))),
            "preflight should FAIL {check}: the rotation fails; it reported {failures:?}"
        );
    }

    /// Preflight predicts that rotating `arn` succeeds: no FAIL. (Called by [`Lambda::rotate`];
    /// call it before the steps of a scenario that runs them one by one and succeeds.)
    pub fn assert_preflight_passes(&self, arn: &str) {
        let failures = self.preflight_failures(arn);
        assert!(
            failures.is_empty(),
            "preflight predicted a failure, but the rotation is expected to succeed: {failures:?}"
        );
    }

    /// A full rotation: preflight first (it must predict success: no FAIL), begin (as Secrets
    /// Manager), then the four steps, each must succeed.
    pub async fn rotate(&self, world: &World, arn: &str) -> String {
        self.assert_preflight_passes(arn);
        let token = world.begin_rotation(arn).await;
        let run =
            tokio::task::block_in_place(|| testkit::rotation::run_steps(&self.host, arn, &token));
        if let Err(failure) = run {
            panic!("{failure}\n--- output ---\n{}", self.host.output());
        }
        token
    }

    /// Everything the binary printed so far.
    pub fn output(&self) -> String {
        self.host.output()
    }
}

/// Fails if any of `values` occurs in `output` (secret values must never be printed).
pub fn assert_no_secrets(output: &str, values: &[String]) {
    assert!(!output.is_empty(), "the function printed nothing at all");
    for value in values {
        assert!(value.len() >= 6, "too short to search for reliably");
        assert!(
            !output.contains(value.as_str()),
            "a secret value appears in the function's output"
        );
    }
}
