//! The checks of an item's fulfillment: action ids and types, each config
//! against its type's schema, `depends_on` and its cycles, `when`,
//! rollbacks, and every template reference.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::catalog::item::{CatalogItem, Mode};
use crate::template::{self, Reference};

use super::check::{escape, Check};
use super::schemas::SCHEMAS;

impl Check<'_> {
    pub(super) fn fulfillment(&mut self, item: &CatalogItem) {
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
    pub(super) fn url(&mut self, config: &Value, at: &str) {
        if let Some(Value::String(url)) = config.get("url") {
            if let Err(message) = template::check_url(url) {
                self.at(&format!("{at}/url"), message);
            }
        }
    }

    /// Each `response_mapping` entry is an RFC 9535 JSONPath expression,
    /// parsed as the action will parse it at run time, and each of
    /// `secret_outputs` names one of those entries.
    pub(super) fn outputs(&mut self, config: &Value, at: &str) {
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
    pub(super) fn templates(
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

pub(super) const HEADER_VARIABLES: &[&str] =
    &["id", "name", "version", "owner", "category", "description"];
pub(super) const REQUEST_VARIABLES: &[&str] =
    &["id", "timestamp", "user.email", "user.name", "user.id"];

pub(super) fn check_reference(
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

pub(super) fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every action `id` depends on, directly or through others.
pub(super) fn upstream_of(edges: &BTreeMap<&str, Vec<&str>>, id: &str) -> BTreeSet<String> {
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
pub(super) fn find_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    pub(super) fn visit<'a>(
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
