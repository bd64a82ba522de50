//! Alternating users: the SQL that creates the alternate user from the current one.
//!
//! Every identifier and literal goes through `postgres_protocol::escape`; passwords only as SCRAM
//! verifiers. Per-role settings are copied the way `pg_dumpall` replays them: list-valued
//! variables (`search_path`, …) are split into their elements, each a string literal; any other
//! value is one string literal.

use crate::sql::PasswordStorage;
use postgres_protocol::escape::{escape_identifier, escape_literal};
use rotation::Password;

/// The attributes of a role that its alternate copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAttributes {
    /// `LOGIN`.
    pub login: bool,
    /// `CREATEDB`.
    pub create_db: bool,
    /// `CREATEROLE`.
    pub create_role: bool,
    /// -1: no limit.
    pub connection_limit: i32,
    /// `rolvaliduntil` as text read with `DateStyle = ISO` and `TimeZone = UTC` (or `infinity`).
    pub valid_until: Option<String>,
}

/// One `pg_db_role_setting` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSetting {
    /// `None`: every database.
    pub database: Option<String>,
    /// The variable.
    pub name: String,
    /// Its value as `setconfig` holds it.
    pub value: String,
}

impl RoleSetting {
    /// Parses a `setconfig` element `name=value`.
    pub fn parse(database: Option<String>, entry: &str) -> Option<RoleSetting> {
        let (name, value) = entry.split_once('=')?;
        (!name.is_empty()).then(|| RoleSetting {
            database,
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    /// Settings that describe the role's identity rather than its environment; not copied as
    /// settings (the acting role is handled on its own).
    pub fn is_identity(&self) -> bool {
        is_identity_setting(&self.name)
    }

    /// Whether `other` sets the same variable in the same scope (any value).
    pub fn same_variable(&self, other: &RoleSetting) -> bool {
        self.database == other.database && self.name.eq_ignore_ascii_case(&other.name)
    }
}

/// Whether setting `name` describes a role's identity rather than its environment (`role`,
/// `session_authorization`): never copied to the clone.
pub fn is_identity_setting(name: &str) -> bool {
    name.eq_ignore_ascii_case("role") || name.eq_ignore_ascii_case("session_authorization")
}

/// The attributes of a role, read as text-safe columns (run after `SET LOCAL datestyle`).
pub const ROLE_ATTRIBUTES_QUERY: &str = "SELECT rolcanlogin, rolcreatedb, rolcreaterole, \
     rolconnlimit, rolvaliduntil::text FROM pg_catalog.pg_roles WHERE rolname = $1";

/// Whether role `$2` is a direct member of role `$1` (`GRANT $1 TO $2`), from the catalog, so that
/// a superuser's implicit membership of everything does not count.
pub const DIRECT_MEMBER_QUERY: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m \
     JOIN pg_catalog.pg_roles r ON r.oid = m.roleid \
     JOIN pg_catalog.pg_roles u ON u.oid = m.member \
     WHERE r.rolname = $1::text AND u.rolname = $2::text)";

/// The per-role settings of a role, with the database name for `IN DATABASE` ones.
pub const ROLE_SETTINGS_QUERY: &str = "SELECT d.datname::text, unnest(s.setconfig) \
     FROM pg_catalog.pg_db_role_setting s \
     JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
     LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase \
     WHERE r.rolname = $1 ORDER BY 1 NULLS FIRST, 2";

/// The database-independent `role` setting of role `$1` (`NULL` or no row: none).
pub const ROLE_SETTING_QUERY: &str = "SELECT (SELECT substr(c, 6) FROM unnest(s.setconfig) c \
     WHERE c LIKE 'role=%' LIMIT 1) \
     FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
     WHERE r.rolname = $1::text AND s.setdatabase = 0";

/// `ALTER ROLE "clone" WITH …` for the attributes of `want` that `have` lacks, with their names;
/// `None` when they agree. `VALID UNTIL` unset on the original becomes `'infinity'`.
pub fn alter_attributes_sql(
    role: &str,
    want: &RoleAttributes,
    have: &RoleAttributes,
) -> Option<(String, Vec<&'static str>)> {
    let flag = |on: bool, name: &str| {
        if on {
            name.to_string()
        } else {
            format!("NO{name}")
        }
    };
    let mut parts = Vec::new();
    let mut names = Vec::new();
    if want.login != have.login {
        parts.push(flag(want.login, "LOGIN"));
        names.push("LOGIN");
    }
    if want.create_db != have.create_db {
        parts.push(flag(want.create_db, "CREATEDB"));
        names.push("CREATEDB");
    }
    if want.create_role != have.create_role {
        parts.push(flag(want.create_role, "CREATEROLE"));
        names.push("CREATEROLE");
    }
    if want.connection_limit != have.connection_limit {
        parts.push(format!("CONNECTION LIMIT {}", want.connection_limit));
        names.push("CONNECTION LIMIT");
    }
    let until = |v: &Option<String>| v.clone().unwrap_or_else(|| "infinity".into());
    if until(&want.valid_until) != until(&have.valid_until) {
        parts.push(format!(
            "VALID UNTIL {}",
            escape_literal(&until(&want.valid_until))
        ));
        names.push("VALID UNTIL");
    }
    (!parts.is_empty()).then(|| {
        (
            format!(
                "ALTER ROLE {} WITH {}",
                escape_identifier(role),
                parts.join(" ")
            ),
            names,
        )
    })
}

/// `ALTER ROLE "role" [IN DATABASE "db"] RESET "name"`.
pub fn reset_setting_sql(role: &str, setting: &RoleSetting) -> String {
    let database = setting
        .database
        .as_deref()
        .map(|db| format!(" IN DATABASE {}", escape_identifier(db)))
        .unwrap_or_default();
    format!(
        "ALTER ROLE {}{database} RESET {}",
        escape_identifier(role),
        variable_name(&setting.name)
    )
}

/// The statement that lets `member` act as `role` (`SET ROLE`): on PostgreSQL 16+ the
/// membership's SET option must be true.
pub fn grant_set_role_sql(role: &str, member: &str, set_option: bool) -> String {
    let grant = grant_sql(role, member);
    if set_option {
        format!("{grant} WITH SET TRUE")
    } else {
        grant
    }
}

/// `CREATE ROLE "clone" WITH … PASSWORD 'SCRAM-SHA-256$…'` copying `attrs`. The clone always
/// inherits, so that `GRANT original TO clone` gives it the original's privileges.
pub fn create_role_sql(
    role: &str,
    attrs: &RoleAttributes,
    password: &Password,
    storage: PasswordStorage,
) -> String {
    let flag = |on: bool, name: &str| {
        if on {
            name.to_string()
        } else {
            format!("NO{name}")
        }
    };
    let mut sql = format!(
        "CREATE ROLE {} WITH {} {} {} INHERIT CONNECTION LIMIT {}",
        escape_identifier(role),
        flag(attrs.login, "LOGIN"),
        flag(attrs.create_db, "CREATEDB"),
        flag(attrs.create_role, "CREATEROLE"),
        attrs.connection_limit
    );
    if let Some(valid_until) = &attrs.valid_until {
        sql.push_str(" VALID UNTIL ");
        sql.push_str(&escape_literal(valid_until));
    }
    sql.push_str(" PASSWORD ");
    sql.push_str(&escape_literal(&storage.verifier(role, password)));
    sql
}

/// `GRANT "role" TO "member"`.
pub fn grant_sql(role: &str, member: &str) -> String {
    format!(
        "GRANT {} TO {}",
        escape_identifier(role),
        escape_identifier(member)
    )
}

/// The names of role `$1`'s per-role settings that only a superuser may set (parameters the
/// server knows with context `superuser`; unknown placeholders are not). PostgreSQL 13 and 14.
pub const SUPERUSER_SETTINGS_QUERY_14: &str = "SELECT DISTINCT p.name::text \
     FROM pg_catalog.pg_db_role_setting s \
     JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
     CROSS JOIN LATERAL unnest(s.setconfig) c \
     JOIN pg_catalog.pg_settings p ON p.name = lower(split_part(c, '=', 1)) \
     WHERE r.rolname = $1 AND p.context = 'superuser' ORDER BY 1";

/// [`SUPERUSER_SETTINGS_QUERY_14`] less those that `GRANT SET ON PARAMETER` lets the logged-in
/// role set (PostgreSQL 15+, where `has_parameter_privilege` exists).
pub const SUPERUSER_SETTINGS_QUERY: &str = "SELECT DISTINCT p.name::text \
     FROM pg_catalog.pg_db_role_setting s \
     JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
     CROSS JOIN LATERAL unnest(s.setconfig) c \
     JOIN pg_catalog.pg_settings p ON p.name = lower(split_part(c, '=', 1)) \
     WHERE r.rolname = $1 AND p.context = 'superuser' \
     AND NOT pg_catalog.has_parameter_privilege(p.name, 'SET') ORDER BY 1";

/// `GRANT "role" TO "master" WITH ADMIN OPTION` (run by the role's creator or a superuser).
pub fn grant_admin_sql(role: &str, master: &str) -> String {
    format!(
        "GRANT {} TO {} WITH ADMIN OPTION",
        escape_identifier(role),
        escape_identifier(master)
    )
}

/// `ALTER ROLE "master" CREATEDB` (run by a superuser, or a role with CREATEDB and ADMIN OPTION
/// on the master).
pub fn grant_createdb_sql(master: &str) -> String {
    format!("ALTER ROLE {} CREATEDB", escape_identifier(master))
}

/// How to let `master` set the superuser-only parameter `name`.
pub fn grant_set_parameter_fix(name: &str, master: &str) -> String {
    format!(
        "as a superuser: GRANT SET ON PARAMETER {name} TO {} (PostgreSQL 15+), or set it on the \
         clone yourself",
        escape_identifier(master)
    )
}

/// `ALTER ROLE "clone" RESET role`: the shared-owner opt-in turned off.
pub fn reset_act_as_sql(clone: &str) -> String {
    format!("ALTER ROLE {} RESET role", escape_identifier(clone))
}

/// `ALTER ROLE "clone" SET role TO 'owner'`: the shared-owner opt-in.
pub fn act_as_sql(clone: &str, owner: &str) -> String {
    format!(
        "ALTER ROLE {} SET role TO {}",
        escape_identifier(clone),
        escape_literal(owner)
    )
}

/// A (possibly qualified, `ext.name`) configuration variable name, each part quoted.
fn variable_name(name: &str) -> String {
    name.split('.')
        .map(escape_identifier)
        .collect::<Vec<_>>()
        .join(".")
}

/// The variables whose values PostgreSQL stores as quoted lists (`GUC_LIST_QUOTE`), as in
/// `pg_dumpall`'s `variable_is_guc_list_quote`.
pub fn is_list_variable(name: &str) -> bool {
    [
        "local_preload_libraries",
        "search_path",
        "session_preload_libraries",
        "shared_preload_libraries",
        "temp_tablespaces",
        "unix_socket_directories",
    ]
    .iter()
    .any(|v| v.eq_ignore_ascii_case(name))
}

/// Splits a stored list value (`"$user", public`) into its elements, as PostgreSQL's
/// `SplitGUCList` does: comma-separated, optionally double-quoted (`""` is a quote), whitespace
/// around elements ignored, no case folding. `None` when the text is not such a list.
pub fn split_list_value(value: &str) -> Option<Vec<String>> {
    let mut items = Vec::new();
    let mut chars = value.chars().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
    };
    skip_ws(&mut chars);
    if chars.peek().is_none() {
        return Some(items);
    }
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        item.push('"');
                    }
                    '"' => break,
                    c => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                item.push(c);
                chars.next();
            }
            if item.is_empty() {
                return None;
            }
        }
        items.push(item);
        skip_ws(&mut chars);
        match chars.next() {
            None => return Some(items),
            Some(',') => skip_ws(&mut chars),
            Some(_) => return None,
        }
    }
}

