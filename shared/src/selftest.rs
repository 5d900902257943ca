//! The self-test action: proves on any deployment that the chain PAO stands on
//! works — Step Functions invokes a Rust action Lambda, passes the retry count,
//! retries named errors and catches the rest — without touching any resource.
//! A scenario in the input says how many attempts fail, and with which error.

use serde::Deserialize;

use crate::action::{ActionError, ActionInput, ActionOutput};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum FailWith {
    #[default]
    Retryable,
    Throttled,
    Fatal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The first `fail_attempts` attempts (0, 1, …) fail.
    #[serde(default)]
    pub fail_attempts: u32,
    #[serde(default)]
    pub fail_with: FailWith,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SelftestInput {
    #[serde(flatten)]
    pub action: ActionInput,
    #[serde(default)]
    pub scenario: Scenario,
}

pub fn run(input: SelftestInput) -> Result<ActionOutput, ActionError> {
    let SelftestInput { action, scenario } = input;
    tracing::info!(
        request_id = %action.request_id,
        action_id = %action.action_id,
        attempt = action.attempt,
        "self-test action"
    );
    if action.attempt < scenario.fail_attempts {
        let message = format!(
            "self-test: attempt {} of the first {} fails by request",
            action.attempt, scenario.fail_attempts
        );
        return Err(match scenario.fail_with {
            FailWith::Retryable => ActionError::Retryable(message),
            FailWith::Throttled => ActionError::Throttled(message),
            FailWith::Fatal => ActionError::Fatal(message),
        });
    }
    let outputs = serde_json::json!({
        "request_id": action.request_id,
        "action_id": action.action_id,
        "attempt": action.attempt,
    });
    let serde_json::Value::Object(outputs) = outputs else {
        unreachable!("a JSON object literal")
    };
    Ok(ActionOutput::done(outputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(attempt: u32, scenario: serde_json::Value) -> SelftestInput {
        serde_json::from_value(serde_json::json!({
            "request_id": "r-1", "action_id": "selftest", "op": "start",
            "attempt": attempt, "scenario": scenario,
        }))
        .unwrap()
    }

    #[test]
    fn succeeds_without_a_scenario() {
        let output = run(input(0, serde_json::json!({}))).unwrap();
        assert!(output.done);
        assert_eq!(output.outputs["attempt"], 0);
    }

    #[test]
    fn fails_the_first_attempts_with_the_named_error() {
        let scenario = serde_json::json!({"fail_attempts": 2, "fail_with": "Throttled"});
        assert_eq!(
            run(input(0, scenario.clone())).unwrap_err().name(),
            "Throttled"
        );
        assert_eq!(
            run(input(1, scenario.clone())).unwrap_err().name(),
            "Throttled"
        );
        assert_eq!(run(input(2, scenario)).unwrap().outputs["attempt"], 2);
    }

    #[test]
    fn an_unknown_scenario_key_is_refused() {
        let parsed: Result<SelftestInput, _> = serde_json::from_value(serde_json::json!({
            "request_id": "r", "action_id": "a", "op": "start", "scenario": {"fail": 1}
        }));
        assert!(parsed.is_err());
    }
}
