//! A local Lambda Runtime API host: runs a compiled Lambda binary the way Lambda does (a child
//! process polling `/2018-06-01/runtime/invocation/next`) and hands it events one at a time.
//!
//! Paths and headers follow the Runtime API as used by `lambda_runtime` 1.x.
//!
//! [`LambdaHost::start_with_hosts`] also gives the function its own `/etc/hosts`, so that names
//! nothing resolves (the endpoints moto's RDS API reports) lead to local test servers: the
//! function runs in a private mount namespace (`unshare --mount`, with `--map-root-user` when
//! this process is not root) in which a file listing those names, followed by this machine's
//! `/etc/hosts`, is bind-mounted over `/etc/hosts`. Nothing outside the function's process sees
//! it. It needs root or unprivileged user namespaces, and `unshare` (util-linux).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::Read;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response, Server};

/// How long [`LambdaHost::invoke`] waits for the function before panicking.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);
/// The deadline handed to the function (`Lambda-Runtime-Deadline-Ms`), from delivery.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(300);
/// How much of the function's output goes into panic messages and exit errors.
const OUTPUT_TAIL: usize = 4000;
/// How long [`LambdaHost::output`] gives the reader threads after an answer.
pub const OUTPUT_SETTLE: Duration = Duration::from_millis(50);
/// The region and account in the invoked function ARN.
const ARN_PREFIX: &str = "arn:aws:lambda:us-east-1:123456789012:function:";
/// Variables kept from the parent's environment; everything else comes from `start`'s caller.
const KEPT_ENV: &[&str] = &["PATH", "HOME", "RUST_BACKTRACE"];

const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";
const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";

/// A function error as reported through the Runtime API (`{"errorType", "errorMessage"}`).
///
/// Besides the function's own errors, the host reports `Runtime.ExitError` when the process
/// exits (its message carries the exit status and the tail of the function's output) and the
/// function's own init error when it posted one to `/runtime/init/error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeError {
    /// `errorType`, e.g. the error's type name or `Runtime.ExitError`.
    pub error_type: String,
    /// `errorMessage`.
    pub error_message: String,
}

impl fmt::Display for InvokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

impl std::error::Error for InvokeError {}

/// What a [`LambdaHost`]'s function printed (stdout and stderr), shared with the host.
#[derive(Clone)]
pub struct OutputLog(Arc<Mutex<Vec<u8>>>);

impl OutputLog {
    /// Everything printed so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A Lambda binary running behind a local Runtime API on 127.0.0.1.
///
/// Invocations are serialized, one at a time, as Lambda does for one instance. Dropping the host
/// kills the process and stops the API server; so does SIGINT / SIGTERM in a binary that
/// installed [`crate::cleanup::exit_on_signals`] (the process and the hosts file are registered
/// in [`crate::cleanup`]).
pub struct LambdaHost {
    shared: Arc<Shared>,
    server: Arc<Server>,
    server_thread: Option<JoinHandle<()>>,
    child: Mutex<Child>,
    output: Arc<Mutex<Vec<u8>>>,
    output_threads: Vec<JoinHandle<()>>,
    invoke_turn: Mutex<()>,
    /// When the last invocation was answered (see [`LambdaHost::output`]).
    last_answer: Mutex<Option<Instant>>,
    spawned_at: Instant,
    function_name: String,
    runtime_api: String,
    stopped: bool,
    /// The function's `/etc/hosts` (see [`LambdaHost::start_with_hosts`]), removed on drop.
    _hosts: Option<tempfile::NamedTempFile>,
    /// What a signal runs: remove the hosts file, kill the function.
    _cleanups: Vec<crate::cleanup::Registration>,
}

/// State shared between the test thread and the API server threads.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    function_arn: String,
}

#[derive(Default)]
struct State {
    /// Events waiting for the function's next `/next`.
    queue: VecDeque<Queued>,
    /// Request ids delivered and not answered yet.
    in_flight: HashSet<String>,
    /// Answers not yet collected by `invoke`.
    results: HashMap<String, Result<Value, InvokeError>>,
    /// When the function first asked for an event.
    first_next: Option<Instant>,
    /// What the function posted to `/runtime/init/error`.
    init_error: Option<InvokeError>,
    /// Set on shutdown: waiting `/next` requests give up.
    shutdown: bool,
}

