//! A small JSON Schema checker for the subset the report schemas under docs/ use; a keyword
//! or type it does not check fails the test instead of being ignored.

use serde_json::Value;
use std::path::Path;

pub fn validate(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    // A keyword or type this checker does not know would be ignored: refuse it instead.
    const KNOWN: [&str; 9] = [
        "$schema",
        "$id",
        "title",
        "type",
        "enum",
        "required",
        "properties",
        "additionalProperties",
        "items",
    ];
    for k in schema.as_object().expect("a schema is an object").keys() {
        assert!(
            KNOWN.contains(&k.as_str()),
            "{at}: schema keyword {k} is not checked"
        );
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().map(|x| x.as_str().unwrap()).collect(),
            other => panic!("{at}: type {other} is not checked"),
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            other => panic!("{at}: schema type {other} is not checked"),
        });
        if !ok {
            errors.push(format!("{at}: expected {types:?}, got {v}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            errors.push(format!("{at}: {v} not in {e:?}"));
        }
    }
    // `required` speaks of objects only (a nullable object may be null).
    if let (Some(req), true) = (
        schema.get("required").and_then(Value::as_array),
        v.is_object(),
    ) {
        for k in req {
            if v.get(k.as_str().unwrap()).is_none() {
                errors.push(format!("{at}: missing {k}"));
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match (
                props.and_then(|p| p.get(k)),
                schema.get("additionalProperties"),
            ) {
                (Some(s), _) => validate(s, val, &format!("{at}.{k}"), errors),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{at}: unexpected property {k}"))
                }
                (None, Some(s @ Value::Object(_))) => {
                    validate(s, val, &format!("{at}.{k}"), errors)
                }
                _ => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            validate(items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Fails the test with every violation when `v` does not match the schema file `rel`
/// (relative to the crate).
pub fn assert_matches(rel: &str, v: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut errors = Vec::new();
    validate(&schema, v, "$", &mut errors);
    assert!(errors.is_empty(), "{rel}: violations: {errors:#?}\n{v:#}");
}
