//! Properties of the secret model (`crates/rotation/src/secret.rs`) over generated JSON: any
//! object round-trips exactly (unknown fields, their JSON types and the field order kept), and
//! replacing the password changes nothing else.

use proptest::prelude::*;
use rotation::SecretJson;
use serde_json::{Map, Value};

/// Any JSON value, nested a few levels (finite numbers: JSON has no others).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((any::<String>(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A secret: the usual fields (some of them, of any type) and unknown ones, in any order.
fn secret_object() -> impl Strategy<Value = Map<String, Value>> {
    let known = proptest::sample::select(vec![
        "engine",
        "host",
        "port",
        "username",
        "password",
        "dbname",
        "masterarn",
        "ssl",
    ]);
    let field = prop_oneof![
        (known.prop_map(str::to_string), json_value()),
        (any::<String>(), json_value()),
    ];
    proptest::collection::vec(field, 0..10).prop_map(|kv| kv.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_object_round_trips_exactly(object in secret_object()) {
        let text = serde_json::to_string(&Value::Object(object.clone())).unwrap();
        let secret = SecretJson::parse(&text).unwrap();
        prop_assert_eq!(secret.as_map(), &object);
        prop_assert_eq!(secret.to_json_string(), text);
    }

    #[test]
    fn a_new_password_changes_only_the_password(object in secret_object(), password in any::<String>()) {
        let secret = SecretJson::from_map(object.clone());
        let changed = secret.with_str("password", &password);
        let mut expected = object;
        expected.insert("password".into(), Value::String(password));
        prop_assert_eq!(changed.as_map(), &expected);
        // And it survives the trip through Secrets Manager's string.
        let again = SecretJson::parse(&changed.to_json_string()).unwrap();
        prop_assert_eq!(again.as_map(), &expected);
    }

    #[test]
    fn anything_but_an_object_is_refused(value in json_value().prop_filter("not an object", |v| !v.is_object())) {
        let text = serde_json::to_string(&value).unwrap();
        prop_assert!(SecretJson::parse(&text).is_err());
    }
}