struct Queued {
    request_id: String,
    body: Vec<u8>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LambdaHost {
    /// Starts the Runtime API server and spawns `binary` against it.
    ///
    /// The child gets a clean environment: `PATH`, `HOME` and `RUST_BACKTRACE` from this process,
    /// the variables Lambda sets (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME` from the
    /// binary's file name, `AWS_LAMBDA_FUNCTION_VERSION=$LATEST`,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128`, log group and stream, `_HANDLER=bootstrap`), then
    /// `env`, which may override any of them. Its stdout and stderr are captured completely.
    pub fn start(binary: &Path, env: &[(String, String)]) -> LambdaHost {
        Self::start_in(&[], binary, env, &[])
    }

    /// Like [`LambdaHost::start`], with `binary` run by `launcher` (a program and its arguments,
    /// the binary's path appended): an emulator for another architecture's binary (see
    /// [`crate::arm64`]). A binary named `bootstrap` (`make build`'s
    /// `target/lambda/<function>/bootstrap`) takes its function name from its folder.
    pub fn start_launched(
        launcher: &[std::ffi::OsString],
        binary: &Path,
        env: &[(String, String)],
    ) -> LambdaHost {
        assert!(!launcher.is_empty(), "start_launched needs a launcher");
        Self::start_in(launcher, binary, env, &[])
    }

    /// Like [`LambdaHost::start`], with `hosts` (name, address) resolved by the function before
    /// anything in this machine's `/etc/hosts` (see the module documentation). Panics, saying
    /// what is needed, when the private mount namespace cannot be made.
    pub fn start_with_hosts(
        binary: &Path,
        env: &[(String, String)],
        hosts: &[(String, IpAddr)],
    ) -> LambdaHost {
        assert!(
            !hosts.is_empty(),
            "start_with_hosts needs at least one host"
        );
        Self::start_in(&[], binary, env, hosts)
    }

    fn start_in(
        launcher: &[std::ffi::OsString],
        binary: &Path,
        env: &[(String, String)],
        hosts: &[(String, IpAddr)],
    ) -> LambdaHost {
        let named_by = if binary.file_stem().is_some_and(|stem| stem == "bootstrap") {
            binary.parent().and_then(Path::file_name)
        } else {
            binary.file_stem()
        };
        let function_name = named_by
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| "function".to_string());
        let server = Arc::new(
            Server::http("127.0.0.1:0")
                .unwrap_or_else(|e| panic!("start the Runtime API server on 127.0.0.1: {e}")),
        );
        let port = server
            .server_addr()
            .to_ip()
            .expect("the Runtime API server listens on an IP address")
            .port();
        let runtime_api = format!("127.0.0.1:{port}");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            function_arn: format!("{ARN_PREFIX}{function_name}"),
        });
        let server_thread = {
            let server = Arc::clone(&server);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("lambda-runtime-api".into())
                .spawn(move || serve(&server, &shared))
                .expect("spawn the Runtime API server thread")
        };

        let starting = crate::cleanup::starting();
        let hosts_file = (!hosts.is_empty()).then(|| hosts_file(hosts));
        let mut cleanups: Vec<_> = hosts_file
            .iter()
            .map(|file| crate::cleanup::register_path(file.path()))
            .collect();
        let mut command = match &hosts_file {
            None if !launcher.is_empty() => {
                let mut command = Command::new(&launcher[0]);
                command.args(&launcher[1..]).arg(binary);
                command
            }
            None => Command::new(binary),
            Some(file) => {
                check_private_hosts_possible();
                let mut command = Command::new("unshare");
                if !crate::postgres::running_as_root() {
                    command.arg("--map-root-user");
                }
                command
                    .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
                    .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
                    .arg(file.path())
                    .arg(binary);
                command
            }
        };
        command.env_clear();
        for key in KEPT_ENV {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        let log_stream = format!("{}/[$LATEST]{}", utc_date(), uuid::Uuid::new_v4().simple());
        command
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &function_name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
            .env("_HANDLER", "bootstrap")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned_at = Instant::now();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn the Lambda binary {}: {e}", binary.display()));
        cleanups.push(crate::cleanup::register_process(
            format!("kill the function {function_name}"),
            child.id(),
        ));
        drop(starting);

        let output = Arc::new(Mutex::new(Vec::new()));
        let mut output_threads = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            output_threads.push(pump(stdout, Arc::clone(&output)));
        }
        if let Some(stderr) = child.stderr.take() {
            output_threads.push(pump(stderr, Arc::clone(&output)));
        }

        LambdaHost {
            shared,
            server,
            server_thread: Some(server_thread),
            child: Mutex::new(child),
            output,
            output_threads,
            invoke_turn: Mutex::new(()),
            last_answer: Mutex::new(None),
            spawned_at,
            function_name,
            runtime_api,
            stopped: false,
            _hosts: hosts_file,
            _cleanups: cleanups,
        }
    }

    /// Invokes the function with `event` and waits for its answer (blocking).
    ///
    /// `Ok` with the response JSON (a response body that is not JSON comes back as a JSON
    /// string), or `Err` with the function's error. If the process exits
    /// (before or during the invocation), `Err` with `Runtime.ExitError`, or with the error it
    /// posted to `/runtime/init/error`. Panics with the tail of the function's output when no
    /// answer comes within 120 s.
    pub fn invoke(&self, event: &Value) -> Result<Value, InvokeError> {
        self.invoke_within(event, INVOKE_TIMEOUT)
            .unwrap_or_else(|| {
                panic!(
                    "{} did not answer within {INVOKE_TIMEOUT:?}; output:\n{}",
                    self.function_name,
                    crate::tail(&self.output(), OUTPUT_TAIL)
                )
            })
    }

    /// Like [`LambdaHost::invoke`], waiting at most `limit`: `None` when no answer came by then
    /// (the invocation goes on; [`LambdaHost::stop`] ends it). For long runs (`make bench`'s
    /// scale part), which give up on a time budget.
    pub fn invoke_within(
        &self,
        event: &Value,
        limit: Duration,
    ) -> Option<Result<Value, InvokeError>> {
        let result = self.invoke_once(event, limit);
        *self
            .last_answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        result
    }

    fn invoke_once(&self, event: &Value, limit: Duration) -> Option<Result<Value, InvokeError>> {
        let _turn = self
            .invoke_turn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let request_id = uuid::Uuid::new_v4().to_string();
        let body = serde_json::to_vec(event).expect("serialize the event to JSON");
        {
            let mut state = self.shared.lock();
            if let Some(error) = state.init_error.clone() {
                return Some(Err(error));
            }
            state.queue.push_back(Queued {
                request_id: request_id.clone(),
                body,
            });
            self.shared.changed.notify_all();
        }
        let deadline = Instant::now() + limit;
        loop {
            {
                let mut state = self.shared.lock();
                if let Some(result) = state.results.remove(&request_id) {
                    return Some(result);
                }
                if let Some(error) = state.init_error.clone() {
                    state.queue.retain(|queued| queued.request_id != request_id);
                    return Some(Err(error));
                }
            }
            if let Some(status) = self.exit_status() {
                let mut state = self.shared.lock();
                // The answer may have arrived just before the process exited.
                if let Some(result) = state.results.remove(&request_id) {
                    return Some(result);
                }
                state.queue.retain(|queued| queued.request_id != request_id);
                state.in_flight.remove(&request_id);
                if let Some(error) = state.init_error.clone() {
                    return Some(Err(error));
                }
                drop(state);
                return Some(Err(self.exit_error(status)));
            }
            if Instant::now() >= deadline {
                return None;
            }
            let state = self.shared.lock();
            if !state.results.contains_key(&request_id) {
                let _ = self
                    .shared
                    .changed
                    .wait_timeout(state, Duration::from_millis(50));
            }
        }
    }

    /// A handle on everything the function prints, readable after the host is dropped (the e2e
    /// suites keep one per host and check at the end of a test that no secret value appears).
    pub fn output_log(&self) -> OutputLog {
        OutputLog(Arc::clone(&self.output))
    }

    /// Everything the function printed so far (stdout and stderr, interleaved as read).
    ///
    /// A function writes its log lines before it answers, but the reader threads may not have
    /// drained the pipes yet when [`LambdaHost::invoke`] returns: right after an answer this
    /// waits [`OUTPUT_SETTLE`] so that what the invocation printed is included.
    pub fn output(&self) -> String {
        let answered = *self
            .last_answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(remaining) = answered.and_then(|at| OUTPUT_SETTLE.checked_sub(at.elapsed())) {
            std::thread::sleep(remaining);
        }
        let bytes = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Time from spawning the process to its first request for an event (cold init), once it
    /// has made one.
    pub fn init_duration(&self) -> Option<Duration> {
        self.shared
            .lock()
            .first_next
            .map(|first| first.duration_since(self.spawned_at))
    }

    /// The function name (the binary's file name), as in `AWS_LAMBDA_FUNCTION_NAME`.
    pub fn function_name(&self) -> &str {
        &self.function_name
    }

    /// The Runtime API address given to the function (`AWS_LAMBDA_RUNTIME_API`).
    pub fn runtime_api(&self) -> &str {
        &self.runtime_api
    }

    /// Peak resident memory of the function process so far (`VmHWM` from `/proc`, Linux only),
    /// the figure Lambda reports as "Max Memory Used". `None` once the process has gone.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self
            .child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The function process's id.
    pub fn pid(&self) -> u32 {
        self.child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .id()
    }

    /// CPU time (user + system, every thread) the function process used so far, from
    /// `/proc/<pid>/stat` (Linux, in clock ticks of 10 ms). `None` once the process has gone.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the command name (which may hold spaces, in parentheses): state is the
        // 3rd field of the line, utime the 14th and stime the 15th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on every Linux architecture.
        Some(Duration::from_millis(ticks * 10))
    }

    /// The process's exit status, if it has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait()
            .ok()
            .flatten()
    }

    /// Kills the function, stops the API server, and returns everything the function printed.
    pub fn stop(mut self) -> String {
        self.shutdown();
        self.output()
    }

    fn exit_error(&self, status: ExitStatus) -> InvokeError {
        // Returns as soon as the pipes are drained; the bound only matters on a starved machine.
        self.wait_for_output(Duration::from_secs(10));
        InvokeError {
            error_type: "Runtime.ExitError".to_string(),
            error_message: format!(
                "Runtime exited with error: {status}\n--- function output (tail) ---\n{}",
                crate::tail(&self.output(), OUTPUT_TAIL)
            ),
        }
    }

    /// Waits (bounded) until the output pipes are drained, which happens once the process and
    /// anything that inherited its pipes have exited.
    fn wait_for_output(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.output_threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        {
            let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.shared.lock().shutdown = true;
        self.shared.changed.notify_all();
        self.server.unblock();
        if let Some(thread) = self.server_thread.take() {
            let _ = thread.join();
        }
        self.wait_for_output(Duration::from_secs(10));
    }
}

