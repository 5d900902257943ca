//! What one action type does, behind the one lifecycle every action shares
//! (`super::lifecycle`). A driver starts the work, polls it until it is
//! done, and undoes it; the lifecycle does everything else once: claims,
//! cancellation checks, rendering, the resource ledger, secret outputs,
//! retry with backoff, time-outs, redaction and the request's log.
//!
//! A driver answers with [`Progress`] or with a typed [`ActionError`]
//! (`Retryable`, `Throttled`, `Fatal`), whose name the state machine's
//! `Retry` and `Catch` match.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::action::ActionError;
use crate::catalog::item::Action;
use crate::requests::fulfillment::Resource;
use crate::requests::{Request, RequestStatus};
use crate::template::render::{render, Context, Secrets};

/// How far an action got.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Finished: its outputs, of which those named in `secret` are moved
    /// to Secrets Manager before anything stores them.
    Done(Outputs),
    /// Under way: ask again in `seconds` (capped by the deployment);
    /// `waiting_for` says what for, in the request's log.
    Wait { seconds: u32, waiting_for: String },
}

impl Progress {
    /// A failure that said when to try again (a rate limit, an open
    /// breaker) waited out as a poll, which spends none of the action's
    /// retries; any other failure as it is.
    pub fn waiting_out(err: ActionError) -> Result<Self, ActionError> {
        let (seconds, waiting_for) = err.into_wait()?;
        Ok(Self::Wait {
            seconds,
            waiting_for,
        })
    }
}

/// What compensation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Undone {
    /// Undone; the sentence says what was deleted.
    Done(String),
    /// Nothing to undo, or kept on purpose; the sentence says which.
    Kept(String),
    /// Deletions under way: ask again in `seconds`.
    Wait { seconds: u32, waiting_for: String },
}

impl Undone {
    /// As [`Progress::waiting_out`], while undoing.
    pub fn waiting_out(err: ActionError) -> Result<Self, ActionError> {
        let (seconds, waiting_for) = err.into_wait()?;
        Ok(Self::Wait {
            seconds,
            waiting_for,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    pub values: Map<String, Value>,
    pub secret: Vec<String>,
}

impl Outputs {
    pub fn new(values: Map<String, Value>) -> Self {
        Self {
            values,
            secret: Vec::new(),
        }
    }
}

/// Where a driver writes what it makes and what it does. Both are durable
/// before the call returns: a resource is in the ledger as soon as its id
/// is known, so compensation deletes exactly what the request created.
#[async_trait]
pub trait Journal: Send + Sync {
    async fn record(&self, resource: Resource) -> Result<(), ActionError>;
    async fn log(&self, level: Level, message: &str) -> Result<(), ActionError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// One call of a driver: the request, the action as the plan pinned it,
/// the template context, and what the ledger holds for the action.
pub struct Step<'a> {
    pub request: &'a Request,
    pub action: &'a Action,
    pub context: &'a Context,
    /// The action's resources recorded so far, oldest first.
    pub resources: &'a [Resource],
    /// The outputs the action recorded when it succeeded (for compensation).
    pub outputs: &'a Map<String, Value>,
    pub journal: &'a dyn Journal,
    /// The task token of a step that waits to be resumed (the manual ticket).
    pub task_token: Option<&'a str>,
    /// Calls of the action in its current run, this one included.
    pub attempt: u32,
}

impl Step<'_> {
    /// The config with every string leaf rendered; secrets of the `env`
    /// namespace are refused (they would end up in AWS, in tags or names).
    /// A config that does not render will not render on a retry either.
    pub fn rendered(&self) -> Result<Map<String, Value>, ActionError> {
        let config = Value::Object(self.action.config.clone());
        match render(&config, self.context, Secrets::Refused, "config") {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ActionError::Fatal("config: must be a mapping".to_string())),
            Err(err) => Err(ActionError::Fatal(err.to_string())),
        }
    }

    /// The config rendered and read into the driver's own typed config.
    pub fn config<T: serde::de::DeserializeOwned>(&self) -> Result<T, ActionError> {
        serde_json::from_value(Value::Object(self.rendered()?))
            .map_err(|err| ActionError::Fatal(format!("config, once rendered: {err}")))
    }

    /// A name for what this action makes, the same on every attempt:
    /// `pao-<request id>-<action id>[-<suffix>]`, lower case.
    pub fn name(&self, suffix: &str) -> String {
        let mut name = format!("pao-{}-{}", self.request.id, self.action.id);
        if !suffix.is_empty() {
            name.push('-');
            name.push_str(suffix);
        }
        name.to_ascii_lowercase().replace('_', "-")
    }

    /// The tags on everything the action creates: PAO's own, which find
    /// a resource again after a crash, then the item's (`config.tags`).
    pub fn tags(&self, item_tags: &Map<String, Value>) -> Vec<(String, String)> {
        let mut tags = vec![
            (REQUEST_TAG.to_string(), self.request.id.clone()),
            (ACTION_TAG.to_string(), self.action.id.clone()),
            (ITEM_TAG.to_string(), self.request.item_id.clone()),
        ];
        for (key, value) in item_tags {
            if key.starts_with("pao:") {
                continue;
            }
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            tags.push((key.clone(), value));
        }
        tags
    }

    /// The resources of a kind recorded so far.
    pub fn recorded<'s>(&'s self, kind: &'s str) -> impl Iterator<Item = &'s Resource> + 's {
        self.resources.iter().filter(move |r| r.kind == kind)
    }

    /// Whether compensation undoes a request that had completed (a
    /// rollback asked for by a person), rather than a failed fulfillment.
    pub fn rolling_back_completed(&self) -> bool {
        self.request.status == RequestStatus::RollingBack
    }

    /// The item's `rollback: {retain: true}`: keep what the action made.
    pub fn retain(&self) -> bool {
        self.action
            .rollback
            .as_ref()
            .and_then(|rollback| rollback.get("retain"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

pub const REQUEST_TAG: &str = "pao:request-id";
pub const ACTION_TAG: &str = "pao:action-id";
pub const ITEM_TAG: &str = "pao:item-id";

/// One action type's work.
#[async_trait]
pub trait Driver: Send + Sync {
    /// Begins the work, or finishes a start that died halfway: every call
    /// is idempotent, finding what an earlier call made before making it.
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError>;

    /// Checks work under way. By default a poll starts again, which suits
    /// actions that are one call.
    async fn poll(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        self.start(step).await
    }

    /// Undoes what the action made: for native types, exactly the
    /// resources in `step.resources`, newest dependency first; NotFound is
    /// done. Called again after a `Wait` until it answers otherwise.
    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError>;
}
