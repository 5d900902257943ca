//! A submission's fields checked against the item's form: the same JSON
//! Schema the portal renders, conditions included, with each `format` it
//! declares checked by the same definition as the portal's
//! ([`formats`]). Nothing is checked that the schema does not declare, so
//! the portal and the API refuse the same values. Errors name the field and
//! never repeat the value: it may be a password.

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, ValidationError, Validator};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::catalog::form::{form, formats, BASE64_CONTENT, ZONED};
use crate::catalog::item::{CatalogItem, FieldType};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field id; empty for the form as a whole.
    pub field: String,
    /// JSON pointer into `fields`.
    pub path: String,
    pub message: String,
}

/// The validator of an item's form, compiled once per item version.
pub fn compile(item: &CatalogItem) -> Result<Validator, String> {
    let options = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        // A format without a definition here would pass on one side only.
        .should_ignore_unknown_formats(false);
    formats::ALL
        .into_iter()
        .fold(options, |options, (name, check)| {
            options.with_format(name, check)
        })
        .build(&form(item).schema)
        .map_err(|err| err.to_string())
}

/// Checks `fields` and returns them as an object.
/// The submitted values plus the default of every field left out that the
/// form shows (its `show_if` holds on the values as they stand), as the
/// portal's form would have filled them: templates and the request record
/// see what the developer was offered.
fn with_defaults(item: &CatalogItem, values: &Map<String, Value>) -> Map<String, Value> {
    let mut filled = values.clone();
    for field in &item.presentation.fields {
        let Some(default) = &field.default else {
            continue;
        };
        let shown = field
            .show_if
            .as_ref()
            .is_none_or(|condition| condition.holds(filled.get(&condition.field)));
        if shown && !filled.contains_key(&field.id) {
            filled.insert(field.id.clone(), default.clone());
        }
    }
    filled
}

pub fn check(
    item: &CatalogItem,
    validator: &Validator,
    fields: &Value,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let Value::Object(values) = fields else {
        return Err(vec![FieldError {
            field: String::new(),
            path: String::new(),
            message: "`fields` must be an object of field id to value".to_string(),
        }]);
    };
    let mut errors: Vec<FieldError> = validator
        .iter_errors(fields)
        .flat_map(|e| explain(&e))
        .collect();
    if errors.is_empty() {
        Ok(with_defaults(item, values))
    } else {
        errors.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
        errors.dedup();
        Err(errors)
    }
}

fn explain(error: &ValidationError<'_>) -> Vec<FieldError> {
    let path = error.instance_path().as_str().to_string();
    let field = path.split('/').nth(1).unwrap_or_default().to_string();
    let at = |field: &str, message: String| FieldError {
        field: field.to_string(),
        path: format!("/{field}"),
        message,
    };
    let message = match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            return vec![at(name, "is required".to_string())];
        }
        ValidationErrorKind::UnevaluatedProperties { unexpected }
        | ValidationErrorKind::AdditionalProperties { unexpected } => {
            return unexpected
                .iter()
                .map(|name| {
                    at(
                        name,
                        "is not a field of this form, or is hidden by its condition".to_string(),
                    )
                })
                .collect();
        }
        ValidationErrorKind::Type { kind } => format!("must be {}", type_words(kind)),
        ValidationErrorKind::Pattern { pattern } if pattern == ZONED => {
            "must end in a time zone (Z or ±HH:MM)".to_string()
        }
        ValidationErrorKind::Pattern { pattern } if pattern == BASE64_CONTENT => {
            "must have base64 content".to_string()
        }
        ValidationErrorKind::Pattern { .. } => "does not match the required pattern".to_string(),
        ValidationErrorKind::MinLength { limit } => format!("must be at least {limit} characters"),
        ValidationErrorKind::MaxLength { limit } => format!("must be at most {limit} characters"),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::MinItems { limit } => format!("choose at least {limit}"),
        ValidationErrorKind::MaxItems { limit } => format!("choose at most {limit}"),
        ValidationErrorKind::UniqueItems => "must not repeat a choice".to_string(),
        ValidationErrorKind::Enum { .. }
        | ValidationErrorKind::Constant { .. }
        | ValidationErrorKind::OneOfNotValid { .. } => "must be one of the options".to_string(),
        ValidationErrorKind::Format { format } => {
            format!("must be {}", formats::expectation(format))
        }
        _ => "is not valid".to_string(),
    };
    vec![FieldError {
        field,
        path,
        message,
    }]
}

