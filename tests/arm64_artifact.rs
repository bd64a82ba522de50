//! What ships is what was tested: `make build`'s arm64 `rotate-postgres` bootstrap (release
//! profile, cargo-lambda + zig, the file SAM packages) runs one single-user rotation end to end,
//! preflight included, under user-mode emulation (`testkit::arm64`: Debian's qemu-user-static and
//! arm64 C library), against the real PostgreSQL with TLS and moto.
//!
//! And what SAM packages is that file: `sam build` (the pinned SAM CLI, template.yaml's
//! `BuildMethod: makefile`, the Makefile's `build-<LogicalId>` targets) into a temporary folder
//! gives every function exactly `make build`'s bootstrap, byte for byte, and nothing else.
//!
//! `make test` builds the artifact (`make build`, in the background: tools/run-tests) and runs
//! these tests, named `artifact_…`, once it is built; without the emulator, the artifact or
//! the SAM CLI (`.venv-tools`, or `TESTKIT_SAM`) the tests skip with a loud message, and with
//! `TESTKIT_REQUIRE_ARM64=1` (`.ci/run`) they fail instead.

use e2e::World;
use rotation::{AWSCURRENT, AWSPREVIOUS};
use std::path::PathBuf;
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn artifact_arm64_bootstrap_rotates_a_single_user_secret() {
    let Some((emulator, artifact)) = testkit::arm64::emulator_and_artifact("rotate-postgres")
    else {
        return;
    };
    let world = World::start().await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    let lambda = world
        .emulated_rotation_lambda(&emulator, &artifact, &[])
        .await;

    let token = lambda.rotate(&world, &arn).await;
    let current = world.password_at(&arn, AWSCURRENT).await;
    assert_ne!(current, "initial-Password-1");
    assert_eq!(current.len(), 32, "default PASSWORD_LENGTH");
    assert_eq!(
        world.password_at(&arn, AWSPREVIOUS).await,
        "initial-Password-1"
    );
    assert!(world.can_login("app", &current).await);
    assert!(!world.can_login("app", "initial-Password-1").await);
    assert!(world.labels(&arn).await[&token].contains(&AWSCURRENT.to_string()));
    // The function that answered is the emulated arm64 process, and it logged its steps.
    let output = lambda.output();
    assert!(output.contains("\"step\":\"finishSecret\""), "{output}");
}

/// The function each of template.yaml's functions runs: `make build`'s bootstrap of that binary.
const FUNCTIONS: [(&str, &str); 3] = [
    ("RotationFunction", "rotate-postgres"),
    ("BackupFunction", "backup-lambda"),
    ("BackupDrillFunction", "backup-lambda"),
];

/// The SAM CLI `make` uses (`.venv-tools/bin/sam`), or `TESTKIT_SAM`.
fn sam_cli() -> Result<PathBuf, String> {
    let path = std::env::var_os("TESTKIT_SAM")
        .map(PathBuf::from)
        .unwrap_or_else(|| testkit::workspace_root().join(".venv-tools/bin/sam"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no SAM CLI at {} (`make tools-venv` installs it)",
            path.display()
        ))
    }
}

#[test]
fn artifact_sam_build_packages_exactly_the_tested_bootstraps() {
    let found = sam_cli().and_then(|sam| {
        let artifacts = FUNCTIONS
            .iter()
            .map(|(_, binary)| testkit::arm64::artifact(binary))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((sam, artifacts))
    });
    let (sam, artifacts) = match found {
        Ok(found) => found,
        Err(why) if testkit::arm64::required() => panic!("TESTKIT_REQUIRE_ARM64=1: {why}"),
        Err(why) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED: what SAM packages was NOT checked: {why}. \
                 (TESTKIT_REQUIRE_ARM64=1 makes this a failure; .ci/run sets it.) !!!!!!!!\n"
            );
            return;
        }
    };
    let build_dir = tempfile::tempdir().expect("a temporary folder");
    let output = Command::new(&sam)
        .args(["build", "--template", "template.yaml", "--build-dir"])
        .arg(build_dir.path())
        .current_dir(testkit::workspace_root())
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .expect("run the SAM CLI");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "sam build failed:\n{log}");

    // One folder per function, each holding exactly the tested bootstrap.
    let mut folders: Vec<String> = std::fs::read_dir(build_dir.path())
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut expected: Vec<String> = FUNCTIONS.iter().map(|(id, _)| id.to_string()).collect();
    expected.sort();
    assert_eq!(folders, expected, "the functions SAM built:\n{log}");
    for ((logical_id, binary), artifact) in FUNCTIONS.iter().zip(&artifacts) {
        let folder = build_dir.path().join(logical_id);
        let files: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["bootstrap"], "what SAM packages for {logical_id}");
        let packaged = std::fs::read(folder.join("bootstrap")).unwrap();
        let tested = std::fs::read(artifact).unwrap();
        assert!(
            packaged == tested,
            "{logical_id}: SAM packages {} bytes, not `make build`'s {} ({} bytes)",
            packaged.len(),
            artifact.display(),
            tested.len()
        );
        eprintln!(
            "{logical_id}: {binary}'s bootstrap, {} bytes, identical",
            tested.len()
        );
    }
    // The packaged template points each function at its folder.
    let template = std::fs::read_to_string(build_dir.path().join("template.yaml")).unwrap();
    for (logical_id, _) in FUNCTIONS {
        assert!(
            template.contains(&format!("CodeUri: {logical_id}")),
            "{logical_id}'s CodeUri in the built template:\n{template}"
        );
    }
}
