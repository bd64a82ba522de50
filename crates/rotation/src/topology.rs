//! `DbTopology`: the RDS look-ups the alternating-users strategy needs.
//!
//! * An RDS-managed master secret holds only `username` and `password`; its
//!   `aws:rds:primaryDBInstanceArn` / `aws:rds:primaryDBClusterArn` tag names the database, whose
//!   endpoint, port and engine come from `DescribeDBInstances` / `DescribeDBClusters`.
//! * A master secret on another host than the user's is accepted only when RDS relates the
//!   user's host to the master's database ([`Relation`]): an RDS read replica of the master's
//!   instance; an Aurora reader (instance or reader endpoint) or a custom endpoint of the master's
//!   cluster; an endpoint of a secondary cluster of the Aurora Global Database whose primary
//!   cluster the master uses.
//!
//! The AWS implementation lives in the `secrets-manager` crate; [`NoTopology`] answers "unknown"
//! when no RDS client is configured.

use async_trait::async_trait;

/// Tag key RDS puts on the master secrets of DB instances (compared case-insensitively).
pub const INSTANCE_TAG: &str = "aws:rds:primarydbinstancearn";
/// Tag key RDS puts on the master secrets of Aurora clusters (compared case-insensitively).
pub const CLUSTER_TAG: &str = "aws:rds:primarydbclusterarn";

/// The database an RDS-managed secret belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RdsResource {
    /// A DB instance, by ARN.
    Instance {
        /// The instance's ARN.
        arn: String,
    },
    /// An Aurora DB cluster, by ARN.
    Cluster {
        /// The cluster's ARN.
        arn: String,
    },
}

impl RdsResource {
    /// The resource named by RDS's system tag, if the secret carries one.
    pub fn from_tags(tags: &[(String, String)]) -> Option<RdsResource> {
        tags.iter().find_map(|(key, value)| {
            let key = key.to_ascii_lowercase();
            if key == INSTANCE_TAG {
                Some(RdsResource::Instance { arn: value.clone() })
            } else if key == CLUSTER_TAG {
                Some(RdsResource::Cluster { arn: value.clone() })
            } else {
                None
            }
        })
    }

    /// The resource's ARN.
    pub fn arn(&self) -> &str {
        match self {
            RdsResource::Instance { arn } | RdsResource::Cluster { arn } => arn,
        }
    }

    /// The tag that names this kind of resource.
    pub fn tag(&self) -> &'static str {
        match self {
            RdsResource::Instance { .. } => "aws:rds:primaryDBInstanceArn",
            RdsResource::Cluster { .. } => "aws:rds:primaryDBClusterArn",
        }
    }
}

/// Where a database can be reached, as RDS describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbEndpoint {
    /// The endpoint's host name.
    pub host: String,
    /// The endpoint's port.
    pub port: u16,
    /// RDS's engine name, e.g. `postgres` or `aurora-postgresql`.
    pub engine: String,
}

/// The master's database: its host and, when known from the secret's tag, the RDS resource.
#[derive(Debug, Clone, Copy)]
pub struct MasterLocation<'a> {
    /// The master's host.
    pub host: &'a str,
    /// The RDS resource named by the master secret's tag, when it has one.
    pub resource: Option<&'a RdsResource>,
}

/// How the user's host relates to the master's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// The user's host is the endpoint of `replica`, an RDS read replica of `source`.
    ReadReplica {
        /// The replica instance.
        replica: String,
        /// The instance it replicates.
        source: String,
    },
    /// The user's host is `member` (a reader instance or the reader endpoint) of Aurora `cluster`,
    /// whose writer the master uses.
    AuroraReader {
        /// The reader instance or endpoint.
        member: String,
        /// The cluster.
        cluster: String,
    },
    /// The user's host is `endpoint`, a custom endpoint of Aurora `cluster`, whose writer the
    /// master uses.
    AuroraCustomEndpoint {
        /// The custom endpoint's identifier.
        endpoint: String,
        /// The cluster.
        cluster: String,
    },
    /// The user's host is `member` of Aurora `cluster`, a secondary cluster of Aurora Global
    /// Database `global`, whose primary cluster `primary` the master uses.
    GlobalSecondary {
        /// The instance or endpoint of the secondary cluster.
        member: String,
        /// The secondary cluster.
        cluster: String,
        /// The global database.
        global: String,
        /// Its primary (writer) cluster, the master's.
        primary: String,
    },
    /// None of these; `reason` says what RDS reported.
    Unrelated {
        /// What RDS reported.
        reason: String,
    },
}

