//! The application side of the load benchmark, as pure logic behind two small traits: a client
//! that behaves like a well-written application (credentials cached with a TTL, re-read at once
//! after an authentication failure, optionally falling back to `AWSPENDING`), what it counts, and
//! how the window in which `AWSCURRENT` does not log in is measured from probe samples. The real
//! adapters (the SDK against moto, TLS logins against PostgreSQL) are in `load/mod.rs`; the unit
//! tests below use in-memory ones.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// Staging label of the current version.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// Staging label of the version a rotation is setting up.
pub const AWSPENDING: &str = "AWSPENDING";

/// A user name and password read from the secret. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The database user.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a login (and the query after it) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// The server refused the password (SQLSTATE 28P01).
    Auth,
    /// Anything else (network, TLS, server limits, a wrong session user): never expected here.
    Other(String),
}

/// Where the application reads its credentials (Secrets Manager in the benchmark).
pub trait SecretSource {
    /// The credential of the version carrying `stage`, `None` when no version carries it; the
    /// error names the stage, never a value.
    fn read(&self, stage: &'static str)
        -> impl Future<Output = Result<Option<Credential>, String>>;
}

/// The database the application logs in to (PostgreSQL over TLS in the benchmark).
pub trait Database {
    /// Opens a connection with `credential`, runs the application's query and closes it;
    /// returns how long the connection (TLS and authentication) took to open.
    fn login(&self, credential: &Credential) -> impl Future<Output = Result<Duration, LoginError>>;
}

/// The application's credential cache: one entry, fresh for `ttl` after it was read.
#[derive(Debug)]
pub struct CredentialCache {
    ttl: Duration,
    entry: Option<(Credential, Instant)>,
}

impl CredentialCache {
    /// An empty cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        CredentialCache { ttl, entry: None }
    }

    /// The cached credential if it was stored less than the TTL before `now`.
    pub fn fresh(&self, now: Instant) -> Option<&Credential> {
        self.entry
            .as_ref()
            .filter(|(_, stored)| now.saturating_duration_since(*stored) < self.ttl)
            .map(|(credential, _)| credential)
    }

    /// Caches `credential`, read at `now`.
    pub fn store(&mut self, credential: Credential, now: Instant) {
        self.entry = Some((credential, now));
    }

    /// Forgets the entry: the next attempt reads the secret.
    pub fn invalidate(&mut self) {
        self.entry = None;
    }
}

/// What one attempt of a client ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The first login worked.
    Ok,
    /// The first login was refused; the one after re-reading the secret worked.
    Recovered,
    /// Refused, and still refused (or nothing new to try) after re-reading the secret.
    Hard,
    /// Another error (see [`LoginError::Other`]) or the secret could not be read.
    Other,
}

/// What a client (or a whole run) counted.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Attempts made (one connection wanted, one query run).
    pub attempts: u64,
    /// Attempts whose first login was refused and whose retry worked.
    pub recovered: u64,
    /// Attempts still refused after the re-read.
    pub hard: u64,
    /// Attempts that failed otherwise.
    pub other: u64,
    /// `GetSecretValue` calls made.
    pub secret_reads: u64,
    /// Time to open each successful connection, in milliseconds.
    pub connect_ms: Vec<f64>,
    /// The first "other" error seen (never holds a value: see [`LoginError::Other`]).
    pub first_other: Option<String>,
}

impl Tally {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: Tally) {
        self.attempts += other.attempts;
        self.recovered += other.recovered;
        self.hard += other.hard;
        self.other += other.other;
        self.secret_reads += other.secret_reads;
        self.connect_ms.extend(other.connect_ms);
        if self.first_other.is_none() {
            self.first_other = other.first_other;
        }
    }

    /// Failed first logins (recovered or not).
    pub fn failures(&self) -> u64 {
        self.recovered + self.hard
    }
}

/// The `q` quantile (0.0..=1.0) of `samples`, by the nearest rank; `None` when empty.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// An application client: its cache, where it reads secrets, the database, and whether it
/// falls back to `AWSPENDING` when a re-read `AWSCURRENT` is refused too.
pub struct AppClient<S, D> {
    cache: CredentialCache,
    source: S,
    db: D,
    pending_fallback: bool,
}

