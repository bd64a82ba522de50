//! Interrupted runs leave nothing behind, and `--help` starts nothing.
//!
//! - `interrupting_the_demo_stops_and_removes_everything`: the built `demo` binary, with `TMPDIR`
//!   pointing to a fresh empty folder, is interrupted once with SIGINT (while its rotation
//!   function runs) and once with SIGTERM (right after PostgreSQL and moto are up). It exits with
//!   130 / 143, and afterwards no process it started remains (this test process is their
//!   subreaper, so every orphan would become its child; and no process refers to the folder in
//!   its command line, working directory or environment) and the folder is empty.
//! - `interrupting_invoke_local_stops_and_removes_everything`: the same for `make invoke-local`'s
//!   binary (SIGINT while the function runs, SIGTERM once the stack is seeded).
//! - `help_on_every_binary_prints_usage_and_starts_nothing`: every binary `cargo metadata` lists,
//!   run with `--help` and with `-h` in an empty `TMPDIR` without any AWS or Lambda variable,
//!   exits 0 with its usage, creates nothing and leaves no process; the Lambda binaries, given a
//!   Runtime API address, never connect to it.
//!
//! The tests look at this process's children: a lock runs them one at a time.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, set_child_subreaper, Pid, Signal};

/// One test at a time: both count this process's children.
static SERIAL: Mutex<()> = Mutex::new(());

/// How long the demo may take to reach the line a case waits for.
const UP_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a signalled demo may take to clean up and exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A process seen in `/proc`.
#[derive(Debug)]
struct Process {
    pid: u32,
    parent: u32,
    state: char,
    command: String,
}

/// Every process on the machine (those that vanish while reading are skipped).
fn processes() -> Vec<Process> {
    let mut list = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let parent = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let command = std::fs::read(entry.path().join("cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default();
        list.push(Process {
            pid,
            parent,
            state,
            command,
        });
    }
    list
}

/// Live (not zombie) children of this process.
fn live_children() -> Vec<Process> {
    let me = std::process::id();
    processes()
        .into_iter()
        .filter(|p| p.parent == me && p.state != 'Z')
        .collect()
}

/// Live processes whose command line, working directory or environment mentions `folder`.
fn processes_using(folder: &Path) -> Vec<Process> {
    let needle = folder.to_string_lossy().into_owned();
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.pid != std::process::id())
        .filter(|p| {
            let proc_dir = PathBuf::from(format!("/proc/{}", p.pid));
            let cwd = std::fs::read_link(proc_dir.join("cwd"))
                .map(|cwd| cwd.to_string_lossy().contains(&needle))
                .unwrap_or(false);
            let environ = std::fs::read(proc_dir.join("environ"))
                .map(|env| String::from_utf8_lossy(&env).contains(&needle))
                .unwrap_or(false);
            p.command.contains(&needle) || cwd || environ
        })
        .collect()
}

/// The processes descending from `root` (children, their children, ...).
fn descendants(root: u32) -> Vec<Process> {
    let all = processes();
    let mut found: Vec<u32> = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(all.iter().filter(|p| p.parent == parent).map(|p| p.pid));
        index += 1;
    }
    all.into_iter()
        .filter(|p| p.pid != root && found.contains(&p.pid))
        .collect()
}

/// A fresh empty folder for `TMPDIR`, reachable by the PostgreSQL server's user.
fn fresh_tmpdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hygiene-")
        .tempdir()
        .expect("create a temporary folder");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temporary folder");
    dir
}

