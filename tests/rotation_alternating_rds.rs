//! The RDS look-ups of the alternating-users strategy against moto's RDS API, and through the
//! real `rotate-postgres` binary.
//!
//! moto's RDS endpoints (`primary.aaaaaaaaaa.us-east-1.rds.amazonaws.com`) are names nothing
//! listens at, so no test can both be recognised by RDS as a replica *and* log into PostgreSQL.
//! The two halves are therefore tested separately:
//! * here, the look-ups: an RDS-managed master secret (`{username, password}` + its
//!   `aws:rds:primaryDBInstanceArn` / `aws:rds:primaryDBClusterArn` tag, created by moto itself
//!   through `ManageMasterUserPassword`) resolved to host, port and engine; read-replica and
//!   Aurora-reader acceptance and rejection with `DescribeDBInstances` / `DescribeDBClusters`;
//!   and, through the binary, that a resolved master on another host than the user's is refused
//!   before anything changes;
//! * Aurora custom endpoints (`CreateDBClusterEndpoint` / `DescribeDBClusterEndpoints`, which
//!   moto 5.2.5 lacks, come from testkit's addition to moto, `crates/testkit/moto/`) and the
//!   secondary clusters of an Aurora Global Database (moto's `CreateGlobalCluster` /
//!   `DescribeGlobalClusters`), accepted or refused with the reason;
//! * the SQL that runs once the master is accepted is the same for a replica as for the same
//!   host, and runs against real PostgreSQL in `rotation_alternating.rs`; whole rotations whose
//!   user host is an RDS read replica, a custom endpoint or a Global Database secondary, the
//!   names resolving (for the function only) to a real streaming standby, run in
//!   `rotation_replica.rs`.

use e2e::alternating::{
    cluster, custom_endpoint, global_cluster, global_member, instance, logs_in, rds_client,
    rds_fixture, role_exists, setup_roles, user_json, APP_PASSWORD, MASTER_PASSWORD,
};
use e2e::{assert_no_secrets, World};
use rotation::AWSCURRENT;
use rotation::{DbEndpoint, DbTopology, MasterLocation, RdsResource, Relation};
use secrets_manager::RdsTopology;

