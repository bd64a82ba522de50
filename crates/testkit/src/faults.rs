//! Faults in dependencies, injected between a Lambda binary and what it talks to.
//!
//! [`AwsFaults`]: an HTTP proxy in front of moto that answers a share of the requests with what
//! AWS sends when it is overloaded or failing, or drops them, or delays them; the SDK sees the
//! real wire shapes and classifies them as it would in production. Reproduces, per protocol
//! (read from the request: `X-Amz-Target` → awsJson1_1, a form body → awsQuery, else S3's
//! rest-xml):
//!
//! | [`Fault`] | awsJson1_1 (Secrets Manager, KMS) | S3 | awsQuery (STS) |
//! |---|---|---|---|
//! | `Throttle` | 400, `x-amzn-errortype: ThrottlingException`, `{"__type": "ThrottlingException", …}` | 503 `SlowDown` (XML `<Error>`) | 400 `Throttling` (`<ErrorResponse>`) |
//! | `ServerError` | 500, `x-amzn-errortype: InternalFailure`, `{"__type": "InternalFailure", …}` | 500 `InternalError` | 500 `InternalFailure` |
//! | `Reset` | the connection is reset (RST) after the request arrived, before it is forwarded | same | same |
//! | `Slow` | the request is forwarded [`FaultPlan::slow`] late | same | same |
//!
//! The SDK's standard retry strategy treats the throttling codes (`ThrottlingException`,
//! `SlowDown`, `Throttling`), every 500/502/503/504 and connection errors as retryable. Not
//! reproduced: an answer lost after the service applied the request (every fault here happens
//! before moto sees the request, so a retried call never repeats a change), partial bodies,
//! DNS failures, clock skew.
//!
//! Which requests fail is drawn from a random generator seeded with [`FaultPlan::seed`]
//! (`TESTKIT_FAULT_SEED` overrides it): requests made one after the other, as a rotation's
//! are, meet the same faults on every run. Every injected fault is counted by kind and recorded
//! with its operation ([`AwsFaults::injected`]).
//!
//! [`DbSwitch`]: a TCP proxy in front of PostgreSQL that can be switched between [`DbMode`]s:
//! pass, refuse (connection refused), hang (accepts, never answers) and down (accepts and closes
//! at once, as a server that is shutting down or a load balancer without targets).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The service throttles the call (see the table in the module docs).
    Throttle,
    /// The service fails with a 500.
    ServerError,
    /// The connection is reset.
    Reset,
    /// The answer comes late (the call succeeds).
    Slow,
}

impl Fault {
    /// Every kind that makes the call fail (every kind but `Slow`).
    pub const FAILING: [Fault; 3] = [Fault::Throttle, Fault::ServerError, Fault::Reset];
    /// Every kind.
    pub const ALL: [Fault; 4] = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Reset,
        Fault::Slow,
    ];
}

/// What share of the requests fail, how, and from which seed.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// The share of requests that meet a fault, from 0.0 to 1.0.
    pub rate: f64,
    /// The kinds drawn from, with equal chances.
    pub kinds: Vec<Fault>,
    /// The seed of the draws.
    pub seed: u64,
    /// How late a `Slow` request is forwarded.
    pub slow: Duration,
    /// Only requests whose operation contains one of these are eligible (all when empty); e.g.
    /// `secretsmanager.` for Secrets Manager only. Operations are `X-Amz-Target` values
    /// (`secretsmanager.GetSecretValue`, `TrentService.GenerateDataKey`), `sts.<Action>`, or
    /// `s3.<METHOD>` for S3.
    pub only: Vec<String>,
}

impl FaultPlan {
    /// `rate` of the requests fail with one of `kinds`, drawn from `seed`; `Slow` waits 200 ms.
    pub fn new(rate: f64, kinds: &[Fault], seed: u64) -> FaultPlan {
        assert!((0.0..=1.0).contains(&rate), "rate {rate} is not in 0..=1");
        assert!(!kinds.is_empty(), "a fault plan needs at least one kind");
        FaultPlan {
            rate,
            kinds: kinds.to_vec(),
            seed,
            slow: Duration::from_millis(200),
            only: vec![],
        }
    }