/// `ALTER ROLE "role" [IN DATABASE "db"] SET "name" TO 'value'[, …]` reproducing `setting`.
pub fn set_setting_sql(role: &str, setting: &RoleSetting) -> String {
    let value = match is_list_variable(&setting.name)
        .then(|| split_list_value(&setting.value))
        .flatten()
    {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|i| escape_literal(i))
            .collect::<Vec<_>>()
            .join(", "),
        _ => escape_literal(&setting.value),
    };
    let database = setting
        .database
        .as_deref()
        .map(|db| format!(" IN DATABASE {}", escape_identifier(db)))
        .unwrap_or_default();
    format!(
        "ALTER ROLE {}{database} SET {} TO {value}",
        escape_identifier(role),
        variable_name(&setting.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_role_copies_attributes_with_a_verifier() {
        let password = Password::new("pa'ss\\word");
        let sql = create_role_sql(
            "app_clone",
            &RoleAttributes {
                login: true,
                create_db: true,
                create_role: false,
                connection_limit: 7,
                valid_until: Some("2031-01-01 00:00:00+00".into()),
            },
            &password,
            PasswordStorage::Scram { iterations: 4096 },
        );
        assert!(sql.starts_with(
            "CREATE ROLE \"app_clone\" WITH LOGIN CREATEDB NOCREATEROLE INHERIT CONNECTION LIMIT 7 \
             VALID UNTIL '2031-01-01 00:00:00+00' PASSWORD 'SCRAM-SHA-256$4096:"
        ), "{sql}");
        assert!(!sql.contains(password.expose()));
    }

    #[test]
    fn only_differing_attributes_are_altered() {
        let base = RoleAttributes {
            login: true,
            create_db: false,
            create_role: false,
            connection_limit: -1,
            valid_until: None,
        };
        assert_eq!(alter_attributes_sql("c", &base, &base), None);
        let infinite = RoleAttributes {
            valid_until: Some("infinity".into()),
            ..base.clone()
        };
        assert_eq!(alter_attributes_sql("c", &base, &infinite), None);
        let want = RoleAttributes {
            create_db: true,
            connection_limit: 9,
            valid_until: Some("2040-01-01 00:00:00+00".into()),
            ..base.clone()
        };
        let (sql, names) = alter_attributes_sql("app_clone", &want, &base).unwrap();
        assert_eq!(
            sql,
            "ALTER ROLE \"app_clone\" WITH CREATEDB CONNECTION LIMIT 9 \
             VALID UNTIL '2040-01-01 00:00:00+00'"
        );
        assert_eq!(names, ["CREATEDB", "CONNECTION LIMIT", "VALID UNTIL"]);
        let (sql, _) = alter_attributes_sql("app_clone", &base, &want).unwrap();
        assert_eq!(
            sql,
            "ALTER ROLE \"app_clone\" WITH NOCREATEDB CONNECTION LIMIT -1 VALID UNTIL 'infinity'"
        );
        let timeout = RoleSetting::parse(Some("db".into()), "statement_timeout=5s").unwrap();
        assert_eq!(
            reset_setting_sql("app_clone", &timeout),
            "ALTER ROLE \"app_clone\" IN DATABASE \"db\" RESET \"statement_timeout\""
        );
        assert_eq!(
            grant_set_role_sql("app", "app_clone", true),
            "GRANT \"app\" TO \"app_clone\" WITH SET TRUE"
        );
    }

    #[test]
    fn identifiers_and_literals_are_escaped() {
        assert_eq!(
            grant_sql("we\"ird", "we\"ird_clone"),
            "GRANT \"we\"\"ird\" TO \"we\"\"ird_clone\""
        );
        assert_eq!(
            act_as_sql("o'k_clone", "o'k"),
            "ALTER ROLE \"o'k_clone\" SET role TO 'o''k'"
        );
    }

    #[test]
    fn list_values_split_like_postgres() {
        assert_eq!(
            split_list_value("\"$user\", public").unwrap(),
            vec!["$user", "public"]
        );
        assert_eq!(
            split_list_value("\"Odd \"\"Schema\"\"\",app").unwrap(),
            vec!["Odd \"Schema\"", "app"]
        );
        assert_eq!(split_list_value("").unwrap(), Vec::<String>::new());
        assert_eq!(split_list_value("\"\"").unwrap(), vec![""]);
        assert_eq!(split_list_value("a,,b"), None);
        assert_eq!(split_list_value("\"open"), None);
        assert_eq!(split_list_value("CamelCase").unwrap(), vec!["CamelCase"]);
    }

    #[test]
    fn settings_replay_as_pg_dumpall_does() {
        let search_path =
            RoleSetting::parse(None, "search_path=\"$user\", app, \"Odd Schema\"").unwrap();
        assert_eq!(
            set_setting_sql("app_clone", &search_path),
            "ALTER ROLE \"app_clone\" SET \"search_path\" TO '$user', 'app', 'Odd Schema'"
        );
        let timeout = RoleSetting::parse(Some("app db".into()), "statement_timeout=5s").unwrap();
        assert_eq!(
            set_setting_sql("app_clone", &timeout),
            "ALTER ROLE \"app_clone\" IN DATABASE \"app db\" SET \"statement_timeout\" TO '5s'"
        );
        let custom = RoleSetting::parse(None, "myapp.mode=it's=on").unwrap();
        assert_eq!(custom.value, "it's=on");
        assert_eq!(
            set_setting_sql("r", &custom),
            "ALTER ROLE \"r\" SET \"myapp\".\"mode\" TO 'it''s=on'"
        );
        assert!(RoleSetting::parse(None, "role=app").unwrap().is_identity());
        assert!(RoleSetting::parse(None, "noequals").is_none());
    }
}
