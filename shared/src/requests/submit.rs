//! Submitting, reading and cancelling requests: the rules a developer's
//! request goes through, over the ports of `requests`.
//!
//! A submission is idempotent. With an `Idempotency-Key`, the request id is
//! derived from the caller and the key, so every retry — also many at once —
//! names the same request; each then runs the same idempotent steps (create
//! if absent, start the execution named after the request, move it to
//! Queued if not there yet) and answers with the one request. The key's
//! record keeps the payload's hash: the same key with another payload is
//! refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonschema::Validator;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::fields::{self, FieldError};
use super::fulfilment::Plan;
use super::ticket::{Delivery, IssueEvent};
use super::{
    AuditEntry, IdempotencyRecord, ListError, ListQuery, LogEntry, Page, Request, RequestStatus,
    RequestStore, Requester, SecretStore, Transition, TransitionError, Workflow,
};
use crate::auth::Principal;
use crate::catalog::index::{CatalogStore, PublishedItem, StoreError};
use crate::catalog::item::is_item_id;
use crate::clock::now;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    NotFound(String),
    #[error("the fields are not valid")]
    InvalidFields(Vec<FieldError>),
    #[error("this Idempotency-Key was used with a different request body")]
    KeyReused,
    #[error("the request is {0}; it can no longer be cancelled")]
    Finished(RequestStatus),
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ListError> for RequestError {
    fn from(err: ListError) -> Self {
        match err {
            ListError::BadToken => {
                Self::BadInput("the page token is not valid for this listing".to_string())
            }
            ListError::Store(err) => Self::Store(err),
        }
    }
}

pub struct Submission {
    pub item_id: String,
    pub fields: Value,
    pub idempotency_key: Option<String>,
}

