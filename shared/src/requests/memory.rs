//! In-memory stand-ins for the requests side's ports (the requests table,
//! Secrets Manager, Step Functions, the submission limit), for unit tests
//! only. They keep the
//! conditional semantics the adapters in `aws/` document, so tests that use
//! them exercise the same races the real systems see. A configured failure
//! makes every call fail, as an unreachable system would.
//!
//! What they leave out: the idempotency record's 24-hour expiry, DynamoDB's
//! page limit applying before the filter (a page here is always full unless
//! it is the last), and the eventual consistency of the listing's indexes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fulfillment::{ActionRecord, Plan, Resource};
use super::limit::{Admission, SubmissionLimit, Window};
use super::{
    AuditEntry, Guard, IdempotencyRecord, ListError, ListQuery, LogEntry, Page, Request,
    RequestStore, SecretStore, TaskOutcome, Transition, TransitionError, Workflow,
};
use crate::catalog::index::StoreError;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A failure to answer every call with, or none.
#[derive(Default)]
struct Failure(Mutex<Option<StoreError>>);

impl Failure {
    fn set(&self, failure: Option<StoreError>) {
        *lock(&self.0) = failure;
    }

    fn check(&self) -> Result<(), StoreError> {
        match lock(&self.0).clone() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------- requests

/// What one request's partition of the table holds. As in DynamoDB, its log,
/// action records, ledger and task token are items of their own, which may
/// be written whether the request item exists or not.
#[derive(Debug, Clone, Default)]
struct Partition {
    request: Option<Stored>,
    /// In time order, as the table's `LOG#<at>#…` keys sort.
    logs: Vec<LogEntry>,
    /// By action id, as `ACTION#<action id>` sorts.
    actions: BTreeMap<String, ActionRecord>,
    /// By (action id, kind, resource id), as `LEDGER#…` sorts.
    ledger: BTreeMap<(String, String, String), Resource>,
    task_token: Option<String>,
}

#[derive(Debug, Clone)]
struct Stored {
    request: Request,
    plan: Plan,
    audit: Vec<AuditEntry>,
}

#[derive(Debug, Default)]
struct Table {
    partitions: HashMap<String, Partition>,
    idempotency: HashMap<String, IdempotencyRecord>,
    tickets: HashMap<String, String>,
}

impl Table {
    fn partition(&mut self, id: &str) -> &mut Partition {
        self.partitions.entry(id.to_string()).or_default()
    }
}

/// The requests table, in memory.
#[derive(Default)]
pub struct MemoryRequests {
    table: Mutex<Table>,
    failure: Failure,
}

impl MemoryRequests {
    /// Makes every call fail with `failure` (or succeed again with `None`).
    pub fn fail_with(&self, failure: Option<StoreError>) {
        self.failure.set(failure);
    }

    /// Writes an action record whatever the stored one says, as an earlier
    /// call (or an operator) left it: for setting up a test.
    pub fn set_action(&self, id: &str, record: ActionRecord) {
        lock(&self.table)
            .partition(id)
            .actions
            .insert(record.action_id.clone(), record);
    }

    /// The idempotency record standing under `key`.
    pub fn idempotency_record(&self, key: &str) -> Option<IdempotencyRecord> {
        lock(&self.table).idempotency.get(key).cloned()
    }

    fn reachable(&self) -> Result<MutexGuard<'_, Table>, StoreError> {
        self.failure.check()?;
        Ok(lock(&self.table))
    }
}

/// Where a listing continues: the listing it belongs to, and the sort key
/// (`<created_at>#<id>`) of the last request it showed.
#[derive(Serialize, Deserialize)]
struct Token {
    listing: String,
    after: String,
}

const TOKEN_PREFIX: &str = "mem.";

/// Which listing a query is, so a token continues only its own.
fn listing(query: &ListQuery) -> String {
    serde_json::json!([
        query.subject,
        query.status.map(|status| status.name()),
        query.item_id
    ])
    .to_string()
}

fn order_key(request: &Request) -> String {
    format!("{}#{}", request.created_at, request.id)
}

fn encode_token(token: &Token) -> String {
    let json = serde_json::to_vec(token).unwrap_or_default();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    )
}

