//! Alternating users whose host is a replica of the master's database, end to end: the real
//! `rotate-postgres` binary behind the testkit Lambda Runtime API, moto as Secrets Manager and
//! RDS, a real PostgreSQL primary and a real streaming standby of it
//! (`PgServer::start_standby`).
//!
//! RDS names the databases (moto's endpoints: a read replica, an Aurora custom endpoint, a
//! Global Database secondary); for the function only, those names resolve to 127.0.0.1
//! (`World::rotation_lambda_with_hosts`), the master's to the primary's port and the user's to
//! the standby's, and each server's certificate names them. So setSecret accepts the master
//! through the real RDS look-ups and changes the password on the primary, and testSecret logs in
//! on the standby, which may not have replayed the change yet: it retries, with a bounded wait,
//! only there.

use e2e::alternating::{
    cluster, custom_endpoint, global_cluster, global_member, instance, logs_in, master_json,
    rds_client, replica, setup_roles, user_json, APP_PASSWORD, MASTER_PASSWORD,
};
use e2e::{assert_no_secrets, Lambda, World};
use rotation::{ReplicaWait, AWSCURRENT, AWSPENDING};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::postgres::PgServer;

/// What the function logs before each retry (`src/steps/test.rs`).
const RETRY_LINE: &str = "testSecret retry";
/// What it logs when a refusal is not worth waiting for.
const NOT_STANDBY_LINE: &str = "the server is not a standby: failing without waiting";

/// How the user's host relates to the master's in RDS.
#[derive(Debug, Clone, Copy)]
enum Topology {
    /// `replica`, an RDS read replica of instance `primary`.
    ReadReplica,
    /// Custom endpoint `reporting` of Aurora cluster `aurora`; the master on its cluster endpoint.
    CustomEndpoint,
    /// The reader endpoint of `aurora-eu` (eu-west-1), a secondary cluster of Global Database
    /// `orders` whose primary cluster `aurora-g` the master uses.
    GlobalSecondary,
}

/// The primary (in `world`), its standby, the names RDS gives them, the secrets, the function.
struct Replica {
    world: World,
    standby: PgServer,
    replica_host: String,
    arn: String,
    lambda: Arc<Lambda>,
}

/// The master's endpoint and the user's, as RDS (moto) reports them.
async fn rds_names(world: &World, topology: Topology) -> (String, String) {
    let us = rds_client(world, "us-east-1").await;
    match topology {
        Topology::ReadReplica => {
            let primary = instance(&us, "primary", "postgres", None, false).await;
            let replica_host = replica(&us, "replica", "primary").await;
            (e2e::alternating::address(&primary), replica_host)
        }
        Topology::CustomEndpoint => {
            let aurora = cluster(&us, "aurora").await;
            instance(&us, "aurora-1", "aurora-postgresql", Some("aurora"), false).await;
            instance(&us, "aurora-2", "aurora-postgresql", Some("aurora"), false).await;
            let custom = custom_endpoint(&us, "reporting", "aurora", &["aurora-2"]).await;
            (aurora.endpoint().unwrap().to_string(), custom)
        }
        Topology::GlobalSecondary => {
            let eu = rds_client(world, "eu-west-1").await;
            global_cluster(&us, "orders").await;
            let primary = global_member(&us, "aurora-g", Some("orders")).await;
            let secondary = global_member(&eu, "aurora-eu", Some("orders")).await;
            instance(&eu, "eu-1", "aurora-postgresql", Some("aurora-eu"), false).await;
            (
                primary.endpoint().unwrap().to_string(),
                secondary.reader_endpoint().unwrap().to_string(),
            )
        }
    }
}

/// The roles on the primary, a standby of it, the RDS objects of `topology`, the master secret
/// on the primary's RDS name, the user's secret on the standby's, and the function with
/// `extra_env`, resolving both names.
async fn setup(topology: Topology, extra_env: &[(&str, &str)]) -> Replica {
    let world = World::start().await;
    setup_roles(&world).await;
    let (primary_host, replica_host) = rds_names(&world, topology).await;
    world.pg.serve_host_names(&[&primary_host]).await;
    let standby = world.pg.start_standby(&[&replica_host]).await;

    let mut master = master_json(&world);
    master["host"] = json!(primary_host);
    let master_arn = world.create_secret("rds/master", &master).await;
    let mut user = user_json(&world, "app", APP_PASSWORD, &master_arn);
    user["host"] = json!(replica_host);
    user["port"] = json!(standby.port().to_string());
    let arn = world.create_secret("prod/app", &user).await;
    let lambda = world
        .rotation_lambda_with_hosts(extra_env, &[&primary_host, &replica_host])
        .await;
    Replica {
        world,
        standby,
        replica_host,
        arn,
        lambda: Arc::new(lambda),
    }
}

