//! The checks, in the order they run; each topic in its own file.

mod alternating;
mod database;
mod permissions;
mod rotation_settings;
mod secret;

use crate::report::Report;
use crate::{Ports, PreflightOptions};
use rotation::Strategy;

/// Runs every check for `secret_id`.
pub(crate) async fn run(ports: &Ports<'_>, secret_id: &str, options: &PreflightOptions) -> Report {
    let mut report = Report::new(secret_id);

    // 1-3. The secret, its JSON and engine, the strategy.
    let Some(found) = secret::check(ports, &mut report, options).await else {
        return report;
    };

    // 4. Reachability, TLS and login with AWSCURRENT; whether the host is a standby.
    match &found.credentials {
        None => {
            for name in ["host-reachable", "tls", "current-login"] {
                report.skip(name, "the secret JSON is invalid");
            }
        }
        Some(creds) => {
            if database::login_checks(ports, &mut report, &found, creds).await == Some(true) {
                database::standby_check(&mut report, creds, found.strategy, options.replica_wait);
            }
        }
    }

    // 5. Alternating users: the alternate's name, the master, its host and privileges.
    let master = if found.strategy == Strategy::AlternatingUsers {
        alternating::check(ports, &mut report, &found).await
    } else {
        alternating::MasterFound::default()
    };

    // 6. Rotation settings, and what the execution role needs.
    rotation_settings::check(ports, &mut report, &found, options).await;
    permissions::check(&mut report, &found, &master);
    report
}
