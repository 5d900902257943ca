//! Catalog validation: the same checks in `pao catalog validate`, in the
//! ingest function and in the tests. A file passes three gates in order —
//! readable YAML (`source`), the item JSON Schema, then the checks a schema
//! cannot say (ids, references, dependency graph, templates, each action's
//! config against its type's schema) — and every error names the file, the
//! YAML path, the line and the column.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{LazyLock, Mutex};

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::item::{ActionType, CatalogItem, Condition, Field, FieldType, Mode};
use super::source::{self, Document, Limits, Location};
use crate::template::{self, Reference};

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// The YAML path, such as `fulfillment.automated.actions[1].depends_on[0]`;
    /// empty for the file as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// An item that passed every check, with the hash of the bytes it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidItem {
    pub item: CatalogItem,
    /// `sha256:<hex>` of the file's bytes.
    pub content_hash: String,
}

/// At most this many schema errors per file: the first ones say enough.
const MAX_SCHEMA_ERRORS: usize = 50;

pub const ITEM_SCHEMA: &str = include_str!("../../../catalog/schema/catalog-item.v2.schema.json");

/// The JSON Schema of an action type's `config`.
pub fn action_schema(kind: ActionType) -> &'static str {
    match kind {
        ActionType::JiraTicket => {
            include_str!("../../../catalog/schema/actions/jira-ticket.schema.json")
        }
        ActionType::RestApi => include_str!("../../../catalog/schema/actions/rest-api.schema.json"),
        ActionType::Webhook => include_str!("../../../catalog/schema/actions/webhook.schema.json"),
        ActionType::GithubWorkflow => {
            include_str!("../../../catalog/schema/actions/github-workflow.schema.json")
        }
        ActionType::Terraform => {
            include_str!("../../../catalog/schema/actions/terraform.schema.json")
        }
        ActionType::AwsNetwork => {
            include_str!("../../../catalog/schema/actions/aws-network.schema.json")
        }
        ActionType::AwsRdsPostgres => {
            include_str!("../../../catalog/schema/actions/aws-rds-postgres.schema.json")
        }
        ActionType::AwsSecret => {
            include_str!("../../../catalog/schema/actions/aws-secret.schema.json")
        }
        ActionType::AwsEksCluster => {
            include_str!("../../../catalog/schema/actions/aws-eks-cluster.schema.json")
        }
        ActionType::KubernetesDeploy => {
            include_str!("../../../catalog/schema/actions/kubernetes-deploy.schema.json")
        }
    }
}

struct Schemas {
    item: (Value, Validator),
    actions: HashMap<ActionType, (Value, Validator)>,
    retain: (Value, Validator),
}

fn compile(text: &str) -> (Value, Validator) {
    // The schemas are part of the binary and tested: failing here is a build defect.
    let schema: Value = serde_json::from_str(text).expect("an embedded schema is JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("an embedded schema compiles");
    (schema, validator)
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| Schemas {
    item: compile(ITEM_SCHEMA),
    actions: ActionType::ALL
        .iter()
        .map(|kind| (*kind, compile(action_schema(*kind))))
        .collect(),
    retain: compile(
        r#"{"type": "object", "additionalProperties": false,
            "properties": {"retain": {"type": "boolean"}}, "required": ["retain"]}"#,
    ),
});

/// Validates one file on its own.
pub fn validate_file(file: &str, bytes: &[u8]) -> Result<ValidItem, Vec<Diagnostic>> {
    // Most files have nothing to report, and locations are only needed to
    // report: check without them first, and parse again with them when
    // there is something to say.
    if let Some(document) = source::parse_unlocated(bytes, &Limits::default()) {
        if let Ok(valid) = check_document(file, bytes, &document) {
            return Ok(valid);
        }
    }
    let document = source::parse(bytes, &Limits::default()).map_err(|err| {
        vec![Diagnostic {
            file: file.to_string(),
            line: err.location.line,
            column: err.location.column,
            path: String::new(),
            message: err.message,
        }]
    })?;
    check_document(file, bytes, &document)
}

fn check_document(
    file: &str,
    bytes: &[u8],
    document: &Document,
) -> Result<ValidItem, Vec<Diagnostic>> {
    let mut check = Check::new(file, document);
    let (schema, validator) = &SCHEMAS.item;
    check.schema(schema, validator, &document.value, "");
    if !check.diagnostics.is_empty() {
        return Err(check.finish());
    }
    let item = match CatalogItem::deserialize(&document.value) {
        Ok(item) => item,
        Err(err) => {
            check.at("", format!("not a catalog item: {err}"));
            return Err(check.finish());
        }
    };
    check.item(&item);
    if !check.diagnostics.is_empty() {
        return Err(check.finish());
    }
    Ok(ValidItem {
        item,
        content_hash: content_hash(bytes),
    })
}

pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex = hex::encode(digest);
    format!("sha256:{hex}")
}

/// The result of validating a whole catalog: each file's outcome, with the
/// checks across files (an item id used twice) applied.
#[derive(Debug, Default)]
pub struct CatalogReport {
    pub items: Vec<(String, ValidItem)>,
    pub diagnostics: Vec<Diagnostic>,
    /// Item id → the file that has it.
    owners: HashMap<String, String>,
}

impl CatalogReport {
    /// Adds one file's outcome from [`validate_file`]. Files are added in
    /// the catalog's order: an item id already used by an earlier file is
    /// an error in the later.
    pub fn add(&mut self, file: &str, bytes: &[u8], outcome: Result<ValidItem, Vec<Diagnostic>>) {
        let valid = match outcome {
            Ok(valid) => valid,
            Err(diagnostics) => return self.diagnostics.extend(diagnostics),
        };
        let id = &valid.item.header.id;
        if let Some(first) = self.owners.get(id) {
            // Re-parse only to locate: the file is known to be valid YAML.
            let location = source::parse(bytes, &Limits::default())
                .map(|doc| doc.locate("/header/id"))
                .unwrap_or(Location::START);
            self.diagnostics.push(Diagnostic {
                file: file.to_string(),
                line: location.line,
                column: location.column,
                path: "header.id".to_string(),
                message: format!("item id `{id}` is already used by {first}"),
            });
        } else {
            self.owners.insert(id.clone(), file.to_string());
            self.items.push((file.to_string(), valid));
        }
    }
}

/// Validates a set of files as one catalog, in the order given (see
/// [`CatalogReport::add`]).
pub fn validate_catalog<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> CatalogReport {
    let mut report = CatalogReport::default();
    for (file, bytes) in files {
        report.add(file, bytes, validate_file(file, bytes));
    }
    report
}

