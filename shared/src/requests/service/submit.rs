//! Submitting a request.
//!
//! A submission is idempotent. With an `Idempotency-Key`, the request id is
//! derived from the caller and the key, so every retry — also many at once —
//! names the same request; each then runs the same idempotent steps (create
//! if absent, start the execution named after the request, move it to
//! Queued if not there yet) and answers with the one request. The key's
//! record keeps the payload's hash: the same key with another payload is
//! refused.
//!
//! Only a submission that would make a new request counts against the
//! caller's submission limit: it is counted after the fields are checked
//! and the key's record says this is no replay of a request made already,
//! before anything of the request is written. The limit counts a request id
//! once, so retries of one key in flight at once spend one unit. A refused
//! submission leaves its key bound to its body, as any use of a key does:
//! its retry after `Retry-After` sends the same body.

use std::sync::Arc;

use jsonschema::Validator;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::auth::Principal;
use crate::catalog::index::{PublishedItem, StoreError};
use crate::catalog::item::is_item_id;
use crate::clock::now;
use crate::requests::fields;
use crate::requests::fulfillment::Plan;
use crate::requests::limit::Admission;
use crate::requests::{
    AuditEntry, IdempotencyRecord, LogEntry, Request, RequestStatus, Requester, Transition,
    TransitionError,
};

use super::{RequestError, Requests, Submission};

impl Requests {
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
                // A replay of a request made already answers with it: nothing
                // is written again and the limit does not count it.
                if let Some(request) = self.store.get(&id).await? {
                    return self.queue(&id, Some(request), caller, true).await;
                }
                id
            }
            None => uuid::Uuid::now_v7().to_string(),
        };
        self.admit(caller, &id).await?;
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

    /// Counts the new request `id` against the caller's limit, if there is
    /// one.
    async fn admit(&self, caller: &Principal, id: &str) -> Result<(), RequestError> {
        let Some(limit) = &self.limit else {
            return Ok(());
        };
        match limit.admit(&caller.subject, id).await? {
            Admission::Admitted => Ok(()),
            Admission::Refused {
                per_minute,
                retry_after_seconds,
            } => {
                tracing::info!(per_minute, retry_after_seconds, "submission over the limit");
                Err(RequestError::RateLimited {
                    per_minute,
                    retry_after_seconds,
                })
            }
        }
    }

    /// Starts the execution of a Validated request and moves it to Queued;
    /// a request already past Validated is returned as it is.
    pub(super) async fn queue(
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
                            Some("fulfillment could not be started"),
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

    pub(super) fn change(
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
    pub(super) async fn item(
        &self,
        caller: &Principal,
        item_id: &str,
    ) -> Result<PublishedItem, RequestError> {
        self.published(item_id)
            .await?
            .filter(|published| published.item.visible_to(caller, &self.admin_group))
            .ok_or_else(|| RequestError::NotFound(format!("no catalog item `{item_id}`")))
    }

    /// The item as published now (one consistent read: the same cost as
    /// checking a cached copy against the catalog's generation), so a
    /// submission is never checked against an older version than the form
    /// the catalog served. Compiled validators are kept by content hash.
    pub(super) async fn published(
        &self,
        item_id: &str,
    ) -> Result<Option<PublishedItem>, StoreError> {
        if !is_item_id(item_id) {
            return Ok(None);
        }
        self.catalog.published_item(item_id).await
    }

    pub(super) fn validator(
        &self,
        published: &PublishedItem,
    ) -> Result<Arc<Validator>, RequestError> {
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
