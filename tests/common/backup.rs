//! Helpers for the backup end-to-end tests: moto with an Object Lock bucket and a KMS key, a
//! varied set of secrets, the real `backup-lambda` behind a Runtime API and the real
//! `secrets-backup` CLI as a subprocess, the live state read back for byte-for-byte comparison,
//! and a fault-injecting proxy in front of Secrets Manager.
//!
//! Every secret value a test creates is remembered, and every output of the function and the
//! CLI is captured, so [`BackupWorld::assert_no_values_leaked`] can check none was printed.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use aws_sdk_secretsmanager::primitives::Blob;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{json, Value};
use testkit::lambda::{InvokeError, LambdaHost, OutputLog};
use testkit::moto::Moto;
use testkit::vault::{create_key, create_locked_bucket, create_signing_key};

/// The snapshot bucket of the tests.
pub const BUCKET: &str = "secrets-backup-test";
/// The snapshot prefix of the tests.
pub const PREFIX: &str = "snapshots";
/// A custom staging label some secrets carry.
pub const CUSTOM_LABEL: &str = "BLUE";
/// Description of the KMS keys the tests create.
pub const TEST_KEY_DESCRIPTION: &str = "secrets backup test key";

/// What a test created, to check it comes back and is never printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val {
    /// A string value.
    Str(String),
    /// A binary value.
    Bin(Vec<u8>),
}

impl Val {
    fn forms(&self) -> Vec<String> {
        match self {
            Val::Str(s) => vec![s.clone()],
            Val::Bin(b) => vec![
                base64::engine::general_purpose::STANDARD.encode(b),
                hex::encode(b),
            ],
        }
    }
}

/// What restore sets back on an existing secret: description, KMS key, tags, policy, and the
/// value behind each label restore sets (`AWSCURRENT` and custom labels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restorable<'a> {
    /// The description (empty counts as none).
    pub description: Option<&'a str>,
    /// The KMS key.
    pub kms_key_id: Option<&'a str>,
    /// The tags.
    pub tags: &'a BTreeMap<String, String>,
    /// The resource policy.
    pub policy: Option<&'a Value>,
    /// Label → value.
    pub values: BTreeMap<&'a str, &'a [u8]>,
}

/// A secret's state as restore promises to bring it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretState {
    /// The description.
    pub description: Option<String>,
    /// The KMS key.
    pub kms_key_id: Option<String>,
    /// The tags.
    pub tags: BTreeMap<String, String>,
    /// The resource policy (parsed).
    pub policy: Option<Value>,
    /// Label → (version id, value), for every label.
    pub labels: BTreeMap<String, (String, Vec<u8>)>,
}

impl SecretState {
    /// What must be identical after a restore of an existing secret: metadata and the values
    /// behind `AWSCURRENT` and custom labels (AWSPREVIOUS moves by design, versions are new).
    pub fn restorable(&self) -> Restorable<'_> {
        Restorable {
            description: self.description.as_deref().filter(|d| !d.is_empty()),
            kms_key_id: self.kms_key_id.as_deref(),
            tags: &self.tags,
            policy: self.policy.as_ref(),
            values: self
                .labels
                .iter()
                .filter(|(l, _)| *l != "AWSPREVIOUS" && *l != "AWSPENDING")
                .map(|(l, (_, v))| (l.as_str(), v.as_slice()))
                .collect(),
        }
    }

    /// What a recreated secret must have again: every label (AWSPREVIOUS and custom ones
    /// included) on the snapshot's version id with its value; AWSPENDING (a rotation in flight)
    /// is not recreated.
    pub fn recreatable_labels(&self) -> BTreeMap<&str, &(String, Vec<u8>)> {
        self.labels
            .iter()
            .filter(|(l, _)| *l != "AWSPENDING")
            .map(|(l, v)| (l.as_str(), v))
            .collect()
    }
}

