//! The form of a catalog item: the JSON Schema (draft 2020-12) a submission
//! must satisfy, and the react-jsonschema-form `uiSchema` that lays it out.
//! Backstage and an RJSF portal render the pair; the requests API validates
//! submissions against the same schema, with the same definition of each
//! `format` ([`formats`]), so what the portal lets through and what the API
//! accepts cannot drift apart. Owns how each field type, bound and `show_if`
//! maps to JSON Schema, and the presentation order.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::{json, Map, Number, Value};

use super::item::{CatalogItem, Choice, Condition, Field, FieldType};

pub mod formats;

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// What RJSF adds around the base64 content of a file: `data:<mime>;name=<file>;base64,`.
const DATA_URL_HEADER: u64 = 256;

/// A `date-time` must end in a time zone: ajv-formats 2 lets one without it
/// through, and a time without a zone means a different instant to each reader.
pub const ZONED: &str = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$";

/// A file's content must be base64, which `data-url` does not check. Written
/// for the two engines that evaluate it (JavaScript's and fancy-regex) to
/// agree: ASCII classes, `$` at the very end.
pub const BASE64_CONTENT: &str =
    ";base64,(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";

/// The rows of the text area for `json` and `yaml` fields.
const CODE_ROWS: u64 = 8;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Form {
    pub schema: Value,
    #[serde(rename = "uiSchema")]
    pub ui_schema: Value,
}

/// Compiles `item` into its form. Total: an item that never passed
/// validation still yields a form (a meaningless bound is left out), never a panic.
pub fn form(item: &CatalogItem) -> Form {
    Form {
        schema: schema(item),
        ui_schema: ui_schema(item),
    }
}

/// Fields that share one `show_if` test share one `allOf` entry.
struct Branch {
    when: Value,
    properties: Map<String, Value>,
    required: Vec<Value>,
}

fn schema(item: &CatalogItem) -> Value {
    let fields = &item.presentation.fields;
    let unconditional: HashSet<&str> = fields
        .iter()
        .filter(|field| field.show_if.as_ref().and_then(test).is_none())
        .map(|field| field.id.as_str())
        .collect();

    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut branches: Vec<Branch> = Vec::new();
    for field in fields {
        let when = field
            .show_if
            .as_ref()
            .and_then(|condition| when(condition, &unconditional));
        let Some(when) = when else {
            properties.insert(field.id.clone(), property(field));
            if field.required {
                required.push(Value::from(field.id.as_str()));
            }
            continue;
        };
        let index = match branches.iter().position(|branch| branch.when == when) {
            Some(index) => index,
            None => {
                branches.push(Branch {
                    when,
                    properties: Map::new(),
                    required: Vec::new(),
                });
                branches.len() - 1
            }
        };
        let branch = &mut branches[index];
        branch.properties.insert(field.id.clone(), property(field));
        if field.required {
            branch.required.push(Value::from(field.id.as_str()));
        }
    }

    let mut schema = Map::new();
    schema.insert("$schema".into(), DRAFT_2020_12.into());
    schema.insert("type".into(), "object".into());
    schema.insert("title".into(), item.header.name.as_str().into());
    schema.insert(
        "description".into(),
        item.header.description.as_str().into(),
    );
    schema.insert("properties".into(), Value::Object(properties));
    schema.insert("required".into(), Value::Array(required));
    // The meta-schema wants a non-empty `allOf`.
    if !branches.is_empty() {
        let all_of = branches.into_iter().map(|branch| {
            let mut then = Map::new();
            then.insert("properties".into(), Value::Object(branch.properties));
            if !branch.required.is_empty() {
                then.insert("required".into(), Value::Array(branch.required));
            }
            json!({ "if": branch.when, "then": then })
        });
        schema.insert("allOf".into(), Value::Array(all_of.collect()));
    }
    // Not `additionalProperties`: that sees only the root `properties` and
    // would reject every conditional field. `unevaluatedProperties` also sees
    // the `then` that declared one, but only when its `if` held, which is what
    // rejects a conditional field sent while its condition is false.
    schema.insert("unevaluatedProperties".into(), false.into());
    Value::Object(schema)
}

