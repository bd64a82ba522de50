//! The crash-anywhere harness of `tests/failpoints_rotation.rs`: a rotation killed at one hit of
//! one fail point (`crates/failpoints`), then what Secrets Manager does next (retry the failed step
//! and continue, or an operator abandons the rotation and a new one begins), with the secret's
//! login observed after the crash and after every step.
//!
//! One [`Fixture`] per strategy shares one PostgreSQL and one moto across all cases; each case
//! rotates a secret and a role of its own, so nothing is reset between cases. A [`Setup`] shapes
//! the case's secret and roles so that its rotation takes a conditional path (the shared-owner
//! opt-in, a changed original, single user's recovery after an abandoned setSecret).

use crate::alternating::{connect, master_json, MASTER_PASSWORD};
use crate::{escape_identifier, escape_literal, World};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testkit::failpoints::{Hit, Trace};
use testkit::lambda::{InvokeError, LambdaHost};
use testkit::rotation::{event, Step, AWSCURRENT, AWSPENDING, AWSPREVIOUS};

/// The rotation strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One user whose password changes.
    SingleUser,
    /// `<user>` and `<user>_clone`, changed by the master user (`masterarn`).
    Alternating,
}

/// What a case's secret and roles went through before the rotation the case kills: each shape
/// takes the rotation down a path of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Rotated this many times (alternating users: after one, AWSCURRENT is the clone, so the
    /// next rotation changes the original user's password and the clone follows it).
    Rotated(usize),
    /// Alternating users: the secret opts in to the shared owner (`"shared_owner": true`); the
    /// first rotation creates the clone acting as the original (the server's version, the
    /// may-act-as check, `ALTER ROLE … SET role`).
    SharedOwner,
    /// Alternating users: rotated once under the shared-owner opt-in
    /// (`ALTERNATING_SHARED_OWNER=true`), then the opt-in is off for the case's rotation and the
    /// original user changed (`CONNECTION LIMIT`, a per-role setting removed, another added): the
    /// rotation changes the original's password and the clone follows it (`ALTER ROLE … WITH`,
    /// `… RESET`, `… SET`, `… RESET role`).
    OriginalChanged,
    /// Single user: a rotation abandoned after its setSecret changed the password (its
    /// AWSPENDING label removed): the only password that logs in sits in a version without a
    /// label, which the case's setSecret finds (`ListSecretVersionIds`, `GetSecretValue` by
    /// version id). The secret cannot log in until that setSecret has run.
    AbandonedAfterSet,
}

impl Setup {
    /// Whether the shape exists for `strategy`.
    pub fn applies_to(self, strategy: Strategy) -> bool {
        match self {
            Setup::Rotated(_) => true,
            Setup::SharedOwner | Setup::OriginalChanged => strategy == Strategy::Alternating,
            Setup::AbandonedAfterSet => strategy == Strategy::SingleUser,
        }
    }
}

/// A secret and its role, fresh for one case.
#[derive(Debug, Clone)]
pub struct Case {
    /// The secret's ARN.
    pub arn: String,
    /// The AWSCURRENT version before the case's rotation, and its JSON.
    pub original: (String, Value),
    /// No stage logs in until the case's setSecret has run ([`Setup::AbandonedAfterSet`]):
    /// observations before then are counted, not required to log in.
    pub locked_until_set: bool,
}

/// What one case observed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The step whose invocation the abort ended.
    pub crashed_in: String,
    /// Observations (after the crash and after each step) at which AWSCURRENT did not log in.
    pub current_locked_out: usize,
    /// From the abandon until AWSCURRENT logged in again (abandon cases where it could not).
    pub lockout: Option<Duration>,
    /// The points the new rotation after an abandon reached (the recovery path).
    pub reached: BTreeSet<String>,
}

/// PostgreSQL and moto shared by the cases of one strategy, and the rotation binary.
pub struct Fixture {
    /// The servers.
    pub world: World,
    strategy: Strategy,
    master_arn: Option<String>,
    binary: PathBuf,
    next: AtomicUsize,
}

