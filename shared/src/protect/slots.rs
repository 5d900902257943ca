//! A concurrency cap per action type (at most K EKS clusters being created
//! at once across every request, say, for an account's limits): a
//! semaphore in one shared record per type, `{holder: lease expiry}`.
//!
//! An action takes a slot when it starts and holds it while it polls,
//! each call renewing its lease; it gives it back when it succeeds or
//! fails. A lease not renewed within [`Settings::lease`] (its holder's
//! execution died or was stopped) expires, and the slot is free again.
//! An action over the cap is not failed: it waits, and says for what.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{update, Clock, Decision, Shared};
use crate::catalog::index::StoreError;
use crate::catalog::item::ActionType;
use crate::config::{ConfigError, Env};

/// The deployment's caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `PAO_CONCURRENCY_CAPS`: `type=K` pairs, comma-separated, such as
    /// `aws-eks-cluster=3,aws-rds-postgres=10`; types not named are not
    /// capped.
    pub caps: BTreeMap<ActionType, u32>,
    /// `PAO_SLOT_LEASE_SECONDS` (default 900): how long a slot stays taken
    /// without its holder calling; longer than the longest wait between
    /// polls.
    pub lease: u64,
}

impl Settings {
    pub const CAPS: &'static str = "PAO_CONCURRENCY_CAPS";

    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            name: Self::CAPS,
            reason,
        };
        let mut caps = BTreeMap::new();
        for pair in env.or(Self::CAPS, "").split(',').map(str::trim) {
            if pair.is_empty() {
                continue;
            }
            let (kind, cap) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("`{pair}` is not type=number")))?;
            let kind: ActionType = kind
                .trim()
                .parse()
                .map_err(|_| invalid(format!("`{}` is not an action type", kind.trim())))?;
            let cap: u32 = cap
                .trim()
                .parse()
                .ok()
                .filter(|cap| *cap > 0)
                .ok_or_else(|| invalid(format!("the cap of {pair} is not a number above 0")))?;
            caps.insert(kind, cap);
        }
        Ok(Self {
            caps,
            lease: env.number("PAO_SLOT_LEASE_SECONDS", 900)?.max(1),
        })
    }
}

/// One type's record: who holds a slot, until when.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Holders {
    holders: BTreeMap<String, u64>,
}

/// The answer to "may this action run now?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// The type has no cap.
    Uncapped,
    /// Taken (or renewed) by this holder.
    Held,
    /// Every slot is held by others.
    Busy { cap: u32, holders: Vec<String> },
}

pub struct Slots {
    store: Arc<dyn Shared>,
    settings: Settings,
    clock: Clock,
}

fn key(kind: ActionType) -> String {
    format!("SLOTS#{}", kind.name())
}

impl Slots {
    pub fn new(store: Arc<dyn Shared>, settings: Settings, clock: Clock) -> Self {
        Self {
            store,
            settings,
            clock,
        }
    }

    /// Takes a slot of `kind` for `holder`, or renews the one it holds.
    pub async fn take(&self, kind: ActionType, holder: &str) -> Result<Slot, StoreError> {
        let Some(&cap) = self.settings.caps.get(&kind) else {
            return Ok(Slot::Uncapped);
        };
        let lease = self.settings.lease;
        let decided = update(
            self.store.as_ref(),
            &key(kind),
            |record: Option<Holders>, _| {
                let now = (self.clock)();
                let mut record = record.unwrap_or_default();
                record.holders.retain(|_, until| *until > now);
                let others: Vec<String> = record
                    .holders
                    .keys()
                    .filter(|h| *h != holder)
                    .cloned()
                    .collect();
                if others.len() >= cap as usize {
                    return Decision::Keep(Slot::Busy {
                        cap,
                        holders: others,
                    });
                }
                record
                    .holders
                    .insert(holder.to_string(), now.saturating_add(lease));
                Decision::Write(record, Slot::Held)
            },
        )
        .await?;
        decided.ok_or_else(|| {
            StoreError::Unavailable(format!(
                "the {} slots changed under every attempt to take one",
                kind.name()
            ))
        })
    }

    /// How long an action of `kind` may wait between two calls without its
    /// lease lapsing (half the lease), if the type is capped.
    pub fn longest_wait(&self, kind: ActionType) -> Option<u32> {
        self.settings.caps.contains_key(&kind).then(|| {
            u32::try_from(self.settings.lease / 2)
                .unwrap_or(u32::MAX)
                .max(1)
        })
    }

    /// Gives back `holder`'s slot of `kind`, if it holds one.
    pub async fn release(&self, kind: ActionType, holder: &str) -> Result<(), StoreError> {
        if !self.settings.caps.contains_key(&kind) {
            return Ok(());
        }
        let decided = update(
            self.store.as_ref(),
            &key(kind),
            |record: Option<Holders>, _| match record.filter(|r| r.holders.contains_key(holder)) {
                Some(mut record) => {
                    record.holders.remove(holder);
                    Decision::Write(record, ())
                }
                None => Decision::Keep(()),
            },
        )
        .await?;
        decided.ok_or_else(|| {
            StoreError::Unavailable(format!(
                "the {} slots changed under every attempt to give one back",
                kind.name()
            ))
        })
    }
}

#[cfg(test)]
#[path = "slots_tests.rs"]
mod tests;
