//! [`DbTopology`] over `aws-sdk-rds`: `DescribeDBInstances` and `DescribeDBClusters` only.
//!
//! * A managed master secret's tag names an instance or cluster ARN; its endpoint, port and
//!   engine come from the describe call (the cluster's writer endpoint for a cluster).
//! * A host is identified by its first DNS label, which for RDS endpoints is the instance or
//!   cluster identifier (`mydb.abc123.eu-west-1.rds.amazonaws.com`,
//!   `mycluster.cluster-ro-abc123.eu-west-1.rds.amazonaws.com`), and accepted only when the
//!   endpoint RDS reports for that identifier is exactly the host. A host that is not an RDS
//!   endpoint (an IP address, a custom DNS name) is never related to anything.
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
    endpoint: Option<String>,
    reader_endpoint: Option<String>,
    port: Option<i32>,
    engine: String,
    /// (instance id, is writer)
    members: Vec<(String, bool)>,
}

/// An endpoint RDS knows.
#[derive(Debug, Clone)]
enum Node {
    Instance(Instance),
    /// The cluster's writer endpoint (`reader == false`) or reader endpoint.
    Cluster {
        cluster: Cluster,
        reader: bool,
    },
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

    /// The instance or cluster endpoint `host` is, if RDS knows it.
    async fn identify(&self, host: &str) -> Result<Option<Node>, TopologyError> {
        let Some(id) = identifier_of_host(host) else {
            return Ok(None);
        };
        let client = self.client_for(region_of_host(host).as_deref());
        if let Some(instance) = self.instance(&client, id).await? {
            if same_host(instance.address.as_deref(), host) {
                return Ok(Some(Node::Instance(instance)));
            }
        }
        if let Some(cluster) = self.cluster(&client, id).await? {
            if same_host(cluster.endpoint.as_deref(), host) {
                return Ok(Some(Node::Cluster {
                    cluster,
                    reader: false,
                }));
            }
            if same_host(cluster.reader_endpoint.as_deref(), host) {
                return Ok(Some(Node::Cluster {
                    cluster,
                    reader: true,
                }));
            }
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
                        reader: false,
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

/// How the user's node relates to the master's.
fn relate(current: &Node, master: &Node) -> Relation {
    let member_name = |cluster: &Cluster, id: &str| {
        let writer = cluster
            .members
            .iter()
            .any(|(m, w)| *w && m.eq_ignore_ascii_case(id));
        if writer {
            format!("DB instance {id} (its writer)")
        } else {
            format!("DB instance {id}")
        }
    };
    match (current, master) {
        (Node::Instance(c), Node::Instance(m)) => {
            let is_source = |s: &String| s.eq_ignore_ascii_case(&m.id) || *s == m.arn;
            if c.source.as_ref().is_some_and(is_source) {
                return Relation::ReadReplica {
                    replica: c.id.clone(),
                    source: m.id.clone(),
                };
            }
            if let (Some(cc), Some(mc)) = (&c.cluster, &m.cluster) {
                if cc.eq_ignore_ascii_case(mc) {
                    return Relation::AuroraReader {
                        member: format!("DB instance {}", c.id),
                        cluster: cc.clone(),
                    };
                }
            }
            Relation::Unrelated {
                reason: match &c.source {
                    Some(source) => format!(
                        "DB instance {} is a read replica of {source}, not of {}",
                        c.id, m.id
                    ),
                    None => format!(
                        "DB instance {} is not a read replica (ReadReplicaSourceDBInstanceIdentifier \
                         is empty) and not in the same Aurora cluster as {}",
                        c.id, m.id
                    ),
                },
            }
        }
        (Node::Instance(c), Node::Cluster { cluster, .. }) => {
            if c.cluster
                .as_ref()
                .is_some_and(|cc| cc.eq_ignore_ascii_case(&cluster.id))
            {
                Relation::AuroraReader {
                    member: member_name(cluster, &c.id),
                    cluster: cluster.id.clone(),
                }
            } else {
                Relation::Unrelated {
                    reason: format!(
                        "DB instance {} is not a member of Aurora cluster {}",
                        c.id, cluster.id
                    ),
                }
            }
        }
        (Node::Cluster { cluster, reader }, Node::Instance(m)) => {
            if m.cluster
                .as_ref()
                .is_some_and(|mc| mc.eq_ignore_ascii_case(&cluster.id))
            {
                Relation::AuroraReader {
                    member: endpoint_name(*reader),
                    cluster: cluster.id.clone(),
                }
            } else {
                Relation::Unrelated {
                    reason: format!(
                        "the master's DB instance {} is not a member of Aurora cluster {}",
                        m.id, cluster.id
                    ),
                }
            }
        }
        (Node::Cluster { cluster, reader }, Node::Cluster { cluster: mc, .. }) => {
            if cluster.id.eq_ignore_ascii_case(&mc.id) {
                Relation::AuroraReader {
                    member: endpoint_name(*reader),
                    cluster: cluster.id.clone(),
                }
            } else {
                Relation::Unrelated {
                    reason: format!(
                        "Aurora cluster {} is not the master's cluster {}",
                        cluster.id, mc.id
                    ),
                }
            }
        }
    }
}

fn endpoint_name(reader: bool) -> String {
    if reader {
        "the reader endpoint".into()
    } else {
        "the cluster endpoint".into()
    }
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
                    "{host} is not the endpoint of an RDS DB instance or Aurora cluster that \
                     DescribeDBInstances / DescribeDBClusters know"
                ),
            });
        };
        Ok(match self.master_node(master).await? {
            Ok(master) => relate(&current, &master),
            Err(reason) => Relation::Unrelated { reason },
        })
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
        assert_eq!(region_of_host("db.example.com"), None);
        assert_eq!(region_of_host("127.0.0.1"), None);
    }

    #[test]
    fn only_valid_identifiers_are_looked_up() {
        assert_eq!(
            identifier_of_host("main-1.abc.us-east-1.rds.amazonaws.com"),
            Some("main-1")
        );
        assert_eq!(identifier_of_host("127.0.0.1"), None);
        assert_eq!(identifier_of_host("[::1]"), None);
        assert_eq!(identifier_of_host(""), None);
    }

    fn instance(id: &str, cluster: Option<&str>, source: Option<&str>) -> Node {
        Node::Instance(Instance {
            id: id.into(),
            arn: format!("arn:aws:rds:us-east-1:1:db:{id}"),
            address: Some(format!("{id}.x.us-east-1.rds.amazonaws.com")),
            port: Some(5432),
            engine: "postgres".into(),
            cluster: cluster.map(str::to_string),
            source: source.map(str::to_string),
        })
    }

    fn cluster(id: &str, reader: bool) -> Node {
        Node::Cluster {
            cluster: Cluster {
                id: id.into(),
                endpoint: None,
                reader_endpoint: None,
                port: Some(5432),
                engine: "aurora-postgresql".into(),
                members: vec![("w".into(), true), ("r".into(), false)],
            },
            reader,
        }
    }

    #[test]
    fn relations() {
        let primary = instance("primary", None, None);
        assert!(relate(&instance("rep", None, Some("primary")), &primary).is_accepted());
        assert!(relate(
            &instance("rep", None, Some("arn:aws:rds:us-east-1:1:db:primary")),
            &primary
        )
        .is_accepted());
        let other = relate(&instance("rep", None, Some("other")), &primary);
        assert!(!other.is_accepted());
        assert!(other.describe().contains("other"), "{other:?}");
        assert!(!relate(&instance("lone", None, None), &primary).is_accepted());

        let aurora = cluster("aurora", false);
        assert!(relate(&instance("r", Some("aurora"), None), &aurora).is_accepted());
        assert!(!relate(&instance("r", Some("elsewhere"), None), &aurora).is_accepted());
        assert!(relate(&cluster("aurora", true), &aurora).is_accepted());
        assert!(!relate(&cluster("other", true), &aurora).is_accepted());
        assert!(relate(
            &cluster("aurora", true),
            &instance("w", Some("aurora"), None)
        )
        .is_accepted());
        assert!(relate(
            &instance("r", Some("aurora"), None),
            &instance("w", Some("aurora"), None)
        )
        .is_accepted());
    }
}
