//! In-memory catalog stores, for unit tests and benchmarks only. They keep the
//! conditional semantics the DynamoDB and S3 adapters document, so tests that
//! use them exercise the same races the real stores see. A configured failure
//! makes every call fail, as an unreachable store would.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::index::{
    CatalogSource, CatalogStore, Generation, PublishOutcome, PublishedItem, SourceObject,
    StoreError, ValidationReport,
};

/// The bucket: key → current object.
#[derive(Default)]
pub struct MemoryBucket {
    objects: Mutex<BTreeMap<String, SourceObject>>,
}

impl MemoryBucket {
    pub fn put(&self, key: &str, bytes: impl AsRef<[u8]>, modified: i64) {
        let object = SourceObject {
            bytes: bytes.as_ref().to_vec(),
            modified,
        };
        lock(&self.objects).insert(key.to_string(), object);
    }

    pub fn delete(&self, key: &str) {
        lock(&self.objects).remove(key);
    }
}

#[async_trait]
impl CatalogSource for MemoryBucket {
    async fn fetch(&self, key: &str, max_bytes: usize) -> Result<Option<SourceObject>, StoreError> {
        Ok(lock(&self.objects).get(key).cloned().map(|mut object| {
            object.bytes.truncate(max_bytes + 1);
            object
        }))
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(lock(&self.objects).keys().cloned().collect())
    }
}

/// What the catalog table holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CatalogState {
    pub published: HashMap<String, PublishedItem>,
    pub reports: HashMap<String, ValidationReport>,
    /// Source key → (the item id the file holds, its modification time).
    pub sources: HashMap<String, (String, i64)>,
    pub contenders: HashMap<String, BTreeSet<String>>,
    pub generation: Generation,
}

#[derive(Default)]
pub struct MemoryCatalog {
    state: Mutex<CatalogState>,
    failure: Mutex<Option<StoreError>>,
    /// How often the whole published catalog was read.
    scans: std::sync::atomic::AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryCatalog {
    /// Makes every call fail with `failure` (or succeed again with `None`).
    pub fn fail_with(&self, failure: Option<StoreError>) {
        *lock(&self.failure) = failure;
    }

    /// Sets the generation record as if a change were half seen: its number
    /// and digest moved on while the items read do not show it yet.
    pub fn set_generation(&self, generation: Generation) {
        lock(&self.state).generation = generation;
    }

    /// How often the whole published catalog was read.
    pub fn scans(&self) -> usize {
        self.scans.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> CatalogState {
        lock(&self.state).clone()
    }

    fn reachable(&self) -> Result<MutexGuard<'_, CatalogState>, StoreError> {
        match lock(&self.failure).clone() {
            Some(failure) => Err(failure),
            None => Ok(lock(&self.state)),
        }
    }
}

#[async_trait]
impl CatalogStore for MemoryCatalog {
    async fn generation(&self) -> Result<Generation, StoreError> {
        Ok(self.reachable()?.generation)
    }

    async fn published(&self) -> Result<Vec<PublishedItem>, StoreError> {
        self.scans
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.reachable()?.published.values().cloned().collect())
    }

    async fn published_item(&self, item_id: &str) -> Result<Option<PublishedItem>, StoreError> {
        Ok(self.reachable()?.published.get(item_id).cloned())
    }

    async fn publish(&self, item: &PublishedItem) -> Result<PublishOutcome, StoreError> {
        let mut state = self.reachable()?;
        let id = item.item.header.id.clone();
        let outcome = match state.published.get(&id) {
            None => PublishOutcome::Published,
            Some(current) if current.source_key != item.source_key => {
                PublishOutcome::OwnedBy(current.source_key.clone())
            }
            Some(current) if current.source_modified <= item.source_modified => {
                PublishOutcome::Published
            }
            Some(_) => PublishOutcome::Stale,
        };
        if outcome == PublishOutcome::Published {
            let mut digest = state.generation.digest;
            if let Some(old) = state.published.insert(id.clone(), item.clone()) {
                digest = digest.toggle(&id, &old.content_hash);
            }
            state.generation = Generation {
                number: state.generation.number + 1,
                digest: digest.toggle(&id, &item.content_hash),
            };
        }
        Ok(outcome)
    }

    async fn unpublish(
        &self,
        item_id: &str,
        source_key: &str,
        modified_before: i64,
    ) -> Result<(), StoreError> {
        let mut state = self.reachable()?;
        let ours = state
            .published
            .get(item_id)
            .is_some_and(|p| p.source_key == source_key && p.source_modified <= modified_before);
        if let Some(old) = ours.then(|| state.published.remove(item_id)).flatten() {
            state.generation = Generation {
                number: state.generation.number + 1,
                digest: state.generation.digest.toggle(item_id, &old.content_hash),
            };
        }
        Ok(())
    }

    async fn report(&self, item_id: &str) -> Result<Option<ValidationReport>, StoreError> {
        Ok(self.reachable()?.reports.get(item_id).cloned())
    }

    async fn save_report(&self, report: &ValidationReport) -> Result<(), StoreError> {
        let mut state = self.reachable()?;
        let newer = state.reports.get(&report.item_id).is_some_and(|current| {
            current.source_key == report.source_key
                && current.source_modified > report.source_modified
        });
        if !newer {
            state.reports.insert(report.item_id.clone(), report.clone());
        }
        Ok(())
    }

    async fn save_own_report(&self, report: &ValidationReport) -> Result<bool, StoreError> {
        let mut state = self.reachable()?;
        let others = state
            .reports
            .get(&report.item_id)
            .is_some_and(|current| current.source_key != report.source_key);
        let newer = state
            .reports
            .get(&report.item_id)
            .is_some_and(|current| current.source_modified > report.source_modified);
        if !others && !newer {
            state.reports.insert(report.item_id.clone(), report.clone());
        }
        Ok(!others)
    }

    async fn item_of_source(&self, source_key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .reachable()?
            .sources
            .get(source_key)
            .map(|(id, _)| id.clone()))
    }

    async fn claim_source(
        &self,
        source_key: &str,
        item_id: &str,
        modified: i64,
    ) -> Result<bool, StoreError> {
        let mut state = self.reachable()?;
        if state
            .sources
            .get(source_key)
            .is_some_and(|(_, at)| *at > modified)
        {
            return Ok(false);
        }
        state
            .sources
            .insert(source_key.to_string(), (item_id.to_string(), modified));
        Ok(true)
    }

    async fn release_source(&self, source_key: &str) -> Result<(), StoreError> {
        self.reachable()?.sources.remove(source_key);
        Ok(())
    }

    async fn contenders(&self, item_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .reachable()?
            .contenders
            .get(item_id)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn set_contender(
        &self,
        item_id: &str,
        source_key: &str,
        contending: bool,
    ) -> Result<(), StoreError> {
        let mut state = self.reachable()?;
        if contending {
            let keys = state.contenders.entry(item_id.to_string()).or_default();
            keys.insert(source_key.to_string());
        } else if let Some(keys) = state.contenders.get_mut(item_id) {
            keys.remove(source_key);
        }
        Ok(())
    }
}