fn at(host: &str) -> MasterLocation<'_> {
    MasterLocation {
        host,
        resource: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_master_secrets_resolve_through_describe_calls() {
    let world = World::start().await;
    let f = rds_fixture(&world).await;
    let topology = RdsTopology::new(f.rds.clone());

    // moto tags its managed secrets exactly as RDS does.
    let described = world
        .sm
        .describe_secret()
        .secret_id(&f.primary_secret)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    let resource = RdsResource::from_tags(&tags).expect("aws:rds:primaryDBInstanceArn tag");
    assert_eq!(
        resource,
        RdsResource::Instance {
            arn: f.primary_arn.clone()
        }
    );
    assert_eq!(
        topology.endpoint_of(&resource).await.unwrap(),
        DbEndpoint {
            host: f.primary_host.clone(),
            port: 5432,
            engine: "postgres".into()
        }
    );
    assert_eq!(
        topology
            .endpoint_of(&RdsResource::Cluster {
                arn: f.cluster_arn.clone()
            })
            .await
            .unwrap(),
        DbEndpoint {
            host: f.cluster_endpoint.clone(),
            port: 5432,
            engine: "aurora-postgresql".into()
        }
    );
    let missing = topology
        .endpoint_of(&RdsResource::Instance {
            arn: "arn:aws:rds:us-east-1:123456789012:db:gone".into(),
        })
        .await
        .unwrap_err();
    assert!(missing.message.contains("does not exist"), "{missing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn read_replicas_and_aurora_readers_are_accepted_and_nothing_else() {
    let world = World::start().await;
    let f = rds_fixture(&world).await;
    let topology = RdsTopology::new(f.rds.clone());
    let primary = RdsResource::Instance {
        arn: f.primary_arn.clone(),
    };
    let aurora = RdsResource::Cluster {
        arn: f.cluster_arn.clone(),
    };
    let relation = |host: String, master: MasterLocation<'static>| {
        let topology = topology.clone();
        async move { topology.relation(&host, master).await.unwrap() }
    };
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let primary_host = leak(&f.primary_host);
    let primary_res: &'static RdsResource = Box::leak(Box::new(primary));
    let aurora_res: &'static RdsResource = Box::leak(Box::new(aurora));
    let cluster_endpoint = leak(&f.cluster_endpoint);

    // A read replica of the master's instance, found by host or by the managed secret's tag.
    assert_eq!(
        relation(f.replica_host.clone(), at(primary_host)).await,
        Relation::ReadReplica {
            replica: "replica".into(),
            source: "primary".into()
        }
    );
    assert!(relation(
        f.replica_host.clone(),
        MasterLocation {
            host: primary_host,
            resource: Some(primary_res)
        }
    )
    .await
    .is_accepted());
    // A replica of another instance, an unrelated instance, a host RDS does not know.
    let r = relation(f.other_replica_host.clone(), at(primary_host)).await;
    assert!(!r.is_accepted());
    assert!(
        r.describe()
            .contains("read replica of other, not of primary"),
        "{r:?}"
    );
    let r = relation(f.other_host.clone(), at(primary_host)).await;
    assert!(!r.is_accepted());
    assert!(r.describe().contains("not a read replica"), "{r:?}");
    let r = relation("127.0.0.1".into(), at(primary_host)).await;
    assert!(!r.is_accepted());
    assert!(
        r.describe().contains("127.0.0.1 is not the endpoint"),
        "{r:?}"
    );
    // The primary is no replica of its replica.
    assert!(!relation(f.primary_host.clone(), at(leak(&f.replica_host)))
        .await
        .is_accepted());

    // Aurora: a reader instance and the reader endpoint of the master's cluster.
    let cluster_master = MasterLocation {
        host: cluster_endpoint,
        resource: Some(aurora_res),
    };
    assert_eq!(
        relation(f.aurora_reader_host.clone(), cluster_master).await,
        Relation::AuroraReader {
            member: "DB instance aurora-2".into(),
            cluster: "aurora".into()
        }
    );
    assert!(relation(f.aurora_reader_host.clone(), at(cluster_endpoint))
        .await
        .is_accepted());
    assert_eq!(
        relation(f.cluster_reader_endpoint.clone(), at(cluster_endpoint)).await,
        Relation::AuroraReader {
            member: "the reader endpoint".into(),
            cluster: "aurora".into()
        }
    );
    // A member of another cluster, and a plain instance, are not readers of this one.
    let r = relation(f.other_cluster_member_host.clone(), cluster_master).await;
    assert!(!r.is_accepted());
    assert!(
        r.describe()
            .contains("not a member of Aurora cluster aurora"),
        "{r:?}"
    );
    assert!(!relation(f.replica_host.clone(), cluster_master)
        .await
        .is_accepted());
}

/// The binary resolves an RDS-managed master secret from its tag and refuses it, naming the
/// resolved host and the tag, when the user's host is neither that host nor a replica of it.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_resolves_a_managed_master_and_refuses_an_unrelated_host() {
    let world = World::start().await;
    setup_roles(&world).await;
    let f = rds_fixture(&world).await;
    let lambda = world.rotation_lambda(&[]).await;
    let (_, managed) = world.stage(&f.primary_secret, AWSCURRENT).await.unwrap();
    let managed_password = managed["password"].as_str().unwrap().to_string();
    assert_eq!(
        managed.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["username", "password"]
    );

    for (name, master_secret, expected_host, tag, db_arn) in [
        (
            "instance",
            &f.primary_secret,
            &f.primary_host,
            "aws:rds:primaryDBInstanceArn",
            &f.primary_arn,
        ),
        (
            "cluster",
            &f.cluster_secret,
            &f.cluster_endpoint,
            "aws:rds:primaryDBClusterArn",
            &f.cluster_arn,
        ),
    ] {
        let arn = world
            .create_secret(name, &user_json(&world, "app", APP_PASSWORD, master_secret))
            .await;
        lambda.assert_preflight_fails(&arn, "master-host");
        let token = world.begin_rotation(&arn).await;
        lambda.step("createSecret", &arn, &token).unwrap();
        let err = lambda.step("setSecret", &arn, &token).unwrap_err();
        assert_eq!(err.error_type, "MasterHostMismatch", "{err}");
        let message = &err.error_message;
        for expected in [
            expected_host.as_str(),
            tag,
            db_arn.as_str(),
            master_secret.as_str(),
            "AWSCURRENT's server 127.0.0.1:",
            "127.0.0.1 is not the endpoint of an RDS DB instance or Aurora cluster, nor an Aurora \
             custom endpoint",
        ] {
            assert!(
                message.contains(expected),
                "{name}: {expected:?} in {message}"
            );
        }
        assert!(
            !role_exists(&world, "app_clone").await,
            "{name}: nothing created"
        );
        assert!(logs_in(&world, "app", APP_PASSWORD).await);
    }
    assert_no_secrets(
        &lambda.output(),
        &[
            managed_password,
            APP_PASSWORD.into(),
            MASTER_PASSWORD.into(),
        ],
    );
}

