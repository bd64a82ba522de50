//! The crash-anywhere tests' view of the fail points (`crates/failpoints`): which points exist
//! in the sources, which a traced run hit and in what order, and the `FAILPOINTS` value that
//! kills a process at one hit of one point.
//!
//! A traced run ([`Trace`]) gives the function `FAILPOINTS_TRACE=<file>`: every hit appends the
//! point's name as a line. [`Trace::mark`] adds the test's own marker lines (`# createSecret`)
//! between invocations, so each hit can be attributed to the step or run that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Every fail point named in the sources of the workspace's crates (`crates/*/src`, the
/// fail-point crate itself and this test kit left out): each `point!("name")` gives `name`,
/// each `around!("name", …)` gives `name.before` and `name.after`, with the crate that holds it.
pub fn in_sources() -> BTreeMap<String, String> {
    let crates = crate::workspace_root().join("crates");
    let mut found = BTreeMap::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&crates)
        .unwrap_or_else(|e| panic!("read {}: {e}", crates.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name != "failpoints" && name != "testkit"
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        let krate = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for file in rust_files(&dir.join("src")) {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
            for name in names_in(&text) {
                found.insert(name, krate.clone());
            }
        }
    }
    found
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The point names in one source text (see [`in_sources`]).
pub fn names_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (macro_name, pair) in [
        ("failpoints::point!(", false),
        ("failpoints::around!(", true),
    ] {
        let mut rest = text;
        while let Some(at) = rest.find(macro_name) {
            rest = &rest[at + macro_name.len()..];
            let args = rest.trim_start();
            let Some(literal) = args.strip_prefix('"') else {
                continue;
            };
            let Some(end) = literal.find('"') else {
                continue;
            };
            let name = &literal[..end];
            if pair {
                names.push(format!("{name}.before"));
                names.push(format!("{name}.after"));
            } else {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// The `FAILPOINTS` value that lets the first `skip` hits of `name` pass and aborts the process
/// at the next one (`name=return`, `name=2*off->return`).
pub fn abort_at(name: &str, skip: usize) -> String {
    if skip == 0 {
        format!("{name}=return")
    } else {
        format!("{name}={skip}*off->return")
    }
}

/// One hit of a traced run: the point, how many hits of it came before (what [`abort_at`]
/// skips), and the last marker before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The point's name.
    pub name: String,
    /// Earlier hits of the same point in the run (0 for the first).
    pub skip: usize,
    /// The last [`Trace::mark`] before the hit (empty when none).
    pub during: String,
}

impl Hit {
    /// The `FAILPOINTS` value that aborts at this hit.
    pub fn spec(&self) -> String {
        abort_at(&self.name, self.skip)
    }
}

/// A trace file for `FAILPOINTS_TRACE`, removed on drop.
pub struct Trace {
    file: tempfile::NamedTempFile,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    /// A new, empty trace file.
    pub fn new() -> Trace {
        Trace {
            file: tempfile::NamedTempFile::new().expect("create a trace file"),
        }
    }

    /// The environment entry that makes a function trace into this file.
    pub fn env(&self) -> (String, String) {
        (
            "FAILPOINTS_TRACE".into(),
            self.file.path().display().to_string(),
        )
    }

    /// Appends the marker `label`: the hits after it are attributed to it.
    pub fn mark(&self, label: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.file.path())
            .expect("open the trace file");
        writeln!(file, "# {label}").expect("write the trace file");
    }

    /// Every hit so far, in order.
    pub fn hits(&self) -> Vec<Hit> {
        let text = std::fs::read_to_string(self.file.path()).expect("read the trace file");
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let mut during = String::new();
        let mut hits = Vec::new();
        for line in text.lines() {
            if let Some(label) = line.strip_prefix("# ") {
                during = label.to_string();
                continue;
            }
            let count = seen.entry(line).or_default();
            hits.push(Hit {
                name: line.to_string(),
                skip: *count,
                during: during.clone(),
            });
            *count += 1;
        }
        hits
    }
}

/// The distinct point names of `hits`.
pub fn names(hits: &[Hit]) -> BTreeSet<String> {
    hits.iter().map(|h| h.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_both_macros_with_literals_only() {
        let text = r#"
            failpoints::point!("a.one");
            let x = failpoints::around!(
                "b.two",
                call().await
            );
            failpoints::point!(concat!($name, ".before"));
        "#;
        assert_eq!(names_in(text), ["a.one", "b.two.before", "b.two.after"]);
    }

    #[test]
    fn the_sources_hold_points_of_every_area() {
        let found = in_sources();
        for (name, krate) in [
            ("sm.put_secret_value.before", "secrets-manager"),
            ("pg.commit.after", "postgres-target"),
            ("backup.manifest.before", "backup"),
            ("restore.create_secret.after", "backup"),
        ] {
            assert_eq!(found.get(name).map(String::as_str), Some(krate), "{name}");
        }
    }

    #[test]
    fn hits_count_per_point_and_carry_the_last_marker() {
        let trace = Trace::new();
        trace.mark("first");
        let path = trace.env().1;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"p.a\np.b\np.a\n")
            .unwrap();
        trace.mark("second");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"p.a\n")
            .unwrap();
        let hits = trace.hits();
        let specs: Vec<_> = hits.iter().map(|h| (h.spec(), h.during.as_str())).collect();
        assert_eq!(
            specs,
            [
                ("p.a=return".to_string(), "first"),
                ("p.b=return".to_string(), "first"),
                ("p.a=1*off->return".to_string(), "first"),
                ("p.a=2*off->return".to_string(), "second"),
            ]
        );
    }
}
