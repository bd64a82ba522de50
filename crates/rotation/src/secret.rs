//! The secret JSON model.
//!
//! A secret is kept as the JSON object it was read as ([`SecretJson`]), so that a new version equals
//! the current one except for the fields rotation changes: every other field, known or unknown,
//! keeps its value, its JSON type and its position. [`DbCredentials`] is the validated view used to
//! connect. Errors name the field at fault and never contain a value.

use crate::profile::EngineProfile;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;

/// The secret field of the shared-owner opt-in (alternating users).
pub const SHARED_OWNER_FIELD: &str = "shared_owner";

/// A password. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password value.
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }

    /// The value itself: only for the database driver and the secret store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A problem with one field of a secret's JSON. Never carries the field's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The text is not JSON; says where it broke, never what it holds.
    #[error("the secret value is not valid JSON ({0})")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("the secret value is not a JSON object")]
    NotAnObject,
    /// A required field is absent or null.
    #[error("field '{0}' is missing")]
    Missing(&'static str),
    /// A field has a value of the wrong type or form.
    #[error("field '{field}' is invalid: {expected}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What would have been accepted.
        expected: Cow<'static, str>,
    },
}

impl FieldError {
    /// `field` is invalid: `expected` says what would be accepted.
    pub fn invalid(field: &'static str, expected: impl Into<Cow<'static, str>>) -> Self {
        FieldError::Invalid {
            field,
            expected: expected.into(),
        }
    }
}

impl FieldError {
    /// The field at fault, if the problem is with one field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            FieldError::Missing(f) | FieldError::Invalid { field: f, .. } => Some(f),
            _ => None,
        }
    }
}

/// A secret's JSON object, field order and types preserved.
#[derive(Clone, PartialEq)]
pub struct SecretJson(Map<String, Value>);

