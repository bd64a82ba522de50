//! Alternating users: the alternate's name, the master secret, its server, its login and
//! privileges, and ownership (checks `alternate-user`, `master-secret`, `master-host`,
//! `master-login`, `master-create-role`, `ownership`).

use super::permissions::RDS_ACTIONS;
use super::secret::{shape_fix, SecretFound};
use crate::report::{Report, Status};
use crate::Ports;
use rotation::alternating::{
    alternate_username, load_master, master_relation, MasterSecret, UserPair, CLONE_SUFFIX,
};
use rotation::{DbCredentials, EngineProfile, ErrorKind, SecretJson, SecretMetadata};

/// What the master checks found, for the permissions check.
#[derive(Default)]
pub(crate) struct MasterFound {
    /// The master secret, when it could be loaded.
    pub(crate) secret: Option<MasterSecret>,
    /// Its metadata, when it could be described.
    pub(crate) meta: Option<SecretMetadata>,
}

/// Adds the alternating-users checks.
pub(crate) async fn check(
    ports: &Ports<'_>,
    report: &mut Report,
    found: &SecretFound,
) -> MasterFound {
    let profile = ports.target.profile();
    let mut master = MasterFound::default();
    if let Some(creds) = &found.credentials {
        match alternate_username(&creds.username, profile) {
            Ok(alt) => report.push(
                "alternate-user",
                Status::Pass,
                format!(
                    "the next rotation switches {} to {alt} ({} bytes, limit {})",
                    creds.username,
                    alt.len(),
                    profile.max_identifier_bytes
                ),
            ),
            Err(e) => report.push_fix(
                "alternate-user",
                Status::Fail,
                e.to_string(),
                format!(
                    "use a username of at most {} bytes, so that the {CLONE_SUFFIX} suffix fits",
                    profile.max_identifier_bytes - CLONE_SUFFIX.len()
                ),
            ),
        }
    }
    if let Some(arn) = &found.master_arn {
        master.meta = ports.store.describe(arn).await.ok();
    }
    match load_master(ports.store, ports.topology, profile, &found.secret).await {
        Ok(m) => {
            report.push(
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
            master.secret = Some(m);
        }
        Err(e) => report.push_fix(
            "master-secret",
            Status::Fail,
            e.to_string(),
            master_fix(&e, profile),
        ),
    }
    match (&found.credentials, &master.secret) {
        (Some(creds), Some(m)) => master_checks(ports, report, creds, m, &found.secret).await,
        _ => {
            for name in ["master-host", "master-login", "master-create-role"] {
                report.skip(name, "the secret or the master secret is unusable");
            }
        }
    }
    master
}

fn master_fix(e: &ErrorKind, profile: &EngineProfile) -> String {
    match e {
        ErrorKind::MasterField { .. } => format!(
            "the master secret needs engine, host, username and password, or must be an \
             RDS-managed secret (username and password) with its aws:rds:primaryDBInstanceArn / \
             aws:rds:primaryDBClusterArn tag; {}",
            shape_fix(profile)
        ),
        ErrorKind::Topology(_) => {
            format!("allow {RDS_ACTIONS}, and check the tagged DB instance or cluster exists")
        }
        _ => "set masterarn to the ARN of a secret holding the master user's credentials, and \
              allow secretsmanager:GetSecretValue (and DescribeSecret) on it"
            .into(),
    }
}

async fn master_checks(
    ports: &Ports<'_>,
    report: &mut Report,
    creds: &DbCredentials,
    master: &MasterSecret,
    secret: &SecretJson,
) {
    let profile = ports.target.profile();
    let advice = ports.target.advice();
    let relation = master_relation(ports.topology, creds, master).await;
    let related =
        matches!(&relation, Ok(None)) || matches!(&relation, Ok(Some(r)) if r.is_accepted());
    match relation {
        Ok(None) => report.push(
            "master-host",
            Status::Pass,
            format!(
                "the master is on the user's server {}:{}",
                creds.host, creds.port
            ),
        ),
        Ok(Some(relation)) if relation.is_accepted() => report.push(
            "master-host",
            Status::Pass,
            format!("{} is {}", creds.host, relation.describe()),
        ),
        Ok(Some(relation)) => report.push_fix(
            "master-host",
            Status::Fail,
            format!(
                "{}:{} is not the master's server {}:{}{} and no replica of it that RDS knows \
                 (read replica, Aurora reader or custom endpoint, Global Database secondary): {}",
                creds.host,
                creds.port,
                master.credentials.host,
                master.credentials.port,
                master.origin(),
                relation.describe()
            ),
            "use the master secret of the database the user lives on (for a read replica: of \
             its source instance; for an Aurora reader or custom endpoint: of its cluster; for a \
             Global Database secondary: of the primary cluster)",
        ),
        Err(e) => report.push_fix(
            "master-host",
            Status::Fail,
            e.to_string(),
            format!("allow {RDS_ACTIONS} on the execution role"),
        ),
    }
    if !related {
        // setSecret refuses before it logs in as the master: so does the preflight.
        for name in ["master-login", "master-create-role"] {
            report.skip(name, "the master's server is not the user's or its primary");
        }
        return;
    }

    let mut session = match ports.target.connect(&master.credentials).await {
        Ok(mut session) => {
            // A standby refuses every change: the master must be on the primary.
            if session.is_standby().await.unwrap_or(false) {
                report.push_fix(
                    "master-login",
                    Status::Fail,
                    format!(
                        "the master secret logs in as {}, but {}:{} is a standby (in recovery, \
                         read-only): the next rotation cannot create or change a user there",
                        master.credentials.username,
                        master.credentials.host,
                        master.credentials.port
                    ),
                    "point the master secret's host at the primary (the source instance, or the \
                     cluster endpoint of the primary cluster)",
                );
                report.skip("master-create-role", "the master's server is a standby");
                return;
            }
            report.push(
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
            report.push_fix(
                "master-login",
                Status::Fail,
                format!("the master secret {} cannot log in: {e}", master.arn),
                "check the master secret's host, port and password (and DB_CA_BUNDLE for TLS)",
            );
            report.skip("master-create-role", "the master cannot log in");
            return;
        }
    };
    let alternate = alternate_username(&creds.username, profile).ok();
    let exists = match &alternate {
        Some(alt) => session.role_exists(alt).await.ok(),
        None => None,
    };
    // An existing `<user>_clone` must have been granted `<user>`: setSecret refuses to change
    // the password of an unrelated role with that name.
    let unrelated_clone = match (&alternate, exists) {
        (Some(clone), Some(true)) if clone.ends_with(CLONE_SUFFIX) => session
            .is_direct_member(clone, &creds.username)
            .await
            .is_ok_and(|member| !member)
            .then_some(clone),
        _ => None,
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
    if let Some(clone) = unrelated_clone {
        report.push_fix(
            "master-create-role",
            Status::Fail,
            format!(
                "{clone} exists but is not a member of {}: it is not this secret's alternate \
                 user, and the next rotation refuses to change its password",
                creds.username
            ),
            advice.alternate_membership_fix(&creds.username, clone),
        );
    } else {
        match session.privileges().await {
            Ok(p) if p.superuser || p.create_role => {
                // What setSecret checks before it changes anything, predicted here.
                let privileges = match &alternate {
                    Some(alt) => session.alternate_plan(&creds.username, alt).await.ok(),
                    None => None,
                }
                .unwrap_or_default();
                if let Some(missing) = privileges.missing_text() {
                    report.push_fix(
                        "master-create-role",
                        Status::Fail,
                        format!("{} lacks {missing}", master.credentials.username),
                        privileges
                            .missing
                            .iter()
                            .map(|m| m.grant.clone())
                            .collect::<Vec<_>>()
                            .join("; "),
                    );
                } else {
                    report.push(
                        "master-create-role",
                        Status::Pass,
                        format!(
                            "{} has {}{plan}",
                            master.credentials.username,
                            if p.superuser {
                                profile.superuser_privilege
                            } else {
                                profile.create_role_privilege
                            }
                        ),
                    );
                }
                if !privileges.skipped.is_empty() {
                    let names: Vec<&str> =
                        privileges.skipped.iter().map(|s| s.name.as_str()).collect();
                    report.push_fix(
                        "clone-settings",
                        Status::Warn,
                        format!(
                            "{} may not set {} on the new alternate user: not copied (the clone \
                             logs in and works without them)",
                            master.credentials.username,
                            names.join(", ")
                        ),
                        privileges
                            .skipped
                            .iter()
                            .map(|s| s.fix.clone())
                            .collect::<Vec<_>>()
                            .join("; "),
                    );
                }
            }
            Ok(_) => report.push_fix(
                "master-create-role",
                Status::Fail,
                format!(
                    "{} has neither {} nor {}: it cannot create {} or change its password{plan}",
                    master.credentials.username,
                    profile.create_role_privilege,
                    profile.superuser_privilege,
                    alternate.as_deref().unwrap_or("the alternate user")
                ),
                advice.create_role_fix(&master.credentials.username),
            ),
            Err(e) => report.push_fix(
                "master-create-role",
                Status::Fail,
                e.to_string(),
                advice.role_catalog_fix(),
            ),
        }
    }

    // The clone must be able to act as the role setSecret gives it (the original's own acting
    // role, or the original under the opt-in): setSecret checks the same before any change.
    let shared = ports.settings.shared_owner_for(secret).unwrap_or(false);
    let exists_clone = if creds.username.ends_with(CLONE_SUFFIX) {
        Some(true)
    } else {
        exists
    };
    if let (Ok(UserPair { original, clone }), Some(true)) =
        (UserPair::of(&creds.username, profile), exists_clone)
    {
        let own = session.role_setting(&original).await.ok().flatten();
        let target = own.or_else(|| shared.then(|| original.clone()));
        if let Some(target) = target {
            if let Ok(false) = session.may_act_as(&clone, &target).await {
                report.push_fix(
                    "ownership",
                    Status::Fail,
                    format!(
                        "{clone} must act as {target} (SET ROLE), but may not: the next rotation's \
                         setSecret fails before any change"
                    ),
                    advice.act_as_fix(&target, &clone),
                );
                return;
            }
        }
    }
    match ports.settings.shared_owner_for(secret) {
        Ok(true) => {
            if let Ok(UserPair { original, clone }) = UserPair::of(&creds.username, profile) {
                report.push(
                    "ownership",
                    Status::Info,
                    format!(
                        "shared owner on: {clone} acts as {original} ({}), so objects either \
                         user creates are owned by {original}",
                        advice.shared_owner_mechanism(&clone)
                    ),
                );
            }
        }
        Ok(false) => report.push(
            "ownership",
            Status::Info,
            "shared owner off: objects each user creates are owned by that user; the clone can \
             use the original's objects, not the reverse (set \"shared_owner\": true to change \
             that)",
        ),
        Err(e) => report.push_fix(
            "ownership",
            Status::Fail,
            e.to_string(),
            "set shared_owner to true or false",
        ),
    }
}
