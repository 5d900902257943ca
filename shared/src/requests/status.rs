//! A request's lifecycle: the statuses and the one table of allowed
//! transitions. Every status change in PAO is checked against it here and
//! written conditionally on the old status and version by the store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum RequestStatus {
    Submitted,
    Validated,
    Queued,
    InProgress,
    Completed,
    Failed,
    Cancelled,
    RollingBack,
    RolledBack,
}

use RequestStatus::*;

impl RequestStatus {
    pub const ALL: &'static [RequestStatus] = <Self as strum::VariantArray>::VARIANTS;

    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The allowed transitions: the lifecycle
    /// `Submitted → Validated → Queued → InProgress → Completed | Failed`,
    /// cancellation before the end, a retry of a failed request (back to
    /// Queued) and a rollback of a failed or completed one.
    pub fn can_become(self, next: RequestStatus) -> bool {
        matches!(
            (self, next),
            (Submitted, Validated | Failed | Cancelled)
                | (Validated, Queued | Failed | Cancelled)
                | (Queued, InProgress | Failed | Cancelled)
                | (InProgress, Completed | Failed | Cancelled | RollingBack)
                | (Failed, Queued | RollingBack)
                | (Completed, RollingBack)
                | (RollingBack, RolledBack | Failed)
        )
    }

    /// Whether the request has stopped running: nothing is in flight and
    /// cancelling makes no sense.
    pub fn is_terminal(self) -> bool {
        matches!(self, Completed | Failed | Cancelled | RolledBack)
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RequestStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|status| status.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown status `{text}`; expected one of: {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole table, written out: every pair not listed must be refused.
    const ALLOWED: &[(RequestStatus, RequestStatus)] = &[
        (Submitted, Validated),
        (Submitted, Failed),
        (Submitted, Cancelled),
        (Validated, Queued),
        (Validated, Failed),
        (Validated, Cancelled),
        (Queued, InProgress),
        (Queued, Failed),
        (Queued, Cancelled),
        (InProgress, Completed),
        (InProgress, Failed),
        (InProgress, Cancelled),
        (InProgress, RollingBack),
        (Failed, Queued),
        (Failed, RollingBack),
        (Completed, RollingBack),
        (RollingBack, RolledBack),
        (RollingBack, Failed),
    ];

    #[test]
    fn every_pair_of_statuses_is_allowed_exactly_when_listed() {
        for &from in RequestStatus::ALL {
            for &to in RequestStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    ALLOWED.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn no_status_becomes_itself() {
        for &status in RequestStatus::ALL {
            assert!(!status.can_become(status), "{status}");
        }
    }

    #[test]
    fn terminal_statuses_are_those_nothing_runs_after() {
        let terminal: Vec<_> = RequestStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, [Completed, Failed, Cancelled, RolledBack]);
        // Cancelled and RolledBack are final: nothing follows them.
        for status in [Cancelled, RolledBack] {
            assert!(RequestStatus::ALL
                .iter()
                .all(|next| !status.can_become(*next)));
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for &status in RequestStatus::ALL {
            assert_eq!(status.name().parse::<RequestStatus>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.name());
        }
        assert!("Done"
            .parse::<RequestStatus>()
            .unwrap_err()
            .contains("InProgress"));
    }
}
