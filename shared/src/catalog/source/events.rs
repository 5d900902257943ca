//! The fast route from text to a [`Document`]: the YAML parser's events are
//! read straight into JSON values (and, when asked, their locations), with
//! no serde and no intermediate tree in between.
//!
//! It takes the YAML catalog items are written in — block and flow
//! collections; plain, quoted and block scalars; null, booleans, decimal
//! integers and floats — and declines everything else by returning `None`:
//! anchors, aliases, tags, merge keys, non-scalar or null keys, radix or
//! underscored numbers, `.inf` and `.nan`, a second document, a parse error,
//! a duplicate key, a breached limit. The caller then takes the serde-saphyr
//! route (`saphyr`), which reads every YAML the catalog accepts and words
//! every refusal, so declining is never a different answer, only a slower
//! one. What this route does accept it must read exactly as that route does;
//! the tests compare the two on every example and fixture.
//!
//! Memory stays within the limits: at most `max_nodes` values, nested at most
//! `max_depth` deep, and paths within the same budget as the serde route's.

use std::borrow::Cow;

use granit_parser::{Event, Options, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

use super::{escape, Document, Limits, Location};

/// Reads `text` as one YAML document, or `None` when the serde route must.
pub(super) fn read(text: &str, limits: &Limits, locate: bool) -> Option<Document> {
    let mut parser = Parser::new_from_str_with_options(text, parser_options(limits));
    let mut reader = Reader {
        limits,
        stack: Vec::new(),
        nodes: 0,
        locations: locate.then(|| Locations {
            document: Document::default(),
            pointer: String::new(),
            budget: limits.max_bytes.saturating_mul(super::PATH_BUDGET_FACTOR),
        }),
    };
    if !matches!(parser.next_event()?.ok()?.0, Event::StreamStart) {
        return None;
    }
    match parser.next_event()?.ok()?.0 {
        Event::DocumentStart(_, None) => {}
        _ => return None,
    }
    let mut root = None;
    while root.is_none() {
        let (event, span) = parser.next_event()?.ok()?;
        root = reader.event(event, &span)?;
    }
    if !matches!(parser.next_event()?.ok()?.0, Event::DocumentEnd)
        || !matches!(parser.next_event()?.ok()?.0, Event::StreamEnd)
    {
        return None;
    }
    let mut document = reader
        .locations
        .map_or_else(Document::default, |l| l.document);
    document.value = root?;
    Some(document)
}

/// The options serde-saphyr gives the same parser for the same limits, so
/// that both routes accept the same text.
fn parser_options(limits: &Limits) -> Options {
    let mut options = Options::default();
    options.block_nesting_limit = options
        .block_nesting_limit
        .max(limits.max_depth.saturating_add(1));
    options.emit_comments = false;
    options
}

struct Reader<'l> {
    limits: &'l Limits,
    /// The collections being read, innermost last.
    stack: Vec<Collection>,
    nodes: usize,
    locations: Option<Locations>,
}

enum Collection {
    Sequence(Vec<Value>),
    /// `key` is the key whose value comes next; `None` while a key is due.
    Mapping {
        entries: Map<String, Value>,
        key: Option<String>,
    },
}

/// The locations being kept, and the JSON pointer of the collection being
/// read (its children's pointers are built on it and cut back off).
struct Locations {
    document: Document,
    pointer: String,
    budget: usize,
}

