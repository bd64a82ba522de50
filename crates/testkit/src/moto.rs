//! The AWS emulator: a fresh moto server per [`Moto::start`], reached through the real AWS SDK.
//!
//! The server runs with testkit's additions to moto on its `PYTHONPATH`
//! (`crates/testkit/moto/sitecustomize.py`): the RDS calls moto lacks and the rotation uses
//! (Aurora custom endpoints: `CreateDBClusterEndpoint`, `DescribeDBClusterEndpoints`), answered
//! from moto's own RDS state; that file lists the behaviours it reproduces.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::Credentials;
use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::operation::rotate_secret::RotateSecretError;
use aws_sdk_secretsmanager::types::RotationRulesType;
use rotation::{AWSCURRENT, AWSPENDING};
use tempfile::TempDir;

/// The region every client and child process is pointed at.
const REGION: &str = "us-east-1";
/// moto's default account id.
const ACCOUNT_ID: &str = "123456789012";
/// Dummy credentials: moto accepts anything, and without them the SDK probes the instance
/// metadata service and fails.
const DUMMY: &str = "testing";
/// How long `start` waits for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Name of the (non-existent) rotation function `begin_rotation` names.
const ROTATION_FUNCTION: &str = "rotation-under-test";
/// How many free ports `start` tries (another process may grab one first).
const PORT_ATTEMPTS: usize = 3;

/// A running moto server on 127.0.0.1 and a free port; killed on drop, and on SIGINT / SIGTERM in
/// a binary that installed [`crate::cleanup::exit_on_signals`], its folder removed with it.
///
/// The executable is `MOTO_SERVER` if set, else `<workspace>/.venv/bin/moto_server`
/// (installed by `make venv`).
pub struct Moto {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: TempDir,
    /// What a signal runs: remove the folder, then (newer) kill the server.
    _cleanups: [crate::cleanup::Registration; 2],
}

impl Moto {
    /// Starts a fresh moto server and waits (up to 30 s) until it answers.
    ///
    /// Panics with the tail of the server's log when it does not come up.
    pub fn start() -> Moto {
        let executable = moto_executable();
        let (dir, dir_registration) = {
            let _starting = crate::cleanup::starting();
            let dir = tempfile::Builder::new()
                .prefix("testkit-moto-")
                .tempdir()
                .expect("create a temporary directory for moto");
            let registration = crate::cleanup::register_path(dir.path());
            (dir, registration)
        };
        let log_path = dir.path().join("moto.log");
        // A free port may be taken by someone else before moto binds it: retry a few times.
        for _ in 0..PORT_ATTEMPTS {
            let port = crate::free_port();
            if let Some((child, registration)) = spawn_until_ready(&executable, port, &log_path) {
                return Moto {
                    child,
                    port,
                    log_path,
                    _dir: dir,
                    _cleanups: [dir_registration, registration],
                };
            }
        }
        panic!("moto_server could not bind a free port in {PORT_ATTEMPTS} attempts");
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's socket address (for a proxy in front of it, e.g. [`crate::faults::AwsFaults`]).
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        (std::net::Ipv4Addr::LOCALHOST, self.port).into()
    }

    /// The region clients use: `us-east-1`.
    pub fn region(&self) -> &str {
        REGION
    }

