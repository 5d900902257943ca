//! The published catalog and how uploads reach it (ingest). Owns the rules:
//! only a valid file is published; an invalid one leaves the last good
//! version live and stores a report; a removed file unpublishes its item;
//! one item id belongs to one file.
//!
//! S3 events are at-least-once and unordered, so an event is only a trigger:
//! ingest reads the object's current state and publishes with a conditional
//! write on the object's modification time, so a late or replayed event can
//! never put an older version back. The stores are traits; the S3 and
//! DynamoDB adapters live in `aws/`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::event::S3Notification;
use super::item::CatalogItem;
use super::source::{self, Limits};
use super::validate::{validate_file, Diagnostic};
use crate::clock::now;

/// An item as the catalog serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishedItem {
    pub item: CatalogItem,
    /// The bucket key of the file it came from.
    pub source_key: String,
    pub content_hash: String,
    /// The file's modification time (ms since the epoch): newer wins.
    pub source_modified: i64,
    pub published_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportStatus {
    Valid,
    Invalid,
}

/// The outcome of the last validation of an item's file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub item_id: String,
    pub source_key: String,
    pub status: ReportStatus,
    pub content_hash: String,
    pub source_modified: i64,
    pub checked_at: String,
    pub errors: Vec<Diagnostic>,
    /// What the catalog serves for the item after this upload: the upload
    /// itself when it was valid, the last good version when it was refused,
    /// nothing when no version was ever published.
    #[serde(default)]
    pub live: Option<LiveVersion>,
    /// One sentence for people: what happened to the upload and what is live.
    #[serde(default)]
    pub summary: String,
}

/// The published version of an item, as a report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveVersion {
    pub version: String,
    pub source_key: String,
    pub content_hash: String,
    pub published_at: String,
}

impl LiveVersion {
    fn of(published: &PublishedItem) -> Self {
        Self {
            version: published.item.header.version.clone(),
            source_key: published.source_key.clone(),
            content_hash: published.content_hash.clone(),
            published_at: published.published_at.clone(),
        }
    }
}

/// A catalog file as the bucket holds it now.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceObject {
    pub bytes: Vec<u8>,
    pub modified: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused: worth a retry.
    #[error("{0}")]
    Unavailable(String),
    /// What the store holds cannot be read back: a defect or a manual edit.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<StoreError> for lambda_runtime::Diagnostic {
    fn from(err: StoreError) -> Self {
        let error_type = match err {
            StoreError::Unavailable(_) => "Retryable",
            StoreError::Corrupt(_) => "Fatal",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_string(),
            error_message: err.to_string(),
        }
    }
}

/// The catalog's generation: a number every publish and unpublish raises,
/// and a digest of the published set it stands for, both written in the
/// same atomic write as the change. A copy of the catalog whose digest is
/// the generation's is exactly that generation, however the reads that made
/// it interleaved with writes. Number 0: never changed since this record was
/// introduced (its digest is then unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generation {
    pub number: u64,
    pub digest: SetDigest,
}

/// An order-free digest of a set of (item id, content hash) pairs: the XOR
/// of a 128-bit hash of each, so adding or removing one pair is one XOR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetDigest(u128);

impl SetDigest {
    pub fn of(items: &[PublishedItem]) -> Self {
        items.iter().fold(Self::default(), |digest, published| {
            digest.toggle(&published.item.header.id, &published.content_hash)
        })
    }

    /// The digest with the pair added, or removed if it was in.
    pub fn toggle(self, item_id: &str, content_hash: &str) -> Self {
        use sha2::{Digest, Sha256};
        let hash = Sha256::new()
            .chain_update(item_id.as_bytes())
            .chain_update([0])
            .chain_update(content_hash.as_bytes())
            .finalize();
        let mut half = [0u8; 16];
        half.copy_from_slice(&hash[..16]);
        Self(self.0 ^ u128::from_be_bytes(half))
    }

    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        u128::from_str_radix(text, 16).ok().map(Self)
    }
}

/// What a conditional publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    Published,
    /// A version at least as new is already published: nothing changed.
    Stale,
    /// The id belongs to another file.
    OwnedBy(String),
}

