//! A circuit breaker per target (host and port) of the guarded HTTP client,
//! its state shared by every instance through [`Shared`]:
//! - **closed**: calls go through; a failure (no connection, a time-out,
//!   a 5xx answer) counts, a success clears the count. `failures` failures
//!   in a row, the first of them no longer than `window` ago, open it.
//! - **open** for `open_seconds`: calls fail at once, saying when the next
//!   one may try, and never reach the target.
//! - **half-open** after that: one call, the probe, is let through (its
//!   claim is a conditional write, so only one instance wins it; a probe
//!   whose caller died is given up after [`PROBE_LEASE`]). Its success
//!   closes the breaker, its failure opens it again.
//!
//! A breaker whose record cannot be read or written lets calls through:
//! the breaker protects the target, it must not become an outage itself.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{read, update, write, Clock, Decision, Shared};
use crate::catalog::index::StoreError;
use crate::config::{ConfigError, Env};

/// How long a half-open breaker waits for its probe's caller to report
/// before it lets another probe through.
pub const PROBE_LEASE: u64 = 60;

/// The deployment's breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Failures in a row that open the breaker (`PAO_BREAKER_FAILURES`,
    /// default 5; 0 turns breakers off).
    pub failures: u32,
    /// The longest time those failures may span (`PAO_BREAKER_WINDOW_SECONDS`,
    /// default 60).
    pub window: u64,
    /// How long an open breaker refuses calls before its probe
    /// (`PAO_BREAKER_OPEN_SECONDS`, default 30).
    pub open_seconds: u64,
}

impl Settings {
    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let failures = env.number("PAO_BREAKER_FAILURES", 5)?;
        Ok(Self {
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            window: env.number("PAO_BREAKER_WINDOW_SECONDS", 60)?.max(1),
            open_seconds: env.number("PAO_BREAKER_OPEN_SECONDS", 30)?.max(1),
        })
    }
}

/// A breaker's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// Failures in a row.
    failures: u32,
    /// When the first of them happened.
    since: u64,
    /// Open until then (half-open after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_until: Option<u64>,
    /// A probe is under way until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    probe_until: Option<u64>,
}

/// Leave to make one call, to be settled with its outcome.
#[derive(Debug)]
pub struct Ticket {
    target: String,
    kind: Kind,
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    /// Closed, with failures counted before (a success clears them).
    Closed { failures: u32 },
    /// The one call of a half-open breaker.
    Probe { version: u64 },
    /// The breaker's state could not be read: nothing to settle.
    Unknown,
}

/// A call refused because the target's breaker is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub target: String,
    pub failures: u32,
    /// When a call may try again.
    pub seconds: u64,
    /// Another instance's probe is under way (the breaker is half-open).
    pub probing: bool,
}

impl std::fmt::Display for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            target,
            failures,
            seconds,
            probing,
        } = self;
        if *probing {
            write!(
                f,
                "the circuit breaker for {target} is half-open after {failures} failures in a row \
                 and another call is probing it; not called, try again in {seconds} s"
            )
        } else {
            write!(
                f,
                "the circuit breaker for {target} is open after {failures} failures in a row; \
                 not called, a probe may try in {seconds} s"
            )
        }
    }
}

/// How a call went, as its target's breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer that was not a 5xx.
    Succeeded,
    /// No connection, a time-out, or a 5xx.
    Failed,
    /// Refused before it left (a name resolving only to internal
    /// addresses): the target said nothing, either way.
    NotCalled,
}

/// What a settled call did to its breaker, for the caller's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Unchanged,
    /// This failure opened the breaker for so many seconds.
    Opened(u64),
    /// This success (a probe's) closed it.
    Closed,
}

pub struct Breakers {
    store: Arc<dyn Shared>,
    settings: Settings,
    clock: Clock,
}

fn key(target: &str) -> String {
    format!("BREAKER#{target}")
}

impl Breakers {
    pub fn new(store: Arc<dyn Shared>, settings: Settings, clock: Clock) -> Self {
        Self {
            store,
            settings,
            clock,
        }
    }

    /// Leave to call `target`, or why not.
    pub async fn admit(&self, target: &str) -> Result<Ticket, Open> {
        let ticket = |kind| Ticket {
            target: target.to_string(),
            kind,
        };
        if self.settings.failures == 0 {
            return Ok(ticket(Kind::Unknown));
        }
        let decided = update(
            self.store.as_ref(),
            &key(target),
            |state: Option<State>, version| {
                let now = (self.clock)();
                let state = state.unwrap_or_default();
                let open = |seconds: u64, probing| Open {
                    target: target.to_string(),
                    failures: state.failures,
                    seconds: seconds.max(1),
                    probing,
                };
                let Some(open_until) = state.open_until else {
                    let failures = state.failures;
                    return Decision::Keep(Ok(ticket(Kind::Closed { failures })));
                };
                if now < open_until {
                    return Decision::Keep(Err(open(open_until - now, false)));
                }
                if let Some(probe_until) = state.probe_until.filter(|until| now < *until) {
                    return Decision::Keep(Err(open(probe_until - now, true)));
                }
                // Half-open: this call claims the probe, if no one else did.
                let version = version.map_or(1, |v| v + 1);
                let claimed = State {
                    probe_until: Some(now.saturating_add(PROBE_LEASE)),
                    ..state
                };
                Decision::Write(claimed, Ok(ticket(Kind::Probe { version })))
            },
        )
        .await;
        match decided {
            Ok(Some(admitted)) => admitted,
            // Others kept winning the probe's claim: one of them probes.
            Ok(None) => Err(Open {
                target: target.to_string(),
                failures: self.settings.failures,
                seconds: 1,
                probing: true,
            }),
            Err(err) => Ok(self.unknown(target, &err)),
        }
    }