fn decode_token(text: &str, query: &ListQuery) -> Result<String, ListError> {
    let encoded = text.strip_prefix(TOKEN_PREFIX).ok_or(ListError::BadToken)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| ListError::BadToken)?;
    let token: Token = serde_json::from_slice(&json).map_err(|_| ListError::BadToken)?;
    if token.listing != listing(query) || token.after.is_empty() {
        return Err(ListError::BadToken);
    }
    Ok(token.after)
}

#[async_trait]
impl RequestStore for MemoryRequests {
    async fn create(
        &self,
        request: &Request,
        plan: &Plan,
        audit: &[AuditEntry],
        log: &LogEntry,
    ) -> Result<bool, StoreError> {
        let mut table = self.reachable()?;
        let partition = table.partition(&request.id);
        if partition.request.is_some() {
            return Ok(false);
        }
        partition.request = Some(Stored {
            request: request.clone(),
            plan: plan.clone(),
            audit: audit.to_vec(),
        });
        insert_log(&mut partition.logs, log);
        Ok(true)
    }

    async fn get(&self, id: &str) -> Result<Option<Request>, StoreError> {
        let table = self.reachable()?;
        Ok(table
            .partitions
            .get(id)
            .and_then(|p| p.request.as_ref())
            .map(|stored| stored.request.clone()))
    }

