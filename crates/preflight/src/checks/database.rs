//! The database with AWSCURRENT: reachable, TLS, login (checks `host-reachable`, `tls`,
//! `current-login`).

use crate::report::{Report, Status};
use crate::Ports;
use rotation::{ConnectError, DbCredentials, LoginIdentity, TlsMode, AWSCURRENT};

/// Adds the checks of AWSCURRENT's login.
pub(crate) async fn login_checks(ports: &Ports<'_>, report: &mut Report, creds: &DbCredentials) {
    let endpoint = format!("{}:{}", creds.host, creds.port);
    match ports.target.connect(creds).await {
        Ok(mut session) => {
            report.push(
                "host-reachable",
                Status::Pass,
                format!("{endpoint} answers"),
            );
            tls_pass(ports, report, creds);
            let who = match session.login_identity().await {
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
        }
        Err(e) => connect_failure(ports, report, creds, &e, "current-login", AWSCURRENT),
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
            report.push(
                "host-reachable",
                Status::Pass,
                format!("{endpoint} answers"),
            );
            tls_pass(ports, report, creds);
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