    /// Records how the call went; never fails the call.
    pub async fn settle(&self, ticket: Ticket, outcome: Outcome) -> Settled {
        let target = &ticket.target;
        let settled = match (&ticket.kind, outcome) {
            (Kind::Unknown, _)
            | (Kind::Closed { failures: 0 }, Outcome::Succeeded)
            | (Kind::Closed { .. }, Outcome::NotCalled) => Ok(Settled::Unchanged),
            (Kind::Closed { .. }, Outcome::Succeeded) => self.close(target, None).await,
            (Kind::Probe { version }, Outcome::Succeeded) => {
                self.close(target, Some(*version)).await
            }
            (Kind::Probe { version }, Outcome::NotCalled) => {
                self.give_up_probe(target, *version).await
            }
            (Kind::Closed { .. }, Outcome::Failed) => self.count_failure(target, false).await,
            (Kind::Probe { .. }, Outcome::Failed) => self.count_failure(target, true).await,
        };
        settled.unwrap_or_else(|err| {
            tracing::warn!(target = %target, error = %err, "the circuit breaker's record could not be written");
            Settled::Unchanged
        })
    }

    /// Clears the count, or closes after a probe: as of `version` when the
    /// probe holds it, else whatever the record holds now.
    async fn close(&self, target: &str, probe: Option<u64>) -> Result<Settled, StoreError> {
        let seen = match probe {
            Some(version) => Some(version),
            None => read::<State>(self.store.as_ref(), &key(target)).await?.1,
        };
        let closed = write(self.store.as_ref(), &key(target), &State::default(), seen).await?;
        Ok(if closed && probe.is_some() {
            tracing::info!(target = %target, "circuit breaker closed by its probe");
            Settled::Closed
        } else {
            // Lost to another instance's outcome, which is as recent.
            Settled::Unchanged
        })
    }

    /// Lets the next call probe at once: this one never reached the target.
    async fn give_up_probe(&self, target: &str, version: u64) -> Result<Settled, StoreError> {
        let (state, seen) = read::<State>(self.store.as_ref(), &key(target)).await?;
        if let (Some(state), Some(seen)) = (state, seen) {
            if seen == version {
                let released = State {
                    probe_until: None,
                    ..state
                };
                write(self.store.as_ref(), &key(target), &released, Some(seen)).await?;
            }
        }
        Ok(Settled::Unchanged)
    }

    /// Counts a failure. A probe's failure opens the breaker again; a call
    /// let through before another instance opened it changes nothing more.
    async fn count_failure(&self, target: &str, probe: bool) -> Result<Settled, StoreError> {
        let settings = self.settings;
        let decided = update(
            self.store.as_ref(),
            &key(target),
            |state: Option<State>, _| {
                let now = (self.clock)();
                let state = state.unwrap_or_default();
                if state.open_until.is_some() && !probe {
                    return Decision::Keep(Settled::Unchanged);
                }
                let fresh =
                    state.failures == 0 || now.saturating_sub(state.since) > settings.window;
                let mut next = State {
                    failures: if fresh { 1 } else { state.failures + 1 },
                    since: if fresh { now } else { state.since },
                    open_until: None,
                    probe_until: None,
                };
                // A failed probe opens it again at once.
                let probing = probe && state.open_until.is_some();
                if probing {
                    next.failures = state.failures.max(settings.failures);
                    next.since = state.since;
                }
                if !probing && next.failures < settings.failures {
                    return Decision::Write(next, Settled::Unchanged);
                }
                next.open_until = Some(now.saturating_add(settings.open_seconds));
                Decision::Write(next, Settled::Opened(settings.open_seconds))
            },
        )
        .await?;
        let settled = decided.unwrap_or(Settled::Unchanged);
        if let Settled::Opened(seconds) = settled {
            tracing::warn!(target = %target, open_seconds = seconds, "circuit breaker opened");
        }
        Ok(settled)
    }

    fn unknown(&self, target: &str, err: &StoreError) -> Ticket {
        tracing::warn!(target = %target, error = %err, "the circuit breaker's record could not be read; calling anyway");
        Ticket {
            target: target.to_string(),
            kind: Kind::Unknown,
        }
    }
}

#[cfg(test)]
#[path = "breaker_tests.rs"]
mod tests;
