//! The deployed artifact under test: `make build`'s arm64 `bootstrap` binaries
//! (`target/lambda/<function>/bootstrap`, cargo-lambda + zig) run on this machine by user-mode
//! emulation, behind [`LambdaHost::start_launched`](crate::lambda::LambdaHost::start_launched).
//!
//! The emulator is Debian's `qemu-user-static` (`qemu-aarch64-static`; `qemu-user`'s
//! `qemu-aarch64` also works) and the arm64 C library is Debian's `libc6-arm64-cross` (the
//! dynamic loader and libc under `/usr/aarch64-linux-gnu`); `.ci/run` installs both. Override
//! with `TESTKIT_QEMU_AARCH64` (the emulator) and `TESTKIT_ARM64_SYSROOT` (the folder holding
//! `lib/ld-linux-aarch64.so.1`).
//!
//! Without them a test skips with a loud message, unless `TESTKIT_REQUIRE_ARM64=1` (set by
//! `.ci/run` and `make test`'s CI use): then their absence is a failure.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The dynamic loader an arm64 glibc binary names (its `PT_INTERP`), relative to the sysroot.
const LOADER: &str = "lib/ld-linux-aarch64.so.1";
/// Where Debian's `libc6-arm64-cross` installs the arm64 C library.
const DEBIAN_SYSROOT: &str = "/usr/aarch64-linux-gnu";
/// The emulator's names on `PATH`, preferred first.
const EMULATORS: [&str; 2] = ["qemu-aarch64-static", "qemu-aarch64"];

/// An arm64 user-mode emulator and the arm64 C library it loads binaries with.
#[derive(Debug, Clone)]
pub struct Emulator {
    /// The emulator executable.
    pub qemu: PathBuf,
    /// The folder holding the arm64 loader and C library (`-L`).
    pub sysroot: PathBuf,
}

impl Emulator {
    /// The emulator and C library of this machine, or what is missing and how to get it.
    pub fn find() -> Result<Emulator, String> {
        let qemu = match std::env::var_os("TESTKIT_QEMU_AARCH64") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => EMULATORS
                .iter()
                .find_map(|name| on_path(name))
                .ok_or_else(|| {
                    "no arm64 emulator: neither qemu-aarch64-static nor qemu-aarch64 is on PATH \
                     (apt-get install qemu-user-static, as .ci/run does, or set \
                     TESTKIT_QEMU_AARCH64)"
                        .to_string()
                })?,
        };
        let sysroot = std::env::var_os("TESTKIT_ARM64_SYSROOT")
            .filter(|path| !path.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEBIAN_SYSROOT));
        if !sysroot.join(LOADER).exists() {
            return Err(format!(
                "no arm64 C library: {} is missing (apt-get install libc6-arm64-cross, as \
                 .ci/run does, or set TESTKIT_ARM64_SYSROOT)",
                sysroot.join(LOADER).display()
            ));
        }
        Ok(Emulator { qemu, sysroot })
    }

    /// The program and arguments that run an arm64 binary appended to them.
    pub fn launcher(&self) -> Vec<OsString> {
        vec![
            self.qemu.clone().into_os_string(),
            "-L".into(),
            self.sysroot.clone().into_os_string(),
        ]
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Whether a missing emulator or artifact fails the test instead of skipping it
/// (`TESTKIT_REQUIRE_ARM64=1`).
pub fn required() -> bool {
    std::env::var("TESTKIT_REQUIRE_ARM64").is_ok_and(|v| v == "1")
}

/// `make build`'s arm64 binary of `function` (`target/lambda/<function>/bootstrap`), checked to
/// be an arm64 ELF executable; or what is missing.
pub fn artifact(function: &str) -> Result<PathBuf, String> {
    let path = crate::target_dir()
        .join("lambda")
        .join(function)
        .join("bootstrap");
    let header = read_header(&path).map_err(|e| {
        format!(
            "{} is missing ({e}): `make build` builds it",
            path.display()
        )
    })?;
    // ELF magic, 64-bit class, e_machine EM_AARCH64 (183) little-endian at offset 18.
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[18..20] != [183, 0] {
        return Err(format!("{} is not an arm64 ELF binary", path.display()));
    }
    Ok(path)
}

fn read_header(path: &Path) -> std::io::Result<[u8; 20]> {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)?.read_exact(&mut header)?;
    Ok(header)
}

/// The emulator and `function`'s artifact, or `None` after printing why the test is skipped;
/// panics instead when [`required`].
pub fn emulator_and_artifact(function: &str) -> Option<(Emulator, PathBuf)> {
    match Emulator::find().and_then(|emulator| Ok((emulator, artifact(function)?))) {
        Ok(found) => Some(found),
        Err(why) if required() => panic!("TESTKIT_REQUIRE_ARM64=1: {why}"),
        Err(why) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED: the arm64 artifact was NOT run: {why}. \
                 (TESTKIT_REQUIRE_ARM64=1 makes this a failure; .ci/run sets it.) !!!!!!!!\n"
            );
            None
        }
    }
}
