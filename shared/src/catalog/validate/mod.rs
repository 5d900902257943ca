//! Catalog validation: the same checks in `pao catalog validate`, in the
//! ingest function and in the tests. A file passes three gates in order —
//! readable YAML (`source`), the item JSON Schema, then the checks a schema
//! cannot say (ids, references, dependency graph, templates, each action's
//! config against its type's schema) — and every error names the file, the
//! YAML path, the line and the column.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::item::CatalogItem;
use super::source::{self, Document, Limits, Location};

mod check;
mod fulfillment;
mod schemas;
mod values;

use check::Check;
use schemas::SCHEMAS;
pub use schemas::{action_schema, rendered_config_problems, ITEM_SCHEMA};

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
pub(super) const MAX_SCHEMA_ERRORS: usize = 50;

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
