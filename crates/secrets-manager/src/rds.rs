//! [`DbTopology`] over `aws-sdk-rds`: `DescribeDBInstances`, `DescribeDBClusters`,
//! `DescribeDBClusterEndpoints` and `DescribeGlobalClusters`.
//!
//! * A managed master secret's tag names an instance or cluster ARN; its endpoint, port and
//!   engine come from the describe call (the cluster's writer endpoint for a cluster).
//! * A host is identified by its first DNS label, which for RDS endpoints is the instance,
//!   cluster or custom endpoint identifier (`mydb.abc123.eu-west-1.rds.amazonaws.com`,
//!   `mycluster.cluster-ro-abc123.eu-west-1.rds.amazonaws.com`,
//!   `reporting.cluster-custom-abc123.eu-west-1.rds.amazonaws.com`), and accepted only when the
//!   endpoint RDS reports for that identifier is exactly the host. A custom endpoint (second label
//!   `cluster-custom-…`) is looked up with `DescribeDBClusterEndpoints`, then its cluster. A host
//!   that is not an RDS endpoint (an IP address, a custom DNS name) is never related to anything.
//! * Related (see `relate`): an RDS read replica of the master's instance; a member, the reader
//!   endpoint or a custom endpoint of the master's Aurora cluster; an endpoint or instance of a
//!   secondary cluster of the Aurora Global Database whose primary (writer) cluster is the
//!   master's (`DescribeGlobalClusters`, asked only when the two clusters differ).
//! * Calls go to the region in the ARN or the host name, when it differs from the client's.

use crate::FromSdkError;
use async_trait::async_trait;
use aws_sdk_rds::error::ProvideErrorMetadata;
use aws_sdk_rds::Client;
use rotation::{DbEndpoint, DbTopology, MasterLocation, Rds, RdsResource, Relation, TopologyError};

/// RDS look-ups through one client, built once in `main`.
#[derive(Debug, Clone)]
pub struct RdsTopology {
    client: Client,
}

/// What `DescribeDBInstances` says about one instance.
#[derive(Debug, Clone)]
struct Instance {
    id: String,
    arn: String,
    address: Option<String>,
    port: Option<i32>,
    engine: String,
    cluster: Option<String>,
    source: Option<String>,
}

/// What `DescribeDBClusters` says about one cluster.
#[derive(Debug, Clone)]
struct Cluster {
    id: String,
    arn: String,
    endpoint: Option<String>,
    reader_endpoint: Option<String>,
    port: Option<i32>,
    engine: String,
    /// (instance id, is writer)
    members: Vec<(String, bool)>,
}

/// Which endpoint of a cluster a host is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ClusterEndpoint {
    /// The cluster (writer) endpoint.
    Writer,
    /// The reader endpoint.
    Reader,
    /// A custom endpoint (`DescribeDBClusterEndpoints`), by identifier.
    Custom(String),
}

/// An endpoint RDS knows.
#[derive(Debug, Clone)]
enum Node {
    Instance(Instance),
    /// One of the cluster's endpoints.
    Cluster {
        cluster: Cluster,
        endpoint: ClusterEndpoint,
    },
}

/// What `DescribeGlobalClusters` says about one Aurora Global Database.
#[derive(Debug, Clone)]
struct GlobalCluster {
    id: String,
    /// (cluster ARN, is writer)
    members: Vec<(String, bool)>,
}

impl GlobalCluster {
    /// Whether the cluster with ARN `arn` is a member, and if so whether it is the writer.
    fn member(&self, arn: &str) -> Option<bool> {
        self.members
            .iter()
            .find(|(member, _)| member.eq_ignore_ascii_case(arn))
            .map(|(_, writer)| *writer)
    }
}

/// An Aurora cluster a node belongs to: its identifier and, when known, its ARN.
#[derive(Debug, Clone)]
struct ClusterRef {
    id: String,
    arn: Option<String>,
}

