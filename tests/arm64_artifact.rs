//! What ships is what was tested: `make build`'s arm64 `rotate-postgres` bootstrap (release
//! profile, cargo-lambda + zig, the file SAM packages) runs one single-user rotation end to end,
//! preflight included, under user-mode emulation (`testkit::arm64`: Debian's qemu-user-static and
//! arm64 C library), against the real PostgreSQL with TLS and moto.
//!
//! `make test` builds the artifact first (`make build`); without the emulator the test skips with
//! a loud message, and with `TESTKIT_REQUIRE_ARM64=1` (`.ci/run`) it fails instead.

use e2e::World;
use rotation::{AWSCURRENT, AWSPREVIOUS};

#[tokio::test(flavor = "multi_thread")]
async fn the_arm64_bootstrap_rotates_a_single_user_secret() {
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
