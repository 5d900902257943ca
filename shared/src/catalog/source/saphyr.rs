//! The general route from text to a [`Document`], through serde-saphyr: it
//! reads any YAML a catalog file may hold (anchors and aliases, tags, every
//! number spelling) and words every refusal, within the [`Limits`]. The
//! event route (`events`) handles the common case faster and hands
//! everything else here, so this route decides what is accepted.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::{Budget, Options, Spanned};

use super::{escape, Document, Limits, Location, SourceError};

/// Parses one YAML document within `limits`, keeping the location of every
/// key and value when `locate` is set.
pub(super) fn parse(text: &str, limits: &Limits, locate: bool) -> Result<Document, SourceError> {
    let root: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, options(limits)).map_err(|err| SourceError {
            location: err
                .location()
                .map(|l| location_of(&l))
                .unwrap_or(Location::START),
            message: yaml_message(&err, limits),
        })?;
    let mut document = Document {
        value: Value::Null,
        values: HashMap::new(),
        keys: HashMap::new(),
    };
    let mut paths = locate.then(|| Paths {
        // Each node's path is kept for locating messages: long keys under
        // many nodes would make them far larger than the file, so they are
        // budgeted.
        budget: limits.max_bytes.saturating_mul(super::PATH_BUDGET_FACTOR),
        document: &mut document,
    });
    let value = flatten(root, String::new(), &mut paths)?;
    document.value = value;
    Ok(document)
}

fn location_of(location: &serde_saphyr::Location) -> Location {
    Location {
        line: u32::try_from(location.line()).unwrap_or(u32::MAX).max(1),
        column: u32::try_from(location.column()).unwrap_or(u32::MAX).max(1),
    }
}

fn options(limits: &Limits) -> Options {
    let mut budget = Budget::default();
    budget.max_depth = limits.max_depth;
    budget.max_nodes = limits.max_nodes;
    budget.max_aliases = limits.max_aliases;
    budget.max_anchors = limits.max_aliases;
    budget.max_documents = 1;
    let mut options = Options::default();
    options.budget = Some(budget);
    options
}

/// The parser's message in a platform engineer's words, without its own
/// rendering of the location: we print `file:line:col` ourselves.
fn yaml_message(err: &serde_saphyr::Error, limits: &Limits) -> String {
    let text = err.to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // "line 5 column 23: message"
    let message = match first.split_once(": ") {
        Some((prefix, rest)) if prefix.starts_with("line ") => rest,
        _ => first,
    };
    if let Some(breach) = message.strip_prefix("budget breached: ") {
        let limit = if breach.starts_with("Depth") {
            format!("nesting deeper than {} levels", limits.max_depth)
        } else if breach.starts_with("Nodes") {
            format!(
                "more than {} values once aliases are expanded (an alias bomb?)",
                limits.max_nodes
            )
        } else if breach.starts_with("Aliases") || breach.starts_with("Anchors") {
            format!("more than {} YAML aliases or anchors", limits.max_aliases)
        } else if breach.starts_with("Documents") {
            "more than one YAML document (`---`); a file holds one item".to_string()
        } else {
            format!("a size limit ({breach})")
        };
        return format!("the file exceeds what a catalog item may hold: {limit}");
    }
    if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        return format!("duplicate key `{key}`");
    }
    message.to_string()
}

/// Where the paths to a document's nodes go, and how many bytes of them
/// may still be kept.
struct Paths<'d> {
    budget: usize,
    document: &'d mut Document,
}

fn flatten(
    node: Spanned<Node>,
    pointer: String,
    paths: &mut Option<Paths<'_>>,
) -> Result<Value, SourceError> {
    let location = location_of(&node.referenced);
    if let Some(paths) = paths.as_mut() {
        // Kept twice at most: for the value, and for its key.
        paths.budget = paths
            .budget
            .checked_sub(2 * pointer.len())
            .ok_or_else(|| SourceError {
                location,
                message: super::PATHS_TOO_LONG.to_string(),
            })?;
        paths.document.values.insert(pointer.clone(), location);
    }
    Ok(match node.value {
        Node::Scalar(value) => value,
        Node::Float(number) => match Number::from_f64(number) {
            Some(number) => Value::Number(number),
            None => {
                return Err(SourceError {
                    location,
                    message: format!("{number} is not a number a catalog item can hold"),
                })
            }
        },
        Node::Seq(items) => {
            let mut values = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let child = match paths {
                    Some(_) => format!("{pointer}/{index}"),
                    None => String::new(),
                };
                values.push(flatten(item, child, paths)?);
            }
            Value::Array(values)
        }
        Node::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let child = match paths.as_mut() {
                    Some(paths) => {
                        let child = format!("{pointer}/{}", escape(&key.value));
                        paths
                            .document
                            .keys
                            .insert(child.clone(), location_of(&key.referenced));
                        child
                    }
                    None => String::new(),
                };
                let value = flatten(value, child, paths)?;
                map.insert(key.value, value);
            }
            Value::Object(map)
        }
    })
}

/// A YAML node whose children keep their locations.
enum Node {
    Scalar(Value),
    Float(f64),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        wide_integer(i64::try_from(v).map(Value::from)).map(Node::Scalar)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        wide_integer(u64::try_from(v).map(Value::from)).map(Node::Scalar)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

fn wide_integer<E: de::Error, T>(converted: Result<Value, T>) -> Result<Value, E> {
    converted.map_err(|_| E::custom("integer out of range"))
}
