//! The database with AWSCURRENT: reachable, TLS, login, and whether the host is a standby
//! (checks `host-reachable`, `tls`, `current-login`, `standby`).

use super::secret::SecretFound;
use crate::report::{Report, Status};
use crate::Ports;
use rotation::{
    unlabelled_newer_than_current, ConnectError, DbCredentials, LoginIdentity, ReplicaWait,
    SecretJson, Strategy, TlsMode, AWSCURRENT, AWSPENDING, AWSPREVIOUS, UNLABELLED_VERSIONS_TRIED,
};

/// Whether the version `id` of the secret logs in as AWSCURRENT's user on AWSCURRENT's host, with
/// AWSCURRENT's TLS setting: how single user's setSecret tries a version other than AWSCURRENT
/// (`crates/rotation/src/steps/set.rs`). `stage` is the label it is read by, if any.
async fn version_logs_in(
    ports: &Ports<'_>,
    found: &SecretFound,
    current: &DbCredentials,
    id: &str,
    stage: Option<&str>,
) -> bool {
    let arn = &found.meta.arn;
    let text = match stage {
        Some(stage) => ports.store.get_value(arn, id, stage).await,
        None => ports.store.get_version_value(arn, id).await,
    };
    let Ok(Some(text)) = text else {
        return false;
    };
    let Ok(mut candidate) =
        SecretJson::parse(&text).and_then(|json| json.credentials(ports.target.profile()))
    else {
        return false;
    };
    if candidate.username != current.username || candidate.host != current.host {
        return false;
    }
    candidate.tls = current.tls;
    ports.target.connect(&candidate).await.is_ok()
}

/// The labelled version (AWSPENDING, then AWSPREVIOUS) that logs in when AWSCURRENT does not.
async fn labelled_logging_in(
    ports: &Ports<'_>,
    found: &SecretFound,
    current: &DbCredentials,
) -> Option<&'static str> {
    for stage in [AWSPENDING, AWSPREVIOUS] {
        if let Some(id) = found.meta.version_with(stage) {
            if version_logs_in(ports, found, current, id, Some(stage)).await {
                return Some(stage);
            }
        }
    }
    None
}

/// The unlabelled version newer than AWSCURRENT that logs in, as single user's setSecret looks
/// for it when neither AWSCURRENT nor AWSPREVIOUS does (the same versions, newest first, at most
/// [`UNLABELLED_VERSIONS_TRIED`]): what an abandoned rotation leaves behind. `None` when none
/// does or the versions cannot be listed.
async fn unlabelled_logging_in(
    ports: &Ports<'_>,
    found: &SecretFound,
    current: &DbCredentials,
) -> Option<String> {
    let versions = ports.store.list_versions(&found.meta.arn).await.ok()?;
    for id in unlabelled_newer_than_current(&versions, UNLABELLED_VERSIONS_TRIED) {
        if version_logs_in(ports, found, current, id, None).await {
            return Some(id.to_string());
        }
    }
    None
}

/// The `host-reachable` and `tls` checks of a server that answered and got past TLS.
fn reachable(ports: &Ports<'_>, report: &mut Report, creds: &DbCredentials) {
    report.push(
        "host-reachable",
        Status::Pass,
        format!("{}:{} answers", creds.host, creds.port),
    );
    tls_pass(ports, report, creds);
}

