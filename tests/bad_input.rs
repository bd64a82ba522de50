//! Bad input, table-driven, through the real binaries: malformed rotation events, secret JSON
//! and environment for `rotate-postgres` (behind the Lambda Runtime API host, against a real
//! PostgreSQL and moto), malformed events and environment for `backup-lambda`, malformed
//! arguments and environment for `secrets-backup`. Each must fail with an error that names what
//! is wrong, print no secret value, and change nothing: the secrets' versions and labels and
//! the roles' password hashes are the same before and after. One PostgreSQL and one moto serve
//! the whole table.

use std::collections::BTreeMap;
use std::time::Instant;

use aws_sdk_secretsmanager::primitives::Blob;
use e2e::World;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::lambda::LambdaHost;

/// What a case checks: the error's text holds every `expected` string (case-insensitive).
struct Outcome {
    case: String,
    error: String,
}

/// The state nothing may change: the secrets' versions, their labels and (as SHA-256, never the
/// value) what each holds, and every role's password hash.
#[derive(PartialEq)]
struct Snapshot {
    labels: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    contents: BTreeMap<String, String>,
    roles: BTreeMap<String, Option<String>>,
}

async fn snapshot(world: &World, arns: &[String]) -> Snapshot {
    // Read concurrently: this runs twice per case.
    let labelled = futures::future::join_all(arns.iter().map(|arn| world.labels(arn))).await;
    let reads = arns.iter().zip(&labelled).flat_map(|(arn, versions)| {
        versions.keys().map(move |version| async move {
            let read = world
                .sm
                .get_secret_value()
                .secret_id(arn)
                .version_id(version)
                .send()
                .await;
            let digest = match read {
                Ok(out) => {
                    let bytes = out
                        .secret_string()
                        .map(|s| s.as_bytes().to_vec())
                        .or_else(|| out.secret_binary().map(|b| b.as_ref().to_vec()))
                        .unwrap_or_default();
                    hex::encode(Sha256::digest(&bytes))
                }
                Err(_) => "no value".to_string(),
            };
            (format!("{arn} {version}"), digest)
        })
    });
    let roles = async {
        let rows = world
            .pg
            .admin()
            .await
            .query("SELECT rolname::text, rolpassword FROM pg_authid", &[])
            .await
            .expect("read pg_authid");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let (contents, roles) = futures::join!(futures::future::join_all(reads), roles);
    Snapshot {
        labels: arns.iter().cloned().zip(labelled).collect(),
        contents: contents.into_iter().collect(),
        roles,
    }
}

/// A secret case: name, `(SecretString, its password)` (`None`: a binary secret), expected.
type SecretCase<'a> = (&'a str, Option<(String, String)>, &'a [&'a str]);
/// A backup-lambda case: name, extra environment, event, expected.
type BackupCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, Value, &'a [&'a str]);
/// A secrets-backup case: name, arguments, extra environment, expected.
type CliCase<'a> = (
    &'a str,
    Vec<&'a str>,
    Vec<(&'a str, &'a str)>,
    &'a [&'a str],
);

