//! The requests table (DynamoDB), seen as the domain's `RequestStore`.
//!
//! One table. `REQ#<id>`/`REQUEST` holds the request (as JSON text, with its
//! status and version as attributes for the conditions) and its audit trail,
//! a list appended to by the same conditional write that changes the status:
//! a change and its audit entry are one atomic single-item write, with no
//! transaction. `LOG#…` items of the same partition hold its log in time
//! order; `TASK` the task token of its waiting execution;
//! `IDEMPOTENCY#<caller>#<key>` an idempotency record that expires by TTL.
//! Index `by-user` lists a user's requests newest first, `by-status` a
//! status's. The submission limit keeps its counts in the same table
//! (`RATE#<caller>`, in `submission_limit.rs`).

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use base64::Engine as _;

use crate::catalog::index::StoreError;
use crate::requests::fulfillment::{ActionRecord, Plan, Resource};
use crate::requests::{
    AuditEntry, Guard, IdempotencyRecord, ListError, ListQuery, LogEntry, Page, Request,
    RequestStore, Transition, TransitionError,
};

const SERVICE: &str = "DynamoDB";

const REQUEST: &str = "REQUEST";
/// The attribute of the request item that holds its pinned plan.
const PLAN: &str = "plan";
const ACTION_PREFIX: &str = "ACTION#";
const LEDGER_PREFIX: &str = "LEDGER#";
/// How long an idempotency key names its request.
const IDEMPOTENCY_SECONDS: i64 = 24 * 60 * 60;

pub struct RequestTable {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn document<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let text = item
        .get("document")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| StoreError::Corrupt("attribute document missing".to_string()))?;
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn epoch_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl RequestTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn request_item(&self, request: &Request) -> Result<Item, StoreError> {
        let order = format!("{}#{}", request.created_at, request.id);
        Ok(HashMap::from([
            ("pk".to_string(), s(format!("REQ#{}", request.id))),
            ("sk".to_string(), s(REQUEST)),
            ("document".to_string(), s(to_json(request)?)),
            ("status".to_string(), s(request.status.name())),
            (
                "version".to_string(),
                AttributeValue::N(request.version.to_string()),
            ),
            ("item_id".to_string(), s(&request.item_id)),
            (
                "gsi1pk".to_string(),
                s(format!("USER#{}", request.requester.subject)),
            ),
            ("gsi1sk".to_string(), s(order.clone())),
            (
                "gsi2pk".to_string(),
                s(format!("STATUS#{}", request.status.name())),
            ),
            ("gsi2sk".to_string(), s(order)),
        ]))
    }

    async fn get_raw(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| super::unavailable(SERVICE, "GetItem", &err))?;
        Ok(output.item)
    }

    async fn query_prefix<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        prefix: &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(format!("REQ#{id}")))
            .expression_attribute_values(":prefix", s(prefix))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| super::unavailable(SERVICE, "Query", &err))?;
            for item in page.items() {
                found.push(document(item)?);
            }
        }
        Ok(found)
    }
}

fn log_item(id: &str, entry: &LogEntry) -> Result<Item, StoreError> {
    Ok(HashMap::from([
        ("pk".to_string(), s(format!("REQ#{id}"))),
        (
            "sk".to_string(),
            s(format!(
                "LOG#{}#{}",
                entry.at,
                uuid::Uuid::new_v4().simple()
            )),
        ),
        ("document".to_string(), s(to_json(entry)?)),
    ]))
}

/// The page token: the last key, as base64url JSON. Opaque to callers, and
/// checked against the listing it continues.
fn encode_token(key: &Item) -> String {
    let plain: HashMap<&str, &str> = key
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.as_s().ok()?.as_str())))
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&plain).unwrap_or_default())
}

fn decode_token(token: &str, pinned: Option<(&str, &str)>) -> Result<Item, ListError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| ListError::BadToken)?;
    let plain: HashMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| ListError::BadToken)?;
    if let Some((name, expected)) = pinned {
        if plain.get(name).map(String::as_str) != Some(expected) {
            return Err(ListError::BadToken);
        }
    }
    // Exactly the keys of the table and of the index read, none empty: any
    // other start key would be refused by DynamoDB, as a 5xx.
    let mut keys = vec!["pk".to_string(), "sk".to_string()];
    if let Some((partition, _)) = pinned {
        keys.push(partition.to_string());
        keys.push(partition.replacen("pk", "sk", 1));
    }
    if plain.len() != keys.len()
        || keys
            .iter()
            .any(|key| plain.get(key).is_none_or(String::is_empty))
    {
        return Err(ListError::BadToken);
    }
    Ok(plain.into_iter().map(|(k, v)| (k, s(v))).collect())
}

