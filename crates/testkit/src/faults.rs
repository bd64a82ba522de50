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
//! | `Lost` | forwarded: moto applies it and answers; the answer is dropped and the connection reset | same | same |
//! | `Late` | forwarded: moto applies it; its answer is held [`FaultPlan::late`] (past the SDK's attempt timeout), dropped if the client gave up | same | same |
//!
//! The SDK's standard retry strategy treats the throttling codes (`ThrottlingException`,
//! `SlowDown`, `Throttling`), every 500/502/503/504, connection errors and attempt timeouts as
//! retryable. After `Lost` and `Late` the SDK retries a request that already took effect, as
//! it does when a real answer is lost on the way back. Not reproduced: partial bodies, DNS
//! failures, clock skew.
//!
//! Which requests meet a fault does not depend on the order in which concurrent requests arrive:
//! each decision is a hash of [`FaultPlan::seed`] (`TESTKIT_FAULT_SEED` overrides it), the
//! operation, the call's rank among the calls of that operation (a call is one SDK invocation,
//! `amz-sdk-invocation-id`, whatever its number of attempts) and the attempt number
//! (`amz-sdk-request: attempt=N`). The same calls meet the same number of faults of each kind on
//! every run; when concurrent calls of one operation arrive in another order only which of them
//! meets which fault changes. Every injected fault is counted by kind and recorded with its
//! operation ([`AwsFaults::injected`]).
//!
//! [`DbSwitch`]: a TCP proxy in front of PostgreSQL that can be switched between [`DbMode`]s:
//! pass, refuse (connection refused), hang (accepts, never answers), hang after the login (the
//! session logs in, then its queries are never answered) and down (accepts and closes at once,
//! as a server that is shutting down or a load balancer without targets).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
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
    /// The request reaches moto and takes effect; its answer is lost (the connection is reset).
    Lost,
    /// The request reaches moto and takes effect; its answer comes after [`FaultPlan::late`],
    /// past the SDK's attempt timeout, so the SDK gives up on the attempt and retries.
    Late,
}

impl Fault {
    /// Every kind that makes the call fail (every kind but `Slow`).
    pub const FAILING: [Fault; 3] = [Fault::Throttle, Fault::ServerError, Fault::Reset];
    /// Every kind that happens before the request reaches moto, and `Slow`.
    pub const ALL: [Fault; 4] = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Reset,
        Fault::Slow,
    ];
    /// The kinds after which the request has taken effect but the SDK saw no answer.
    pub const APPLIED: [Fault; 2] = [Fault::Lost, Fault::Late];
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
    /// How long a `Late` answer is held (the answer is dropped if the client closes first).
    pub late: Duration,
    /// Only requests whose operation contains one of these are eligible (all when empty); e.g.
    /// `secretsmanager.` for Secrets Manager only. Operations are `X-Amz-Target` values
    /// (`secretsmanager.GetSecretValue`, `TrentService.GenerateDataKey`), `sts.<Action>`, or
    /// `s3.<METHOD>` for S3.
    pub only: Vec<String>,
    /// Only attempts up to this number are eligible (all when `None`): `Some(1)` faults a
    /// call's first attempt and lets its retries through.
    pub up_to_attempt: Option<u64>,
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
            late: Duration::from_secs(30),
            only: vec![],
            up_to_attempt: None,
        }
    }

    /// No faults: every request passes.
    pub fn none() -> FaultPlan {
        FaultPlan::new(0.0, &[Fault::Slow], 0)
    }

    /// Restricts the faults to the first `attempts` attempts of each call.
    pub fn up_to_attempt(mut self, attempts: u64) -> FaultPlan {
        self.up_to_attempt = Some(attempts);
        self
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
    counts: FaultCounts,
    log: Vec<(String, Fault)>,
    /// Calls seen so far, per operation.
    calls: HashMap<String, u64>,
    /// The rank of each call (by invocation id) among its operation's calls.
    ranks: HashMap<String, u64>,
}