/// Aurora custom endpoints and Global Database secondaries, as moto (with testkit's custom
/// endpoints) describes them: accepted when they belong to the master's cluster or to a
/// secondary of its Global Database, refused with the reason otherwise.
#[tokio::test(flavor = "multi_thread")]
async fn custom_endpoints_and_global_secondaries_are_accepted_and_nothing_else() {
    let world = World::start().await;
    let us = rds_client(&world, "us-east-1").await;
    let eu = rds_client(&world, "eu-west-1").await;
    // Global Database `orders`: primary cluster `aurora-g` (us-east-1), secondary `aurora-eu`
    // (eu-west-1), each with an instance and a custom endpoint.
    global_cluster(&us, "orders").await;
    let primary = global_member(&us, "aurora-g", Some("orders")).await;
    instance(&us, "g-1", "aurora-postgresql", Some("aurora-g"), false).await;
    let secondary = global_member(&eu, "aurora-eu", Some("orders")).await;
    let eu_instance = instance(&eu, "eu-1", "aurora-postgresql", Some("aurora-eu"), false).await;
    let reporting = custom_endpoint(&us, "reporting", "aurora-g", &["g-1"]).await;
    let eu_reporting = custom_endpoint(&eu, "eu-reporting", "aurora-eu", &["eu-1"]).await;
    // A cluster outside the Global Database, with its own custom endpoint.
    cluster(&us, "aurora-b").await;
    let b_reporting = custom_endpoint(&us, "b-reporting", "aurora-b", &[]).await;

    assert!(
        reporting.starts_with("reporting.cluster-custom-")
            && reporting.ends_with(".us-east-1.rds.amazonaws.com"),
        "{reporting}"
    );
    let writer = primary.endpoint().unwrap().to_string();
    let primary_arn = primary.db_cluster_arn().unwrap().to_string();
    let topology = RdsTopology::new(us.clone());
    let by_host = |host: &str| MasterLocation {
        host: Box::leak(host.to_string().into_boxed_str()),
        resource: None,
    };
    let tagged: &'static RdsResource = Box::leak(Box::new(RdsResource::Cluster {
        arn: primary_arn.clone(),
    }));
    let relation = |host: String, master: MasterLocation<'static>| {
        let topology = topology.clone();
        async move { topology.relation(&host, master).await.unwrap() }
    };

    // A custom endpoint of the master's cluster, the master found by host or by its tag.
    let expected = Relation::AuroraCustomEndpoint {
        endpoint: "reporting".into(),
        cluster: "aurora-g".into(),
    };
    assert_eq!(
        relation(reporting.clone(), by_host(&writer)).await,
        expected
    );
    let master = MasterLocation {
        host: Box::leak(writer.clone().into_boxed_str()),
        resource: Some(tagged),
    };
    assert_eq!(relation(reporting.clone(), master).await, expected);
    // The name is case-insensitive, as DNS is.
    assert!(relation(reporting.to_uppercase(), master)
        .await
        .is_accepted());

    // The secondary cluster of the master's Global Database: reader endpoint, instance, custom
    // endpoint, in its own region.
    let reader = secondary.reader_endpoint().unwrap().to_string();
    assert_eq!(
        relation(reader.clone(), master).await,
        Relation::GlobalSecondary {
            member: "the reader endpoint".into(),
            cluster: "aurora-eu".into(),
            global: "orders".into(),
            primary: "aurora-g".into(),
        }
    );
    let r = relation(e2e::alternating::address(&eu_instance), master).await;
    assert_eq!(
        r.describe(),
        "DB instance eu-1 of Aurora cluster aurora-eu, a secondary cluster of Global Database \
         orders whose primary cluster is aurora-g"
    );
    let r = relation(eu_reporting.clone(), by_host(&writer)).await;
    assert!(
        matches!(&r, Relation::GlobalSecondary { member, .. } if member == "custom endpoint eu-reporting"),
        "{r:?}"
    );

    // Refused: another cluster's custom endpoint; the primary as seen from a master on the
    // secondary; custom-endpoint names RDS does not know.
    let r = relation(b_reporting, master).await;
    assert_eq!(
        r,
        Relation::Unrelated {
            reason: "Aurora cluster aurora-b is not the master's cluster aurora-g, nor in one \
                     Aurora Global Database with it"
                .into()
        }
    );
    let r = relation(
        primary.reader_endpoint().unwrap().to_string(),
        by_host(secondary.endpoint().unwrap()),
    )
    .await;
    assert!(!r.is_accepted());
    assert!(
        r.describe().contains(
            "the master's Aurora cluster aurora-eu is a secondary cluster of Global Database \
             orders, not its primary"
        ),
        "{r:?}"
    );
    for unknown in [
        "nope.cluster-custom-abcdefghijkl.us-east-1.rds.amazonaws.com".to_string(),
        // A known identifier under another cluster's suffix.
        reporting.replacen("reporting.", "b-reporting.", 1),
    ] {
        let r = relation(unknown.clone(), master).await;
        assert!(!r.is_accepted(), "{unknown}: {r:?}");
        assert!(
            r.describe().contains(&format!(
                "{unknown} is not the endpoint of an RDS DB instance"
            )),
            "{r:?}"
        );
    }
}