impl ClusterRef {
    /// The same cluster: by ARN when both are known (identifiers repeat across regions), else by
    /// identifier.
    fn is(&self, other: &ClusterRef) -> bool {
        match (&self.arn, &other.arn) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => self.id.eq_ignore_ascii_case(&other.id),
        }
    }
}

impl Node {
    /// The Aurora cluster this endpoint or instance belongs to.
    fn cluster(&self) -> Option<ClusterRef> {
        match self {
            Node::Instance(i) => i.cluster.as_ref().map(|id| ClusterRef {
                id: id.clone(),
                arn: cluster_arn_of_instance(&i.arn, id),
            }),
            Node::Cluster { cluster, .. } => Some(ClusterRef {
                id: cluster.id.clone(),
                arn: (!cluster.arn.is_empty()).then(|| cluster.arn.clone()),
            }),
        }
    }

    /// This node as a member of its cluster, in words; `master` tells whether an instance is
    /// the writer of the master's cluster.
    fn member_name(&self, master: &Node) -> String {
        match self {
            Node::Instance(i) => {
                let writer = matches!(master, Node::Cluster { cluster, .. }
                    if cluster.members.iter().any(|(m, w)| *w && m.eq_ignore_ascii_case(&i.id)));
                if writer {
                    format!("DB instance {} (its writer)", i.id)
                } else {
                    format!("DB instance {}", i.id)
                }
            }
            Node::Cluster { endpoint, .. } => match endpoint {
                ClusterEndpoint::Writer => "the cluster endpoint".into(),
                ClusterEndpoint::Reader => "the reader endpoint".into(),
                ClusterEndpoint::Custom(id) => format!("custom endpoint {id}"),
            },
        }
    }
}

/// The ARN of cluster `cluster` in the region and account of the instance ARN `instance_arn`
/// (`arn:PARTITION:rds:REGION:ACCOUNT:db:ID` → `…:cluster:CLUSTER`).
fn cluster_arn_of_instance(instance_arn: &str, cluster: &str) -> Option<String> {
    let parts: Vec<&str> = instance_arn.split(':').collect();
    match parts.as_slice() {
        ["arn", partition, "rds", region, account, "db", _] if !region.is_empty() => Some(format!(
            "arn:{partition}:rds:{region}:{account}:cluster:{cluster}"
        )),
        _ => None,
    }
}

/// The region field of an ARN (`arn:aws:rds:REGION:ACCOUNT:db:ID`).
fn region_of_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// The region of an RDS endpoint host name (`….REGION.rds.amazonaws.com[.cn]`).
fn region_of_host(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let rds = labels.iter().rposition(|l| *l == "rds")?;
    let rest = &labels[rds + 1..];
    if rds < 2 || !(rest == ["amazonaws", "com"] || rest == ["amazonaws", "com", "cn"]) {
        return None;
    }
    Some(labels[rds - 1].to_string())
}

/// The identifier an RDS endpoint starts with, if the first label can be one (a letter, then
/// letters, digits and hyphens).
fn identifier_of_host(host: &str) -> Option<&str> {
    let label = host.split('.').next()?;
    let mut chars = label.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then_some(label)
}

/// Whether `host` has the shape of an Aurora custom endpoint:
/// `ID.cluster-custom-SUFFIX.REGION.rds.amazonaws.com[.cn]`.
fn is_custom_endpoint_host(host: &str) -> bool {
    let mut labels = host.split('.');
    labels.next().is_some()
        && labels.next().is_some_and(|label| {
            label.len() > "cluster-custom-".len()
                && label[.."cluster-custom-".len()].eq_ignore_ascii_case("cluster-custom-")
        })
        && region_of_host(host).is_some()
}

fn same_host(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| {
        a.trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.'))
    })
}

fn port(port: Option<i32>, what: &str) -> Result<u16, TopologyError> {
    port.and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            TopologyError::new("Describe", None, format!("RDS reported no port for {what}"))
        })
}

