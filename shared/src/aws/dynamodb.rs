//! The DynamoDB adapter: PAO's tables seen through the domain's traits.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use crate::catalog::index::{
    CatalogStore, PublishOutcome, PublishedItem, StoreError, ValidationReport,
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
/// another file held the id), and `CATALOG`/`GENERATION`, the counter every
/// publish and unpublish raises in the same transaction. Documents are stored
/// as JSON text so the table never needs to know an item's shape.
pub struct CatalogTable {
    client: Client,
    table: String,
}

const PUBLISHED: &str = "PUBLISHED";
const REPORT: &str = "REPORT";
const STATE: &str = "STATE";
const CONTENDERS: &str = "CONTENDERS";
const CATALOG: &str = "CATALOG";
const GENERATION: &str = "GENERATION";
/// Transactions touching the generation at once may cancel each other
/// (`TransactionConflict`); the loser tries again this many times.
const CONFLICT_ATTEMPTS: u32 = 5;

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
    /// Applies `change` and raises the generation, atomically. `false` when
    /// the change's condition refused it (nothing was written).
    async fn write_raising_generation(
        &self,
        change: TransactWriteItem,
    ) -> Result<bool, StoreError> {
        let raise = Update::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(CATALOG.to_string()))
            .key("sk", AttributeValue::S(GENERATION.to_string()))
            .update_expression("ADD #n :one")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":one", AttributeValue::N("1".to_string()))
            .build()
            .map_err(|err| StoreError::Corrupt(err.to_string()))?;
        let raise = TransactWriteItem::builder().update(raise).build();
        let mut attempt = 1;
        loop {
            let result = self
                .client
                .transact_write_items()
                .transact_items(change.clone())
                .transact_items(raise.clone())
                .send()
                .await;
            match cancellation(&result) {
                None => {
                    return result
                        .map(|_| true)
                        .map_err(|err| super::unavailable(SERVICE, "TransactWriteItems", &err))
                }
                Some(Cancelled::Condition) => return Ok(false),
                Some(Cancelled::Conflict) if attempt < CONFLICT_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(attempt)))
                        .await;
                    attempt += 1;
                }
                Some(Cancelled::Conflict) => {
                    return Err(StoreError::Unavailable(
                        "DynamoDB TransactWriteItems: the catalog changed concurrently; try again"
                            .to_string(),
                    ))
                }
            }
        }
    }
}

/// Why a transaction was cancelled, when it was.
enum Cancelled {
    /// Our own condition refused the change.
    Condition,
    /// Another transaction held an item: worth another try.
    Conflict,
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
        .collect();
    if codes.contains(&"ConditionalCheckFailed") {
        Some(Cancelled::Condition)
    } else {
        Some(Cancelled::Conflict)
    }
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
    async fn generation(&self) -> Result<u64, StoreError> {
        let Some(item) = self.get(CATALOG.to_string(), GENERATION).await? else {
            return Ok(0);
        };
        item.get("n")
            .and_then(|n| n.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("the catalog generation is not a number".into()))
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
        let put = Put::builder()
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
            .item("document", AttributeValue::S(to_json(published)?))
            .condition_expression(
                "attribute_not_exists(pk) OR (source_key = :key AND source_modified <= :modified)",
            )
            .expression_attribute_values(":key", AttributeValue::S(published.source_key.clone()))
            .expression_attribute_values(
                ":modified",
                AttributeValue::N(published.source_modified.to_string()),
            )
            .build()
            .map_err(|err| StoreError::Corrupt(err.to_string()))?;
        if self
            .write_raising_generation(TransactWriteItem::builder().put(put).build())
            .await?
        {
            return Ok(PublishOutcome::Published);
        }
        match self.published_item(item_id).await? {
            Some(current) if current.source_key != published.source_key => {
                Ok(PublishOutcome::OwnedBy(current.source_key))
            }
            _ => Ok(PublishOutcome::Stale),
        }
    }

    async fn unpublish(
        &self,
        item_id: &str,
        source_key: &str,
        modified_before: i64,
    ) -> Result<(), StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("ITEM#{item_id}")))
            .key("sk", AttributeValue::S(PUBLISHED.to_string()))
            .condition_expression("source_key = :key AND source_modified <= :modified")
            .expression_attribute_values(":key", AttributeValue::S(source_key.to_string()))
            .expression_attribute_values(
                ":modified",
                AttributeValue::N(modified_before.to_string()),
            )
            .build()
            .map_err(|err| StoreError::Corrupt(err.to_string()))?;
        // Refused by its condition: already gone, owned by another file, or
        // replaced by a newer version. Either way nothing is left to do.
        self.write_raising_generation(TransactWriteItem::builder().delete(delete).build())
            .await
            .map(|_| ())
    }

    async fn report(&self, item_id: &str) -> Result<Option<ValidationReport>, StoreError> {
        self.get(format!("ITEM#{item_id}"), REPORT)
            .await?
            .map(|item| document(&item))
            .transpose()
    }

    async fn save_report(&self, report: &ValidationReport) -> Result<(), StoreError> {
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
            .condition_expression(
                "attribute_not_exists(pk) OR source_key <> :key OR source_modified <= :modified",
            )
            .expression_attribute_values(":key", AttributeValue::S(report.source_key.clone()))
            .expression_attribute_values(
                ":modified",
                AttributeValue::N(report.source_modified.to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if super::is_condition_failure(&err) => Ok(()), // a newer report stands
            Err(err) => Err(super::unavailable(SERVICE, "PutItem", &err)),
        }
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
        match result {
            Ok(_) => Ok(true),
            Err(err) if super::is_condition_failure(&err) => Ok(false),
            Err(err) => Err(super::unavailable(SERVICE, "PutItem", &err)),
        }
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
