//! Alternating users end to end: a master role, an application role with attributes, per-role
//! settings and a group membership, their secrets in moto, and catalog look-ups that compare the
//! clone with the original.

use crate::{escape_identifier, escape_literal, World};
use serde_json::{json, Value};
use tokio_postgres::NoTls;

/// The master user's password.
pub const MASTER_PASSWORD: &str = "Master-Password-1";
/// The application user's first password.
pub const APP_PASSWORD: &str = "App-Password-1";
/// The database the application user's secret names.
pub const APP_DB: &str = "appdb";
/// A schema owned by `app` in [`APP_DB`], where the ownership tests create tables.
pub const APP_SCHEMA: &str = "app_schema";

/// Who created the application role: the two role models the suites run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleModel {
    /// As on RDS and Aurora: `master` (LOGIN CREATEROLE CREATEDB, member of `rds_superuser`, not a
    /// superuser) created `app`, so on PostgreSQL 16+ it holds ADMIN OPTION on it.
    RdsMaster,
    /// A DBA (a superuser) created `app` and `master`; on PostgreSQL 16+ `master` then has no
    /// ADMIN OPTION on `app` until someone grants it.
    Superuser,
}

/// [`setup_roles_by`] with the RDS role model.
pub async fn setup_roles(world: &World) {
    setup_roles_by(world, RoleModel::RdsMaster).await
}

/// Creates `master` (LOGIN CREATEROLE CREATEDB, not a superuser, like the RDS master user, in a
/// group role `rds_superuser`) and `app` (CREATEDB, CONNECTION LIMIT 7, VALID UNTIL 2031, member
/// of `app_group`, `search_path`, `statement_timeout` and an `IN DATABASE` `work_mem`), created
/// by whoever `model` says, database `appdb` and schema `app_schema` owned by `app`.
pub async fn setup_roles_by(world: &World, model: RoleModel) {
    world
        .pg
        .exec(&format!(
            "CREATE ROLE rds_superuser NOLOGIN;
             CREATE ROLE master LOGIN CREATEROLE CREATEDB PASSWORD {master};
             GRANT rds_superuser TO master;
             CREATE ROLE app_group NOLOGIN;",
            master = escape_literal(MASTER_PASSWORD),
        ))
        .await;
    let app = format!(
        "CREATE ROLE app LOGIN CREATEDB CONNECTION LIMIT 7 VALID UNTIL '2031-01-01 00:00:00+00' PASSWORD {app};
         ALTER ROLE app SET search_path TO '$user', 'app_schema', 'Odd Schema';
         ALTER ROLE app SET statement_timeout TO '5s';",
        app = escape_literal(APP_PASSWORD),
    );
    match model {
        RoleModel::Superuser => world.pg.exec(&app).await,
        RoleModel::RdsMaster => {
            let master = connect(world, "master", MASTER_PASSWORD, "postgres")
                .await
                .unwrap();
            master.batch_execute(&app).await.unwrap();
        }
    }
    world.pg.exec("GRANT app_group TO app").await;
    // CREATE DATABASE cannot run in the implicit transaction of a multi-statement batch.
    world.pg.exec("CREATE DATABASE appdb").await;
    world
        .pg
        .exec(
            "ALTER ROLE app IN DATABASE appdb SET work_mem TO '8MB';
             GRANT CONNECT, TEMPORARY ON DATABASE appdb TO app_group;",
        )
        .await;
    let (user, password) = world.pg.superuser();
    let admin = connect(world, user, password, APP_DB).await.unwrap();
    admin
        .batch_execute("CREATE SCHEMA app_schema AUTHORIZATION app")
        .await
        .unwrap();
}

/// The master secret: on the test server, database `postgres`.
pub fn master_json(world: &World) -> Value {
    json!({
        "engine": "postgres",
        "host": world.pg.host(),
        "port": world.pg.port(),
        "username": "master",
        "password": MASTER_PASSWORD,
        "dbname": "postgres",
    })
}

/// The application user's secret: `masterarn`, the port as a string, an unknown field.
pub fn user_json(world: &World, user: &str, password: &str, master_arn: &str) -> Value {
    json!({
        "engine": "postgres",
        "host": world.pg.host(),
        "port": world.pg.port().to_string(),
        "username": user,
        "password": password,
        "dbname": APP_DB,
        "masterarn": master_arn,
        "team": {"name": "payments", "oncall": [1, 2.5, null]},
    })
}

/// A client logged in as `user` (no TLS: the test server accepts both).
pub async fn connect(
    world: &World,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<tokio_postgres::Client, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(world.pg.host())
        .port(world.pg.port())
        .user(user)
        .password(password)
        .dbname(dbname);
    match config.connect(NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok(client)
        }
        Err(e) => Err(format!("login as {user:?} failed: {e}").replace(password, "<redacted>")),
    }
}

/// Whether `user` / `password` logs into [`APP_DB`].
pub async fn logs_in(world: &World, user: &str, password: &str) -> bool {
    world.pg.try_login(user, password, APP_DB).await.is_ok()
}