impl Drop for LambdaHost {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Copies everything from `reader` into `sink` until end of file.
fn pump(mut reader: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("lambda-output".into())
        .spawn(move || {
            let mut buffer = [0u8; 8192];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend_from_slice(&buffer[..n]),
                }
            }
        })
        .expect("spawn an output reader thread")
}

/// The API server loop: runs until `Server::unblock`.
fn serve(server: &Server, shared: &Arc<Shared>) {
    for mut request in server.incoming_requests() {
        if shared.lock().shutdown {
            let _ = request.respond(Response::empty(503));
            break;
        }
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let method = request.method().clone();
        if method == Method::Get && path == NEXT_PATH {
            // Long poll: wait for an event on a thread of its own.
            let shared = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name("lambda-next".into())
                .spawn(move || serve_next(request, &shared));
            if let Err(e) = spawned {
                eprintln!("testkit: cannot spawn a thread for /next: {e}");
            }
            continue;
        }
        if method != Method::Post {
            let _ = request.respond(json_response(404, &json!({"errorType": "NotFound"})));
            continue;
        }
        let mut body = Vec::new();
        if let Err(e) = request.as_reader().read_to_end(&mut body) {
            let _ = request.respond(json_response(
                400,
                &json!({"errorType": "InvalidRequest", "errorMessage": e.to_string()}),
            ));
            continue;
        }
        if path == INIT_ERROR_PATH {
            let error = parse_error(
                &body,
                header(&request, "Lambda-Runtime-Function-Error-Type"),
            );
            shared.lock().init_error = Some(error);
            shared.changed.notify_all();
            let _ = request.respond(json_response(202, &json!({"status": "OK"})));
            continue;
        }
        let Some((request_id, kind)) = path
            .strip_prefix(INVOCATION_PREFIX)
            .and_then(|rest| rest.split_once('/'))
        else {
            let _ = request.respond(json_response(404, &json!({"errorType": "NotFound"})));
            continue;
        };
        let result = match kind {
            "response" => Ok(serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))),
            "error" => Err(parse_error(
                &body,
                header(&request, "Lambda-Runtime-Function-Error-Type"),
            )),
            _ => {
                let _ = request.respond(json_response(404, &json!({"errorType": "NotFound"})));
                continue;
            }
        };
        let accepted = {
            let mut state = shared.lock();
            if state.in_flight.remove(request_id) {
                state.results.insert(request_id.to_string(), result);
                true
            } else {
                false
            }
        };
        shared.changed.notify_all();
        let response = if accepted {
            json_response(202, &json!({"status": "OK"}))
        } else {
            json_response(
                400,
                &json!({"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"}),
            )
        };
        let _ = request.respond(response);
    }
}