impl Replica {
    /// createSecret, then setSecret with the standby's replay paused: the clone exists on the
    /// primary only. Returns the token.
    async fn set_while_replay_paused(&self) -> String {
        let token = self.world.begin_rotation(&self.arn).await;
        self.lambda.step("createSecret", &self.arn, &token).unwrap();
        self.standby.exec("SELECT pg_wal_replay_pause()").await;
        let set = self.lambda.step("setSecret", &self.arn, &token).unwrap();
        assert_eq!(set["outcome"], "user_created", "{set}");
        assert!(
            role_on(&self.world.pg, "app_clone").await,
            "created on the primary"
        );
        assert!(
            !role_on(&self.standby, "app_clone").await,
            "not replayed on the paused standby"
        );
        token
    }

    /// The value of the version labelled `stage`.
    async fn stage(&self, stage: &str) -> Value {
        self.world.stage(&self.arn, stage).await.expect(stage).1
    }

    /// The function's output, and the secrets that must not appear in it.
    async fn assert_no_secrets(&self) {
        let pending = self.stage(AWSPENDING).await;
        assert_no_secrets(
            &self.lambda.output(),
            &[
                APP_PASSWORD.into(),
                MASTER_PASSWORD.into(),
                pending["password"].as_str().unwrap().to_string(),
            ],
        );
    }
}

/// Whether `role` exists on `server` (a standby answers reads).
async fn role_on(server: &PgServer, role: &str) -> bool {
    server
        .admin()
        .await
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .is_some()
}

/// Whether `user` / `password` logs in on `server` (database appdb).
async fn logs_in_on(server: &PgServer, user: &str, password: &str) -> bool {
    server.try_login(user, password, "appdb").await.is_ok()
}

