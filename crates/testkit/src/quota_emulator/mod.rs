//! A quota-faithful emulator of the Secrets Manager and Parameter Store reads the backup makes
//! (or will make), for measurements at a scale moto cannot serve (moto takes seconds per
//! thousand secrets, and has no quotas).
//!
//! An HTTP server on a loopback port speaking the awsJson1_1 protocol (`X-Amz-Target:
//! secretsmanager.<Operation>` / `AmazonSSM.<Operation>`), which the real AWS SDKs reach through
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL_SSM` (or `endpoint_url`).
//!
//! **Reproduced:**
//! - Secrets Manager: `ListSecrets` (pages of `MaxResults` ≤ 100, opaque `NextToken`, filters
//!   `name`, `tag-key`, `tag-value`, `description`, `all` as case-sensitive prefixes, `!`
//!   negation, values of one filter ORed, filters ANDed; entries with `SecretVersionsToStages`,
//!   tags, KMS key, rotation, dates), `DescribeSecret` (by name or full ARN; a wrong ARN suffix is
//!   not found), `GetSecretValue` (AWSCURRENT, or by `VersionId` and/or `VersionStage`),
//!   `BatchGetSecretValue` (`SecretIdList` of at most 20, or `Filters` with pages of at most 20;
//!   both or neither refused; a missing secret is an entry of `Errors`, the call succeeds),
//!   `GetResourcePolicy` (a policy on about 10 % of the secrets, none on the others),
//!   `ListSecretVersionIds` (pages, deprecated versions only with `IncludeDeprecated`).
//! - Parameter Store: `GetParametersByPath` (recursive or one level, pages of `MaxResults` ≤ 10,
//!   `WithDecryption`: a SecureString without it answers ciphertext text),
//!   `GetParameterHistory` (pages of ≤ 50, labels, KMS key, tier), `DescribeParameters`
//!   (`ParameterFilters` `Name` Equals/BeginsWith, `Path` OneLevel/Recursive, `Type`; pages of
//!   ≤ 50), `ListTagsForResource` (`ResourceType=Parameter`), `GetParameters` (≤ 10 names,
//!   `name:version` and `name:label` selectors, unknown names in `InvalidParameters`).
//! - Errors in the wire shape of AWS's JSON protocol (status, `x-amzn-ErrorType`, `__type`,
//!   `message`): `ResourceNotFoundException`, `InvalidParameterException`,
//!   `InvalidNextTokenException`, `ValidationException` (limits), `ParameterNotFound`,
//!   `InvalidNextToken`, `InvalidFilterKey`, `InvalidResourceId`.
//! - **Quotas**: one token bucket per published per-account quota ([`quotas`], sources cited
//!   there; shared families share a bucket, e.g. Get/Put/Delete/ValidateResourcePolicy at 50 per
//!   second). A call over its quota is answered 400 `ThrottlingException` ("Rate exceeded"),
//!   which the SDKs retry with backoff, and counted ([`QuotaEmulator::counts`]).
//! - A configurable latency added to every answer ([`EmulatorConfig::latency`]), throttled or not.
//! - Data from a seeded generator ([`Population`]): names, labels (AWSCURRENT, AWSPREVIOUS on
//!   60 %, a custom label on 2 %), tags, descriptions, customer keys, rotation, value sizes;
//!   100,000 secrets fit in memory (values are derived, not stored); [`QuotaEmulator::mutate`]
//!   changes a seeded share of them as a rotation would (new AWSCURRENT, labels moved).
//!
//! **Not reproduced:** writes (every operation not listed answers `UnknownOperationException`),
//! authentication and IAM (signatures are not checked), deleted secrets and
//! `IncludePlannedDeletion`, replication, binary secrets, `SortOrder` (always creation order),
//! a token reused with other filters, KMS errors, the legacy `Filters` of DescribeParameters,
//! parameter policies, and AWS's burst allowances (a bucket holds one second of its rate).

pub mod parameter_store;
pub mod population;
pub mod quotas;
pub mod secrets_manager;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tiny_http::{Header, Response, Server};

pub use population::{Population, World};
pub use quotas::{Buckets, QuotaRow, Quotas};

/// The region and account the emulator answers for (ARNs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `us-east-1` by default.
    pub region: String,
    /// `123456789012` by default.
    pub account: String,
}

impl Default for Place {
    fn default() -> Self {
        Place {
            region: "us-east-1".into(),
            account: "123456789012".into(),
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The `__type` (error code).
    pub code: String,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// A 400 with `code`.
    pub fn client(code: &str, message: &str) -> ApiError {
        ApiError {
            status: 400,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A 400 `ValidationException` (a limit of the request's shape).
    pub fn validation(message: &str) -> ApiError {
        Self::client("ValidationException", message)
    }
}

/// The `NextToken` of a page that resumes at position `n`.
pub fn page_token(n: usize) -> String {
    format!("emu1.{n}")
}

/// The position the request's `NextToken` resumes at (0 without one); a token the emulator did
/// not hand out is refused with `code`.
pub fn parse_token(body: &Value, code: &str) -> Result<usize, ApiError> {
    match body.get("NextToken").and_then(Value::as_str) {
        None => Ok(0),
        Some(t) => t
            .strip_prefix("emu1.")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| ApiError::client(code, "The nextToken is not valid.")),
    }
}

/// How the emulator behaves.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The quotas enforced.
    pub quotas: Quotas,
    /// Added to every answer.
    pub latency: Duration,
    /// Requests served at once (each waits out its latency on its own thread).
    pub workers: usize,
    /// Region and account of the ARNs.
    pub place: Place,
}

impl Default for EmulatorConfig {
    /// The published quotas, no latency, 64 workers.
    fn default() -> Self {
        EmulatorConfig {
            quotas: Quotas::published(),
            latency: Duration::ZERO,
            workers: 64,
            place: Place::default(),
        }
    }
}

/// Calls of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApiCounts {
    /// Every call, throttled or not.
    pub calls: u64,
    /// Calls answered `ThrottlingException`.
    pub throttled: u64,
}

/// How much of one quota a period used.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaUse {
    /// The quota row.
    pub row: QuotaRow,
    /// Calls served (not throttled) by its operations.
    pub served: u64,
    /// Calls throttled.
    pub throttled: u64,
    /// Served calls per second over the period.
    pub per_second: f64,
    /// `per_second` / the quota (1.0 = the whole quota).
    pub share: f64,
}

struct Inner {
    world: RwLock<World>,
    buckets: Buckets,
    counts: Mutex<BTreeMap<String, ApiCounts>>,
    /// Names of the secrets whose value was served since the counts were last reset.
    values_read: Mutex<HashSet<String>>,
    config: EmulatorConfig,
    stop: AtomicBool,
}

/// The running emulator; stops when dropped.
pub struct QuotaEmulator {
    addr: SocketAddr,
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl QuotaEmulator {
    /// Generates `population` and serves it on a free loopback port under `config`.
    pub fn start(population: &Population, config: EmulatorConfig) -> QuotaEmulator {
        let world = World::generate(population);
        let server = Arc::new(
            Server::http("127.0.0.1:0")
                .unwrap_or_else(|e| panic!("start the quota emulator on 127.0.0.1: {e}")),
        );
        let addr = server
            .server_addr()
            .to_ip()
            .expect("the emulator listens on an IP address");
        let inner = Arc::new(Inner {
            world: RwLock::new(world),
            buckets: Buckets::new(config.quotas.clone()),
            counts: Mutex::new(BTreeMap::new()),
            values_read: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
            config,
        });
        let threads = (0..inner.config.workers.max(1))
            .map(|n| {
                let (server, inner) = (Arc::clone(&server), Arc::clone(&inner));
                std::thread::Builder::new()
                    .name(format!("quota-emulator-{n}"))
                    .spawn(move || {
                        while !inner.stop.load(Ordering::Relaxed) {
                            if let Ok(Some(request)) =
                                server.recv_timeout(Duration::from_millis(100))
                            {
                                serve(&inner, request);
                            }
                        }
                    })
                    .expect("spawn an emulator worker")
            })
            .collect();
        QuotaEmulator {
            addr,
            inner,
            threads,
        }
    }

    /// `http://127.0.0.1:PORT`: `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL_SSM`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes `share` of the secrets (seeded), as [`World::mutate`]; returns their names.
    pub fn mutate(&self, share: f64, seed: u64) -> Vec<String> {
        self.inner
            .world
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .mutate(share, seed)
    }

    /// Calls so far, by operation.
    pub fn counts(&self) -> BTreeMap<String, ApiCounts> {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many distinct secrets had a value served (GetSecretValue, BatchGetSecretValue) since
    /// the counts were last reset: what an incremental run read again.
    pub fn secrets_read(&self) -> usize {
        self.inner
            .values_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Forgets the counts and the secrets read.
    pub fn reset_counts(&self) {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.inner
            .values_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The quotas enforced.
    pub fn quotas(&self) -> &Quotas {
        &self.inner.config.quotas
    }

    /// How much of each quota `counts` used over `elapsed` (rows with calls only).
    pub fn quota_use(
        &self,
        counts: &BTreeMap<String, ApiCounts>,
        elapsed: Duration,
    ) -> Vec<QuotaUse> {
        quota_use(self.quotas(), counts, elapsed)
    }
}

/// How much of each row of `quotas` `counts` used over `elapsed` (rows with calls only).
pub fn quota_use(
    quotas: &Quotas,
    counts: &BTreeMap<String, ApiCounts>,
    elapsed: Duration,
) -> Vec<QuotaUse> {
    let secs = elapsed.as_secs_f64().max(1e-9);
    quotas
        .rows
        .iter()
        .filter_map(|row| {
            let (served, throttled) = row
                .operations
                .iter()
                .filter_map(|op| counts.get(*op))
                .fold((0, 0), |(s, t), c| {
                    (s + c.calls - c.throttled, t + c.throttled)
                });
            (served + throttled > 0).then(|| QuotaUse {
                row: row.clone(),
                served,
                throttled,
                per_second: served as f64 / secs,
                share: served as f64 / secs / f64::from(row.per_second),
            })
        })
        .collect()
}

impl Drop for QuotaEmulator {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn answer(status: u16, body: &Value, error: Option<&str>) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut response = Response::from_data(body.to_string().into_bytes())
        .with_status_code(status)
        .with_header(header("Content-Type", "application/x-amz-json-1.1"))
        .with_header(header(
            "x-amzn-RequestId",
            &uuid::Uuid::new_v4().to_string(),
        ));
    if let Some(code) = error {
        response = response.with_header(header("x-amzn-ErrorType", code));
    }
    response
}

fn error_answer(e: &ApiError) -> Response<std::io::Cursor<Vec<u8>>> {
    answer(
        e.status,
        &json!({"__type": e.code, "message": e.message}),
        Some(&e.code),
    )
}

fn serve(inner: &Inner, mut request: tiny_http::Request) {
    let started = Instant::now();
    let target = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("X-Amz-Target"))
        .map(|h| h.value.as_str().to_string())
        .unwrap_or_default();
    let mut raw = Vec::new();
    let _ = request.as_reader().read_to_end(&mut raw);
    let (service, operation) = target.split_once('.').unwrap_or(("", ""));
    let response = respond(inner, service, operation, &raw);
    if let Some(left) = inner.config.latency.checked_sub(started.elapsed()) {
        std::thread::sleep(left);
    }
    let _ = request.respond(response);
}

fn respond(
    inner: &Inner,
    service: &str,
    operation: &str,
    raw: &[u8],
) -> Response<std::io::Cursor<Vec<u8>>> {
    let throttled = inner.buckets.take(service, operation).is_err();
    {
        let mut counts = inner.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let c = counts.entry(operation.to_string()).or_default();
        c.calls += 1;
        c.throttled += u64::from(throttled);
    }
    if throttled {
        return error_answer(&ApiError::client("ThrottlingException", "Rate exceeded"));
    }
    let body: Value = match serde_json::from_slice(if raw.is_empty() { b"{}" } else { raw }) {
        Ok(v) => v,
        Err(e) => {
            return error_answer(&ApiError::client(
                "SerializationException",
                &format!("the body is not JSON: {e}"),
            ))
        }
    };
    let world = inner.world.read().unwrap_or_else(PoisonError::into_inner);
    let place = &inner.config.place;
    let result = match service {
        "secretsmanager" => secrets_manager::handle(&world, place, operation, &body),
        "AmazonSSM" => parameter_store::handle(&world, place, operation, &body),
        _ => None,
    };
    match result {
        Some(Ok(v)) => {
            let names: Vec<&str> = match operation {
                "GetSecretValue" => v["Name"].as_str().into_iter().collect(),
                "BatchGetSecretValue" => v["SecretValues"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["Name"].as_str())
                    .collect(),
                _ => vec![],
            };
            if service == "secretsmanager" && !names.is_empty() {
                let mut read = inner
                    .values_read
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                read.extend(names.into_iter().map(String::from));
            }
            answer(200, &v, None)
        }
        Some(Err(e)) => error_answer(&e),
        None => error_answer(&ApiError::client(
            "UnknownOperationException",
            &format!("{service}.{operation} is not served by the quota emulator"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_use_is_served_calls_per_second_over_the_quota() {
        let mut counts = BTreeMap::new();
        counts.insert(
            "GetResourcePolicy".to_string(),
            ApiCounts {
                calls: 120,
                throttled: 20,
            },
        );
        counts.insert(
            "ListSecrets".to_string(),
            ApiCounts {
                calls: 10,
                throttled: 0,
            },
        );
        let used = quota_use(&Quotas::published(), &counts, Duration::from_secs(10));
        assert_eq!(used.len(), 2);
        let policy = used
            .iter()
            .find(|u| u.row.name == "*ResourcePolicy")
            .unwrap();
        assert_eq!((policy.served, policy.throttled), (100, 20));
        assert!((policy.share - 0.2).abs() < 1e-9, "{}", policy.share);
        let list = used.iter().find(|u| u.row.name == "ListSecrets").unwrap();
        assert!((list.share - 0.01).abs() < 1e-9);
    }

    #[test]
    fn tokens_round_trip_and_foreign_tokens_are_refused() {
        assert_eq!(
            parse_token(&json!({"NextToken": page_token(42)}), "X"),
            Ok(42)
        );
        assert_eq!(parse_token(&json!({}), "X"), Ok(0));
        assert_eq!(
            parse_token(&json!({"NextToken": "abc"}), "X")
                .unwrap_err()
                .code,
            "X"
        );
    }

    #[test]
    fn a_throttled_call_has_the_wire_shape_and_is_counted() {
        let inner = Inner {
            world: RwLock::new(World::generate(&Population::new(3, 0))),
            buckets: Buckets::new(Quotas::published().with("ListSecrets", 1)),
            counts: Mutex::new(BTreeMap::new()),
            values_read: Mutex::new(HashSet::new()),
            config: EmulatorConfig::default(),
            stop: AtomicBool::new(false),
        };
        assert_eq!(
            respond(&inner, "secretsmanager", "ListSecrets", b"{}")
                .status_code()
                .0,
            200
        );
        let throttled = respond(&inner, "secretsmanager", "ListSecrets", b"{}");
        assert_eq!(throttled.status_code().0, 400);
        assert!(throttled
            .headers()
            .iter()
            .any(|h| h.field.equiv("x-amzn-ErrorType") && h.value == "ThrottlingException"));
        let unknown = respond(&inner, "secretsmanager", "CreateSecret", b"{}");
        assert_eq!(unknown.status_code().0, 400);
        let counts = inner.counts.lock().unwrap().clone();
        assert_eq!(
            counts["ListSecrets"],
            ApiCounts {
                calls: 2,
                throttled: 1
            }
        );
        assert_eq!(counts["CreateSecret"].throttled, 0);
        // Values served are remembered by secret, once each.
        let name = inner.world.read().unwrap().secrets[1].name.clone();
        let get = json!({"SecretId": name}).to_string();
        for _ in 0..2 {
            respond(&inner, "secretsmanager", "GetSecretValue", get.as_bytes());
        }
        let batch = json!({"SecretIdList": [name, "missing"]}).to_string();
        respond(
            &inner,
            "secretsmanager",
            "BatchGetSecretValue",
            batch.as_bytes(),
        );
        respond(&inner, "secretsmanager", "DescribeSecret", get.as_bytes());
        assert_eq!(inner.values_read.lock().unwrap().len(), 1);
    }
}
