//! What an interrupted run must not leave behind: every server, child process and temporary
//! folder the test kit starts is registered here with the action that removes it, so that a
//! SIGINT or SIGTERM can stop and delete everything, as `Drop` does on a normal exit.
//!
//! - [`register`] (and [`register_process`], [`register_path`]) records a clean-up action; the
//!   returned [`Registration`] forgets it when dropped (the owner's own `Drop` cleans up then).
//! - [`starting`] marks a short critical section (spawn a process, then register it): a signal's
//!   clean-up waits for it, so nothing started in that window escapes.
//! - [`exit_on_signals`], called first thing by the demo and benchmark binaries, installs the
//!   handler: on SIGINT or SIGTERM it runs every registered action, newest first (function
//!   processes, then moto, then PostgreSQL, then the folders), and exits with the conventional
//!   status, 130 or 143.
//!
//! Tests run by `cargo test` install no handler: their servers are still stopped by `Drop`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard};

use signal_hook::consts::{SIGINT, SIGTERM};

type Action = Box<dyn FnOnce() + Send>;

/// The registered actions, oldest first, with their ids and descriptions.
struct Registry {
    next_id: u64,
    entries: Vec<(u64, String, Action)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next_id: 0,
    entries: Vec::new(),
});

/// Set once a signal's clean-up begins: the process exits with the signal's status only.
static TERMINATING: AtomicBool = AtomicBool::new(false);

/// Read-held by [`starting`] sections, write-held (for good) by [`clean_up_everything`].
static STARTS: RwLock<()> = RwLock::new(());

/// A registered clean-up action; dropping it forgets the action without running it.
#[must_use = "dropping the registration forgets the clean-up action at once"]
pub struct Registration {
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        registry.entries.retain(|(id, _, _)| *id != self.id);
    }
}

/// A section in which something is started and registered: a signal's clean-up waits until it
/// ends. Keep it short (a spawn, a `pg_ctl start`) and never nest it.
pub struct Starting {
    _guard: RwLockReadGuard<'static, ()>,
}

/// Enters a [`Starting`] section.
pub fn starting() -> Starting {
    Starting {
        _guard: STARTS.read().unwrap_or_else(PoisonError::into_inner),
    }
}

/// Records `action` (described by `what`, printed when a signal runs it) to run if the process
/// is interrupted before the returned [`Registration`] is dropped.
pub fn register(what: impl Into<String>, action: impl FnOnce() + Send + 'static) -> Registration {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let id = registry.next_id;
    registry.next_id += 1;
    registry.entries.push((id, what.into(), Box::new(action)));
    Registration { id }
}

/// Records that the process `pid` (described by `what`) must be killed (SIGKILL) on a signal.
pub fn register_process(what: impl Into<String>, pid: u32) -> Registration {
    register(what, move || kill(pid))
}

/// Records that the file or folder `path` must be removed on a signal.
pub fn register_path(path: &Path) -> Registration {
    let path = path.to_path_buf();
    register(format!("remove {}", path.display()), move || remove(&path))
}

/// Runs `command` to completion and returns its output, as [`Command::output`] does, killing it
/// if a signal interrupts this process meanwhile.
pub fn output(command: &mut Command, what: &str) -> std::io::Result<Output> {
    let (child, _registration) = spawn(command, what)?;
    child.wait_with_output()
}

/// Spawns `command` (stdout and stderr piped, stdin null, as [`Command::output`] does) and
/// registers it to be killed on a signal.
fn spawn(command: &mut Command, what: &str) -> std::io::Result<(Child, Registration)> {
    use std::process::Stdio;
    let _starting = starting();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let registration = register_process(what, child.id());
    Ok((child, registration))
}

/// Runs every registered action, newest first, and returns how many ran. Waits for the
/// [`starting`] sections in progress, and lets no new one begin afterwards (the process is
/// expected to exit next). Errors are printed to stderr, never raised.
pub fn clean_up_everything() -> usize {
    TERMINATING.store(true, Ordering::SeqCst);
    // Threads that fail because a process was killed here (a function that exited, a server
    // that went away) stop where they are, silently: the process exits with the signal's
    // status, not with their panic or a "failed" exit code.
    std::panic::set_hook(Box::new(|_| loop {
        std::thread::park();
    }));
    // Held until the process exits: a thread still starting something waits forever instead of
    // starting it after the clean-up.
    std::mem::forget(STARTS.write().unwrap_or_else(PoisonError::into_inner));
    run_registered()
}

/// Takes every registered action and runs it, newest first.
fn run_registered() -> usize {
    let entries = {
        let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut registry.entries)
    };
    let count = entries.len();
    for (_, what, action) in entries.into_iter().rev() {
        eprintln!("testkit: {what}");
        action();
    }
    count
}

/// Installs the SIGINT / SIGTERM handler of the demo and benchmark binaries: a thread that, on
/// the first of these signals, runs [`clean_up_everything`] and exits with 128 + the signal's
/// number (130 for SIGINT, 143 for SIGTERM). Further signals during the clean-up are ignored.
///
/// Panics if the handler cannot be installed.
pub fn exit_on_signals() {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .expect("install the SIGINT/SIGTERM handler");
    std::thread::Builder::new()
        .name("testkit-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                eprintln!("\ntestkit: {name}: stopping and removing everything started here");
                let count = clean_up_everything();
                eprintln!("testkit: {count} clean-up action(s) done, exiting");
                std::process::exit(128 + signal);
            }
        })
        .expect("spawn the signal handler thread");
}

/// Exits with `code`, as [`std::process::exit`] does, unless a signal's clean-up is under way:
/// then waits for it, and the process exits with the signal's status (130 / 143) instead.
pub fn exit(code: i32) -> ! {
    if TERMINATING.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    std::process::exit(code)
}

/// SIGKILL to `pid`; a process already gone is not an error.
pub fn kill(pid: u32) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    match rustix::process::kill_process(pid, rustix::process::Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => eprintln!("testkit: kill {pid:?}: {e}"),
    }
}

/// Removes a file or a folder (recursively); one already gone is not an error.
fn remove(path: &PathBuf) {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("testkit: remove {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_dropped_registration_is_forgotten_and_a_kept_one_runs_newest_first() {
        // The only test touching the process-wide registry (clean_up_everything itself would
        // block every later start in this process).
        let order = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicUsize::new(0));
        let dir = tempfile::tempdir().expect("temporary directory");
        let folder = dir.path().join("left-behind");
        std::fs::create_dir_all(folder.join("inner")).expect("create a folder");
        let kept_path = register_path(&folder);
        let first = {
            let order = Arc::clone(&order);
            register("first", move || order.lock().unwrap().push("first"))
        };
        {
            let dropped = Arc::clone(&dropped);
            let _forgotten = register("forgotten", move || {
                dropped.fetch_add(1, Ordering::SeqCst);
            });
        }
        let second = {
            let order = Arc::clone(&order);
            register("second", move || order.lock().unwrap().push("second"))
        };
        assert_eq!(run_registered(), 3);
        assert_eq!(*order.lock().unwrap(), ["second", "first"]);
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        assert!(!folder.exists(), "the registered folder was removed");
        drop((kept_path, first, second));
    }
}
