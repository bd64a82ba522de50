//! PostgreSQL's engine profile and fix texts: every PostgreSQL fact the engine-neutral core and
//! the preflight need, in one place.

use rotation::{EngineAdvice, EngineProfile};

/// PostgreSQL as RDS, Aurora and self-managed servers run it.
pub const POSTGRES: EngineProfile = EngineProfile {
    name: "PostgreSQL",
    engines: &["postgres", "aurora-postgresql"],
    default_port: 5432,
    default_database: "postgres",
    // NAMEDATALEN - 1.
    max_identifier_bytes: 63,
    superuser_privilege: "SUPERUSER",
    create_role_privilege: "CREATEROLE",
};

/// PostgreSQL's fix texts for the preflight report.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresAdvice;

impl EngineAdvice for PostgresAdvice {
    fn engine_fix(&self) -> String {
        "this function rotates PostgreSQL: set engine to \"postgres\" (RDS) or \
         \"aurora-postgresql\" (Aurora)"
            .into()
    }

    fn login_fix(&self, who: &str) -> String {
        format!(
            "the password in {who} does not match the database (or the user does not \
             exist, or pg_hba.conf refuses it): set the user's password to the \
             secret's value with ALTER ROLE, or put the working password in the secret"
        )
    }

    fn create_role_fix(&self, master_user: &str) -> String {
        format!(
            "ALTER ROLE {master_user} CREATEROLE (as a superuser or rds_superuser), or use the \
             RDS master user's secret as masterarn"
        )
    }

    fn role_catalog_fix(&self) -> String {
        "check the master user can read pg_roles".into()
    }

    fn shared_owner_mechanism(&self, clone: &str) -> String {
        format!("ALTER ROLE {clone} SET role")
    }

    fn act_as_fix(&self, role: &str, member: &str) -> String {
        format!(
            "as the role's creator or a superuser: GRANT {role} TO {member} WITH SET TRUE \
             (PostgreSQL 16+: the membership's SET option; before 16: GRANT {role} TO {member})"
        )
    }

    fn alternate_membership_fix(&self, original: &str, clone: &str) -> String {
        format!(
            "rename or drop the unrelated role {clone} (ALTER ROLE {clone} RENAME TO …), or, if it \
             is this secret's alternate user, GRANT {original} TO {clone}"
        )
    }
}