impl fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Field names only: values may be secret.
        f.debug_struct("SecretJson")
            .field("fields", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretJson {
    /// Parses a `SecretString`. The error shows where the JSON broke, never its content.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(SecretJson(map)),
            Ok(_) => Err(FieldError::NotAnObject),
            Err(e) => Err(FieldError::NotJson(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))),
        }
    }

    /// Wraps a JSON object.
    pub fn from_map(map: Map<String, Value>) -> Self {
        SecretJson(map)
    }

    /// The JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The JSON text to store as `SecretString`.
    pub fn to_json_string(&self) -> String {
        Value::Object(self.0.clone()).to_string()
    }

    /// A required, non-empty string field.
    pub fn required_str(&self, field: &'static str) -> Result<&str, FieldError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Err(FieldError::Missing(field)),
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(FieldError::invalid(field, "must not be empty")),
            Some(_) => Err(FieldError::invalid(field, "must be a string")),
        }
    }

    /// An optional string field (absent or null is `None`).
    pub fn optional_str(&self, field: &'static str) -> Result<Option<&str>, FieldError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(FieldError::invalid(field, "must be a string")),
        }
    }

    /// A copy with one string field set (replaced in place, or appended when absent).
    pub fn with_str(&self, field: &str, value: &str) -> Self {
        let mut map = self.0.clone();
        map.insert(field.to_string(), Value::String(value.to_string()));
        SecretJson(map)
    }

    /// `username`, required.
    pub fn username(&self) -> Result<&str, FieldError> {
        self.required_str("username")
    }

    /// `host`, required.
    pub fn host(&self) -> Result<&str, FieldError> {
        self.required_str("host")
    }

    /// `masterarn`: present means the alternating-users strategy.
    pub fn master_arn(&self) -> Result<Option<&str>, FieldError> {
        self.optional_str("masterarn")
    }

    /// A copy with one field set to any JSON value (replaced in place, or appended).
    pub fn with_value(&self, field: &str, value: Value) -> Self {
        let mut map = self.0.clone();
        map.insert(field.to_string(), value);
        SecretJson(map)
    }

    /// Whether the secret is shaped like an RDS-managed master secret: exactly `username` and
    /// `password`, nothing to connect with.
    pub fn is_username_password_only(&self) -> bool {
        self.0.len() == 2 && self.0.contains_key("username") && self.0.contains_key("password")
    }

    /// `shared_owner` (alternating users): both users act as the original role, so that objects
    /// either creates stay usable by the other. Boolean or `"true"`/`"false"`; absent is `None`.
    pub fn shared_owner(&self) -> Result<Option<bool>, FieldError> {
        let invalid = FieldError::invalid(
            SHARED_OWNER_FIELD,
            "must be true or false (boolean or string)",
        );
        match self.0.get(SHARED_OWNER_FIELD) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(invalid),
            },
            Some(_) => Err(invalid),
        }
    }

    /// Validates every field needed to connect to an engine of `profile` (whose defaults fill in
    /// `port` and `dbname`).
    pub fn credentials(&self, profile: &EngineProfile) -> Result<DbCredentials, FieldError> {
        let engine = match self.0.get("engine") {
            None | Some(Value::Null) => return Err(FieldError::Missing("engine")),
            Some(Value::String(s)) if profile.accepts(s) => s.clone(),
            Some(Value::String(_)) => {
                return Err(FieldError::invalid(
                    "engine",
                    format!(
                        "must be {} for this rotation function",
                        profile.engine_list()
                    ),
                ))
            }
            Some(_) => return Err(FieldError::invalid("engine", "must be a string")),
        };
        let host = self.host()?.to_string();
        let username = self.username()?.to_string();
        // A control character cannot be meant; a longer name would be truncated by the server
        // (PostgreSQL silently), and the rotation would change another role's password.
        if username.chars().any(char::is_control) {
            return Err(FieldError::invalid(
                "username",
                "must not contain control characters",
            ));
        }
        if username.len() > profile.max_identifier_bytes {
            return Err(FieldError::invalid(
                "username",
                format!(
                    "is {} bytes long, over the engine's {}-byte limit for a name",
                    username.len(),
                    profile.max_identifier_bytes
                ),
            ));
        }
        let password = match self.0.get("password") {
            None | Some(Value::Null) => return Err(FieldError::Missing("password")),
            Some(Value::String(s)) => Password::new(s.clone()),
            Some(_) => return Err(FieldError::invalid("password", "must be a string")),
        };
        let port = self.port(profile.default_port)?;
        // An empty `dbname` means the default, as in AWS's templates.
        let dbname = match self.optional_str("dbname")? {
            None | Some("") => profile.default_database.to_string(),
            Some(db) => db.to_string(),
        };
        let tls = self.tls_mode()?;
        Ok(DbCredentials {
            engine,
            host,
            port,
            dbname,
            username,
            password,
            tls,
        })
    }

    fn port(&self, default: u16) -> Result<u16, FieldError> {
        const EXPECTED: &str = "must be a port number from 1 to 65535 (number or numeric string)";
        let invalid = FieldError::invalid("port", EXPECTED);
        let port = match self.0.get("port") {
            None | Some(Value::Null) => return Ok(default),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().and_then(whole_number))
                .ok_or(invalid.clone())?,
            Some(Value::String(s)) => {
                let s = s.trim();
                s.parse::<u64>()
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().and_then(whole_number))
                    .ok_or(invalid.clone())?
            }
            Some(_) => return Err(invalid),
        };
        match u16::try_from(port) {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(invalid),
        }
    }

    /// `ssl`: absent, `true` or `"verify-full"` → verify-full; `"verify-ca"` → the chain only;
    /// `false` → no TLS. Booleans may be strings (`"true"`, `"false"`), as AWS's templates accept;
    /// strings in any case. Any other value is an error: the templates would fall back to
    /// plaintext, this function never does.
    fn tls_mode(&self) -> Result<TlsMode, FieldError> {
        let invalid = || FieldError::invalid("ssl", TlsMode::EXPECTED);
        match self.0.get("ssl") {
            None | Some(Value::Null) | Some(Value::Bool(true)) => Ok(TlsMode::VerifyFull),
            Some(Value::Bool(false)) => Ok(TlsMode::Disabled),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "verify-full" => Ok(TlsMode::VerifyFull),
                "verify-ca" => Ok(TlsMode::VerifyCa),
                "false" => Ok(TlsMode::Disabled),
                _ => Err(invalid()),
            },
            Some(_) => Err(invalid()),
        }
    }
}

/// How to use TLS, from the secret's `ssl` field: verify-full unless it says otherwise. There is
/// no fallback: a connection in a TLS mode that cannot set up TLS fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS required, certificate chain and host name verified (`ssl` absent, `true`,
    /// `"verify-full"`).
    VerifyFull,
    /// TLS required, certificate chain verified, host name not checked (`"verify-ca"`): for a
    /// host given as an IP address or a CNAME the certificate does not name.
    VerifyCa,
    /// No TLS (`ssl: false`).
    Disabled,
}

