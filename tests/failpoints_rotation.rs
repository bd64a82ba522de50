//! Crash anywhere, then retry (issue 9): the real `rotate-postgres` binary, built with the fail
//! points (`crates/failpoints`), is killed (abort) at every hit of every fail point of a rotation,
//! for both strategies, against a real PostgreSQL and moto. A traced run first lists the hits.
//!
//! * Retry: a new environment (Lambda restarts it after a crash) retries the failed step and runs
//!   the rest, as Secrets Manager does. At the end AWSCURRENT is the new version and logs in,
//!   AWSPREVIOUS is the old AWSCURRENT, unchanged (single user: no longer logs in; alternating:
//!   the other user still does), AWSPENDING is on no other version; after the crash and after
//!   every step, AWSCURRENT or AWSPENDING logged in.
//! * Abandon (at the first hit of each point): after the crash an operator removes AWSPENDING and
//!   a new rotation (new token) runs:
//!   it completes. Single user: the secret cannot log in from the abandon until the new rotation
//!   finishes when the password had already changed (reported: how many points, how long);
//!   alternating users: never.
//! * Preflight: killed at every hit of its points, the next preflight passes.
//! * Conditional paths, alongside (shapes of `e2e::crash::Setup`): alternating users with the
//!   shared-owner opt-in (the clone acts as the original), and a clone following an original whose
//!   attributes, settings and opt-in changed, and a third rotation (the existing clone's password
//!   changes, after the check that it is the original's member), each killed at the first hit of
//!   every point the plain rotations do not reach, and retried; single user's abandon recovery (a rotation
//!   abandoned after setSecret changed the password: the next setSecret logs in through the
//!   unlabelled version), killed at every hit from `ListSecretVersionIds` to the end of setSecret,
//!   and retried.
//! * Every `sm.*` and `pg.*` point in the sources is reached, and killed at (at least at its first
//!   hit), by these runs: else the test fails.
//!
//! Alternating users also run a second rotation (the original user's password changes, the clone
//! follows it), killed at the first hit of each of its points and retried.

use e2e::crash::{Fixture, Setup, Strategy};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::failpoints::{in_sources, names, Hit};

/// What one strategy exercised.
#[derive(Default)]
struct Tally {
    /// Points some run hit.
    reached: BTreeSet<String>,
    /// Points some run was killed at.
    killed: BTreeSet<String>,
    lines: Vec<String>,
}

/// The first hit of each point.
fn first_hits(hits: &[Hit]) -> Vec<Hit> {
    hits.iter().filter(|h| h.skip == 0).cloned().collect()
}