impl Reader<'_> {
    /// Takes one event; `Some(Some(root))` once the document's value is
    /// complete, `None` to decline.
    fn event(&mut self, event: Event<'_>, span: &Span) -> Option<Option<Value>> {
        let location = Location {
            line: u32::try_from(span.start.line()).ok()?.max(1),
            column: u32::try_from(span.start.col() + 1).ok()?,
        };
        match event {
            Event::Scalar(text, style, 0, None) => {
                self.count_node()?;
                if let Some(Collection::Mapping { entries, key }) = self.stack.last_mut() {
                    if key.is_none() {
                        let text = mapping_key(text, style)?;
                        if entries.contains_key(text.as_str()) {
                            return None; // the serde route words it
                        }
                        if let Some(locations) = self.locations.as_mut() {
                            let mark = locations.pointer.len();
                            locations.pointer.push('/');
                            locations.pointer.push_str(&escape(&text));
                            let pointer = locations.pointer.clone();
                            locations.document.keys.insert(pointer, location);
                            locations.pointer.truncate(mark);
                        }
                        *key = Some(text);
                        return Some(None);
                    }
                }
                let value = scalar(text, style)?;
                let mark = self.enter(location)?;
                self.leave(mark);
                Some(self.attach(value))
            }
            Event::SequenceStart(_, 0, None) => {
                self.open(location)?;
                self.stack.push(Collection::Sequence(Vec::new()));
                Some(None)
            }
            Event::MappingStart(_, 0, None) => {
                self.open(location)?;
                self.stack.push(Collection::Mapping {
                    entries: Map::new(),
                    key: None,
                });
                Some(None)
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let value = match self.stack.pop()? {
                    Collection::Sequence(items) => Value::Array(items),
                    Collection::Mapping { entries, key: None } => Value::Object(entries),
                    Collection::Mapping { key: Some(_), .. } => return None,
                };
                if let Some(locations) = self.locations.as_mut() {
                    let cut = locations.pointer.rfind('/').unwrap_or(0);
                    locations.pointer.truncate(cut);
                }
                Some(self.attach(value))
            }
            _ => None,
        }
    }

    fn count_node(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= self.limits.max_nodes).then_some(())
    }

    /// A collection starts: counted, within the depth limit, a key's value
    /// (never a key itself), located, and its pointer left on for its
    /// children.
    fn open(&mut self, location: Location) -> Option<()> {
        self.count_node()?;
        if self.stack.len() + 1 > self.limits.max_depth {
            return None;
        }
        if let Some(Collection::Mapping { key: None, .. }) = self.stack.last() {
            return None; // a collection as a key
        }
        self.enter(location).map(|_| ())
    }

    /// A value starts here: its pointer is added to the current one and its
    /// location kept. Returns where to cut the pointer back to.
    fn enter(&mut self, location: Location) -> Option<usize> {
        let Some(locations) = self.locations.as_mut() else {
            return Some(0);
        };
        let mark = locations.pointer.len();
        match self.stack.last() {
            Some(Collection::Sequence(items)) => {
                locations.pointer.push('/');
                locations.pointer.push_str(&items.len().to_string());
            }
            Some(Collection::Mapping { key: Some(key), .. }) => {
                locations.pointer.push('/');
                locations.pointer.push_str(&escape(key));
            }
            Some(Collection::Mapping { key: None, .. }) | None => {}
        }
        // As in the serde route: each path is kept twice at most, for the
        // value and for its key.
        locations.budget = locations.budget.checked_sub(2 * locations.pointer.len())?;
        let pointer = locations.pointer.clone();
        locations.document.values.insert(pointer, location);
        Some(mark)
    }

    fn leave(&mut self, mark: usize) {
        if let Some(locations) = self.locations.as_mut() {
            locations.pointer.truncate(mark);
        }
    }

    /// A complete value goes into its collection; at the top it is the root.
    fn attach(&mut self, value: Value) -> Option<Value> {
        match self.stack.last_mut() {
            None => Some(value),
            Some(Collection::Sequence(items)) => {
                items.push(value);
                None
            }
            Some(Collection::Mapping { entries, key }) => {
                if let Some(key) = key.take() {
                    entries.insert(key, value);
                }
                None
            }
        }
    }
}

/// A mapping key is text; a null one the serde route refuses, and `<<` is a
/// merge there.
fn mapping_key(text: Cow<'_, str>, style: ScalarStyle) -> Option<String> {
    if style == ScalarStyle::Plain && (is_null(&text) || text == "<<") {
        return None;
    }
    Some(text.into_owned())
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A scalar value as serde-saphyr reads an untagged one into a JSON value:
/// quoted and block scalars are text; a plain one is null, a YAML 1.1
/// boolean, an integer, a float, or else text. `None` where its rules go
/// beyond these (radix and underscored integers, `.inf`, `.nan`, a float
/// too large for `f64`, which it refuses).
fn scalar(text: Cow<'_, str>, style: ScalarStyle) -> Option<Value> {
    if style != ScalarStyle::Plain {
        return Some(Value::String(text.into_owned()));
    }
    if is_null(&text) {
        return Some(Value::Null);
    }
    const TRUE: [&str; 4] = ["true", "yes", "y", "on"];
    const FALSE: [&str; 4] = ["false", "no", "n", "off"];
    if TRUE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        return Some(Value::Bool(true));
    }
    if FALSE.iter().any(|word| text.eq_ignore_ascii_case(word)) {
        return Some(Value::Bool(false));
    }
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, &text[..]),
    };
    // Only a digit or a dot after the sign can start a number (Rust's float
    // parser also takes `inf` and `nan`, which serde-saphyr keeps as text).
    if !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Some(Value::String(text.into_owned()));
    }
    if unsigned.contains('_')
        || ["0x", "0X", "0o", "0O", "0b", "0B"]
            .iter()
            .any(|radix| unsigned.starts_with(radix))
        || matches!(
            unsigned,
            ".nan" | ".NaN" | ".NAN" | ".inf" | ".Inf" | ".INF"
        )
    {
        return None;
    }
    // A decimal integer without a redundant leading zero (`007` is a float).
    if unsigned.bytes().all(|b| b.is_ascii_digit())
        && (unsigned == "0" || !unsigned.starts_with('0'))
    {
        let integer = if negative {
            text.parse::<i64>().ok().map(Value::from)
        } else {
            unsigned.parse::<u64>().ok().map(Value::from)
        };
        if let Some(integer) = integer {
            return Some(integer);
        }
    }
    match text.parse::<f64>() {
        Ok(number) => Number::from_f64(number).map(Value::Number),
        Err(_) => Some(Value::String(text.into_owned())),
    }
}