fn count(output: &str, line: &str) -> usize {
    output.matches(line).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn test_secret_waits_for_the_standby_to_replay_the_change() {
    let r = setup(Topology::ReadReplica, &[]).await;
    let token = r.set_while_replay_paused().await;

    // testSecret runs while replay is paused; replay resumes once the function has logged its
    // first retry (from this task, while the invocation is in progress).
    let started = Instant::now();
    let test = {
        let (lambda, arn) = (Arc::clone(&r.lambda), r.arn.clone());
        let event = testkit::rotation::event("testSecret", &arn, &token);
        tokio::task::spawn_blocking(move || lambda.host.invoke(&event))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&r.lambda.output(), RETRY_LINE) == 0 {
        assert!(
            Instant::now() < deadline && !test.is_finished(),
            "no retry logged; output:\n{}",
            r.lambda.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    r.standby.exec("SELECT pg_wal_replay_resume()").await;
    let tested = test.await.unwrap().unwrap();
    let took = started.elapsed();
    assert_eq!(tested["outcome"], "tested", "{tested}");

    let output = r.lambda.output();
    let retries = count(&output, RETRY_LINE);
    assert!(retries >= 1, "{output}");
    assert_eq!(
        count(&output, "AWSPENDING logs in: the standby has replayed"),
        1
    );
    assert!(output.contains("\"attempt\":1"), "{output}");
    eprintln!(
        "figures: testSecret logged {retries} retries and took {took:?} (replay resumed after \
         the first)"
    );

    r.lambda.step("finishSecret", &r.arn, &token).unwrap();
    let current = r.stage(AWSCURRENT).await;
    assert_eq!(current["username"], "app_clone");
    assert!(
        logs_in_on(
            &r.standby,
            "app_clone",
            current["password"].as_str().unwrap()
        )
        .await
    );
    r.assert_no_secrets().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn test_secret_fails_after_the_bounded_wait_while_replay_stays_paused() {
    let wait_seconds = 3;
    let r = setup(
        Topology::ReadReplica,
        &[("TEST_SECRET_REPLICA_WAIT_SECONDS", "3")],
    )
    .await;
    let token = r.set_while_replay_paused().await;
    let labels = r.world.labels(&r.arn).await;

    let started = Instant::now();
    let err = r
        .lambda
        .step("testSecret", &r.arn, &token)
        .expect_err("the standby never replays");
    let took = started.elapsed();
    assert_eq!(err.error_type, "ReplicaNotReplayed", "{err}");
    let expected = ReplicaWait::up_to(Duration::from_secs(wait_seconds)).delays();
    for part in [
        format!(
            "AWSPENDING still cannot log into {}:{}",
            r.replica_host,
            r.standby.port()
        ),
        "the replica has not replayed the password change made on the primary".to_string(),
        format!(
            "on each of {} retries over {wait_seconds} s",
            expected.len()
        ),
    ] {
        assert!(err.error_message.contains(&part), "{part:?} in {err}");
    }
    let output = r.lambda.output();
    assert_eq!(count(&output, RETRY_LINE), expected.len(), "{output}");
    eprintln!(
        "figures: testSecret gave up after {} retries in {took:?} (waits {expected:?})",
        expected.len()
    );

    // Nothing else changed: the labels; the clone on the primary with AWSPENDING's password; the
    // original user everywhere; the standby still without the clone.
    assert_eq!(r.world.labels(&r.arn).await, labels);
    let pending = r.stage(AWSPENDING).await;
    let pending_password = pending["password"].as_str().unwrap();
    assert!(logs_in(&r.world, "app_clone", pending_password).await);
    assert!(logs_in_on(&r.standby, "app", APP_PASSWORD).await);
    assert!(!role_on(&r.standby, "app_clone").await);

    // Once replay resumes, Secrets Manager's retry of the step passes without waiting.
    r.standby.exec("SELECT pg_wal_replay_resume()").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !role_on(&r.standby, "app_clone").await {
        assert!(Instant::now() < deadline, "replay did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tested = r.lambda.step("testSecret", &r.arn, &token).unwrap();
    assert_eq!(tested["outcome"], "tested");
    assert_eq!(count(&r.lambda.output(), RETRY_LINE), expected.len());
    r.lambda.step("finishSecret", &r.arn, &token).unwrap();
    r.assert_no_secrets().await;
}

/// A wrong AWSPENDING on a primary is not a replica lag: testSecret fails at once, with the
/// default wait configured (30 s).
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_by_a_primary_fails_at_once() {
    let world = World::start().await;
    setup_roles(&world).await;
    let master_arn = world
        .create_secret("rds/master", &master_json(&world))
        .await;
    let arn = world
        .create_secret(
            "prod/app",
            &user_json(&world, "app", APP_PASSWORD, &master_arn),
        )
        .await;
    let lambda = world.rotation_lambda(&[]).await;
    let token = world.begin_rotation(&arn).await;
    lambda.step("createSecret", &arn, &token).unwrap();
    lambda.step("setSecret", &arn, &token).unwrap();
    world
        .set_password("app_clone", "Changed-Behind-Our-Back-1")
        .await;

    let err = lambda.step("testSecret", &arn, &token).unwrap_err();
    assert_eq!(err.error_type, "LoginFailed", "{err}");
    assert!(err.error_message.contains("AWSPENDING"), "{err}");
    let output = lambda.output();
    assert_eq!(count(&output, RETRY_LINE), 0, "{output}");
    assert_eq!(count(&output, NOT_STANDBY_LINE), 1, "{output}");
    assert!(
        output.contains("the server is not in recovery (a primary)"),
        "{output}"
    );
    let pending = world.stage(&arn, AWSPENDING).await.unwrap().1;
    assert_no_secrets(
        &output,
        &[
            APP_PASSWORD.into(),
            MASTER_PASSWORD.into(),
            "Changed-Behind-Our-Back-1".into(),
            pending["password"].as_str().unwrap().to_string(),
        ],
    );
}

impl Replica {
    /// The function's preflight event: (status, detail) of each check by name.
    fn preflight(&self) -> (Value, Vec<(String, String, String)>) {
        let event = json!({"preflight": true, "SecretId": self.arn});
        let report = tokio::task::block_in_place(|| self.lambda.host.invoke(&event)).unwrap();
        let checks = report["preflight"]["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| {
                let text = |key: &str| c[key].as_str().unwrap_or_default().to_string();
                (text("check"), text("status"), text("detail"))
            })
            .collect();
        (report, checks)
    }
}

/// Whole rotations (there and back) with the user's host a custom endpoint of the master's
/// Aurora cluster, or a secondary of its Global Database: the preflight predicts it (the relation
/// by name, the standby and its wait), setSecret logs the relation.
async fn rotates_through(topology: Topology, relation: &str) {
    let r = setup(topology, &[]).await;
    let (report, checks) = r.preflight();
    assert_eq!(report["preflight"]["ok"], json!(true), "{report:#}");
    let check = |name: &str| {
        checks
            .iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("check {name} in {report:#}"))
            .clone()
    };
    let (_, status, detail) = check("master-host");
    assert_eq!(status, "pass");
    assert!(detail.contains(relation), "{detail}");
    let (_, status, detail) = check("standby");
    assert_eq!(status, "info");
    assert!(detail.contains("testSecret waits up to 30 s"), "{detail}");
    assert_eq!(check("master-create-role").1, "pass");
    for user in ["app_clone", "app"] {
        r.lambda.rotate(&r.world, &r.arn).await;
        let current = r.stage(AWSCURRENT).await;
        assert_eq!(current["username"], user);
        assert!(
            logs_in_on(&r.standby, user, current["password"].as_str().unwrap()).await,
            "{user} on the standby"
        );
    }
    let output = r.lambda.output();
    assert!(
        output.contains("AWSCURRENT's host is a replica of the master's database"),
        "{output}"
    );
    assert!(output.contains(relation), "{relation:?} in {output}");
    r.assert_no_secrets().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_endpoint_of_the_master_cluster_rotates() {
    rotates_through(
        Topology::CustomEndpoint,
        "custom endpoint reporting of Aurora cluster aurora",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_global_database_secondary_rotates() {
    rotates_through(
        Topology::GlobalSecondary,
        "the reader endpoint of Aurora cluster aurora-eu, a secondary cluster of Global Database \
         orders whose primary cluster is aurora-g",
    )
    .await;
}
