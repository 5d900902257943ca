//! The fulfillment engine's steps on a request, as the fulfillment state
//! machine calls them: plan (Queued → InProgress, and the waves of actions
//! still to run), complete, undo (the succeeded actions to compensate,
//! newest first), fail and rolled back. Each step is idempotent, so the
//! state machine may retry it. Actions themselves run in the action
//! functions (`crate::actions`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::fulfillment::{compensation_order, ActionStatus};
use super::{LogEntry, RequestStatus, RequestStore, Transition, TransitionError};
use crate::action::ActionError;
use crate::catalog::index::StoreError;
use crate::catalog::item::{ActionType, Mode};
use crate::clock::now;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Plan,
    Complete,
    Undo,
    Fail,
    RolledBack,
}

#[derive(Debug, Deserialize)]
pub struct EngineInput {
    pub request_id: String,
    pub step: Step,
    /// The execution's state for `fail`: the caught `error` and, when
    /// compensation failed too, `compensation_error` (`{Error, Cause}` each).
    #[serde(default)]
    pub state: Option<Value>,
}

/// Which function runs each action type. Types without a function cannot
/// run yet; a plan that needs one fails the request with that reason.
#[derive(Debug, Clone, Default)]
pub struct ActionFunctions(BTreeMap<ActionType, String>);

impl ActionFunctions {
    pub fn new(functions: impl IntoIterator<Item = (ActionType, String)>) -> Self {
        Self(functions.into_iter().collect())
    }

    /// The HTTP action function runs rest-api, webhook and jira-ticket
    /// (`PAO_HTTP_ACTION_FUNCTION`); each native type runs in its own
    /// function, named by `PAO_ACTION_FUNCTION_<TYPE>` (such as
    /// `PAO_ACTION_FUNCTION_AWS_NETWORK`) where the deployment has one.
    pub fn from_env(
        env: &crate::config::Env<impl Fn(&str) -> Option<String>>,
    ) -> Result<Self, crate::config::ConfigError> {
        let http = env.required("PAO_HTTP_ACTION_FUNCTION")?;
        let mut functions: BTreeMap<ActionType, String> = [
            ActionType::RestApi,
            ActionType::Webhook,
            ActionType::JiraTicket,
        ]
        .map(|kind| (kind, http.clone()))
        .into_iter()
        .collect();
        for &kind in ActionType::ALL {
            let function = env.or(&Self::variable(kind), "");
            if !function.is_empty() {
                functions.insert(kind, function);
            }
        }
        Ok(Self(functions))
    }

    /// The variable naming the function of a native type.
    pub fn variable(kind: ActionType) -> String {
        format!(
            "PAO_ACTION_FUNCTION_{}",
            kind.name().to_ascii_uppercase().replace('-', "_")
        )
    }

    fn of(&self, kind: ActionType) -> Result<&str, ActionError> {
        self.0.get(&kind).map(String::as_str).ok_or_else(|| {
            ActionError::Fatal(format!(
                "actions of type {} cannot run yet: no action function handles them",
                kind.name()
            ))
        })
    }
}

pub struct Engine {
    store: Arc<dyn RequestStore>,
    functions: ActionFunctions,
}

const ACTOR: &str = "fulfillment-engine";

impl From<StoreError> for ActionError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(message) => ActionError::Retryable(message),
            StoreError::Corrupt(message) => ActionError::Fatal(message),
        }
    }
}

impl Engine {
    pub fn new(store: Arc<dyn RequestStore>, functions: ActionFunctions) -> Self {
        Self { store, functions }
    }