impl<S: SecretSource, D: Database> AppClient<S, D> {
    /// A client with an empty cache of lifetime `ttl`.
    pub fn new(source: S, db: D, ttl: Duration, pending_fallback: bool) -> Self {
        AppClient {
            cache: CredentialCache::new(ttl),
            source,
            db,
            pending_fallback,
        }
    }

    /// One attempt at `now`: the cached credential (or `AWSCURRENT`, read and cached), a login;
    /// on an authentication failure `AWSCURRENT` is read again at once and, when it differs from
    /// the refused one, tried; then, with the fallback, `AWSPENDING`. The credential that worked
    /// is cached; after a hard failure the cache is empty, so the next attempt reads again.
    /// Every password read is passed to `seen` (the benchmark checks no output holds one).
    pub async fn attempt(
        &mut self,
        now: Instant,
        tally: &mut Tally,
        seen: &mut impl FnMut(&Credential),
    ) -> Outcome {
        tally.attempts += 1;
        let first = match self.cache.fresh(now).cloned() {
            Some(cached) => cached,
            None => match self.read(AWSCURRENT, tally, seen).await {
                Ok(Some(read)) => {
                    self.cache.store(read.clone(), now);
                    read
                }
                Ok(None) => return other(tally, format!("the secret has no {AWSCURRENT}")),
                Err(error) => return other(tally, error),
            },
        };
        match self.db.login(&first).await {
            Ok(took) => {
                tally.connect_ms.push(took.as_secs_f64() * 1000.0);
                return Outcome::Ok;
            }
            Err(LoginError::Other(error)) => return other(tally, error),
            Err(LoginError::Auth) => self.cache.invalidate(),
        }
        let mut tried = vec![first];
        let mut stages = vec![AWSCURRENT];
        if self.pending_fallback {
            stages.push(AWSPENDING);
        }
        for stage in stages {
            let candidate = match self.read(stage, tally, seen).await {
                Ok(Some(read)) if !tried.contains(&read) => read,
                // Nothing new to try: the same refused password, or no such version.
                Ok(_) => continue,
                Err(error) => return other(tally, error),
            };
            match self.db.login(&candidate).await {
                Ok(took) => {
                    tally.connect_ms.push(took.as_secs_f64() * 1000.0);
                    tally.recovered += 1;
                    self.cache.store(candidate, now);
                    return Outcome::Recovered;
                }
                Err(LoginError::Other(error)) => return other(tally, error),
                Err(LoginError::Auth) => tried.push(candidate),
            }
        }
        tally.hard += 1;
        Outcome::Hard
    }

    async fn read(
        &self,
        stage: &'static str,
        tally: &mut Tally,
        seen: &mut impl FnMut(&Credential),
    ) -> Result<Option<Credential>, String> {
        tally.secret_reads += 1;
        let read = self.source.read(stage).await?;
        if let Some(credential) = &read {
            seen(credential);
        }
        Ok(read)
    }
}

fn other(tally: &mut Tally, error: String) -> Outcome {
    tally.other += 1;
    tally.first_other.get_or_insert(error);
    Outcome::Other
}

/// One probe: `AWSCURRENT` read afresh and logged in with, between `start` and `end`.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSample {
    /// Before the read.
    pub start: Instant,
    /// After the login (or its refusal).
    pub end: Instant,
    /// Whether the login worked.
    pub ok: bool,
}

/// The window of one rotation as the probe saw it, from the refused samples `first..=last`
/// (indices into the samples) of that rotation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeWindow {
    /// Refused samples.
    pub refused: usize,
    /// The window is at least this long: the last refused sample started (so read `AWSCURRENT`)
    /// before the label moved, and the first refused one ended (so logged in) after the password
    /// changed. Zero when one sample was refused.
    pub at_least: Duration,
    /// The window is at most this long: the sample before the first refused one logged in (so
    /// before the change) and the sample after the last one read the moved label; from the start
    /// of the former to the end of the latter.
    pub at_most: Duration,
}

