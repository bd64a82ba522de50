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
            tls_pass(report, creds);
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

fn tls_pass(report: &mut Report, creds: &DbCredentials) {
    match creds.tls {
        TlsMode::VerifyFull => report.push(
            "tls",
            Status::Pass,
            format!("the certificate of {} verifies (verify-full)", creds.host),
        ),
        TlsMode::Disabled => report.push_fix(
            "tls",
            Status::Warn,
            "ssl is false: the connection is not encrypted and the server is not authenticated",
            "remove \"ssl\": false from the secret and set DB_CA_BUNDLE to the RDS CA bundle",
        ),
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
            report.push_fix(
                "tls",
                Status::Fail,
                e.to_string(),
                format!(
                    "set DB_CA_BUNDLE to a PEM file with the CA that signed the server's \
                     certificate (for RDS and Aurora the global bundle \
                     https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem), and use \
                     a host name the certificate names ({})",
                    creds.host
                ),
            );
            report.skip(login_check, "TLS verification failed");
        }
        ConnectError::Authentication { .. } => {
            report.push(
                "host-reachable",
                Status::Pass,
                format!("{endpoint} answers"),
            );
            tls_pass(report, creds);
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