    /// moto's default account id, `123456789012`.
    pub fn account_id(&self) -> &str {
        ACCOUNT_ID
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log_path.display()))
    }

    /// Starts recording every request from now on (moto's recorder), forgetting earlier ones.
    /// The recording holds request bodies, secret values included: it stays in this server's
    /// temporary directory, is deleted with it, and only operation names are read back.
    pub fn start_recording(&self) {
        for action in ["reset-recording", "start-recording"] {
            let url = format!("{}/moto-api/recorder/{action}", self.endpoint());
            http_agent()
                .post(&url)
                .call()
                .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        }
    }

    /// The operations recorded since [`Moto::start_recording`], in order: the `X-Amz-Target`
    /// header for JSON-protocol services (e.g. `secretsmanager.DescribeSecret`), else
    /// `METHOD url`.
    pub fn recorded_operations(&self) -> Vec<String> {
        let text = std::fs::read_to_string(recording_path(&self.log_path)).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|entry| {
                let target = entry["headers"]
                    .as_object()
                    .and_then(|h| {
                        h.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
                            .and_then(|(_, v)| v.as_str())
                    })
                    .map(str::to_string);
                target.unwrap_or_else(|| {
                    format!(
                        "{} {}",
                        entry["method"].as_str().unwrap_or("?"),
                        entry["url"].as_str().unwrap_or("?")
                    )
                })
            })
            .collect()
    }

    /// Clears all state in the emulator (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let url = format!("{}/moto-api/reset", self.endpoint());
        http_agent()
            .post(&url)
            .call()
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    }

    /// The environment a child process (one of our Lambda binaries) needs to reach this server
    /// through the real AWS SDK: endpoint, region and dummy credentials, and no instance
    /// metadata look-ups.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", DUMMY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", DUMMY.to_string()),
            ("AWS_SESSION_TOKEN", DUMMY.to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }

    /// An SDK configuration pointed at this server (endpoint, region, dummy static credentials).
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                DUMMY,
                DUMMY,
                Some(DUMMY.to_string()),
                None,
                "testkit-moto",
            ))
            .load()
            .await
    }

    /// An SDK configuration acting in another `account`: moto ties the credentials of an
    /// assumed role to the role's account (any role name; moto checks no trust), so what is
    /// created with it lives in that account.
    pub async fn sdk_config_in_account(&self, account: &str) -> SdkConfig {
        let base = self.sdk_config().await;
        let creds = aws_sdk_sts::Client::new(&base)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/testkit-admin"))
            .role_session_name("testkit")
            .send()
            .await
            .unwrap_or_else(|e| panic!("AssumeRole in {account}: {}", DisplayErrorContext(&e)))
            .credentials
            .expect("AssumeRole returns credentials");
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(
                creds.access_key_id,
                creds.secret_access_key,
                Some(creds.session_token),
                None,
                "testkit-moto-account",
            ))
            .load()
            .await
    }

    /// A Secrets Manager client for this server.
    pub async fn secrets_client(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config().await)
    }

    /// An S3 client for this server, with path-style addressing (moto on 127.0.0.1 cannot serve
    /// virtual-hosted bucket names).
    pub async fn s3_client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Plays Secrets Manager's part of a rotation up to the point where it would invoke the
    /// rotation function's `createSecret` step, and returns the new version's token.
    ///
    /// Real Secrets Manager's `RotateSecret` creates a new version whose id is a fresh token,
    /// labelled `AWSPENDING` and without a value, leaves `AWSCURRENT` where it was, enables
    /// rotation, and then invokes the function. moto (pinned 5.2.5) has no public API for a
    /// valueless version other than `RotateSecret` itself, and it cannot run our Lambda. So this
    /// calls `RotateSecret(ClientRequestToken = token, RotationLambdaARN =
    /// arn:aws:lambda:<region>:<account>:function:rotation-under-test, RotationRules = 30 days)`:
    /// moto adds the valueless `AWSPENDING` version (moving `AWSPENDING` off older versions) and
    /// enables rotation *before* it looks the function up, which does not exist, so the call
    /// fails with `ResourceNotFoundException`. That exact error is expected and ignored; any
    /// other outcome panics. See `rotate_secret` in moto/secretsmanager/models.py.
    ///
    /// moto's "previous rotation still in progress" check is inverted compared with AWS: it
    /// refuses when `AWSPENDING` sits on the same version as `AWSCURRENT` (the normal state after
    /// a completed rotation), and accepts a pending version left by an unfinished one. So when
    /// `AWSPENDING` shares the `AWSCURRENT` version, this first removes that label, as AWS in
    /// effect does when it starts the next rotation.
    ///
    /// Afterwards it verifies with `DescribeSecret` that the token maps to exactly
    /// `[AWSPENDING]`, that no other version carries `AWSPENDING`, that `AWSCURRENT` did not
    /// move and that rotation is enabled, and panics otherwise, so a moto upgrade that changes
    /// this behaviour is caught here rather than in confusing test failures.
    pub async fn begin_rotation(
        &self,
        client: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
    ) -> String {
        let token = uuid::Uuid::new_v4().to_string();
        self.begin_rotation_with_token(client, secret_id, &token)
            .await;
        token
    }

    /// [`Moto::begin_rotation`] with the caller's token (e.g. a sample event's
    /// `ClientRequestToken`) instead of a fresh one.
    pub async fn begin_rotation_with_token(
        &self,
        client: &aws_sdk_secretsmanager::Client,
        secret_id: &str,
        token: &str,
    ) {
        let token = token.to_string();
        let before = version_stages(client, secret_id).await;
        let current_before = version_with(&before, AWSCURRENT);
        if let Some(current) = &current_before {
            if before[current].iter().any(|stage| stage == AWSPENDING) {
                client
                    .update_secret_version_stage()
                    .secret_id(secret_id)
                    .version_stage(AWSPENDING)
                    .remove_from_version_id(current)
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "remove AWSPENDING from the AWSCURRENT version of {secret_id}: {}",
                            DisplayErrorContext(e)
                        )
                    });
            }
        }

        let function_arn =
            format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{ROTATION_FUNCTION}");
        let result = client
            .rotate_secret()
            .secret_id(secret_id)
            .client_request_token(&token)
            .rotation_lambda_arn(&function_arn)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(30)
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => panic!(
                "moto's RotateSecret on {secret_id} succeeded, but the rotation function \
                 {function_arn} does not exist: moto's behaviour changed, revisit begin_rotation"
            ),
            Err(error) => match error.as_service_error() {
                Some(RotateSecretError::ResourceNotFoundException(not_found))
                    if not_found
                        .message()
                        .is_some_and(|message| message.contains(&function_arn)) => {}
                _ => panic!(
                    "RotateSecret on {secret_id}: expected moto's ResourceNotFoundException for \
                     the missing function {function_arn}, got: {}",
                    DisplayErrorContext(error)
                ),
            },
        }

        let described = client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeSecret {secret_id}: {}", DisplayErrorContext(e)));
        let after = described
            .version_ids_to_stages()
            .cloned()
            .unwrap_or_default();
        let problem = if after.get(&token).map(Vec::as_slice) != Some(&[AWSPENDING.to_string()]) {
            Some(format!(
                "the token {token} is not labelled exactly [AWSPENDING]"
            ))
        } else if let Some(other) = after
            .iter()
            .find(|(id, stages)| **id != token && stages.iter().any(|s| s == AWSPENDING))
        {
            Some(format!("version {} still carries AWSPENDING", other.0))
        } else if version_with(&after, AWSCURRENT) != current_before {
            Some(format!("AWSCURRENT moved (was on {current_before:?})"))
        } else if described.rotation_enabled() != Some(true) {
            Some(format!(
                "rotation is not enabled (RotationEnabled = {:?})",
                described.rotation_enabled()
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            panic!(
                "begin_rotation({secret_id}): after moto's RotateSecret, {problem}; \
                 VersionIdsToStages = {after:?} (before: {before:?}). moto's RotateSecret \
                 behaviour changed: revisit testkit::moto::Moto::begin_rotation"
            );
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where moto records requests (see [`Moto::start_recording`]): beside its log.
fn recording_path(log_path: &Path) -> PathBuf {
    log_path.with_file_name("recording.jsonl")
}

/// Spawns moto_server on `port` (registered to be killed on a signal) and polls it until it
/// answers (`Some`), or until it exits because the port was taken (`None`). Panics with the log
/// tail on any other failure.
fn spawn_until_ready(
    executable: &Path,
    port: u16,
    log_path: &Path,
) -> Option<(Child, crate::cleanup::Registration)> {
    let log =
        File::create(log_path).unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
    let log_err = log.try_clone().expect("duplicate the moto log file handle");
    let mut python_path = std::ffi::OsString::from(extensions_dir());
    if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
        python_path.push(":");
        python_path.push(existing);
    }
    let starting = crate::cleanup::starting();
    let mut child = Command::new(executable)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // testkit's additions to moto (custom endpoints), imported through `sitecustomize`.
        .env("PYTHONPATH", python_path)
        // Request recording stays off until `start_recording`; the file lives in the temp dir.
        .env("MOTO_RECORDER_FILEPATH", recording_path(log_path))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", executable.display()));
    let registration =
        crate::cleanup::register_process(format!("kill moto (port {port})"), child.id());
    drop(starting);
    let read_log = || {
        std::fs::read(log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + START_TIMEOUT;
    let url = format!("http://127.0.0.1:{port}/moto-api/");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = read_log();
            if log.contains("Address already in use") {
                return None;
            }
            panic!(
                "moto_server exited ({status}) before answering; log:\n{}",
                crate::tail(&log, 4000)
            );
        }
        // Only a 200 counts: anything else on this port is not (yet) our moto.
        if matches!(agent.get(&url).call(), Ok(response) if response.status() == 200) {
            return Some((child, registration));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "moto_server did not answer {url} within {START_TIMEOUT:?}; log:\n{}",
                crate::tail(&read_log(), 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The directory of testkit's additions to moto (`sitecustomize.py`).
fn extensions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("moto")
}

/// A short-timeout HTTP agent for the moto management API.
fn http_agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
}

/// The moto_server executable: `MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server`.
fn moto_executable() -> PathBuf {
    let path = match std::env::var_os("MOTO_SERVER") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => crate::workspace_root().join(".venv/bin/moto_server"),
    };
    assert!(
        path.is_file(),
        "moto_server not found at {} (run `make venv`, or set MOTO_SERVER)",
        path.display()
    );
    path
}

/// `VersionIdsToStages` of a secret.
async fn version_stages(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> HashMap<String, Vec<String>> {
    client
        .describe_secret()
        .secret_id(secret_id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeSecret {secret_id}: {}", DisplayErrorContext(e)))
        .version_ids_to_stages()
        .cloned()
        .unwrap_or_default()
}

/// The version id carrying `stage`, if any.
fn version_with(stages: &HashMap<String, Vec<String>>, stage: &str) -> Option<String> {
    stages
        .iter()
        .find(|(_, labels)| labels.iter().any(|label| label == stage))
        .map(|(id, _)| id.clone())
}
