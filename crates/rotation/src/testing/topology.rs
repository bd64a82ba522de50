//! [`MemoryTopology`]: in-memory RDS look-ups.

use crate::topology::{
    DbEndpoint, DbTopology, MasterLocation, RdsResource, Relation, TopologyError,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// In-memory RDS look-ups: endpoints by ARN and relations by (host, master host).
#[derive(Debug, Clone, Default)]
pub struct MemoryTopology {
    endpoints: Arc<Mutex<HashMap<String, DbEndpoint>>>,
    relations: Arc<Mutex<HashMap<(String, String), Relation>>>,
    calls: Arc<AtomicU64>,
}

impl MemoryTopology {
    /// No endpoints, every host unrelated.
    pub fn new() -> Self {
        Self::default()
    }

    /// What `DescribeDBInstances` / `DescribeDBClusters` says of `arn`.
    pub fn add_endpoint(&self, arn: &str, endpoint: DbEndpoint) {
        self.endpoints
            .lock()
            .unwrap()
            .insert(arn.to_string(), endpoint);
    }

    /// How `host` relates to the master at `master_host` (unrelated unless set).
    pub fn set_relation(&self, host: &str, master_host: &str, relation: Relation) {
        self.relations
            .lock()
            .unwrap()
            .insert((host.to_string(), master_host.to_string()), relation);
    }

    /// RDS calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl DbTopology for MemoryTopology {
    async fn endpoint_of(&self, resource: &RdsResource) -> Result<DbEndpoint, TopologyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.endpoints
            .lock()
            .unwrap()
            .get(resource.arn())
            .cloned()
            .ok_or_else(|| {
                TopologyError::new(
                    "DescribeDBInstances",
                    Some("DBInstanceNotFound".into()),
                    format!("{} not found", resource.arn()),
                )
            })
    }

    async fn relation(
        &self,
        host: &str,
        master: MasterLocation<'_>,
    ) -> Result<Relation, TopologyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .relations
            .lock()
            .unwrap()
            .get(&(host.to_string(), master.host.to_string()))
            .cloned()
            .unwrap_or_else(|| Relation::Unrelated {
                reason: format!("{host} is not an RDS endpoint"),
            }))
    }
}
