//! Every parser the function applies to bytes it does not control, in one call: the invocation
//! event (rotation or preflight) and a secret's JSON (field rules, PostgreSQL's defaults, the
//! alternating-users fields). The fuzz target (`fuzz/fuzz_targets/untrusted_input.rs`) and the
//! corpus replay test (`crates/rotate-postgres/tests/untrusted_input.rs`) call it.
//!
//! Besides "never panics", it checks the one property every error must keep: no error text
//! contains the input's password.

use postgres_target::POSTGRES;
use rotation::alternating::alternate_username;
use rotation::{SecretJson, Step};
use serde_json::Value;

/// What the parsers accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    /// A preflight event with its `SecretId`.
    pub preflight_event: bool,
    /// A rotation event (`Step`, `SecretId`, `ClientRequestToken` strings).
    pub rotation_event: bool,
    /// ... whose `Step` is one of the four.
    pub known_step: bool,
    /// A secret whose fields give credentials for PostgreSQL.
    pub credentials: bool,
}

/// Runs every parser on `data`; panics (the fuzzer's finding) when an error text carries the
/// input's `password`.
pub fn parse_untrusted(data: &[u8]) -> Accepted {
    let mut accepted = Accepted::default();
    let Ok(text) = std::str::from_utf8(data) else {
        return accepted;
    };
    let password = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            v.get("password")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|p| p.len() >= 4);
    let check = |error: &dyn std::fmt::Display| {
        if let Some(password) = &password {
            let message = error.to_string();
            assert!(
                !message.contains(password.as_str()),
                "an error text carries the input's password"
            );
        }
    };

    if let Ok(payload) = serde_json::from_str::<Value>(text) {
        match crate::handler::preflight_request(&payload) {
            Some(Ok(_)) => accepted.preflight_event = true,
            Some(Err(e)) => check(&e),
            None => {}
        }
        match crate::handler::rotation_event(payload) {
            Ok(event) => {
                accepted.rotation_event = true;
                accepted.known_step = event.step.parse::<Step>().is_ok();
            }
            Err(e) => check(&e),
        }
    }

    match SecretJson::parse(text) {
        Ok(secret) => {
            match secret.credentials(&POSTGRES) {
                Ok(credentials) => {
                    accepted.credentials = true;
                    if let Err(e) = alternate_username(&credentials.username, &POSTGRES) {
                        check(&e);
                    }
                }
                Err(e) => check(&e),
            }
            for result in [
                secret.master_arn().map(|_| ()),
                secret.shared_owner().map(|_| ()),
            ] {
                if let Err(e) = result {
                    check(&e);
                }
            }
            // The value written back keeps every field.
            let again = SecretJson::parse(&secret.to_json_string()).expect("re-parse");
            assert_eq!(again.as_map(), secret.as_map(), "round trip");
        }
        Err(e) => check(&e),
    }
    accepted
}