impl Relation {
    /// Whether a master secret for the other host may maintain the user.
    pub fn is_accepted(&self) -> bool {
        !matches!(self, Relation::Unrelated { .. })
    }

    /// The relation in words, for messages.
    pub fn describe(&self) -> String {
        match self {
            Relation::ReadReplica { replica, source } => {
                format!("RDS read replica {replica} of DB instance {source}")
            }
            Relation::AuroraReader { member, cluster } => {
                format!("{member}, a reader of Aurora cluster {cluster}")
            }
            Relation::AuroraCustomEndpoint { endpoint, cluster } => {
                format!("custom endpoint {endpoint} of Aurora cluster {cluster}")
            }
            Relation::GlobalSecondary {
                member,
                cluster,
                global,
                primary,
            } => format!(
                "{member} of Aurora cluster {cluster}, a secondary cluster of Global Database \
                 {global} whose primary cluster is {primary}"
            ),
            Relation::Unrelated { reason } => reason.clone(),
        }
    }
}

/// A failed RDS call.
pub type TopologyError = crate::service::ServiceError<crate::service::Rds>;

/// The RDS look-ups used by the alternating-users strategy and the preflight.
#[async_trait]
pub trait DbTopology: Send + Sync {
    /// Endpoint, port and engine of an instance (`DescribeDBInstances`) or cluster
    /// (`DescribeDBClusters`, the writer endpoint).
    async fn endpoint_of(&self, resource: &RdsResource) -> Result<DbEndpoint, TopologyError>;

    /// How `host` relates to the master's database: a read replica of its instance, a reader or
    /// custom endpoint of its Aurora cluster, an endpoint of a secondary cluster of its Global
    /// Database, or none of these.
    async fn relation(
        &self,
        host: &str,
        master: MasterLocation<'_>,
    ) -> Result<Relation, TopologyError>;
}

/// No RDS client: managed master secrets cannot be resolved and no host is a replica.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTopology;

#[async_trait]
impl DbTopology for NoTopology {
    async fn endpoint_of(&self, resource: &RdsResource) -> Result<DbEndpoint, TopologyError> {
        Err(TopologyError::new(
            "DescribeDBInstances",
            None,
            format!("no RDS client is configured to resolve {}", resource.arn()),
        ))
    }

    async fn relation(
        &self,
        host: &str,
        _master: MasterLocation<'_>,
    ) -> Result<Relation, TopologyError> {
        Ok(Relation::Unrelated {
            reason: format!("no RDS client is configured to check whether {host} is a replica"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_are_described_with_their_names() {
        let custom = Relation::AuroraCustomEndpoint {
            endpoint: "reporting".into(),
            cluster: "aurora".into(),
        };
        assert!(custom.is_accepted());
        assert_eq!(
            custom.describe(),
            "custom endpoint reporting of Aurora cluster aurora"
        );
        let secondary = Relation::GlobalSecondary {
            member: "the reader endpoint".into(),
            cluster: "aurora-eu".into(),
            global: "orders".into(),
            primary: "aurora".into(),
        };
        assert!(secondary.is_accepted());
        assert_eq!(
            secondary.describe(),
            "the reader endpoint of Aurora cluster aurora-eu, a secondary cluster of Global \
             Database orders whose primary cluster is aurora"
        );
        assert!(!Relation::Unrelated {
            reason: "no".into()
        }
        .is_accepted());
    }

    #[test]
    fn system_tags_are_found_in_any_case() {
        let tags = vec![
            ("team".to_string(), "payments".to_string()),
            (
                "aws:rds:primaryDBInstanceArn".to_string(),
                "arn:aws:rds:us-east-1:1:db:main".to_string(),
            ),
        ];
        assert_eq!(
            RdsResource::from_tags(&tags),
            Some(RdsResource::Instance {
                arn: "arn:aws:rds:us-east-1:1:db:main".into()
            })
        );
        let tags = vec![(
            "AWS:RDS:PRIMARYDBCLUSTERARN".to_string(),
            "arn:aws:rds:us-east-1:1:cluster:c".to_string(),
        )];
        assert!(matches!(
            RdsResource::from_tags(&tags),
            Some(RdsResource::Cluster { .. })
        ));
        assert_eq!(RdsResource::from_tags(&[]), None);
    }
}
