//! SQL text built from escaped identifiers and literals only, and the password verifiers that
//! travel in it instead of passwords.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use rand::RngCore;
use rotation::Password;
use sha2::{Digest, Sha256};

/// PostgreSQL's default SCRAM iteration count (and the only one before 16's `scram_iterations`).
pub const DEFAULT_SCRAM_ITERATIONS: u32 = 4096;

/// How a new password is stored: the verifier computed here and sent instead of the password.
/// The server recognises both formats and stores them as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordStorage {
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    Scram {
        /// The PBKDF2 iteration count (`scram_iterations` on PostgreSQL 16+).
        iterations: u32,
    },
    /// `md5<hex(md5(password || user))>` (deprecated by PostgreSQL 18; only when asked for).
    Md5,
}

impl PasswordStorage {
    /// The verifier of `password` for `role` (md5 salts with the role name).
    pub fn verifier(self, role: &str, password: &Password) -> String {
        match self {
            PasswordStorage::Scram { iterations } => scram_verifier_with(password, iterations),
            PasswordStorage::Md5 => {
                postgres_protocol::password::md5(password.expose().as_bytes(), role)
            }
        }
    }

    /// How it is named in logs: `scram-sha-256 (4096 iterations)` or `md5`.
    pub fn describe(self) -> String {
        match self {
            PasswordStorage::Scram { iterations } => {
                format!("scram-sha-256 ({iterations} iterations)")
            }
            PasswordStorage::Md5 => "md5".into(),
        }
    }
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (random salt, 4096 iterations).
/// The server recognises the format and stores it as is: the password itself never reaches it.
pub fn scram_verifier(password: &Password) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// [`scram_verifier`] with `iterations` instead of 4096 (postgres-protocol fixes 4096; the same
/// construction otherwise: SASLprep when it applies, a 16-byte random salt, RFC 5802's keys).
pub fn scram_verifier_with(password: &Password, iterations: u32) -> String {
    if iterations == DEFAULT_SCRAM_ITERATIONS {
        return scram_verifier(password);
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    scram_verifier_salted(password.expose().as_bytes(), &salt, iterations)
}

/// The verifier for a given salt (RFC 5802 / RFC 7677; PostgreSQL's `scram_build_secret`).
fn scram_verifier_salted(password: &[u8], salt: &[u8], iterations: u32) -> String {
    // As libpq and the server do: SASLprep a valid UTF-8 password when it allows, else the bytes.
    let prepared: Vec<u8> = match std::str::from_utf8(password).map(stringprep::saslprep) {
        Ok(Ok(p)) => p.into_owned().into_bytes(),
        _ => password.to_vec(),
    };
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(&prepared, salt, iterations, &mut salted);
    let hmac = |key: &[u8], data: &[u8]| {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any size");
        mac.update(data);
        mac.finalize().into_bytes()
    };
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// The first statements of every transaction that changes a role, in the same round trip:
/// read-write even when the role's own settings say `default_transaction_read_only = on` (a
/// read-only application role can still rotate itself), and bounded waits so that a lock held by
/// someone else or a stuck statement fails the step with a clear error well before the Lambda
/// timeout, with nothing changed. `SET TRANSACTION` must come before any query of the
/// transaction; `SET LOCAL` ends with it. The client gives up a little later
/// ([`crate::WRITE_TIMEOUT`]), for a server that stops answering altogether.
pub const WRITE_PREAMBLE: &str = "SET TRANSACTION READ WRITE; \
     SET LOCAL lock_timeout = '5s'; \
     SET LOCAL statement_timeout = '6s'";

/// `ALTER ROLE "user" WITH PASSWORD 'SCRAM-SHA-256$…'` (or the md5 verifier).
pub fn alter_password_sql(username: &str, password: &Password, storage: PasswordStorage) -> String {
    format!(
        "ALTER ROLE {} WITH PASSWORD {}",
        escape_identifier(username),
        escape_literal(&storage.verifier(username, password))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alter_role_carries_a_verifier_not_the_password() {
        let password = Password::new("p'a\\s$s");
        let sql = alter_password_sql("Odd \"User\"", &password, SCRAM_DEFAULT);
        assert!(
            sql.starts_with("ALTER ROLE \"Odd \"\"User\"\"\" WITH PASSWORD 'SCRAM-SHA-256$4096:")
        );
        assert!(!sql.contains(password.expose()));
        assert!(sql.ends_with('\''));
    }

    const SCRAM_DEFAULT: PasswordStorage = PasswordStorage::Scram {
        iterations: DEFAULT_SCRAM_ITERATIONS,
    };

    #[test]
    fn own_scram_construction_matches_postgres_protocol() {
        for value in ["plain", "p'a\\s$s", "ünïcødé ＰＡＳＳ", ""] {
            let password = Password::new(value);
            let reference = scram_verifier(&password);
            // SCRAM-SHA-256$4096:<salt>$<stored>:<server>
            let salt_b64 = reference
                .split('$')
                .nth(1)
                .and_then(|p| p.split(':').nth(1))
                .unwrap();
            let salt = STANDARD.decode(salt_b64).unwrap();
            assert_eq!(
                scram_verifier_salted(value.as_bytes(), &salt, 4096),
                reference,
                "{value:?}"
            );
        }
    }

    #[test]
    fn iterations_and_md5_follow_the_storage() {
        let password = Password::new("secret-value");
        let v = PasswordStorage::Scram { iterations: 10_000 }.verifier("app", &password);
        assert!(v.starts_with("SCRAM-SHA-256$10000:"), "{v}");
        assert!(!v.contains("secret-value"));
        // md5(password || user), as PostgreSQL's pg_md5_encrypt.
        let md5 = PasswordStorage::Md5.verifier("app", &password);
        assert_eq!(
            md5,
            postgres_protocol::password::md5(b"secret-value", "app")
        );
        assert!(md5.starts_with("md5") && md5.len() == 35);
        let sql = alter_password_sql("app", &password, PasswordStorage::Md5);
        assert_eq!(sql, format!("ALTER ROLE \"app\" WITH PASSWORD '{md5}'"));
    }

    #[test]
    fn verifiers_are_salted() {
        let password = Password::new("same");
        assert_ne!(scram_verifier(&password), scram_verifier(&password));
    }
}
