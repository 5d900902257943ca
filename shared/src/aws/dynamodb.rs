//! The DynamoDB adapter: PAO's tables seen through the domain's traits.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use crate::catalog::index::{
    CatalogStore, Generation, PublishOutcome, PublishedItem, SetDigest, StoreError,
    ValidationReport,
};
use crate::health::{Probe, ProbeFailure};

const SERVICE: &str = "DynamoDB";

/// Checks that a table exists and answers.
pub struct TableProbe {
    client: Client,
    table: String,
}

impl TableProbe {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl Probe for TableProbe {
    fn dependency(&self) -> &'static str {
        "dynamodb"
    }

    async fn check(&self) -> Result<(), ProbeFailure> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map(|_| ())
            .map_err(|err| super::probe_failure(self.dependency(), &err))
    }
}

/// The catalog table: published items, validation reports, and which item
/// each bucket file holds. Keys: `ITEM#<id>`/`PUBLISHED`, `ITEM#<id>`/`REPORT`,
/// `SOURCE#<key>`/`STATE`, `ITEM#<id>`/`CONTENDERS` (files refused because
/// another file held the id), and `CATALOG`/`GENERATION`: the generation's
/// number `n` and the digest `d` of the published set, which every publish
/// and unpublish moves on in the same transaction as its change, on the
/// condition that neither the item nor the generation changed since they
/// were read. Documents are stored as JSON text so the table never needs to
/// know an item's shape.
pub struct CatalogTable {
    client: Client,
    table: String,
}

const PUBLISHED: &str = "PUBLISHED";
const REPORT: &str = "REPORT";
const STATE: &str = "STATE";
const CONTENDERS: &str = "CONTENDERS";
const CATALOG: &str = "CATALOG";
/// The condition that a published item is still what was read: `:hash`,
/// `:key` and `:modified` are its content hash, file and modification time.
const UNCHANGED_SINCE_READ: &str =
    "content_hash = :hash AND source_key = :key AND source_modified = :modified";
const GENERATION: &str = "GENERATION";
/// A change that lost a race (another change moved the generation or the
/// item first) is decided again on what is there now, this many times.
const CHANGE_ATTEMPTS: u32 = 8;

impl CatalogTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn get(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        self.client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map(|output| output.item)
            .map_err(|err| super::unavailable(SERVICE, "GetItem", &err))
    }
}

impl CatalogTable {
    /// The generation as a change reads it: when no change ever wrote one,
    /// its digest is made from what is published now (a catalog from before
    /// generations), and the change that writes it first must find none.
    async fn generation_to_change(&self) -> Result<Generation, StoreError> {
        let generation = self.generation().await?;
        if generation.number > 0 {
            return Ok(generation);
        }
        Ok(Generation {
            number: 0,
            digest: SetDigest::of(&self.published().await?),
        })
    }

    /// Applies `change` and moves the generation from `from` to the next
    /// one with `digest`, atomically. `false` when either had changed since
    /// it was read, so nothing was written and the caller decides again.
    async fn change_with_generation(
        &self,
        change: TransactWriteItem,
        from: Generation,
        digest: SetDigest,
    ) -> Result<bool, StoreError> {
        let expected = if from.number == 0 {
            "attribute_not_exists(pk)"
        } else {
            "#n = :n"
        };
        let mut next = Update::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(CATALOG.to_string()))
            .key("sk", AttributeValue::S(GENERATION.to_string()))
            .update_expression("SET #n = :next, #d = :digest")
            .condition_expression(expected)
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#d", "d")
            .expression_attribute_values(":next", AttributeValue::N((from.number + 1).to_string()))
            .expression_attribute_values(":digest", AttributeValue::S(digest.to_hex()));
        if from.number > 0 {
            next =
                next.expression_attribute_values(":n", AttributeValue::N(from.number.to_string()));
        }
        let next = next
            .build()
            .map_err(|err| StoreError::Corrupt(err.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(change)
            .transact_items(TransactWriteItem::builder().update(next).build())
            .send()
            .await;
        match cancellation(&result) {
            None => result
                .map(|_| true)
                .map_err(|err| super::unavailable(SERVICE, "TransactWriteItems", &err)),
            Some(Cancelled::Raced) => Ok(false),
            Some(Cancelled::Other(codes)) => {
                tracing::warn!(codes, "catalog change refused by DynamoDB");
                Err(StoreError::Unavailable(format!(
                    "DynamoDB TransactWriteItems was cancelled: {codes}"
                )))
            }
        }
    }

    /// Runs `attempt` until it is decided: each attempt reads what it needs
    /// and returns `None` when its write lost a race.
    async fn decide<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, StoreError>>,
    {
        for round in 1..=CHANGE_ATTEMPTS {
            if let Some(decided) = attempt().await? {
                return Ok(decided);
            }
            let jitter = u64::from(uuid::Uuid::new_v4().as_u128() as u8 % 20);
            tokio::time::sleep(std::time::Duration::from_millis(
                10 * u64::from(round) + jitter,
            ))
            .await;
        }
        Err(StoreError::Unavailable(
            "the catalog kept changing while this change was made; try again".to_string(),
        ))
    }
}

/// Why a transaction was cancelled, when it was.
enum Cancelled {
    /// A condition failed or another transaction held an item: what was
    /// read is out of date, decide again.
    Raced,
    /// Anything else (throttling, an item over DynamoDB's limits): the
    /// reasons' codes, for the log and the error.
    Other(String),
}

fn cancellation<T>(
    result: &Result<T, SdkError<TransactWriteItemsError, HttpResponse>>,
) -> Option<Cancelled> {
    let Err(err) = result else { return None };
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        err.as_service_error()
    else {
        return None;
    };
    let codes: Vec<&str> = cancelled
        .cancellation_reasons()
        .iter()
        .filter_map(|reason| reason.code())
        .filter(|code| *code != "None")
        .collect();
    let raced = |code: &&str| matches!(*code, "ConditionalCheckFailed" | "TransactionConflict");
    if !codes.is_empty() && codes.iter().all(raced) {
        Some(Cancelled::Raced)
    } else {
        Some(Cancelled::Other(codes.join(", ")))
    }
}

impl CatalogTable {
    /// Puts a report on `condition`; `false` when the condition refused it.
    async fn put_report(
        &self,
        report: &ValidationReport,
        condition: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("ITEM#{}", report.item_id)))
            .item("sk", AttributeValue::S(REPORT.to_string()))
            .item(
                "source_modified",
                AttributeValue::N(report.source_modified.to_string()),
            )
            .item("document", AttributeValue::S(to_json(report)?))
            .item("source_key", AttributeValue::S(report.source_key.clone()))
            .condition_expression(condition)
            .expression_attribute_values(":key", AttributeValue::S(report.source_key.clone()))
            .expression_attribute_values(
                ":modified",
                AttributeValue::N(report.source_modified.to_string()),
            )
            .send()
            .await;
        super::conditional_write(result, "PutItem")
    }
}

