//! Many accounts and regions: `template.yaml`'s state machine (run by testkit's Amazon States
//! Language interpreter) fans out over the sources the real `backup-lambda` lists, and the
//! function backs up each spoke by assuming its read-only role with the external id, against
//! moto (whose STS ties an assumed role's credentials to the role's account, so each spoke's
//! secrets really live in another account).
//!
//! One source failing (another run holds its lease) does not stop the others, and the
//! execution fails naming it; a spoke whose run checkpoints before its deadline is invoked
//! again until it completes; the function refuses a source it was not configured for; with
//! `organization` the sources are the organization's accounts.

use std::collections::BTreeSet;

use backup::lambda::lease::{self, LeaseSource};
use backup::ports::aws::S3Store;
use e2e::backup::{BackupWorld, BUCKET, PREFIX};
use serde_json::{json, Value};
use testkit::step_functions::{self, Execution, StateError};

const HUB: &str = "123456789012";
const SPOKES: [&str; 2] = ["222222222222", "333333333333"];
const ROLE: &str = "secrets-backup-reader";
const EXTERNAL_ID: &str = "hub-ext-5b1e";
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:hub-secrets-backup";

/// Secrets Manager in `account` (moto: an assumed role's credentials act in its account).
async fn spoke_client(w: &BackupWorld, account: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&w.moto.sdk_config_in_account(account).await)
}

/// The template's state machine definition, substituted as CloudFormation would.
fn definition() -> Value {
    let template = testkit::cfn::decode("template.yaml");
    let sm = &template["Resources"]["BackupStateMachine"]["Properties"];
    assert_eq!(
        sm["DefinitionSubstitutions"]["BackupFunctionArn"],
        json!({"Fn::GetAtt": ["BackupFunction", "Arn"]})
    );
    step_functions::substitute(
        &sm["Definition"],
        &[
            ("BackupFunctionArn", FUNCTION_ARN),
            ("FanOutConcurrency", "4"),
        ],
    )
}

fn execute(
    w: &BackupWorld,
    host: &testkit::lambda::LambdaHost,
) -> (Result<Value, StateError>, Execution) {
    let invoke = |arn: &str, payload: &Value| {
        assert_eq!(arn, FUNCTION_ARN);
        w.invoke(host, payload).map_err(|e| StateError {
            error: e.error_type,
            cause: e.error_message,
        })
    };
    let mut trace = Execution::default();
    let out = step_functions::run(&definition(), json!({}), &invoke, &mut trace);
    (out, trace)
}