/// The window seen by the probe in `span` (a rotation's setSecret start to finishSecret end):
/// the refused samples overlapping it, and the bounds of [`ProbeWindow`]; `None` when no sample
/// in it was refused (a window shorter than a probe, or none). `samples` are in time order.
pub fn probe_window(samples: &[ProbeSample], span: (Instant, Instant)) -> Option<ProbeWindow> {
    let (from, to) = span;
    let refused: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.ok && s.end >= from && s.start <= to)
        .map(|(i, _)| i)
        .collect();
    let (&first, &last) = (refused.first()?, refused.last()?);
    let before = first.checked_sub(1).map(|i| samples[i].start);
    let after = samples.get(last + 1).map(|s| s.end);
    Some(ProbeWindow {
        refused: refused.len(),
        at_least: samples[last]
            .start
            .saturating_duration_since(samples[first].end),
        at_most: after
            .unwrap_or(samples[last].end)
            .saturating_duration_since(before.unwrap_or(samples[first].start)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    fn cred(user: &str, password: &str) -> Credential {
        Credential {
            username: user.into(),
            password: password.into(),
        }
    }

    /// Secrets Manager in memory: the value of each stage, and the reads made.
    struct Secrets {
        stages: RefCell<HashMap<&'static str, Credential>>,
        reads: RefCell<Vec<&'static str>>,
    }

    impl Secrets {
        fn new(current: Credential) -> Self {
            Secrets {
                stages: RefCell::new(HashMap::from([(AWSCURRENT, current)])),
                reads: RefCell::default(),
            }
        }
        fn set(&self, stage: &'static str, value: Credential) {
            self.stages.borrow_mut().insert(stage, value);
        }
    }

    impl SecretSource for &Secrets {
        async fn read(&self, stage: &'static str) -> Result<Option<Credential>, String> {
            self.reads.borrow_mut().push(stage);
            Ok(self.stages.borrow().get(stage).cloned())
        }
    }

    /// A database with one password per user, and the logins tried.
    struct Db {
        passwords: RefCell<HashMap<String, String>>,
        logins: RefCell<Vec<String>>,
    }

    impl Db {
        fn new(users: &[(&str, &str)]) -> Self {
            Db {
                passwords: RefCell::new(
                    users
                        .iter()
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                        .collect(),
                ),
                logins: RefCell::default(),
            }
        }
        fn alter(&self, user: &str, password: &str) {
            self.passwords
                .borrow_mut()
                .insert(user.into(), password.into());
        }
    }

    impl Database for &Db {
        async fn login(&self, c: &Credential) -> Result<Duration, LoginError> {
            self.logins.borrow_mut().push(c.password.clone());
            match self.passwords.borrow().get(&c.username) {
                Some(p) if *p == c.password => Ok(Duration::from_millis(3)),
                Some(_) => Err(LoginError::Auth),
                None => Err(LoginError::Other(format!("no role {}", c.username))),
            }
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn the_cache_serves_until_its_ttl_then_reads_again() {
        let secrets = Secrets::new(cred("app", "one"));
        let db = Db::new(&[("app", "one")]);
        let mut client = AppClient::new(&secrets, &db, Duration::from_secs(2), false);
        let (t0, mut tally) = (Instant::now(), Tally::default());
        let mut seen = |_: &Credential| {};
        for t in [0, 1000, 1999, 2000, 2500] {
            let at = t0 + Duration::from_millis(t);
            assert_eq!(
                block_on(client.attempt(at, &mut tally, &mut seen)),
                Outcome::Ok
            );
        }
        // Read at 0 and at 2000 (the entry of 0 expired); 2500 uses the entry of 2000.
        assert_eq!(tally.secret_reads, 2);
        assert_eq!((tally.attempts, tally.connect_ms.len()), (5, 5));
        assert_eq!(tally.failures(), 0);
    }

    #[test]
    fn a_refused_cached_password_is_re_read_at_once_and_recovers() {
        let secrets = Secrets::new(cred("app", "one"));
        let db = Db::new(&[("app", "one")]);
        let mut client = AppClient::new(&secrets, &db, Duration::from_secs(60), false);
        let (t0, mut tally) = (Instant::now(), Tally::default());
        let mut seen_passwords = Vec::new();
        let mut seen = |c: &Credential| seen_passwords.push(c.password.clone());
        block_on(client.attempt(t0, &mut tally, &mut seen));
        // A rotation completes: the cached "one" is refused, AWSCURRENT holds "two".
        db.alter("app", "two");
        secrets.set(AWSCURRENT, cred("app", "two"));
        let at = t0 + Duration::from_secs(1);
        assert_eq!(
            block_on(client.attempt(at, &mut tally, &mut seen)),
            Outcome::Recovered
        );
        // The credential that worked is cached: no read for the next attempt.
        let reads = tally.secret_reads;
        assert_eq!(
            block_on(client.attempt(at, &mut tally, &mut seen)),
            Outcome::Ok
        );
        assert_eq!(tally.secret_reads, reads);
        assert_eq!((tally.attempts, tally.recovered, tally.hard), (3, 1, 0));
        assert_eq!(seen_passwords, ["one", "two"]);
        assert_eq!(*db.logins.borrow(), ["one", "one", "two", "two"]);
    }

    #[test]
    fn in_the_single_user_window_the_re_read_is_refused_too_unless_awspending_is_tried() {
        for fallback in [false, true] {
            let secrets = Secrets::new(cred("app", "one"));
            let db = Db::new(&[("app", "one")]);
            let mut client = AppClient::new(&secrets, &db, Duration::from_secs(60), fallback);
            let (t0, mut tally) = (Instant::now(), Tally::default());
            let mut seen = |_: &Credential| {};
            block_on(client.attempt(t0, &mut tally, &mut seen));
            // setSecret changed the password; finishSecret has not moved AWSCURRENT yet.
            secrets.set(AWSPENDING, cred("app", "two"));
            db.alter("app", "two");
            let outcome = block_on(client.attempt(t0, &mut tally, &mut seen));
            if fallback {
                assert_eq!(outcome, Outcome::Recovered);
                assert_eq!(*db.logins.borrow(), ["one", "one", "two"]);
                assert_eq!(
                    *secrets.reads.borrow(),
                    [AWSCURRENT, AWSCURRENT, AWSPENDING]
                );
                assert_eq!((tally.recovered, tally.hard), (1, 0));
            } else {
                assert_eq!(outcome, Outcome::Hard);
                // The re-read AWSCURRENT is the refused one: not tried again.
                assert_eq!(*db.logins.borrow(), ["one", "one"]);
                assert_eq!((tally.recovered, tally.hard), (0, 1));
                // The cache is empty after a hard failure: the next attempt reads first (and,
                // refused, re-reads).
                block_on(client.attempt(t0, &mut tally, &mut seen));
                assert_eq!(*secrets.reads.borrow(), [AWSCURRENT; 4]);
            }
        }
    }

    #[test]
    fn other_errors_are_counted_apart_from_refusals() {
        let secrets = Secrets::new(cred("nobody", "x"));
        let db = Db::new(&[("app", "one")]);
        let mut client = AppClient::new(&secrets, &db, Duration::from_secs(60), true);
        let mut tally = Tally::default();
        let outcome = block_on(client.attempt(Instant::now(), &mut tally, &mut |_| {}));
        assert_eq!(outcome, Outcome::Other);
        assert_eq!((tally.other, tally.failures()), (1, 0));
        assert_eq!(tally.first_other.as_deref(), Some("no role nobody"));
        let mut total = Tally::default();
        total.merge(tally.clone());
        total.merge(tally);
        assert_eq!((total.attempts, total.other), (2, 2));
    }

    #[test]
    fn credential_debug_hides_the_password() {
        let shown = format!("{:?}", cred("app", "s3cret-value"));
        assert!(shown.contains("app") && !shown.contains("s3cret-value"));
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&samples, 0.5), Some(50.0));
        assert_eq!(quantile(&samples, 0.99), Some(99.0));
        assert_eq!(quantile(&samples, 1.0), Some(100.0));
        assert_eq!(quantile(&[7.0], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_probe_window_is_bounded_by_the_refused_samples_and_their_neighbours() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // Probes of 10 ms back to back; the password changed at 23, the label moved at 57.
        let samples: Vec<ProbeSample> = (0..10)
            .map(|i| ProbeSample {
                start: ms(i * 10),
                end: ms(i * 10 + 10),
                ok: !(2..=5).contains(&i),
            })
            .collect();
        let window = probe_window(&samples, (ms(15), ms(70))).unwrap();
        assert_eq!(window.refused, 4);
        // Refused samples 20-30 … 50-60: at least 50 - 30, at most 10 (start of 10-20) to 70.
        assert_eq!(window.at_least, Duration::from_millis(20));
        assert_eq!(window.at_most, Duration::from_millis(60));
        assert!(window.at_least <= Duration::from_millis(34));
        assert!(window.at_most >= Duration::from_millis(34));
        // Another rotation's span sees nothing refused.
        assert_eq!(probe_window(&samples, (ms(75), ms(95))), None);
    }
}
