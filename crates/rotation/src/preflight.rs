//! Preflight: tells an operator whether a secret can rotate, without changing anything.
//!
//! Each check ends as pass, fail, warn (rotation works, but look), skip (an earlier failure
//! makes it meaningless) or info, with what was found and, when it is not a pass, the fix. Only
//! reads: `DescribeSecret`, `GetSecretValue`, RDS describe calls, logins and catalog queries.
//! Nothing in a report is a secret value: hosts, user names, ARNs and error texts only.

use crate::error::ErrorKind;
use crate::rotator::{alternate_username, user_pair, MasterSecret, Rotator, Strategy};
use crate::secret::{DbCredentials, SecretJson, TlsMode};
use crate::store::{SecretMetadata, SecretStore, AWSCURRENT, AWSPENDING};
use crate::target::{ConnectError, CredentialTarget};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Warn,
    Skip,
    Info,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::Skip => "skip",
            Status::Info => "info",
        }
    }
}

/// One check of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Stable name, e.g. `current-login`.
    pub name: &'static str,
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it (for fail and warn).
    pub fix: Option<String>,
}

/// The result of a preflight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The secret's ARN, or the id asked for when it could not be described.
    pub secret: String,
    pub strategy: Option<Strategy>,
    pub checks: Vec<Check>,
}

/// What the preflight knows about where it runs.
#[derive(Debug, Clone, Default)]
pub struct PreflightOptions {
    /// The function's own name when it runs as the rotation Lambda (`AWS_LAMBDA_FUNCTION_NAME`).
    pub function_name: Option<String>,
}

fn strategy_name(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::SingleUser => "single user",
        Strategy::AlternatingUsers => "alternating users",
    }
}

impl Report {
    /// No check failed.
    pub fn passed(&self) -> bool {
        self.count(Status::Fail) == 0
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "preflight": {
                "secret": self.secret,
                "strategy": self.strategy.map(strategy_name),
                "ok": self.passed(),
                "failed": self.count(Status::Fail),
                "warnings": self.count(Status::Warn),
                "checks": self.checks.iter().map(|c| {
                    let mut v = json!({"check": c.name, "status": c.status.as_str(), "detail": c.detail});
                    if let Some(fix) = &c.fix {
                        v["fix"] = json!(fix);
                    }
                    v
                }).collect::<Vec<_>>(),
            }
        })
    }

    /// A human-readable report, one check per line, fixes indented below.
    pub fn to_text(&self) -> String {
        let mut out = format!("Preflight of {}", self.secret);
        if let Some(strategy) = self.strategy {
            let _ = write!(out, " ({})", strategy_name(strategy));
        }
        out.push('\n');
        for check in &self.checks {
            let _ = writeln!(
                out,
                "  {:<4}  {:<20} {}",
                check.status.as_str().to_ascii_uppercase(),
                check.name,
                check
                    .detail
                    .replace('\n', "\n                              ")
            );
            if let Some(fix) = &check.fix {
                let _ = writeln!(
                    out,
                    "        {:<20} fix: {}",
                    "",
                    fix.replace('\n', "\n                                   ")
                );
            }
        }
        let failed = self.count(Status::Fail);
        let warnings = self.count(Status::Warn);
        let _ = writeln!(
            out,
            "Result: {} ({failed} of {} checks failed, {warnings} {})",
            if failed == 0 { "OK" } else { "FAIL" },
            self.checks.len(),
            if warnings == 1 { "warning" } else { "warnings" }
        );
        out
    }
}

struct Builder {
    checks: Vec<Check>,
}

impl Builder {
    fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
            fix: None,
        });
    }

    fn push_fix(
        &mut self,
        name: &'static str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }

    fn skip(&mut self, name: &'static str, because: &str) {
        self.push(name, Status::Skip, format!("not checked: {because}"));
    }
}

const SHAPE_FIX: &str = "store a JSON object with engine (\"postgres\" or \"aurora-postgresql\"), \
     host, username and password; optional port (default 5432), dbname (default postgres), ssl, \
     masterarn (alternating users)";