/// What a run of the CLI gave.
pub struct CliOut {
    /// Its exit status (-1 when killed by a signal).
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl CliOut {
    /// Standard output parsed as JSON (panics, showing both streams, when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "CLI stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// moto with the snapshot bucket and key, clients, and what the test created and saw printed.
pub struct BackupWorld {
    /// The moto server.
    pub moto: Moto,
    /// Secrets Manager.
    pub sm: aws_sdk_secretsmanager::Client,
    /// S3 (path-style).
    pub s3: aws_sdk_s3::Client,
    /// KMS.
    pub kms: aws_sdk_kms::Client,
    /// The KMS key of the snapshots.
    pub key_arn: String,
    /// The manifest signing key (`BACKUP_SIGNING_KEY_ID`).
    pub signing_key_arn: String,
    values: Mutex<Vec<Val>>,
    outputs: Mutex<Vec<String>>,
    hosts: Mutex<Vec<OutputLog>>,
}

impl Drop for BackupWorld {
    /// Every test that ran a binary through this world checks, at its end, that none of the
    /// values it created appears in anything the function or the CLI printed (at
    /// [`super::log_level`]).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let hosts = std::mem::take(&mut *self.hosts.lock().unwrap());
        let mut outputs = self.outputs.lock().unwrap();
        outputs.extend(hosts.iter().map(OutputLog::text));
        let ran_something = !outputs.is_empty();
        drop(outputs);
        if ran_something && !self.values.lock().unwrap().is_empty() {
            self.assert_no_values_leaked(&[]);
        }
    }
}

impl BackupWorld {
    /// Deletes `name` for good (no recovery window).
    pub async fn delete_for_good(&self, name: &str) {
        self.sm
            .delete_secret()
            .secret_id(name)
            .force_delete_without_recovery(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DeleteSecret {name}: {e:?}"));
    }

    /// moto, a versioned Object Lock bucket (governance, 1 day), a KMS key and a signing key.
    pub async fn start() -> BackupWorld {
        let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
        let config = moto.sdk_config().await;
        let mut world = BackupWorld {
            sm: aws_sdk_secretsmanager::Client::new(&config),
            s3: moto.s3_client().await,
            kms: aws_sdk_kms::Client::new(&config),
            key_arn: String::new(),
            signing_key_arn: String::new(),
            moto,
            values: Mutex::new(vec![]),
            outputs: Mutex::new(vec![]),
            hosts: Mutex::new(vec![]),
        };
        create_locked_bucket(&world.s3, BUCKET, None).await;
        let key_arn = create_key(&world.kms, TEST_KEY_DESCRIPTION).await;
        world.key_arn = key_arn;
        world.signing_key_arn = create_signing_key(&world.kms, TEST_KEY_DESCRIPTION).await;
        world
    }

    /// moto's environment plus the function's configuration, then `extra` (which overrides).
    pub fn env(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.moto.env();
        env.push(("RUST_LOG".to_string(), super::log_level()));
        env.extend(
            [
                ("BACKUP_BUCKET", BUCKET),
                ("BACKUP_PREFIX", PREFIX),
                ("BACKUP_KMS_KEY_ID", self.key_arn.as_str()),
                ("BACKUP_SIGNING_KEY_ID", self.signing_key_arn.as_str()),
                ("BACKUP_CONCURRENCY", "16"),
                ("BACKUP_PART_SIZE", "16KiB"),
                // The whole quotas: moto is the only client here (tests/backup_scale_path.rs
                // checks the default share's limiter).
                ("BACKUP_QUOTA_SHARE", "100"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    /// The real `backup-lambda` behind a local Runtime API, with [`Self::env`] plus `extra`.
    pub async fn lambda(&self, extra: &[(&str, &str)]) -> LambdaHost {
        let env = self.env(extra);
        let host = tokio::task::spawn_blocking(move || {
            LambdaHost::start(&testkit::binary("backup-lambda"), &env)
        })
        .await
        .unwrap();
        self.hosts.lock().unwrap().push(host.output_log());
        host
    }

    /// Invokes the function once (on a blocking thread).
    pub fn invoke(&self, host: &LambdaHost, event: &Value) -> Result<Value, InvokeError> {
        tokio::task::block_in_place(|| host.invoke(event))
    }

    /// The function's output once it contains `needle` (its stdout is read by another thread,
    /// so a line printed just before the response may arrive a moment later).
    pub fn output_containing(&self, host: &LambdaHost, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let out = host.output();
            if out.contains(needle) || std::time::Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Remember what the function printed (call before dropping the host).
    pub fn capture(&self, host: &LambdaHost) -> String {
        let out = host.output();
        self.outputs.lock().unwrap().push(out.clone());
        out
    }

    /// Runs the real CLI with the test environment (and `extra`).
    pub fn cli(&self, args: &[&str], extra: &[(&str, &str)]) -> CliOut {
        let bin = testkit::binary("secrets-backup");
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for k in ["PATH", "HOME"] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        for (k, v) in self.env(extra) {
            cmd.env(k, v);
        }
        let out = tokio::task::block_in_place(|| cmd.output()).expect("run secrets-backup");
        let out = CliOut {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.outputs
            .lock()
            .unwrap()
            .push(format!("{}\n{}", out.stdout, out.stderr));
        out
    }

    /// Like [`cli`](Self::cli), asserting the exit code.
    pub fn cli_ok(&self, args: &[&str], expect_code: i32) -> CliOut {
        let out = self.cli(args, &[]);
        assert_eq!(
            out.code, expect_code,
            "secrets-backup {args:?} exited {}\nstdout:\n{}\nstderr:\n{}",
            out.code, out.stdout, out.stderr
        );
        out
    }

    /// A fresh, distinctive string value (remembered).
    pub fn string_value(&self) -> String {
        let v = format!(
            "{{\"username\":\"app\",\"password\":\"pw-{}\"}}",
            uuid::Uuid::new_v4().simple()
        );
        self.values.lock().unwrap().push(Val::Str(v.clone()));
        v
    }

    /// A fresh, distinctive value of a kind the test builds itself (a parameter's, say),
    /// remembered for the leak check.
    pub fn remember(&self, value: &str) -> String {
        self.values
            .lock()
            .unwrap()
            .push(Val::Str(value.to_string()));
        value.to_string()
    }

    /// A fresh random binary value (remembered).
    pub fn binary_value(&self) -> Vec<u8> {
        let mut b = uuid::Uuid::new_v4().as_bytes().to_vec();
        b.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        self.values.lock().unwrap().push(Val::Bin(b.clone()));
        b
    }

    /// PutSecretValue with a fresh value of the same kind; returns the version id.
    pub async fn put_new_value(&self, name: &str, binary: bool, labels: &[&str]) -> String {
        let mut req = self
            .sm
            .put_secret_value()
            .secret_id(name)
            .set_version_stages(Some(labels.iter().map(|l| l.to_string()).collect()));
        req = if binary {
            req.secret_binary(Blob::new(self.binary_value()))
        } else {
            req.secret_string(self.string_value())
        };
        req.send()
            .await
            .unwrap_or_else(|e| panic!("PutSecretValue {name}: {e:?}"))
            .version_id()
            .unwrap()
            .to_string()
    }

    /// Creates secret `i` of the varied set: a string (or every 7th, binary) value, a second
    /// current version for even `i` (the first becomes AWSPREVIOUS), a custom-labelled version
    /// every 5th, a pending one every 11th, tags on all, a resource policy every 4th, a
    /// customer KMS key every 13th.
    pub async fn create_varied(&self, name: &str, i: usize, cmk: &str) {
        let binary = i.is_multiple_of(7);
        let mut req = self
            .sm
            .create_secret()
            .name(name)
            .description(format!("test secret {i}"))
            .tags(tag("app", "demo"))
            .tags(tag("index", &i.to_string()));
        if i.is_multiple_of(3) {
            req = req.tags(tag(
                "team",
                if i.is_multiple_of(2) {
                    "payments"
                } else {
                    "search"
                },
            ));
        }
        if i.is_multiple_of(13) {
            req = req.kms_key_id(cmk);
        }
        req = if binary {
            req.secret_binary(Blob::new(self.binary_value()))
        } else {
            req.secret_string(self.string_value())
        };
        req.send()
            .await
            .unwrap_or_else(|e| panic!("CreateSecret {name}: {e:?}"));
        if i.is_multiple_of(2) {
            self.put_new_value(name, binary, &["AWSCURRENT"]).await;
        }
        if i.is_multiple_of(5) {
            self.put_new_value(name, binary, &[CUSTOM_LABEL]).await;
        }
        if i.is_multiple_of(11) {
            self.put_new_value(name, binary, &["AWSPENDING"]).await;
        }
        if i.is_multiple_of(4) {
            self.sm
                .put_resource_policy()
                .secret_id(name)
                .resource_policy(policy(i))
                .send()
                .await
                .unwrap_or_else(|e| panic!("PutResourcePolicy {name}: {e:?}"));
        }
    }

    /// `n` varied secrets named `<prefix>NNN`, created 16 at a time; returns their names.
    pub async fn populate(&self, prefix: &str, n: usize) -> Vec<String> {
        let cmk = create_key(&self.kms, TEST_KEY_DESCRIPTION).await;
        let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i:03}")).collect();
        futures::stream::iter(names.iter().enumerate())
            .map(|(i, name)| self.create_varied(name, i, &cmk))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
        names
    }

    /// Number of labelled versions of the varied set of `n` secrets.
    pub fn varied_versions(n: usize) -> usize {
        (0..n)
            .map(|i| {
                1 + usize::from(i.is_multiple_of(2))
                    + usize::from(i.is_multiple_of(5))
                    + usize::from(i.is_multiple_of(11))
            })
            .sum()
    }

    /// The live state of a secret, `None` when it does not exist (or is scheduled for deletion).
    pub async fn state(&self, name: &str) -> Option<SecretState> {
        let d = match self.sm.describe_secret().secret_id(name).send().await {
            Ok(d) => d,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return None
            }
            Err(e) => panic!("DescribeSecret {name}: {e:?}"),
        };
        if d.deleted_date().is_some() {
            return None;
        }
        let policy = self
            .sm
            .get_resource_policy()
            .secret_id(name)
            .send()
            .await
            .unwrap()
            .resource_policy()
            .map(|p| serde_json::from_str(p).expect("policy JSON"));
        let mut labels = BTreeMap::new();
        for (version, stages) in d.version_ids_to_stages().cloned().unwrap_or_default() {
            if stages.is_empty() {
                continue;
            }
            let v = self
                .sm
                .get_secret_value()
                .secret_id(name)
                .version_id(&version)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GetSecretValue {name} {version}: {e:?}"));
            let bytes = match (v.secret_string(), v.secret_binary()) {
                (Some(s), _) => s.as_bytes().to_vec(),
                (None, Some(b)) => b.as_ref().to_vec(),
                _ => panic!("version without value"),
            };
            for s in stages {
                labels.insert(s, (version.clone(), bytes.clone()));
            }
        }
        Some(SecretState {
            description: d.description().map(String::from),
            kms_key_id: d.kms_key_id().map(String::from),
            tags: d
                .tags()
                .iter()
                .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
                .collect(),
            policy,
            labels,
        })
    }

    /// The state of many secrets, 16 at a time.
    pub async fn states(&self, names: &[String]) -> BTreeMap<String, Option<SecretState>> {
        futures::stream::iter(names)
            .map(|n| async move { (n.clone(), self.state(n).await) })
            .buffer_unordered(16)
            .collect()
            .await
    }

    /// Fails if any remembered secret value appears in any captured output (or in `more`). One
    /// pass per output for all values at once (Aho-Corasick): trace-level outputs are megabytes.
    pub fn assert_no_values_leaked(&self, more: &[String]) {
        let outputs = self.outputs.lock().unwrap();
        let all: Vec<&String> = outputs.iter().chain(more).collect();
        assert!(!all.is_empty());
        let values = self.values.lock().unwrap();
        assert!(!values.is_empty());
        let forms: Vec<String> = values.iter().flat_map(Val::forms).collect();
        // A DFA: the outputs reach hundreds of MB at trace level, and the default automaton's
        // prefilter (rare bytes that hex and base64 text is full of) made this search take
        // minutes in the fail point suites.
        let finder = aho_corasick::AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&forms)
            .expect("patterns");
        for out in &all {
            assert!(
                !finder.is_match(out.as_str()),
                "a secret value appears in captured output"
            );
        }
    }

    /// Snapshot objects in the bucket under the source account/region.
    pub async fn objects(&self) -> Vec<String> {
        list_keys(&self.s3, BUCKET).await
    }

    /// An object of the snapshot bucket (panics when missing).
    pub async fn get_object(&self, key: &str) -> Vec<u8> {
        self.s3
            .get_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetObject {key}: {e:?}"))
            .body
            .collect()
            .await
            .unwrap()
            .to_vec()
    }

    /// Overwrite an object as someone with write access to the bucket would (a new object
    /// version; the function itself never overwrites).
    pub async fn overwrite_object(&self, key: &str, data: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(data.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject {key}: {e:?}"));
    }
}

/// A Secrets Manager tag.
pub fn tag(k: &str, v: &str) -> aws_sdk_secretsmanager::types::Tag {
    aws_sdk_secretsmanager::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
}

/// The resource policy of the `i`-th varied secret.
pub fn policy(i: usize) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": format!("DenyDelete{i}"),
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "secretsmanager:DeleteSecret",
            "Resource": "*"
        }]
    })
    .to_string()
}

/// Every key in `bucket`.
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    let mut keys = vec![];
    while let Some(page) = pages.next().await {
        let page = page.expect("ListObjectsV2");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
    }
    keys
}

