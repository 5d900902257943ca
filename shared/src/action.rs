//! The contract between the fulfillment state machine and every action Lambda:
//! `{request_id, action_id, op, attempt}` in, `{done, wait_seconds, outputs}`
//! out, and errors whose names the state machine's `Retry` and `Catch` match.

use lambda_runtime::Diagnostic;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What the state machine asks of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Start,
    Poll,
    Compensate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionInput {
    pub request_id: String,
    pub action_id: String,
    pub op: Op,
    /// How many times Step Functions has retried this call (`$$.State.RetryCount`).
    #[serde(default)]
    pub attempt: u32,
    /// The task token of a step that waits to be resumed (the manual
    /// ticket); never logged, never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionOutput {
    pub done: bool,
    /// When not done: how long the state machine waits before it polls.
    /// Always present (null when done), so the state machine can select it.
    #[serde(default)]
    pub wait_seconds: Option<u32>,
    #[serde(default)]
    pub outputs: serde_json::Map<String, serde_json::Value>,
}

impl ActionOutput {
    pub fn done(outputs: serde_json::Map<String, serde_json::Value>) -> Self {
        Self {
            done: true,
            wait_seconds: None,
            outputs,
        }
    }

    /// Not done yet: the state machine waits `seconds` and calls again.
    pub fn wait(seconds: u32) -> Self {
        Self {
            done: false,
            wait_seconds: Some(seconds),
            outputs: serde_json::Map::new(),
        }
    }
}

/// An action's failure. The variant's name is the error name Step Functions
/// sees, so the ASL's `ErrorEquals` lists these names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ActionError {
    /// A transient failure: the state machine retries with backoff.
    #[error("{0}")]
    Retryable(String),
    /// The other side asked us to slow down: retried with a longer backoff.
    #[error("{0}")]
    Throttled(String),
    /// Retrying cannot help: the state machine compensates and fails the request.
    #[error("{0}")]
    Fatal(String),
    /// A Retryable or Throttled failure that knows when to try again: the
    /// other side said (`Retry-After`, a rate limit's reset), or the
    /// target's circuit breaker is open until then, in which case the call
    /// was not made (`called: false`). Step Functions sees the name of the
    /// error it carries.
    #[error("{error}")]
    After {
        error: Box<ActionError>,
        seconds: u32,
        called: bool,
    },
}

impl ActionError {
    pub const NAMES: [&'static str; 3] = ["Retryable", "Throttled", "Fatal"];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Retryable(_) => "Retryable",
            Self::Throttled(_) => "Throttled",
            Self::Fatal(_) => "Fatal",
            Self::After { error, .. } => error.name(),
        }
    }

    /// The same failure, to be tried again in no less than `seconds`. A
    /// Fatal one stays as it is: there is nothing to wait for.
    pub fn after(self, seconds: u32) -> Self {
        match self {
            Self::Fatal(_) => self,
            Self::After { error, .. } => error.after(seconds),
            error => Self::After {
                error: Box::new(error),
                seconds: seconds.max(1),
                called: true,
            },
        }
    }

    /// A call that was not made (the target's breaker is open), to be made
    /// in `seconds`.
    pub fn not_called(message: String, seconds: u32) -> Self {
        Self::After {
            error: Box::new(Self::Retryable(message)),
            seconds: seconds.max(1),
            called: false,
        }
    }

    /// Whether the failed call reached the other side, or was at least
    /// attempted: all but an open breaker's refusals.
    pub fn was_called(&self) -> bool {
        !matches!(self, Self::After { called: false, .. })
    }

    /// How long the other side (or an open breaker) asked to wait, if it said.
    pub fn asked_wait(&self) -> Option<u32> {
        match self {
            Self::After { seconds, .. } => Some(*seconds),
            _ => None,
        }
    }

    /// The wait and the message of a failure that said when to try
    /// again, or the failure itself.
    pub fn into_wait(self) -> Result<(u32, String), Self> {
        match self.asked_wait() {
            Some(seconds) => Ok((seconds, self.to_string())),
            None => Err(self),
        }
    }

    pub fn is_fatal(&self) -> bool {
        self.name() == "Fatal"
    }

    pub fn is_throttled(&self) -> bool {
        self.name() == "Throttled"
    }

    /// The same error with its message passed through `f`, such as to
    /// blank secrets.
    pub fn map_message(self, f: impl FnOnce(&str) -> String) -> Self {
        match self {
            Self::Retryable(message) => Self::Retryable(f(&message)),
            Self::Throttled(message) => Self::Throttled(f(&message)),
            Self::Fatal(message) => Self::Fatal(f(&message)),
            Self::After {
                error,
                seconds,
                called,
            } => Self::After {
                error: Box::new(error.map_message(f)),
                seconds,
                called,
            },
        }
    }
}

impl From<ActionError> for Diagnostic {
    fn from(err: ActionError) -> Self {
        Diagnostic {
            error_type: err.name().to_string(),
            error_message: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_reads_the_contract() {
        let input: ActionInput = serde_json::from_str(
            r#"{"request_id":"r-1","action_id":"db","op":"compensate","attempt":2}"#,
        )
        .unwrap();
        assert_eq!(input.op, Op::Compensate);
        assert_eq!(input.attempt, 2);
    }

    #[test]
    fn output_has_no_wait_when_done() {
        let json = serde_json::to_value(ActionOutput::done(Default::default())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"done": true, "wait_seconds": null, "outputs": {}})
        );
    }

    #[test]
    fn the_diagnostic_carries_the_name_step_functions_matches() {
        for (err, name) in [
            (ActionError::Retryable("x".into()), "Retryable"),
            (ActionError::Throttled("x".into()), "Throttled"),
            (ActionError::Fatal("x".into()), "Fatal"),
        ] {
            assert!(ActionError::NAMES.contains(&name));
            let diagnostic = Diagnostic::from(err);
            assert_eq!(diagnostic.error_type, name);
            assert_eq!(diagnostic.error_message, "x");
        }
    }

    #[test]
    fn a_wait_travels_with_the_error_it_qualifies() {
        let limited = ActionError::Throttled("GitHub: rate limited".into()).after(17);
        assert_eq!(limited.name(), "Throttled");
        assert!(limited.is_throttled() && !limited.is_fatal());
        assert_eq!(limited.asked_wait(), Some(17));
        assert!(limited.was_called());
        assert_eq!(limited.to_string(), "GitHub: rate limited");
        assert_eq!(Diagnostic::from(limited.clone()).error_type, "Throttled");
        // A later wait replaces an earlier one; the message can be blanked.
        let again = limited.after(3).map_message(|m| m.replace("GitHub", "***"));
        assert_eq!(again.asked_wait(), Some(3));
        assert_eq!(again.to_string(), "***: rate limited");
        let open = ActionError::not_called("breaker open".into(), 0);
        assert_eq!((open.name(), open.asked_wait()), ("Retryable", Some(1)));
        assert!(!open.was_called());
        assert!(!open.clone().map_message(str::to_uppercase).was_called());
        assert!(ActionError::Fatal("x".into()).was_called());
        // Nothing to wait for on a fatal error.
        let fatal = ActionError::Fatal("no".into()).after(5);
        assert_eq!(fatal.asked_wait(), None);
        assert!(fatal.is_fatal());
        assert_eq!(ActionError::Retryable("x".into()).asked_wait(), None);
    }
}
