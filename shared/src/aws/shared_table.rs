//! The shared records of `protect` (circuit breakers, concurrency slots),
//! kept in the requests table: item `pk = <key>`, `sk = SHARED`, the
//! record as JSON text in `document` and its `version`, which every write
//! names in its condition (compare-and-set). Reads are consistent.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde_json::Value;

use crate::catalog::index::StoreError;
use crate::protect::{Shared, Versioned};

const SORT_KEY: &str = "SHARED";

pub struct SharedTable {
    client: Client,
    table: String,
}

impl SharedTable {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

#[async_trait::async_trait]
impl Shared for SharedTable {
    async fn read(&self, key: &str) -> Result<Option<Versioned<Value>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(key.to_string()))
            .key("sk", AttributeValue::S(SORT_KEY.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| super::unavailable("DynamoDB", "GetItem", &err))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let corrupt = |what: &str| StoreError::Corrupt(format!("shared record {key}: {what}"));
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt("no version"))?;
        let value = item
            .get("document")
            .and_then(|v| v.as_s().ok())
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| corrupt("no document"))?;
        Ok(Some(Versioned { value, version }))
    }

    async fn write(&self, key: &str, value: &Value, seen: Option<u64>) -> Result<bool, StoreError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(key.to_string()))
            .item("sk", AttributeValue::S(SORT_KEY.to_string()))
            .item("document", AttributeValue::S(value.to_string()))
            .item(
                "version",
                AttributeValue::N(seen.map_or(1, |v| v + 1).to_string()),
            );
        let request = match seen {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(version) => request
                .condition_expression("#version = :seen")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":seen", AttributeValue::N(version.to_string())),
        };
        super::conditional_write(request.send().await, "PutItem")
    }
}