/// A random password nobody could find in an output by chance.
fn password(tag: &str) -> String {
    format!("{tag}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_inputs_are_refused_naming_what_is_wrong_and_change_nothing() {
    let started = Instant::now();
    let world = World::start().await;
    let mut values: Vec<String> = Vec::new(); // every secret value: none may be printed
    let mut arns: Vec<String> = Vec::new();

    // A well-formed secret in rotation, and another one (for "another secret's token").
    let good_password = password("good");
    values.push(good_password.clone());
    let good = world
        .role_with_secret("bad_input_good", &good_password)
        .await;
    let good_token = world.begin_rotation(&good).await;
    let other_password = password("other");
    values.push(other_password.clone());
    let other = world
        .role_with_secret("bad_input_other", &other_password)
        .await;
    let other_token = world.begin_rotation(&other).await;
    let unrotated_password = password("unrotated");
    values.push(unrotated_password.clone());
    let unrotated = world
        .role_with_secret("bad_input_unrotated", &unrotated_password)
        .await;
    arns.extend([good.clone(), other.clone(), unrotated.clone()]);

    let lambda = world.rotation_lambda(&[]).await;
    let mut outcomes: Vec<(Outcome, &[&str])> = Vec::new();
    let mut changed: Vec<String> = Vec::new();

    // ---- Rotation events ------------------------------------------------------------------
    let event = |step: &str, secret: &str, token: &str| json!({"Step": step, "SecretId": secret, "ClientRequestToken": token});
    let long_id = format!(
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}",
        "x".repeat(4096)
    );
    let other_expected = [other_token.as_str(), "no stage for rotation"];
    let good_expected = [good_token.as_str(), "no stage for rotation"];
    let events: Vec<(&str, Value, &[&str])> = vec![
        (
            "event: an array",
            json!([event("createSecret", &good, &good_token)]),
            &["array"],
        ),
        (
            "event: a string",
            json!("createSecret"),
            &["string", "rotation event"],
        ),
        ("event: a number", json!(42), &["number", "rotation event"]),
        ("event: null", Value::Null, &["null", "rotation event"]),
        ("event: an empty object", json!({}), &["'Step'", "missing"]),
        (
            "event: no SecretId",
            json!({"Step": "createSecret", "ClientRequestToken": good_token}),
            &["'SecretId'", "missing"],
        ),
        (
            "event: no ClientRequestToken",
            json!({"Step": "createSecret", "SecretId": good}),
            &["'ClientRequestToken'", "missing"],
        ),
        (
            "event: Step is a number",
            json!({"Step": 1, "SecretId": good, "ClientRequestToken": good_token}),
            &["'Step'", "number"],
        ),
        (
            "event: SecretId is null",
            json!({"Step": "createSecret", "SecretId": null, "ClientRequestToken": good_token}),
            &["'SecretId'", "null"],
        ),
        (
            "event: ClientRequestToken is an object",
            json!({"Step": "createSecret", "SecretId": good, "ClientRequestToken": {"id": good_token}}),
            &["'ClientRequestToken'", "object"],
        ),
        (
            "event: RotationToken is an array",
            json!({"Step": "createSecret", "SecretId": good, "ClientRequestToken": good_token,
                   "RotationToken": ["x"]}),
            &["'RotationToken'", "array"],
        ),
        (
            "event: empty Step",
            event("", &good, &good_token),
            &["'Step'", "empty"],
        ),
        (
            "event: unknown step",
            event("rotateSecret", &good, &good_token),
            &["invalid step", "rotateSecret"],
        ),
        (
            "event: control characters in Step",
            event("create\u{0}Secret\u{1b}[2J", &good, &good_token),
            &["invalid step"],
        ),
        (
            "event: wrong token",
            event("setSecret", &good, "00000000-0000-4000-8000-000000000000"),
            &[
                "00000000-0000-4000-8000-000000000000",
                "no stage for rotation",
            ],
        ),
        (
            "event: another secret's token",
            event("setSecret", &good, &other_token),
            &other_expected,
        ),
        (
            "event: a secret that does not exist",
            event("createSecret", "no/such/secret", &good_token),
            &["no/such/secret"],
        ),
        (
            "event: a token on a secret not in rotation",
            event("createSecret", &unrotated, &good_token),
            &good_expected,
        ),
        (
            "event: a 4 KiB SecretId",
            event("createSecret", &long_id, &good_token),
            &["createSecret"],
        ),
        (
            "event: preflight without SecretId",
            json!({"preflight": true}),
            &["SecretId"],
        ),
        (
            "event: preflight with a numeric SecretId",
            json!({"preflight": true, "SecretId": 7}),
            &["SecretId"],
        ),
    ];
    for (case, event, expected) in events {
        let before = snapshot(&world, &arns).await;
        let result = tokio::task::block_in_place(|| lambda.host.invoke(&event));
        if snapshot(&world, &arns).await != before {
            changed.push(case.to_string());
        }
        let error = match result {
            Ok(answer) => format!("<succeeded: {answer}>"),
            Err(e) => e.to_string(),
        };
        outcomes.push((
            Outcome {
                case: case.into(),
                error,
            },
            expected,
        ));
    }

    // ---- Secret JSON: AWSCURRENT holds the malformed value; createSecret must refuse it ------
    let (host, port) = (world.pg.host().to_string(), world.pg.port());
    let base = |user: &str, pw: &str| {
        json!({"engine": "postgres", "host": host, "port": port, "username": user,
               "password": pw, "dbname": "postgres"})
    };
    let with = |user: &str, field: &str, value: Value| {
        let pw = password("field");
        let mut secret = base(user, &pw);
        if value == json!("<remove>") {
            secret.as_object_mut().unwrap().remove(field);
        } else {
            secret[field] = value;
        }
        (secret.to_string(), pw)
    };
    let huge_user = "u".repeat(64 * 1024 - 200);
    let mut secret_cases: Vec<SecretCase<'_>> = vec![
        (
            "secret: invalid JSON",
            Some((
                "{\"password\": \"not-json-pw\",".into(),
                "not-json-pw".into(),
            )),
            &["not valid JSON"],
        ),
        (
            "secret: a JSON array",
            Some((json!(["array-pw"]).to_string(), "array-pw".into())),
            &["not a JSON object"],
        ),
        (
            "secret: a JSON string",
            Some((json!("string-pw").to_string(), "string-pw".into())),
            &["not a JSON object"],
        ),
        (
            "secret: no username",
            Some(with("bad_input_good", "username", json!("<remove>"))),
            &["'username'", "missing"],
        ),
        (
            "secret: no password",
            Some(with("bad_input_good", "password", json!("<remove>"))),
            &["'password'", "missing"],
        ),
        (
            "secret: no host",
            Some(with("bad_input_good", "host", json!("<remove>"))),
            &["'host'", "missing"],
        ),
        (
            "secret: no engine",
            Some(with("bad_input_good", "engine", json!("<remove>"))),
            &["'engine'", "missing"],
        ),
        (
            "secret: empty username",
            Some(with("bad_input_good", "username", json!(""))),
            &["'username'", "empty"],
        ),
        (
            "secret: numeric username",
            Some(with("bad_input_good", "username", json!(5))),
            &["'username'", "string"],
        ),
        (
            "secret: numeric password",
            Some(with("bad_input_good", "password", json!(12345))),
            &["'password'", "string"],
        ),
        (
            "secret: empty host",
            Some(with("bad_input_good", "host", json!(""))),
            &["'host'"],
        ),
        (
            "secret: port 70000",
            Some(with("bad_input_good", "port", json!(70000))),
            &["'port'"],
        ),
        (
            "secret: port -1",
            Some(with("bad_input_good", "port", json!(-1))),
            &["'port'"],
        ),
        (
            "secret: port 0",
            Some(with("bad_input_good", "port", json!(0))),
            &["'port'"],
        ),
        (
            "secret: port is text",
            Some(with("bad_input_good", "port", json!("fifty"))),
            &["'port'"],
        ),
        (
            "secret: port is an array",
            Some(with("bad_input_good", "port", json!([5432]))),
            &["'port'"],
        ),
        (
            "secret: unknown engine",
            Some(with("bad_input_good", "engine", json!("mysql"))),
            &["'engine'"],
        ),
        (
            "secret: engine is a number",
            Some(with("bad_input_good", "engine", json!(1))),
            &["'engine'"],
        ),
        (
            "secret: unknown ssl mode",
            Some(with("bad_input_good", "ssl", json!("sometimes"))),
            &["'ssl'"],
        ),
        (
            "secret: masterarn is a number",
            Some(with("bad_input_good", "masterarn", json!(1))),
            &["'masterarn'"],
        ),
        (
            "secret: control characters in username",
            Some(with(
                "bad\u{0}user\u{7}",
                "username",
                json!("bad\u{0}user\u{7}"),
            )),
            &["'username'", "control characters"],
        ),
        (
            "secret: 64 KiB username",
            Some(with(&huge_user, "username", json!(huge_user.clone()))),
            &["'username'", "63-byte limit"],
        ),
        (
            "secret: binary instead of a string",
            None,
            &["AWSCURRENT", "SecretString", "binary"],
        ),
    ];
    for (index, (case, secret, expected)) in secret_cases.drain(..).enumerate() {
        let name = format!("bad-input/secret-{index}");
        let create = world.sm.create_secret().name(&name);
        let create = match &secret {
            Some((text, pw)) => {
                values.push(pw.clone());
                create.secret_string(text)
            }
            None => {
                let pw = password("binary");
                values.push(pw.clone());
                create.secret_binary(Blob::new(base("bad_input_good", &pw).to_string()))
            }
        };
        let arn = create
            .send()
            .await
            .unwrap_or_else(|e| panic!("{case}: CreateSecret: {e:?}"))
            .arn()
            .expect("ARN")
            .to_string();
        let token = world.begin_rotation(&arn).await;
        arns.push(arn.clone());
        let before = snapshot(&world, &[arn.clone(), good.clone()]).await;
        let result = lambda.step("createSecret", &arn, &token);
        if snapshot(&world, &[arn.clone(), good.clone()]).await != before {
            changed.push(case.to_string());
        }
        let error = match result {
            Ok(answer) => format!("<succeeded: {answer}>"),
            Err(e) => e.to_string(),
        };
        outcomes.push((
            Outcome {
                case: case.into(),
                error,
            },
            expected,
        ));
    }
    let rotation_output = lambda.host.stop();

    // ---- Environment of rotate-postgres: every event fails naming the variable ---------------
    let env_cases: Vec<(&str, (&str, &str), &[&str])> = vec![
        ("env: unknown ROTATION_STRATEGY", ("ROTATION_STRATEGY", "sometimes"), &["ROTATION_STRATEGY"]),
        ("env: PASSWORD_LENGTH 0", ("PASSWORD_LENGTH", "0"), &["PASSWORD_LENGTH"]),
        ("env: PASSWORD_LENGTH not a number", ("PASSWORD_LENGTH", "long"), &["PASSWORD_LENGTH"]),
        ("env: DB_CA_BUNDLE_ONLY not a boolean", ("DB_CA_BUNDLE_ONLY", "maybe"), &["DB_CA_BUNDLE_ONLY"]),
        ("env: unknown PASSWORD_ENCRYPTION", ("PASSWORD_ENCRYPTION", "sha1"), &["PASSWORD_ENCRYPTION"]),
        ("env: EXCLUDE_CHARACTERS excludes everything", ("EXCLUDE_CHARACTERS", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), &["EXCLUDE_CHARACTERS"]),
        ("env: negative TEST_SECRET_REPLICA_WAIT_SECONDS", ("TEST_SECRET_REPLICA_WAIT_SECONDS", "-3"), &["TEST_SECRET_REPLICA_WAIT_SECONDS"]),
    ];
    let mut env_output = String::new();
    for (case, (key, value), expected) in env_cases {
        let lambda = world.rotation_lambda(&[(key, value)]).await;
        let before = snapshot(&world, std::slice::from_ref(&good)).await;
        let result = lambda.step("createSecret", &good, &good_token);
        if snapshot(&world, std::slice::from_ref(&good)).await != before {
            changed.push(case.to_string());
        }
        let error = match result {
            Ok(answer) => format!("<succeeded: {answer}>"),
            Err(e) => e.to_string(),
        };
        env_output.push_str(&lambda.host.stop());
        outcomes.push((
            Outcome {
                case: case.into(),
                error,
            },
            expected,
        ));
    }

    // ---- backup-lambda: malformed events and environment ------------------------------------
    let backup_env = |extra: &[(&str, &str)]| {
        let mut env = world.moto.env();
        env.push(("BACKUP_BUCKET".into(), "bad-input-bucket".into()));
        env.push(("BACKUP_KMS_KEY_ID".into(), "alias/bad-input".into()));
        env.push((
            "BACKUP_SIGNING_KEY_ID".into(),
            "alias/bad-input-signing".into(),
        ));
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    };
    let backup_cases: Vec<BackupCase<'_>> = vec![
        ("backup event: an array", vec![], json!([1]), &["event"]),
        (
            "backup event: unknown mode",
            vec![],
            json!({"mode": "explode"}),
            &["'mode'", "explode"],
        ),
        (
            "backup event: namePrefixes is a number",
            vec![],
            json!({"mode": "backup", "namePrefixes": 3}),
            &["'namePrefixes'"],
        ),
        (
            "backup env: BACKUP_BUCKET missing",
            vec![("BACKUP_BUCKET", "")],
            json!({}),
            &["BACKUP_BUCKET"],
        ),
        (
            "backup env: BACKUP_SIGNING_KEY_ID missing",
            vec![("BACKUP_SIGNING_KEY_ID", "")],
            json!({}),
            &["BACKUP_SIGNING_KEY_ID"],
        ),
        (
            "backup env: BACKUP_CONCURRENCY 0",
            vec![("BACKUP_CONCURRENCY", "0")],
            json!({}),
            &["BACKUP_CONCURRENCY"],
        ),
        (
            "backup env: BACKUP_PART_SIZE not a size",
            vec![("BACKUP_PART_SIZE", "huge")],
            json!({}),
            &["BACKUP_PART_SIZE"],
        ),
        (
            "backup env: BACKUP_S3_FORCE_PATH_STYLE not a boolean",
            vec![("BACKUP_S3_FORCE_PATH_STYLE", "perhaps")],
            json!({}),
            &["BACKUP_S3_FORCE_PATH_STYLE"],
        ),
        (
            "backup env: BACKUP_EXPECTED_UNREADABLE with a `*` inside",
            vec![("BACKUP_EXPECTED_UNREADABLE", "app/*/db")],
            json!({}),
            &["BACKUP_EXPECTED_UNREADABLE", "app/*/db"],
        ),
        (
            "backup env: BACKUP_EXPECTED_UNREADABLE `*` alone",
            vec![("BACKUP_EXPECTED_UNREADABLE", "legacy,*")],
            json!({}),
            &["BACKUP_EXPECTED_UNREADABLE"],
        ),
        (
            "backup env: BACKUP_LEASE_SECONDS not a number",
            vec![("BACKUP_LEASE_SECONDS", "soon")],
            json!({}),
            &["BACKUP_LEASE_SECONDS"],
        ),
    ];
    let backup_binary = testkit::binary("backup-lambda");
    let mut backup_output = String::new();
    for (case, extra, event, expected) in backup_cases {
        let env = backup_env(&extra);
        let binary = backup_binary.clone();
        let host = tokio::task::spawn_blocking(move || LambdaHost::start(&binary, &env))
            .await
            .unwrap();
        let before = snapshot(&world, std::slice::from_ref(&good)).await;
        let result = tokio::task::block_in_place(|| host.invoke(&event));
        if snapshot(&world, std::slice::from_ref(&good)).await != before {
            changed.push(case.to_string());
        }
        let error = match result {
            Ok(answer) => format!("<succeeded: {answer}>"),
            Err(e) => e.to_string(),
        };
        backup_output.push_str(&host.stop());
        outcomes.push((
            Outcome {
                case: case.into(),
                error,
            },
            expected,
        ));
    }

    // ---- secrets-backup: malformed arguments and environment (usage errors, exit 2) ---------
    let cli_cases: Vec<CliCase<'_>> = vec![
        (
            "cli: unknown command",
            vec!["frobnicate"],
            vec![],
            &["frobnicate"],
        ),
        ("cli: no bucket", vec!["list"], vec![], &["--bucket"]),
        (
            "cli: no signing key",
            vec!["list", "--bucket", "b"],
            vec![],
            &["--signing-key", "BACKUP_SIGNING_KEY_ID"],
        ),
        (
            "cli: --concurrency 0",
            vec!["list", "--bucket", "b", "--concurrency", "0"],
            vec![],
            &["--concurrency"],
        ),
        (
            "cli: --concurrency not a number",
            vec!["list", "--bucket", "b", "--concurrency", "many"],
            vec![],
            &["--concurrency"],
        ),
        (
            "cli: BACKUP_CONCURRENCY not a number",
            vec!["list", "--bucket", "b"],
            vec![("BACKUP_CONCURRENCY", "many")],
            &["concurrency"],
        ),
        (
            "cli: --as-of not a time",
            vec!["restore", "--bucket", "b", "--as-of", "yesterday"],
            vec![],
            &["--as-of"],
        ),
        (
            "cli: --snapshot without a value",
            vec!["verify", "--bucket", "b", "--snapshot"],
            vec![],
            &["--snapshot"],
        ),
        (
            "cli: unknown option",
            vec!["list", "--bucket", "b", "--colour"],
            vec![],
            &["--colour"],
        ),
    ];
    let cli_binary = testkit::binary("secrets-backup");
    let mut cli_output = String::new();
    for (case, args, extra, expected) in cli_cases {
        let mut env = world.moto.env();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let before = snapshot(&world, std::slice::from_ref(&good)).await;
        let output = std::process::Command::new(&cli_binary)
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .output()
            .expect("run secrets-backup");
        if snapshot(&world, std::slice::from_ref(&good)).await != before {
            changed.push(case.to_string());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cli_output.push_str(&text);
        let error = if output.status.code() == Some(2) {
            text
        } else {
            format!("<exit {:?}, not 2 (usage)>: {text}", output.status.code())
        };
        outcomes.push((
            Outcome {
                case: case.into(),
                error,
            },
            expected,
        ));
    }

    // ---- Verdicts ------------------------------------------------------------------------
    let mut failures = Vec::new();
    for (outcome, expected) in &outcomes {
        let lower = outcome.error.to_lowercase();
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|e| !lower.contains(&e.to_lowercase()))
            .collect();
        if outcome.error.starts_with('<') || !missing.is_empty() {
            failures.push(format!(
                "{}: expected an error naming {expected:?}, got: {}",
                outcome.case,
                testkit::tail(&outcome.error, 600)
            ));
        }
        if let Some(value) = values.iter().find(|v| outcome.error.contains(v.as_str())) {
            failures.push(format!(
                "{}: the error shows a secret value ({} chars)",
                outcome.case,
                value.len()
            ));
        }
    }
    let everything_printed = [rotation_output, env_output, backup_output, cli_output].concat();
    for value in &values {
        assert!(
            !everything_printed.contains(value.as_str()),
            "a secret value ({} chars) appears in a binary's output",
            value.len()
        );
    }
    assert!(
        changed.is_empty(),
        "cases that changed a version, a label or a role: {changed:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n")
    );
    assert!(outcomes.len() >= 40, "only {} cases", outcomes.len());
    println!(
        "bad input: {} malformed inputs refused, each naming what is wrong; nothing changed; {:.1} s",
        outcomes.len(),
        started.elapsed().as_secs_f64()
    );
}
