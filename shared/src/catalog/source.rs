//! A catalog file as text: bytes in, a JSON value out, with the line and
//! column of every key and value kept, so that any later check can point at
//! the exact place in the file. Hostile input (too large, not UTF-8, alias
//! bombs, deep nesting, duplicate keys) becomes a located error here, with
//! bounded memory, before anything else sees it.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::{Budget, Options, Spanned};

/// A position in a file, both 1-based.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

impl Location {
    pub const START: Self = Self { line: 1, column: 1 };

    fn of(location: &serde_saphyr::Location) -> Self {
        Self {
            line: u32::try_from(location.line()).unwrap_or(u32::MAX).max(1),
            column: u32::try_from(location.column()).unwrap_or(u32::MAX).max(1),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Limits on one catalog file. An item is a page of YAML; these leave it
/// generous room and keep a hostile file from costing more than a few MiB.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_nodes: usize,
    pub max_aliases: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024,
            max_depth: 32,
            max_nodes: 50_000,
            max_aliases: 100,
        }
    }
}

/// Why a file could not be read as YAML at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    pub location: Location,
    pub message: String,
}

/// A parsed file: its value, and where each part of it came from.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    /// JSON pointer (`/fulfillment/automated/actions/0/id`) → where the value starts.
    values: HashMap<String, Location>,
    /// JSON pointer of a mapping entry → where its key starts.
    keys: HashMap<String, Location>,
}

impl Document {
    /// Where the value at `pointer` is; the nearest enclosing value when the
    /// pointer names something absent (such as a missing key).
    pub fn locate(&self, pointer: &str) -> Location {
        let mut pointer = pointer;
        loop {
            if let Some(location) = self.values.get(pointer) {
                return *location;
            }
            match pointer.rfind('/') {
                Some(cut) => pointer = &pointer[..cut],
                None => return Location::START,
            }
        }
    }

    /// Where the key of the entry at `pointer` is (for "unknown key" errors);
    /// the value's location when the pointer is not a mapping entry.
    pub fn locate_key(&self, pointer: &str) -> Location {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.locate(pointer))
    }
}

/// Parses one YAML document within `limits`.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Document, SourceError> {
    if bytes.len() > limits.max_bytes {
        return Err(SourceError {
            location: Location::START,
            message: format!(
                "the file is {} bytes; a catalog item may be at most {} bytes",
                bytes.len(),
                limits.max_bytes
            ),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|err| SourceError {
        location: location_of_offset(bytes, err.valid_up_to()),
        message: "the file is not valid UTF-8".to_string(),
    })?;
    if text.trim().is_empty() {
        return Err(SourceError {
            location: Location::START,
            message: "the file is empty".to_string(),
        });
    }
    let root: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, options(limits)).map_err(|err| SourceError {
            location: err
                .location()
                .map(|l| Location::of(&l))
                .unwrap_or(Location::START),
            message: yaml_message(&err, limits),
        })?;
    let mut document = Document {
        value: Value::Null,
        values: HashMap::new(),
        keys: HashMap::new(),
    };
    // Each node's path is kept for locating messages: long keys under many
    // nodes would make them far larger than the file, so they are budgeted.
    let mut budget = limits.max_bytes.saturating_mul(PATH_BUDGET_FACTOR);
    document.value = flatten(root, String::new(), &mut document, &mut budget)?;
    Ok(document)
}

/// The paths of a document's nodes may add up to this many times its
/// size limit (a 22 KB item's paths take about 60 KB).
const PATH_BUDGET_FACTOR: usize = 16;

