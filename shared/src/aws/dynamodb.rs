//! The DynamoDB adapter: PAO's tables seen through the domain's traits.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
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
/// another file held the id). Documents are stored as JSON text so the table
/// never needs to know an item's shape.
pub struct CatalogTable {
    client: Client,
    table: String,
}

const PUBLISHED: &str = "PUBLISHED";
const REPORT: &str = "REPORT";
const STATE: &str = "STATE";
const CONTENDERS: &str = "CONTENDERS";

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
        let result = self
            .client
            .put_item()
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
            .send()
            .await;
        match result {
            Ok(_) => Ok(PublishOutcome::Published),
            Err(err) if super::is_condition_failure(&err) => {
                match self.published_item(item_id).await? {
                    Some(current) if current.source_key != published.source_key => {
                        Ok(PublishOutcome::OwnedBy(current.source_key))
                    }
                    _ => Ok(PublishOutcome::Stale),
                }
            }
            Err(err) => Err(super::unavailable(SERVICE, "PutItem", &err)),
        }
    }

    async fn unpublish(
        &self,
        item_id: &str,
        source_key: &str,
        modified_before: i64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("ITEM#{item_id}")))
            .key("sk", AttributeValue::S(PUBLISHED.to_string()))
            .condition_expression("source_key = :key AND source_modified <= :modified")
            .expression_attribute_values(":key", AttributeValue::S(source_key.to_string()))
            .expression_attribute_values(
                ":modified",
                AttributeValue::N(modified_before.to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already gone, owned by another file, or replaced by a newer version.
            Err(err) if super::is_condition_failure(&err) => Ok(()),
            Err(err) => Err(super::unavailable(SERVICE, "DeleteItem", &err)),
        }
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