/// Answers one `/next` long poll once an event is queued (or the host shuts down).
fn serve_next(request: Request, shared: &Shared) {
    let mut state = shared.lock();
    if state.first_next.is_none() {
        state.first_next = Some(Instant::now());
    }
    let queued = loop {
        if state.shutdown {
            drop(state);
            let _ = request.respond(Response::empty(503));
            return;
        }
        if let Some(queued) = state.queue.pop_front() {
            state.in_flight.insert(queued.request_id.clone());
            break queued;
        }
        state = shared
            .changed
            .wait(state)
            .unwrap_or_else(PoisonError::into_inner);
    };
    drop(state);
    let deadline_ms = (SystemTime::now() + FUNCTION_TIMEOUT)
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or_default();
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let trace_id = format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or_default(),
        &trace[..24],
        &trace[16..32]
    );
    let response = Response::from_data(queued.body)
        .with_header(header_of("Content-Type", "application/json"))
        .with_header(header_of(
            "Lambda-Runtime-Aws-Request-Id",
            &queued.request_id,
        ))
        .with_header(header_of(
            "Lambda-Runtime-Deadline-Ms",
            &deadline_ms.to_string(),
        ))
        .with_header(header_of(
            "Lambda-Runtime-Invoked-Function-Arn",
            &shared.function_arn,
        ))
        .with_header(header_of("Lambda-Runtime-Trace-Id", &trace_id));
    if let Err(e) = request.respond(response) {
        // The function went away mid-delivery; `invoke` notices the exit.
        eprintln!(
            "testkit: could not deliver invocation {}: {e}",
            queued.request_id
        );
    }
}