/// Parses one YAML document within `limits` without keeping locations:
/// several times faster, for the common case of a file with nothing to
/// report. `None` for anything [`parse`] would refuse, which then says
/// where and why.
pub fn parse_unlocated(bytes: &[u8], limits: &Limits) -> Option<Document> {
    if bytes.len() > limits.max_bytes {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let Plain(value) = serde_saphyr::from_str_with_options(text, options(limits)).ok()?;
    Some(Document {
        value,
        values: HashMap::new(),
        keys: HashMap::new(),
    })
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

fn location_of_offset(bytes: &[u8], offset: usize) -> Location {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Location {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        column: u32::try_from(column).unwrap_or(u32::MAX),
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn flatten(
    node: Spanned<Node>,
    pointer: String,
    doc: &mut Document,
    budget: &mut usize,
) -> Result<Value, SourceError> {
    let location = Location::of(&node.referenced);
    // Kept twice at most: for the value, and for its key.
    *budget = budget
        .checked_sub(2 * pointer.len())
        .ok_or_else(|| SourceError {
            location,
            message: "the paths to the values here add up to far more than the file: \
                      keys this long or this many cannot be a catalog item's"
                .to_string(),
        })?;
    doc.values.insert(pointer.clone(), location);
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
                values.push(flatten(item, format!("{pointer}/{index}"), doc, budget)?);
            }
            Value::Array(values)
        }
        Node::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let child = format!("{pointer}/{}", escape(&key.value));
                doc.keys
                    .insert(child.clone(), Location::of(&key.referenced));
                let value = flatten(value, child, doc, budget)?;
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

/// A YAML value without locations (see [`parse_unlocated`]); a float that
/// JSON cannot hold (`.nan`, `.inf`) is refused, as [`parse`] refuses it.
struct Plain(Value);

impl<'de> Deserialize<'de> for Plain {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PlainVisitor).map(Plain)
    }
}

struct PlainVisitor;

impl<'de> Visitor<'de> for PlainVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        wide_integer(i64::try_from(v).map(Value::from))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        wide_integer(u64::try_from(v).map(Value::from))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Plain::deserialize(deserializer).map(|Plain(value)| value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Plain(item)) = seq.next_element::<Plain>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Plain(value) = map.next_value::<Plain>()?;
            entries.insert(key, value);
        }
        Ok(Value::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Document {
        parse(text.as_bytes(), &Limits::default()).unwrap()
    }

    fn parse_err(bytes: &[u8]) -> SourceError {
        parse(bytes, &Limits::default()).unwrap_err()
    }

    #[test]
    fn the_unlocated_parse_reads_the_same_value_and_refuses_the_same_files() {
        let examples = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../catalog/items"))
            .unwrap()
            .map(|entry| std::fs::read(entry.unwrap().path()).unwrap());
        let hostile: [&[u8]; 6] = [
            b"a: 1\na: 2\n",
            b"a: .nan\n",
            b"a: [1, 2\n",
            b"a: &x [1]\nb: *y\n",
            b"\xff\xfe",
            b"---\na: 1\n---\nb: 2\n",
        ];
        for bytes in examples {
            let located = parse(&bytes, &Limits::default()).unwrap();
            let unlocated = parse_unlocated(&bytes, &Limits::default()).unwrap();
            assert_eq!(located.value, unlocated.value);
        }
        for bytes in hostile {
            assert!(parse(bytes, &Limits::default()).is_err());
            assert!(
                parse_unlocated(bytes, &Limits::default()).is_none(),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn keeps_the_location_of_every_key_and_value() {
        let doc = parse_ok("header:\n  id: db\n  tags:\n    - a\n    - b\ncount: 3\nratio: 0.5\n");
        assert_eq!(doc.value["header"]["tags"][1], "b");
        assert_eq!(doc.value["count"], 3);
        assert_eq!(doc.value["ratio"], 0.5);
        assert_eq!(doc.locate("/header/id"), Location { line: 2, column: 7 });
        assert_eq!(
            doc.locate_key("/header/id"),
            Location { line: 2, column: 3 }
        );
        assert_eq!(
            doc.locate("/header/tags/1"),
            Location { line: 5, column: 7 }
        );
        // A missing key is reported where its parent is.
        assert_eq!(doc.locate("/header/owner"), doc.locate("/header"));
    }

    #[test]
    fn a_syntax_error_is_located() {
        let err = parse_err(b"header:\n  id: [unclosed\n");
        assert!(err.location.line >= 2, "{err:?}");
        assert!(!err.message.is_empty());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_err(b"header:\n  id: a\n  id: b\n");
        assert_eq!(err.location.line, 3, "{err:?}");
        assert!(err.message.to_lowercase().contains("duplicate"), "{err:?}");
    }

    #[test]
    fn non_utf8_is_located() {
        let err = parse_err(b"header:\n  id: caf\xe9\n");
        assert_eq!(
            err.location,
            Location {
                line: 2,
                column: 10
            }
        );
        assert_eq!(err.message, "the file is not valid UTF-8");
    }

    #[test]
    fn an_oversized_file_is_refused_before_parsing() {
        let big = vec![b'a'; Limits::default().max_bytes + 1];
        let err = parse_err(&big);
        assert!(err.message.contains("at most 262144 bytes"), "{err:?}");
    }

    #[test]
    fn long_keys_over_many_nodes_are_refused_not_expanded() {
        // 120 KB of key over 45,000 values: under every size and node limit,
        // but the paths to the values would take gigabytes.
        let bomb = format!(
            "? {}\n: [{}0]\n",
            "k".repeat(120 * 1024),
            "0,".repeat(45_000)
        );
        assert!(bomb.len() < Limits::default().max_bytes);
        let err = parse_err(bomb.as_bytes());
        assert!(
            err.message.contains("keys this long or this many"),
            "{err:?}"
        );
        // The same bomb nested: a path grows with every level.
        let nested: String = (0..30)
            .map(|level| format!("{}{}:\n", "  ".repeat(level), "k".repeat(1000)))
            .collect();
        let nested = format!("{nested}{}x: 1\n", "  ".repeat(30));
        assert!(
            parse(nested.as_bytes(), &Limits::default()).is_ok(),
            "deep but small is fine"
        );
    }

    #[test]
    fn an_alias_bomb_is_refused() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let prev = (b'a' + level - 1) as char;
            let name = (b'a' + level) as char;
            bomb.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let err = parse_err(bomb.as_bytes());
        assert!(!err.message.is_empty());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let err = parse_err(deep.as_bytes());
        assert!(!err.message.is_empty());
    }

    #[test]
    fn empty_and_multi_document_files_are_refused() {
        assert_eq!(parse_err(b"  \n").message, "the file is empty");
        assert!(!parse_err(b"a: 1\n---\nb: 2\n").message.is_empty());
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        let err = parse_err(b"x: .inf\n");
        assert_eq!(err.location.line, 1);
        assert!(err.message.contains("inf"), "{err:?}");
    }
}