/// Where catalog files live (the bucket).
#[async_trait]
pub trait CatalogSource: Send + Sync {
    /// The object's current bytes, or `None` when it does not exist. Objects
    /// larger than `max_bytes` come back truncated to `max_bytes + 1` bytes.
    async fn fetch(&self, key: &str, max_bytes: usize) -> Result<Option<SourceObject>, StoreError>;
    async fn keys(&self) -> Result<Vec<String>, StoreError>;
}

/// Where the published catalog and the reports live.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// The catalog's generation, read consistently: every publish and
    /// unpublish raises it in the same atomic write as the change.
    async fn generation(&self) -> Result<Generation, StoreError>;
    async fn published(&self) -> Result<Vec<PublishedItem>, StoreError>;
    async fn published_item(&self, item_id: &str) -> Result<Option<PublishedItem>, StoreError>;
    /// Publishes unless the id belongs to another file or a version at least
    /// as new is published, raising the generation with it.
    async fn publish(&self, item: &PublishedItem) -> Result<PublishOutcome, StoreError>;
    /// Unpublishes `item_id` if it still comes from `source_key` and from a
    /// version no newer than `modified_before` (ms; `i64::MAX` for any),
    /// raising the generation with it.
    async fn unpublish(
        &self,
        item_id: &str,
        source_key: &str,
        modified_before: i64,
    ) -> Result<(), StoreError>;
    async fn report(&self, item_id: &str) -> Result<Option<ValidationReport>, StoreError>;
    /// Saves a report unless a newer one from the same file exists.
    async fn save_report(&self, report: &ValidationReport) -> Result<(), StoreError>;
    /// Saves a report filed under an id made up for its file, only where no
    /// other file's report of that id stands; `false` when one does.
    async fn save_own_report(&self, report: &ValidationReport) -> Result<bool, StoreError>;
    /// The item id a file last held, if any.
    async fn item_of_source(&self, source_key: &str) -> Result<Option<String>, StoreError>;
    /// Records that the file, as modified at `modified`, holds `item_id`;
    /// `false` when a newer version of the file was recorded already.
    async fn claim_source(
        &self,
        source_key: &str,
        item_id: &str,
        modified: i64,
    ) -> Result<bool, StoreError>;
    async fn release_source(&self, source_key: &str) -> Result<(), StoreError>;
    /// Files refused because another file held their item id.
    async fn contenders(&self, item_id: &str) -> Result<Vec<String>, StoreError>;
    async fn set_contender(
        &self,
        item_id: &str,
        source_key: &str,
        contending: bool,
    ) -> Result<(), StoreError>;
}

/// What ingesting one key did, for the log and the refresh summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Ingested {
    Published {
        item_id: String,
    },
    Unchanged {
        item_id: String,
    },
    Rejected {
        item_id: Option<String>,
        errors: usize,
    },
    Removed {
        item_id: Option<String>,
    },
    Ignored,
}

pub struct Ingest {
    source: Arc<dyn CatalogSource>,
    store: Arc<dyn CatalogStore>,
}

/// The most a published item may take as stored: DynamoDB's item limit
/// (400 KB) less room for the record's other attributes. A file within the
/// size limit can exceed it when aliases repeat large values.
pub const MAX_STORED_BYTES: usize = 380_000;

/// Whether a bucket key holds a catalog item.
pub fn is_catalog_key(key: &str) -> bool {
    key.ends_with(".yaml") || key.ends_with(".yml")
}

impl Ingest {
    pub fn new(source: Arc<dyn CatalogSource>, store: Arc<dyn CatalogStore>) -> Self {
        Self { source, store }
    }

    /// Ingests every key an S3 notification names. A store failure fails the
    /// invocation, so Lambda's retry of asynchronous events tries again.
    pub async fn sync_event(&self, event: &S3Notification) -> Result<Vec<Ingested>, StoreError> {
        let mut outcomes = Vec::new();
        for key in event.keys() {
            outcomes.push(self.sync_key(&key).await?);
        }
        Ok(outcomes)
    }

