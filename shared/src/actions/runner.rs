//! The action contract carried out for the HTTP actions (rest-api,
//! webhook): `{request_id, action_id, op, attempt}` in, `{done,
//! wait_seconds, outputs}` out. The config is rendered at run time from the
//! request and the outputs of the actions before; every start, success,
//! failure and compensation is recorded on the request (its action record is
//! also the resource ledger) and logged there.
//!
//! Retries follow the action's own `retry` policy from the catalog: a
//! retryable failure answers "not done, wait N seconds" with exponential
//! backoff and jitter, so the state machine waits and polls, and the poll
//! tries again; past `max_attempts` the failure is fatal. The state
//! machine's own `Retry` covers failures of the function itself.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::http::{self, Kind};
use super::jira::Jira;
use crate::action::{ActionError, ActionInput, ActionOutput, Op};
use crate::catalog::item::{Action, ActionType, Mode, Retry};
use crate::clock::{now, seconds_since};
use crate::outbound::{AllowList, Egress};
use crate::requests::fulfilment::{responses, ActionRecord, ActionStatus, Plan};
use crate::requests::{Guard, LogEntry, Request, RequestStatus, RequestStore, SecretStore};
use crate::template::render::{redact, Context, RequestVars, TemplateEnv};

pub struct Runner {
    store: Arc<dyn RequestStore>,
    secrets: Arc<dyn SecretStore>,
    egress: Egress,
    env: TemplateEnv,
    jira: Option<Jira>,
}

/// The action id of a manual request's ticket.
pub const TICKET: &str = "ticket";

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
}

fn kind_of(action: &Action) -> Result<Kind, ActionError> {
    match action.kind {
        ActionType::RestApi => Ok(Kind::RestApi),
        ActionType::Webhook => Ok(Kind::Webhook),
        other => Err(ActionError::Fatal(format!(
            "the HTTP action function does not run {} actions",
            other.name()
        ))),
    }
}

impl Runner {
    pub fn new(
        store: Arc<dyn RequestStore>,
        secrets: Arc<dyn SecretStore>,
        egress: Egress,
        env: TemplateEnv,
        jira: Option<Jira>,
    ) -> Self {
        Self {
            store,
            secrets,
            egress,
            env,
            jira,
        }
    }

