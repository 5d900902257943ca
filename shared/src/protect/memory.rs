//! An in-memory [`Shared`] for unit tests, with the same compare-and-set
//! as the table; a configured failure makes every call fail.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use super::{Shared, Versioned};
use crate::catalog::index::StoreError;

#[derive(Default)]
pub struct MemoryShared {
    records: Mutex<HashMap<String, Versioned<Value>>>,
    failing: Mutex<bool>,
    /// Writes made, for tests that count them.
    writes: Mutex<u32>,
}

impl MemoryShared {
    pub fn fail(&self, failing: bool) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = failing;
    }

    pub fn writes(&self) -> u32 {
        *self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self) -> Result<(), StoreError> {
        if *self.failing.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(StoreError::Unavailable("the store is down".to_string()));
        }
        Ok(())
    }
}

#[async_trait]
impl Shared for MemoryShared {
    async fn read(&self, key: &str) -> Result<Option<Versioned<Value>>, StoreError> {
        self.check()?;
        // As a table's read would, let other callers run between this read
        // and the write that follows it, so races happen in tests too.
        tokio::task::yield_now().await;
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        Ok(records.get(key).cloned())
    }

    async fn write(&self, key: &str, value: &Value, seen: Option<u64>) -> Result<bool, StoreError> {
        self.check()?;
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.get(key).map(|r| r.version) != seen {
            return Ok(false);
        }
        records.insert(
            key.to_string(),
            Versioned {
                value: value.clone(),
                version: seen.map_or(1, |v| v + 1),
            },
        );
        *self.writes.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        Ok(true)
    }
}