impl RdsTopology {
    /// RDS look-ups over `client`.
    pub fn new(client: Client) -> Self {
        RdsTopology { client }
    }

    /// The client for `region`: ours, or one built from our configuration for another region.
    fn client_for(&self, region: Option<&str>) -> Client {
        match region {
            Some(region) if self.client.config().region().map(|r| r.as_ref()) != Some(region) => {
                let config = self
                    .client
                    .config()
                    .to_builder()
                    .region(aws_sdk_rds::config::Region::new(region.to_string()))
                    .build();
                Client::from_conf(config)
            }
            _ => self.client.clone(),
        }
    }

    /// `DescribeDBInstances(DBInstanceIdentifier = id or ARN)`; `None` when there is no such
    /// instance.
    async fn instance(&self, client: &Client, id: &str) -> Result<Option<Instance>, TopologyError> {
        let out = match client
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("DBInstanceNotFound") => return Ok(None),
            Err(e) => return Err(Rds::sdk_error("DescribeDBInstances", e)),
        };
        Ok(out.db_instances().first().map(|i| Instance {
            id: i.db_instance_identifier().unwrap_or(id).to_string(),
            arn: i.db_instance_arn().unwrap_or_default().to_string(),
            address: i.endpoint().and_then(|e| e.address()).map(str::to_string),
            port: i.endpoint().and_then(|e| e.port()),
            engine: i.engine().unwrap_or_default().to_string(),
            cluster: i.db_cluster_identifier().map(str::to_string),
            source: i
                .read_replica_source_db_instance_identifier()
                .map(str::to_string),
        }))
    }

    /// `DescribeDBClusters(DBClusterIdentifier = id or ARN)`; `None` when there is no such
    /// cluster.
    async fn cluster(&self, client: &Client, id: &str) -> Result<Option<Cluster>, TopologyError> {
        let out = match client
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("DBClusterNotFoundFault") => return Ok(None),
            Err(e) => return Err(Rds::sdk_error("DescribeDBClusters", e)),
        };
        Ok(out.db_clusters().first().map(|c| Cluster {
            id: c.db_cluster_identifier().unwrap_or(id).to_string(),
            arn: c.db_cluster_arn().unwrap_or_default().to_string(),
            endpoint: c.endpoint().map(str::to_string),
            reader_endpoint: c.reader_endpoint().map(str::to_string),
            port: c.port(),
            engine: c.engine().unwrap_or_default().to_string(),
            members: c
                .db_cluster_members()
                .iter()
                .filter_map(|m| {
                    Some((
                        m.db_instance_identifier()?.to_string(),
                        m.is_cluster_writer().unwrap_or(false),
                    ))
                })
                .collect(),
        }))
    }

    /// The custom endpoint `host` is (`DescribeDBClusterEndpoints(DBClusterEndpointIdentifier =
    /// id)`, then its cluster), if RDS knows it.
    async fn custom_endpoint(
        &self,
        client: &Client,
        id: &str,
        host: &str,
    ) -> Result<Option<Node>, TopologyError> {
        let out = match client
            .describe_db_cluster_endpoints()
            .db_cluster_endpoint_identifier(id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if matches!(
                    e.code(),
                    Some("DBClusterEndpointNotFoundFault" | "DBClusterNotFoundFault")
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(Rds::sdk_error("DescribeDBClusterEndpoints", e)),
        };
        let found = out.db_cluster_endpoints().iter().find(|e| {
            e.endpoint_type()
                .is_some_and(|t| t.eq_ignore_ascii_case("CUSTOM"))
                && same_host(e.endpoint(), host)
        });
        let Some((endpoint, cluster)) = found.and_then(|e| {
            Some((
                e.db_cluster_endpoint_identifier().unwrap_or(id).to_string(),
                e.db_cluster_identifier()?.to_string(),
            ))
        }) else {
            return Ok(None);
        };
        Ok(self
            .cluster(client, &cluster)
            .await?
            .map(|cluster| Node::Cluster {
                cluster,
                endpoint: ClusterEndpoint::Custom(endpoint),
            }))
    }

    /// Every Aurora Global Database (`DescribeGlobalClusters`, all pages).
    async fn global_clusters(&self, client: &Client) -> Result<Vec<GlobalCluster>, TopologyError> {
        let mut globals = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = client
                .describe_global_clusters()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| Rds::sdk_error("DescribeGlobalClusters", e))?;
            globals.extend(out.global_clusters().iter().map(|g| {
                GlobalCluster {
                    id: g
                        .global_cluster_identifier()
                        .unwrap_or_default()
                        .to_string(),
                    members: g
                        .global_cluster_members()
                        .iter()
                        .filter_map(|m| {
                            Some((
                                m.db_cluster_arn()?.to_string(),
                                m.is_writer().unwrap_or(false),
                            ))
                        })
                        .collect(),
                }
            }));
            match out.marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_string()),
                _ => return Ok(globals),
            }
        }
    }

    /// The instance or cluster endpoint `host` is, if RDS knows it.
    async fn identify(&self, host: &str) -> Result<Option<Node>, TopologyError> {
        let Some(id) = identifier_of_host(host) else {
            return Ok(None);
        };
        let client = self.client_for(region_of_host(host).as_deref());
        if is_custom_endpoint_host(host) {
            return self.custom_endpoint(&client, id, host).await;
        }
        if let Some(instance) = self.instance(&client, id).await? {
            if same_host(instance.address.as_deref(), host) {
                return Ok(Some(Node::Instance(instance)));
            }
        }
        if let Some(cluster) = self.cluster(&client, id).await? {
            let endpoint = if same_host(cluster.endpoint.as_deref(), host) {
                ClusterEndpoint::Writer
            } else if same_host(cluster.reader_endpoint.as_deref(), host) {
                ClusterEndpoint::Reader
            } else {
                return Ok(None);
            };
            return Ok(Some(Node::Cluster { cluster, endpoint }));
        }
        Ok(None)
    }

    async fn master_node(
        &self,
        master: MasterLocation<'_>,
    ) -> Result<Result<Node, String>, TopologyError> {
        match master.resource {
            Some(RdsResource::Instance { arn }) => {
                let client = self.client_for(region_of_arn(arn));
                Ok(match self.instance(&client, arn).await? {
                    Some(i) => Ok(Node::Instance(i)),
                    None => Err(format!("the master's DB instance {arn} does not exist")),
                })
            }
            Some(RdsResource::Cluster { arn }) => {
                let client = self.client_for(region_of_arn(arn));
                Ok(match self.cluster(&client, arn).await? {
                    Some(cluster) => Ok(Node::Cluster {
                        cluster,
                        endpoint: ClusterEndpoint::Writer,
                    }),
                    None => Err(format!("the master's DB cluster {arn} does not exist")),
                })
            }
            None => Ok(self.identify(master.host).await?.ok_or_else(|| {
                format!(
                    "the master's host {} is not the endpoint of an RDS DB instance or Aurora \
                     cluster",
                    master.host
                )
            })),
        }
    }
}

