//! The one lifecycle of every action, whatever its type: the contract
//! `{request_id, action_id, op, attempt}` in, `{done, wait_seconds,
//! outputs}` out, carried out around a [`Driver`]. Written once here:
//! - claims: every start, success, failure and compensation is a
//!   conditional write of the action's record, so a start after success
//!   answers from the record, and a cancellation and a failing execution
//!   never compensate at once. Starts are not exclusive: the state
//!   machine retrying a call whose function died calls the driver again
//!   while the old call may still count as under way, which is why every
//!   driver is idempotent;
//! - the cancellation check, the config's context, the resource ledger
//!   (the driver records each resource through its [`Journal`]);
//! - secret outputs, moved to Secrets Manager before anything stores them;
//! - the action's own `retry` policy: a retryable failure answers "not
//!   done, wait N seconds" with exponential backoff and jitter, so the
//!   state machine waits and calls again; past `max_attempts` it is fatal.
//!   The state machine's own `Retry` covers failures of the function;
//! - its `timeout_seconds`, across every attempt and poll;
//! - redaction of the `env` secrets from every message, and the log lines.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::driver::{Driver, Journal, Level, Progress, Step, Undone};
use crate::action::{ActionError, ActionInput, ActionOutput, Op};
use crate::catalog::item::{Action, ActionType, Mode, Retry};
use crate::clock::{now, seconds_since};
use crate::protect::slots::{Slot, Slots};
use crate::requests::fulfillment::{responses, ActionRecord, ActionStatus, Plan, Resource};
use crate::requests::{Guard, LogEntry, Request, RequestStatus, RequestStore, SecretStore};
use crate::template::render::{redact, Context, RequestVars, TemplateEnv};

/// The action id of a manual request's ticket.
pub const TICKET: &str = "ticket";

pub struct Lifecycle {
    store: Arc<dyn RequestStore>,
    secrets: Arc<dyn SecretStore>,
    env: TemplateEnv,
    drivers: BTreeMap<ActionType, Arc<dyn Driver>>,
    /// The longest a driver's "wait N s" may be: minutes suit RDS and EKS
    /// in AWS; a local stack moves in seconds.
    max_wait_seconds: u32,
    /// The deployment's concurrency caps per action type, if any.
    slots: Option<Arc<Slots>>,
}

/// How often an action over its type's cap asks for a slot again (capped
/// like every wait).
const SLOT_WAIT: u32 = 30;

/// What one request's action needs to run.
struct Job {
    request: Request,
    plan: Plan,
    action: Action,
    records: Vec<ActionRecord>,
}

impl Job {
    fn record(&self) -> Option<&ActionRecord> {
        self.records
            .iter()
            .find(|record| record.action_id == self.action.id)
    }

    fn context(&self, env: &TemplateEnv) -> Context {
        let request = &self.request;
        Context::new(
            Value::Object(request.fields.clone()),
            self.plan.header.clone(),
            RequestVars {
                id: &request.id,
                timestamp: &request.created_at,
                user_id: &request.requester.subject,
                user_email: &request.requester.email,
            },
            env,
            responses(&self.records),
        )
    }

    /// The synthetic action of a manual request: its JIRA ticket, whose
    /// config is the item's `fulfillment.manual.jira`.
    fn ticket(plan: &Plan) -> Action {
        let config = match serde_json::to_value(&plan.manual.jira) {
            Ok(Value::Object(config)) => config,
            _ => Map::new(),
        };
        Action {
            id: TICKET.to_string(),
            kind: ActionType::JiraTicket,
            depends_on: Vec::new(),
            when: None,
            config,
            retry: None,
            timeout_seconds: None,
            rollback: None,
        }
    }
}

/// The request's log and ledger, as one action's driver writes them.
struct ActionJournal<'a> {
    lifecycle: &'a Lifecycle,
    request_id: &'a str,
    action_id: &'a str,
}