    /// Reads the configuration and builds the clients, once per process.
    pub async fn from_env() -> Result<Self, crate::config::ConfigError> {
        let env = crate::config::Env::process();
        let table = env.required("PAO_REQUESTS_TABLE")?;
        let allow = AllowList::parse(&env.or(AllowList::VARIABLE, ""))?;
        let template_env = TemplateEnv::from_env(|name| std::env::var(name).ok())?;
        let sdk = crate::aws::sdk_config().await;
        let store = crate::aws::requests_table::RequestTable::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            table,
        );
        let secrets = crate::aws::secrets::Secrets::new(aws_sdk_secretsmanager::Client::new(&sdk));
        let egress = Egress::new(allow).map_err(|err| crate::config::ConfigError::Invalid {
            name: AllowList::VARIABLE,
            reason: format!("the guarded HTTP client cannot be built: {err}"),
        })?;
        let jira = Jira::from_env(&env, egress.clone())?;
        Ok(Self::new(
            Arc::new(store),
            Arc::new(secrets),
            egress,
            template_env,
            jira,
        ))
    }

    #[tracing::instrument(skip(self, input), fields(request_id = %input.request_id, action_id = %input.action_id, op = ?input.op))]
    pub async fn run(&self, input: ActionInput) -> Result<ActionOutput, ActionError> {
        if input.action_id == TICKET {
            return self.ticket(input).await;
        }
        let job = self.job(&input).await?;
        match input.op {
            Op::Start | Op::Poll => self.advance(job).await,
            Op::Compensate => self.compensate(job).await,
        }
    }

    async fn job(&self, input: &ActionInput) -> Result<Job, ActionError> {
        let id = &input.request_id;
        let request = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ActionError::Fatal(format!("request {id} does not exist")))?;
        if request.status == RequestStatus::Cancelled && input.op != Op::Compensate {
            return Err(ActionError::Fatal("the request was cancelled".to_string()));
        }
        let plan =
            self.store.plan(id).await?.ok_or_else(|| {
                ActionError::Fatal(format!("request {id} has no fulfilment plan"))
            })?;
        let action = plan.action(&input.action_id).cloned().ok_or_else(|| {
            ActionError::Fatal(format!("the plan has no action {}", input.action_id))
        })?;
        let records = self.store.actions(id).await?;
        Ok(Job {
            request,
            plan,
            action,
            records,
        })
    }

    /// Start, or poll: runs the call unless it succeeded already (a
    /// repeated start answers with the recorded outputs).
    async fn advance(&self, job: Job) -> Result<ActionOutput, ActionError> {
        let previous = job.record().cloned();
        if let Some(done) = previous
            .as_ref()
            .filter(|r| r.status == ActionStatus::Succeeded)
        {
            return Ok(ActionOutput::done(done.outputs.clone()));
        }
        let kind = kind_of(&job.action)?;
        let id = job.request.id.clone();
        let action_id = job.action.id.clone();
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
                self.store
                    .put_action(&id, &failed, Guard::Is(ActionStatus::Running))
                    .await?;
                self.log(&id, &action_id, "error", &message).await?;
                return Err(ActionError::Fatal(format!("{action_id}: {message}")));
            }
        }
        // Each run of the action (a retry of the request is a new run) has
        // the whole of its retry policy.
        let attempt = running.map_or(0, |r| r.attempts) + 1;
        let mut record = ActionRecord {
            action_id: action_id.clone(),
            kind: job.action.kind,
            status: ActionStatus::Running,
            attempts: attempt,
            outputs: Map::new(),
            error: None,
            started_at: running.map_or_else(now, |r| r.started_at.clone()),
            finished_at: None,
            attempt_started_at: Some(now()),
        };
        if !self
            .store
            .put_action(&id, &record, Guard::Not(ActionStatus::Succeeded))
            .await?
        {
            // Succeeded meanwhile (a duplicate delivery): answer as it did.
            let records = self.store.actions(&id).await?;
            let outputs = responses(&records)
                .get(&action_id)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            return Ok(ActionOutput::done(outputs));
        }
        let context = job.context(&self.env);
        let config = Value::Object(job.action.config.clone());
        let redact: Vec<&str> = self.env.secret_values().collect();
        let outcome = match http::prepare(kind, &config, &context) {
            Ok(prepared) => {
                let described = prepared.describe();
                self.log(
                    &id,
                    &action_id,
                    "info",
                    &format!("attempt {attempt}: {described}"),
                )
                .await?;
                let secret = prepared.secret_outputs().to_vec();
                match http::execute(&self.egress, prepared, &redact).await {
                    Ok(outputs) => self.keep_secrets(&id, &action_id, &secret, outputs).await,
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err),
        }
        .map_err(|err| self.blank(err));
        record.finished_at = Some(now());
        match outcome {
            Ok(outputs) => {
                record.status = ActionStatus::Succeeded;
                record.outputs = outputs.clone();
                self.store
                    .put_action(&id, &record, Guard::Is(ActionStatus::Running))
                    .await?;
                self.log(&id, &action_id, "info", "succeeded").await?;
                Ok(ActionOutput::done(outputs))
            }
            Err(err) => {
                let policy = job.action.retry.clone().unwrap_or_default();
                let retry = match &err {
                    ActionError::Fatal(_) => None,
                    ActionError::Retryable(_) | ActionError::Throttled(_) => {
                        backoff(&policy, attempt, matches!(err, ActionError::Throttled(_)))
                    }
                };
                record.status = if retry.is_some() {
                    ActionStatus::Running
                } else {
                    ActionStatus::Failed
                };
                record.error = Some(err.to_string());
                self.store
                    .put_action(&id, &record, Guard::Is(ActionStatus::Running))
                    .await?;
                match retry {
                    Some(wait) => {
                        self.log(
                            &id,
                            &action_id,
                            "warn",
                            &format!("{err}; trying again in {wait} s"),
                        )
                        .await?;
                        Ok(ActionOutput {
                            done: false,
                            wait_seconds: Some(wait),
                            outputs: Map::new(),
                        })
                    }
                    None => {
                        let message = if matches!(err, ActionError::Fatal(_)) {
                            err.to_string()
                        } else {
                            format!("gave up after {attempt} attempts: {err}")
                        };
                        self.log(&id, &action_id, "error", &message).await?;
                        Err(ActionError::Fatal(format!("{action_id}: {message}")))
                    }
                }
            }
        }
    }

    /// Moves the outputs named by `secret_outputs` into Secrets Manager:
    /// the request, its logs and the execution keep only their ARNs. A
    /// failure here is retried, and the retried call's answer replaces it.
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
    async fn delete_secrets(&self, job: &Job) -> Result<(), ActionError> {
        let id = &job.request.id;
        let action_id = &job.action.id;
        let names = job
            .action
            .config
            .get("secret_outputs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
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

    /// Undoes a succeeded action with its `rollback` call, which may read the
    /// action's own outputs as `response.<action_id>.*`. Claimed first, so a
    /// cancellation and a failing execution never undo the same action twice.
    async fn compensate(&self, job: Job) -> Result<ActionOutput, ActionError> {
        let id = job.request.id.clone();
        let action_id = job.action.id.clone();
        // A compensation another execution began is waited for; one whose
        // function died on the way is taken over.
        let Some(mut record) = job
            .record()
            .filter(|r| {
                r.status == ActionStatus::Succeeded
                    || (r.status == ActionStatus::Compensating && r.lost())
            })
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
        record.status = ActionStatus::Compensating;
        record.attempt_started_at = Some(now());
        if !self
            .store
            .put_action(&id, &record, Guard::Is(claimed_from))
            .await?
        {
            return Err(ActionError::Retryable(format!(
                "{action_id} was claimed by another execution meanwhile"
            )));
        }
        let Some(rollback) = &job.action.rollback else {
            // Nothing PAO made can be taken back (a notification, a
            // read): the action stays done, and a retry does not repeat it.
            record.status = ActionStatus::Succeeded;
            self.store
                .put_action(&id, &record, Guard::Is(ActionStatus::Compensating))
                .await?;
            self.log(&id, &action_id, "info", "kept: the action has no rollback")
                .await?;
            return Ok(ActionOutput::done(Map::new()));
        };
        let kind = kind_of(&job.action)?;
        let config = Value::Object(rollback.clone());
        let redact: Vec<&str> = self.env.secret_values().collect();
        let outcome = match http::prepare(kind, &config, &job.context(&self.env)) {
            Ok(prepared) => {
                let described = prepared.describe();
                http::execute(&self.egress, prepared, &redact)
                    .await
                    .map(|_| described)
            }
            Err(err) => Err(err),
        }
        .map_err(|err| self.blank(err));
        match outcome {
            Ok(described) => {
                record.status = ActionStatus::Compensated;
                record.finished_at = Some(now());
                self.store
                    .put_action(&id, &record, Guard::Is(ActionStatus::Compensating))
                    .await?;
                self.log(
                    &id,
                    &action_id,
                    "info",
                    &format!("compensated: {described}"),
                )
                .await?;
                self.delete_secrets(&job).await?;
                Ok(ActionOutput::done(Map::new()))
            }
            Err(err) => {
                // Back to Succeeded, so the state machine's retry can claim it again.
                record.status = ActionStatus::Succeeded;
                self.store
                    .put_action(&id, &record, Guard::Is(ActionStatus::Compensating))
                    .await?;
                self.log(
                    &id,
                    &action_id,
                    "error",
                    &format!("compensation failed: {err}"),
                )
                .await?;
                Err(err)
            }
        }
    }

    /// A manual request: opens its JIRA issue (once, however often the step
    /// is retried) and keeps the task token, which the JIRA webhook resumes.
    /// Compensation comments on the issue that it is no longer needed.
    async fn ticket(&self, input: ActionInput) -> Result<ActionOutput, ActionError> {
        let id = input.request_id.as_str();
        let request = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ActionError::Fatal(format!("request {id} does not exist")))?;
        let plan =
            self.store.plan(id).await?.ok_or_else(|| {
                ActionError::Fatal(format!("request {id} has no fulfilment plan"))
            })?;
        if plan.mode != Mode::Manual {
            return Err(ActionError::Fatal(
                "an automated item never falls back to a manual ticket".to_string(),
            ));
        }
        let records = self.store.actions(id).await?;
        let record = records.iter().find(|r| r.action_id == TICKET).cloned();
        let jira = self.jira.as_ref().ok_or_else(|| {
            ActionError::Fatal(
                "no JIRA is configured (PAO_JIRA_URL), so no ticket can be opened".to_string(),
            )
        })?;
        let job = Job {
            request,
            plan,
            action: Action {
                id: TICKET.to_string(),
                kind: ActionType::JiraTicket,
                depends_on: Vec::new(),
                when: None,
                config: Map::new(),
                retry: None,
                timeout_seconds: None,
                rollback: None,
            },
            records,
        };
        if input.op == Op::Compensate {
            let Some(mut record) = record.filter(|r| r.status == ActionStatus::Succeeded) else {
                return Ok(ActionOutput::done(Map::new()));
            };
            // Claimed first, so a cancellation and a failing execution do
            // not both comment.
            record.status = ActionStatus::Compensating;
            record.attempt_started_at = Some(now());
            if !self
                .store
                .put_action(id, &record, Guard::Is(ActionStatus::Succeeded))
                .await?
            {
                return Ok(ActionOutput::done(Map::new()));
            }
            let key = record
                .outputs
                .get("issue_key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let note = format!(
                "PAO request {id} ended ({}); this ticket is no longer needed.",
                job.request.status
            );
            if let Err(err) = jira.comment(&key, &note).await.map_err(|e| self.blank(e)) {
                // Back to Succeeded, so the state machine's retry can claim it again.
                record.status = ActionStatus::Succeeded;
                self.store
                    .put_action(id, &record, Guard::Is(ActionStatus::Compensating))
                    .await?;
                return Err(err);
            }
            record.status = ActionStatus::Compensated;
            record.finished_at = Some(now());
            self.store
                .put_action(id, &record, Guard::Is(ActionStatus::Compensating))
                .await?;
            self.log(
                id,
                TICKET,
                "info",
                &format!("commented on {key}: no longer needed"),
            )
            .await?;
            return Ok(ActionOutput::done(Map::new()));
        }
        if job.request.status == RequestStatus::Cancelled {
            return Err(ActionError::Fatal("the request was cancelled".to_string()));
        }
        let token = input.task_token.ok_or_else(|| {
            ActionError::Fatal("the ticket step needs its task token".to_string())
        })?;
        let outputs = match record.filter(|r| r.status == ActionStatus::Succeeded) {
            Some(done) => done.outputs,
            None => {
                let context = job.context(&self.env);
                let issue = jira
                    .create(&job.plan.manual.jira, &context)
                    .await
                    .map_err(|err| self.blank(err))?;
                let mut outputs = Map::new();
                outputs.insert("issue_key".into(), Value::String(issue.key.clone()));
                outputs.insert("issue_url".into(), Value::String(issue.url.clone()));
                let at = now();
                let record = ActionRecord {
                    action_id: TICKET.to_string(),
                    kind: ActionType::JiraTicket,
                    status: ActionStatus::Succeeded,
                    attempts: 1,
                    outputs: outputs.clone(),
                    error: None,
                    started_at: at.clone(),
                    finished_at: Some(at),
                    attempt_started_at: None,
                };
                self.store
                    .put_action(id, &record, Guard::Not(ActionStatus::Succeeded))
                    .await?;
                self.store.save_ticket(&issue.key, id).await?;
                self.log(
                    id,
                    TICKET,
                    "info",
                    &format!("JIRA issue {} opened: {}", issue.key, issue.url),
                )
                .await?;
                outputs
            }
        };
        self.store.save_task_token(id, &token).await?;
        self.log(
            id,
            TICKET,
            "info",
            "waiting for the platform team to resolve the issue",
        )
        .await?;
        Ok(ActionOutput::done(outputs))
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
            message: message.to_string(),
        };
        Ok(self.store.append_log(id, &entry).await?)
    }
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
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stops_at_the_policy_limit() {
        let policy = Retry {
            max_attempts: 4,
            interval_seconds: 10,
            backoff_rate: 2.0,
        };
        let waits: Vec<u32> = (1..=3)
            .map(|attempt| backoff(&policy, attempt, false).unwrap())
            .collect();
        for (wait, base) in waits.iter().zip([10.0, 20.0, 40.0]) {
            assert!(
                (base * 0.75..=base * 1.25).contains(&f64::from(*wait)),
                "{waits:?}"
            );
        }
        assert_eq!(backoff(&policy, 4, false), None);
        let throttled = backoff(&policy, 1, true).unwrap();
        assert!((15..=25).contains(&throttled), "{throttled}");
    }
}
