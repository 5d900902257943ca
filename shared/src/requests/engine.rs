//! The fulfilment engine's steps on a request, as the fulfilment state
//! machine calls them: begin (Queued → InProgress), hold (remember the task
//! token while the request waits to be fulfilled), complete, fail. Each step
//! is idempotent, so the state machine may retry it.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{LogEntry, RequestStatus, RequestStore, Transition, TransitionError};
use crate::action::ActionError;
use crate::catalog::index::StoreError;
use crate::clock::now;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Begin,
    Hold,
    Complete,
    Fail,
}

#[derive(Debug, Deserialize)]
pub struct EngineInput {
    pub request_id: String,
    pub step: Step,
    #[serde(default)]
    pub task_token: Option<String>,
    /// The caught error (`{Error, Cause}`) for `fail`.
    #[serde(default)]
    pub error: Option<Value>,
}

pub struct Engine {
    store: Arc<dyn RequestStore>,
}

const ACTOR: &str = "fulfilment-engine";

impl From<StoreError> for ActionError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(message) => ActionError::Retryable(message),
            StoreError::Corrupt(message) => ActionError::Fatal(message),
        }
    }
}

impl Engine {
    pub fn new(store: Arc<dyn RequestStore>) -> Self {
        Self { store }
    }

    /// Reads the configuration and builds the SDK client, once per process.
    pub async fn from_env() -> Result<Self, crate::config::ConfigError> {
        let table = crate::config::Env::process().required("PAO_REQUESTS_TABLE")?;
        let sdk = crate::aws::sdk_config().await;
        let store = crate::aws::requests_table::RequestTable::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            table,
        );
        Ok(Self::new(Arc::new(store)))
    }

    #[tracing::instrument(skip(self, input), fields(request_id = %input.request_id, step = ?input.step))]
    pub async fn run(&self, input: EngineInput) -> Result<Value, ActionError> {
        let id = &input.request_id;
        match input.step {
            Step::Begin => {
                self.move_to(id, RequestStatus::InProgress, None).await?;
                self.log(id, "info", "fulfilment started").await?;
            }
            Step::Hold => {
                let token = input
                    .task_token
                    .ok_or_else(|| ActionError::Fatal("hold needs the task token".to_string()))?;
                self.store.save_task_token(id, &token).await?;
                self.log(id, "info", "waiting to be fulfilled").await?;
            }
            Step::Complete => {
                self.move_to(id, RequestStatus::Completed, None).await?;
                self.log(id, "info", "fulfilment completed").await?;
            }
            Step::Fail => {
                let reason = failure_reason(input.error.as_ref());
                self.move_to(id, RequestStatus::Failed, Some(reason.clone()))
                    .await?;
                self.log(id, "error", &format!("fulfilment failed: {reason}"))
                    .await?;
            }
        }
        Ok(json!({ "request_id": id }))
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
            if request.status == RequestStatus::Validated && to == RequestStatus::InProgress {
                // The API starts the execution before it records Queued.
                return Err(ActionError::Retryable(format!(
                    "request {id} is not queued yet"
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
mod tests {
    use super::*;

    #[test]
    fn reasons_read_the_lambda_error_message() {
        let error = json!({"Error": "Fatal", "Cause": "{\"errorType\":\"Fatal\",\"errorMessage\":\"quota exceeded\"}"});
        assert_eq!(failure_reason(Some(&error)), "Fatal: quota exceeded");
        assert_eq!(
            failure_reason(Some(&json!({"Error": "States.Timeout"}))),
            "States.Timeout"
        );
        assert_eq!(failure_reason(None), "unknown error");
    }
}