impl State {
    /// The fault for one attempt of one call: `None` or one of the plan's kinds, from a hash of
    /// the seed, the operation, the call's rank and the attempt (not from the arrival order).
    fn decide(&mut self, operation: &str, invocation: Option<&str>, attempt: u64) -> Option<Fault> {
        let key = match invocation {
            Some(id) => format!("{operation} {id}"),
            // No invocation id: every request is a call of its own.
            None => format!("{operation} #{}", self.counts.requests),
        };
        let rank = match self.ranks.get(&key) {
            Some(rank) => *rank,
            None => {
                let next = self.calls.entry(operation.to_string()).or_default();
                let rank = *next;
                *next += 1;
                self.ranks.insert(key, rank);
                rank
            }
        };
        let plan = &self.plan;
        let eligible = (plan.only.is_empty() || plan.only.iter().any(|p| operation.contains(p)))
            && plan.up_to_attempt.is_none_or(|n| attempt <= n);
        let mut rng = StdRng::seed_from_u64(decision_seed(plan.seed, operation, rank, attempt));
        let hit = rng.random::<f64>() < plan.rate;
        let kind = plan.kinds[rng.random_range(0..plan.kinds.len())];
        (eligible && hit).then_some(kind)
    }
}

/// FNV-1a over the seed, the operation, the call's rank and the attempt: stable across runs,
/// platforms and Rust versions (unlike `DefaultHasher`).
fn decision_seed(seed: u64, operation: &str, rank: u64, attempt: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(operation.bytes())
        .chain(rank.to_le_bytes())
        .chain(attempt.to_le_bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
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
            plan: FaultPlan { seed, ..plan },
            counts: FaultCounts::default(),
            log: vec![],
            calls: HashMap::new(),
            ranks: HashMap::new(),
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

    /// Replaces the plan; calls are ranked afresh (the first call of each operation after this
    /// is rank 0 again), so that what a plan does does not depend on what came before it.
    pub fn set_plan(&self, plan: FaultPlan) {
        let mut state = self.lock();
        state.plan = plan;
        state.calls.clear();
        state.ranks.clear();
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
    /// `amz-sdk-invocation-id`: one SDK call, the same across its attempts.
    invocation: Option<String>,
    /// `amz-sdk-request: attempt=N; max=M` (1 when absent).
    attempt: u64,
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
    let invocation = headers.get("amz-sdk-invocation-id").cloned();
    let attempt = headers
        .get("amz-sdk-request")
        .and_then(|v| {
            v.split(';')
                .find_map(|p| p.trim().strip_prefix("attempt="))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1);
    Some(Request {
        head: buf,
        body_start,
        content_length,
        protocol,
        operation,
        invocation,
        attempt,
    })
}

async fn serve(mut client: TcpStream, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    let _ = client.set_nodelay(true);
    let Some(request) = read_head(&mut client).await else {
        return;
    };
    let (fault, slow, late) = {
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let fault = state.decide(
            &request.operation,
            request.invocation.as_deref(),
            request.attempt,
        );
        state.counts.requests += 1;
        if let Some(kind) = fault {
            *state.counts.injected.entry(kind).or_default() += 1;
            state.log.push((request.operation.clone(), kind));
        }
        (fault, state.plan.slow, state.plan.late)
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
        Some(Fault::Lost) => applied(client, upstream, request, None).await,
        Some(Fault::Late) => applied(client, upstream, request, Some(late)).await,
        None => forward(client, upstream, request).await,
    }
}

/// Forwards the request and reads moto's whole answer (moto has applied the request by then);
/// then, with `hold` `None`, resets the client's connection without the answer, else holds the
/// answer `hold` long and writes it only if the client is still waiting.
async fn applied(
    client: TcpStream,
    upstream: SocketAddr,
    request: Request,
    hold: Option<Duration>,
) {
    if hold.is_none() {
        // SO_LINGER 0: closing sends RST (see `Fault::Reset`).
        #[allow(deprecated)]
        let _ = client.set_linger(Some(Duration::ZERO));
    }
    let Some((mut server_read, mut client_write, mut requests)) =
        relay(client, upstream, &request).await
    else {
        return;
    };
    let mut answer = vec![];
    // moto closes the connection after its answer.
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        server_read.read_to_end(&mut answer),
    )
    .await;
    if !matches!(read, Ok(Ok(_))) {
        requests.abort();
        return;
    }
    match hold {
        // Both halves dropped: the socket closes, with RST (SO_LINGER 0 set above).
        None => {
            requests.abort();
            let _ = requests.await;
            drop(client_write);
        }
        Some(hold) => {
            // The client gave up (its attempt timed out): the answer is dropped with it.
            if tokio::time::timeout(hold, &mut requests).await.is_ok() {
                return;
            }
            requests.abort();
            let _ = client_write.write_all(&answer).await;
            let _ = client_write.shutdown().await;
        }
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

/// Connects to `upstream`, sends what was read of `request`, and copies the rest of what the
/// client sends in a task that ends when the client closes its side (it never half-closes while
/// it waits for an answer). Returns the upstream's answer side, the client's write side and that
/// task; `None` when the upstream cannot be reached or written.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    request: &Request,
) -> Option<(OwnedReadHalf, OwnedWriteHalf, JoinHandle<()>)> {
    let mut server = TcpStream::connect(upstream).await.ok()?;
    let _ = server.set_nodelay(true);
    server.write_all(&request.head).await.ok()?;
    server.write_all(&request.body_start).await.ok()?;
    let (mut client_read, client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    Some((server_read, client_write, requests))
}

async fn forward(client: TcpStream, upstream: SocketAddr, request: Request) {
    let Some((mut server_read, mut client_write, requests)) =
        relay(client, upstream, &request).await
    else {
        return;
    };
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
    /// Forwards the login, then neither forwards the session's queries nor answers them (a
    /// server that stops answering mid-session: a stuck backend, a failover that black-holes
    /// established connections). The server never sees a query. Reads the plaintext protocol:
    /// the session must not use TLS (the secret's `"ssl": false`).
    HangAfterLogin,
    /// Forwards the login and every query until the first write (a simple or extended-protocol
    /// query whose text holds `ALTER ROLE` or `CREATE ROLE`), which the server never sees; from
    /// then on the client hears nothing (a server that stops answering mid-write, before the
    /// change). Plaintext protocol only, as [`DbMode::HangAfterLogin`].
    HangAtWrite,
    /// As [`DbMode::HangAtWrite`], but the first write reaches the server (which applies it),
    /// and its answer, and everything after, never reaches the client (a server that applied
    /// the change and then stopped answering, or an answer lost on the way back).
    HangAfterWrite,
    /// As [`DbMode::HangAfterWrite`], at the first `COMMIT` instead: the server commits, the
    /// client never hears it.
    HangAfterCommit,
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
                    DbMode::HangAfterLogin => {
                        tokio::spawn(pass_login_only(client, upstream));
                    }
                    DbMode::HangAtWrite => {
                        tokio::spawn(pass_until(client, upstream, is_write, false));
                    }
                    DbMode::HangAfterWrite => {
                        tokio::spawn(pass_until(client, upstream, is_write, true));
                    }
                    DbMode::HangAfterCommit => {
                        tokio::spawn(pass_until(client, upstream, is_commit, true));
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

/// Forwards a plaintext PostgreSQL session until the server's first ReadyForQuery (the login is
/// over), then forwards nothing more in either direction; holds both connections until the client
/// closes.
async fn pass_login_only(client: TcpStream, upstream: SocketAddr) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let logged_in = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let flag = logged_in.clone();
    let queries = tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        loop {
            match client_read.read(&mut chunk).await {
                Ok(n) if n > 0 => {
                    // Swallowed once logged in: the server never sees a query.
                    if !flag.load(std::sync::atomic::Ordering::SeqCst)
                        && server_write.write_all(&chunk[..n]).await.is_err()
                    {
                        return;
                    }
                }
                _ => return,
            }
        }
    });
    // Server messages: a type byte, then a 4-byte length that counts itself.
    loop {
        let mut head = [0u8; 5];
        if server_read.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        if server_read.read_exact(&mut body).await.is_err() {
            break;
        }
        if head[0] == b'Z' {
            logged_in.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        if client_write.write_all(&head).await.is_err()
            || client_write.write_all(&body).await.is_err()
        {
            break;
        }
        if head[0] == b'Z' {
            break;
        }
    }
    // Until the client gives up.
    let _ = queries.await;
}

/// Whether a client message (a type byte, a length, a body) is a write: a simple (`Q`) or
/// extended-protocol (`P`, Parse) query whose text holds `ALTER ROLE` or `CREATE ROLE`.
fn is_write(kind: u8, body: &[u8]) -> bool {
    if kind != b'Q' && kind != b'P' {
        return false;
    }
    let text = String::from_utf8_lossy(body).to_ascii_uppercase();
    text.contains("ALTER ROLE") || text.contains("CREATE ROLE")
}

/// Whether a client message is a simple query `COMMIT` (what tokio-postgres sends to commit).
fn is_commit(kind: u8, body: &[u8]) -> bool {
    kind == b'Q'
        && String::from_utf8_lossy(body)
            .trim_end_matches('\0')
            .trim()
            .eq_ignore_ascii_case("COMMIT")
}

/// Forwards a plaintext PostgreSQL session message by message until the client's first message
/// that `hang_at` picks ([`is_write`], [`is_commit`]); then forwards nothing more to the client,
/// and that message and what follows it to the server only when `deliver_write`. Holds both
/// connections until the client closes, then closes the server's (which ends any open
/// transaction there).
async fn pass_until(
    client: TcpStream,
    upstream: SocketAddr,
    hang_at: fn(u8, &[u8]) -> bool,
    deliver_write: bool,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let hung = Arc::new(AtomicBool::new(false));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let flag = hung.clone();
    let answers = tokio::spawn(async move {
        // Server messages: a type byte, then a 4-byte length that counts itself.
        loop {
            let mut head = [0u8; 5];
            if server_read.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4)];
            if server_read.read_exact(&mut body).await.is_err() {
                return;
            }
            // Read and dropped once hung: the client hears nothing more.
            if !flag.load(Ordering::SeqCst)
                && (client_write.write_all(&head).await.is_err()
                    || client_write.write_all(&body).await.is_err())
            {
                return;
            }
        }
    });
    // The startup message has no type byte: a length that counts itself, then the body.
    let mut length = [0u8; 4];
    if client_read.read_exact(&mut length).await.is_err() {
        return;
    }
    let mut startup = vec![0u8; (u32::from_be_bytes(length) as usize).saturating_sub(4)];
    if client_read.read_exact(&mut startup).await.is_err()
        || server_write.write_all(&length).await.is_err()
        || server_write.write_all(&startup).await.is_err()
    {
        return;
    }
    loop {
        let mut head = [0u8; 5];
        if client_read.read_exact(&mut head).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        if client_read.read_exact(&mut body).await.is_err() {
            break;
        }
        if !hung.load(Ordering::SeqCst) && hang_at(head[0], &body) {
            // Hung before the write goes out: its answer cannot reach the client.
            hung.store(true, Ordering::SeqCst);
        }
        if hung.load(Ordering::SeqCst) && !deliver_write {
            // Neither the write nor anything after it (a Terminate included) reaches the
            // server: the connection's end is what it sees.
            continue;
        }
        if server_write.write_all(&head).await.is_err()
            || server_write.write_all(&body).await.is_err()
        {
            break;
        }
    }
    // The client closed: so does the server's connection.
    drop(server_write);
    let _ = answers.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_told_from_reads() {
        assert!(is_write(
            b'Q',
            b"SET TRANSACTION READ WRITE; ALTER ROLE \"a\" WITH PASSWORD 'x'\0"
        ));
        assert!(is_write(b'P', b"\0create role \"a_clone\" LOGIN\0\0\0"));
        assert!(!is_write(b'P', b"\0SELECT rolname FROM pg_roles\0\0\0"));
        assert!(!is_write(b'p', b"ALTER ROLE"));
        assert!(is_commit(b'Q', b"COMMIT\0"));
        assert!(!is_commit(b'Q', b"SELECT 'COMMIT'\0"));
    }

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
    fn decisions_do_not_depend_on_the_order_of_concurrent_calls() {
        let state = || State {
            plan: FaultPlan::new(0.3, &Fault::ALL, 7),
            counts: FaultCounts::default(),
            log: vec![],
            calls: HashMap::new(),
            ranks: HashMap::new(),
        };
        // 40 calls of two operations, each tried up to 3 times, in two interleavings.
        let calls: Vec<(String, String)> = (0..40)
            .map(|i| {
                let op = if i % 2 == 0 {
                    "s3.PUT"
                } else {
                    "TrentService.GenerateDataKey"
                };
                (op.to_string(), format!("id-{i}"))
            })
            .collect();
        let run = |order: Vec<&(String, String)>| {
            let mut s = state();
            let mut kinds: BTreeMap<Fault, u64> = BTreeMap::new();
            for attempt in 1..=3 {
                for (op, id) in &order {
                    if let Some(kind) = s.decide(op, Some(id), attempt) {
                        *kinds.entry(kind).or_default() += 1;
                    }
                }
            }
            kinds
        };
        let forward = run(calls.iter().collect());
        let backward = run(calls.iter().rev().collect());
        assert_eq!(forward, backward);
        assert!(forward.values().sum::<u64>() > 10, "{forward:?}");
        // Another seed, other decisions.
        let mut other = state();
        other.plan.seed = 8;
        let mut same = state();
        let differs = calls
            .iter()
            .any(|(op, id)| other.decide(op, Some(id), 1) != same.decide(op, Some(id), 1));
        assert!(differs);
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