/// What the clone must share with the original: attributes, per-role settings (by database),
/// and the roles it can use.
pub async fn role_profile(world: &World, role: &str) -> Option<Value> {
    let admin = world.pg.admin().await;
    admin
        .batch_execute("SET datestyle TO 'ISO, YMD'; SET timezone TO 'UTC'")
        .await
        .unwrap();
    let row = admin
        .query_opt(
            "SELECT rolcanlogin, rolcreatedb, rolcreaterole, rolinherit, rolsuper, rolconnlimit, \
             rolvaliduntil::text FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()?;
    let settings: Vec<Value> = admin
        .query(
            "SELECT coalesce(d.datname::text, '*'), unnest(s.setconfig) \
             FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
             LEFT JOIN pg_database d ON d.oid = s.setdatabase WHERE r.rolname = $1 ORDER BY 1, 2",
            &[&role],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| json!([r.get::<_, String>(0), r.get::<_, String>(1)]))
        .collect();
    Some(json!({
        "login": row.get::<_, bool>(0),
        "createdb": row.get::<_, bool>(1),
        "createrole": row.get::<_, bool>(2),
        "inherit": row.get::<_, bool>(3),
        "superuser": row.get::<_, bool>(4),
        "connlimit": row.get::<_, i32>(5),
        "valid_until": row.get::<_, Option<String>>(6),
        "settings": settings,
    }))
}

/// Whether `member` has the privileges of `role` (directly or through membership).
pub async fn has_privileges_of(world: &World, member: &str, role: &str) -> bool {
    world
        .pg
        .admin()
        .await
        .query_one(
            "SELECT pg_has_role($1::text::name, $2::text::name, 'USAGE')",
            &[&member, &role],
        )
        .await
        .unwrap()
        .get(0)
}

/// The stored SCRAM verifier of `role` (`None`: no such role), to detect any change.
pub async fn verifier(world: &World, role: &str) -> Option<String> {
    world
        .pg
        .admin()
        .await
        .query_opt(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
}

/// Whether a role exists.
pub async fn role_exists(world: &World, role: &str) -> bool {
    verifier(world, role).await.is_some()
}

/// `"identifier"`, for test SQL.
pub fn ident(name: &str) -> String {
    escape_identifier(name)
}

/// Databases in moto's RDS API (nothing listens at their endpoints):
/// * `primary` (postgres, RDS-managed master secret), its read replica `replica`;
/// * `other` and its read replica `other-replica`;
/// * Aurora cluster `aurora` (RDS-managed master secret) with `aurora-1` (writer) and `aurora-2`;
///   Aurora cluster `aurora-b` with `b-1`.
pub struct RdsFixture {
    /// The RDS client for moto.
    pub rds: aws_sdk_rds::Client,
    /// `primary`'s ARN.
    pub primary_arn: String,
    /// `primary`'s endpoint address.
    pub primary_host: String,
    /// The ARN of `primary`'s RDS-managed master secret.
    pub primary_secret: String,
    /// `replica`'s endpoint address.
    pub replica_host: String,
    /// `other`'s endpoint address.
    pub other_host: String,
    /// `other-replica`'s endpoint address.
    pub other_replica_host: String,
    /// Cluster `aurora`'s ARN.
    pub cluster_arn: String,
    /// Cluster `aurora`'s writer endpoint.
    pub cluster_endpoint: String,
    /// Cluster `aurora`'s reader endpoint.
    pub cluster_reader_endpoint: String,
    /// The ARN of cluster `aurora`'s RDS-managed master secret.
    pub cluster_secret: String,
    /// `aurora-2`'s endpoint address.
    pub aurora_reader_host: String,
    /// `b-1`'s endpoint address (a member of another cluster).
    pub other_cluster_member_host: String,
}

/// `CreateDBInstance`: `engine`, in `cluster` (Aurora) or standalone (20 GiB), with an
/// RDS-managed master secret when `managed`.
pub async fn instance(
    rds: &aws_sdk_rds::Client,
    id: &str,
    engine: &str,
    cluster: Option<&str>,
    managed: bool,
) -> aws_sdk_rds::types::DbInstance {
    rds.create_db_instance()
        .db_instance_identifier(id)
        .db_instance_class("db.t3.micro")
        .engine(engine)
        .master_username("admin")
        .set_manage_master_user_password(managed.then_some(true))
        .set_allocated_storage(cluster.is_none().then_some(20))
        .set_db_cluster_identifier(cluster.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateDBInstance {id}: {e:?}"))
        .db_instance
        .unwrap()
}

/// An instance's endpoint address.
pub fn address(i: &aws_sdk_rds::types::DbInstance) -> String {
    i.endpoint().unwrap().address().unwrap().to_string()
}

/// `CreateDBInstanceReadReplica` of `source`; returns the replica's endpoint address.
pub async fn replica(rds: &aws_sdk_rds::Client, id: &str, source: &str) -> String {
    let r = rds
        .create_db_instance_read_replica()
        .db_instance_identifier(id)
        .source_db_instance_identifier(source)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateDBInstanceReadReplica {id}: {e:?}"))
        .db_instance
        .unwrap();
    assert_eq!(r.read_replica_source_db_instance_identifier(), Some(source));
    address(&r)
}

/// `CreateDBCluster` (aurora-postgresql, RDS-managed master secret).
pub async fn cluster(rds: &aws_sdk_rds::Client, id: &str) -> aws_sdk_rds::types::DbCluster {
    global_member(rds, id, None).await
}

/// `CreateDBCluster` (aurora-postgresql) in `global` when given: the first cluster of a Global
/// Database is its primary (with an RDS-managed master secret), later ones are secondaries
/// (no master user: it comes from the primary).
pub async fn global_member(
    rds: &aws_sdk_rds::Client,
    id: &str,
    global: Option<&str>,
) -> aws_sdk_rds::types::DbCluster {
    let primary = match global {
        None => true,
        Some(global) => rds
            .describe_global_clusters()
            .global_cluster_identifier(global)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeGlobalClusters {global}: {e:?}"))
            .global_clusters()
            .iter()
            .find(|g| g.global_cluster_identifier() == Some(global))
            .is_none_or(|g| g.global_cluster_members().is_empty()),
    };
    rds.create_db_cluster()
        .db_cluster_identifier(id)
        .engine("aurora-postgresql")
        .set_master_username(primary.then(|| "admin".to_string()))
        .set_manage_master_user_password(primary.then_some(true))
        .set_global_cluster_identifier(global.map(str::to_string))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateDBCluster {id}: {e:?}"))
        .db_cluster
        .unwrap()
}

/// `CreateGlobalCluster` (aurora-postgresql) without a source: the next cluster created in it
/// is its primary. (Created from an existing cluster, moto 5.2.5 leaves that cluster's IsWriter
/// false, unlike RDS: this order avoids depending on that gap.)
pub async fn global_cluster(rds: &aws_sdk_rds::Client, id: &str) {
    rds.create_global_cluster()
        .global_cluster_identifier(id)
        .engine("aurora-postgresql")
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateGlobalCluster {id}: {e:?}"));
}

/// `CreateDBClusterEndpoint` (a custom endpoint of `cluster`, testkit's addition to moto);
/// returns its address.
pub async fn custom_endpoint(
    rds: &aws_sdk_rds::Client,
    id: &str,
    cluster: &str,
    members: &[&str],
) -> String {
    rds.create_db_cluster_endpoint()
        .db_cluster_endpoint_identifier(id)
        .db_cluster_identifier(cluster)
        .endpoint_type("READER")
        .set_static_members(Some(members.iter().map(|m| m.to_string()).collect()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateDBClusterEndpoint {id}: {e:?}"))
        .endpoint()
        .expect("the custom endpoint's address")
        .to_string()
}

/// An RDS client for moto in `region`.
pub async fn rds_client(world: &World, region: &str) -> aws_sdk_rds::Client {
    let config = aws_sdk_rds::config::Builder::from(&world.moto.sdk_config().await)
        .region(aws_sdk_rds::config::Region::new(region.to_string()))
        .build();
    aws_sdk_rds::Client::from_conf(config)
}

/// Creates the [`RdsFixture`] databases in moto.
pub async fn rds_fixture(world: &World) -> RdsFixture {
    let rds = aws_sdk_rds::Client::new(&world.moto.sdk_config().await);
    let primary = instance(&rds, "primary", "postgres", None, true).await;
    let replica_host = replica(&rds, "replica", "primary").await;
    let other = instance(&rds, "other", "postgres", None, false).await;
    let other_replica_host = replica(&rds, "other-replica", "other").await;
    let aurora = cluster(&rds, "aurora").await;
    instance(&rds, "aurora-1", "aurora-postgresql", Some("aurora"), false).await;
    let reader = instance(&rds, "aurora-2", "aurora-postgresql", Some("aurora"), false).await;
    cluster(&rds, "aurora-b").await;
    let b1 = instance(&rds, "b-1", "aurora-postgresql", Some("aurora-b"), false).await;
    RdsFixture {
        primary_arn: primary.db_instance_arn().unwrap().to_string(),
        primary_host: address(&primary),
        primary_secret: primary
            .master_user_secret()
            .and_then(|s| s.secret_arn())
            .expect("moto created the managed master secret")
            .to_string(),
        replica_host,
        other_host: address(&other),
        other_replica_host,
        cluster_arn: aurora.db_cluster_arn().unwrap().to_string(),
        cluster_endpoint: aurora.endpoint().unwrap().to_string(),
        cluster_reader_endpoint: aurora.reader_endpoint().unwrap().to_string(),
        cluster_secret: aurora
            .master_user_secret()
            .and_then(|s| s.secret_arn())
            .expect("moto created the managed cluster secret")
            .to_string(),
        aurora_reader_host: address(&reader),
        other_cluster_member_host: address(&b1),
        rds,
    }
}