    #[tracing::instrument(skip(self, input), fields(request_id = %input.request_id, step = ?input.step))]
    pub async fn run(&self, input: EngineInput) -> Result<Value, ActionError> {
        let id = &input.request_id;
        match input.step {
            Step::Plan => return self.plan(id).await,
            Step::Complete => {
                self.move_to(id, RequestStatus::Completed, None).await?;
                self.log(id, "info", "fulfillment completed").await?;
            }
            Step::Undo => return self.undo(id).await,
            Step::Fail => {
                let state = input.state.unwrap_or(Value::Null);
                let reason = match (state.get("error"), state.get("compensation_error")) {
                    (error, None) => failure_reason(error),
                    (None, Some(undo)) => {
                        format!("rollback failed: {}", failure_reason(Some(undo)))
                    }
                    (Some(error), Some(undo)) => format!(
                        "{}; compensation failed too: {}",
                        failure_reason(Some(error)),
                        failure_reason(Some(undo))
                    ),
                };
                if self.is_cancelled(id).await? {
                    self.log(
                        id,
                        "info",
                        "the cancelled request's actions are compensated",
                    )
                    .await?;
                } else {
                    self.move_to(id, RequestStatus::Failed, Some(reason.clone()))
                        .await?;
                    self.log(id, "error", &format!("fulfillment failed: {reason}"))
                        .await?;
                }
            }
            Step::RolledBack => {
                if self.is_cancelled(id).await? {
                    self.log(
                        id,
                        "info",
                        "the cancelled request's actions are compensated",
                    )
                    .await?;
                } else {
                    self.move_to(id, RequestStatus::RolledBack, None).await?;
                    self.log(id, "info", "rolled back").await?;
                }
            }
        }
        Ok(json!({ "request_id": id }))
    }

    /// Marks the request InProgress and returns what is left to run:
    /// `{mode, waves: [[{action_id, function}]], ticket: {function}}`.
    async fn plan(&self, id: &str) -> Result<Value, ActionError> {
        let request = self.request(id).await?;
        let plan =
            self.store.plan(id).await?.ok_or_else(|| {
                ActionError::Fatal(format!("request {id} has no fulfillment plan"))
            })?;
        let done: BTreeSet<String> = self
            .store
            .actions(id)
            .await?
            .into_iter()
            .filter(|record| record.status == ActionStatus::Succeeded)
            .map(|record| record.action_id)
            .collect();
        let mut waves = Vec::new();
        for wave in plan.waves(&request.fields, &done) {
            let mut steps = Vec::new();
            for action_id in wave {
                let kind = plan.action(&action_id).map(|a| a.kind).ok_or_else(|| {
                    ActionError::Fatal(format!("the plan has no action {action_id}"))
                })?;
                steps.push(json!({"action_id": action_id, "function": self.functions.of(kind)?}));
            }
            waves.push(Value::Array(steps));
        }
        let ticket = match plan.mode {
            Mode::Manual => json!({"function": self.functions.of(ActionType::JiraTicket)?}),
            Mode::Automated => Value::Null,
        };
        self.move_to(id, RequestStatus::InProgress, None).await?;
        let mode = match plan.mode {
            Mode::Manual => "manual",
            Mode::Automated => "automated",
        };
        let skipped = done.len();
        let message = match plan.mode {
            Mode::Manual => "fulfillment started: a JIRA ticket for the platform team".to_string(),
            Mode::Automated if skipped > 0 => format!(
                "fulfillment started: {} wave(s); {skipped} action(s) succeeded before and are not run again",
                waves.len()
            ),
            Mode::Automated => format!("fulfillment started: {} wave(s)", waves.len()),
        };
        self.log(id, "info", &message).await?;
        Ok(json!({"mode": mode, "waves": waves, "ticket": ticket}))
    }

