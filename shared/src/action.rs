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
}

impl ActionError {
    pub const NAMES: [&'static str; 3] = ["Retryable", "Throttled", "Fatal"];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Retryable(_) => "Retryable",
            Self::Throttled(_) => "Throttled",
            Self::Fatal(_) => "Fatal",
        }
    }

    /// The same error with its message passed through `f`, such as to
    /// blank secrets.
    pub fn map_message(self, f: impl FnOnce(&str) -> String) -> Self {
        match self {
            Self::Retryable(message) => Self::Retryable(f(&message)),
            Self::Throttled(message) => Self::Throttled(f(&message)),
            Self::Fatal(message) => Self::Fatal(f(&message)),
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
}