/// Adds the checks of AWSCURRENT's login. Returns whether the host is a standby, when
/// AWSCURRENT logged in and the server could say.
pub(crate) async fn login_checks(
    ports: &Ports<'_>,
    report: &mut Report,
    found: &SecretFound,
    creds: &DbCredentials,
) -> Option<bool> {
    let e = match ports.target.connect(creds).await {
        Ok(mut session) => {
            reachable(ports, report, creds);
            let who = match session.login_identity().await {
                Ok(LoginIdentity { session_user, .. }) if session_user != creds.username => {
                    report.push_fix(
                        "current-login",
                        Status::Fail,
                        format!(
                            "AWSCURRENT logs in, but as session user {session_user}, not {}: \
                             setSecret refuses to change anything",
                            creds.username
                        ),
                        "connect the function to the database directly (not through a pooler or \
                         proxy that maps users), or fix the secret's username",
                    );
                    return None;
                }
                Ok(LoginIdentity {
                    session_user,
                    current_user,
                }) if session_user == current_user => {
                    format!(" (session user {session_user})")
                }
                Ok(LoginIdentity {
                    session_user,
                    current_user,
                }) => {
                    format!(" (session user {session_user}, acting as {current_user})")
                }
                Err(_) => String::new(),
            };
            report.push(
                "current-login",
                Status::Pass,
                format!(
                    "AWSCURRENT logs in as {} to database {}{who}",
                    creds.username, creds.dbname
                ),
            );
            return session.is_standby().await.ok();
        }
        Err(e @ ConnectError::Authentication { .. }) if found.strategy == Strategy::SingleUser => e,
        Err(e) => {
            connect_failure(ports, report, creds, &e, "current-login", AWSCURRENT);
            return None;
        }
    };
    // Single user, AWSCURRENT refused: which other version setSecret (or finishSecret) would use.
    match labelled_logging_in(ports, found, creds).await {
        Some(AWSPENDING) => {
            reachable(ports, report, creds);
            report.push_fix(
                "current-login",
                Status::Warn,
                format!(
                    "AWSCURRENT cannot log in ({e}), but AWSPENDING does: a rotation changed the \
                     password and has not finished"
                ),
                format!(
                    "nothing to do if a rotation is running; if it stopped, retry it (aws \
                     secretsmanager rotate-secret --secret-id {}): its finishSecret moves \
                     AWSCURRENT to AWSPENDING",
                    found.meta.arn
                ),
            );
        }
        Some(_) => {
            reachable(ports, report, creds);
            report.push_fix(
                "current-login",
                Status::Warn,
                format!("AWSCURRENT cannot log in ({e}), but AWSPREVIOUS does"),
                "nothing to do: the next rotation's setSecret changes the password through \
                 AWSPREVIOUS (someone set the previous password again behind the rotation's back)",
            );
        }
        None => {
            let Some(id) = unlabelled_logging_in(ports, found, creds).await else {
                connect_failure(ports, report, creds, &e, "current-login", AWSCURRENT);
                return None;
            };
            reachable(ports, report, creds);
            let current = found
                .meta
                .version_with(AWSCURRENT)
                .unwrap_or("<AWSCURRENT version>");
            report.push_fix(
                "current-login",
                Status::Warn,
                format!(
                    "AWSCURRENT cannot log in ({e}) nor can AWSPREVIOUS, but version {id}, which \
                     has no label, does: a rotation was abandoned after its setSecret changed \
                     the password"
                ),
                format!(
                    "nothing to do: the next rotation's setSecret logs in with version {id} and \
                     changes the password (rotate soon: Secrets Manager may delete a version \
                     without a label); or repair it by hand now: aws secretsmanager \
                     update-secret-version-stage --secret-id {arn} --version-stage AWSCURRENT \
                     --move-to-version-id {id} --remove-from-version-id {current}",
                    arn = found.meta.arn
                ),
            );
        }
    }
    None
}

/// Adds the `standby` check when the user's host is a standby (a read replica, an Aurora
/// reader): single user cannot change a password there; alternating users can (the master
/// works on the primary), and testSecret waits for the replica to replay the change.
pub(crate) fn standby_check(
    report: &mut Report,
    creds: &DbCredentials,
    strategy: Strategy,
    wait: ReplicaWait,
) {
    let endpoint = format!("{}:{}", creds.host, creds.port);
    match strategy {
        Strategy::SingleUser => report.push_fix(
            "standby",
            Status::Fail,
            format!(
                "{endpoint} is a standby (in recovery, read-only): single user changes the \
                 password as the user itself, which a standby refuses"
            ),
            "point host at the primary (the source instance, or the cluster endpoint), or use \
             alternating users with a master secret on the primary (masterarn)",
        ),
        Strategy::AlternatingUsers if wait.is_disabled() => report.push_fix(
            "standby",
            Status::Warn,
            format!(
                "{endpoint} is a standby (in recovery): the master changes the password on the \
                 primary, and testSecret does not wait for the replica to replay it \
                 (TEST_SECRET_REPLICA_WAIT_SECONDS=0), so a rotation fails whenever the replica \
                 lags"
            ),
            "unset TEST_SECRET_REPLICA_WAIT_SECONDS (30 s) or set it above the replica's usual lag",
        ),
        Strategy::AlternatingUsers => report.push(
            "standby",
            Status::Info,
            format!(
                "{endpoint} is a standby (in recovery): the master changes the password on the \
                 primary, and testSecret waits {} (TEST_SECRET_REPLICA_WAIT_SECONDS) for the \
                 replica to replay it",
                wait.describe()
            ),
        ),
    }
}

