//! SQL text built from escaped identifiers and literals only.

use postgres_protocol::escape::{escape_identifier, escape_literal};
use rotation::Password;

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (random salt, 4096 iterations).
/// The server recognises the format and stores it as is: the password itself never reaches it.
pub fn scram_verifier(password: &Password) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

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