#[async_trait]
impl Journal for ActionJournal<'_> {
    async fn record(&self, mut resource: Resource) -> Result<(), ActionError> {
        resource.action_id = self.action_id.to_string();
        resource.recorded_at = now();
        Ok(self
            .lifecycle
            .store
            .record_resource(self.request_id, &resource)
            .await?)
    }

    async fn log(&self, level: Level, message: &str) -> Result<(), ActionError> {
        self.lifecycle
            .log(self.request_id, self.action_id, level.name(), message)
            .await
    }
}

impl Lifecycle {
    pub fn new(
        store: Arc<dyn RequestStore>,
        secrets: Arc<dyn SecretStore>,
        env: TemplateEnv,
        max_wait_seconds: u32,
    ) -> Self {
        Self {
            store,
            secrets,
            env,
            drivers: BTreeMap::new(),
            max_wait_seconds: max_wait_seconds.max(1),
            slots: None,
        }
    }

    /// Caps how many actions of a type run at once, across every request.
    pub fn with_slots(mut self, slots: Arc<Slots>) -> Self {
        self.slots = Some(slots);
        self
    }

    /// Runs actions of type `kind` with `driver`.
    pub fn with(mut self, kind: ActionType, driver: Arc<dyn Driver>) -> Self {
        self.drivers.insert(kind, driver);
        self
    }

    #[tracing::instrument(skip(self, input), fields(request_id = %input.request_id, action_id = %input.action_id, op = ?input.op))]
    pub async fn run(&self, input: ActionInput) -> Result<ActionOutput, ActionError> {
        let job = self.job(&input).await?;
        if job.request.status == RequestStatus::Cancelled && input.op != Op::Compensate {
            self.give_back(&job).await;
            return Err(ActionError::Fatal("the request was cancelled".to_string()));
        }
        let driver = self.drivers.get(&job.action.kind).ok_or_else(|| {
            ActionError::Fatal(format!(
                "this action function does not run {} actions",
                job.action.kind.name()
            ))
        })?;
        match input.op {
            Op::Start | Op::Poll => {
                let output = self
                    .advance(driver.as_ref(), &job, input.task_token.as_deref())
                    .await?;
                if let (true, Some(token)) = (output.done, input.task_token.as_deref()) {
                    // The step waits to be resumed (the manual ticket): a
                    // retried request's new execution has a new token.
                    self.store.save_task_token(&job.request.id, token).await?;
                    self.log(
                        &job.request.id,
                        &job.action.id,
                        "info",
                        "waiting for the platform team to resolve the issue",
                    )
                    .await?;
                }
                Ok(output)
            }
            Op::Compensate => self.compensate(driver.as_ref(), &job).await,
        }
    }