    async fn transition(
        &self,
        current: &Request,
        change: &Transition,
    ) -> Result<Request, TransitionError> {
        if !change.from.can_become(change.to) {
            return Err(TransitionError::NotAllowed {
                from: change.from,
                to: change.to,
            });
        }
        let mut table = self.reachable()?;
        let stored = table
            .partitions
            .get_mut(&current.id)
            .and_then(|p| p.request.as_mut())
            .ok_or(TransitionError::NotFound)?;
        if stored.request.status != change.from || stored.request.version != change.version {
            return Err(TransitionError::Conflict {
                current: stored.request.status,
            });
        }
        // As the adapter does: the caller's copy, changed, is written.
        let mut next = current.clone();
        next.status = change.to;
        next.version = current.version + 1;
        next.updated_at = change.at.clone();
        if change.reason.is_some() {
            next.reason = change.reason.clone();
        }
        if change.execution_arn.is_some() {
            next.execution_arn = change.execution_arn.clone();
        }
        stored.audit.push(AuditEntry {
            at: change.at.clone(),
            actor: change.actor.clone(),
            from: Some(change.from),
            to: change.to,
            reason: change.reason.clone(),
        });
        stored.request = next.clone();
        Ok(next)
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, ListError> {
        let after = query
            .after
            .as_deref()
            .map(|token| decode_token(token, query))
            .transpose()?;
        let table = self.reachable()?;
        let mut matching: Vec<&Request> = table
            .partitions
            .values()
            .filter_map(|p| p.request.as_ref().map(|stored| &stored.request))
            .filter(|r| {
                query
                    .subject
                    .as_ref()
                    .is_none_or(|s| &r.requester.subject == s)
            })
            .filter(|r| query.status.is_none_or(|s| r.status == s))
            .filter(|r| query.item_id.as_ref().is_none_or(|i| &r.item_id == i))
            .filter(|r| after.as_ref().is_none_or(|after| &order_key(r) < after))
            .collect();
        // Newest first, as the indexes are read.
        matching.sort_by_key(|r| std::cmp::Reverse(order_key(r)));
        let limit = query.limit.clamp(1, 100);
        let more = matching.len() > limit;
        matching.truncate(limit);
        let next = match (more, matching.last()) {
            (true, Some(last)) => Some(encode_token(&Token {
                listing: listing(query),
                after: order_key(last),
            })),
            _ => None,
        };
        Ok(Page {
            requests: matching.into_iter().cloned().collect(),
            next,
        })
    }

    async fn audit(&self, id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let table = self.reachable()?;
        Ok(table
            .partitions
            .get(id)
            .and_then(|p| p.request.as_ref())
            .map(|stored| stored.audit.clone())
            .unwrap_or_default())
    }

    async fn logs(&self, id: &str) -> Result<Vec<LogEntry>, StoreError> {
        let table = self.reachable()?;
        Ok(table
            .partitions
            .get(id)
            .map(|p| p.logs.clone())
            .unwrap_or_default())
    }

    async fn append_log(&self, id: &str, entry: &LogEntry) -> Result<(), StoreError> {
        let mut table = self.reachable()?;
        insert_log(&mut table.partition(id).logs, entry);
        Ok(())
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<IdempotencyRecord, StoreError> {
        let mut table = self.reachable()?;
        Ok(table
            .idempotency
            .entry(key.to_string())
            .or_insert_with(|| record.clone())
            .clone())
    }

    async fn save_task_token(&self, id: &str, token: &str) -> Result<(), StoreError> {
        let mut table = self.reachable()?;
        table.partition(id).task_token = Some(token.to_string());
        Ok(())
    }

    async fn task_token(&self, id: &str) -> Result<Option<String>, StoreError> {
        let table = self.reachable()?;
        Ok(table.partitions.get(id).and_then(|p| p.task_token.clone()))
    }

    async fn save_ticket(&self, issue_key: &str, id: &str) -> Result<(), StoreError> {
        let mut table = self.reachable()?;
        table.tickets.insert(issue_key.to_string(), id.to_string());
        Ok(())
    }

    async fn ticket_request(&self, issue_key: &str) -> Result<Option<String>, StoreError> {
        let table = self.reachable()?;
        Ok(table.tickets.get(issue_key).cloned())
    }

    async fn plan(&self, id: &str) -> Result<Option<Plan>, StoreError> {
        let table = self.reachable()?;
        Ok(table
            .partitions
            .get(id)
            .and_then(|p| p.request.as_ref())
            .map(|stored| stored.plan.clone()))
    }

    async fn actions(&self, id: &str) -> Result<Vec<ActionRecord>, StoreError> {
        let table = self.reachable()?;
        Ok(table
            .partitions
            .get(id)
            .map(|p| p.actions.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn put_action(
        &self,
        id: &str,
        record: &ActionRecord,
        guard: Guard,
    ) -> Result<bool, StoreError> {
        let mut table = self.reachable()?;
        let actions = &mut table.partition(id).actions;
        let stored = actions.get(&record.action_id).map(|r| r.status);
        let passes = match guard {
            Guard::Not(status) => stored != Some(status),
            Guard::Is(status) => stored == Some(status),
        };
        if passes {
            actions.insert(record.action_id.clone(), record.clone());
        }
        Ok(passes)
    }

    async fn record_resource(&self, id: &str, resource: &Resource) -> Result<(), StoreError> {
        let mut table = self.reachable()?;
        let key = (
            resource.action_id.clone(),
            resource.kind.clone(),
            resource.id.clone(),
        );
        // The first record stands: its time orders compensation.
        table
            .partition(id)
            .ledger
            .entry(key)
            .or_insert_with(|| resource.clone());
        Ok(())
    }

    async fn ledger(&self, id: &str) -> Result<Vec<Resource>, StoreError> {
        let table = self.reachable()?;
        Ok(table
            .partitions
            .get(id)
            .map(|p| p.ledger.values().cloned().collect())
            .unwrap_or_default())
    }
}

/// Keeps the log in time order; entries of the same time in the order
/// written (the table orders those by a random suffix).
fn insert_log(logs: &mut Vec<LogEntry>, entry: &LogEntry) {
    let at = logs.partition_point(|e| e.at <= entry.at);
    logs.insert(at, entry.clone());
}

// ---------------------------------------------------------------- secrets

/// A secret as Secrets Manager holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub arn: String,
    /// The current version's value.
    pub value: String,
    /// Every value it had, oldest first.
    pub versions: Vec<String>,
    /// Scheduled for deletion (restorable).
    pub deleted: bool,
}

/// Secrets Manager, in memory.
#[derive(Default)]
pub struct MemorySecrets {
    secrets: Mutex<BTreeMap<String, StoredSecret>>,
    failure: Failure,
}

impl MemorySecrets {
    /// Makes every call fail with `failure` (or succeed again with `None`).
    pub fn fail_with(&self, failure: Option<StoreError>) {
        self.failure.set(failure);
    }

    /// The secret `name`, deleted or not.
    pub fn secret(&self, name: &str) -> Option<StoredSecret> {
        lock(&self.secrets).get(name).cloned()
    }

    /// Every secret by name, deleted ones included.
    pub fn secrets(&self) -> BTreeMap<String, StoredSecret> {
        lock(&self.secrets).clone()
    }

    /// The ARN a secret of this name gets: Secrets Manager adds six random
    /// characters; here they are derived from the name.
    pub fn arn(name: &str) -> String {
        let digest = Sha256::digest(name.as_bytes());
        let suffix: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-{suffix}")
    }

    fn reachable(&self) -> Result<MutexGuard<'_, BTreeMap<String, StoredSecret>>, StoreError> {
        self.failure.check()?;
        Ok(lock(&self.secrets))
    }
}

fn new_secret(name: &str, value: &str) -> StoredSecret {
    StoredSecret {
        arn: MemorySecrets::arn(name),
        value: value.to_string(),
        versions: vec![value.to_string()],
        deleted: false,
    }
}

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn put(&self, name: &str, value: &str) -> Result<String, StoreError> {
        // The same name is the same secret: its value stays, deleted or not
        // (the adapter then only describes it).
        let mut secrets = self.reachable()?;
        let secret = secrets
            .entry(name.to_string())
            .or_insert_with(|| new_secret(name, value));
        Ok(secret.arn.clone())
    }

    async fn replace(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let mut secrets = self.reachable()?;
        let secret = secrets
            .entry(name.to_string())
            .or_insert_with(|| new_secret(name, value));
        secret.deleted = false;
        if secret.value != value {
            secret.value = value.to_string();
            secret.versions.push(value.to_string());
        }
        Ok(secret.arn.clone())
    }

    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let mut secrets = self.reachable()?;
        if let Some(secret) = secrets.get_mut(name) {
            secret.deleted = true;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- workflow

/// One execution of the state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub name: String,
    pub arn: String,
    pub input: String,
    /// The cause it was stopped with, if it was.
    pub stopped: Option<String>,
}

#[derive(Debug, Default)]
struct Engine {
    /// In the order started.
    executions: Vec<Execution>,
    /// Task token → the execution (ARN) waiting on it.
    waiting: BTreeMap<String, String>,
    /// Every outcome a waiting task accepted, in order.
    resumed: Vec<(String, TaskOutcome)>,
}

/// The fulfillment state machine, in memory: executions are recorded, not run.
pub struct MemoryWorkflow {
    state_machine_arn: String,
    engine: Mutex<Engine>,
    failure: Failure,
}

impl Default for MemoryWorkflow {
    fn default() -> Self {
        Self {
            state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:pao-fulfillment"
                .to_string(),
            engine: Mutex::default(),
            failure: Failure::default(),
        }
    }
}

impl MemoryWorkflow {
    /// Makes every call fail with `failure` (or succeed again with `None`).
    pub fn fail_with(&self, failure: Option<StoreError>) {
        self.failure.set(failure);
    }

    /// Every execution started, in order.
    pub fn executions(&self) -> Vec<Execution> {
        lock(&self.engine).executions.clone()
    }

    /// The execution `execution_arn` reaches a task that waits for `token`
    /// (the manual ticket's `.waitForTaskToken`).
    pub fn wait_for_task(&self, execution_arn: &str, token: &str) {
        lock(&self.engine)
            .waiting
            .insert(token.to_string(), execution_arn.to_string());
    }

    /// Every outcome a waiting task accepted, with its token, in order.
    pub fn resumed(&self) -> Vec<(String, TaskOutcome)> {
        lock(&self.engine).resumed.clone()
    }

    fn reachable(&self) -> Result<MutexGuard<'_, Engine>, StoreError> {
        self.failure.check()?;
        Ok(lock(&self.engine))
    }
}

#[async_trait]
impl Workflow for MemoryWorkflow {
    async fn start(&self, name: &str, input: &str) -> Result<String, StoreError> {
        let arn = self.execution_arn(name);
        let mut engine = self.reachable()?;
        // A name already used starts nothing new, whatever the input: Step
        // Functions answers ExecutionAlreadyExists, which the adapter takes
        // as started.
        if !engine.executions.iter().any(|e| e.name == name) {
            engine.executions.push(Execution {
                name: name.to_string(),
                arn: arn.clone(),
                input: input.to_string(),
                stopped: None,
            });
        }
        Ok(arn)
    }

    fn execution_arn(&self, name: &str) -> String {
        format!(
            "{}:{name}",
            self.state_machine_arn
                .replacen(":stateMachine:", ":execution:", 1)
        )
    }

    async fn stop(&self, execution_arn: &str, cause: &str) -> Result<(), StoreError> {
        let mut engine = self.reachable()?;
        // Stopping an unknown or stopped execution is not an error.
        if let Some(execution) = engine
            .executions
            .iter_mut()
            .find(|e| e.arn == execution_arn && e.stopped.is_none())
        {
            execution.stopped = Some(cause.to_string());
        }
        engine.waiting.retain(|_, arn| arn != execution_arn);
        Ok(())
    }

    async fn resume(&self, token: &str, outcome: &TaskOutcome) -> Result<bool, StoreError> {
        let mut engine = self.reachable()?;
        if !engine.waiting.contains_key(token) {
            return Ok(false);
        }
        if *outcome != TaskOutcome::Heartbeat {
            engine.waiting.remove(token);
        }
        engine.resumed.push((token.to_string(), outcome.clone()));
        Ok(true)
    }
}

// ---------------------------------------------------------------- limit

/// The submission limit, in memory: the same windows as the adapter's, on
/// the system clock unless a test sets the time.
pub struct MemoryLimit {
    per_minute: u32,
    /// Seconds since the epoch, once a test has set them.
    clock: Mutex<Option<u64>>,
    /// The requests counted, by caller and minute.
    windows: Mutex<HashMap<(String, u64), HashSet<String>>>,
    failure: Failure,
}

impl MemoryLimit {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            clock: Mutex::default(),
            windows: Mutex::default(),
            failure: Failure::default(),
        }
    }