impl TlsMode {
    /// What the `ssl` field accepts, for error messages.
    pub const EXPECTED: &'static str = "must be true or \"verify-full\" (the default), \
         \"verify-ca\", or false (true and false as booleans or strings)";

    /// The mode's name in messages: `verify-full`, `verify-ca` or `disabled`.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::VerifyFull => "verify-full",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::Disabled => "disabled",
        }
    }
}

/// Everything needed to log in, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbCredentials {
    /// The secret's `engine`, one the target's profile accepts.
    pub engine: String,
    /// The server's host name.
    pub host: String,
    /// The server's port (the profile's default when the secret has none).
    pub port: u16,
    /// The database to log into (the profile's default when the secret has none).
    pub dbname: String,
    /// The user to log in as.
    pub username: String,
    /// The user's password.
    pub password: Password,
    /// Whether and how to use TLS.
    pub tls: TlsMode,
}

/// `5432.0` → 5432: a port some tools write as a float (AWS's templates accept it); a fraction,
/// a negative or a non-finite value is not a port.
fn whole_number(f: f64) -> Option<u64> {
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f <= u16::MAX as f64).then_some(f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A profile for the parsing rules alone (the PostgreSQL profile is tested in
    /// `crates/postgres-target`).
    const PROFILE: EngineProfile = EngineProfile {
        name: "Test",
        engines: &["one", "two"],
        default_port: 1234,
        default_database: "main",
        max_identifier_bytes: 20,
        superuser_privilege: "SUPER",
        create_role_privilege: "CREATE USER",
    };

    fn secret(json: &str) -> SecretJson {
        SecretJson::parse(json).unwrap()
    }

    #[test]
    fn a_username_with_control_characters_or_over_the_limit_is_refused() {
        use serde_json::json;
        for (username, expected) in [
            ("app\u{0}x", "control characters"),
            ("app\u{1b}[2J", "control characters"),
            (
                "a_name_of_twenty_one_",
                "21 bytes long, over the engine's 20-byte limit",
            ),
        ] {
            let json = json!({"engine": "one", "host": "db", "username": username,
                              "password": "pw-not-shown"});
            let err = secret(&json.to_string()).credentials(&PROFILE).unwrap_err();
            assert_eq!(err.field(), Some("username"), "{username:?}");
            let text = err.to_string();
            assert!(text.contains(expected), "{text}");
            assert!(!text.contains("pw-not-shown"), "{text}");
        }
        let json = json!({"engine": "one", "host": "db", "username": "twenty_bytes_exactly",
                          "password": "pw"});
        assert!(secret(&json.to_string()).credentials(&PROFILE).is_ok());
    }

    #[test]
    fn defaults_and_engine_names_come_from_the_profile() {
        let c = secret(r#"{"engine":"two","host":"db","username":"app","password":"pw"}"#)
            .credentials(&PROFILE)
            .unwrap();
        assert_eq!(c.port, 1234);
        assert_eq!(c.dbname, "main");
        assert_eq!(c.engine, "two");
        let err = secret(r#"{"engine":"three","host":"db","username":"app","password":"pw"}"#)
            .credentials(&PROFILE)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field 'engine' is invalid: must be \"one\" or \"two\" for this rotation function"
        );
    }

    #[test]
    fn parse_errors_do_not_echo_content() {
        let err = SecretJson::parse(r#"{"password":"hunter2" "#).unwrap_err();
        assert!(matches!(err, FieldError::NotJson(_)));
        assert!(!err.to_string().contains("hunter2"));
        assert_eq!(
            SecretJson::parse(r#""hunter2""#).unwrap_err(),
            FieldError::NotAnObject
        );
    }

    #[test]
    fn with_str_keeps_every_other_field_type_and_order() {
        let original = r#"{"engine":"postgres","port":"5432","host":"db","username":"u","password":"old","extra":{"n":[1,2.5,null]},"flag":true}"#;
        let updated = secret(original).with_str("password", "new");
        assert_eq!(
            updated.to_json_string(),
            original.replace("\"old\"", "\"new\"")
        );
        // An absent dbname stays absent.
        assert!(!updated.as_map().contains_key("dbname"));
    }

    #[test]
    fn debug_output_hides_values() {
        let s = secret(r#"{"engine":"one","host":"db","username":"u","password":"hunter2"}"#);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", s.credentials(&PROFILE).unwrap()).contains("hunter2"));
    }
}