/// The `tls` check of a connection that got past TLS: says the mode and the roots it trusts.
fn tls_pass(ports: &Ports<'_>, report: &mut Report, creds: &DbCredentials) {
    let roots = ports.target.tls_roots(creds.tls);
    match creds.tls {
        TlsMode::VerifyFull => report.push(
            "tls",
            Status::Pass,
            format!(
                "verify-full: the certificate of {} verifies (chain and host name) against {roots}",
                creds.host
            ),
        ),
        TlsMode::VerifyCa => report.push(
            "tls",
            Status::Pass,
            format!(
                "verify-ca: the certificate chain of {} verifies against {roots}; the host name \
                 is not checked",
                creds.host
            ),
        ),
        TlsMode::Disabled => report.push_fix(
            "tls",
            Status::Warn,
            "ssl is false: the connection is not encrypted and the server is not authenticated",
            "remove \"ssl\": false from the secret (TLS then verifies against the public web \
             roots and the Amazon RDS CAs; DB_CA_BUNDLE adds others)",
        ),
    }
}

/// The fix of a failed `tls` check: the host name, or the roots.
fn tls_fix(ports: &Ports<'_>, creds: &DbCredentials, e: &ConnectError) -> String {
    let roots = ports.target.tls_roots(creds.tls);
    if e.to_string().contains("not valid for name") {
        format!(
            "the server's certificate does not name {host}: put a name it names in the secret's \
             host (for RDS and Aurora, the instance or cluster endpoint), or set \"ssl\": \
             \"verify-ca\" to verify the chain only (for an IP address or a CNAME)",
            host = creds.host
        )
    } else {
        let name = match creds.tls {
            TlsMode::VerifyFull => format!(
                ", and use a host name the certificate names ({})",
                creds.host
            ),
            _ => String::new(),
        };
        format!(
            "the server's certificate must chain to a root {mode} trusts here, which are {roots}: \
             add the CA that signed it to DB_CA_BUNDLE (a PEM file){name}",
            mode = creds.tls.name(),
        )
    }
}

fn connect_failure(
    ports: &Ports<'_>,
    report: &mut Report,
    creds: &DbCredentials,
    e: &ConnectError,
    login_check: &'static str,
    who: &str,
) {
    let endpoint = format!("{}:{}", creds.host, creds.port);
    match e {
        ConnectError::Unreachable { .. } => {
            report.push_fix(
                "host-reachable",
                Status::Fail,
                e.to_string(),
                format!(
                    "check host and port in the secret, that the function runs in the database's \
                     VPC and subnets, and that the database's security group admits the \
                     function's security group on port {}",
                    creds.port
                ),
            );
            report.skip("tls", "the host is not reachable");
            report.skip(login_check, "the host is not reachable");
        }
        ConnectError::Tls(_) => {
            report.push(
                "host-reachable",
                Status::Pass,
                format!("{endpoint} answers"),
            );
            report.push_fix("tls", Status::Fail, e.to_string(), tls_fix(ports, creds, e));
            report.skip(login_check, "TLS verification failed");
        }
        ConnectError::Authentication { .. } => {
            reachable(ports, report, creds);
            report.push_fix(
                login_check,
                Status::Fail,
                format!("{who} cannot log in: {e}"),
                ports.target.advice().login_fix(who),
            );
        }
        ConnectError::Other(_) => {
            report.push(
                "host-reachable",
                Status::Pass,
                format!("{endpoint} answers"),
            );
            report.push_fix(
                login_check,
                Status::Fail,
                format!("{who} cannot log in: {e}"),
                "check the database name and the server's log for the reason",
            );
        }
    }
}
