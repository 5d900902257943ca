//! The embedded JSON Schemas (the item's and each action type's config)
//! and schema errors said in words, with the closest known key.

use std::collections::HashMap;
use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::catalog::item::ActionType;

use super::values::{describe, type_name};

pub const ITEM_SCHEMA: &str =
    include_str!("../../../../catalog/schema/catalog-item.v2.schema.json");

/// The JSON Schema of an action type's `config`.
pub fn action_schema(kind: ActionType) -> &'static str {
    match kind {
        ActionType::JiraTicket => {
            include_str!("../../../../catalog/schema/actions/jira-ticket.schema.json")
        }
        ActionType::RestApi => {
            include_str!("../../../../catalog/schema/actions/rest-api.schema.json")
        }
        ActionType::Webhook => {
            include_str!("../../../../catalog/schema/actions/webhook.schema.json")
        }
        ActionType::GithubWorkflow => {
            include_str!("../../../../catalog/schema/actions/github-workflow.schema.json")
        }
        ActionType::Terraform => {
            include_str!("../../../../catalog/schema/actions/terraform.schema.json")
        }
        ActionType::AwsNetwork => {
            include_str!("../../../../catalog/schema/actions/aws-network.schema.json")
        }
        ActionType::AwsRdsPostgres => {
            include_str!("../../../../catalog/schema/actions/aws-rds-postgres.schema.json")
        }
        ActionType::AwsSecret => {
            include_str!("../../../../catalog/schema/actions/aws-secret.schema.json")
        }
        ActionType::AwsEksCluster => {
            include_str!("../../../../catalog/schema/actions/aws-eks-cluster.schema.json")
        }
        ActionType::KubernetesDeploy => {
            include_str!("../../../../catalog/schema/actions/kubernetes-deploy.schema.json")
        }
    }
}

pub(super) struct Schemas {
    pub(super) item: (Value, Validator),
    pub(super) actions: HashMap<ActionType, (Value, Validator)>,
    pub(super) retain: (Value, Validator),
}

pub(super) fn compile(text: &str) -> (Value, Validator) {
    // The schemas are part of the binary and tested: failing here is a build defect.
    let schema: Value = serde_json::from_str(text).expect("an embedded schema is JSON");
    let validator = jsonschema::draft202012::new(&schema).expect("an embedded schema compiles");
    (schema, validator)
}

pub(super) static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| Schemas {
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

/// What the type's schema refuses in an action's config once rendered
/// (templated values are only checkable then): at most five problems, each
/// `config<where>: <what>`. A driver refuses such a config as Fatal.
pub fn rendered_config_problems(kind: ActionType, config: &Value) -> Vec<String> {
    let Some((_, validator)) = SCHEMAS.actions.get(&kind) else {
        return Vec::new();
    };
    validator
        .iter_errors(config)
        .take(5)
        .map(|err| {
            let at = err.instance_path().as_str().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("config{at}: {err}")
        })
        .collect()
}

/// A schema error in words for a platform engineer.
pub(super) fn explain(error: &ValidationError<'_>, pointer: &str) -> String {
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
pub(super) fn known_keys(schema: &Value, schema_path: &str) -> Vec<String> {
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
pub(super) fn resolve_refs<'s>(schema: &'s Value, path: &str) -> Option<&'s Value> {
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
pub(super) fn closest(key: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 4))
        .min()
        .map(|(_, candidate)| candidate.clone())
}

pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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