    /// Makes every call fail with `failure` (or succeed again with `None`).
    pub fn fail_with(&self, failure: Option<StoreError>) {
        self.failure.set(failure);
    }

    /// Stops the clock at `epoch_seconds`, so a test does not straddle two
    /// minutes.
    pub fn set_clock(&self, epoch_seconds: u64) {
        *lock(&self.clock) = Some(epoch_seconds);
    }

    /// How many requests of `subject` the current minute counts.
    pub fn counted(&self, subject: &str) -> usize {
        let window = self.window();
        lock(&self.windows)
            .get(&(subject.to_string(), window.minute))
            .map_or(0, HashSet::len)
    }

    fn window(&self) -> Window {
        match *lock(&self.clock) {
            Some(seconds) => Window::at(seconds),
            None => Window::now(),
        }
    }
}

#[async_trait]
impl SubmissionLimit for MemoryLimit {
    async fn admit(&self, subject: &str, request_id: &str) -> Result<Admission, StoreError> {
        self.failure.check()?;
        let window = self.window();
        let mut windows = lock(&self.windows);
        let counted = windows
            .entry((subject.to_string(), window.minute))
            .or_default();
        let room = counted.len() < usize::try_from(self.per_minute).unwrap_or(usize::MAX);
        if counted.contains(request_id) || room {
            counted.insert(request_id.to_string());
            return Ok(Admission::Admitted);
        }
        Ok(Admission::Refused {
            per_minute: self.per_minute,
            retry_after_seconds: window.retry_after_seconds,
        })
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