async fn exercise(strategy: Strategy) -> Tally {
    let started = Instant::now();
    let fx = Arc::new(Fixture::start(strategy).await);
    let mut tally = Tally::default();
    let plain: &[Setup] = match strategy {
        Strategy::SingleUser => &[Setup::Rotated(0)],
        Strategy::Alternating => &[Setup::Rotated(0), Setup::Rotated(1)],
    };
    // The plain rotations' traces first: the conditional paths, run alongside, are killed at what
    // these do not reach.
    let mut traces = Vec::new();
    for &setup in plain {
        let phase = Instant::now();
        let hits = fx.trace(setup).await;
        assert!(
            !hits.is_empty(),
            "the traced rotation hit no fail point: the rotate-postgres binary was built without \
             them (build it from the workspace root: `cargo build --bin rotate-postgres`)"
        );
        traces.push((setup, hits, phase.elapsed()));
    }
    let plain_points: BTreeSet<String> = traces.iter().flat_map(|(_, h, _)| names(h)).collect();
    let conditional = tokio::spawn(conditional_paths(fx.clone(), plain_points));
    for (before, (setup, hits, traced_in)) in traces.into_iter().enumerate() {
        let phase = Instant::now() - traced_in;
        tally.reached.extend(names(&hits));
        let mut per_step: BTreeMap<&str, usize> = BTreeMap::new();
        for hit in &hits {
            *per_step.entry(hit.during.as_str()).or_default() += 1;
        }
        // The first rotation: killed at every hit. The second (alternating users: the original
        // user's password changes, the clone follows): at the first hit of each point.
        let killed_at = if before == 0 {
            hits.clone()
        } else {
            first_hits(&hits)
        };
        for hit in &killed_at {
            let outcome = fx.crash_then_retry(setup, hit).await;
            assert!(!outcome.crashed_in.is_empty());
        }
        tally.killed.extend(names(&killed_at));
        // Abandoned at the first hit of each point of the first rotation.
        let abandoned_at = if before == 0 {
            first_hits(&hits)
        } else {
            Vec::new()
        };
        let mut locked = Vec::<(Hit, Duration)>::new();
        let mut steps_locked = 0;
        for hit in &abandoned_at {
            let outcome = fx.crash_then_abandon(setup, hit).await;
            tally.reached.extend(outcome.reached.iter().cloned());
            if let Some(window) = outcome.lockout {
                locked.push((hit.clone(), window));
                steps_locked += outcome.current_locked_out;
            }
            if strategy == Strategy::Alternating {
                assert_eq!(
                    outcome.current_locked_out,
                    0,
                    "{}: alternating users: AWSCURRENT must log in throughout",
                    hit.spec()
                );
            }
        }
        if strategy == Strategy::SingleUser {
            // Abandoned before setSecret: the old password still works.
            assert!(
                locked.iter().all(|(h, _)| h.during != "createSecret"),
                "an abandon before setSecret locked the secret out: {:?}",
                locked.iter().map(|(h, _)| h.spec()).collect::<Vec<_>>()
            );
        }
        let windows: Vec<Duration> = locked.iter().map(|(_, d)| *d).collect();
        let max = windows.iter().max().copied().unwrap_or_default();
        let mean = windows.iter().sum::<Duration>() / windows.len().max(1) as u32;
        tally.lines.push(format!(
            "{strategy:?}, rotation {}: {} points, {} hits (per step {per_step:?}); killed at {} \
             hits, each retried to completion; abandoned at {} points, each rotated again with a \
             new token; AWSCURRENT locked out after {} of those abandons ({} observations after \
             steps; window from the abandon to the new rotation's finishSecret: mean {:.2} s, \
             max {:.2} s); {:.0} s",
            before + 1,
            names(&hits).len(),
            hits.len(),
            killed_at.len(),
            abandoned_at.len(),
            locked.len(),
            steps_locked,
            mean.as_secs_f64(),
            max.as_secs_f64(),
            phase.elapsed().as_secs_f64(),
        ));
        eprintln!("fail points: {}", tally.lines.last().unwrap());
    }
    let phase = Instant::now();
    let preflight = fx.trace_preflight().await;
    tally.reached.extend(names(&preflight));
    tally.killed.extend(names(&preflight));
    for hit in &preflight {
        fx.crash_preflight(hit).await;
    }
    tally.lines.push(format!(
        "{strategy:?}, preflight: {} points, {} hits, killed at each, the next preflight passes; \
         {:.0} s (this strategy in all: {:.0} s)",
        names(&preflight).len(),
        preflight.len(),
        phase.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
    let conditional = conditional.await.unwrap();
    tally.reached.extend(conditional.reached);
    tally.killed.extend(conditional.killed);
    tally.lines.extend(conditional.lines);
    tally
}

/// The conditional paths of `fx`'s strategy (see the file's documentation), each shape's cases
/// run one after the other, the shapes side by side.
async fn conditional_paths(fx: Arc<Fixture>, plain_points: BTreeSet<String>) -> Tally {
    let strategy = fx.strategy();
    // Alternating users' third rotation changes the password of the clone that exists: only it
    // (and an abandon's new rotation) checks that the clone is the original's member first.
    let shapes: &[Setup] = match strategy {
        Strategy::SingleUser => &[Setup::AbandonedAfterSet],
        Strategy::Alternating => &[
            Setup::SharedOwner,
            Setup::OriginalChanged,
            Setup::Rotated(2),
        ],
    };
    let runs = shapes.iter().map(|&setup| {
        let (fx, plain_points) = (fx.clone(), plain_points.clone());
        tokio::spawn(async move { conditional_path(&fx, setup, &plain_points).await })
    });
    let mut tally = Tally::default();
    for run in runs.collect::<Vec<_>>() {
        let one = run.await.unwrap();
        tally.reached.extend(one.reached);
        tally.killed.extend(one.killed);
        tally.lines.extend(one.lines);
    }
    tally
}

/// One conditional path: traced, then killed (the abandon recovery: at every hit from
/// `ListSecretVersionIds` to the end of setSecret; the others: at the first hit of each point
/// the plain rotations do not reach) and retried to completion.
async fn conditional_path(fx: &Fixture, setup: Setup, plain_points: &BTreeSet<String>) -> Tally {
    let phase = Instant::now();
    let strategy = fx.strategy();
    let hits = fx.trace(setup).await;
    let mut tally = Tally {
        reached: names(&hits),
        ..Tally::default()
    };
    let (killed_at, what) = if setup == Setup::AbandonedAfterSet {
        let path: Vec<Hit> = hits
            .iter()
            .filter(|h| h.during == "setSecret")
            .skip_while(|h| h.name != "sm.list_secret_version_ids.before")
            .cloned()
            .collect();
        let path_points = names(&path);
        for point in [
            "sm.list_secret_version_ids.after",
            "sm.get_secret_value.before",
            "pg.alter_role_password.after",
        ] {
            assert!(
                path_points.contains(point),
                "setSecret after an abandoned setSecret did not recover through the unlabelled \
                 version (no {point} after ListSecretVersionIds): {:?}",
                hits.iter().map(Hit::spec).collect::<Vec<_>>()
            );
        }
        let what = format!(
            "the recovery path (setSecret from ListSecretVersionIds on): {} hits of {} points, \
             killed at every hit",
            path.len(),
            path_points.len()
        );
        (path, what)
    } else {
        let new: Vec<Hit> = first_hits(&hits)
            .into_iter()
            .filter(|h| !plain_points.contains(&h.name))
            .collect();
        assert!(
            !new.is_empty(),
            "{strategy:?}, {setup:?}: the rotation reached no point the plain rotations do not"
        );
        let what = format!(
            "{} points the plain rotations do not reach ({}), killed at the first hit of each",
            new.len(),
            new.iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        (new, what)
    };
    let mut locked = 0;
    for hit in &killed_at {
        let outcome = fx.crash_then_retry(setup, hit).await;
        locked += outcome.current_locked_out;
    }
    tally.killed.extend(names(&killed_at));
    tally.lines.push(format!(
        "{strategy:?}, {setup:?}: {} points, {} hits; {what}, each retried to completion; \
         observations where AWSCURRENT did not log in: {locked}; {:.0} s",
        names(&hits).len(),
        hits.len(),
        phase.elapsed().as_secs_f64()
    ));
    eprintln!("fail points: {}", tally.lines.last().unwrap());
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_killed_at_every_fail_point_recovers_for_both_strategies() {
    let single = tokio::spawn(exercise(Strategy::SingleUser));
    let alternating = tokio::spawn(exercise(Strategy::Alternating));
    let (single, alternating) = (single.await.unwrap(), alternating.await.unwrap());
    for line in single.lines.iter().chain(&alternating.lines) {
        println!("fail points: {line}");
    }
    let reached: BTreeSet<String> = single
        .reached
        .union(&alternating.reached)
        .cloned()
        .collect();
    let rotation_points: BTreeSet<String> = in_sources()
        .into_iter()
        .filter(|(_, krate)| krate == "secrets-manager" || krate == "postgres-target")
        .map(|(name, _)| name)
        .collect();
    let killed: BTreeSet<String> = single.killed.union(&alternating.killed).cloned().collect();
    let missed: Vec<&String> = rotation_points.difference(&reached).collect();
    let spared: Vec<&String> = rotation_points.difference(&killed).collect();
    println!(
        "fail points: {} of the {} sm.* and pg.* points in the sources reached, {} killed at",
        rotation_points.intersection(&reached).count(),
        rotation_points.len(),
        rotation_points.intersection(&killed).count(),
    );
    assert!(
        missed.is_empty(),
        "fail points in the sources that no run reached: {missed:?}"
    );
    assert!(
        spared.is_empty(),
        "fail points in the sources that no run was killed at: {spared:?}"
    );
}
