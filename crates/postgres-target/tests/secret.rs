//! The secret model read with PostgreSQL's profile: defaults, accepted engines, field rules, and
//! the alternate user's identifier limit.

use postgres_target::POSTGRES;
use rotation::alternating::alternate_username;
use rotation::{SecretJson, TlsMode};

fn secret(json: &str) -> SecretJson {
    SecretJson::parse(json).unwrap()
}

#[test]
fn minimal_secret_gets_defaults() {
    let c = secret(r#"{"engine":"postgres","host":"db","username":"app","password":"pw"}"#)
        .credentials(&POSTGRES)
        .unwrap();
    assert_eq!(c.port, 5432);
    assert_eq!(c.dbname, "postgres");
    assert_eq!(c.tls, TlsMode::VerifyFull);
    assert_eq!(c.engine, "postgres");
    assert_eq!(c.password.expose(), "pw");
}

#[test]
fn port_accepts_number_and_numeric_string() {
    let base = r#""engine":"aurora-postgresql","host":"db","username":"u","password":"p""#;
    assert_eq!(
        secret(&format!("{{{base},\"port\":6543}}"))
            .credentials(&POSTGRES)
            .unwrap()
            .port,
        6543
    );
    assert_eq!(
        secret(&format!("{{{base},\"port\":\"6543\"}}"))
            .credentials(&POSTGRES)
            .unwrap()
            .port,
        6543
    );
    // Written as a float by some tools; AWS's templates accept it too.
    for whole in ["6543.0", "\"6543.0\""] {
        assert_eq!(
            secret(&format!("{{{base},\"port\":{whole}}}"))
                .credentials(&POSTGRES)
                .unwrap()
                .port,
            6543,
            "port {whole}"
        );
    }
    for bad in [
        "0", "70000", "\"abc\"", "true", "-1", "5432.5", "0.0", "70000.0", "\"-1.0\"", "1e10",
    ] {
        let err = secret(&format!("{{{base},\"port\":{bad}}}"))
            .credentials(&POSTGRES)
            .unwrap_err();
        assert_eq!(err.field(), Some("port"), "port {bad}");
    }
}

#[test]
fn an_empty_dbname_means_the_default() {
    let c =
        secret(r#"{"engine":"postgres","host":"db","username":"u","password":"p","dbname":""}"#)
            .credentials(&POSTGRES)
            .unwrap();
    assert_eq!(c.dbname, "postgres");
    let c =
        secret(r#"{"engine":"postgres","host":"db","username":"u","password":"p","dbname":"app"}"#)
            .credentials(&POSTGRES)
            .unwrap();
    assert_eq!(c.dbname, "app");
}

#[test]
fn ssl_accepts_the_templates_booleans_and_the_verify_modes() {
    let base = r#""engine":"postgres","host":"db","username":"u","password":"p""#;
    for (value, mode) in [
        // AWS's templates: booleans, and "true"/"false" in any case.
        ("false", TlsMode::Disabled),
        ("\"FALSE\"", TlsMode::Disabled),
        ("\"False\"", TlsMode::Disabled),
        ("true", TlsMode::VerifyFull),
        ("\"true\"", TlsMode::VerifyFull),
        ("null", TlsMode::VerifyFull),
        // The verify modes, by name.
        ("\"verify-full\"", TlsMode::VerifyFull),
        ("\"verify-ca\"", TlsMode::VerifyCa),
        ("\" Verify-CA \"", TlsMode::VerifyCa),
    ] {
        let c = secret(&format!("{{{base},\"ssl\":{value}}}"))
            .credentials(&POSTGRES)
            .unwrap();
        assert_eq!(c.tls, mode, "ssl {value}");
    }
    // The templates would fall back to plaintext on anything else; this is an error naming the
    // field and the accepted values.
    for bad in [
        "\"maybe\"",
        "\"require\"",
        "\"verify_ca\"",
        "\"\"",
        "1",
        "[]",
    ] {
        let err = secret(&format!("{{{base},\"ssl\":{bad}}}"))
            .credentials(&POSTGRES)
            .unwrap_err();
        assert_eq!(err.field(), Some("ssl"), "ssl {bad}");
        assert_eq!(
            err.to_string(),
            "field 'ssl' is invalid: must be true or \"verify-full\" (the default), \
             \"verify-ca\", or false (true and false as booleans or strings)",
            "ssl {bad}"
        );
    }
}

#[test]
fn missing_and_invalid_fields_are_named_without_values() {
    for (json, field) in [
        (r#"{"host":"db","username":"u","password":"p"}"#, "engine"),
        (
            r#"{"engine":"mysql","host":"db","username":"u","password":"p"}"#,
            "engine",
        ),
        (
            r#"{"engine":"postgres","username":"u","password":"p"}"#,
            "host",
        ),
        (
            r#"{"engine":"postgres","host":"db","password":"p"}"#,
            "username",
        ),
        (
            r#"{"engine":"postgres","host":"db","username":"u"}"#,
            "password",
        ),
        (
            r#"{"engine":"postgres","host":"db","username":"u","password":42}"#,
            "password",
        ),
        (
            r#"{"engine":"postgres","host":"","username":"u","password":"p"}"#,
            "host",
        ),
        (
            r#"{"engine":"postgres","host":"db","username":"u","password":"p","dbname":7}"#,
            "dbname",
        ),
    ] {
        let err = secret(json).credentials(&POSTGRES).unwrap_err();
        assert_eq!(err.field(), Some(field), "{json}");
        assert!(err.to_string().contains(field));
    }
    let err =
        secret(r#"{"engine":"postgres","host":"db","username":"u","password":{"x":"hunter2"}}"#)
            .credentials(&POSTGRES)
            .unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn engine_error_names_both_postgres_engines() {
    let err = secret(r#"{"engine":"mysql","host":"db","username":"u","password":"p"}"#)
        .credentials(&POSTGRES)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field 'engine' is invalid: must be \"postgres\" or \"aurora-postgresql\" for this rotation function"
    );
}

#[test]
fn the_clone_suffix_must_fit_in_63_bytes() {
    assert_eq!(
        alternate_username(&"a".repeat(57), &POSTGRES)
            .unwrap()
            .len(),
        63
    );
    let err = alternate_username(&"a".repeat(58), &POSTGRES).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "username {:?} cannot get the alternate suffix: the result would be 64 bytes, over PostgreSQL's 63-byte limit",
            "a".repeat(58)
        )
    );
}