    /// Brings the catalog in line with the current state of one bucket key.
    #[tracing::instrument(skip(self))]
    pub async fn sync_key(&self, key: &str) -> Result<Ingested, StoreError> {
        if !is_catalog_key(key) {
            return Ok(Ingested::Ignored);
        }
        let limit = Limits::default().max_bytes;
        let previous = self.store.item_of_source(key).await?;
        let Some(object) = self.source.fetch(key, limit).await? else {
            return self.remove(key, previous).await;
        };
        let checked_at = now();
        let valid = match validate_file(key, &object.bytes) {
            Ok(valid) => valid,
            Err(errors) => return self.reject(key, previous, &object, errors).await,
        };
        let item_id = valid.item.header.id.clone();
        let hash = valid.content_hash.clone();
        let published = PublishedItem {
            item: valid.item,
            source_key: key.to_string(),
            content_hash: hash.clone(),
            source_modified: object.modified,
            published_at: checked_at.clone(),
        };
        let stored = serde_json::to_vec(&published).map_or(usize::MAX, |json| json.len());
        if stored > MAX_STORED_BYTES {
            let error = Diagnostic {
                file: key.to_string(),
                line: 1,
                column: 1,
                path: String::new(),
                message: format!(
                    "the item takes {stored} bytes once published (aliases expanded); a catalog item may take at most {MAX_STORED_BYTES}"
                ),
            };
            return self.reject(key, previous, &object, vec![error]).await;
        }
        let current = self.store.published_item(&item_id).await?;
        let unchanged = current
            .as_ref()
            .is_some_and(|c| c.content_hash == hash && c.source_key == key);
        let outcome = if unchanged {
            Ingested::Unchanged {
                item_id: item_id.clone(),
            }
        } else {
            match self.store.publish(&published).await? {
                PublishOutcome::Published => Ingested::Published {
                    item_id: item_id.clone(),
                },
                PublishOutcome::Stale => Ingested::Unchanged {
                    item_id: item_id.clone(),
                },
                PublishOutcome::OwnedBy(owner) => {
                    return self.contend(key, &item_id, &owner, &object, &hash).await
                }
            }
        };
        if !self
            .store
            .claim_source(key, &item_id, object.modified)
            .await?
        {
            // A newer version of this file was ingested while we read an older
            // one: take back what we published, the newer version stands.
            self.store.unpublish(&item_id, key, object.modified).await?;
            return Ok(Ingested::Unchanged { item_id });
        }
        // Even when nothing changed the report may be stale: the file may
        // have been broken in between and reverted to what is published.
        let report = self.store.report(&item_id).await?;
        let reported = report.is_some_and(|r| {
            r.status == ReportStatus::Valid && r.content_hash == hash && r.source_key == key
        });
        if !reported {
            self.report(&item_id, key, &object, &hash, &checked_at, Vec::new())
                .await?;
        }
        self.store.set_contender(&item_id, key, false).await?;
        if let Some(old) = previous.filter(|old| *old != item_id) {
            // The file now holds another item: the old one goes.
            self.store.unpublish(&old, key, object.modified).await?;
            self.wake_contenders(&old).await?;
        }
        tracing::info!(key, ?outcome, "catalog file ingested");
        // S3 keeps modification times to the second: a newer version written
        // in the same second may have been published first, then overwritten
        // by this one. What was published must still be the object, or the
        // object as it is now is ingested again.
        if matches!(outcome, Ingested::Published { .. })
            && !self.is_current(key, Some(&hash)).await?
        {
            return Box::pin(self.sync_key(key)).await;
        }
        Ok(outcome)
    }

    /// A file that failed validation: nothing is published, and its report is
    /// filed where the team will look for it — under the id the file claims
    /// (readable even from a file that does not parse), else under the item
    /// the file held before, else under an id made from its file name.
    async fn reject(
        &self,
        key: &str,
        previous: Option<String>,
        object: &SourceObject,
        errors: Vec<Diagnostic>,
    ) -> Result<Ingested, StoreError> {
        let claimed = claimed_id(&object.bytes);
        let made_up = claimed.is_none() && previous.is_none();
        let (item_id, found_by) = match (claimed, previous) {
            (Some(id), _) => (id, "the file"),
            (None, Some(id)) => (id, "the item the file held before"),
            (None, None) => (id_from_key(key), "the file name"),
        };
        let count = errors.len();
        let first = errors.first().map(ToString::to_string);
        let hash = super::validate::content_hash(&object.bytes);
        let report = self
            .report_of(&item_id, key, object, &hash, &now(), errors)
            .await?;
        // An id made from a file name may be a real item's: its report is
        // never replaced by another file's.
        let filed_under = if !made_up {
            self.store.save_report(&report).await?;
            item_id
        } else if self.store.save_own_report(&report).await? {
            item_id
        } else {
            let unique = id_of_key(key);
            let report = self
                .report_of(
                    &unique,
                    key,
                    object,
                    &hash,
                    &report.checked_at,
                    report.errors,
                )
                .await?;
            self.store.save_report(&report).await?;
            unique
        };
        tracing::warn!(
            key,
            item_id = filed_under,
            id_from = found_by,
            errors = count,
            first_error = first.as_deref(),
            "catalog file rejected"
        );
        Ok(Ingested::Rejected {
            item_id: Some(filed_under),
            errors: count,
        })
    }

