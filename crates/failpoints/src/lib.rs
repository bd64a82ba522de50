//! Named fail points at the boundaries where the functions read or change state: before and
//! after each Secrets Manager call, each SQL statement and each transaction commit, each part and
//! the manifest of a backup, each write of a restore.
//!
//! # Names
//! `<area>.<operation>.<before|after>`, lower case:
//! * `sm.<api_call>`: a Secrets Manager call of `crates/secrets-manager`
//!   (`sm.put_secret_value.before`);
//! * `pg.<statement>`: a connection, SQL statement, `BEGIN` or `COMMIT` of
//!   `crates/postgres-target` (`pg.alter_role_password.after`, `pg.commit.before`);
//! * `backup.<object>`: an object the backup writer uploads (`backup.part.before`,
//!   `backup.manifest.after`);
//! * `restore.<api_call>`: a write of `secrets-backup restore --apply`
//!   (`restore.put_secret_value.before`);
//! * `events.<api_call>`: the rotation's EventBridge call of `crates/rotation-signals`
//!   (`events.put_events.before`).
//!
//! Every point is written in the source as [`point!`]`("name")` or [`around!`]`("name", …)` (which
//! is the two points `name.before` and `name.after` around an expression) with a string literal,
//! so the list of points is the list of those macro calls: the crash-anywhere tests
//! (`tests/failpoints_*.rs`) scan the sources for them (`testkit::failpoints::in_sources`) and
//! fail if a run did not reach one.
//!
//! # When they exist
//! Only when this crate's `enabled` feature is on **and** the build has debug assertions (the
//! debug profile). The feature is turned on by the end-to-end test crate, so the debug binaries
//! the tests run carry the points; a release build (`make build`, `make bench`) expands every
//! macro to nothing, whatever the features, and no shipped crate asks for the feature.
//!
//! # What they do
//! Nothing, unless the environment variable `FAILPOINTS` configures them, in the syntax of the
//! `fail` crate: `name=actions[;name=actions…]`, e.g. `sm.put_secret_value.after=2*off->return`
//! (the first two hits pass, the third fires). A point that fires **aborts the process**
//! (`std::process::abort`, as Lambda's timeout or an out-of-memory kill would end it: no error
//! answer, no unwinding, nothing a panic handler could catch). With `FAILPOINTS_TRACE=<file>`
//! every hit appends the point's name as a line to that file (the tests' traced runs).

#[cfg(all(feature = "enabled", debug_assertions))]
mod live {
    use std::io::Write;
    use std::sync::Once;

    static CONFIGURE: Once = Once::new();

    /// Reads `FAILPOINTS` once per process; a configuration the `fail` crate rejects aborts,
    /// naming the point (a test must not pass because its fault was never armed).
    fn configure() {
        CONFIGURE.call_once(|| {
            let Ok(spec) = std::env::var("FAILPOINTS") else {
                return;
            };
            for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
                let Some((name, actions)) = entry.split_once('=') else {
                    eprintln!("FAILPOINTS: {entry:?} is not name=actions");
                    std::process::abort();
                };
                if let Err(e) = fail::cfg(name.trim(), actions.trim()) {
                    eprintln!("FAILPOINTS: {name}: {e}");
                    std::process::abort();
                }
            }
        });
    }

    /// One hit of the point `name`: traced, then evaluated; aborts when it fires.
    pub fn hit(name: &str) {
        configure();
        if let Some(path) = std::env::var_os("FAILPOINTS_TRACE") {
            let line = format!("{name}\n");
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                eprintln!("FAILPOINTS_TRACE: {}: {e}", path.to_string_lossy());
                std::process::abort();
            }
        }
        if fail::eval(name, |_| ()).is_some() {
            // One write of the whole line: `eprintln!` writes its pieces one system call each
            // to the unbuffered stderr, and the test host, draining stdout and stderr on two
            // threads into one log, could then put stdout lines between "fail point " and the
            // name (the crash tests look for this line).
            let line = format!("fail point {name}: aborting the process\n");
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            std::process::abort();
        }
    }
}

/// Whether this build carries the fail points (the `enabled` feature in a debug build).
pub const COMPILED_IN: bool = cfg!(all(feature = "enabled", debug_assertions));

/// Evaluates the point `name` (see the crate documentation). Called by [`point!`] only.
#[cfg(all(feature = "enabled", debug_assertions))]
#[doc(hidden)]
pub fn hit(name: &str) {
    live::hit(name)
}

/// The fail point `$name` (a string literal, see the crate documentation for the scheme).
/// Nothing at all unless [`COMPILED_IN`].
#[cfg(all(feature = "enabled", debug_assertions))]
#[macro_export]
macro_rules! point {
    ($name:expr) => {
        $crate::hit($name)
    };
}

/// The fail point `$name` (a string literal, see the crate documentation for the scheme).
/// Nothing at all unless [`COMPILED_IN`].
#[cfg(not(all(feature = "enabled", debug_assertions)))]
#[macro_export]
macro_rules! point {
    ($name:expr) => {};
}

/// `$body` (typically an `.await` of one call or statement) between the points `$name.before`
/// and `$name.after`; evaluates to `$body`'s value. `$name` is a string literal.
#[macro_export]
macro_rules! around {
    ($name:literal, $body:expr) => {{
        $crate::point!(concat!($name, ".before"));
        let value = $body;
        $crate::point!(concat!($name, ".after"));
        value
    }};
}

#[cfg(test)]
mod tests {
    #[test]
    fn around_evaluates_its_body_once_and_yields_its_value() {
        let mut calls = 0;
        let value = crate::around!("test.around", {
            calls += 1;
            calls * 10
        });
        assert_eq!((value, calls), (10, 1));
    }
}
