//! Protection of what PAO calls and of the accounts it provisions in,
//! shared by every instance of every function through small records that
//! change only by compare-and-set:
//! - [`breaker`]: a circuit breaker per target (host and port) around the
//!   guarded HTTP client;
//! - [`slots`]: a concurrency cap per action type, a semaphore whose
//!   leases expire when their holder dies.
//!
//! Both keep their state in one port, [`Shared`]: a document per key and a
//! version that every write must name, so two instances deciding at once
//! cannot both win. The requests table holds them (`aws::shared_table`).

pub mod breaker;
pub mod memory;
pub mod slots;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::catalog::index::StoreError;

/// A record and the version a write must name to replace it.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// Small records shared by every instance, each written only if it is still
/// at the version the writer read.
#[async_trait]
pub trait Shared: Send + Sync {
    /// The record, read consistently.
    async fn read(&self, key: &str) -> Result<Option<Versioned<serde_json::Value>>, StoreError>;

    /// Writes `value` as version `seen + 1` (1 for a new record) if the
    /// record is still at `seen` (absent for `None`): false when another
    /// writer came first.
    async fn write(
        &self,
        key: &str,
        value: &serde_json::Value,
        seen: Option<u64>,
    ) -> Result<bool, StoreError>;
}

/// Reads a typed record; one that no longer reads as `T` counts as absent
/// (it is replaced by the next write, whose version check still holds).
pub async fn read<T: DeserializeOwned>(
    store: &dyn Shared,
    key: &str,
) -> Result<(Option<T>, Option<u64>), StoreError> {
    Ok(match store.read(key).await? {
        Some(record) => (
            serde_json::from_value(record.value).ok(),
            Some(record.version),
        ),
        None => (None, None),
    })
}

/// Writes a typed record over version `seen`.
pub async fn write<T: Serialize>(
    store: &dyn Shared,
    key: &str,
    value: &T,
    seen: Option<u64>,
) -> Result<bool, StoreError> {
    let value = serde_json::to_value(value).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    store.write(key, &value, seen).await
}

/// What a decision over a shared record does.
pub enum Decision<T, R> {
    /// Write this record; answer `R` once the write wins.
    Write(T, R),
    /// Write nothing; answer `R`.
    Keep(R),
}

/// The one compare-and-set loop of every shared record: reads it (with
/// its version), lets `decide` say what to write, and writes it if the
/// record is still as read; after a lost race it decides again from a
/// fresh read. `None`: every one of [`RACES`] attempts was lost.
pub async fn update<T, R>(
    store: &dyn Shared,
    key: &str,
    mut decide: impl FnMut(Option<T>, Option<u64>) -> Decision<T, R>,
) -> Result<Option<R>, StoreError>
where
    T: Serialize + DeserializeOwned,
{
    for _ in 0..RACES {
        let (record, version) = read::<T>(store, key).await?;
        match decide(record, version) {
            Decision::Keep(answer) => return Ok(Some(answer)),
            Decision::Write(record, answer) => {
                if write(store, key, &record, version).await? {
                    return Ok(Some(answer));
                }
            }
        }
    }
    Ok(None)
}

/// How many times a decision is taken again after losing a race.
const RACES: usize = 5;

/// Seconds since the epoch; a function so tests can move time.
pub type Clock = std::sync::Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    std::sync::Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}