pub struct Requests {
    store: Arc<dyn RequestStore>,
    catalog: Arc<dyn CatalogStore>,
    secrets: Arc<dyn SecretStore>,
    workflow: Arc<dyn Workflow>,
    admin_group: String,
    /// Compiled form validators by item content hash.
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

impl Requests {
    pub fn new(
        store: Arc<dyn RequestStore>,
        catalog: Arc<dyn CatalogStore>,
        secrets: Arc<dyn SecretStore>,
        workflow: Arc<dyn Workflow>,
        admin_group: impl Into<String>,
    ) -> Self {
        Self {
            store,
            catalog,
            secrets,
            workflow,
            admin_group: admin_group.into(),
            validators: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_admin(&self, caller: &Principal) -> bool {
        caller.in_group(&self.admin_group)
    }

    #[tracing::instrument(skip_all, fields(item_id = %submission.item_id))]
    pub async fn submit(
        &self,
        caller: &Principal,
        submission: Submission,
    ) -> Result<Request, RequestError> {
        let published = self.item(caller, &submission.item_id).await?;
        let validator = self.validator(&published)?;
        let values = fields::check(&published.item, &validator, &submission.fields)
            .map_err(RequestError::InvalidFields)?;
        // Password fields are left out of the hash, so nothing derived from
        // a password is stored: a retry that changes only a password is the
        // same request.
        let mut hashed = values.clone();
        for (field, _) in fields::passwords(&published.item, &values) {
            hashed.remove(field);
        }
        let payload_hash = hash(&json!({"item_id": submission.item_id, "fields": hashed}));
        let id = match &submission.idempotency_key {
            Some(key) => {
                let id = derived_id(&caller.subject, key);
                let record = IdempotencyRecord {
                    payload_hash: payload_hash.clone(),
                    request_id: id.clone(),
                };
                let standing = self
                    .store
                    .claim_idempotency_key(&format!("{}#{key}", caller.subject), &record)
                    .await?;
                if standing.payload_hash != payload_hash {
                    return Err(RequestError::KeyReused);
                }
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        let mut stored = values.clone();
        let mut secret_fields = Vec::new();
        for (field, value) in fields::passwords(&published.item, &values) {
            let arn = self
                .secrets
                .put(&format!("pao/requests/{id}/{field}"), value)
                .await?;
            stored.insert(field.to_string(), Value::String(arn));
            secret_fields.push(field.to_string());
        }
        let at = now();
        let request = Request {
            id: id.clone(),
            item_id: published.item.header.id.clone(),
            item_version: published.item.header.version.clone(),
            item_hash: published.content_hash.clone(),
            requester: Requester {
                subject: caller.subject.clone(),
                email: caller.email.clone(),
            },
            // The fields were validated before anything was written, so the
            // request is created at Validated, with both steps audited.
            status: RequestStatus::Validated,
            version: 1,
            fields: stored,
            secret_fields,
            actions: published
                .item
                .actions()
                .iter()
                .map(|a| (a.id.clone(), "pending".to_string()))
                .collect(),
            execution_arn: None,
            reason: None,
            created_at: at.clone(),
            updated_at: at.clone(),
        };
        let audit = [
            AuditEntry {
                at: at.clone(),
                actor: caller.email.clone(),
                from: None,
                to: RequestStatus::Submitted,
                reason: None,
            },
            AuditEntry {
                at: at.clone(),
                actor: caller.email.clone(),
                from: Some(RequestStatus::Submitted),
                to: RequestStatus::Validated,
                reason: None,
            },
        ];
        let log = LogEntry {
            at: at.clone(),
            source: "api".to_string(),
            level: "info".to_string(),
            message: format!(
                "submitted by {} against {} {}",
                caller.email, request.item_id, request.item_version
            ),
        };
        // A concurrent duplicate may have created it first: then it is read.
        let plan = Plan::of(&published.item);
        let created = self.store.create(&request, &plan, &audit, &log).await?;
        tracing::info!(request_id = %id, created, "request recorded");
        let known = created.then_some(request);
        self.queue(&id, known, caller, submission.idempotency_key.is_some())
            .await
    }

    /// Starts the execution of a Validated request and moves it to Queued;
    /// a request already past Validated is returned as it is.
    async fn queue(
        &self,
        id: &str,
        mut known: Option<Request>,
        caller: &Principal,
        retriable: bool,
    ) -> Result<Request, RequestError> {
        for _ in 0..3 {
            let request = match known.take() {
                Some(request) => request,
                None => self.get_any(id).await?,
            };
            if request.status != RequestStatus::Validated {
                return Ok(request);
            }
            let input = json!({ "request_id": id, "rollback": false }).to_string();
            let arn = match self.workflow.start(id, &input).await {
                Ok(arn) => arn,
                Err(err) => {
                    if !retriable {
                        // Without a key nobody can retry this request: fail it visibly.
                        let change = self.change(
                            &request,
                            RequestStatus::Failed,
                            caller,
                            Some("fulfilment could not be started"),
                        );
                        let _ = self.store.transition(&request, &change).await;
                    }
                    return Err(err.into());
                }
            };
            let mut change = self.change(&request, RequestStatus::Queued, caller, None);
            change.execution_arn = Some(arn);
            match self.store.transition(&request, &change).await {
                Ok(request) => return Ok(request),
                Err(TransitionError::Conflict { .. }) => continue,
                Err(TransitionError::Store(err)) => return Err(err.into()),
                Err(err) => return Err(RequestError::Store(StoreError::Corrupt(err.to_string()))),
            }
        }
        self.get_any(id).await
    }

    fn change(
        &self,
        request: &Request,
        to: RequestStatus,
        caller: &Principal,
        reason: Option<&str>,
    ) -> Transition {
        Transition {
            from: request.status,
            version: request.version,
            to,
            actor: caller.email.clone(),
            reason: reason.map(str::to_string),
            execution_arn: None,
            at: now(),
        }
    }

    /// The published item, if the caller may see it.
    async fn item(&self, caller: &Principal, item_id: &str) -> Result<PublishedItem, RequestError> {
        self.published(item_id)
            .await?
            .filter(|published| published.item.visible_to(caller, &self.admin_group))
            .ok_or_else(|| RequestError::NotFound(format!("no catalog item `{item_id}`")))
    }

    /// The item as published now (one consistent read: the same cost as
    /// checking a cached copy against the catalog's generation), so a
    /// submission is never checked against an older version than the form
    /// the catalog served. Compiled validators are kept by content hash.
    async fn published(&self, item_id: &str) -> Result<Option<PublishedItem>, StoreError> {
        if !is_item_id(item_id) {
            return Ok(None);
        }
        self.catalog.published_item(item_id).await
    }

    fn validator(&self, published: &PublishedItem) -> Result<Arc<Validator>, RequestError> {
        let mut cache = self.validators.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(validator) = cache.get(&published.content_hash) {
            return Ok(Arc::clone(validator));
        }
        let validator = fields::compile(&published.item)
            .map(Arc::new)
            .map_err(|err| {
                RequestError::Store(StoreError::Corrupt(format!("form does not compile: {err}")))
            })?;
        cache.insert(published.content_hash.clone(), Arc::clone(&validator));
        Ok(validator)
    }

    async fn get_any(&self, id: &str) -> Result<Request, RequestError> {
        self.lookup(id).await?.ok_or_else(|| unknown(id))
    }

    /// A request the caller may see: their own, or any for an admin.
    /// Someone else's request is "not found", not "forbidden".
    pub async fn get(&self, caller: &Principal, id: &str) -> Result<Request, RequestError> {
        self.lookup(id)
            .await?
            .filter(|r| r.requester.subject == caller.subject || self.is_admin(caller))
            .ok_or_else(|| unknown(id))
    }

    /// The request `id` names. PAO's ids are UUIDs: anything else names no
    /// request, without asking the table (which refuses oversized keys).
    async fn lookup(&self, id: &str) -> Result<Option<Request>, RequestError> {
        let plausible = (1..=64).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !plausible {
            return Ok(None);
        }
        Ok(self.store.get(id).await?)
    }

    pub async fn list(
        &self,
        caller: &Principal,
        mut query: ListQuery,
    ) -> Result<Page, RequestError> {
        if !self.is_admin(caller) {
            query.subject = Some(caller.subject.clone());
        }
        Ok(self.store.list(&query).await?)
    }

    pub async fn logs(&self, caller: &Principal, id: &str) -> Result<Vec<LogEntry>, RequestError> {
        self.get(caller, id).await?;
        Ok(self.store.logs(id).await?)
    }

    pub async fn audit(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<Vec<AuditEntry>, RequestError> {
        self.get(caller, id).await?;
        Ok(self.store.audit(id).await?)
    }

    /// Each action of the request's plan with its record: status (Pending
    /// before it starts), attempts, outputs, last error.
    pub async fn actions(&self, caller: &Principal, id: &str) -> Result<Vec<Value>, RequestError> {
        self.get(caller, id).await?;
        let plan = self.store.plan(id).await?;
        let records = self.store.actions(id).await?;
        // The plan's actions in catalog order, then any other record (the
        // ticket of a manual request).
        let mut ids: Vec<String> = plan
            .iter()
            .flat_map(|plan| plan.actions.iter().map(|a| a.id.clone()))
            .collect();
        for record in &records {
            if !ids.contains(&record.action_id) {
                ids.push(record.action_id.clone());
            }
        }
        Ok(ids
            .into_iter()
            .map(|action_id| match records.iter().find(|r| r.action_id == action_id) {
                Some(record) => json!({
                    "id": action_id, "status": record.status.name(), "attempts": record.attempts,
                    "outputs": record.outputs, "error": record.error,
                }),
                None => json!({"id": action_id, "status": "Pending", "attempts": 0, "outputs": {}, "error": null}),
            })
            .collect())
    }

    /// A new attempt of a Failed request: a new execution whose plan leaves
    /// out the actions that succeeded. Asking again while that attempt is
    /// queued or running answers with the request as it is.
    pub async fn retry(&self, caller: &Principal, id: &str) -> Result<Request, RequestError> {
        self.restart(
            caller,
            id,
            RequestStatus::Failed,
            RequestStatus::Queued,
            "retry",
        )
        .await
    }

    /// Compensates a Completed or Failed request's succeeded actions, newest
    /// first, then RolledBack. Asking again while it rolls back answers with
    /// the request as it is.
    pub async fn rollback(&self, caller: &Principal, id: &str) -> Result<Request, RequestError> {
        let request = self.get(caller, id).await?;
        let from = match request.status {
            RequestStatus::Failed => RequestStatus::Failed,
            _ => RequestStatus::Completed,
        };
        self.restart(caller, id, from, RequestStatus::RollingBack, "rollback")
            .await
    }

    /// Moves the request from `from` to `to`, then starts its execution
    /// `{id}-{what}-v{version}`. The status is written first, naming the
    /// execution to come, so of two changes racing (a retry and a rollback)
    /// only the winner starts anything. A repeated call starts the same
    /// name again, which starts nothing new but makes up for a start that
    /// failed after the status was written.
    async fn restart(
        &self,
        caller: &Principal,
        id: &str,
        from: RequestStatus,
        to: RequestStatus,
        what: &str,
    ) -> Result<Request, RequestError> {
        for _ in 0..3 {
            let request = self.get(caller, id).await?;
            let in_flight = match to {
                RequestStatus::Queued => {
                    matches!(
                        request.status,
                        RequestStatus::Queued | RequestStatus::InProgress
                    )
                }
                _ => request.status == to,
            };
            let input =
                json!({"request_id": id, "rollback": to == RequestStatus::RollingBack}).to_string();
            let started = request
                .execution_arn
                .as_deref()
                .and_then(|arn| arn.rsplit(':').next())
                .filter(|name| name.starts_with(&format!("{id}-{what}-")));
            if let (true, Some(name)) = (in_flight, started) {
                self.workflow.start(name, &input).await?;
                return Ok(request);
            }
            if request.status != from {
                return Err(RequestError::Finished(request.status));
            }
            let name = format!("{id}-{what}-v{}", request.version);
            let mut change = self.change(
                &request,
                to,
                caller,
                Some(&format!("{what} asked by {}", caller.email)),
            );
            change.execution_arn = Some(self.workflow.execution_arn(&name));
            match self.store.transition(&request, &change).await {
                Ok(request) => {
                    self.workflow.start(&name, &input).await?;
                    self.log(
                        id,
                        "api",
                        "info",
                        format!("{what} asked by {}", caller.email),
                    )
                    .await?;
                    return Ok(request);
                }
                Err(TransitionError::Conflict { .. }) => continue,
                Err(err) => return Err(refused(err, id)),
            }
        }
        self.get(caller, id).await
    }

    /// A JIRA issue of a manual request changed (the signature is checked
    /// by the caller): resume the request waiting on it.
    pub async fn ticket_changed(&self, event: &IssueEvent) -> Result<Delivery, RequestError> {
        Ok(super::ticket::deliver(self.store.as_ref(), self.workflow.as_ref(), event).await?)
    }

    /// Stops the request's execution and marks it Cancelled.
    pub async fn cancel(&self, caller: &Principal, id: &str) -> Result<Request, RequestError> {
        for _ in 0..3 {
            let request = self.get(caller, id).await?;
            let undo = json!({"request_id": id, "rollback": true}).to_string();
            if request.status == RequestStatus::Cancelled {
                // Asked again: its compensation is started again too, in
                // case the first start failed (the same name starts
                // nothing new).
                self.workflow.start(&format!("{id}-cancel"), &undo).await?;
            }
            // Checked before anything is stopped: a request being rolled
            // back is not cancelled, and its rollback goes on.
            if !request.status.can_become(RequestStatus::Cancelled) {
                return Err(RequestError::Finished(request.status));
            }
            if let Some(arn) = &request.execution_arn {
                self.workflow
                    .stop(arn, &format!("cancelled by {}", caller.email))
                    .await?;
            }
            let change = self.change(
                &request,
                RequestStatus::Cancelled,
                caller,
                Some("cancelled by the requester"),
            );
            match self.store.transition(&request, &change).await {
                Ok(request) => {
                    self.log(id, "api", "info", format!("cancelled by {}", caller.email))
                        .await?;
                    // What the stopped execution made is undone by one of
                    // its own: it waits for a running action to end first.
                    self.workflow.start(&format!("{id}-cancel"), &undo).await?;
                    return Ok(request);
                }
                // The engine moved it meanwhile: look again.
                Err(TransitionError::Conflict { .. }) => continue,
                Err(err) => return Err(refused(err, id)),
            }
        }
        let request = self.get(caller, id).await?;
        Err(RequestError::Finished(request.status))
    }

    async fn log(
        &self,
        id: &str,
        source: &str,
        level: &str,
        message: String,
    ) -> Result<(), StoreError> {
        self.store
            .append_log(
                id,
                &LogEntry {
                    at: now(),
                    source: source.to_string(),
                    level: level.to_string(),
                    message,
                },
            )
            .await
    }
}

/// A transition the store refused, in the API's terms.
fn refused(err: TransitionError, id: &str) -> RequestError {
    match err {
        TransitionError::NotAllowed { from, .. } => RequestError::Finished(from),
        TransitionError::Conflict { current } => RequestError::Finished(current),
        TransitionError::NotFound => unknown(id),
        TransitionError::Store(err) => err.into(),
    }
}

/// "No such request", quoting the id only when it is short.
fn unknown(id: &str) -> RequestError {
    if id.len() <= 64 {
        RequestError::NotFound(format!("no request `{id}`"))
    } else {
        RequestError::NotFound("no request has that id".to_string())
    }
}

fn hash(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical(value).to_string().as_bytes()))
}

/// `value` with every object's keys in order, so equal payloads serialize
/// equally whether or not serde_json keeps insertion order (a feature any
/// dependency may switch on).
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.clone(), canonical(value)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// The request id an idempotency key names, for one caller.
fn derived_id(subject: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{subject}\n{key}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_one_request_per_caller() {
        assert_eq!(derived_id("u1", "k"), derived_id("u1", "k"));
        assert_ne!(derived_id("u1", "k"), derived_id("u2", "k"));
        assert_ne!(derived_id("u1", "k"), derived_id("u1", "k2"));
    }

    #[test]
    fn equal_payloads_hash_equally_whatever_the_key_order() {
        let a: Value = serde_json::from_str(r#"{"b": 1, "a": {"y": 2, "x": 3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a": {"x": 3, "y": 2}, "b": 1}"#).unwrap();
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(hash(&a), hash(&json!({"b": 2})));
    }
}