/// The classic EventBridge scheduled-rule event.
pub fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2025-01-01T03:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/secrets-backup"],
        "detail": {}
    })
}

/// An HTTP/1.1 proxy in front of Secrets Manager that answers `GetSecretValue` for secrets
/// whose id contains `deny` with `AccessDeniedException` (and, in a `BatchGetSecretValue`
/// answer, moves them from `SecretValues` to `Errors` with that code, as AWS does for a secret
/// the caller may not read), and forwards everything else to `upstream`. Every call is recorded
/// with its time and operation (`calls`). Point a process at it with
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER`. One thread per connection (the SDK keeps up to
/// `BACKUP_CONCURRENCY` connections open).
pub struct FaultProxy {
    addr: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    accept: Option<JoinHandle<()>>,
    /// How many `GetSecretValue` calls (or secrets in `BatchGetSecretValue` answers) were denied.
    pub denied: Arc<Mutex<u32>>,
    /// Every call: when it arrived and its operation (`X-Amz-Target` without the service).
    pub calls: Calls,
}

/// The calls a [`FaultProxy`] saw.
pub type Calls = Arc<Mutex<Vec<(std::time::Instant, String)>>>;

impl FaultProxy {
    /// How many calls of `op` (`ListSecrets`, `BatchGetSecretValue`, …) it saw.
    pub fn count(&self, op: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, o)| o == op)
            .count()
    }

    /// The most calls of `op` within any window of `window` (from each call's arrival).
    pub fn max_in_window(&self, op: &str, window: std::time::Duration) -> usize {
        let times: Vec<_> = self
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, o)| o == op)
            .map(|(t, _)| *t)
            .collect();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t - times[i] < window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Forgets the calls seen so far.
    pub fn reset_calls(&self) {
        self.calls.lock().unwrap().clear();
    }
}

impl FaultProxy {
    /// Starts the proxy in front of `upstream`, denying secrets whose id contains `deny`.
    pub fn start(upstream: String, deny: &str) -> FaultProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy listens");
        let addr = listener.local_addr().unwrap();
        let denied = Arc::new(Mutex::new(0));
        let calls: Calls = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (deny, d, st, c) = (
            deny.to_string(),
            denied.clone(),
            stop.clone(),
            calls.clone(),
        );
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (upstream, deny, denied, calls) =
                    (upstream.clone(), deny.clone(), d.clone(), c.clone());
                std::thread::spawn(move || serve(conn, &upstream, &deny, &denied, &calls));
            }
        });
        FaultProxy {
            addr,
            stop,
            accept: Some(accept),
            denied,
            calls,
        }
    }

    /// The proxy's endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Serve one keep-alive connection until the client closes it.
fn serve(
    conn: std::net::TcpStream,
    upstream: &str,
    deny: &str,
    denied: &Mutex<u32>,
    calls: &Mutex<Vec<(std::time::Instant, String)>>,
) {
    use std::io::{BufRead, BufReader, Write};
    let agent = ureq::AgentBuilder::new().build();
    let mut writer = conn.try_clone().expect("clone the connection");
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("GET").to_string(),
            parts.next().unwrap_or("/").to_string(),
        );
        let mut headers = vec![];
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let target = header("x-amz-target").unwrap_or_default().to_string();
        let op = target.rsplit('.').next().unwrap_or_default().to_string();
        calls
            .lock()
            .unwrap()
            .push((std::time::Instant::now(), op.clone()));
        let (status, resp_headers, mut resp_body) = if header("x-amz-target")
            == Some("secretsmanager.GetSecretValue")
            && serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["SecretId"].as_str().map(|id| id.contains(deny)))
                .unwrap_or(false)
        {
            *denied.lock().unwrap() += 1;
            let msg = json!({"__type": "AccessDeniedException",
                "message": "User is not authorized to perform secretsmanager:GetSecretValue (injected by the test proxy)"});
            (
                400,
                vec![(
                    "Content-Type".to_string(),
                    "application/x-amz-json-1.1".to_string(),
                )],
                msg.to_string().into_bytes(),
            )
        } else {
            let mut req = agent.request(&method, &format!("{upstream}{path}"));
            for (k, v) in &headers {
                if !["host", "content-length", "transfer-encoding", "connection"]
                    .iter()
                    .any(|n| k.eq_ignore_ascii_case(n))
                {
                    req = req.set(k, v);
                }
            }
            let resp = match req.send_bytes(&body) {
                Ok(r) | Err(ureq::Error::Status(_, r)) => r,
                Err(e) => {
                    let _ = write!(
                        writer,
                        "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
                    );
                    eprintln!("fault proxy: {e}");
                    continue;
                }
            };
            let status = resp.status();
            let hs: Vec<(String, String)> = resp
                .headers_names()
                .iter()
                .filter(|n| {
                    !["content-length", "transfer-encoding", "connection"]
                        .iter()
                        .any(|x| n.eq_ignore_ascii_case(x))
                })
                .map(|n| (n.clone(), resp.header(n).unwrap_or("").to_string()))
                .collect();
            let mut data = vec![];
            let _ = resp.into_reader().read_to_end(&mut data);
            (status, hs, data)
        };
        if op == "BatchGetSecretValue" && status == 200 {
            if let Ok(mut answer) = serde_json::from_slice::<Value>(&resp_body) {
                let values = answer["SecretValues"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let (refused, kept): (Vec<Value>, Vec<Value>) = values.into_iter().partition(|v| {
                    v["ARN"].as_str().is_some_and(|a| a.contains(deny))
                        || v["Name"].as_str().is_some_and(|n| n.contains(deny))
                });
                if !refused.is_empty() {
                    *denied.lock().unwrap() += refused.len() as u32;
                    let mut errors = answer["Errors"].as_array().cloned().unwrap_or_default();
                    errors.extend(refused.iter().map(|v| {
                        json!({"SecretId": v["ARN"], "ErrorCode": "AccessDeniedException",
                            "Message": "User is not authorized to perform secretsmanager:GetSecretValue (injected by the test proxy)"})
                    }));
                    answer["SecretValues"] = Value::Array(kept);
                    answer["Errors"] = Value::Array(errors);
                    resp_body = answer.to_string().into_bytes();
                }
            }
        }
        let mut out = format!("HTTP/1.1 {status} X\r\n");
        for (k, v) in resp_headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", resp_body.len()));
        if writer
            .write_all(out.as_bytes())
            .and_then(|_| writer.write_all(&resp_body))
            .is_err()
        {
            return;
        }
    }
}

use std::io::Read as _;