/// Runs every check for `secret_id` with the rotator's store, target, RDS look-ups and settings.
pub async fn preflight<S: SecretStore, T: CredentialTarget>(
    rotator: &Rotator<S, T>,
    secret_id: &str,
    options: &PreflightOptions,
) -> Report {
    let mut b = Builder { checks: Vec::new() };
    let mut report = Report {
        secret: secret_id.to_string(),
        strategy: None,
        checks: Vec::new(),
    };

    // 1. The secret and its AWSCURRENT value.
    let meta = match rotator.store().describe(secret_id).await {
        Ok(meta) => meta,
        Err(e) => {
            b.push_fix(
                "secret",
                Status::Fail,
                format!("cannot describe the secret: {e}"),
                "check the secret id or ARN and region, and that the caller may \
                 secretsmanager:DescribeSecret on it",
            );
            report.checks = b.checks;
            return report;
        }
    };
    report.secret = meta.arn.clone();
    let text = match meta.version_with(AWSCURRENT) {
        None => Err("no version is labelled AWSCURRENT".to_string()),
        Some(version) => match rotator
            .store()
            .get_value(&meta.arn, version, AWSCURRENT)
            .await
        {
            Ok(Some(text)) => Ok(text),
            Ok(None) => Err("the AWSCURRENT version has no value".to_string()),
            Err(e) => Err(e.to_string()),
        },
    };
    let text = match text {
        Ok(text) => {
            b.push(
                "secret",
                Status::Pass,
                format!("{} is readable (AWSCURRENT)", meta.name),
            );
            text
        }
        Err(e) => {
            b.push_fix(
                "secret",
                Status::Fail,
                format!("cannot read the AWSCURRENT value: {e}"),
                "allow secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its key)",
            );
            report.checks = b.checks;
            return report;
        }
    };

    // 2. JSON shape and engine.
    let secret = match SecretJson::parse(&text) {
        Ok(secret) => secret,
        Err(e) => {
            b.push_fix("secret-json", Status::Fail, e.to_string(), SHAPE_FIX);
            b.skip("engine", "the secret is not a JSON object");
            push_rotation_checks(&mut b, &meta, options);
            report.checks = b.checks;
            return report;
        }
    };
    // The engine is validated first: an engine error hides the rest, so check the rest with a
    // valid engine.
    let shape = secret.with_str("engine", "postgres").credentials();
    match &shape {
        Ok(c) => b.push(
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
                    TlsMode::Disabled => "disabled (ssl: false)",
                }
            ),
        ),
        Err(e) => b.push_fix("secret-json", Status::Fail, e.to_string(), SHAPE_FIX),
    }
    let creds = match secret.credentials() {
        Err(e) if e.field() == Some("engine") => {
            b.push_fix(
                "engine",
                Status::Fail,
                e.to_string(),
                "this function rotates PostgreSQL: set engine to \"postgres\" (RDS) or \
                 \"aurora-postgresql\" (Aurora)",
            );
            None
        }
        result => {
            let engine = secret
                .optional_str("engine")
                .ok()
                .flatten()
                .unwrap_or_default();
            b.push("engine", Status::Pass, engine.to_string());
            result.ok()
        }
    };

    // 3. Strategy.
    let strategy = match rotator.strategy_for(&secret) {
        Ok(s) => s,
        Err(e) => {
            b.push_fix("strategy", Status::Fail, e.to_string(), SHAPE_FIX);
            Strategy::SingleUser
        }
    };
    report.strategy = Some(strategy);
    let master_arn = secret.master_arn().ok().flatten().map(str::to_string);
    match strategy {
        Strategy::SingleUser => b.push(
            "strategy",
            Status::Info,
            "single user: the user changes its own password".to_string(),
        ),
        Strategy::AlternatingUsers => b.push(
            "strategy",
            Status::Info,
            format!(
                "alternating users: master secret {} maintains the user and its _clone",
                master_arn.as_deref().unwrap_or("(masterarn missing)")
            ),
        ),
    }

    // 4. Reachability, TLS and login with AWSCURRENT.
    match &creds {
        None => {
            for name in ["host-reachable", "tls", "current-login"] {
                b.skip(name, "the secret JSON is invalid");
            }
        }
        Some(creds) => login_checks(&mut b, rotator, creds).await,
    }

    // 5. Alternating users: the alternate's name, the master, its host and privileges.
    let mut master: Option<MasterSecret> = None;
    let mut master_meta: Option<SecretMetadata> = None;
    if strategy == Strategy::AlternatingUsers {
        if let Some(creds) = &creds {
            match alternate_username(&creds.username) {
                Ok(alt) => b.push(
                    "alternate-user",
                    Status::Pass,
                    format!(
                        "the next rotation switches {} to {alt} ({} bytes, limit 63)",
                        creds.username,
                        alt.len()
                    ),
                ),
                Err(e) => b.push_fix(
                    "alternate-user",
                    Status::Fail,
                    e.to_string(),
                    "use a username of at most 57 bytes, so that the _clone suffix fits",
                ),
            }
        }
        if let Some(arn) = &master_arn {
            master_meta = rotator.store().describe(arn).await.ok();
        }
        match rotator.load_master(&secret).await {
            Ok(m) => {
                b.push(
                    "master-secret",
                    Status::Pass,
                    format!(
                        "{}: user {} on {}:{}{}",
                        m.arn,
                        m.credentials.username,
                        m.credentials.host,
                        m.credentials.port,
                        m.origin()
                    ),
                );
                master = Some(m);
            }
            Err(e) => b.push_fix("master-secret", Status::Fail, e.to_string(), master_fix(&e)),
        }
        match (&creds, &master) {
            (Some(creds), Some(m)) => {
                master_checks(&mut b, rotator, creds, m, &secret).await;
            }
            _ => {
                for name in ["master-host", "master-login", "master-create-role"] {
                    b.skip(name, "the secret or the master secret is unusable");
                }
            }
        }
    }

    // 6. Rotation settings, and what the execution role needs.
    push_rotation_checks(&mut b, &meta, options);
    push_permissions(
        &mut b,
        &meta,
        strategy,
        master_arn.as_deref(),
        &master,
        master_meta.as_ref(),
    );
    report.checks = b.checks;
    report
}

