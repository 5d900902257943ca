//! The checks of one file that a schema cannot say: ids, groups, fields
//! and their rules, `show_if` conditions; each error located by its path.

use std::collections::{BTreeMap, BTreeSet};

use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use serde_json::Value;

use super::fulfillment::find_cycle;
use super::schemas::{closest, explain, known_keys};
use super::values::{fits, fits_operand, is_valid_pattern};
use super::{Diagnostic, MAX_SCHEMA_ERRORS};
use crate::catalog::item::{CatalogItem, Condition, Field, FieldType};
use crate::catalog::source::{Document, Location};

/// The checks of one file, collecting located diagnostics.
pub(super) struct Check<'a> {
    pub(super) file: &'a str,
    pub(super) document: &'a Document,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl<'a> Check<'a> {
    pub(super) fn new(file: &'a str, document: &'a Document) -> Self {
        Self {
            file,
            document,
            diagnostics: Vec::new(),
        }
    }

    pub(super) fn finish(mut self) -> Vec<Diagnostic> {
        self.diagnostics
            .sort_by_key(|d| (d.line, d.column, d.message.clone()));
        self.diagnostics.dedup();
        self.diagnostics
    }

    pub(super) fn push(&mut self, pointer: &str, location: Location, message: String) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_string(),
            line: location.line,
            column: location.column,
            path: yaml_path(&self.document.value, pointer),
            message,
        });
    }

    /// A problem with the value at `pointer`.
    pub(super) fn at(&mut self, pointer: &str, message: impl Into<String>) {
        let location = self.document.locate(pointer);
        self.push(pointer, location, message.into());
    }

    /// A problem with the key of the entry at `pointer`.
    pub(super) fn at_key(&mut self, pointer: &str, message: impl Into<String>) {
        let location = self.document.locate_key(pointer);
        self.push(pointer, location, message.into());
    }

    /// The file's value at `pointer` (`Null` when absent), borrowed from the
    /// document rather than copied out of the typed item.
    pub(super) fn value_at(&self, pointer: &str) -> &'a Value {
        const NULL: &Value = &Value::Null;
        self.document.value.pointer(pointer).unwrap_or(NULL)
    }

    // ------------------------------------------------------------ JSON Schema

    /// Validates `instance` (found at `base` in the file) against a schema.
    pub(super) fn schema(
        &mut self,
        schema: &Value,
        validator: &Validator,
        instance: &Value,
        base: &str,
    ) {
        for error in validator.iter_errors(instance).take(MAX_SCHEMA_ERRORS) {
            let pointer = format!("{base}{}", error.instance_path().as_str());
            match error.kind() {
                ValidationErrorKind::Required { property } => {
                    let name = property.as_str().unwrap_or_default();
                    self.at(&pointer, format!("missing required key `{name}`"));
                }
                ValidationErrorKind::AdditionalProperties { unexpected }
                | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                    let known = known_keys(schema, error.schema_path().as_str());
                    for key in unexpected {
                        let mut message = format!("unknown key `{key}`");
                        if let Some(suggestion) = closest(key, &known) {
                            message.push_str(&format!(" (did you mean `{suggestion}`?)"));
                        }
                        self.at_key(&format!("{pointer}/{}", escape(key)), message);
                    }
                }
                _ => {
                    let message = explain(&error, &pointer);
                    self.at(&pointer, message);
                }
            }
        }
    }

    // ------------------------------------------------------------ the item

    pub(super) fn item(&mut self, item: &CatalogItem) {
        self.groups(item);
        self.fields(item);
        self.fulfillment(item);
    }

    pub(super) fn groups(&mut self, item: &CatalogItem) {
        let mut seen = BTreeSet::new();
        for (index, group) in item.presentation.groups.iter().enumerate() {
            if !seen.insert(group.id.as_str()) {
                self.at(
                    &format!("/presentation/groups/{index}/id"),
                    format!("duplicate group id `{}`", group.id),
                );
            }
        }
    }

    pub(super) fn fields(&mut self, item: &CatalogItem) {
        let groups: BTreeSet<&str> = item
            .presentation
            .groups
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        let mut seen = BTreeSet::new();
        for (index, field) in item.presentation.fields.iter().enumerate() {
            let at = format!("/presentation/fields/{index}");
            if !seen.insert(field.id.as_str()) {
                self.at(
                    &format!("{at}/id"),
                    format!("duplicate field id `{}`", field.id),
                );
            }
            if let Some(group) = &field.group {
                if !groups.contains(group.as_str()) {
                    self.at(
                        &format!("{at}/group"),
                        format!("group `{group}` is not defined in presentation.groups"),
                    );
                }
            }
            self.field_rules(field, &at);
            if let Some(condition) = &field.show_if {
                if condition.field == field.id {
                    self.at(
                        &format!("{at}/show_if/field"),
                        "a field cannot be shown on a condition on itself",
                    );
                } else {
                    self.condition(item, condition, &format!("{at}/show_if"));
                }
            }
        }
        self.show_if_cycles(item);
    }

    pub(super) fn field_rules(&mut self, field: &Field, at: &str) {
        let kind = field.kind.name();
        match (&field.options, field.kind.has_options()) {
            (None, true) => self.at(at, format!("a {kind} field needs `options`")),
            (Some(_), false) => self.at_key(
                &format!("{at}/options"),
                format!("`options` apply to selection and multi-selection fields, not to a {kind} field"),
            ),
            (Some(options), true) => {
                let mut values = BTreeSet::new();
                for (index, choice) in options.iter().enumerate() {
                    if !values.insert(choice.value()) {
                        self.at(
                            &format!("{at}/options/{index}"),
                            format!("duplicate option `{}`", choice.value()),
                        );
                    }
                }
            }
            (None, false) => {}
        }
        if let Some(pattern) = &field.pattern {
            if !field.kind.is_textual() {
                self.at_key(
                    &format!("{at}/pattern"),
                    format!("`pattern` does not apply to a {kind} field"),
                );
            } else if !is_valid_pattern(pattern) {
                self.at(
                    &format!("{at}/pattern"),
                    format!("`{pattern}` is not a valid regular expression"),
                );
            }
        }
        for (key, bound) in [("min", field.min), ("max", field.max)] {
            let Some(bound) = bound else { continue };
            if !field.kind.has_bounds() {
                self.at_key(
                    &format!("{at}/{key}"),
                    format!("`{key}` does not apply to a {kind} field"),
                );
            } else if field.kind != FieldType::Number && (bound < 0.0 || bound.fract() != 0.0) {
                self.at(
                    &format!("{at}/{key}"),
                    format!("`{key}` of a {kind} field must be a whole number of 0 or more"),
                );
            }
        }
        if let (Some(min), Some(max)) = (field.min, field.max) {
            if min > max {
                self.at(
                    &format!("{at}/min"),
                    format!("`min` ({min}) is greater than `max` ({max})"),
                );
            }
        }
        if let Some(default) = &field.default {
            if let Err(reason) = fits(field, default) {
                self.at(&format!("{at}/default"), format!("default {reason}"));
            }
        }
    }

    pub(super) fn condition(&mut self, item: &CatalogItem, condition: &Condition, at: &str) {
        let Some(target) = item.field(&condition.field) else {
            self.at(
                &format!("{at}/field"),
                format!("`{}` is not a field of this item", condition.field),
            );
            return;
        };
        if target.kind.has_options() && target.options.is_none() {
            return; // reported on the field itself
        }
        for operand in condition.operands() {
            if let Err(reason) = fits_operand(target, operand) {
                self.at(at, format!("compares field `{}` with {reason}", target.id));
            }
        }
    }

    pub(super) fn show_if_cycles(&mut self, item: &CatalogItem) {
        let edges: BTreeMap<&str, Vec<&str>> = item
            .presentation
            .fields
            .iter()
            .filter_map(|f| {
                f.show_if
                    .as_ref()
                    .map(|c| (f.id.as_str(), vec![c.field.as_str()]))
            })
            .collect();
        if let Some(cycle) = find_cycle(&edges) {
            let index = item
                .presentation
                .fields
                .iter()
                .position(|f| f.id == cycle[0])
                .unwrap_or(0);
            self.at(
                &format!("/presentation/fields/{index}/show_if"),
                format!("show_if conditions form a cycle: {}", cycle.join(" → ")),
            );
        }
    }
}

pub(super) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// `/fulfillment/automated/actions/1/depends_on/0` → `fulfillment.automated.actions[1].depends_on[0]`.
pub(super) fn yaml_path(root: &Value, pointer: &str) -> String {
    let mut path = String::new();
    let mut node = Some(root);
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        match node {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{segment}]"));
                node = segment.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            Some(Value::Object(map)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&segment);
                node = map.get(&segment);
            }
            _ => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&segment);
                node = None;
            }
        }
    }
    path
}
