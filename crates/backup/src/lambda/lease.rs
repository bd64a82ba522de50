//! One backup run at a time per source (account and region), without reserved concurrency.
//!
//! The vault never lets an object be overwritten or deleted (Object Lock, and every write is
//! `If-None-Match: *`), so the lease is a sequence of claims, each a new object:
//!
//! ```text
//! <prefix>/leases/<account>/<region>/<n, 20 digits>/claim.json      {"runId", "startedAt", "expiresAt"}
//! <prefix>/leases/<account>/<region>/<n, 20 digits>/released.json   written when run n ends
//! ```
//!
//! A run reads the last claim: unless it is released or past its `expiresAt`, another run holds
//! the source and this one stops ([`LeaseError::Held`]). Otherwise it writes claim `n + 1` with
//! `If-None-Match: *`: of two runs that raced to the same number, exactly one gets it, and the
//! other stops too. A run that is killed never writes `released.json`; its claim holds until
//! `expiresAt` (the start plus `BACKUP_LEASE_SECONDS`, by default Lambda's largest timeout).
//! The folder `leases/` is outside every `<account>/<region>/` snapshot folder.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::{ApiError, Body, ErrorKind, ObjectStore};

/// The largest claim the lease reads (a claim is about 150 bytes).
const MAX_CLAIM_BYTES: u64 = 64 * 1024;

/// What a claim says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// The run (its snapshot id).
    pub run_id: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When the claim lapses if never released.
    pub expires_at: DateTime<Utc>,
}

/// Why a run may not start.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another run holds the source.
    #[error(
        "another backup of {source_name} is running: run {} started at {} holds the lease {key} \
         until {} (released when it ends)",
        .holder.run_id,
        .holder.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        .holder.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )]
    Held {
        /// `<account>/<region>`.
        source_name: String,
        /// The claim's key.
        key: String,
        /// What it says.
        holder: Claim,
    },
    /// Another run took the next claim first.
    #[error("another backup of {source_name} started at the same time and took the lease {key}")]
    Raced {
        /// `<account>/<region>`.
        source_name: String,
        /// The claim's key.
        key: String,
    },
    /// The bucket could not be read or written.
    #[error("the run lease {key}: {error}")]
    Store {
        /// The object at fault.
        key: String,
        /// The call's error.
        error: ApiError,
    },
    /// A claim that is not a claim.
    #[error("the run lease {key} is not a claim: {reason}")]
    Unreadable {
        /// The claim's key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// A held lease: release it when the run ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The claim's folder (ends in `/`).
    pub folder: String,
}

/// `<prefix>/leases/<account>/<region>/` (the prefix may be empty).
pub fn lease_prefix(prefix: &str, account: &str, region: &str) -> String {
    if prefix.is_empty() {
        format!("leases/{account}/{region}/")
    } else {
        format!("{prefix}/leases/{account}/{region}/")
    }
}

fn store_err(key: &str) -> impl FnOnce(ApiError) -> LeaseError + '_ {
    move |error| LeaseError::Store {
        key: key.to_string(),
        error,
    }
}

/// The source whose runs a lease orders.
#[derive(Clone, Copy, Debug)]
pub struct LeaseSource<'a> {
    /// The snapshots' key prefix.
    pub prefix: &'a str,
    /// The source account.
    pub account: &'a str,
    /// The source region.
    pub region: &'a str,
}