fn master_fix(e: &ErrorKind) -> String {
    match e {
        ErrorKind::MasterField { .. } => format!(
            "the master secret needs engine, host, username and password, or must be an \
             RDS-managed secret (username and password) with its aws:rds:primaryDBInstanceArn / \
             aws:rds:primaryDBClusterArn tag; {SHAPE_FIX}"
        ),
        ErrorKind::Topology(_) => {
            "allow rds:DescribeDBInstances and rds:DescribeDBClusters, and check the tagged \
             DB instance or cluster exists"
                .into()
        }
        _ => "set masterarn to the ARN of a secret holding the master user's credentials, and \
              allow secretsmanager:GetSecretValue (and DescribeSecret) on it"
            .into(),
    }
}

async fn login_checks<S: SecretStore, T: CredentialTarget>(
    b: &mut Builder,
    rotator: &Rotator<S, T>,
    creds: &DbCredentials,
) {
    let endpoint = format!("{}:{}", creds.host, creds.port);
    match rotator.target().connect(creds).await {
        Ok(mut session) => {
            b.push(
                "host-reachable",
                Status::Pass,
                format!("{endpoint} answers"),
            );
            tls_pass(b, creds);
            let who = match session.login_identity().await {
                Ok((session_user, current_user)) if session_user == current_user => {
                    format!(" (session user {session_user})")
                }
                Ok((session_user, current_user)) => {
                    format!(" (session user {session_user}, acting as {current_user})")
                }
                Err(_) => String::new(),
            };
            b.push(
                "current-login",
                Status::Pass,
                format!(
                    "AWSCURRENT logs in as {} to database {}{who}",
                    creds.username, creds.dbname
                ),
            );
        }
        Err(e) => connect_failure(b, creds, &e, "current-login", "AWSCURRENT"),
    }
}

fn tls_pass(b: &mut Builder, creds: &DbCredentials) {
    match creds.tls {
        TlsMode::VerifyFull => b.push(
            "tls",
            Status::Pass,
            format!("the certificate of {} verifies (verify-full)", creds.host),
        ),
        TlsMode::Disabled => b.push_fix(
            "tls",
            Status::Warn,
            "ssl is false: the connection is not encrypted and the server is not authenticated",
            "remove \"ssl\": false from the secret and set DB_CA_BUNDLE to the RDS CA bundle",
        ),
    }
}

