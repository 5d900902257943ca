//! The submission limit in the requests table (DynamoDB), seen as the
//! domain's `SubmissionLimit`.
//!
//! One item per caller and minute, `RATE#<caller's subject>`/`MINUTE#<minutes
//! since the epoch>`, whose string set `requests` holds a short digest of
//! each request counted. One conditional `UpdateItem` adds the request's
//! digest where the set has room or holds it already (adding what a set
//! holds changes nothing), so a request is counted once however many of its
//! retries arrive at once, and a minute never counts more than the limit;
//! the condition failing is the refusal. Writes to one item are serialised,
//! so the count is exact under any concurrency. The item expires by the
//! table's TTL attribute, `expires_at`, as the idempotency records do, once
//! its minute is over: nothing reads a past minute's item, and expiry only
//! clears them away.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use sha2::{Digest, Sha256};

use crate::catalog::index::StoreError;
use crate::requests::limit::{Admission, SubmissionLimit, Window};

/// The bytes of a request id's SHA-256 kept in the set: 64 bits, so two
/// requests of one caller in one minute never share a digest, and the set
/// of 30 requests stays under the 1 KB that one write unit covers (an
/// update costs a unit per KB of the item).
const DIGEST_BYTES: usize = 8;

pub struct SubmissionWindows {
    client: Client,
    table: String,
    per_minute: u32,
}

impl SubmissionWindows {
    /// At most `per_minute` new requests per caller and minute, counted in
    /// `table`.
    pub fn new(client: Client, table: impl Into<String>, per_minute: u32) -> Self {
        Self {
            client,
            table: table.into(),
            per_minute,
        }
    }
}

fn digest(request_id: &str) -> String {
    hex::encode(&Sha256::digest(request_id.as_bytes())[..DIGEST_BYTES])
}

#[async_trait]
impl SubmissionLimit for SubmissionWindows {
    async fn admit(&self, subject: &str, request_id: &str) -> Result<Admission, StoreError> {
        let window = Window::now();
        let request = digest(request_id);
        let counted = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("RATE#{subject}")))
            .key("sk", AttributeValue::S(format!("MINUTE#{}", window.minute)))
            .update_expression("ADD #requests :requests SET expires_at = :expires")
            .condition_expression(
                "attribute_not_exists(#requests) OR contains(#requests, :request) \
                 OR size(#requests) < :limit",
            )
            .expression_attribute_names("#requests", "requests")
            .expression_attribute_values(":requests", AttributeValue::Ss(vec![request.clone()]))
            .expression_attribute_values(":request", AttributeValue::S(request))
            .expression_attribute_values(":limit", AttributeValue::N(self.per_minute.to_string()))
            .expression_attribute_values(":expires", AttributeValue::N(window.ends_at.to_string()))
            .send()
            .await;
        if super::conditional_write(counted, "UpdateItem")? {
            Ok(Admission::Admitted)
        } else {
            Ok(Admission::Refused {
                per_minute: self.per_minute,
                retry_after_seconds: window.retry_after_seconds,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{
        create_mock_http_client, mock, MockResponseInterceptor, Rule, RuleMode,
    };
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    const REQUEST: &str = "0190a4c2-7b3e-7c41-9d2a-3f5e8a1b2c3d";

    /// A limit of 30 whose client answers with `rule` alone, without
    /// retries.
    fn limit(rule: &Rule) -> SubmissionWindows {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .http_client(create_mock_http_client())
            .interceptor(
                MockResponseInterceptor::new()
                    .rule_mode(RuleMode::Sequential)
                    .with_rule(rule),
            )
            .build();
        SubmissionWindows::new(Client::from_conf(config), "pao-requests", 30)
    }

    #[tokio::test]
    async fn a_request_is_added_to_its_callers_minute_where_there_is_room_or_it_is_there() {
        let rule = mock!(Client::update_item)
            .match_requests(|r| {
                let value = |name: &str| r.expression_attribute_values().and_then(|v| v.get(name));
                let minute = Window::now().minute;
                r.table_name() == Some("pao-requests")
                    && r.key().and_then(|k| k.get("pk"))
                        == Some(&AttributeValue::S("RATE#u-1".to_string()))
                    // The minute may turn between the call and this check.
                    && [minute, minute + 1].iter().any(|m| {
                        r.key().and_then(|k| k.get("sk"))
                            == Some(&AttributeValue::S(format!("MINUTE#{m}")))
                    })
                    && value(":requests") == Some(&AttributeValue::Ss(vec![digest(REQUEST)]))
                    && value(":request") == Some(&AttributeValue::S(digest(REQUEST)))
                    && value(":limit") == Some(&AttributeValue::N("30".to_string()))
                    && value(":expires").is_some()
                    && r.condition_expression().is_some_and(|c| {
                        c.contains("contains(#requests, :request)")
                            && c.contains("size(#requests) < :limit")
                    })
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let admission = limit(&rule).admit("u-1", REQUEST).await.unwrap();
        assert_eq!(admission, Admission::Admitted);
        assert_eq!(rule.num_calls(), 1);
        assert_eq!(digest(REQUEST).len(), 2 * DIGEST_BYTES);
    }

    #[tokio::test]
    async fn a_full_minute_refuses_until_the_next() {
        let rule = mock!(Client::update_item).then_error(|| {
            UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("The conditional request failed")
                    .meta(
                        ErrorMetadata::builder()
                            .code("ConditionalCheckFailedException")
                            .message("The conditional request failed")
                            .build(),
                    )
                    .build(),
            )
        });
        let admission = limit(&rule).admit("u-1", REQUEST).await.unwrap();
        let Admission::Refused {
            per_minute,
            retry_after_seconds,
        } = admission
        else {
            panic!("admitted");
        };
        assert_eq!(per_minute, 30);
        assert!((1..=60).contains(&retry_after_seconds));
    }

    #[tokio::test]
    async fn any_other_failure_is_the_table_unavailable() {
        let rule = mock!(Client::update_item).then_error(|| {
            UpdateItemError::generic(
                ErrorMetadata::builder()
                    .code("ProvisionedThroughputExceededException")
                    .message("slow down")
                    .build(),
            )
        });
        let failed = limit(&rule).admit("u-1", REQUEST).await.unwrap_err();
        assert!(
            matches!(&failed, StoreError::Unavailable(text) if text == "DynamoDB UpdateItem failed"),
            "{failed:?}"
        );
    }
}