/// Whether relating `current` to `master` needs the Global Databases: both are in Aurora
/// clusters, and not in the same one.
fn needs_global_clusters(current: &Node, master: &Node) -> bool {
    matches!((current.cluster(), master.cluster()), (Some(c), Some(m)) if !c.is(&m))
}

/// How the user's node relates to the master's; `globals` are the Aurora Global Databases
/// (needed only when the two are in different clusters).
fn relate(current: &Node, master: &Node, globals: &[GlobalCluster]) -> Relation {
    if let (Node::Instance(c), Node::Instance(m)) = (current, master) {
        let is_source = |s: &String| s.eq_ignore_ascii_case(&m.id) || *s == m.arn;
        if c.source.as_ref().is_some_and(is_source) {
            return Relation::ReadReplica {
                replica: c.id.clone(),
                source: m.id.clone(),
            };
        }
    }
    let clusters = (current.cluster(), master.cluster());
    if let (Some(cc), Some(mc)) = &clusters {
        if cc.is(mc) {
            return match current {
                Node::Cluster {
                    cluster,
                    endpoint: ClusterEndpoint::Custom(endpoint),
                } => Relation::AuroraCustomEndpoint {
                    endpoint: endpoint.clone(),
                    cluster: cluster.id.clone(),
                },
                _ => Relation::AuroraReader {
                    member: current.member_name(master),
                    cluster: cc.id.clone(),
                },
            };
        }
        if let (Some(c_arn), Some(m_arn)) = (&cc.arn, &mc.arn) {
            let shared = globals
                .iter()
                .find(|g| g.member(c_arn).is_some() && g.member(m_arn).is_some());
            if let Some(global) = shared {
                return if global.member(m_arn) == Some(true) {
                    Relation::GlobalSecondary {
                        member: current.member_name(master),
                        cluster: cc.id.clone(),
                        global: global.id.clone(),
                        primary: mc.id.clone(),
                    }
                } else {
                    Relation::Unrelated {
                        reason: format!(
                            "the master's Aurora cluster {} is a secondary cluster of Global \
                             Database {}, not its primary: passwords change only on the primary \
                             cluster, so use the master secret of the primary cluster's writer",
                            mc.id, global.id
                        ),
                    }
                };
            }
        }
    }
    let not_global = if matches!(clusters, (Some(_), Some(_))) {
        ", nor in one Aurora Global Database with it"
    } else {
        ""
    };
    let reason = match (current, master) {
        (Node::Instance(c), Node::Instance(m)) => match &c.source {
            Some(source) => format!(
                "DB instance {} is a read replica of {source}, not of {}",
                c.id, m.id
            ),
            None => format!(
                "DB instance {} is not a read replica (ReadReplicaSourceDBInstanceIdentifier is \
                 empty) and not in the same Aurora cluster as {}{not_global}",
                c.id, m.id
            ),
        },
        (Node::Instance(c), Node::Cluster { cluster, .. }) => format!(
            "DB instance {} is not a member of Aurora cluster {}{not_global}",
            c.id, cluster.id
        ),
        (Node::Cluster { cluster, .. }, Node::Instance(m)) => format!(
            "the master's DB instance {} is not a member of Aurora cluster {}{not_global}",
            m.id, cluster.id
        ),
        (Node::Cluster { cluster, .. }, Node::Cluster { cluster: mc, .. }) => format!(
            "Aurora cluster {} is not the master's cluster {}{not_global}",
            cluster.id, mc.id
        ),
    };
    Relation::Unrelated { reason }
}

