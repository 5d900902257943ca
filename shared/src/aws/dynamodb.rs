//! The DynamoDB adapter: PAO's tables seen through the domain's traits.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;

use crate::health::{Probe, ProbeFailure};

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
