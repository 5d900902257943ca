//! Requests: what a developer submits against a catalog item, its lifecycle,
//! its audit trail and log, and the ports to the systems a submission
//! touches (the requests table, Secrets Manager, Step Functions, the
//! per-caller submission limit). The SDK adapters live in `aws/`.

pub mod engine;
pub mod fields;
pub mod fulfillment;
pub mod limit;
pub mod memory;
pub mod service;
pub mod status;
pub mod ticket;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use status::RequestStatus;

use fulfillment::{ActionRecord, ActionStatus, Plan, Resource};

use crate::catalog::index::StoreError;

/// Who submitted a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub subject: String,
    pub email: String,
}

/// A request as stored and as the API shows it. Password fields hold the ARN
/// of their secret, never the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub item_id: String,
    /// The catalog item version and content the request was submitted against.
    pub item_version: String,
    pub item_hash: String,
    pub requester: Requester,
    pub status: RequestStatus,
    /// Incremented by every change; the store writes conditionally on it.
    pub version: u64,
    pub fields: Map<String, Value>,
    /// The fields whose value is a Secrets Manager ARN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_fields: Vec<String>,
    /// Each action's state, by action id, as the engine reports it.
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    /// Why the request failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One status change: who, what, when, from, to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: String,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<RequestStatus>,
    pub to: RequestStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A line of a request's log, written by the API, the engine and the actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at: String,
    /// `api`, `engine` or an action id.
    pub source: String,
    pub level: String,
    pub message: String,
}

/// A status change to make, conditional on the request still being at
/// `from`/`version`.
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: RequestStatus,
    pub version: u64,
    pub to: RequestStatus,
    pub actor: String,
    pub reason: Option<String>,
    pub execution_arn: Option<String>,
    pub at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("request not found")]
    NotFound,
    #[error("{from} cannot become {to}")]
    NotAllowed {
        from: RequestStatus,
        to: RequestStatus,
    },
    /// Another writer changed the request first.
    #[error("the request changed meanwhile; it is now {current}")]
    Conflict { current: RequestStatus },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this user's requests; `None` for every user (admins).
    pub subject: Option<String>,
    pub status: Option<RequestStatus>,
    pub item_id: Option<String>,
    pub limit: usize,
    /// The opaque token of the previous page.
    pub after: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub requests: Vec<Request>,
    pub next: Option<String>,
}

/// What an idempotency record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub payload_hash: String,
    pub request_id: String,
}

/// The requests table.
#[async_trait]
pub trait RequestStore: Send + Sync {
    /// Writes a new request with its pinned fulfillment plan and first audit
    /// entries in one item, then its first log line; `false` when a request
    /// with that id exists already.
    async fn create(
        &self,
        request: &Request,
        plan: &Plan,
        audit: &[AuditEntry],
        log: &LogEntry,
    ) -> Result<bool, StoreError>;
    async fn get(&self, id: &str) -> Result<Option<Request>, StoreError>;
    /// Applies a transition to `current` (the request as last read)
    /// atomically with its audit entry, conditional on the request still
    /// being at `change.from`/`change.version`.
    async fn transition(
        &self,
        current: &Request,
        change: &Transition,
    ) -> Result<Request, TransitionError>;
    async fn list(&self, query: &ListQuery) -> Result<Page, ListError>;
    async fn audit(&self, id: &str) -> Result<Vec<AuditEntry>, StoreError>;
    async fn logs(&self, id: &str) -> Result<Vec<LogEntry>, StoreError>;
    async fn append_log(&self, id: &str, entry: &LogEntry) -> Result<(), StoreError>;
    /// Records `record` under `key` unless a record exists; returns the
    /// record that stands (ours or the earlier one).
    async fn claim_idempotency_key(
        &self,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<IdempotencyRecord, StoreError>;
    /// Keeps the task token of the execution waiting for this request to be
    /// fulfilled. Never shown by the API: it completes the task.
    async fn save_task_token(&self, id: &str, token: &str) -> Result<(), StoreError>;
    /// The task token kept by [`RequestStore::save_task_token`].
    async fn task_token(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// Remembers which request a JIRA issue belongs to.
    async fn save_ticket(&self, issue_key: &str, id: &str) -> Result<(), StoreError>;
    async fn ticket_request(&self, issue_key: &str) -> Result<Option<String>, StoreError>;
    async fn plan(&self, id: &str) -> Result<Option<Plan>, StoreError>;
    /// Every action record of the request.
    async fn actions(&self, id: &str) -> Result<Vec<ActionRecord>, StoreError>;
    /// Writes an action record if the stored one passes `guard`; `false`
    /// when it does not (another writer got there first).
    async fn put_action(
        &self,
        id: &str,
        record: &ActionRecord,
        guard: Guard,
    ) -> Result<bool, StoreError>;
    /// Adds a resource to the request's ledger (the same resource again
    /// changes nothing).
    async fn record_resource(&self, id: &str, resource: &Resource) -> Result<(), StoreError>;
    /// Every resource in the request's ledger.
    async fn ledger(&self, id: &str) -> Result<Vec<Resource>, StoreError>;
}

/// The condition an action record write is made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// No record yet, or one in any status but this.
    Not(ActionStatus),
    /// A record in exactly this status.
    Is(ActionStatus),
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("the page token is not valid for this listing")]
    BadToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where secrets go: password fields, and the outputs of actions that are
/// secrets.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Stores `value` under `name` (idempotent: the same name again is the
    /// same secret) and returns its ARN.
    async fn put(&self, name: &str, value: &str) -> Result<String, StoreError>;
    /// Makes `value` the current version of the secret `name`, creating it
    /// when it does not exist yet (or restoring it when it was deleted), and
    /// returns its ARN: a re-run action's newer answer replaces the older one.
    async fn replace(&self, name: &str, value: &str) -> Result<String, StoreError>;
    /// Schedules the secret `name` for deletion, recoverable for a week; a
    /// secret that is gone or going already is not an error.
    async fn delete(&self, name: &str) -> Result<(), StoreError>;
}

/// The fulfillment engine's executions.
#[async_trait]
pub trait Workflow: Send + Sync {
    /// Starts the execution named `name` (idempotent for the same name and
    /// input) and returns its ARN.
    async fn start(&self, name: &str, input: &str) -> Result<String, StoreError>;
    /// The ARN the execution named `name` has, started or not.
    fn execution_arn(&self, name: &str) -> String;
    async fn stop(&self, execution_arn: &str, cause: &str) -> Result<(), StoreError>;
    /// Resumes a task waiting for its token; `false` when the token no
    /// longer names a waiting task (its execution ended or timed out).
    async fn resume(&self, token: &str, outcome: &TaskOutcome) -> Result<bool, StoreError>;
}

/// How a waiting task goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskOutcome {
    Succeeded(Value),
    Failed {
        error: String,
        cause: String,
    },
    /// Still being worked on: the task's heartbeat clock starts again.
    Heartbeat,
}