#[async_trait]
impl DbTopology for RdsTopology {
    async fn endpoint_of(&self, resource: &RdsResource) -> Result<DbEndpoint, TopologyError> {
        let client = self.client_for(region_of_arn(resource.arn()));
        match resource {
            RdsResource::Instance { arn } => {
                let instance = self.instance(&client, arn).await?.ok_or_else(|| {
                    TopologyError::new(
                        "DescribeDBInstances",
                        Some("DBInstanceNotFound".into()),
                        format!("DB instance {arn} does not exist"),
                    )
                })?;
                let host = instance.address.clone().ok_or_else(|| {
                    TopologyError::new(
                        "DescribeDBInstances",
                        None,
                        format!(
                            "DB instance {arn} has no endpoint yet (is it still being created?)"
                        ),
                    )
                })?;
                Ok(DbEndpoint {
                    host,
                    port: port(instance.port, arn)?,
                    engine: instance.engine,
                })
            }
            RdsResource::Cluster { arn } => {
                let cluster = self.cluster(&client, arn).await?.ok_or_else(|| {
                    TopologyError::new(
                        "DescribeDBClusters",
                        Some("DBClusterNotFoundFault".into()),
                        format!("DB cluster {arn} does not exist"),
                    )
                })?;
                let host = cluster.endpoint.clone().ok_or_else(|| {
                    TopologyError::new(
                        "DescribeDBClusters",
                        None,
                        format!("DB cluster {arn} has no endpoint yet"),
                    )
                })?;
                Ok(DbEndpoint {
                    host,
                    port: port(cluster.port, arn)?,
                    engine: cluster.engine,
                })
            }
        }
    }