impl Fixture {
    /// Starts the servers; for alternating users, the master role (LOGIN CREATEROLE, not a
    /// superuser: the RDS model) and its secret.
    pub async fn start(strategy: Strategy) -> Fixture {
        let world = World::start().await;
        // Speed only: a SCRAM login costs as many HMAC rounds as the verifier's iterations, and
        // the observations log in hundreds of times. PostgreSQL 16+ (the whole suite runs on the
        // newest major) lets the server and the function (which follows `scram_iterations`)
        // store verifiers with one; the protocol is unchanged.
        if world.pg.major() >= 16 {
            world.pg.exec("ALTER SYSTEM SET scram_iterations = 1").await;
            world.pg.exec("SELECT pg_reload_conf()").await;
        }
        let master_arn = match strategy {
            Strategy::SingleUser => None,
            Strategy::Alternating => {
                world
                    .pg
                    .exec(&format!(
                        "CREATE ROLE master LOGIN CREATEROLE CREATEDB PASSWORD {}",
                        escape_literal(MASTER_PASSWORD)
                    ))
                    .await;
                Some(world.create_secret("master", &master_json(&world)).await)
            }
        };
        let binary = tokio::task::spawn_blocking(|| testkit::binary("rotate-postgres"))
            .await
            .unwrap();
        Fixture {
            world,
            strategy,
            master_arn,
            binary,
            next: AtomicUsize::new(0),
        }
    }

    /// The strategy of this fixture's secrets.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// A new role and its secret (alternating: created by the master, with a per-role setting
    /// the clone copies), brought into the shape `setup`.
    pub async fn fresh(&self, setup: Setup) -> Case {
        assert!(
            setup.applies_to(self.strategy),
            "{setup:?} is not a {:?} shape",
            self.strategy
        );
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let password = format!("first-Password-{n}-{}", uuid::Uuid::new_v4().simple());
        let (user, mut value) = match self.strategy {
            Strategy::SingleUser => {
                let user = format!("fp_single_{n}");
                self.world.create_role(&user, &password).await;
                (user.clone(), self.world.secret_json(&user, &password))
            }
            Strategy::Alternating => {
                let user = format!("fp_alt_{n}");
                let master = connect(&self.world, "master", MASTER_PASSWORD, "postgres")
                    .await
                    .expect("master logs in");
                master
                    .batch_execute(&format!(
                        "CREATE ROLE {u} LOGIN PASSWORD {p}; \
                         ALTER ROLE {u} SET statement_timeout TO '5s'",
                        u = escape_identifier(&user),
                        p = escape_literal(&password)
                    ))
                    .await
                    .expect("the master creates the role");
                let mut value = self.world.secret_json(&user, &password);
                value["masterarn"] = json!(self.master_arn.clone().expect("master secret"));
                (user, value)
            }
        };
        if setup == Setup::SharedOwner {
            value["shared_owner"] = json!(true);
        }
        let arn = self.world.create_secret(&user, &value).await;
        let (rotations, env) = match setup {
            Setup::Rotated(n) => (n, Vec::new()),
            Setup::OriginalChanged => (
                1,
                vec![("ALTERNATING_SHARED_OWNER".to_string(), "true".to_string())],
            ),
            Setup::SharedOwner | Setup::AbandonedAfterSet => (0, Vec::new()),
        };
        for _ in 0..rotations {
            let host = self.host(&env);
            let token = self.world.begin_rotation(&arn).await;
            self.steps(&host, &arn, &token, Step::ALL.to_vec(), None, false)
                .await
                .unwrap_or_else(|step| panic!("set-up rotation failed in {step}"));
        }
        match setup {
            Setup::OriginalChanged => {
                // A DBA changes the original user; the clone (AWSCURRENT now) still has the old
                // attributes, the old setting and the acting role of the opt-in.
                self.world
                    .pg
                    .exec(&format!(
                        "ALTER ROLE {u} CONNECTION LIMIT 7; \
                         ALTER ROLE {u} RESET statement_timeout; \
                         ALTER ROLE {u} SET work_mem TO '8MB'",
                        u = escape_identifier(&user)
                    ))
                    .await;
            }
            Setup::AbandonedAfterSet => {
                let host = self.host(&[]);
                let token = self.world.begin_rotation(&arn).await;
                self.steps(
                    &host,
                    &arn,
                    &token,
                    vec![Step::CreateSecret, Step::SetSecret],
                    None,
                    false,
                )
                .await
                .unwrap_or_else(|step| panic!("set-up rotation failed in {step}"));
                self.world.remove_pending(&arn, &token).await;
                assert!(
                    !self.stage_logs_in(&arn, AWSCURRENT).await,
                    "the abandoned setSecret changed the password"
                );
            }
            Setup::Rotated(_) | Setup::SharedOwner => {}
        }
        let original = self
            .value_at(&arn, AWSCURRENT)
            .await
            .expect("AWSCURRENT has a value");
        Case {
            arn,
            original,
            locked_until_set: setup == Setup::AbandonedAfterSet,
        }
    }