/// The `if` of a field shown under `condition`; `None` when the condition has
/// no test, which `Condition::holds` treats as always true.
fn when(condition: &Condition, unconditional: &HashSet<&str>) -> Option<Value> {
    let test = test(condition)?;
    // A successful `if` evaluates the properties it names, for
    // `unevaluatedProperties` as much as `then` does. When the tested field is
    // itself conditional (or not a field at all), that would let it through
    // while its own condition is false; `not` evaluates nothing, so the same
    // test under two of them keeps it from vouching for the field.
    if unconditional.contains(condition.field.as_str()) {
        Some(test)
    } else {
        Some(json!({ "not": { "not": test } }))
    }
}

/// `condition` as a schema that holds exactly when `Condition::holds` does,
/// with the same precedence when more than one test is (wrongly) present.
fn test(condition: &Condition) -> Option<Value> {
    let field = condition.field.as_str();
    if let Some(expected) = &condition.equals {
        return Some(json!({
            "properties": { field: { "const": expected } },
            "required": [field],
        }));
    }
    // No `required` here: an absent field is not equal to anything, so
    // `holds(None)` is true and the dependent field is shown.
    if let Some(unexpected) = &condition.not_equals {
        return Some(json!({
            "properties": { field: { "not": { "const": unexpected } } },
        }));
    }
    if let Some(allowed) = &condition.one_of {
        return Some(json!({
            "properties": { field: { "enum": allowed } },
            "required": [field],
        }));
    }
    None
}

fn property(field: &Field) -> Value {
    let mut schema = Map::new();
    schema.insert("title".into(), field.label.as_str().into());
    if let Some(help) = &field.help {
        schema.insert("description".into(), help.as_str().into());
    }
    if let Some(default) = &field.default {
        schema.insert("default".into(), default_of(field.kind, default));
    }
    let mut put = |key: &str, value: Value| {
        schema.insert(key.into(), value);
    };
    match field.kind {
        FieldType::String | FieldType::Text | FieldType::Password => {
            put("type", "string".into());
            if let Some(min) = field.min.and_then(|min| count(min.ceil())) {
                put("minLength", min.into());
            }
            if let Some(max) = field.max.and_then(|max| count(max.floor())) {
                put("maxLength", max.into());
            }
            if field.kind == FieldType::Password {
                put("writeOnly", true.into());
            }
        }
        FieldType::Integer | FieldType::Number => {
            let kind = if field.kind == FieldType::Integer {
                "integer"
            } else {
                "number"
            };
            put("type", kind.into());
            if let Some(min) = field.min.and_then(number) {
                put("minimum", min);
            }
            if let Some(max) = field.max.and_then(number) {
                put("maximum", max);
            }
        }
        FieldType::Boolean => put("type", "boolean".into()),
        FieldType::Selection => {
            put("type", "string".into());
            let choices = choices(field);
            // The meta-schema wants a non-empty `oneOf`; no options, no valid value.
            if choices.is_empty() {
                put("enum", json!([]));
            } else {
                let choices = choices
                    .iter()
                    .map(|choice| json!({ "const": choice.value(), "title": choice.label() }));
                put("oneOf", Value::Array(choices.collect()));
            }
        }
        FieldType::MultiSelection => {
            put("type", "array".into());
            let values: Vec<&str> = choices(field).iter().map(Choice::value).collect();
            put("items", json!({ "type": "string", "enum": values }));
            put("uniqueItems", true.into());
            if let Some(min) = field.min.and_then(|min| count(min.ceil())) {
                put("minItems", min.into());
            }
            if let Some(max) = field.max.and_then(|max| count(max.floor())) {
                put("maxItems", max.into());
            }
        }
        FieldType::Date => put_format(&mut put, formats::DATE),
        FieldType::Datetime => {
            put_format(&mut put, formats::DATE_TIME);
            put("pattern", ZONED.into());
        }
        FieldType::Email => put_format(&mut put, formats::EMAIL),
        FieldType::Url => put_format(&mut put, formats::URI),
        FieldType::File => {
            put_format(&mut put, formats::DATA_URL);
            put("pattern", BASE64_CONTENT.into());
            // Base64 turns every 3 bytes into 4 characters. A length is all a
            // schema can bound, and the header's length varies, so the bound
            // is the data URL of `max` bytes under a header of up to
            // DATA_URL_HEADER characters; both sides enforce exactly it.
            if let Some(bytes) = field.max.and_then(|max| count(max.floor())) {
                let length = bytes
                    .div_ceil(3)
                    .saturating_mul(4)
                    .saturating_add(DATA_URL_HEADER);
                put("maxLength", length.into());
            }
        }
        FieldType::Json => put_text(&mut put, formats::JSON, "application/json"),
        FieldType::Yaml => put_text(&mut put, formats::YAML, "application/yaml"),
    }
    if field.kind.is_textual() {
        if let Some(pattern) = &field.pattern {
            put("pattern", pattern.as_str().into());
        }
    }
    Value::Object(schema)
}