    async fn relation(
        &self,
        host: &str,
        master: MasterLocation<'_>,
    ) -> Result<Relation, TopologyError> {
        let Some(current) = self.identify(host).await? else {
            return Ok(Relation::Unrelated {
                reason: format!(
                    "{host} is not the endpoint of an RDS DB instance or Aurora cluster, nor an \
                     Aurora custom endpoint, that DescribeDBInstances / DescribeDBClusters / \
                     DescribeDBClusterEndpoints know"
                ),
            });
        };
        let master = match self.master_node(master).await? {
            Ok(master) => master,
            Err(reason) => return Ok(Relation::Unrelated { reason }),
        };
        let globals = if needs_global_clusters(&current, &master) {
            let region = master
                .cluster()
                .and_then(|c| c.arn)
                .and_then(|arn| region_of_arn(&arn).map(str::to_string));
            self.global_clusters(&self.client_for(region.as_deref()))
                .await?
        } else {
            Vec::new()
        };
        Ok(relate(&current, &master, &globals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_come_from_arns_and_rds_host_names() {
        assert_eq!(
            region_of_arn("arn:aws:rds:eu-west-1:123456789012:db:main"),
            Some("eu-west-1")
        );
        assert_eq!(region_of_arn("main"), None);
        assert_eq!(
            region_of_host("main.abc123.eu-west-1.rds.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_host("c.cluster-ro-abc.cn-north-1.rds.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            region_of_host("reporting.cluster-custom-abc.eu-central-1.rds.amazonaws.com.")
                .as_deref(),
            Some("eu-central-1")
        );
        assert_eq!(region_of_host("db.example.com"), None);
        assert_eq!(region_of_host("127.0.0.1"), None);
    }

    #[test]
    fn only_valid_identifiers_are_looked_up() {
        assert_eq!(
            identifier_of_host("main-1.abc.us-east-1.rds.amazonaws.com"),
            Some("main-1")
        );
        assert_eq!(
            identifier_of_host("reporting.cluster-custom-abc.us-east-1.rds.amazonaws.com"),
            Some("reporting")
        );
        assert_eq!(identifier_of_host("127.0.0.1"), None);
        assert_eq!(identifier_of_host("[::1]"), None);
        assert_eq!(identifier_of_host(""), None);
    }

    #[test]
    fn custom_endpoints_are_recognised_by_their_second_label() {
        for host in [
            "reporting.cluster-custom-c7tj4example.us-east-1.rds.amazonaws.com",
            "Reporting.CLUSTER-CUSTOM-abc.eu-west-1.rds.amazonaws.com.",
            "r.cluster-custom-abc.cn-north-1.rds.amazonaws.com.cn",
        ] {
            assert!(is_custom_endpoint_host(host), "{host}");
        }
        for host in [
            // The cluster's own endpoints and an instance endpoint.
            "aurora.cluster-abc.us-east-1.rds.amazonaws.com",
            "aurora.cluster-ro-abc.us-east-1.rds.amazonaws.com",
            "reporting.abc.us-east-1.rds.amazonaws.com",
            // No suffix after the prefix; not an RDS domain; too short.
            "reporting.cluster-custom-.us-east-1.rds.amazonaws.com",
            "reporting.cluster-custom-abc.example.com",
            "cluster-custom-abc",
            "127.0.0.1",
        ] {
            assert!(!is_custom_endpoint_host(host), "{host}");
        }
    }

    #[test]
    fn cluster_arns_follow_the_instance_arn() {
        assert_eq!(
            cluster_arn_of_instance("arn:aws:rds:eu-west-1:123456789012:db:sec-1", "sec")
                .as_deref(),
            Some("arn:aws:rds:eu-west-1:123456789012:cluster:sec")
        );
        assert_eq!(
            cluster_arn_of_instance("arn:aws-cn:rds:cn-north-1:1:db:x", "c").as_deref(),
            Some("arn:aws-cn:rds:cn-north-1:1:cluster:c")
        );
        assert_eq!(cluster_arn_of_instance("", "c"), None);
        assert_eq!(
            cluster_arn_of_instance("arn:aws:rds:us-east-1:1:cluster:c", "c"),
            None
        );
    }

    fn instance_in(region: &str, id: &str, cluster: Option<&str>, source: Option<&str>) -> Node {
        Node::Instance(Instance {
            id: id.into(),
            arn: format!("arn:aws:rds:{region}:1:db:{id}"),
            address: Some(format!("{id}.x.{region}.rds.amazonaws.com")),
            port: Some(5432),
            engine: "postgres".into(),
            cluster: cluster.map(str::to_string),
            source: source.map(str::to_string),
        })
    }

    fn instance(id: &str, cluster: Option<&str>, source: Option<&str>) -> Node {
        instance_in("us-east-1", id, cluster, source)
    }

    fn cluster_in(region: &str, id: &str, endpoint: ClusterEndpoint) -> Node {
        Node::Cluster {
            cluster: Cluster {
                id: id.into(),
                arn: format!("arn:aws:rds:{region}:1:cluster:{id}"),
                endpoint: None,
                reader_endpoint: None,
                port: Some(5432),
                engine: "aurora-postgresql".into(),
                members: vec![("w".into(), true), ("r".into(), false)],
            },
            endpoint,
        }
    }

    fn cluster(id: &str, reader: bool) -> Node {
        let endpoint = if reader {
            ClusterEndpoint::Reader
        } else {
            ClusterEndpoint::Writer
        };
        cluster_in("us-east-1", id, endpoint)
    }

    fn rel(current: &Node, master: &Node) -> Relation {
        relate(current, master, &[])
    }

    #[test]
    fn relations() {
        let primary = instance("primary", None, None);
        assert!(rel(&instance("rep", None, Some("primary")), &primary).is_accepted());
        assert!(rel(
            &instance("rep", None, Some("arn:aws:rds:us-east-1:1:db:primary")),
            &primary
        )
        .is_accepted());
        let other = rel(&instance("rep", None, Some("other")), &primary);
        assert!(!other.is_accepted());
        assert!(other.describe().contains("other"), "{other:?}");
        assert!(!rel(&instance("lone", None, None), &primary).is_accepted());

        let aurora = cluster("aurora", false);
        assert_eq!(
            rel(&instance("w", Some("aurora"), None), &aurora),
            Relation::AuroraReader {
                member: "DB instance w (its writer)".into(),
                cluster: "aurora".into()
            }
        );
        assert!(rel(&instance("r", Some("aurora"), None), &aurora).is_accepted());
        assert!(!rel(&instance("r", Some("elsewhere"), None), &aurora).is_accepted());
        assert!(rel(&cluster("aurora", true), &aurora).is_accepted());
        assert!(!rel(&cluster("other", true), &aurora).is_accepted());
        assert!(rel(
            &cluster("aurora", true),
            &instance("w", Some("aurora"), None)
        )
        .is_accepted());
        assert!(rel(
            &instance("r", Some("aurora"), None),
            &instance("w", Some("aurora"), None)
        )
        .is_accepted());
        // The same identifier in another region is another cluster.
        assert!(!rel(
            &instance_in("eu-west-1", "r", Some("aurora"), None),
            &aurora
        )
        .is_accepted());
    }

    #[test]
    fn custom_endpoints_of_the_master_cluster_are_accepted() {
        let custom = |cluster: &str| {
            cluster_in(
                "us-east-1",
                cluster,
                ClusterEndpoint::Custom("reporting".into()),
            )
        };
        let aurora = cluster("aurora", false);
        assert_eq!(
            rel(&custom("aurora"), &aurora),
            Relation::AuroraCustomEndpoint {
                endpoint: "reporting".into(),
                cluster: "aurora".into()
            }
        );
        assert!(rel(&custom("aurora"), &instance("w", Some("aurora"), None)).is_accepted());
        let other = rel(&custom("other"), &aurora);
        assert_eq!(
            other,
            Relation::Unrelated {
                reason: "Aurora cluster other is not the master's cluster aurora, nor in one \
                         Aurora Global Database with it"
                    .into()
            }
        );
        assert!(!rel(&custom("aurora"), &instance("primary", None, None)).is_accepted());
    }

    fn global(id: &str, members: &[(&str, bool)]) -> GlobalCluster {
        GlobalCluster {
            id: id.into(),
            members: members
                .iter()
                .map(|(arn, writer)| (arn.to_string(), *writer))
                .collect(),
        }
    }

    #[test]
    fn secondary_clusters_of_the_master_global_database_are_accepted() {
        let primary_arn = "arn:aws:rds:us-east-1:1:cluster:aurora";
        let secondary_arn = "arn:aws:rds:eu-west-1:1:cluster:aurora-eu";
        let globals = [
            global("unrelated", &[("arn:aws:rds:us-east-1:1:cluster:x", true)]),
            global("orders", &[(primary_arn, true), (secondary_arn, false)]),
        ];
        let master = cluster("aurora", false);
        let reader = cluster_in("eu-west-1", "aurora-eu", ClusterEndpoint::Reader);
        assert_eq!(
            relate(&reader, &master, &globals),
            Relation::GlobalSecondary {
                member: "the reader endpoint".into(),
                cluster: "aurora-eu".into(),
                global: "orders".into(),
                primary: "aurora".into()
            }
        );
        // An instance and a custom endpoint of the secondary; a master on the writer instance.
        let secondary_instance = instance_in("eu-west-1", "eu-1", Some("aurora-eu"), None);
        assert_eq!(
            relate(&secondary_instance, &master, &globals).describe(),
            "DB instance eu-1 of Aurora cluster aurora-eu, a secondary cluster of Global \
             Database orders whose primary cluster is aurora"
        );
        let custom = cluster_in(
            "eu-west-1",
            "aurora-eu",
            ClusterEndpoint::Custom("eu-reporting".into()),
        );
        assert!(relate(&custom, &instance("w", Some("aurora"), None), &globals).is_accepted());
        // Without the global database, or with the master on the secondary: refused.
        assert!(!relate(&reader, &master, &globals[..1]).is_accepted());
        let backwards = relate(
            &cluster("aurora", true),
            &cluster_in("eu-west-1", "aurora-eu", ClusterEndpoint::Writer),
            &globals,
        );
        assert!(!backwards.is_accepted());
        assert!(
            backwards.describe().contains(
                "the master's Aurora cluster aurora-eu is a secondary cluster of \
                           Global Database orders, not its primary"
            ),
            "{backwards:?}"
        );
        // A plain instance is in no cluster: no global database can relate it.
        assert!(!relate(&instance("lone", None, None), &master, &globals).is_accepted());
    }

    #[test]
    fn global_databases_are_asked_only_for_two_different_clusters() {
        let aurora = cluster("aurora", false);
        assert!(!needs_global_clusters(&cluster("aurora", true), &aurora));
        assert!(!needs_global_clusters(
            &instance("lone", None, None),
            &aurora
        ));
        assert!(!needs_global_clusters(
            &instance("rep", None, Some("primary")),
            &instance("primary", None, None)
        ));
        assert!(needs_global_clusters(
            &cluster_in("eu-west-1", "aurora-eu", ClusterEndpoint::Reader),
            &aurora
        ));
    }
}