    /// No faults: every request passes.
    pub fn none() -> FaultPlan {
        FaultPlan::new(0.0, &[Fault::Slow], 0)
    }

    /// Restricts the faults to operations containing one of `patterns`.
    pub fn only(mut self, patterns: &[&str]) -> FaultPlan {
        self.only = patterns.iter().map(|p| p.to_string()).collect();
        self
    }
}

/// What [`AwsFaults`] did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Requests seen.
    pub requests: u64,
    /// Faults injected, by kind.
    pub injected: BTreeMap<Fault, u64>,
}

impl FaultCounts {
    /// Faults of any kind.
    pub fn total(&self) -> u64 {
        self.injected.values().sum()
    }

    /// Faults of `kind`.
    pub fn of(&self, kind: Fault) -> u64 {
        self.injected.get(&kind).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} requests, {} faults (", self.requests, self.total())?;
        let kinds: Vec<String> = self
            .injected
            .iter()
            .map(|(k, n)| format!("{k:?} {n}"))
            .collect();
        write!(f, "{})", kinds.join(", "))
    }
}

struct State {
    plan: FaultPlan,
    rng: StdRng,
    counts: FaultCounts,
    log: Vec<(String, Fault)>,
}

/// The fault-injecting HTTP proxy in front of moto; stops when dropped.
pub struct AwsFaults {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl AwsFaults {
    /// Listens on a free loopback port and forwards to `upstream` (moto) under `plan`. moto
    /// closes every connection after its answer (`Connection: close`), so each connection
    /// carries one request.
    pub async fn start(upstream: SocketAddr, plan: FaultPlan) -> AwsFaults {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let seed = seed_override().unwrap_or(plan.seed);
        let state = Arc::new(Mutex::new(State {
            rng: StdRng::seed_from_u64(seed),
            plan: FaultPlan { seed, ..plan },
            counts: FaultCounts::default(),
            log: vec![],
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream, shared.clone()));
            }
        });
        AwsFaults { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`: give it to a process as `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the plan (the draws go on from the same generator, reseeded when the seed
    /// changes).
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut state = self.lock();
        if plan.seed != state.plan.seed {
            state.rng = StdRng::seed_from_u64(plan.seed);
        }
        state.plan = plan;
    }

    /// The seed in use (the plan's, or `TESTKIT_FAULT_SEED`): print it with a failure.
    pub fn seed(&self) -> u64 {
        self.lock().plan.seed
    }

    /// What was injected so far.
    pub fn counts(&self) -> FaultCounts {
        self.lock().counts.clone()
    }

    /// Every fault injected so far, in order, with its operation.
    pub fn injected(&self) -> Vec<(String, Fault)> {
        self.lock().log.clone()
    }

    /// Forgets the counts and the log.
    pub fn reset_counts(&self) {
        let mut state = self.lock();
        state.counts = FaultCounts::default();
        state.log.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for AwsFaults {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn seed_override() -> Option<u64> {
    std::env::var("TESTKIT_FAULT_SEED")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The protocol of a request, read from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Json,
    Query,
    S3,
}

struct Request {
    head: Vec<u8>,
    body_start: Vec<u8>,
    content_length: usize,
    protocol: Protocol,
    operation: String,
}

/// Reads the request head (and what followed it in the same reads).
async fn read_head(client: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let body_start = buf.split_off(end);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let method = request_line.split(' ').next().unwrap_or("?").to_string();
    let mut headers = BTreeMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let content_length = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (protocol, operation) = if let Some(target) = headers.get("x-amz-target") {
        (Protocol::Json, target.clone())
    } else if headers
        .get("content-type")
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    {
        // The action is in the body; "sts" is the one awsQuery service these functions call.
        (Protocol::Query, "sts.query".to_string())
    } else {
        (Protocol::S3, format!("s3.{method}"))
    };
    Some(Request {
        head: buf,
        body_start,
        content_length,
        protocol,
        operation,
    })
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    let _ = client.set_nodelay(true);
    let Some(request) = read_head(&mut client).await else {
        return;
    };
    let (fault, slow) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let State {
            plan,
            rng,
            counts,
            log,
        } = &mut *state;
        counts.requests += 1;
        let eligible =
            plan.only.is_empty() || plan.only.iter().any(|p| request.operation.contains(p));
        // Draw for every request, eligible or not, so that the sequence does not depend on
        // which requests are eligible.
        let hit = rng.random::<f64>() < plan.rate;
        let kind = plan.kinds[rng.random_range(0..plan.kinds.len())];
        let fault = (eligible && hit).then_some(kind);
        if let Some(kind) = fault {
            *counts.injected.entry(kind).or_default() += 1;
            log.push((request.operation.clone(), kind));
        }
        (fault, plan.slow)
    };
    match fault {
        Some(Fault::Reset) => {
            // SO_LINGER 0: closing sends RST, as a peer or middlebox resetting the connection.
            // (Deprecated because a non-zero linger blocks the thread on drop; zero does not.)
            #[allow(deprecated)]
            let _ = client.set_linger(Some(Duration::ZERO));
            drop(client);
        }
        Some(kind @ (Fault::Throttle | Fault::ServerError)) => {
            drain_body(&mut client, &request).await;
            let answer = error_response(request.protocol, kind);
            let _ = client.write_all(&answer).await;
            let _ = client.shutdown().await;
        }
        Some(Fault::Slow) => {
            tokio::time::sleep(slow).await;
            forward(client, upstream, request).await;
        }
        None => forward(client, upstream, request).await,
    }
}

/// Reads the rest of a request body so that the answer is not lost to a reset.
async fn drain_body(client: &mut TcpStream, request: &Request) {
    let mut left = request
        .content_length
        .saturating_sub(request.body_start.len());
    let mut chunk = [0u8; 16 * 1024];
    while left > 0 {
        match tokio::time::timeout(Duration::from_secs(5), client.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, request: Request) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    if server.write_all(&request.head).await.is_err()
        || server.write_all(&request.body_start).await.is_err()
    {
        return;
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    let _ = client_write.shutdown().await;
    requests.abort();
}

/// The HTTP answer of an injected `kind` in `protocol`'s wire shape.
fn error_response(protocol: Protocol, kind: Fault) -> Vec<u8> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (status, reason, code, message, content_type, body) = match (protocol, kind) {
        (Protocol::Json, Fault::Throttle) => (
            400,
            "Bad Request",
            "ThrottlingException",
            "Rate exceeded",
            "application/x-amz-json-1.1",
            None,
        ),
        (Protocol::Json, _) => (
            500,
            "Internal Server Error",
            "InternalFailure",
            "The request processing has failed because of an unknown error, exception or failure.",
            "application/x-amz-json-1.1",
            None,
        ),
        (Protocol::S3, Fault::Throttle) => (
            503,
            "Slow Down",
            "SlowDown",
            "Please reduce your request rate.",
            "application/xml",
            None,
        ),
        (Protocol::S3, _) => (
            500,
            "Internal Server Error",
            "InternalError",
            "We encountered an internal error. Please try again.",
            "application/xml",
            None,
        ),
        (Protocol::Query, Fault::Throttle) => (
            400,
            "Bad Request",
            "Throttling",
            "Rate exceeded",
            "text/xml",
            Some("Sender"),
        ),
        (Protocol::Query, _) => (
            500,
            "Internal Server Error",
            "InternalFailure",
            "The request processing has failed because of an unknown error, exception or failure.",
            "text/xml",
            Some("Receiver"),
        ),
    };
    let payload = match protocol {
        Protocol::Json => serde_json::json!({ "__type": code, "message": message }).to_string(),
        Protocol::S3 => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId><HostId>testkit</HostId></Error>"
        ),
        Protocol::Query => format!(
            "<ErrorResponse><Error><Type>{}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
            body.unwrap_or("Receiver")
        ),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        payload.len()
    );
    match protocol {
        Protocol::Json => {
            head.push_str(&format!(
                "x-amzn-RequestId: {request_id}\r\nx-amzn-ErrorType: {code}\r\n"
            ));
        }
        Protocol::S3 => head.push_str(&format!("x-amz-request-id: {request_id}\r\n")),
        Protocol::Query => {}
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(payload.as_bytes());
    out
}

/// What [`DbSwitch`] does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbMode {
    /// Forwards to the server.
    Pass,
    /// Nothing listens: connecting fails with "connection refused".
    Refuse,
    /// Accepts and never answers (a server that hangs, a black-holed network).
    Hang,
    /// Accepts and closes at once (a server shutting down, a proxy without targets).
    Down,
}

/// A TCP proxy in front of PostgreSQL, switchable between [`DbMode`]s. Connections already
/// forwarded keep flowing when the mode changes; stops (closing every connection) when dropped.
pub struct DbSwitch {
    port: u16,
    upstream: SocketAddr,
    mode: Arc<Mutex<DbMode>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl DbSwitch {
    /// Listens on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> DbSwitch {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the database switch");
        let port = listener.local_addr().expect("switch address").port();
        let switch = DbSwitch {
            port,
            upstream,
            mode: Arc::new(Mutex::new(DbMode::Pass)),
            task: Mutex::new(None),
        };
        switch.listen(listener);
        switch
    }

    /// The port clients connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Switches the mode for new connections. `Refuse` closes the listening socket; leaving it
    /// binds the same port again.
    pub async fn set(&self, mode: DbMode) {
        let before = std::mem::replace(&mut *self.mode.lock().unwrap(), mode);
        if mode == DbMode::Refuse && before != DbMode::Refuse {
            let task = self.task.lock().unwrap().take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await;
            }
        } else if before == DbMode::Refuse && mode != DbMode::Refuse {
            let listener = TcpListener::bind(("127.0.0.1", self.port))
                .await
                .expect("bind the database switch's port again");
            self.listen(listener);
        }
    }

    fn listen(&self, listener: TcpListener) {
        let (mode, upstream) = (self.mode.clone(), self.upstream);
        let task = tokio::spawn(async move {
            let mut hung = vec![];
            while let Ok((client, _)) = listener.accept().await {
                let now = *mode.lock().unwrap();
                match now {
                    DbMode::Pass => {
                        tokio::spawn(pass(client, upstream));
                    }
                    // Kept open, never read: the client waits for an answer.
                    DbMode::Hang => hung.push(client),
                    DbMode::Down | DbMode::Refuse => drop(client),
                }
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Drop for DbSwitch {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
    }
}

async fn pass(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_have_the_wire_shape_of_each_protocol() {
        let text = |p, k| String::from_utf8(error_response(p, k)).unwrap();
        let json = text(Protocol::Json, Fault::Throttle);
        assert!(json.starts_with("HTTP/1.1 400 "), "{json}");
        assert!(
            json.contains("x-amzn-ErrorType: ThrottlingException\r\n"),
            "{json}"
        );
        assert!(json.ends_with(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#));
        let s3 = text(Protocol::S3, Fault::Throttle);
        assert!(s3.starts_with("HTTP/1.1 503 "), "{s3}");
        assert!(s3.contains("<Code>SlowDown</Code>"), "{s3}");
        assert!(text(Protocol::S3, Fault::ServerError).contains("<Code>InternalError</Code>"));
        let query = text(Protocol::Query, Fault::ServerError);
        assert!(query.starts_with("HTTP/1.1 500 "), "{query}");
        assert!(query.contains("<Code>InternalFailure</Code>"), "{query}");
        let length: usize = json
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, json.split("\r\n\r\n").nth(1).unwrap().len());
    }

    #[test]
    fn counts_add_up_and_print() {
        let mut counts = FaultCounts {
            requests: 10,
            ..FaultCounts::default()
        };
        counts.injected.insert(Fault::Throttle, 2);
        counts.injected.insert(Fault::Reset, 1);
        assert_eq!(counts.total(), 3);
        assert_eq!(counts.of(Fault::Slow), 0);
        assert_eq!(
            counts.to_string(),
            "10 requests, 3 faults (Throttle 2, Reset 1)"
        );
    }
}