fn put_format(put: &mut impl FnMut(&str, Value), format: &str) {
    put("type", "string".into());
    put("format", format.into());
}

/// Text in a language: `format` is what is checked (a validator only
/// annotates `contentMediaType`), the media type says which language to tools.
fn put_text(put: &mut impl FnMut(&str, Value), format: &str, media_type: &str) {
    put_format(put, format);
    put("contentMediaType", media_type.into());
}

fn choices(field: &Field) -> &[Choice] {
    field.options.as_deref().unwrap_or_default()
}

/// `json` and `yaml` are submitted as text, so a default written as a JSON
/// value (which the README allows for `json`) is given as its text; JSON text
/// is YAML text too.
fn default_of(kind: FieldType, default: &Value) -> Value {
    match (kind, default) {
        (FieldType::Json | FieldType::Yaml, Value::String(_)) => default.clone(),
        (FieldType::Json | FieldType::Yaml, _) => serde_json::to_string_pretty(default)
            .map(Value::String)
            .unwrap_or_else(|_| default.clone()),
        _ => default.clone(),
    }
}

/// A length or item count: a whole, non-negative, finite number.
fn count(value: f64) -> Option<u64> {
    // `as` saturates, so a huge bound stays the largest count rather than wrapping.
    value.is_finite().then(|| value.max(0.0) as u64)
}

/// A bound written as an integer when it is one, so `min: 3` reads `3`, not `3.0`.
fn number(value: f64) -> Option<Value> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if value.fract() == 0.0 && value.abs() <= EXACT {
        return Some((value as i64).into());
    }
    Number::from_f64(value).map(Value::Number)
}

fn ui_schema(item: &CatalogItem) -> Value {
    let mut ui = Map::new();
    for field in &item.presentation.fields {
        let options = field_ui(field);
        if !options.is_empty() {
            ui.insert(field.id.clone(), Value::Object(options));
        }
    }
    let mut order: Vec<Value> = presentation_order(item)
        .into_iter()
        .map(|field| Value::from(field.id.as_str()))
        .collect();
    // RJSF throws when `ui:order` misses a property; `*` stands for any it
    // does not name.
    order.push("*".into());
    ui.insert("ui:order".into(), Value::Array(order));
    let groups = &item.presentation.groups;
    if !groups.is_empty() {
        let groups = groups.iter().map(|group| {
            let fields = item
                .presentation
                .fields
                .iter()
                .filter(|field| field.group.as_deref() == Some(group.id.as_str()))
                .map(|field| field.id.as_str());
            let mut entry = Map::new();
            entry.insert("id".into(), group.id.as_str().into());
            entry.insert("title".into(), group.title.as_str().into());
            if let Some(description) = &group.description {
                entry.insert("description".into(), description.as_str().into());
            }
            entry.insert("fields".into(), fields.collect());
            Value::Object(entry)
        });
        // A PAO extension: RJSF ignores unknown `ui:options` keys, PAO's portal
        // draws the sections from them.
        ui.insert(
            "ui:options".into(),
            json!({ "groups": groups.collect::<Vec<_>>() }),
        );
    }
    Value::Object(ui)
}