    /// The succeeded actions to compensate, newest first.
    async fn undo(&self, id: &str) -> Result<Value, ActionError> {
        let records = self.store.actions(id).await?;
        if let Some(running) = records.iter().find(|r| r.in_flight()) {
            // A cancellation arrives while an action's call is under way:
            // wait for it to end, so what it makes is compensated too. An
            // action waiting between attempts made nothing.
            return Err(ActionError::Retryable(format!(
                "{} is still running",
                running.action_id
            )));
        }
        let ledger = self.store.ledger(id).await?;
        let has_resources = |action_id: &str| {
            ledger
                .iter()
                .any(|resource| resource.action_id == action_id)
        };
        for lost in records
            .iter()
            .filter(|r| r.lost() && r.status == ActionStatus::Running)
            .filter(|r| !has_resources(&r.action_id))
        {
            let message = format!(
                "{}: its last call never reported back; if it made something, remove it by hand",
                lost.action_id
            );
            self.log(id, "warn", &message).await?;
        }
        let mut actions = Vec::new();
        for record in compensation_order(&records, has_resources) {
            actions.push(json!({
                "action_id": record.action_id,
                "function": self.functions.of(record.kind)?,
            }));
        }
        let names: Vec<&str> = actions
            .iter()
            .filter_map(|a| a["action_id"].as_str())
            .collect();
        let message = if names.is_empty() {
            "nothing to compensate".to_string()
        } else {
            format!("compensating, newest first: {}", names.join(", "))
        };
        self.log(id, "info", &message).await?;
        Ok(json!({ "actions": actions }))
    }

    async fn request(&self, id: &str) -> Result<super::Request, ActionError> {
        self.store
            .get(id)
            .await?
            .ok_or_else(|| ActionError::Fatal(format!("request {id} does not exist")))
    }

    async fn is_cancelled(&self, id: &str) -> Result<bool, ActionError> {
        Ok(self.request(id).await?.status == RequestStatus::Cancelled)
    }

    /// Moves the request to `to`; already there is success (a retried step).
    async fn move_to(
        &self,
        id: &str,
        to: RequestStatus,
        reason: Option<String>,
    ) -> Result<(), ActionError> {
        for _ in 0..3 {
            let request = self
                .store
                .get(id)
                .await?
                .ok_or_else(|| ActionError::Fatal(format!("request {id} does not exist")))?;
            if request.status == to {
                return Ok(());
            }
            // The API starts an execution before it records the status the
            // execution expects (Queued, RollingBack): wait for it.
            let ahead = match to {
                RequestStatus::InProgress => {
                    matches!(
                        request.status,
                        RequestStatus::Validated | RequestStatus::Failed
                    )
                }
                RequestStatus::RolledBack => {
                    matches!(
                        request.status,
                        RequestStatus::Completed | RequestStatus::Failed
                    )
                }
                _ => false,
            };
            if ahead {
                return Err(ActionError::Retryable(format!(
                    "request {id} is {}; the API has not recorded its next status yet",
                    request.status
                )));
            }
            let change = Transition {
                from: request.status,
                version: request.version,
                to,
                actor: ACTOR.to_string(),
                reason: reason.clone(),
                execution_arn: None,
                at: now(),
            };
            match self.store.transition(&request, &change).await {
                Ok(_) => return Ok(()),
                Err(TransitionError::Conflict { .. }) => continue,
                Err(TransitionError::NotAllowed { from, to }) => {
                    return Err(ActionError::Fatal(format!(
                        "request {id} is {from}; it cannot become {to}"
                    )))
                }
                Err(TransitionError::NotFound) => {
                    return Err(ActionError::Fatal(format!("request {id} does not exist")))
                }
                Err(TransitionError::Store(err)) => return Err(err.into()),
            }
        }
        Err(ActionError::Retryable(format!(
            "request {id} kept changing"
        )))
    }

    async fn log(&self, id: &str, level: &str, message: &str) -> Result<(), ActionError> {
        let entry = LogEntry {
            at: now(),
            source: "engine".to_string(),
            level: level.to_string(),
            message: message.to_string(),
        };
        Ok(self.store.append_log(id, &entry).await?)
    }
}

/// A readable reason from a caught Step Functions error.
fn failure_reason(error: Option<&Value>) -> String {
    let text = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let cause = text("Cause");
    // A Lambda's error cause is JSON with its own errorMessage.
    let cause = serde_json::from_str::<Value>(cause)
        .ok()
        .and_then(|c| {
            c.get("errorMessage")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| cause.to_string());
    match (text("Error"), cause.as_str()) {
        ("", "") => "unknown error".to_string(),
        (error, "") => error.to_string(),
        ("", cause) => cause.to_string(),
        (error, cause) => format!("{error}: {cause}"),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