/// Takes the lease of `source` for `run_id`, for `ttl` from `now`.
pub async fn acquire(
    store: &dyn ObjectStore,
    source: LeaseSource<'_>,
    run_id: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<Lease, LeaseError> {
    let source_name = format!("{}/{}", source.account, source.region);
    let base = &lease_prefix(source.prefix, source.account, source.region);
    let folders = store.list_folders(base).await.map_err(store_err(base))?;
    let last = folders
        .iter()
        .filter_map(|f| {
            let n: u64 = f.strip_prefix(base)?.strip_suffix('/')?.parse().ok()?;
            Some((n, f))
        })
        .max_by_key(|(n, _)| *n);
    let next = match last {
        None => 1,
        Some((n, folder)) => {
            let key = format!("{folder}claim.json");
            let released = format!("{folder}released.json");
            if store
                .head(&released)
                .await
                .map_err(store_err(&released))?
                .is_none()
            {
                // A folder without its claim: a claim being written right now (S3 lists a key
                // only once it is written, so this does not happen), or a stray object.
                let bytes = store
                    .get(&key, MAX_CLAIM_BYTES)
                    .await
                    .map_err(store_err(&key))?
                    .ok_or_else(|| LeaseError::Unreadable {
                        key: key.clone(),
                        reason: "missing".into(),
                    })?;
                let holder: Claim =
                    serde_json::from_slice(&bytes).map_err(|e| LeaseError::Unreadable {
                        key: key.clone(),
                        reason: e.to_string(),
                    })?;
                if holder.expires_at > now {
                    return Err(LeaseError::Held {
                        source_name,
                        key,
                        holder,
                    });
                }
            }
            n + 1
        }
    };
    let folder = format!("{base}{next:020}/");
    let key = format!("{folder}claim.json");
    let claim = Claim {
        run_id: run_id.to_string(),
        started_at: now,
        expires_at: now + ttl,
    };
    let body = serde_json::to_vec(&claim).expect("a claim serializes");
    match store
        .put_new(&key, Body::Bytes(body), "application/json", &[])
        .await
    {
        Ok(_version) => Ok(Lease { folder }),
        Err(e) if e.kind == ErrorKind::AlreadyExists => {
            // Ours when the SDK retried a write that had landed (its answer lost); else another
            // run's.
            let ours = store
                .get(&key, MAX_CLAIM_BYTES)
                .await
                .map_err(store_err(&key))?
                .and_then(|b| serde_json::from_slice::<Claim>(&b).ok())
                .is_some_and(|c| c == claim);
            if ours {
                Ok(Lease { folder })
            } else {
                Err(LeaseError::Raced { source_name, key })
            }
        }
        Err(e) => Err(LeaseError::Store { key, error: e }),
    }
}

/// Ends the lease: the next run may start at once.
pub async fn release(store: &dyn ObjectStore, lease: &Lease) -> Result<(), LeaseError> {
    let key = format!("{}released.json", lease.folder);
    match store
        .put_new(&key, Body::Bytes(b"{}".to_vec()), "application/json", &[])
        .await
    {
        // A retried write that had landed: released all the same.
        Err(e) if e.kind == ErrorKind::AlreadyExists => Ok(()),
        other => other.map(|_version| ()).map_err(store_err(&key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::fakes::FakeStore;
    use crate::ports::VersionedObject;
    use async_trait::async_trait;
    use std::collections::HashMap;

    const SOURCE: LeaseSource<'static> = LeaseSource {
        prefix: "p",
        account: "111111111111",
        region: "us-east-1",
    };
    const BASE: &str = "p/leases/111111111111/us-east-1/";

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[tokio::test]
    async fn one_run_at_a_time_released_or_lapsed() {
        let store = FakeStore::default();
        let ttl = Duration::seconds(900);
        assert_eq!(lease_prefix("", "1", "r"), "leases/1/r/");
        let a = acquire(&store, SOURCE, "run-a", at(0), ttl).await.unwrap();
        assert_eq!(a.folder, format!("{BASE}00000000000000000001/"));
        // Held: a second run stops, naming the source, the holder and the lease.
        let err = acquire(&store, SOURCE, "run-b", at(10), ttl)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LeaseError::Held { .. }), "{text}");
        assert!(
            text.contains("111111111111/us-east-1")
                && text.contains("run-a")
                && text.contains("00000000000000000001/claim.json"),
            "{text}"
        );
        // Released: the next run starts at once.
        release(&store, &a).await.unwrap();
        let b = acquire(&store, SOURCE, "run-b", at(20), ttl).await.unwrap();
        assert_eq!(b.folder, format!("{BASE}00000000000000000002/"));
        // Never released (killed): held until it lapses, then taken.
        assert!(acquire(&store, SOURCE, "run-c", at(919), ttl)
            .await
            .is_err());
        let c = acquire(&store, SOURCE, "run-c", at(921), ttl)
            .await
            .unwrap();
        assert_eq!(c.folder, format!("{BASE}00000000000000000003/"));
        // Another source is independent.
        let other = LeaseSource {
            region: "eu-west-1",
            ..SOURCE
        };
        acquire(&store, other, "x", at(921), ttl).await.unwrap();
        // A claim that is not a claim is reported, never taken over.
        store.overwrite(&format!("{}claim.json", c.folder), b"{}".to_vec());
        let err = acquire(&store, SOURCE, "d", at(2000), ttl)
            .await
            .unwrap_err();
        assert!(matches!(err, LeaseError::Unreadable { .. }), "{err}");
    }

    /// A bucket whose listing misses what another run has just written.
    struct Stale(FakeStore);

    #[async_trait]
    impl ObjectStore for Stale {
        async fn put_new(
            &self,
            key: &str,
            body: Body,
            content_type: &str,
            metadata: &[(&str, String)],
        ) -> Result<Option<String>, ApiError> {
            self.0.put_new(key, body, content_type, metadata).await
        }
        async fn get_versioned(
            &self,
            key: &str,
            max_len: u64,
        ) -> Result<Option<VersionedObject>, ApiError> {
            self.0.get_versioned(key, max_len).await
        }
        async fn head(&self, key: &str) -> Result<Option<HashMap<String, String>>, ApiError> {
            self.0.head(key).await
        }
        async fn list_folders(&self, _prefix: &str) -> Result<Vec<String>, ApiError> {
            Ok(vec![])
        }
    }

    #[tokio::test]
    async fn of_two_runs_racing_to_the_same_claim_one_stops() {
        let store = Stale(FakeStore::default());
        let ttl = Duration::seconds(900);
        // Both listed no claim; the first writes claim 1, the second's write is refused.
        acquire(&store, SOURCE, "first", at(0), ttl).await.unwrap();
        let err = acquire(&store, SOURCE, "second", at(0), ttl)
            .await
            .unwrap_err();
        assert!(matches!(err, LeaseError::Raced { .. }), "{err}");
        assert!(
            err.to_string().contains("00000000000000000001/claim.json"),
            "{err}"
        );
        // A write that landed but whose answer was lost, retried: the claim is the run's own.
        let again = acquire(&store, SOURCE, "first", at(0), ttl).await.unwrap();
        assert_eq!(again.folder, format!("{BASE}00000000000000000001/"));
        release(&store, &again).await.unwrap();
        release(&store, &again).await.unwrap();
    }
}