fn connect_failure(
    b: &mut Builder,
    creds: &DbCredentials,
    e: &ConnectError,
    login_check: &'static str,
    who: &str,
) {
    let endpoint = format!("{}:{}", creds.host, creds.port);
    match e {
        ConnectError::Unreachable { .. } => {
            b.push_fix(
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
            b.skip("tls", "the host is not reachable");
            b.skip(login_check, "the host is not reachable");
        }
        ConnectError::Tls(_) => {
            b.push(
                "host-reachable",
                Status::Pass,
                format!("{endpoint} answers"),
            );
            b.push_fix(
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
            b.skip(login_check, "TLS verification failed");
        }
        ConnectError::Authentication { .. } => {
            b.push(
                "host-reachable",
                Status::Pass,
                format!("{endpoint} answers"),
            );
            tls_pass(b, creds);
            b.push_fix(
                login_check,
                Status::Fail,
                format!("{who} cannot log in: {e}"),
                format!(
                    "the password in {who} does not match the database (or the user does not \
                     exist, or pg_hba.conf refuses it): set the user's password to the \
                     secret's value with ALTER ROLE, or put the working password in the secret"
                ),
            );
        }
        ConnectError::Other(_) => {
            b.push(
                "host-reachable",
                Status::Pass,
                format!("{endpoint} answers"),
            );
            b.push_fix(
                login_check,
                Status::Fail,
                format!("{who} cannot log in: {e}"),
                "check the database name and the server's log for the reason",
            );
        }
    }
}

async fn master_checks<S: SecretStore, T: CredentialTarget>(
    b: &mut Builder,
    rotator: &Rotator<S, T>,
    creds: &DbCredentials,
    master: &MasterSecret,
    secret: &SecretJson,
) {
    let relation = rotator.master_relation(creds, master).await;
    let related =
        matches!(&relation, Ok(None)) || matches!(&relation, Ok(Some(r)) if r.is_accepted());
    match relation {
        Ok(None) => b.push(
            "master-host",
            Status::Pass,
            format!(
                "the master is on the user's server {}:{}",
                creds.host, creds.port
            ),
        ),
        Ok(Some(relation)) if relation.is_accepted() => b.push(
            "master-host",
            Status::Pass,
            format!("{} is {}", creds.host, relation.describe()),
        ),
        Ok(Some(relation)) => b.push_fix(
            "master-host",
            Status::Fail,
            format!(
                "{}:{} is not the master's server {}:{}{} and not an RDS read replica or Aurora \
                 reader of it: {}",
                creds.host,
                creds.port,
                master.credentials.host,
                master.credentials.port,
                master.origin(),
                relation.describe()
            ),
            "use the master secret of the database the user lives on (for a read replica: of \
             its source instance; for an Aurora reader: of its cluster)",
        ),
        Err(e) => b.push_fix(
            "master-host",
            Status::Fail,
            e.to_string(),
            "allow rds:DescribeDBInstances and rds:DescribeDBClusters on the execution role",
        ),
    }
    if !related {
        // setSecret refuses before it logs in as the master: so does the preflight.
        for name in ["master-login", "master-create-role"] {
            b.skip(name, "the master's server is not the user's or its primary");
        }
        return;
    }

    let mut session = match rotator.target().connect(&master.credentials).await {
        Ok(session) => {
            b.push(
                "master-login",
                Status::Pass,
                format!(
                    "the master secret logs in as {} to database {}",
                    master.credentials.username, master.credentials.dbname
                ),
            );
            session
        }
        Err(e) => {
            b.push_fix(
                "master-login",
                Status::Fail,
                format!("the master secret {} cannot log in: {e}", master.arn),
                "check the master secret's host, port and password (and DB_CA_BUNDLE for TLS)",
            );
            b.skip("master-create-role", "the master cannot log in");
            return;
        }
    };
    let alternate = alternate_username(&creds.username).ok();
    let exists = match &alternate {
        Some(alt) => session.role_exists(alt).await.ok(),
        None => None,
    };
    let plan = match (&alternate, exists) {
        (Some(alt), Some(true)) => {
            format!("; {alt} exists: the next rotation changes its password")
        }
        (Some(alt), Some(false)) => format!(
            "; {alt} does not exist: the next rotation creates it from {}",
            creds.username
        ),
        _ => String::new(),
    };
    match session.privileges().await {
        Ok(p) if p.superuser || p.create_role => b.push(
            "master-create-role",
            Status::Pass,
            format!(
                "{} has {}{plan}",
                master.credentials.username,
                if p.superuser {
                    "SUPERUSER"
                } else {
                    "CREATEROLE"
                }
            ),
        ),
        Ok(_) => b.push_fix(
            "master-create-role",
            Status::Fail,
            format!(
                "{} has neither CREATEROLE nor SUPERUSER: it cannot create {} or change its \
                 password{plan}",
                master.credentials.username,
                alternate.as_deref().unwrap_or("the alternate user")
            ),
            format!(
                "ALTER ROLE {} CREATEROLE (as a superuser or rds_superuser), or use the RDS \
                 master user's secret as masterarn",
                master.credentials.username
            ),
        ),
        Err(e) => b.push_fix(
            "master-create-role",
            Status::Fail,
            e.to_string(),
            "check the master user can read pg_roles",
        ),
    }

    match rotator.shared_owner_for(secret) {
        Ok(true) => {
            if let Ok((clone, original)) = user_pair(&creds.username) {
                b.push(
                    "ownership",
                    Status::Info,
                    format!(
                        "shared owner on: {clone} acts as {original} (ALTER ROLE {clone} SET \
                         role), so objects either user creates are owned by {original}"
                    ),
                );
            }
        }
        Ok(false) => b.push(
            "ownership",
            Status::Info,
            "shared owner off: objects each user creates are owned by that user; the clone can \
             use the original's objects, not the reverse (set \"shared_owner\": true to change \
             that)",
        ),
        Err(e) => b.push_fix(
            "ownership",
            Status::Fail,
            e.to_string(),
            "set shared_owner to true or false",
        ),
    }
}

fn function_name_of(arn: &str) -> &str {
    // arn:aws:lambda:region:account:function:NAME[:qualifier]
    let mut parts = arn.split(':');
    let name = parts.by_ref().skip_while(|p| *p != "function").nth(1);
    name.unwrap_or(arn)
}

fn push_rotation_checks(b: &mut Builder, meta: &SecretMetadata, options: &PreflightOptions) {
    match (meta.rotation_enabled, &meta.rotation_lambda_arn) {
        (Some(true), Some(arn)) => {
            let attached = function_name_of(arn);
            match &options.function_name {
                Some(me) if me != attached => b.push_fix(
                    "rotation",
                    Status::Warn,
                    format!("rotation is enabled with another function: {arn}"),
                    format!("attach this function ({me}) if it should rotate this secret"),
                ),
                _ => b.push(
                    "rotation",
                    Status::Pass,
                    format!("rotation is enabled with function {arn}"),
                ),
            }
        }
        (Some(true), None) => b.push_fix(
            "rotation",
            Status::Fail,
            "rotation is enabled but no rotation function is attached",
            "aws secretsmanager rotate-secret --secret-id <ARN> --rotation-lambda-arn <function \
             ARN> --rotation-rules AutomaticallyAfterDays=30",
        ),
        _ => b.push_fix(
            "rotation",
            Status::Warn,
            "rotation is not enabled yet",
            "when every other check passes: aws secretsmanager rotate-secret --secret-id <ARN> \
             --rotation-lambda-arn <function ARN> --rotation-rules AutomaticallyAfterDays=30 \
             (the function also needs a resource policy letting secretsmanager.amazonaws.com \
             invoke it)",
        ),
    }
    let pending = meta
        .versions
        .iter()
        .find(|(_, stages)| {
            stages.iter().any(|s| s == AWSPENDING) && !stages.iter().any(|s| s == AWSCURRENT)
        })
        .map(|(id, _)| id.clone());
    match pending {
        None => b.push(
            "pending-version",
            Status::Pass,
            "no rotation is in progress",
        ),
        Some(id) => b.push_fix(
            "pending-version",
            Status::Warn,
            format!(
                "version {id} is labelled AWSPENDING: a rotation is in progress or failed part-way"
            ),
            "let the running rotation finish; if it failed, fix the cause and rotate again (the \
             next rotation resumes with this version)",
        ),
    }
}

fn push_permissions(
    b: &mut Builder,
    meta: &SecretMetadata,
    strategy: Strategy,
    master_arn: Option<&str>,
    master: &Option<MasterSecret>,
    master_meta: Option<&SecretMetadata>,
) {
    let mut lines = vec![
        format!(
            "secretsmanager:DescribeSecret, GetSecretValue, PutSecretValue, \
             UpdateSecretVersionStage on {}",
            meta.arn
        ),
        "secretsmanager:GetRandomPassword on *".to_string(),
    ];
    if strategy == Strategy::AlternatingUsers {
        let arn = master_arn.unwrap_or("<masterarn>");
        lines.push(format!(
            "secretsmanager:GetSecretValue and DescribeSecret on the master secret {arn}"
        ));
        let managed = master.as_ref().is_some_and(|m| m.resource.is_some());
        lines.push(format!(
            "rds:DescribeDBInstances and rds:DescribeDBClusters on *{}",
            if managed {
                " (needed: the master secret is RDS-managed)"
            } else {
                " (for RDS-managed master secrets and read replicas)"
            }
        ));
    }
    for (what, key) in [
        ("the secret", meta.kms_key_id.as_deref()),
        (
            "the master secret",
            master_meta.and_then(|m| m.kms_key_id.as_deref()),
        ),
    ] {
        if let Some(key) = key.filter(|k| !k.ends_with("alias/aws/secretsmanager")) {
            lines.push(format!(
                "kms:Decrypt and kms:GenerateDataKey on {key} (the key of {what})"
            ));
        }
    }
    lines.push(
        "in a VPC: ec2:CreateNetworkInterface, DescribeNetworkInterfaces, \
         DeleteNetworkInterface (AWSLambdaVPCAccessExecutionRole), and a route to Secrets \
         Manager (a VPC endpoint or NAT)"
            .to_string(),
    );
    b.push(
        "permissions",
        Status::Info,
        format!("the execution role needs:\n- {}", lines.join("\n- ")),
    );
}