/// The checks of one file, collecting located diagnostics.
struct Check<'a> {
    file: &'a str,
    document: &'a Document,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Check<'a> {
    fn new(file: &'a str, document: &'a Document) -> Self {
        Self {
            file,
            document,
            diagnostics: Vec::new(),
        }
    }

    fn finish(mut self) -> Vec<Diagnostic> {
        self.diagnostics
            .sort_by_key(|d| (d.line, d.column, d.message.clone()));
        self.diagnostics.dedup();
        self.diagnostics
    }

    fn push(&mut self, pointer: &str, location: Location, message: String) {
        self.diagnostics.push(Diagnostic {
            file: self.file.to_string(),
            line: location.line,
            column: location.column,
            path: yaml_path(&self.document.value, pointer),
            message,
        });
    }

    /// A problem with the value at `pointer`.
    fn at(&mut self, pointer: &str, message: impl Into<String>) {
        let location = self.document.locate(pointer);
        self.push(pointer, location, message.into());
    }

    /// A problem with the key of the entry at `pointer`.
    fn at_key(&mut self, pointer: &str, message: impl Into<String>) {
        let location = self.document.locate_key(pointer);
        self.push(pointer, location, message.into());
    }

    /// The file's value at `pointer` (`Null` when absent), borrowed from the
    /// document rather than copied out of the typed item.
    fn value_at(&self, pointer: &str) -> &'a Value {
        const NULL: &Value = &Value::Null;
        self.document.value.pointer(pointer).unwrap_or(NULL)
    }

    // ------------------------------------------------------------ JSON Schema

    /// Validates `instance` (found at `base` in the file) against a schema.
    fn schema(&mut self, schema: &Value, validator: &Validator, instance: &Value, base: &str) {
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

    fn item(&mut self, item: &CatalogItem) {
        self.groups(item);
        self.fields(item);
        self.fulfillment(item);
    }

    fn groups(&mut self, item: &CatalogItem) {
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

    fn fields(&mut self, item: &CatalogItem) {
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

    fn field_rules(&mut self, field: &Field, at: &str) {
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

    fn condition(&mut self, item: &CatalogItem, condition: &Condition, at: &str) {
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

    fn show_if_cycles(&mut self, item: &CatalogItem) {
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

    fn fulfillment(&mut self, item: &CatalogItem) {
        if item.fulfillment.mode == Mode::Automated && item.fulfillment.automated.is_none() {
            self.at(
                "/fulfillment/mode",
                "mode is `automated` but `fulfillment.automated` is missing",
            );
        }
        let manual = serde_json::to_value(&item.fulfillment.manual.jira).unwrap_or(Value::Null);
        self.templates(item, &manual, "/fulfillment/manual/jira", None);

        let actions = item.actions();
        let ids: BTreeMap<&str, usize> = actions
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i))
            .collect();
        let unique_ids = ids.len() == actions.len();
        let mut seen = BTreeSet::new();
        for (index, action) in actions.iter().enumerate() {
            let at = format!("/fulfillment/automated/actions/{index}");
            if !seen.insert(action.id.as_str()) {
                self.at(
                    &format!("{at}/id"),
                    format!("duplicate action id `{}`", action.id),
                );
            }
            for (dep_index, dependency) in action.depends_on.iter().enumerate() {
                let dep_at = format!("{at}/depends_on/{dep_index}");
                if dependency == &action.id && unique_ids {
                    self.at(&dep_at, "an action cannot depend on itself");
                } else if !ids.contains_key(dependency.as_str()) {
                    self.at(
                        &dep_at,
                        format!("depends on `{dependency}`, which is not an action of this item"),
                    );
                }
            }
            if let Some(when) = &action.when {
                self.condition(item, when, &format!("{at}/when"));
            }
            let (schema, validator) = &SCHEMAS.actions[&action.kind];
            let config = self.value_at(&format!("{at}/config"));
            self.schema(schema, validator, config, &format!("{at}/config"));
            self.outputs(config, &format!("{at}/config"));
            self.url(config, &format!("{at}/config"));
            if action.rollback.is_some() {
                let (schema, validator) = if action.kind.compensates_natively() {
                    &SCHEMAS.retain
                } else {
                    &SCHEMAS.actions[&action.kind]
                };
                let rollback_at = format!("{at}/rollback");
                self.schema(schema, validator, self.value_at(&rollback_at), &rollback_at);
                self.url(self.value_at(&rollback_at), &rollback_at);
            }
        }
        if !unique_ids {
            return; // the dependency graph is ambiguous until ids are unique
        }
        let edges: BTreeMap<&str, Vec<&str>> = actions
            .iter()
            .map(|a| {
                (
                    a.id.as_str(),
                    a.depends_on.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        if let Some(cycle) = find_cycle(&edges) {
            let index = ids.get(cycle[0]).copied().unwrap_or(0);
            self.at(
                &format!("/fulfillment/automated/actions/{index}/depends_on"),
                format!("depends_on forms a cycle: {}", cycle.join(" → ")),
            );
            return; // the reachability below assumes an acyclic graph
        }
        for (index, action) in actions.iter().enumerate() {
            let at = format!("/fulfillment/automated/actions/{index}");
            let upstream = upstream_of(&edges, &action.id);
            let config_at = format!("{at}/config");
            self.templates(
                item,
                self.value_at(&config_at),
                &config_at,
                Some((&upstream, None)),
            );
            if action.rollback.is_some() {
                // A rollback may read its own action's outputs (the id of what it created).
                let rollback_at = format!("{at}/rollback");
                let own = Some(action.id.as_str());
                self.templates(
                    item,
                    self.value_at(&rollback_at),
                    &rollback_at,
                    Some((&upstream, own)),
                );
            }
        }
    }

    /// A URL reads the requester's values as plain placeholders only.
    fn url(&mut self, config: &Value, at: &str) {
        if let Some(Value::String(url)) = config.get("url") {
            if let Err(message) = template::check_url(url) {
                self.at(&format!("{at}/url"), message);
            }
        }
    }

    /// Each `response_mapping` entry is an RFC 9535 JSONPath expression,
    /// parsed as the action will parse it at run time, and each of
    /// `secret_outputs` names one of those entries.
    fn outputs(&mut self, config: &Value, at: &str) {
        let mapping = config.get("response_mapping").and_then(Value::as_object);
        for (name, path) in mapping.into_iter().flatten() {
            let Value::String(path) = path else { continue };
            if let Err(err) = serde_json_path::JsonPath::parse(path) {
                self.at(
                    &format!("{at}/response_mapping/{}", escape(name)),
                    format!("`{path}` is not a JSONPath expression (RFC 9535): {err}"),
                );
            }
        }
        let Some(Value::Array(secrets)) = config.get("secret_outputs") else {
            return;
        };
        for (index, name) in secrets.iter().enumerate() {
            let Value::String(name) = name else { continue };
            if !mapping.is_some_and(|m| m.contains_key(name)) {
                self.at(
                    &format!("{at}/secret_outputs/{index}"),
                    format!("`{name}` is not an output of this action's response_mapping"),
                );
            }
        }
    }

    /// Checks every string leaf of `value`: template syntax and references.
    /// `actions` is `None` where no action output exists (the manual ticket),
    /// else the actions whose outputs are available here.
    fn templates(
        &mut self,
        item: &CatalogItem,
        value: &Value,
        at: &str,
        actions: Option<(&BTreeSet<String>, Option<&str>)>,
    ) {
        match value {
            Value::String(text) if template::is_template(text) => {
                match template::references(text) {
                    Err(message) => self.at(at, message),
                    Ok(references) => {
                        for reference in references {
                            if let Err(message) = check_reference(item, &reference, actions) {
                                self.at(at, message);
                            }
                        }
                    }
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    self.templates(item, child, &format!("{at}/{index}"), actions);
                }
            }
            Value::Object(map) => {
                for (key, child) in map {
                    self.templates(item, child, &format!("{at}/{}", escape(key)), actions);
                }
            }
            _ => {}
        }
    }
}

const HEADER_VARIABLES: &[&str] = &["id", "name", "version", "owner", "category", "description"];
const REQUEST_VARIABLES: &[&str] = &["id", "timestamp", "user.email", "user.name", "user.id"];

fn check_reference(
    item: &CatalogItem,
    reference: &Reference,
    actions: Option<(&BTreeSet<String>, Option<&str>)>,
) -> Result<(), String> {
    let path = &reference.0;
    let rest = path[1..].join(".");
    let dotted = reference.dotted();
    match reference.root() {
        "fields" => match path.get(1) {
            Some(id) if item.field(id).is_some() => Ok(()),
            Some(id) => Err(format!("`{{{{{dotted}}}}}` refers to field `{id}`, which this item does not have")),
            None => Err("`fields` needs a field id, such as {{fields.name}}".to_string()),
        },
        "header" if HEADER_VARIABLES.contains(&rest.as_str()) => Ok(()),
        "header" => Err(format!("`{{{{{dotted}}}}}`: header offers {}", HEADER_VARIABLES.join(", "))),
        "request" if REQUEST_VARIABLES.contains(&rest.as_str()) => Ok(()),
        "request" => Err(format!("`{{{{{dotted}}}}}`: request offers {}", REQUEST_VARIABLES.join(", "))),
        "env" => match path.get(1) {
            Some(name) if path.len() == 2 && is_env_name(name) => Ok(()),
            _ => Err(format!("`{{{{{dotted}}}}}`: env takes one UPPER_CASE name, such as {{{{env.DBAAS_URL}}}}")),
        },
        "response" => {
            let Some((upstream, own)) = actions else {
                return Err(format!("`{{{{{dotted}}}}}`: no action outputs exist here (the manual ticket is opened before any action runs)"));
            };
            let (Some(action_id), Some(output)) = (path.get(1), path.get(2)) else {
                return Err(format!("`{{{{{dotted}}}}}`: use {{{{response.<action id>.<output>}}}}"));
            };
            let Some(action) = item.actions().iter().find(|a| &a.id == action_id) else {
                return Err(format!("`{{{{{dotted}}}}}` refers to action `{action_id}`, which this item does not have"));
            };
            if !upstream.contains(action_id) && own != Some(action_id.as_str()) {
                return Err(format!(
                    "`{{{{{dotted}}}}}`: action `{action_id}` has not run yet here; add it to depends_on"
                ));
            }
            let outputs = action.outputs();
            if outputs.iter().any(|name| name == output) {
                Ok(())
            } else {
                Err(format!(
                    "`{{{{{dotted}}}}}`: a {} action has no output `{output}` (it has {})",
                    action.kind.name(),
                    outputs.join(", ")
                ))
            }
        }
        other => Err(format!(
            "`{{{{{dotted}}}}}`: unknown variable `{other}`; templates read fields, header, request, env and response"
        )),
    }
}

fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every action `id` depends on, directly or through others.
fn upstream_of(edges: &BTreeMap<&str, Vec<&str>>, id: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<&str> = edges.get(id).cloned().unwrap_or_default();
    while let Some(next) = stack.pop() {
        if found.insert(next.to_string()) {
            stack.extend(edges.get(next).cloned().unwrap_or_default());
        }
    }
    found
}

/// A cycle in a graph given as node → nodes it points to, as the path
/// `a, b, …, a`; `None` when the graph is acyclic. Unknown nodes are ignored.
fn find_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node);
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Visiting);
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if edges.contains_key(next) {
                if let Some(cycle) = visit(next, edges, marks, path) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for node in edges.keys() {
        if let Some(cycle) = visit(node, edges, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

/// Whether `value` can be the value of `field`, said as "… must be …".
fn fits(field: &Field, value: &Value) -> Result<(), String> {
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
fn fits_operand(field: &Field, value: &Value) -> Result<(), String> {
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

fn options_of(field: &Field) -> Vec<&str> {
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
fn is_valid_pattern(pattern: &str) -> bool {
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
fn describe(value: &Value) -> String {
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

fn type_name(kind: &TypeKind) -> String {
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

/// A schema error in words for a platform engineer.
fn explain(error: &ValidationError<'_>, pointer: &str) -> String {
    let instance = error.instance();
    match error.kind() {
        ValidationErrorKind::Type { kind } => {
            format!("expected {}, found {}", type_name(kind), describe(instance))
        }
        ValidationErrorKind::Enum { options } => {
            let choices: Vec<String> = options
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_string))
                .collect();
            let what = if pointer.ends_with("/type") && pointer.contains("/fields/") {
                "unknown field type".to_string()
            } else if pointer.ends_with("/type") && pointer.contains("/actions/") {
                "unknown action type".to_string()
            } else {
                "unknown value".to_string()
            };
            let shown = instance
                .as_str()
                .map_or_else(|| instance.to_string(), str::to_string);
            format!("{what} `{shown}`; expected one of: {}", choices.join(", "))
        }
        ValidationErrorKind::Pattern { .. } if pointer == "/header/version" => {
            format!(
                "{} is not a semantic version such as 1.2.0",
                describe(instance)
            )
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!(
                "{} does not match the pattern {pattern}",
                describe(instance)
            )
        }
        ValidationErrorKind::Constant { expected_value } => format!("must be {expected_value}"),
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let mut alternatives: Vec<String> = Vec::new();
            for branch in context {
                let Some(first) = branch.first() else {
                    continue;
                };
                let text = if first.schema_path().as_str().contains("template") {
                    "a template such as {{fields.name}}".to_string()
                } else {
                    explain(first, pointer)
                };
                if !alternatives.contains(&text) {
                    alternatives.push(text);
                }
            }
            format!(
                "none of the allowed forms fit: {}",
                alternatives.join("; or ")
            )
        }
        ValidationErrorKind::MaxProperties { .. } | ValidationErrorKind::MinProperties { .. }
            if pointer.ends_with("show_if") || pointer.ends_with("when") =>
        {
            "a condition takes `field` and exactly one of `equals`, `not_equals`, `in`".to_string()
        }
        _ => error.to_string(),
    }
}

/// The keys a schema allows where an unknown key was found.
fn known_keys(schema: &Value, schema_path: &str) -> Vec<String> {
    let parent = schema_path
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent);
    resolve_refs(schema, parent)
        .and_then(|node| node.get("properties"))
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

/// Follows a schema path that may pass through `$ref`s into `$defs`.
fn resolve_refs<'s>(schema: &'s Value, path: &str) -> Option<&'s Value> {
    let mut node = schema;
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == "$ref" {
            let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
            node = schema.pointer(target)?;
            continue;
        }
        node = match node {
            Value::Object(map) => map.get(&segment.replace("~1", "/").replace("~0", "~"))?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
        // A keyword location does not name the `$ref` it went through.
        if node.get("properties").is_none() {
            if let Some(target) = node
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
            {
                if let Some(resolved) = schema.pointer(target) {
                    node = resolved;
                }
            }
        }
    }
    Some(node)
}

/// The known key closest to a misspelt one, when it is close enough to be a typo.
fn closest(key: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min()
        .map(|(_, candidate)| candidate.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// `/fulfillment/automated/actions/1/depends_on/0` → `fulfillment.automated.actions[1].depends_on[0]`.
fn yaml_path(root: &Value, pointer: &str) -> String {
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
