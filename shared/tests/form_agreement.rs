//! The requests API refuses exactly the values the portal refuses, field by
//! field. `fixtures/forms/agreement.json` holds an item with one field of
//! every type, its form, and values each field must accept or refuse;
//! `catalog/portal/formats.test.mjs` runs the same cases through the portal's
//! validator. This side checks the server's verdicts, and that the fixture's
//! form is the one `catalog::form` builds, so the two tests cannot drift apart.

use std::path::PathBuf;

use pao::catalog::form::form;
use pao::catalog::item::FieldType;
use pao::catalog::validate::validate_file;
use pao::requests::fields::{check, compile};
use serde_json::{Map, Value};

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/forms/agreement.json")
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(fixture_path()).expect("the agreement fixture");
    serde_json::from_str(&text).expect("JSON")
}

/// A submission of the required field's valid value, with `field` set to
/// `value` (left out when `value` is null).
fn submission(field: &str, value: &Value) -> Value {
    let mut fields = Map::new();
    fields.insert("string".into(), "abc".into());
    if value.is_null() {
        fields.remove(field);
    } else {
        fields.insert(field.into(), value.clone());
    }
    Value::Object(fields)
}

#[test]
fn the_fixture_form_is_the_one_catalog_form_builds() {
    let mut fixture = fixture();
    let bytes = serde_json::to_vec(&fixture["item"]).unwrap();
    let item = validate_file("agreement.json", &bytes)
        .unwrap_or_else(|diagnostics| panic!("the fixture's item is invalid: {diagnostics:?}"))
        .item;
    let built = serde_json::to_value(form(&item)).unwrap();
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        fixture["form"] = built;
        let text = serde_json::to_string_pretty(&fixture).unwrap() + "\n";
        std::fs::write(fixture_path(), text).unwrap();
        return;
    }
    assert!(
        fixture["form"] == built,
        "the fixture's form is stale: run UPDATE_FIXTURES=1 cargo test -p pao --test form_agreement"
    );
}

#[test]
fn every_field_type_has_a_valid_and_an_invalid_case() {
    let fixture = fixture();
    let cases = fixture["cases"].as_array().unwrap();
    for kind in FieldType::ALL {
        let id = kind.name().replace('-', "_");
        for valid in [true, false] {
            assert!(
                cases
                    .iter()
                    .any(|case| case["field"] == id.as_str() && case["valid"] == valid),
                "{id} has no case with valid: {valid}"
            );
        }
    }
}

#[test]
fn the_server_accepts_and_refuses_each_case_naming_the_field() {
    let fixture = fixture();
    let bytes = serde_json::to_vec(&fixture["item"]).unwrap();
    let item = validate_file("agreement.json", &bytes).unwrap().item;
    let validator = compile(&item).expect("the form compiles");
    let mut wrong = Vec::new();
    for case in fixture["cases"].as_array().unwrap() {
        let field = case["field"].as_str().unwrap();
        let why = case["why"].as_str().unwrap();
        let value = &case["value"];
        let verdict = check(&item, &validator, &submission(field, value));
        match (case["valid"].as_bool().unwrap(), verdict) {
            (true, Ok(_)) => {}
            (true, Err(errors)) => wrong.push(format!("{field} ({why}): refused: {errors:?}")),
            (false, Ok(_)) => wrong.push(format!("{field} ({why}): accepted")),
            (false, Err(errors)) => {
                if errors.iter().any(|error| error.field != field) {
                    wrong.push(format!("{field} ({why}): names another field: {errors:?}"));
                }
                if let Some(text) = value.as_str().filter(|text| text.len() > 4) {
                    if errors.iter().any(|error| error.message.contains(text)) {
                        wrong.push(format!("{field} ({why}): the message repeats the value"));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