/// The accounts with a complete snapshot (a manifest) in the vault.
async fn accounts_with_manifests(w: &BackupWorld) -> BTreeSet<String> {
    w.objects()
        .await
        .into_iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .filter_map(|k| {
            k.strip_prefix(&format!("{PREFIX}/"))
                .and_then(|r| r.split('/').next())
                .map(String::from)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_state_machine_backs_up_every_spoke_and_fails_when_one_did() {
    let w = BackupWorld::start().await;
    // Two secrets in the hub's own account, three in each spoke.
    w.populate("hub/", 2).await;
    for spoke in SPOKES {
        let sm = spoke_client(&w, spoke).await;
        for i in 0..3 {
            let v = w.string_value();
            sm.create_secret()
                .name(format!("spoke/{spoke}/s{i}"))
                .secret_string(&v)
                .send()
                .await
                .unwrap();
        }
    }
    let accounts = format!("{HUB},{}", SPOKES.join(","));
    let host = w
        .lambda(&[
            ("BACKUP_SOURCE_ACCOUNTS", accounts.as_str()),
            ("BACKUP_SOURCE_ROLE_NAME", ROLE),
            ("BACKUP_SOURCE_EXTERNAL_ID", EXTERNAL_ID),
            // Two secrets per invocation: a spoke's run checkpoints and continues.
            ("BACKUP_LIST_PAGE_SIZE", "2"),
            ("BACKUP_DEADLINE_MARGIN_SECONDS", "900"),
        ])
        .await;

    // The second spoke's lease is held (another run is under way there).
    let store = S3Store::new(w.s3.clone(), BUCKET.into(), Some(w.key_arn.clone()));
    let held = lease::acquire(
        &store,
        LeaseSource {
            prefix: PREFIX,
            account: SPOKES[1],
            region: "us-east-1",
        },
        "held-by-the-test",
        chrono::Utc::now(),
        chrono::Duration::seconds(900),
    )
    .await
    .unwrap();

    let (out, trace) = execute(&w, &host);
    let err = out.expect_err("one source failed: the execution fails");
    assert_eq!(err.error, "SourcesFailed", "{err:?}");
    // Every source ran; the failed one did not stop the others.
    assert_eq!(trace.map_concurrency, vec![4]);
    assert_eq!(
        accounts_with_manifests(&w).await,
        BTreeSet::from([HUB.to_string(), SPOKES[0].to_string()]),
        "{:?}",
        trace.entered
    );
    // The spoke's run (3 secrets, 2 per invocation) was invoked again after "continue": the
    // hub's 2 secrets take one invocation, the first spoke two, the failed spoke one.
    let backups = trace
        .entered
        .iter()
        .filter(|s| *s == "BackUpEachSource/BackUpOneSource")
        .count();
    assert_eq!(backups, 4, "{:?}", trace.entered);
    assert!(trace
        .entered
        .contains(&"BackUpEachSource/SourceFailed".to_string()));
    assert!(trace.entered.contains(&"SourcesFailed".to_string()));
    assert!(host.output().contains("BackupInProgress"));

    // The spoke's snapshot verifies through the function (mode verify with its source).
    let verified = w
        .invoke(
            &host,
            &json!({"mode": "verify", "source": {"account": SPOKES[0], "region": "us-east-1"}}),
        )
        .unwrap();
    assert_eq!(verified["outcome"], "intact", "{verified:#}");

    // Once the other run is over, the next execution backs up every source.
    lease::release(&store, &held).await.unwrap();
    let (out, _) = execute(&w, &host);
    let out = out.expect("every source backed up");
    let outcomes: BTreeSet<(String, String)> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["account"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [HUB, SPOKES[0], SPOKES[1]]
            .iter()
            .map(|a| (a.to_string(), "complete".to_string()))
            .collect()
    );
    assert_eq!(accounts_with_manifests(&w).await.len(), 3);

    // A source this hub was not configured for is refused, naming the variable.
    let err = w
        .invoke(
            &host,
            &json!({"source": {"account": "444444444444", "region": "us-east-1"}}),
        )
        .unwrap_err();
    assert!(
        err.error_message.contains("BACKUP_SOURCE_ACCOUNTS"),
        "{err:?}"
    );
    w.capture(&host);
    w.assert_no_values_leaked(&[]);
    // The external id is a shared identifier, not a secret (the spoke's administrators know it),
    // but it is kept out of every line above DEBUG: only the SDK's own request traces carry it.
    for line in host.output().lines().filter(|l| l.contains(EXTERNAL_ID)) {
        assert!(
            line.contains(r#""level":"TRACE""#) || line.contains(r#""level":"DEBUG""#),
            "the external id in a line above DEBUG: {}",
            &line[..line.len().min(300)]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn organization_sources_are_its_active_accounts_in_each_region() {
    let w = BackupWorld::start().await;
    let org = aws_sdk_organizations::Client::new(&w.moto.sdk_config().await);
    org.create_organization().send().await.unwrap();
    org.create_account()
        .email("spoke@example.com")
        .account_name("spoke")
        .send()
        .await
        .unwrap();
    let host = w
        .lambda(&[
            ("BACKUP_SOURCE_ACCOUNTS", "organization"),
            ("BACKUP_SOURCE_REGIONS", "us-east-1,eu-west-1"),
            ("BACKUP_SOURCE_ROLE_NAME", ROLE),
            ("BACKUP_SOURCE_EXTERNAL_ID", EXTERNAL_ID),
        ])
        .await;
    let out = w.invoke(&host, &json!({"mode": "sources"})).unwrap();
    let sources = out["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 4, "2 accounts x 2 regions: {out:#}");
    assert!(sources.contains(&json!({"account": HUB, "region": "eu-west-1"})));
    let accounts: BTreeSet<&str> = sources
        .iter()
        .map(|s| s["account"].as_str().unwrap())
        .collect();
    assert_eq!(accounts.len(), 2);
    w.capture(&host);
}