/// `put` on the condition that the item is still `current`.
fn unchanged_since_read(
    put: aws_sdk_dynamodb::types::builders::PutBuilder,
    current: &PublishedItem,
) -> aws_sdk_dynamodb::types::builders::PutBuilder {
    put.condition_expression(UNCHANGED_SINCE_READ)
        .expression_attribute_values(":hash", AttributeValue::S(current.content_hash.clone()))
        .expression_attribute_values(":key", AttributeValue::S(current.source_key.clone()))
        .expression_attribute_values(
            ":modified",
            AttributeValue::N(current.source_modified.to_string()),
        )
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Result<String, StoreError> {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .cloned()
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} missing")))
}

fn document<T: serde::de::DeserializeOwned>(
    item: &HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    serde_json::from_str(&text(item, "document")?)
        .map_err(|err| StoreError::Corrupt(err.to_string()))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

#[async_trait]
impl CatalogStore for CatalogTable {
    async fn generation(&self) -> Result<Generation, StoreError> {
        let Some(item) = self.get(CATALOG.to_string(), GENERATION).await? else {
            return Ok(Generation::default());
        };
        let number = item
            .get("n")
            .and_then(|n| n.as_n().ok())
            .and_then(|n| n.parse().ok());
        let digest = item
            .get("d")
            .and_then(|d| d.as_s().ok())
            .and_then(|d| SetDigest::from_hex(d));
        match (number, digest) {
            (Some(number), Some(digest)) => Ok(Generation { number, digest }),
            _ => Err(StoreError::Corrupt(
                "the catalog generation record is malformed".to_string(),
            )),
        }
    }

    async fn published(&self) -> Result<Vec<PublishedItem>, StoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :published")
            .expression_attribute_values(":published", AttributeValue::S(PUBLISHED.to_string()))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut items = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| super::unavailable(SERVICE, "Scan", &err))?;
            for item in page.items() {
                items.push(document(item)?);
            }
        }
        Ok(items)
    }

    async fn published_item(&self, item_id: &str) -> Result<Option<PublishedItem>, StoreError> {
        self.get(format!("ITEM#{item_id}"), PUBLISHED)
            .await?
            .map(|item| document(&item))
            .transpose()
    }

    async fn publish(&self, published: &PublishedItem) -> Result<PublishOutcome, StoreError> {
        let item_id = &published.item.header.id;
        let document = to_json(published)?;
        self.decide(|| async {
            let generation = self.generation_to_change().await?;
            let current = self.published_item(item_id).await?;
            let mut digest = generation.digest;
            let mut put = Put::builder()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(format!("ITEM#{item_id}")))
                .item("sk", AttributeValue::S(PUBLISHED.to_string()))
                .item(
                    "source_key",
                    AttributeValue::S(published.source_key.clone()),
                )
                .item(
                    "source_modified",
                    AttributeValue::N(published.source_modified.to_string()),
                )
                .item(
                    "content_hash",
                    AttributeValue::S(published.content_hash.clone()),
                )
                .item("document", AttributeValue::S(document.clone()));
            match &current {
                Some(current) if current.source_key != published.source_key => {
                    return Ok(Some(PublishOutcome::OwnedBy(current.source_key.clone())))
                }
                Some(current) if current.source_modified > published.source_modified => {
                    return Ok(Some(PublishOutcome::Stale))
                }
                Some(current) => {
                    digest = digest.toggle(item_id, &current.content_hash);
                    put = unchanged_since_read(put, current);
                }
                None => put = put.condition_expression("attribute_not_exists(pk)"),
            }
            let put = put
                .build()
                .map_err(|err| StoreError::Corrupt(err.to_string()))?;
            let digest = digest.toggle(item_id, &published.content_hash);
            let change = TransactWriteItem::builder().put(put).build();
            Ok(self
                .change_with_generation(change, generation, digest)
                .await?
                .then_some(PublishOutcome::Published))
        })
        .await
    }

    async fn unpublish(
        &self,
        item_id: &str,
        source_key: &str,
        modified_before: i64,
    ) -> Result<(), StoreError> {
        self.decide(|| async {
            let generation = self.generation_to_change().await?;
            let current = self.published_item(item_id).await?;
            // Already gone, owned by another file, or replaced by a newer
            // version: nothing is left to do.
            let Some(current) = current.filter(|current| {
                current.source_key == source_key && current.source_modified <= modified_before
            }) else {
                return Ok(Some(()));
            };
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(format!("ITEM#{item_id}")))
                .key("sk", AttributeValue::S(PUBLISHED.to_string()))
                .condition_expression(UNCHANGED_SINCE_READ)
                .expression_attribute_values(
                    ":hash",
                    AttributeValue::S(current.content_hash.clone()),
                )
                .expression_attribute_values(":key", AttributeValue::S(current.source_key.clone()))
                .expression_attribute_values(
                    ":modified",
                    AttributeValue::N(current.source_modified.to_string()),
                )
                .build()
                .map_err(|err| StoreError::Corrupt(err.to_string()))?;
            let digest = generation.digest.toggle(item_id, &current.content_hash);
            let change = TransactWriteItem::builder().delete(delete).build();
            Ok(self
                .change_with_generation(change, generation, digest)
                .await?
                .then_some(()))
        })
        .await
    }

    async fn report(&self, item_id: &str) -> Result<Option<ValidationReport>, StoreError> {
        self.get(format!("ITEM#{item_id}"), REPORT)
            .await?
            .map(|item| document(&item))
            .transpose()
    }

    async fn save_report(&self, report: &ValidationReport) -> Result<(), StoreError> {
        // Another file's report is replaced: the file claims the id.
        self.put_report(
            report,
            "attribute_not_exists(pk) OR source_key <> :key OR source_modified <= :modified",
        )
        .await
        .map(|_| ())
    }

    async fn save_own_report(&self, report: &ValidationReport) -> Result<bool, StoreError> {
        if self
            .put_report(
                report,
                "attribute_not_exists(pk) OR (source_key = :key AND source_modified <= :modified)",
            )
            .await?
        {
            return Ok(true);
        }
        // Refused: by another file's report, or by a newer one of this file.
        let current = self.report(&report.item_id).await?;
        Ok(current.is_none_or(|current| current.source_key == report.source_key))
    }

    async fn item_of_source(&self, source_key: &str) -> Result<Option<String>, StoreError> {
        match self.get(format!("SOURCE#{source_key}"), STATE).await? {
            Some(item) => Ok(item.get("item_id").and_then(|v| v.as_s().ok()).cloned()),
            None => Ok(None),
        }
    }

    async fn claim_source(
        &self,
        source_key: &str,
        item_id: &str,
        modified: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(format!("SOURCE#{source_key}")))
            .item("sk", AttributeValue::S(STATE.to_string()))
            .item("item_id", AttributeValue::S(item_id.to_string()))
            .item("source_modified", AttributeValue::N(modified.to_string()))
            .condition_expression("attribute_not_exists(pk) OR source_modified <= :modified")
            .expression_attribute_values(":modified", AttributeValue::N(modified.to_string()))
            .send()
            .await;
        super::conditional_write(result, "PutItem")
    }

    async fn release_source(&self, source_key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("SOURCE#{source_key}")))
            .key("sk", AttributeValue::S(STATE.to_string()))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| super::unavailable(SERVICE, "DeleteItem", &err))
    }

    async fn contenders(&self, item_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .get(format!("ITEM#{item_id}"), CONTENDERS)
            .await?
            .and_then(|item| item.get("keys").and_then(|keys| keys.as_ss().ok()).cloned())
            .unwrap_or_default())
    }

    async fn set_contender(
        &self,
        item_id: &str,
        source_key: &str,
        contending: bool,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("ITEM#{item_id}")))
            .key("sk", AttributeValue::S(CONTENDERS.to_string()))
            .expression_attribute_names("#keys", "keys")
            .expression_attribute_values(":key", AttributeValue::Ss(vec![source_key.to_string()]));
        let request = if contending {
            request.update_expression("ADD #keys :key")
        } else {
            // Only where a record exists: most files never contend.
            request
                .update_expression("DELETE #keys :key")
                .condition_expression("attribute_exists(pk)")
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) if super::is_condition_failure(&err) => Ok(()),
            Err(err) => Err(super::unavailable(SERVICE, "UpdateItem", &err)),
        }
    }
}
