//! Whether a value fits a field, and how values and types are said in
//! messages.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use jsonschema::error::TypeKind;
use serde_json::Value;

use crate::catalog::item::{Field, FieldType};

/// Whether `value` can be the value of `field`, said as "… must be …".
pub(super) fn fits(field: &Field, value: &Value) -> Result<(), String> {
    let kind = field.kind;
    let ok = match kind {
        FieldType::Integer => value.is_i64() || value.is_u64(),
        FieldType::Number => value.is_number(),
        FieldType::Boolean => value.is_boolean(),
        FieldType::Selection => value
            .as_str()
            .is_some_and(|v| options_of(field).contains(&v)),
        FieldType::MultiSelection => value.as_array().is_some_and(|values| {
            values
                .iter()
                .all(|v| v.as_str().is_some_and(|v| options_of(field).contains(&v)))
        }),
        _ => value.is_string(),
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        FieldType::Selection => format!(
            "must be one of the options: {}",
            options_of(field).join(", ")
        ),
        FieldType::MultiSelection => format!(
            "must be a list of options: {}",
            options_of(field).join(", ")
        ),
        FieldType::Integer => format!("must be an integer, not {}", describe(value)),
        FieldType::Number => format!("must be a number, not {}", describe(value)),
        FieldType::Boolean => format!("must be true or false, not {}", describe(value)),
        _ => format!(
            "must be text for a {} field, not {}",
            kind.name(),
            describe(value)
        ),
    })
}

/// Whether a condition may compare `field` with `value`; a multi-selection
/// compares with one of its options (`in`/`equals` test membership there).
pub(super) fn fits_operand(field: &Field, value: &Value) -> Result<(), String> {
    let as_single = Field {
        kind: FieldType::Selection,
        ..field.clone()
    };
    let target = if field.kind == FieldType::MultiSelection {
        &as_single
    } else {
        field
    };
    fits(target, value).map_err(|_| {
        let shown = describe(value);
        if field.kind.has_options() {
            format!(
                "{shown}, which is not one of its options: {}",
                options_of(field).join(", ")
            )
        } else {
            format!("{shown}, but it is a {} field", field.kind.name())
        }
    })
}

pub(super) fn options_of(field: &Field) -> Vec<&str> {
    field
        .options
        .iter()
        .flatten()
        .map(|choice| choice.value())
        .collect()
}

/// Whether `pattern` compiles with fancy-regex, the engine the JSON Schema
/// validator tests `pattern` keywords with (form and requests API alike).
/// Compiling is the only complete check (a parse misses `[z-a]`) and costs
/// up to a millisecond for Unicode classes such as `\w`; the answer never
/// changes, and catalogs reuse their patterns, so it is kept per process.
pub(super) fn is_valid_pattern(pattern: &str) -> bool {
    static KNOWN: LazyLock<Mutex<HashMap<String, bool>>> = LazyLock::new(Default::default);
    const MAX_KNOWN: usize = 4096;
    if let Some(known) = KNOWN
        .lock()
        .ok()
        .and_then(|known| known.get(pattern).copied())
    {
        return known;
    }
    let valid = fancy_regex::Regex::new(pattern).is_ok();
    if let Ok(mut known) = KNOWN.lock() {
        if known.len() >= MAX_KNOWN {
            known.clear();
        }
        known.insert(pattern.to_string(), valid);
    }
    valid
}

/// A value as a person would name it: `a string ("x")`, `an integer (3)`.
pub(super) fn describe(value: &Value) -> String {
    let shown = value.to_string();
    let shown = if shown.chars().count() > 40 {
        format!("{}…", shown.chars().take(40).collect::<String>())
    } else {
        shown
    };
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(_) => format!("a boolean ({shown})"),
        Value::Number(n) if n.is_f64() => format!("a number ({shown})"),
        Value::Number(_) => format!("an integer ({shown})"),
        Value::String(_) => format!("a string ({shown})"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

pub(super) fn type_name(kind: &TypeKind) -> String {
    let name = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "integer" => "an integer".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        TypeKind::Single(t) => name(t),
        TypeKind::Multiple(types) => types
            .iter()
            .map(|t| name(&t))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}