    /// Whether `key` still holds the content hashed `hash` (`None`: whether
    /// it is still gone).
    async fn is_current(&self, key: &str, hash: Option<&str>) -> Result<bool, StoreError> {
        let limit = Limits::default().max_bytes;
        let object = self.source.fetch(key, limit).await?;
        let now = object.map(|object| super::validate::content_hash(&object.bytes));
        Ok(now.as_deref() == hash)
    }

    /// A valid file claims an id another file publishes.
    async fn contend(
        &self,
        key: &str,
        item_id: &str,
        owner: &str,
        object: &SourceObject,
        hash: &str,
    ) -> Result<Ingested, StoreError> {
        let limit = Limits::default().max_bytes;
        if self.source.fetch(owner, limit).await?.is_none() {
            // The owner's file is gone (a rename whose delete has not been
            // ingested yet): this file takes over.
            self.store.unpublish(item_id, owner, i64::MAX).await?;
            self.store.release_source(owner).await?;
            return Box::pin(self.sync_key(key)).await;
        }
        let location = source::parse(&object.bytes, &Limits::default())
            .map(|doc| doc.locate("/header/id"))
            .unwrap_or(source::Location::START);
        let error = Diagnostic {
            file: key.to_string(),
            line: location.line,
            column: location.column,
            path: "header.id".to_string(),
            message: format!("item id `{item_id}` is already used by {owner}"),
        };
        self.store.set_contender(item_id, key, true).await?;
        self.report(item_id, key, object, hash, &now(), vec![error])
            .await?;
        tracing::warn!(key, item_id, owner, "catalog file refused: id in use");
        Ok(Ingested::Rejected {
            item_id: Some(item_id.to_string()),
            errors: 1,
        })
    }

    async fn remove(&self, key: &str, previous: Option<String>) -> Result<Ingested, StoreError> {
        tracing::info!(key, item_id = previous.as_deref(), "catalog file removed");
        let Some(item_id) = previous else {
            return Ok(Ingested::Removed { item_id: None });
        };
        self.store.unpublish(&item_id, key, i64::MAX).await?;
        self.store.release_source(key).await?;
        self.wake_contenders(&item_id).await?;
        // Deleted and uploaded again at once (`rm` then `cp` in a CI job):
        // the upload's own event may have come and gone before this one.
        if !self.is_current(key, None).await? {
            return Box::pin(self.sync_key(key)).await;
        }
        Ok(Ingested::Removed {
            item_id: Some(item_id),
        })
    }

    /// Files refused because `item_id` was taken get another chance.
    async fn wake_contenders(&self, item_id: &str) -> Result<(), StoreError> {
        for contender in self.store.contenders(item_id).await? {
            Box::pin(self.sync_key(&contender)).await?;
        }
        Ok(())
    }

    async fn report(
        &self,
        item_id: &str,
        key: &str,
        object: &SourceObject,
        content_hash: &str,
        checked_at: &str,
        errors: Vec<Diagnostic>,
    ) -> Result<(), StoreError> {
        let report = self
            .report_of(item_id, key, object, content_hash, checked_at, errors)
            .await?;
        self.store.save_report(&report).await
    }

    /// The report of one upload, naming what the catalog serves for the item.
    async fn report_of(
        &self,
        item_id: &str,
        key: &str,
        object: &SourceObject,
        content_hash: &str,
        checked_at: &str,
        errors: Vec<Diagnostic>,
    ) -> Result<ValidationReport, StoreError> {
        let live = self
            .store
            .published_item(item_id)
            .await?
            .map(|published| LiveVersion::of(&published));
        let summary = summary(item_id, key, errors.len(), live.as_ref(), content_hash);
        Ok(ValidationReport {
            item_id: item_id.to_string(),
            source_key: key.to_string(),
            status: if errors.is_empty() {
                ReportStatus::Valid
            } else {
                ReportStatus::Invalid
            },
            content_hash: content_hash.to_string(),
            source_modified: object.modified,
            checked_at: checked_at.to_string(),
            errors,
            live,
            summary,
        })
    }