/// Reads `{"errorType", "errorMessage"}`, falling back to the error-type header and the raw body.
fn parse_error(body: &[u8], type_header: Option<String>) -> InvokeError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|value| value.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    InvokeError {
        error_type: field("errorType")
            .or(type_header)
            .unwrap_or_else(|| "Unhandled".to_string()),
        error_message: field("errorMessage")
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
    }
}

fn header(request: &Request, name: &'static str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|header| header.field.equiv(name))
        .map(|header| header.value.to_string())
}

fn header_of(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| panic!("invalid header {name}: {value:?}"))
}

fn json_response(status: u16, body: &Value) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(body.to_string())
        .with_status_code(status)
        .with_header(header_of("Content-Type", "application/json"))
}

/// Today's date as `YYYY/MM/DD` (UTC), for the log stream name, without a date library.
fn utc_date() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs() / 86_400)
        .unwrap_or_default() as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}/{month:02}/{day:02}")
}

/// The function's `/etc/hosts`: `hosts`, then this machine's (so `localhost` and the rest still
/// resolve as before). Readable by anyone: the function may run as a mapped user.
fn hosts_file(hosts: &[(String, IpAddr)]) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .prefix("testkit-hosts-")
        .tempfile()
        .expect("create the function's hosts file");
    let mut text = String::from("# testkit::lambda::LambdaHost::start_with_hosts\n");
    for (name, address) in hosts {
        text.push_str(&format!("{address} {name}\n"));
    }
    text.push_str(&std::fs::read_to_string("/etc/hosts").unwrap_or_default());
    file.write_all(text.as_bytes())
        .expect("write the function's hosts file");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
        .expect("make the function's hosts file readable");
    file
}

/// Panics with what is needed unless this process can make a private mount namespace and
/// bind-mount a file over `/etc/hosts` in it.
fn check_private_hosts_possible() {
    let mut probe = Command::new("unshare");
    if !crate::postgres::running_as_root() {
        probe.arg("--map-root-user");
    }
    let output = probe
        .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg("mount --bind /etc/hosts /etc/hosts")
        .output();
    match output {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "LambdaHost::start_with_hosts: cannot give the function its own /etc/hosts (a \
             private mount namespace needs root or unprivileged user namespaces): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => panic!(
            "LambdaHost::start_with_hosts: cannot run unshare (util-linux) to give the function \
             its own /etc/hosts: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_parsed_with_fallbacks() {
        let error = parse_error(br#"{"errorType":"E","errorMessage":"m"}"#, None);
        assert_eq!(error.error_type, "E");
        assert_eq!(error.error_message, "m");
        let error = parse_error(b"not json", Some("unhandled".into()));
        assert_eq!(error.error_type, "unhandled");
        assert_eq!(error.error_message, "not json");
        assert_eq!(error.to_string(), "unhandled: not json");
    }

    #[test]
    fn log_stream_date_is_well_formed() {
        let date = utc_date();
        let parts: Vec<&str> = date.split('/').collect();
        assert_eq!(parts.len(), 3, "{date}");
        assert!(parts[0].parse::<u32>().expect("year") >= 2024, "{date}");
        assert!((1..=12).contains(&parts[1].parse::<u32>().expect("month")));
        assert!((1..=31).contains(&parts[2].parse::<u32>().expect("day")));
    }
}