#[async_trait]
impl RequestStore for RequestTable {
    async fn create(
        &self,
        request: &Request,
        plan: &Plan,
        audit: &[AuditEntry],
        log: &LogEntry,
    ) -> Result<bool, StoreError> {
        let mut item = self.request_item(request)?;
        // Transitions update the item's other attributes; the plan stays.
        item.insert(PLAN.to_string(), s(to_json(plan)?));
        let entries = audit
            .iter()
            .map(|entry| to_json(entry).map(s))
            .collect::<Result<Vec<_>, _>>()?;
        item.insert("audit".to_string(), AttributeValue::L(entries));
        let created = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(err) if super::is_condition_failure(&err) => return Ok(false),
            Err(err) => return Err(super::unavailable(SERVICE, "PutItem", &err)),
        }
        self.append_log(&request.id, log).await?;
        Ok(true)
    }

    async fn get(&self, id: &str) -> Result<Option<Request>, StoreError> {
        let item = self.get_raw(format!("REQ#{id}"), REQUEST).await?;
        item.as_ref().map(document).transpose()
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
        let id = current.id.as_str();
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
        let entry = AuditEntry {
            at: change.at.clone(),
            actor: change.actor.clone(),
            from: Some(change.from),
            to: change.to,
            reason: change.reason.clone(),
        };
        let item = self.request_item(&next)?;
        let value = |name: &str| item.get(name).cloned().unwrap_or_else(|| s(""));
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("REQ#{id}")))
            .key("sk", s(REQUEST))
            .update_expression(
                "SET #document = :document, #status = :to, #version = :next, gsi2pk = :gsi2pk, \
                 #audit = list_append(if_not_exists(#audit, :empty), :entry)",
            )
            .condition_expression("#status = :from AND #version = :version")
            .expression_attribute_names("#document", "document")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#audit", "audit")
            .expression_attribute_values(":document", value("document"))
            .expression_attribute_values(":to", s(change.to.name()))
            .expression_attribute_values(":next", AttributeValue::N(next.version.to_string()))
            .expression_attribute_values(":gsi2pk", value("gsi2pk"))
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":entry", AttributeValue::L(vec![s(to_json(&entry)?)]))
            .expression_attribute_values(":from", s(change.from.name()))
            .expression_attribute_values(":version", AttributeValue::N(change.version.to_string()))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(next),
            Err(err) if super::is_condition_failure(&err) => {
                let now = self.get(id).await?.ok_or(TransitionError::NotFound)?;
                Err(TransitionError::Conflict {
                    current: now.status,
                })
            }
            Err(err) => Err(super::unavailable(SERVICE, "UpdateItem", &err).into()),
        }
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, ListError> {
        let limit = i32::try_from(query.limit.clamp(1, 100)).unwrap_or(100);
        let mut filters = vec!["sk = :request".to_string()];
        let mut values: Item = HashMap::from([(":request".to_string(), s(REQUEST))]);
        if let Some(item_id) = &query.item_id {
            filters.push("item_id = :item".to_string());
            values.insert(":item".to_string(), s(item_id));
        }
        let (index, pinned) = match (&query.subject, query.status) {
            (Some(subject), status) => {
                values.insert(":partition".to_string(), s(format!("USER#{subject}")));
                if let Some(status) = status {
                    filters.push("#status = :status".to_string());
                    values.insert(":status".to_string(), s(status.name()));
                }
                (Some(("by-user", "gsi1pk")), Some(format!("USER#{subject}")))
            }
            (None, Some(status)) => {
                values.insert(
                    ":partition".to_string(),
                    s(format!("STATUS#{}", status.name())),
                );
                (
                    Some(("by-status", "gsi2pk")),
                    Some(format!("STATUS#{}", status.name())),
                )
            }
            (None, None) => (None, None),
        };
        let start = match &query.after {
            Some(token) => Some(decode_token(
                token,
                index.map(|(_, key)| key).zip(pinned.as_deref()),
            )?),
            None => None,
        };
        let filter = filters.join(" AND ");
        let (items, last) = match index {
            Some((index, key)) => {
                let mut request = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(index)
                    .key_condition_expression(format!("{key} = :partition"))
                    .filter_expression(filter)
                    .set_expression_attribute_values(Some(values))
                    .scan_index_forward(false)
                    .limit(limit)
                    .set_exclusive_start_key(start);
                if filters_use_status(&query.subject, query.status) {
                    request = request.expression_attribute_names("#status", "status");
                }
                let output = request
                    .send()
                    .await
                    .map_err(|err| ListError::Store(super::unavailable(SERVICE, "Query", &err)))?;
                (output.items.unwrap_or_default(), output.last_evaluated_key)
            }
            None => {
                let output = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .filter_expression(filter)
                    .set_expression_attribute_values(Some(values))
                    .limit(limit)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|err| ListError::Store(super::unavailable(SERVICE, "Scan", &err)))?;
                (output.items.unwrap_or_default(), output.last_evaluated_key)
            }
        };
        let requests = items
            .iter()
            .map(document)
            .collect::<Result<Vec<Request>, _>>()?;
        Ok(Page {
            requests,
            next: last.as_ref().map(encode_token),
        })
    }

    async fn audit(&self, id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("REQ#{id}")))
            .key("sk", s(REQUEST))
            .projection_expression("#audit")
            .expression_attribute_names("#audit", "audit")
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| super::unavailable(SERVICE, "GetItem", &err))?;
        let entries = output
            .item
            .as_ref()
            .and_then(|item| item.get("audit"))
            .and_then(|audit| audit.as_l().ok())
            .cloned()
            .unwrap_or_default();
        entries
            .iter()
            .map(|entry| {
                let text = entry
                    .as_s()
                    .map_err(|_| StoreError::Corrupt("audit entry is not text".to_string()))?;
                serde_json::from_str(text).map_err(|err| StoreError::Corrupt(err.to_string()))
            })
            .collect()
    }

    async fn logs(&self, id: &str) -> Result<Vec<LogEntry>, StoreError> {
        self.query_prefix(id, "LOG#").await
    }

    async fn append_log(&self, id: &str, entry: &LogEntry) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(log_item(id, entry)?))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| super::unavailable(SERVICE, "PutItem", &err))
    }

    async fn save_task_token(&self, id: &str, token: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("REQ#{id}")))
            .item("sk", s("TASK"))
            .item("task_token", s(token))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| super::unavailable(SERVICE, "PutItem", &err))
    }

    async fn task_token(&self, id: &str) -> Result<Option<String>, StoreError> {
        let item = self.get_raw(format!("REQ#{id}"), "TASK").await?;
        Ok(item.and_then(|item| item.get("task_token")?.as_s().ok().cloned()))
    }

    async fn save_ticket(&self, issue_key: &str, id: &str) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("TICKET#{issue_key}")))
            .item("sk", s("TICKET"))
            .item("request_id", s(id))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| super::unavailable(SERVICE, "PutItem", &err))
    }

    async fn ticket_request(&self, issue_key: &str) -> Result<Option<String>, StoreError> {
        let item = self
            .get_raw(format!("TICKET#{issue_key}"), "TICKET")
            .await?;
        Ok(item.and_then(|item| item.get("request_id")?.as_s().ok().cloned()))
    }

    async fn plan(&self, id: &str) -> Result<Option<Plan>, StoreError> {
        let item = self.get_raw(format!("REQ#{id}"), REQUEST).await?;
        let Some(text) = item.as_ref().and_then(|item| item.get(PLAN)?.as_s().ok()) else {
            return Ok(None);
        };
        serde_json::from_str(text)
            .map(Some)
            .map_err(|err| StoreError::Corrupt(err.to_string()))
    }

    async fn actions(&self, id: &str) -> Result<Vec<ActionRecord>, StoreError> {
        self.query_prefix(id, ACTION_PREFIX).await
    }

    async fn put_action(
        &self,
        id: &str,
        record: &ActionRecord,
        guard: Guard,
    ) -> Result<bool, StoreError> {
        let (condition, status) = match guard {
            Guard::Not(status) => ("attribute_not_exists(pk) OR #status <> :status", status),
            Guard::Is(status) => ("#status = :status", status),
        };
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("REQ#{id}")))
            .item("sk", s(format!("{ACTION_PREFIX}{}", record.action_id)))
            .item("document", s(to_json(record)?))
            .item("status", s(record.status.name()))
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status.name()))
            .send()
            .await;
        super::conditional_write(written, "PutItem")
    }

    async fn record_resource(&self, id: &str, resource: &Resource) -> Result<(), StoreError> {
        let key = format!(
            "{LEDGER_PREFIX}{}#{}#{}",
            resource.action_id, resource.kind, resource.id
        );
        // The first record stands: its time orders compensation.
        let written = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("REQ#{id}")))
            .item("sk", s(key))
            .item("document", s(to_json(resource)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        super::conditional_write(written, "PutItem").map(|_| ())
    }

    async fn ledger(&self, id: &str) -> Result<Vec<Resource>, StoreError> {
        self.query_prefix(id, LEDGER_PREFIX).await
    }

    async fn claim_idempotency_key(
        &self,
        key: &str,
        record: &IdempotencyRecord,
    ) -> Result<IdempotencyRecord, StoreError> {
        let now = epoch_seconds();
        let pk = s(format!("IDEMPOTENCY#{key}"));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk.clone())
            .item("sk", s("IDEMPOTENCY"))
            .item("payload_hash", s(&record.payload_hash))
            .item("request_id", s(&record.request_id))
            .item(
                "expires_at",
                AttributeValue::N((now + IDEMPOTENCY_SECONDS).to_string()),
            )
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(record.clone()),
            Err(err) if super::is_condition_failure(&err) => {
                let output = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", pk)
                    .key("sk", s("IDEMPOTENCY"))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|err| super::unavailable(SERVICE, "GetItem", &err))?;
                let item = output.item.unwrap_or_default();
                let text = |name: &str| {
                    item.get(name)
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default()
                };
                Ok(IdempotencyRecord {
                    payload_hash: text("payload_hash"),
                    request_id: text("request_id"),
                })
            }
            Err(err) => Err(super::unavailable(SERVICE, "PutItem", &err)),
        }
    }
}

fn filters_use_status(
    subject: &Option<String>,
    status: Option<crate::requests::RequestStatus>,
) -> bool {
    subject.is_some() && status.is_some()
}
