//! SQL text built from escaped identifiers and literals only.

use postgres_protocol::escape::{escape_identifier, escape_literal};
use rotation::Password;

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (random salt, 4096 iterations).
/// The server recognises the format and stores it as is: the password itself never reaches it.
pub fn scram_verifier(password: &Password) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// The first statements of every transaction that changes a role, in the same round trip:
/// read-write even when the role's own settings say `default_transaction_read_only = on` (a
/// read-only application role can still rotate itself), and bounded waits so that a lock held by
/// someone else or a stuck statement fails the step with a clear error well before the Lambda
/// timeout, with nothing changed. `SET TRANSACTION` must come before any query of the
/// transaction; `SET LOCAL` ends with it.
pub const WRITE_PREAMBLE: &str = "SET TRANSACTION READ WRITE; \
     SET LOCAL lock_timeout = '5s'; \
     SET LOCAL statement_timeout = '20s'";

/// `ALTER ROLE "user" WITH PASSWORD 'SCRAM-SHA-256$…'`.
pub fn alter_password_sql(username: &str, password: &Password) -> String {
    format!(
        "ALTER ROLE {} WITH PASSWORD {}",
        escape_identifier(username),
        escape_literal(&scram_verifier(password))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_role_carries_a_verifier_not_the_password() {
        let password = Password::new("p'a\\s$s");
        let sql = alter_password_sql("Odd \"User\"", &password);
        assert!(
            sql.starts_with("ALTER ROLE \"Odd \"\"User\"\"\" WITH PASSWORD 'SCRAM-SHA-256$4096:")
        );
        assert!(!sql.contains(password.expose()));
        assert!(sql.ends_with('\''));
    }

    #[test]
    fn verifiers_are_salted() {
        let password = Password::new("same");
        assert_ne!(scram_verifier(&password), scram_verifier(&password));
    }
}