fn entries(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder)
        .expect("read the temporary folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Waits (bounded) for `child` to exit; kills it and panics on timeout.
fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the demo in a fresh `TMPDIR`, sends `signal` once it printed a line containing
/// `wait_for`, and checks that it exits with `expected` and leaves nothing behind.
fn interrupt_demo(demo: &Path, wait_for: &str, signal: Signal, expected: i32) {
    interrupt_run(demo, &[], wait_for, signal, expected);
}

/// [`interrupt_demo`] for any binary that starts the demo's stack, with its arguments.
fn interrupt_run(demo: &Path, args: &[&str], wait_for: &str, signal: Signal, expected: i32) {
    let tmp = fresh_tmpdir();
    let started = Instant::now();
    let mut child = Command::new(demo)
        .args(args)
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the demo");
    let stdout = child.stdout.take().expect("the demo's stdout");
    let stderr = child.stderr.take().expect("the demo's stderr");
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + UP_TIMEOUT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(remaining) {
            Ok(line) => {
                let found = line.contains(wait_for);
                printed.push(line);
                if found {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the demo never printed {wait_for:?} within {UP_TIMEOUT:?}; it printed:\n{}",
                    printed.join("\n")
                );
            }
        }
    }

    // What it started, seen before the signal (so the checks after it can fail).
    let before_using = processes_using(tmp.path());
    let before_descendants = descendants(child.id());
    let before_entries = entries(tmp.path());
    assert!(
        before_using.iter().any(|p| p.command.contains("postgres")),
        "PostgreSQL should be running from {} before the signal: {before_using:#?}",
        tmp.path().display()
    );
    assert!(
        before_entries.iter().any(|e| e.starts_with("testkit-pg-"))
            && before_entries
                .iter()
                .any(|e| e.starts_with("testkit-moto-")),
        "the demo's folders before the signal: {before_entries:?}"
    );

    let pid = Pid::from_raw(child.id() as i32).expect("the demo's pid");
    kill_process(pid, signal).expect("signal the demo");
    let status = wait_bounded(&mut child, EXIT_TIMEOUT, "the interrupted demo");
    let _ = reader.join();
    let stderr = errors.join().unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(expected),
        "exit status after {signal:?}; stderr:\n{}",
        testkit::tail(&stderr, 3000)
    );
    assert!(
        stderr.contains("stopping and removing everything started here"),
        "{stderr}"
    );

    let left_using = processes_using(tmp.path());
    assert!(
        left_using.is_empty(),
        "processes still using {} after {signal:?}: {left_using:#?}",
        tmp.path().display()
    );
    let alive: Vec<&Process> = before_descendants
        .iter()
        .filter(|p| {
            processes()
                .iter()
                .any(|now| now.pid == p.pid && now.state != 'Z' && now.command == p.command)
        })
        .collect();
    assert!(
        alive.is_empty(),
        "the demo's processes still running after {signal:?}: {alive:#?}"
    );
    let orphans = live_children();
    assert!(
        orphans.is_empty(),
        "processes the demo started and left behind after {signal:?}: {orphans:#?}"
    );
    let left = entries(tmp.path());
    assert!(
        left.is_empty(),
        "folders left in TMPDIR after {signal:?}: {left:?}"
    );
    println!(
        "{} interrupted with {signal:?} after {:?} ({} processes, {} folders of its own \
         before the signal): exit {expected}, nothing left; whole case {:.1} s",
        demo.display(),
        wait_for,
        before_using.len().max(before_descendants.len()),
        before_entries.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn interrupting_the_demo_stops_and_removes_everything() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_child_subreaper(Some(rustix::process::getpid())).expect("become the subreaper of orphans");
    // Built first, so the demo's own `cargo build` of it is quick.
    let demo = testkit::binary("demo");
    testkit::binary("rotate-postgres");
    // SIGINT (Ctrl-C) while the rotation function runs: function, moto and PostgreSQL up.
    interrupt_demo(&demo, "Secrets Manager starts rotation", Signal::INT, 130);
    // SIGTERM as soon as PostgreSQL and moto are up.
    interrupt_demo(&demo, "Created role", Signal::TERM, 143);
}

#[test]
fn interrupting_invoke_local_stops_and_removes_everything() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_child_subreaper(Some(rustix::process::getpid())).expect("become the subreaper of orphans");
    let invoke_local = testkit::binary("invoke-local");
    testkit::binary("rotate-postgres");
    let event = testkit::workspace_root().join("events/rotation-finish-secret.json");
    let args = ["--event", event.to_str().expect("a UTF-8 path")];
    // SIGINT (Ctrl-C) once the function runs behind its Runtime API host.
    interrupt_run(&invoke_local, &args, "Function:", Signal::INT, 130);
    // SIGTERM once the stack is seeded.
    interrupt_run(&invoke_local, &args, "Seeded:", Signal::TERM, 143);
}

/// Every binary target of the workspace, from `cargo metadata`.
fn workspace_binaries() -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(testkit::workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata: {output:?}");
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let mut names: Vec<String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|package| package["targets"].as_array().cloned().unwrap_or_default())
        .filter(|target| {
            target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"))
        })
        .filter_map(|target| target["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn help_on_every_binary_prints_usage_and_starts_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_child_subreaper(Some(rustix::process::getpid())).expect("become the subreaper of orphans");
    let names = workspace_binaries();
    for expected in [
        "rotate-postgres",
        "preflight",
        "backup-lambda",
        "secrets-backup",
        "demo",
        "bench",
        "lambda-invoke",
        "invoke-local",
        "echo-lambda",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} is not in {names:?}"
        );
    }
    // A Runtime API that must never be called: nothing may connect to it.
    let runtime_api = TcpListener::bind("127.0.0.1:0").expect("bind a fake Runtime API");
    runtime_api
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let runtime_address = runtime_api.local_addr().expect("address").to_string();
    for name in &names {
        let binary = testkit::binary(name);
        for flag in ["--help", "-h"] {
            for with_runtime_api in [false, true] {
                let tmp = fresh_tmpdir();
                let mut command = Command::new(&binary);
                command
                    .arg(flag)
                    .env_clear()
                    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                    .env("TMPDIR", tmp.path())
                    .env("HOME", tmp.path())
                    .current_dir(tmp.path())
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                if with_runtime_api {
                    command.env("AWS_LAMBDA_RUNTIME_API", &runtime_address);
                }
                let child = command.spawn().expect("spawn");
                let output = child.wait_with_output().expect("wait");
                let stdout = String::from_utf8_lossy(&output.stdout);
                let what = format!("`{name} {flag}` (Runtime API set: {with_runtime_api})");
                assert!(
                    output.status.success(),
                    "{what}: {:?}\n{stdout}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
                assert!(
                    stdout.to_lowercase().contains("usage:") && stdout.contains(name.as_str()),
                    "{what} printed no usage naming itself:\n{stdout}"
                );
                let created = entries(tmp.path());
                assert!(created.is_empty(), "{what} created {created:?}");
                let children = live_children();
                assert!(children.is_empty(), "{what} left {children:#?}");
                match runtime_api.accept() {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    other => panic!("{what} connected to the Runtime API: {other:?}"),
                }
            }
        }
    }
    println!(
        "--help and -h on {} binaries: usage, exit 0, nothing started",
        names.len()
    );
}