fn type_words(kind: &jsonschema::error::TypeKind) -> String {
    let words = |t: String| match t.as_str() {
        "integer" => "a whole number".to_string(),
        "number" => "a number".to_string(),
        "boolean" => "true or false".to_string(),
        "array" => "a list".to_string(),
        "object" => "an object".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        jsonschema::error::TypeKind::Single(t) => words(t.to_string()),
        jsonschema::error::TypeKind::Multiple(types) => types
            .iter()
            .map(|t| words(t.to_string()))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// The password fields of `values`, which go to Secrets Manager.
pub fn passwords<'a>(
    item: &CatalogItem,
    values: &'a Map<String, Value>,
) -> Vec<(&'a str, &'a str)> {
    item.presentation
        .fields
        .iter()
        .filter(|field| field.kind == FieldType::Password)
        .filter_map(|field| {
            let (id, value) = values.get_key_value(&field.id)?;
            Some((id.as_str(), value.as_str()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATABASE: &[u8] = include_bytes!("../../../catalog/items/rest-database.yaml");

    fn item() -> CatalogItem {
        crate::catalog::validate::validate_file("rest-database.yaml", DATABASE)
            .unwrap()
            .item
    }

    fn valid_fields() -> Value {
        serde_json::json!({
            "db_name": "orders", "engine": "postgres", "environment": "dev", "plan": "small",
            "admin_username": "admin", "storage_gb": 20,
            "admin_password": "correct horse battery staple 1!"
        })
    }

    fn errors(fields: Value) -> Vec<FieldError> {
        let item = item();
        let validator = compile(&item).unwrap();
        check(&item, &validator, &fields).unwrap_err()
    }

    #[test]
    fn a_valid_submission_passes_and_passwords_are_found() {
        let item = item();
        let validator = compile(&item).unwrap();
        let values = check(&item, &validator, &valid_fields()).unwrap();
        assert_eq!(
            passwords(&item, &values),
            vec![("admin_password", "correct horse battery staple 1!")]
        );
    }

    #[test]
    fn defaults_fill_the_fields_left_out_that_the_form_shows() {
        let item = item();
        let validator = compile(&item).unwrap();
        let values = check(&item, &validator, &valid_fields()).unwrap();
        assert_eq!(values["high_availability"], false);
        assert_eq!(values["backup_retention_days"], 7);
        // Shown for postgres, the engine chosen; mysql's stays out.
        assert_eq!(values["postgres_version"], "16");
        assert!(!values.contains_key("mysql_version"));
        // A value given is kept.
        let mut fields = valid_fields();
        fields["backup_retention_days"] = 14.into();
        let values = check(&item, &validator, &fields).unwrap();
        assert_eq!(values["backup_retention_days"], 14);
    }

    #[test]
    fn errors_name_the_field_and_never_echo_the_value() {
        let mut fields = valid_fields();
        fields["db_name"] = "Orders!".into();
        fields["admin_password"] = "x".into();
        let errors = errors(fields);
        let named: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(
            named.contains(&"db_name") && named.contains(&"admin_password"),
            "{errors:?}"
        );
        for error in &errors {
            assert!(!error.message.contains("Orders!"), "{error:?}");
            assert!(
                !error.message.contains('x') || !error.message.contains("\"x\""),
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let mut fields = valid_fields();
        fields.as_object_mut().unwrap().remove("db_name");
        assert!(errors(fields).contains(&FieldError {
            field: "db_name".into(),
            path: "/db_name".into(),
            message: "is required".into()
        }));
    }

    #[test]
    fn a_field_hidden_by_its_condition_is_refused() {
        let mut fields = valid_fields();
        fields["mysql_version"] = "8.4".into(); // shown only for engine mysql
        assert!(errors(fields)
            .iter()
            .any(|e| e.field == "mysql_version" && e.message.contains("hidden by its condition")));
    }

    #[test]
    fn fields_must_be_an_object() {
        assert_eq!(
            errors(serde_json::json!([1, 2]))[0].message,
            "`fields` must be an object of field id to value"
        );
    }
}
