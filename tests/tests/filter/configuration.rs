//! Invalid configuration is refused at load, naming the field (fail closed).

use mcp_auth_tests::LogLevel;
use serde_json::{Value, json};

use crate::keys::keys;
use crate::support::{config, inline_jwks, plugin};

/// Applies `edit` to the demo configuration and returns (accepted, error log lines).
fn load(edit: impl FnOnce(&mut Value)) -> (bool, Vec<String>) {
    let mut value = config(inline_jwks(&[&keys().ed]));
    edit(&mut value);
    load_raw(&value.to_string())
}

fn load_raw(text: &str) -> (bool, Vec<String>) {
    let mut host = plugin().new_host().expect("VM starts");
    let accepted = host.configure(text).expect("on_configure does not trap");
    let errors = host
        .logs()
        .iter()
        .filter(|l| l.level >= LogLevel::Error)
        .map(|l| l.message.clone())
        .collect();
    (accepted, errors)
}

#[test]
fn the_demo_configuration_is_accepted() {
    assert_eq!(load(|_| {}), (true, vec![]));
}

/// Sets the member at JSON pointer `pointer` (creating it in its parent object).
fn set(config: &mut Value, pointer: &str, value: Value) {
    let (parent, name) = pointer.rsplit_once('/').expect("pointer has a member");
    match config.pointer_mut(parent).and_then(Value::as_object_mut) {
        Some(object) => {
            object.insert(name.to_string(), value);
        }
        None => panic!("no object at {parent}"),
    }
}

#[test]
fn invalid_fields_are_rejected_with_a_log_line_naming_the_field() {
    let cases = [
        (
            "resources[0].resource",
            "/resources/0/resource",
            json!("not a url"),
        ),
        (
            "resources[0].path_prefix",
            "/resources/0/path_prefix",
            json!("mcp"),
        ),
        (
            "resources[0].scopes_supported",
            "/resources/0/scopes_supported",
            json!(["offline_access"]),
        ),
        ("resources", "/resources", json!([])),
        ("clock_skew_seconds", "/clock_skew_seconds", json!(100_000)),
        (
            "cors.allowed_origins",
            "/cors/allowed_origins",
            json!(["*"]),
        ),
        ("unknown_field", "/unknown_field", json!(1)),
        (
            "issuers[0].jwks",
            "/issuers/0/jwks",
            json!({"inline": {"keys": []}}),
        ),
    ];
    for (field, pointer, value) in cases {
        let (accepted, errors) = load(|config| set(config, pointer, value));
        assert!(!accepted, "{field}");
        assert!(
            errors.iter().any(|e| e.contains(field)),
            "{field} not named in {errors:?}"
        );
    }
}

#[test]
fn configuration_that_is_not_json_is_rejected() {
    for text in ["", "not json", "[]", "{\"resources\": "] {
        let (accepted, errors) = load_raw(text);
        assert!(!accepted, "{text:?}");
        assert!(!errors.is_empty(), "{text:?}");
    }
}