    /// Rebuilds the catalog from the bucket: every key is ingested again and
    /// every published item whose file is gone is unpublished.
    pub async fn rebuild(&self) -> Result<Vec<(String, Ingested)>, StoreError> {
        let keys = self.source.keys().await?;
        let mut outcomes = Vec::new();
        for key in keys.iter().filter(|key| is_catalog_key(key)) {
            outcomes.push((key.clone(), self.sync_key(key).await?));
        }
        for published in self.store.published().await? {
            if !keys.contains(&published.source_key) {
                // Not listed: gone, or uploaded after the listing. Its
                // current state decides, as for any event.
                let key = published.source_key;
                let outcome = match self.sync_key(&key).await? {
                    // Gone, and no record said the file held the item.
                    Ingested::Removed { item_id: None } => {
                        let item_id = published.item.header.id;
                        self.store.unpublish(&item_id, &key, i64::MAX).await?;
                        Ingested::Removed {
                            item_id: Some(item_id),
                        }
                    }
                    outcome => outcome,
                };
                outcomes.push((key, outcome));
            }
        }
        Ok(outcomes)
    }
}

/// What a report says in one sentence.
fn summary(
    item_id: &str,
    key: &str,
    errors: usize,
    live: Option<&LiveVersion>,
    content_hash: &str,
) -> String {
    let refused = match errors {
        0 => String::new(),
        1 => format!("The upload of {key} was refused (1 error); "),
        n => format!("The upload of {key} was refused ({n} errors); "),
    };
    match live {
        Some(live) if errors == 0 && live.content_hash == content_hash => {
            format!(
                "{key} is valid and live: `{item_id}` version {}.",
                live.version
            )
        }
        Some(live) if errors == 0 => format!(
            "{key} is valid; `{item_id}` version {} from {} stays live.",
            live.version, live.source_key
        ),
        Some(live) => format!(
            "{refused}`{item_id}` version {} from {} (published {}) stays live.",
            live.version, live.source_key, live.published_at
        ),
        None if errors == 0 => format!("{key} is valid; `{item_id}` is not published."),
        None => format!("{refused}no version of `{item_id}` is published."),
    }
}

/// The id an invalid file claims, so its report can be found by item id.
/// A file that does not parse as YAML may still name its id plainly: then
/// the `id:` line of its top-level `header:` block is read as text.
fn claimed_id(bytes: &[u8]) -> Option<String> {
    let id = match source::parse_unlocated(bytes, &Limits::default()) {
        Some(document) => document.value.pointer("/header/id")?.as_str()?.to_string(),
        None => header_id_line(bytes)?,
    };
    super::item::is_item_id(&id).then_some(id)
}

/// The value of `id:` directly under the top-level `header:` block, read
/// line by line.
fn header_id_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(Limits::default().max_bytes)]);
    let mut in_header = false;
    let mut header_indent = None;
    for line in text.lines() {
        let content = line.split(" #").next().unwrap_or_default().trim_end();
        let body = content.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = content.len() - body.len();
        if indent == 0 {
            in_header = content == "header:";
            header_indent = None;
            continue;
        }
        if !in_header || *header_indent.get_or_insert(indent) != indent {
            continue;
        }
        if let Some(value) = body.strip_prefix("id:") {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            return Some(value.to_string());
        }
    }
    None
}

/// An item id made from a file's name (`items/My_Service.yaml` →
/// `my-service`, `items/2024.yaml` → `file-2024`), for the report of a
/// file whose id cannot be read.
fn id_from_key(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name);
    let mut id = String::new();
    for c in stem.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            id.push(c);
        } else if !id.is_empty() && !id.ends_with('-') {
            id.push('-');
        }
    }
    let mut id = id.trim_end_matches('-').to_string();
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        id = if id.is_empty() {
            id_of_key(key)
        } else {
            format!("file-{id}")
        };
    }
    id.truncate(63);
    id.trim_end_matches('-').to_string()
}

/// An id only this file's key makes, for when the one made from its name
/// is taken by another file's report.
fn id_of_key(key: &str) -> String {
    let hash = super::validate::content_hash(key.as_bytes());
    let hex = hash.trim_start_matches("sha256:");
    format!("file-{}", &hex[..12])
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
