//! The secret: readable, its JSON shape, its engine, its strategy (checks `secret`,
//! `secret-json`, `engine`, `strategy`).

use super::rotation_settings;
use crate::report::{Report, Status};
use crate::{Ports, PreflightOptions};
use rotation::{
    DbCredentials, EngineProfile, SecretJson, SecretMetadata, Strategy, TlsMode, AWSCURRENT,
};

/// What the secret checks found, for the checks after them.
pub(crate) struct SecretFound {
    pub(crate) meta: SecretMetadata,
    pub(crate) secret: SecretJson,
    /// `None` when the JSON cannot log in (an invalid field).
    pub(crate) credentials: Option<DbCredentials>,
    pub(crate) strategy: Strategy,
    pub(crate) master_arn: Option<String>,
}

/// What a secret's JSON must hold, for the fixes.
pub(crate) fn shape_fix(profile: &EngineProfile) -> String {
    format!(
        "store a JSON object with engine ({}), host, username and password; optional port \
         (default {}), dbname (default {}), ssl, masterarn (alternating users)",
        profile.engine_list(),
        profile.default_port,
        profile.default_database
    )
}

/// Checks the secret; `None` when a failure ends the preflight (the report is complete).
pub(crate) async fn check(
    ports: &Ports<'_>,
    report: &mut Report,
    options: &PreflightOptions,
) -> Option<SecretFound> {
    let profile = ports.target.profile();
    let secret_id = report.secret.clone();
    let meta = match ports.store.describe(&secret_id).await {
        Ok(meta) => meta,
        Err(e) => {
            report.push_fix(
                "secret",
                Status::Fail,
                format!("cannot describe the secret: {e}"),
                "check the secret id or ARN and region, and that the caller may \
                 secretsmanager:DescribeSecret on it",
            );
            return None;
        }
    };
    report.secret = meta.arn.clone();
    let text = match meta.version_with(AWSCURRENT) {
        None => Err("no version is labelled AWSCURRENT".to_string()),
        Some(version) => match ports.store.get_value(&meta.arn, version, AWSCURRENT).await {
            Ok(Some(text)) => Ok(text),
            Ok(None) => Err("the AWSCURRENT version has no value".to_string()),
            Err(e) => Err(e.to_string()),
        },
    };
    let text = match text {
        Ok(text) => {
            report.push(
                "secret",
                Status::Pass,
                format!("{} is readable (AWSCURRENT)", meta.name),
            );
            text
        }
        Err(e) => {
            report.push_fix(
                "secret",
                Status::Fail,
                format!("cannot read the AWSCURRENT value: {e}"),
                "allow secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key)",
            );
            return None;
        }
    };

    // JSON shape and engine.
    let secret = match SecretJson::parse(&text) {
        Ok(secret) => secret,
        Err(e) => {
            report.push_fix(
                "secret-json",
                Status::Fail,
                e.to_string(),
                shape_fix(profile),
            );
            report.skip("engine", "the secret is not a JSON object");
            rotation_settings::check_metadata(report, &meta, options, None);
            return None;
        }
    };
    // The engine is validated first: an engine error hides the rest, so check the rest with a
    // valid engine.
    let shape = secret
        .with_str("engine", profile.engines[0])
        .credentials(profile);
    match &shape {
        Ok(c) => report.push(
            "secret-json",
            Status::Pass,
            format!(
                "host {}, port {}, dbname {}, username {}, password present, TLS {}",
                c.host,
                c.port,
                c.dbname,
                c.username,
                match c.tls {
                    TlsMode::VerifyFull => "verify-full",
                    TlsMode::VerifyCa => "verify-ca (the chain, not the host name)",
                    TlsMode::Disabled => "disabled (ssl: false)",
                }
            ),
        ),
        Err(e) => report.push_fix(
            "secret-json",
            Status::Fail,
            e.to_string(),
            shape_fix(profile),
        ),
    }
    let credentials = match secret.credentials(profile) {
        Err(e) if e.field() == Some("engine") => {
            report.push_fix(
                "engine",
                Status::Fail,
                e.to_string(),
                ports.target.advice().engine_fix(),
            );
            None
        }
        result => {
            let engine = secret
                .optional_str("engine")
                .ok()
                .flatten()
                .unwrap_or_default();
            report.push("engine", Status::Pass, engine.to_string());
            result.ok()
        }
    };

    // Strategy.
    let strategy = match ports.settings.strategy_for(&secret) {
        Ok(s) => s,
        Err(e) => {
            report.push_fix("strategy", Status::Fail, e.to_string(), shape_fix(profile));
            Strategy::SingleUser
        }
    };
    report.strategy = Some(strategy);
    let master_arn = secret.master_arn().ok().flatten().map(str::to_string);
    match strategy {
        Strategy::SingleUser => report.push(
            "strategy",
            Status::Info,
            "single user: the user changes its own password".to_string(),
        ),
        Strategy::AlternatingUsers => report.push(
            "strategy",
            Status::Info,
            format!(
                "alternating users: master secret {} maintains the user and its _clone",
                master_arn.as_deref().unwrap_or("(masterarn missing)")
            ),
        ),
    }
    Some(SecretFound {
        meta,
        secret,
        credentials,
        strategy,
        master_arn,
    })
}