fn field_ui(field: &Field) -> Map<String, Value> {
    let mut ui = Map::new();
    if let Some(help) = &field.help {
        ui.insert("ui:help".into(), help.as_str().into());
    }
    if let Some(placeholder) = &field.placeholder {
        ui.insert("ui:placeholder".into(), placeholder.as_str().into());
    }
    let widget = match field.kind {
        FieldType::Text | FieldType::Json | FieldType::Yaml => Some("textarea"),
        FieldType::Password => Some("password"),
        FieldType::MultiSelection => Some("checkboxes"),
        _ => None,
    };
    if let Some(widget) = widget {
        ui.insert("ui:widget".into(), widget.into());
    }
    if matches!(field.kind, FieldType::Json | FieldType::Yaml) {
        ui.insert("ui:options".into(), json!({ "rows": CODE_ROWS }));
    }
    ui
}

/// The fields of each group in the groups' order, then the fields of no (known)
/// group; each field once, even when ids or groups repeat.
fn presentation_order(item: &CatalogItem) -> Vec<&Field> {
    let presentation = &item.presentation;
    let mut seen = HashSet::new();
    let mut order = Vec::with_capacity(presentation.fields.len());
    for group in &presentation.groups {
        let members = presentation
            .fields
            .iter()
            .filter(|field| field.group.as_deref() == Some(group.id.as_str()));
        for field in members {
            if seen.insert(field.id.as_str()) {
                order.push(field);
            }
        }
    }
    for field in &presentation.fields {
        if seen.insert(field.id.as_str()) {
            order.push(field);
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(groups: Value, fields: Value) -> CatalogItem {
        let item = json!({
            "schema_version": 2,
            "header": {
                "id": "postgres-database",
                "name": "PostgreSQL database",
                "version": "1.2.0",
                "owner": "data-platform",
                "category": "databases",
                "description": "A managed PostgreSQL database.",
                "tags": ["database"],
            },
            "presentation": { "groups": groups, "fields": fields },
            "fulfillment": {
                "mode": "manual",
                "manual": {
                    "jira": { "project": "DBA", "issue_type": "Task", "summary": "A database" },
                },
            },
        });
        serde_json::from_value(item).expect("a valid item")
    }

    fn validator(item: &CatalogItem) -> jsonschema::Validator {
        let schema = form(item).schema;
        jsonschema::draft202012::meta::validate(&schema).expect("a draft 2020-12 schema");
        jsonschema::draft202012::new(&schema).expect("a schema that compiles")
    }

    /// A field of `kind` with what that type allows, the property schema and
    /// the uiSchema entry it must give. The match keeps the table complete.
    fn case(kind: FieldType) -> (Value, Value, Value) {
        let base = |extra: Value, schema: Value| -> (Value, Value) {
            let mut field = json!({ "id": "f", "type": kind.name(), "label": "F" });
            let mut expected = json!({ "title": "F" });
            for (from, into) in [(extra, &mut field), (schema, &mut expected)] {
                if let (Value::Object(from), Some(into)) = (from, into.as_object_mut()) {
                    into.extend(from);
                }
            }
            (field, expected)
        };
        let no_ui = json!(null);
        let (field, schema, ui) = match kind {
            FieldType::String => {
                let (f, s) = base(
                    json!({ "min": 3, "max": 30, "pattern": "^[a-z]+$", "default": "app",
                            "help": "Lower case", "placeholder": "app" }),
                    json!({ "type": "string", "minLength": 3, "maxLength": 30,
                            "pattern": "^[a-z]+$", "default": "app", "description": "Lower case" }),
                );
                (
                    f,
                    s,
                    json!({ "ui:help": "Lower case", "ui:placeholder": "app" }),
                )
            }
            FieldType::Text => {
                let (f, s) = base(
                    json!({ "max": 500 }),
                    json!({ "type": "string", "maxLength": 500 }),
                );
                (f, s, json!({ "ui:widget": "textarea" }))
            }
            FieldType::Integer => {
                let (f, s) = base(
                    json!({ "min": 1, "max": 10, "default": 2 }),
                    json!({ "type": "integer", "minimum": 1, "maximum": 10, "default": 2 }),
                );
                (f, s, no_ui.clone())
            }
            FieldType::Number => {
                let (f, s) = base(
                    json!({ "min": 0.5, "max": 2 }),
                    json!({ "type": "number", "minimum": 0.5, "maximum": 2 }),
                );
                (f, s, no_ui.clone())
            }
            FieldType::Boolean => {
                let (f, s) = base(
                    json!({ "default": false }),
                    json!({ "type": "boolean", "default": false }),
                );
                (f, s, no_ui.clone())
            }
            FieldType::Selection => {
                let (f, s) = base(
                    json!({ "options": ["small", { "value": "large", "label": "Large (8 vCPU)" }] }),
                    json!({ "type": "string", "oneOf": [
                        { "const": "small", "title": "small" },
                        { "const": "large", "title": "Large (8 vCPU)" },
                    ] }),
                );
                (f, s, no_ui.clone())
            }
            FieldType::MultiSelection => {
                let (f, s) = base(
                    json!({ "options": ["a", { "value": "b", "label": "B" }], "min": 1, "max": 2 }),
                    json!({ "type": "array", "items": { "type": "string", "enum": ["a", "b"] },
                            "uniqueItems": true, "minItems": 1, "maxItems": 2 }),
                );
                (f, s, json!({ "ui:widget": "checkboxes" }))
            }
            FieldType::Date => {
                let (f, s) = base(json!({}), json!({ "type": "string", "format": "date" }));
                (f, s, no_ui.clone())
            }
            FieldType::Datetime => {
                let (f, s) = base(
                    json!({}),
                    json!({ "type": "string", "format": "date-time", "pattern": ZONED }),
                );
                (f, s, no_ui.clone())
            }
            FieldType::Email => {
                let (f, s) = base(
                    json!({ "pattern": "@example\\.com$" }),
                    json!({ "type": "string", "format": "email", "pattern": "@example\\.com$" }),
                );
                (f, s, no_ui.clone())
            }
            FieldType::Url => {
                let (f, s) = base(json!({}), json!({ "type": "string", "format": "uri" }));
                (f, s, no_ui.clone())
            }
            FieldType::Password => {
                let (f, s) = base(
                    json!({ "min": 12 }),
                    json!({ "type": "string", "minLength": 12, "writeOnly": true }),
                );
                (f, s, json!({ "ui:widget": "password" }))
            }
            FieldType::File => {
                // ceil(1000 / 3) * 4 + 256
                let (f, s) = base(
                    json!({ "max": 1000 }),
                    json!({ "type": "string", "format": "data-url",
                            "pattern": BASE64_CONTENT, "maxLength": 1592 }),
                );
                (f, s, no_ui.clone())
            }
            FieldType::Json => {
                let (f, s) = base(
                    json!({ "default": { "a": 1 } }),
                    json!({ "type": "string", "format": "json", "contentMediaType": "application/json",
                            "default": "{\n  \"a\": 1\n}" }),
                );
                (
                    f,
                    s,
                    json!({ "ui:widget": "textarea", "ui:options": { "rows": 8 } }),
                )
            }
            FieldType::Yaml => {
                let (f, s) = base(
                    json!({}),
                    json!({ "type": "string", "format": "yaml", "contentMediaType": "application/yaml" }),
                );
                (
                    f,
                    s,
                    json!({ "ui:widget": "textarea", "ui:options": { "rows": 8 } }),
                )
            }
        };
        (field, schema, ui)
    }

    #[test]
    fn every_field_type_has_its_schema_and_widget() {
        for &kind in FieldType::ALL {
            let (field, expected, expected_ui) = case(kind);
            let item = item(json!([]), json!([field]));
            let Form { schema, ui_schema } = form(&item);
            assert_eq!(schema["properties"]["f"], expected, "{}", kind.name());
            assert_eq!(ui_schema["f"], expected_ui, "{}", kind.name());
            jsonschema::draft202012::meta::validate(&schema)
                .unwrap_or_else(|error| panic!("{}: {error}", kind.name()));
            jsonschema::draft202012::new(&schema)
                .unwrap_or_else(|error| panic!("{}: {error}", kind.name()));
        }
    }

    fn database() -> CatalogItem {
        item(
            json!([
                { "id": "basics", "title": "Basics", "description": "What to create" },
                { "id": "sizing", "title": "Sizing" },
            ]),
            json!([
                { "id": "db_name", "type": "string", "label": "Database name", "group": "basics",
                  "required": true, "pattern": "^[a-z][a-z0-9_]*$", "min": 3, "max": 30 },
                { "id": "notes", "type": "text", "label": "Notes" },
                { "id": "size", "type": "integer", "label": "Size", "group": "sizing",
                  "min": 1, "max": 10 },
                { "id": "engine", "type": "selection", "label": "Engine", "group": "basics",
                  "required": true,
                  "options": ["postgres", { "value": "aurora", "label": "Aurora" }, "custom"] },
                { "id": "engine_image", "type": "string", "label": "Image", "group": "basics",
                  "required": true, "show_if": { "field": "engine", "equals": "custom" } },
                { "id": "image_digest", "type": "string", "label": "Digest",
                  "show_if": { "field": "engine_image", "equals": "pinned" } },
                { "id": "backup_window", "type": "string", "label": "Backup window",
                  "show_if": { "field": "engine", "not_equals": "custom" } },
                { "id": "replicas", "type": "integer", "label": "Replicas", "group": "sizing",
                  "required": true, "show_if": { "field": "engine", "in": ["postgres", "aurora"] } },
                { "id": "extensions", "type": "multi-selection", "label": "Extensions",
                  "options": ["postgis", "pgvector", "timescaledb"], "max": 2 },
            ]),
        )
    }

    fn valid() -> Value {
        json!({ "db_name": "orders", "engine": "postgres", "replicas": 2, "size": 4,
                "backup_window": "03:00-04:00", "extensions": ["postgis"] })
    }

    fn with(changes: Value) -> Value {
        let mut submission = valid();
        if let (Some(submission), Value::Object(changes)) = (submission.as_object_mut(), changes) {
            for (key, value) in changes {
                if value.is_null() {
                    submission.remove(&key);
                } else {
                    submission.insert(key, value);
                }
            }
        }
        submission
    }

    #[test]
    fn root_is_a_closed_draft_2020_12_object() {
        let schema = form(&database()).schema;
        assert_eq!(schema["$schema"], DRAFT_2020_12);
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["title"], "PostgreSQL database");
        assert_eq!(schema["description"], "A managed PostgreSQL database.");
        assert_eq!(schema["required"], json!(["db_name", "engine"]));
        assert_eq!(schema["unevaluatedProperties"], false);
        assert!(schema.get("additionalProperties").is_none());
        assert!(schema["properties"].get("engine_image").is_none());
        assert_eq!(
            schema["allOf"][0],
            json!({
                "if": { "properties": { "engine": { "const": "custom" } }, "required": ["engine"] },
                "then": {
                    "properties": { "engine_image": { "type": "string", "title": "Image" } },
                    "required": ["engine_image"],
                },
            })
        );
        // An optional conditional field brings no `required`.
        assert!(schema["allOf"][2]["then"].get("required").is_none());
        validator(&database());
    }

    #[test]
    fn fields_sharing_a_condition_share_an_entry() {
        let item = item(
            json!([]),
            json!([
                { "id": "mode", "type": "boolean", "label": "Mode" },
                { "id": "a", "type": "string", "label": "A", "required": true,
                  "show_if": { "field": "mode", "equals": true } },
                { "id": "b", "type": "string", "label": "B",
                  "show_if": { "field": "mode", "equals": true } },
            ]),
        );
        let schema = form(&item).schema;
        assert_eq!(schema["allOf"].as_array().map(Vec::len), Some(1));
        assert_eq!(schema["allOf"][0]["then"]["required"], json!(["a"]));
        let validator = validator(&item);
        assert!(validator.is_valid(&json!({ "mode": true, "a": "x", "b": "y" })));
        assert!(!validator.is_valid(&json!({ "mode": false, "b": "y" })));
    }

    #[test]
    fn submissions_are_checked() {
        let validator = validator(&database());
        let accepted = |submission: Value| validator.is_valid(&submission);
        assert!(accepted(valid()));
        assert!(
            !accepted(with(json!({ "db_name": null }))),
            "missing required"
        );
        assert!(!accepted(with(json!({ "size": "four" }))), "wrong type");
        assert!(!accepted(with(json!({ "size": 4.5 }))), "not an integer");
        assert!(!accepted(with(json!({ "size": 11 }))), "above maximum");
        assert!(!accepted(with(json!({ "db_name": "Orders" }))), "pattern");
        assert!(!accepted(with(json!({ "db_name": "ab" }))), "too short");
        assert!(
            !accepted(with(json!({ "engine": "oracle" }))),
            "not an option"
        );
        assert!(
            !accepted(with(json!({ "extensions": ["oracle"] }))),
            "not an option"
        );
        assert!(
            !accepted(with(json!({ "extensions": ["postgis", "postgis"] }))),
            "repeated"
        );
        assert!(
            !accepted(with(
                json!({ "extensions": ["postgis", "pgvector", "timescaledb"] })
            )),
            "too many"
        );
        assert!(
            accepted(with(json!({ "engine": "aurora" }))),
            "a labelled option"
        );
        assert!(
            !accepted(with(json!({ "dbname": "orders" }))),
            "unknown key"
        );
    }

    #[test]
    fn equals_makes_a_field_required_or_rejected() {
        let validator = validator(&database());
        let custom = json!({ "engine": "custom", "replicas": null, "backup_window": null });
        assert!(
            !validator.is_valid(&with(custom.clone())),
            "required when shown"
        );
        let mut shown = with(custom);
        shown["engine_image"] = json!("registry/pg:16");
        assert!(validator.is_valid(&shown));
        assert!(
            !validator.is_valid(&with(json!({ "engine_image": "registry/pg:16" }))),
            "rejected when hidden"
        );
    }

    #[test]
    fn not_equals_shows_a_field_unless_the_value_matches() {
        let validator = validator(&database());
        assert!(validator.is_valid(&with(json!({ "backup_window": "03:00-04:00" }))));
        let custom = json!({ "engine": "custom", "replicas": null, "engine_image": "pg",
                             "backup_window": null });
        assert!(validator.is_valid(&with(custom.clone())));
        let mut hidden = with(custom);
        hidden["backup_window"] = json!("03:00-04:00");
        assert!(!validator.is_valid(&hidden), "rejected when hidden");
        // As `Condition::holds(None)`: an absent field equals nothing.
        let item = item(
            json!([]),
            json!([
                { "id": "tier", "type": "string", "label": "Tier" },
                { "id": "reason", "type": "string", "label": "Reason", "required": true,
                  "show_if": { "field": "tier", "not_equals": "gold" } },
            ]),
        );
        let absent = super::tests::validator(&item);
        assert!(absent.is_valid(&json!({ "reason": "cost" })));
        assert!(!absent.is_valid(&json!({})));
    }

    #[test]
    fn in_shows_a_field_for_any_listed_value() {
        let validator = validator(&database());
        assert!(validator.is_valid(&with(json!({ "engine": "aurora", "replicas": 3 }))));
        assert!(
            !validator.is_valid(&with(json!({ "engine": "aurora", "replicas": null }))),
            "required when shown"
        );
        let custom = json!({ "engine": "custom", "engine_image": "pg", "backup_window": null });
        assert!(!validator.is_valid(&with(custom)), "rejected when hidden");
    }

    #[test]
    fn a_condition_on_a_hidden_field_does_not_let_it_through() {
        let validator = validator(&database());
        // engine_image is hidden (engine is postgres); the test on it in
        // image_digest's `if` must not count as declaring it.
        let leaked = with(json!({ "engine_image": "pinned", "image_digest": "sha256:00" }));
        assert!(!validator.is_valid(&leaked));
        let custom = json!({ "engine": "custom", "replicas": null, "backup_window": null,
                             "engine_image": "pinned", "image_digest": "sha256:00" });
        assert!(validator.is_valid(&with(custom)));
    }

    #[test]
    fn order_follows_groups_then_ungrouped_then_the_rest() {
        let ui = form(&database()).ui_schema;
        assert_eq!(
            ui["ui:order"],
            json!([
                "db_name",
                "engine",
                "engine_image",
                "size",
                "replicas",
                "notes",
                "image_digest",
                "backup_window",
                "extensions",
                "*",
            ])
        );
        assert_eq!(
            ui["ui:options"]["groups"],
            json!([
                { "id": "basics", "title": "Basics", "description": "What to create",
                  "fields": ["db_name", "engine", "engine_image"] },
                { "id": "sizing", "title": "Sizing", "fields": ["size", "replicas"] },
            ])
        );
        assert_eq!(ui["notes"], json!({ "ui:widget": "textarea" }));
        assert_eq!(ui["extensions"], json!({ "ui:widget": "checkboxes" }));
        assert!(ui.get("db_name").is_none(), "no entry without a ui key");
    }

    #[test]
    fn without_groups_there_are_no_group_options() {
        let item = item(
            json!([]),
            json!([{ "id": "a", "type": "string", "label": "A" }]),
        );
        let ui = form(&item).ui_schema;
        assert_eq!(ui, json!({ "ui:order": ["a", "*"] }));
    }

    #[test]
    fn an_invalid_item_still_gives_a_valid_schema() {
        let mut item = item(
            json!([{ "id": "g", "title": "G" }, { "id": "g", "title": "G again" }]),
            json!([
                { "id": "a", "type": "string", "label": "A", "group": "nowhere",
                  "show_if": { "field": "missing" } },
                { "id": "a", "type": "selection", "label": "A again", "group": "g" },
                { "id": "b", "type": "integer", "label": "B", "min": 1e300, "max": -0.5,
                  "show_if": { "field": "missing", "equals": 1 } },
                { "id": "c", "type": "file", "label": "C", "max": 1e300 },
                { "id": "d", "type": "multi-selection", "label": "D", "min": -3 },
            ]),
        );
        item.presentation.fields[0].min = Some(f64::NAN);
        item.presentation.fields[0].max = Some(f64::INFINITY);
        let Form { schema, ui_schema } = form(&item);
        assert_eq!(ui_schema["ui:order"], json!(["a", "b", "c", "d", "*"]));
        assert!(schema["properties"]["a"].get("minLength").is_none());
        assert_eq!(schema["properties"]["d"]["minItems"], 0);
        jsonschema::draft202012::meta::validate(&schema).expect("a draft 2020-12 schema");
        let validator = jsonschema::draft202012::new(&schema).expect("a schema that compiles");
        assert!(
            !validator.is_valid(&json!({ "missing": 1, "b": 2 })),
            "unknown key"
        );
    }

    #[test]
    fn form_serializes_with_the_rjsf_key() {
        let item = item(json!([]), json!([]));
        let value = serde_json::to_value(form(&item)).expect("serializable");
        assert!(value.get("schema").is_some());
        assert_eq!(value["uiSchema"], json!({ "ui:order": ["*"] }));
    }
}