    /// The rotation function in a new process (a new Lambda environment), with `extra`.
    pub fn host(&self, extra: &[(String, String)]) -> LambdaHost {
        // At `info`: these runs are about state, not logs (the leak check still covers them), and
        // a trace-level flood only slows the hundreds of processes this harness starts.
        let mut env = self.world.lambda_env(&[("RUST_LOG", "info")]);
        env.extend(extra.iter().cloned());
        tokio::task::block_in_place(|| LambdaHost::start(&self.binary, &env))
    }

    /// The version carrying `stage` and its JSON; `None` when no version carries it or it has no
    /// value (moto's AWSPENDING before createSecret).
    pub async fn value_at(&self, arn: &str, stage: &str) -> Option<(String, Value)> {
        let labels = self.world.labels(arn).await;
        let (version, _) = labels
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == stage))?;
        let out = self
            .world
            .sm
            .get_secret_value()
            .secret_id(arn)
            .version_id(version)
            .version_stage(stage)
            .send()
            .await
            .ok()?;
        let value = serde_json::from_str(out.secret_string()?).ok()?;
        Some((version.clone(), value))
    }

    /// Whether the version carrying `stage` logs in (`false` when there is none).
    pub async fn stage_logs_in(&self, arn: &str, stage: &str) -> bool {
        match self.value_at(arn, stage).await {
            Some((_, v)) => {
                let (user, password) = (v["username"].as_str(), v["password"].as_str());
                match (user, password) {
                    (Some(u), Some(p)) => self.world.can_login(u, p).await,
                    _ => false,
                }
            }
            None => false,
        }
    }

    /// One observation: whether AWSCURRENT logs in; panics, naming `moment`, when neither
    /// AWSCURRENT nor AWSPENDING does.
    pub async fn observe(&self, arn: &str, moment: &str) -> bool {
        let current = self.stage_logs_in(arn, AWSCURRENT).await;
        if !current {
            assert!(
                self.stage_logs_in(arn, AWSPENDING).await,
                "{moment}: neither AWSCURRENT nor AWSPENDING logs in"
            );
        }
        current
    }

    /// Invokes `steps` in order on `host`, observing after each (after createSecret only
    /// counted when `locked_until_set`). `Err(step)` when the process died (aborted by a fail
    /// point) in that step; panics on any other failure.
    pub async fn steps(
        &self,
        host: &LambdaHost,
        arn: &str,
        token: &str,
        steps: Vec<Step>,
        trace: Option<&Trace>,
        locked_until_set: bool,
    ) -> Result<usize, Step> {
        let mut locked_out = 0;
        for step in steps {
            if let Some(trace) = trace {
                trace.mark(step.as_str());
            }
            let result =
                tokio::task::block_in_place(|| host.invoke(&event(step.as_str(), arn, token)));
            match result {
                Ok(_) => {}
                Err(e) if died(&e) => return Err(step),
                Err(e) => panic!("{step} failed: {e}\n--- output ---\n{}", host.output()),
            }
            let current = if locked_until_set && step == Step::CreateSecret {
                self.stage_logs_in(arn, AWSCURRENT).await
            } else {
                self.observe(arn, &format!("after {step}")).await
            };
            if !current {
                locked_out += 1;
            }
        }
        Ok(locked_out)
    }

    /// A traced rotation of a fresh secret of shape `setup`: every hit, in order, attributed to
    /// its step.
    pub async fn trace(&self, setup: Setup) -> Vec<Hit> {
        let case = self.fresh(setup).await;
        let trace = Trace::new();
        let host = self.host(&[trace.env()]);
        let token = self.world.begin_rotation(&case.arn).await;
        self.steps(
            &host,
            &case.arn,
            &token,
            Step::ALL.to_vec(),
            Some(&trace),
            case.locked_until_set,
        )
        .await
        .unwrap_or_else(|step| panic!("the traced rotation died in {step}"));
        self.assert_rotated(&case, &token).await;
        trace.hits()
    }

    /// Kills the rotation of a fresh secret at `hit`, then plays Secrets Manager: a new
    /// environment retries the failed step and runs the rest.
    pub async fn crash_then_retry(&self, setup: Setup, hit: &Hit) -> Outcome {
        let case = self.fresh(setup).await;
        let token = self.world.begin_rotation(&case.arn).await;
        let crashed = self.crash(&case, &token, hit).await;
        let mut outcome = Outcome {
            crashed_in: crashed.to_string(),
            ..Outcome::default()
        };
        let before_set_ran = matches!(crashed, Step::CreateSecret | Step::SetSecret);
        let current = if case.locked_until_set && before_set_ran {
            self.stage_logs_in(&case.arn, AWSCURRENT).await
        } else {
            self.observe(&case.arn, &format!("{} after the crash", hit.spec()))
                .await
        };
        if !current {
            outcome.current_locked_out += 1;
        }
        let host = self.host(&[]);
        let rest: Vec<Step> = Step::ALL
            .into_iter()
            .skip_while(|s| *s != crashed)
            .collect();
        outcome.current_locked_out += self
            .steps(&host, &case.arn, &token, rest, None, case.locked_until_set)
            .await
            .unwrap_or_else(|step| panic!("{}: the retry died in {step}", hit.spec()));
        self.assert_rotated(&case, &token).await;
        eprintln!("{:?}: killed at {}, retried", self.strategy, hit.spec());
        outcome
    }

    /// Kills the rotation of a fresh secret at `hit`; then an operator removes AWSPENDING (AWS's
    /// troubleshooting advice) and a new rotation with a new token runs in a new environment.
    pub async fn crash_then_abandon(&self, setup: Setup, hit: &Hit) -> Outcome {
        let case = self.fresh(setup).await;
        let abandoned = self.world.begin_rotation(&case.arn).await;
        let crashed = self.crash(&case, &abandoned, hit).await;
        let mut outcome = Outcome {
            crashed_in: crashed.to_string(),
            ..Outcome::default()
        };
        let labels = self.world.labels(&case.arn).await;
        let finished = labels
            .get(&abandoned)
            .is_some_and(|l| l.iter().any(|s| s == AWSCURRENT));
        if !finished {
            self.world.remove_pending(&case.arn, &abandoned).await;
        }
        let abandoned_at = Instant::now();
        let locked = !self.stage_logs_in(&case.arn, AWSCURRENT).await;
        let trace = Trace::new();
        let host = self.host(&[trace.env()]);
        let token = self.world.begin_rotation(&case.arn).await;
        let mut locked_out = usize::from(locked);
        for step in Step::ALL {
            let result = tokio::task::block_in_place(|| {
                host.invoke(&event(step.as_str(), &case.arn, &token))
            });
            if let Err(e) = result {
                panic!(
                    "{}: abandoned in {crashed}; the new rotation's {step} failed: {e}\n\
                     --- output ---\n{}",
                    hit.spec(),
                    host.output()
                );
            }
            let current = self.stage_logs_in(&case.arn, AWSCURRENT).await;
            if !current {
                locked_out += 1;
            }
            if locked && current && outcome.lockout.is_none() {
                outcome.lockout = Some(abandoned_at.elapsed());
            }
        }
        outcome.current_locked_out = locked_out;
        outcome.reached = testkit::failpoints::names(&trace.hits());
        // AWSPREVIOUS is whatever was AWSCURRENT when the new rotation began (the abandoned
        // version if that one had finished): its value is not compared.
        self.assert_rotated_to(&case, &token, false).await;
        outcome
    }

    /// A traced preflight (`{"preflight": true}`) of a fresh secret: its hits.
    pub async fn trace_preflight(&self) -> Vec<Hit> {
        let case = self.fresh(Setup::Rotated(0)).await;
        let trace = Trace::new();
        let host = self.host(&[trace.env()]);
        self.assert_preflight_passes(&host, &case.arn);
        trace.hits()
    }

    /// Kills a preflight of a fresh secret at `hit`; preflight changes nothing, so the next one
    /// (a new environment) passes.
    pub async fn crash_preflight(&self, hit: &Hit) {
        let case = self.fresh(Setup::Rotated(0)).await;
        let event = json!({ "preflight": true, "SecretId": case.arn });
        let host = self.host(&[("FAILPOINTS".into(), hit.spec())]);
        match tokio::task::block_in_place(|| host.invoke(&event)) {
            Err(e) if died(&e) => {}
            other => panic!("{}: preflight did not die: {other:?}", hit.spec()),
        }
        drop(host);
        self.assert_preflight_passes(&self.host(&[]), &case.arn);
    }

    fn assert_preflight_passes(&self, host: &LambdaHost, arn: &str) {
        let event = json!({ "preflight": true, "SecretId": arn });
        let report = tokio::task::block_in_place(|| host.invoke(&event))
            .unwrap_or_else(|e| panic!("preflight: {e}"));
        assert_eq!(report["preflight"]["failed"], json!(0), "{report}");
    }

    /// Starts the function with `FAILPOINTS` set for `hit` and runs the steps until it dies;
    /// returns the step it died in.
    async fn crash(&self, case: &Case, token: &str, hit: &Hit) -> Step {
        let host = self.host(&[("FAILPOINTS".into(), hit.spec())]);
        match self
            .steps(
                &host,
                &case.arn,
                token,
                Step::ALL.to_vec(),
                None,
                case.locked_until_set,
            )
            .await
        {
            Ok(_) => panic!(
                "{}: the rotation finished without reaching the point (traced during {})",
                hit.spec(),
                hit.during
            ),
            Err(step) => {
                let output = host.stop();
                assert!(
                    output.contains(&format!("fail point {}: aborting", hit.name)),
                    "{}: the process died in {step} but not at the point:\n{}",
                    hit.spec(),
                    testkit::tail(&output, 3000)
                );
                step
            }
        }
    }

    /// The rotation to `token` is complete and the database agrees with the secret.
    pub async fn assert_rotated(&self, case: &Case, token: &str) {
        self.assert_rotated_to(case, token, true).await
    }

    async fn assert_rotated_to(&self, case: &Case, token: &str, check_previous_value: bool) {
        let labels: BTreeMap<String, Vec<String>> = self.world.labels(&case.arn).await;
        let stages = |v: &str| labels.get(v).cloned().unwrap_or_default();
        assert!(
            stages(token).contains(&AWSCURRENT.to_string()),
            "AWSCURRENT on the rotation's version: {labels:?}"
        );
        for (version, on) in &labels {
            if version != token {
                assert!(
                    !on.iter().any(|s| s == AWSPENDING),
                    "AWSPENDING left on another version: {labels:?}"
                );
            }
        }
        let (previous, previous_value) = self
            .value_at(&case.arn, AWSPREVIOUS)
            .await
            .expect("AWSPREVIOUS has a value");
        if check_previous_value {
            assert_eq!(
                previous, case.original.0,
                "AWSPREVIOUS is the old AWSCURRENT"
            );
            assert_eq!(
                previous_value, case.original.1,
                "AWSPREVIOUS kept its value"
            );
        }
        assert!(
            self.stage_logs_in(&case.arn, AWSCURRENT).await,
            "AWSCURRENT logs in"
        );
        let (_, current) = self.value_at(&case.arn, AWSCURRENT).await.unwrap();
        let previous_logs_in = self.stage_logs_in(&case.arn, AWSPREVIOUS).await;
        match self.strategy {
            // One password per role: the old one no longer works.
            Strategy::SingleUser => {
                assert_eq!(current["username"], previous_value["username"]);
                assert!(!previous_logs_in, "AWSPREVIOUS still logs in");
            }
            // The other user keeps its password until the next rotation.
            Strategy::Alternating => {
                assert_ne!(current["username"], previous_value["username"]);
                assert!(previous_logs_in, "AWSPREVIOUS (the other user) logs in");
            }
        }
    }
}

/// Whether the invocation ended because the process aborted (SIGABRT), not with an error answer.
fn died(e: &InvokeError) -> bool {
    e.error_type == "Runtime.ExitError"
        && (e.error_message.contains("SIGABRT") || e.error_message.contains("signal: 6"))
}