    async fn job(&self, input: &ActionInput) -> Result<Job, ActionError> {
        let id = &input.request_id;
        let request = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ActionError::Fatal(format!("request {id} does not exist")))?;
        let plan =
            self.store.plan(id).await?.ok_or_else(|| {
                ActionError::Fatal(format!("request {id} has no fulfillment plan"))
            })?;
        let action = if input.action_id == TICKET {
            if plan.mode != Mode::Manual {
                return Err(ActionError::Fatal(
                    "an automated item never falls back to a manual ticket".to_string(),
                ));
            }
            Job::ticket(&plan)
        } else {
            plan.action(&input.action_id).cloned().ok_or_else(|| {
                ActionError::Fatal(format!("the plan has no action {}", input.action_id))
            })?
        };
        let records = self.store.actions(id).await?;
        Ok(Job {
            request,
            plan,
            action,
            records,
        })
    }

    /// The action's resources in the ledger, oldest first.
    async fn resources(&self, job: &Job) -> Result<Vec<Resource>, ActionError> {
        let mut resources: Vec<Resource> = self
            .store
            .ledger(&job.request.id)
            .await?
            .into_iter()
            .filter(|resource| resource.action_id == job.action.id)
            .collect();
        resources.sort_by(|a, b| a.recorded_at.cmp(&b.recorded_at));
        Ok(resources)
    }

    /// Start, or poll: calls the driver unless the action succeeded already
    /// (a repeated start answers with the recorded outputs). A driver that
    /// answered "under way" is polled; any other call starts (again).
    async fn advance(
        &self,
        driver: &dyn Driver,
        job: &Job,
        task_token: Option<&str>,
    ) -> Result<ActionOutput, ActionError> {
        let previous = job.record().cloned();
        if let Some(done) = previous
            .as_ref()
            .filter(|r| r.status == ActionStatus::Succeeded)
        {
            return Ok(ActionOutput::done(done.outputs.clone()));
        }
        let id = job.request.id.as_str();
        let action_id = job.action.id.as_str();
        // The action's own `timeout_seconds` bounds it across every attempt.
        // A Failed record is an earlier attempt of the request: its clock
        // starts again.
        let running = previous
            .as_ref()
            .filter(|r| r.status == ActionStatus::Running);
        if let (Some(limit), Some(running)) = (job.action.timeout_seconds, running) {
            if seconds_since(&running.started_at).is_some_and(|s| s > f64::from(limit)) {
                let message = format!("not done within its timeout of {limit} s");
                let mut failed = running.clone();
                failed.status = ActionStatus::Failed;
                failed.error = Some(message.clone());
                failed.finished_at = Some(now());
                self.give_back(job).await;
                self.store
                    .put_action(id, &failed, Guard::Is(ActionStatus::Running))
                    .await?;
                self.log(id, action_id, "error", &message).await?;
                return Err(ActionError::Fatal(format!("{action_id}: {message}")));
            }
        }
        // Each run of the action (a retry of the request is a new run) has
        // the whole of its retry policy.
        let attempt = running.map_or(0, |r| r.attempts) + 1;
        let mut record = ActionRecord {
            action_id: action_id.to_string(),
            kind: job.action.kind,
            status: ActionStatus::Running,
            attempts: attempt,
            failures: running.map_or(0, |r| r.failures),
            polling: running.is_some_and(|r| r.polling),
            waiting_for: running.and_then(|r| r.waiting_for.clone()),
            compensating_from: None,
            queued: running.is_some_and(|r| r.queued),
            outputs: Map::new(),
            secret_outputs: Vec::new(),
            error: None,
            started_at: running.map_or_else(now, |r| r.started_at.clone()),
            finished_at: None,
            attempt_started_at: Some(now()),
        };
        if !self
            .store
            .put_action(id, &record, Guard::Not(ActionStatus::Succeeded))
            .await?
        {
            // Succeeded meanwhile (a duplicate delivery): answer as it did.
            self.give_back(job).await;
            let records = self.store.actions(id).await?;
            let outputs = responses(&records)
                .get(action_id)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            return Ok(ActionOutput::done(outputs));
        }
        if let Some(wait) = self.queue(job, &mut record).await? {
            return Ok(wait);
        }
        let context = job.context(&self.env);
        let resources = self.resources(job).await?;
        let journal = ActionJournal {
            lifecycle: self,
            request_id: id,
            action_id,
        };
        let step = Step {
            request: &job.request,
            action: &job.action,
            context: &context,
            resources: &resources,
            outputs: &Map::new(),
            journal: &journal,
            task_token,
            attempt,
        };
        let outcome = if record.polling {
            driver.poll(&step).await
        } else {
            driver.start(&step).await
        };
        let outcome = match outcome {
            Ok(Progress::Done(outputs)) => self
                .keep_secrets(id, action_id, &outputs.secret, outputs.values)
                .await
                .map(|values| {
                    Progress::Done(super::driver::Outputs {
                        values,
                        secret: outputs.secret,
                    })
                }),
            other => other,
        }
        .map_err(|err| self.blank(err));
        record.finished_at = Some(now());
        match outcome {
            Ok(Progress::Done(outputs)) => {
                record.status = ActionStatus::Succeeded;
                record.outputs = outputs.values.clone();
                record.secret_outputs = outputs.secret;
                record.waiting_for = None;
                self.give_back(job).await;
                self.store
                    .put_action(id, &record, Guard::Is(ActionStatus::Running))
                    .await?;
                self.log(id, action_id, "info", "succeeded").await?;
                Ok(ActionOutput::done(outputs.values))
            }
            Ok(Progress::Wait {
                seconds,
                waiting_for,
            }) => {
                let wait = seconds.clamp(1, self.max_wait_seconds);
                let changed = record.waiting_for.as_deref() != Some(waiting_for.as_str());
                record.polling = true;
                record.waiting_for = Some(waiting_for.clone());
                self.store
                    .put_action(id, &record, Guard::Is(ActionStatus::Running))
                    .await?;
                if changed {
                    let message = format!("waiting for {waiting_for}; checking every {wait} s");
                    self.log(id, action_id, "info", &message).await?;
                }
                Ok(ActionOutput::wait(wait))
            }
            Err(err) => {
                let policy = job.action.retry.clone().unwrap_or_default();
                // A call an open breaker refused was never made: it spends
                // none of the action's attempts.
                if err.was_called() {
                    record.failures += 1;
                }
                // At least as long as the other side (or an open breaker)
                // asked, when it said; never so long that a slot's lease
                // lapses between two calls.
                let retry = if err.is_fatal() {
                    None
                } else if !err.was_called() {
                    err.asked_wait()
                } else {
                    backoff(&policy, record.failures, err.is_throttled())
                        .map(|wait| wait.max(err.asked_wait().unwrap_or(0)))
                }
                .map(|wait| wait.min(self.longest_wait(job)));
                record.status = if retry.is_some() {
                    ActionStatus::Running
                } else {
                    self.give_back(job).await;
                    ActionStatus::Failed
                };
                record.error = Some(err.to_string());
                self.store
                    .put_action(id, &record, Guard::Is(ActionStatus::Running))
                    .await?;
                match retry {
                    Some(wait) => {
                        let message = format!("{err}; trying again in {wait} s");
                        self.log(id, action_id, "warn", &message).await?;
                        Ok(ActionOutput::wait(wait))
                    }
                    None => {
                        let message = if err.is_fatal() {
                            err.to_string()
                        } else {
                            format!("gave up after {} attempts: {err}", record.failures)
                        };
                        self.log(id, action_id, "error", &message).await?;
                        Err(ActionError::Fatal(format!("{action_id}: {message}")))
                    }
                }
            }
        }
    }

    /// A start waits while its type's cap is reached: the record says for
    /// what (and keeps restarting the action's clock, which begins when a
    /// slot is had). A poll renews the slot's lease. `None`: go on.
    async fn queue(
        &self,
        job: &Job,
        record: &mut ActionRecord,
    ) -> Result<Option<ActionOutput>, ActionError> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        let (id, action_id) = (job.request.id.as_str(), job.action.id.as_str());
        let kind = job.action.kind;
        let slot = slots.take(kind, &holder(job)).await?;
        let Slot::Busy { cap, holders } = slot else {
            if record.queued {
                record.queued = false;
                record.started_at = now();
                record.waiting_for = None;
                self.log(id, action_id, "info", "got a slot; starting")
                    .await?;
            }
            return Ok(None);
        };
        if record.polling {
            // Under way already (its lease expired meanwhile): holding
            // back its polls would not spare the account anything.
            return Ok(None);
        }
        // Other requests are counted, never named: they may be anyone's.
        let waiting_for = format!(
            "a slot: at most {cap} {} action(s) run at once across all requests, \
             and {} other request(s) hold them",
            kind.name(),
            holders.len()
        );
        let wait = SLOT_WAIT.min(self.max_wait_seconds);
        let changed = !record.queued;
        record.queued = true;
        record.started_at = now();
        // Waiting, not calling: nothing is under way for an undo to wait for.
        record.finished_at = Some(now());
        record.waiting_for = Some(waiting_for.clone());
        self.store
            .put_action(id, record, Guard::Is(ActionStatus::Running))
            .await?;
        if changed {
            let message = format!("waiting for {waiting_for}; asking every {wait} s");
            self.log(id, action_id, "info", &message).await?;
        }
        Ok(Some(ActionOutput::wait(wait)))
    }

    /// The longest wait between two calls of the action: a capped type's
    /// must stay well inside its slot's lease, which each call renews.
    fn longest_wait(&self, job: &Job) -> u32 {
        self.slots
            .as_ref()
            .and_then(|slots| slots.longest_wait(job.action.kind))
            .unwrap_or(u32::MAX)
    }

    /// Gives back the action's slot, if its type is capped. A failure only
    /// delays the next action until the lease expires, so it is logged,
    /// not raised.
    async fn give_back(&self, job: &Job) {
        let Some(slots) = &self.slots else {
            return;
        };
        if let Err(err) = slots.release(job.action.kind, &holder(job)).await {
            tracing::warn!(error = %err, "a concurrency slot was not given back; its lease will expire");
        }
    }

    /// Moves the outputs named secret into Secrets Manager: the request,
    /// its logs and the execution keep only their ARNs. A failure here is
    /// retried, and the retried call's answer replaces it.
    async fn keep_secrets(
        &self,
        id: &str,
        action_id: &str,
        secret: &[String],
        mut outputs: Map<String, Value>,
    ) -> Result<Map<String, Value>, ActionError> {
        for name in secret {
            let Some(value) = outputs.get(name) else {
                continue;
            };
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let arn = self
                .secrets
                .replace(&secret_name(id, action_id, name), &text)
                .await?;
            outputs.insert(name.clone(), Value::String(arn));
        }
        Ok(outputs)
    }

    /// Deletes (restorably, for a week) the secret outputs of an action
    /// that was undone: they describe something that no longer exists. A
    /// failure is logged for an operator rather than failing compensation,
    /// whose call has been made.
    async fn delete_secrets(&self, job: &Job, record: &ActionRecord) -> Result<(), ActionError> {
        let id = &job.request.id;
        let action_id = &job.action.id;
        // Those the record kept, and those the config names (records
        // written before the record kept them).
        let configured = job
            .action
            .config
            .get("secret_outputs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        let names: std::collections::BTreeSet<&str> = record
            .secret_outputs
            .iter()
            .map(String::as_str)
            .chain(configured)
            .collect();
        for name in names {
            let secret = secret_name(id, action_id, name);
            let (level, message) = match self.secrets.delete(&secret).await {
                Ok(()) => (
                    "info",
                    format!("secret output {name} scheduled for deletion (restorable for a week)"),
                ),
                Err(err) => (
                    "warn",
                    format!("secret output {name} not deleted ({err}): delete {secret} by hand"),
                ),
            };
            self.log(id, action_id, level, &message).await?;
        }
        Ok(())
    }

    /// Undoes an action: a succeeded one, one whose compensation was lost
    /// or is waiting for deletions, and a failed one that left resources in
    /// the ledger. Claimed first, so a cancellation and a failing execution
    /// never undo the same action at once.
    async fn compensate(
        &self,
        driver: &dyn Driver,
        job: &Job,
    ) -> Result<ActionOutput, ActionError> {
        let id = job.request.id.as_str();
        let action_id = job.action.id.as_str();
        let resources = self.resources(job).await?;
        let Some(mut record) = job
            .record()
            .filter(|r| r.compensable(!resources.is_empty()))
            .cloned()
        else {
            return match job.record().filter(|r| r.in_flight()) {
                Some(_) => Err(ActionError::Retryable(format!(
                    "{action_id} is being compensated by another execution"
                ))),
                None => Ok(ActionOutput::done(Map::new())),
            };
        };
        let claimed_from = record.status;
        // A compensation taken up again returns, if it must, to where the
        // first one started (a failed action stays Failed).
        let kept_as = match claimed_from {
            ActionStatus::Compensating => {
                record.compensating_from.unwrap_or(ActionStatus::Succeeded)
            }
            other => other,
        };
        record.compensating_from = Some(kept_as);
        record.status = ActionStatus::Compensating;
        record.attempt_started_at = Some(now());
        if !self
            .store
            .put_action(id, &record, Guard::Is(claimed_from))
            .await?
        {
            return Err(ActionError::Retryable(format!(
                "{action_id} was claimed by another execution meanwhile"
            )));
        }
        // Undoing is never held back by the cap; a slot the action held
        // while it was being made is given back.
        self.give_back(job).await;
        let context = job.context(&self.env);
        let journal = ActionJournal {
            lifecycle: self,
            request_id: id,
            action_id,
        };
        let step = Step {
            request: &job.request,
            action: &job.action,
            context: &context,
            resources: &resources,
            outputs: &record.outputs,
            journal: &journal,
            task_token: None,
            attempt: record.attempts,
        };
        let outcome = driver
            .compensate(&step)
            .await
            .map_err(|err| self.blank(err));
        let guard = Guard::Is(ActionStatus::Compensating);
        match outcome {
            Ok(Undone::Done(described)) => {
                record.status = ActionStatus::Compensated;
                record.finished_at = Some(now());
                record.waiting_for = None;
                record.compensating_from = None;
                self.store.put_action(id, &record, guard).await?;
                let message = format!("compensated: {described}");
                self.log(id, action_id, "info", &message).await?;
                self.delete_secrets(job, &record).await?;
                Ok(ActionOutput::done(Map::new()))
            }
            Ok(Undone::Kept(reason)) => {
                // Nothing PAO made is taken back: the action stays as it
                // was, and a retry does not repeat it.
                record.status = kept_as;
                record.compensating_from = None;
                self.store.put_action(id, &record, guard).await?;
                self.log(id, action_id, "info", &format!("kept: {reason}"))
                    .await?;
                Ok(ActionOutput::done(Map::new()))
            }
            Ok(Undone::Wait {
                seconds,
                waiting_for,
            }) => {
                // No call is under way while the state machine waits: the
                // next compensate call takes it up again.
                let wait = seconds.clamp(1, self.max_wait_seconds);
                let changed = record.waiting_for.as_deref() != Some(waiting_for.as_str());
                record.attempt_started_at = None;
                record.waiting_for = Some(waiting_for.clone());
                self.store.put_action(id, &record, guard).await?;
                if changed {
                    let message = format!("compensating: waiting for {waiting_for}");
                    self.log(id, action_id, "info", &message).await?;
                }
                Ok(ActionOutput::wait(wait))
            }
            Err(err) => {
                // Back as it was, so the state machine's retry can claim it again.
                record.status = kept_as;
                record.compensating_from = None;
                self.store.put_action(id, &record, guard).await?;
                let message = format!("compensation failed: {err}");
                self.log(id, action_id, "error", &message).await?;
                Err(err)
            }
        }
    }

    /// The error with every secret of the env namespace blanked: a message
    /// of Tera's or serde's may quote the value it could not use.
    fn blank(&self, err: ActionError) -> ActionError {
        err.map_message(|message| redact(message, self.env.secret_values()))
    }

    async fn log(
        &self,
        id: &str,
        source: &str,
        level: &str,
        message: &str,
    ) -> Result<(), ActionError> {
        let entry = LogEntry {
            at: now(),
            source: source.to_string(),
            level: level.to_string(),
            message: redact(message, self.env.secret_values()),
        };
        Ok(self.store.append_log(id, &entry).await?)
    }
}

/// Who holds a concurrency slot: the request's action.
fn holder(job: &Job) -> String {
    format!("{}#{}", job.request.id, job.action.id)
}

/// Where the secret output `output` of a request's action is kept.
fn secret_name(id: &str, action_id: &str, output: &str) -> String {
    format!("pao/requests/{id}/actions/{action_id}/{output}")
}

/// The wait before attempt `attempt + 1`, or `None` when the policy allows
/// no more: `interval × rate^(attempt-1)`, doubled when throttled, with
/// jitter of up to a quarter either way, at least 1 s.
pub fn backoff(policy: &Retry, attempt: u32, throttled: bool) -> Option<u32> {
    if attempt >= policy.max_attempts {
        return None;
    }
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let mut wait = f64::from(policy.interval_seconds) * policy.backoff_rate.powi(exponent);
    if throttled {
        wait *= 2.0;
    }
    let jitter = 0.75 + 0.5 * (f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0);
    let wait = (wait * jitter).clamp(1.0, 3600.0);
    Some(wait.round() as u32)
}

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod tests;
