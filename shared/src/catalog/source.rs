//! A catalog file as text: bytes in, a JSON value out, with the line and
//! column of every key and value kept, so that any later check can point at
//! the exact place in the file. Hostile input (too large, not UTF-8, alias
//! bombs, deep nesting, duplicate keys) becomes a located error here, with
//! bounded memory, before anything else sees it.
//!
//! Two routes read the YAML: `events` builds the value straight from the
//! parser's events, for the YAML catalog items are written in, and declines
//! anything else; `saphyr` (serde-saphyr) reads all of YAML and words every
//! refusal. Both enforce the same [`Limits`].

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

mod events;
mod saphyr;

/// A position in a file, both 1-based.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

impl Location {
    pub const START: Self = Self { line: 1, column: 1 };
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
#[derive(Debug, Clone, Default)]
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
    match events::read(text, limits, true) {
        Some(document) => Ok(document),
        None => saphyr::parse(text, limits, true),
    }
}

/// The paths of a document's nodes may add up to this many times its
/// size limit (a 22 KB item's paths take about 60 KB).
const PATH_BUDGET_FACTOR: usize = 16;

const PATHS_TOO_LONG: &str = "the paths to the values here add up to far more than the file: \
                              keys this long or this many cannot be a catalog item's";

/// Parses one YAML document within `limits` without keeping locations:
/// faster, for the common case of a file with nothing to report. `None`
/// for anything [`parse`] would refuse, which then says where and why.
pub fn parse_unlocated(bytes: &[u8], limits: &Limits) -> Option<Document> {
    if bytes.len() > limits.max_bytes {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    events::read(text, limits, false).or_else(|| saphyr::parse(text, limits, false).ok())
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

    /// Texts to read both ways: every example item and fixture, and YAML
    /// meant to sit on either side of what the event route takes.
    fn texts_to_compare() -> Vec<String> {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let folders = [
            "catalog/items",
            "shared/tests/fixtures/catalog/valid",
            "shared/tests/fixtures/catalog/invalid",
        ];
        let mut texts: Vec<String> = folders
            .iter()
            .flat_map(|folder| std::fs::read_dir(format!("{root}/{folder}")).unwrap())
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .filter_map(|path| String::from_utf8(std::fs::read(path).unwrap()).ok())
            .collect();
        let scalars = [
            "1",
            "-1",
            "+1",
            "0",
            "-0",
            "007",
            "-007",
            "1.5",
            "+1.5",
            "-1.5",
            ".5",
            "1.",
            "1e3",
            "1E3",
            "-1e-3",
            "1.2.0",
            "10.0.0.0/16",
            "1_000",
            "0x1F",
            "0o17",
            "0b101",
            ".inf",
            "-.inf",
            "+.nan",
            ".nan",
            "inf",
            "nan",
            "Infinity",
            "1e999",
            ".5e999",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "y",
            "Y",
            "yes",
            "No",
            "ON",
            "off",
            "true",
            "False",
            "TRUE",
            "~",
            "null",
            "Null",
            "NULL",
            "",
            "nul",
            "t3.medium",
            "1Gi",
            "2024-01-01",
            "12:30",
            "'1'",
            "\"true\"",
            "''",
            "\"a\\tb\"",
            "|\n  text\n",
            ">\n  folded\n  text\n",
            "-",
            "+",
            ".",
            "e5",
            "0.0.0.0",
            "!!str 1",
            "&x 1",
            "[]",
            "{}",
            "[a, 1, {b: ~}]",
        ];
        texts.extend(scalars.iter().map(|s| format!("k: {s}\n")));
        let documents = [
            "1: a\n",
            "true: b\n",
            "'': c\n",
            "~: d\n",
            "? [a]\n: b\n",
            "a: &x 1\nb: *x\n",
            "<<: {a: 1}\n",
            "a: 1\n---\nb: 2\n",
            "---\n",
            "# only a comment\n",
            "scalar root\n",
            "[1, [2, {a: b}]]\n",
            "{a: 1, b: [x, y]}\n",
            "a:\n  - b: 1\n    c: 2\n  - [x]\n",
            "a/b: 1\nc~d: 2\n",
            "a: 1\na: 2\n",
            "a: 1\n'a': 2\n",
            "%YAML 1.2\n---\na: 1\n",
            "--- !!map\na: 1\n",
            "a:\n  b:\n    c:\n",
            "- - - x\n",
            "a: [1, 2\n",
        ];
        texts.extend(documents.iter().map(|d| d.to_string()));
        texts
    }

    #[test]
    fn the_event_route_reads_exactly_what_the_serde_route_reads() {
        let limits = Limits::default();
        for text in texts_to_compare() {
            for locate in [true, false] {
                let Some(fast) = events::read(&text, &limits, locate) else {
                    continue;
                };
                let slow = saphyr::parse(&text, &limits, locate).unwrap_or_else(|err| {
                    panic!("{text:?}: only the event route reads it: {err:?}")
                });
                assert_eq!(fast.value, slow.value, "{text:?}");
                assert_eq!(fast.values, slow.values, "{text:?}");
                assert_eq!(fast.keys, slow.keys, "{text:?}");
            }
        }
    }

    #[test]
    fn the_example_items_take_the_event_route() {
        let examples = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../catalog/items"))
            .unwrap()
            .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap());
        for text in examples {
            assert!(events::read(&text, &Limits::default(), true).is_some());
            assert!(events::read(&text, &Limits::default(), false).is_some());
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
