//! What the integration tests share: the local stack's coordinates, read from
//! the environment that `make test` exports from `.local/<name>/stack.env`,
//! and SDK clients built the way the functions build theirs.

pub mod kube;
pub mod leftovers;
pub mod portal;

use std::time::Duration;

/// The coordinates of a running local stack.
pub struct Stack {
    pub api_url: String,
    pub sdk: aws_config::SdkConfig,
}

/// Reads a variable the stack exports; a missing one means the tests were not
/// started by `make test`, which says so rather than failing obscurely.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the integration tests through `make test` (it starts the local stack)")
    })
}

impl Stack {
    pub async fn connect() -> Self {
        // The SDK reaches the emulator through AWS_ENDPOINT_URL, like the functions do.
        env("AWS_ENDPOINT_URL");
        Self {
            api_url: env("PAO_API_URL"),
            sdk: pao::aws::sdk_config().await,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api_url, path)
    }

    /// What action `action` of request `id` recorded as its outputs.
    pub async fn outputs(&self, id: &str, action: &str) -> serde_json::Value {
        self.record(id, action).await["outputs"].clone()
    }

    /// The record of action `action` of request `id`, as the table holds it.
    pub async fn record(&self, id: &str, action: &str) -> serde_json::Value {
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.sdk);
        let item = dynamodb
            .get_item()
            .table_name(env("PAO_REQUESTS_TABLE"))
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("REQ#{id}")),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("ACTION#{action}")),
            )
            .send()
            .await
            .expect("GetItem");
        let document = item
            .item()
            .and_then(|i| i.get("document"))
            .and_then(|d| d.as_s().ok())
            .expect("the action's record");
        serde_json::from_str(document).expect("a JSON record")
    }

    /// Asserts that `secret` is stored nowhere but Secrets Manager: not in
    /// the request's items of the table, not in its execution's history
    /// (input, every state's data), not in any function's log.
    pub async fn assert_secret_kept_out(&self, id: &str, execution_arn: &str, secret: &str) {
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.sdk);
        let items = dynamodb
            .query()
            .table_name(env("PAO_REQUESTS_TABLE"))
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("REQ#{id}")),
            )
            .send()
            .await
            .expect("Query");
        assert!(!items.items().is_empty(), "request {id} has no items");
        assert!(
            !format!("{:?}", items.items()).contains(secret),
            "in the table"
        );
        let history = aws_sdk_sfn::Client::new(&self.sdk)
            .get_execution_history()
            .execution_arn(execution_arn)
            .max_results(1000)
            .send()
            .await
            .expect("GetExecutionHistory");
        assert!(
            !history.events().is_empty(),
            "{execution_arn} has no history"
        );
        assert!(!format!("{history:?}").contains(secret), "in the execution");
        for entry in std::fs::read_dir(env("PAO_LOG_DIR")).expect("the stack's logs") {
            let path = entry.expect("a log file").path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(!text.contains(secret), "in {}", path.display());
        }
    }
}

/// An HTTP client for the local API, with a timeout so a hung stack fails the test.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// A name no other test uses, so tests can run in parallel on one stack.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A developer identity for the local stack (`PAO_AUTH_MODE=dev`).
pub fn as_user(
    request: reqwest::RequestBuilder,
    email: &str,
    groups: &[&str],
) -> reqwest::RequestBuilder {
    request
        .header("X-Pao-Dev-User", email)
        .header("X-Pao-Dev-Groups", groups.join(","))
}

/// A member of the admin group.
/// A service calling an IAM-authorised route as `arn` (the dev-mode stand-in
/// for a SigV4 signature).
pub fn as_service(request: reqwest::RequestBuilder, arn: &str) -> reqwest::RequestBuilder {
    request.header("X-Pao-Dev-Service", arn)
}

pub fn as_admin(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    as_user(request, "admin@example.com", &["pao-admins"])
}

/// A submission for the manual messaging-queue example: open to every
/// caller, and it waits for its JIRA issue, so there is time to act on it.
pub fn queue_submission() -> serde_json::Value {
    serde_json::json!({"item_id": "messaging-queue", "fields": {
        "queue_name": "orders-events", "environment": "dev", "queue_type": "standard",
        "throughput": 50, "retention_days": 4, "data_classification": "internal",
        "dead_letter_queue": false, "consumers": "The billing service reads order events."
    }})
}

/// `"<a> <b>"` of each object of the array `list`, such as the method and
/// path of each recorded call.
pub fn pairs(list: &serde_json::Value, a: &str, b: &str, separator: &str) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    format!(
                        "{}{separator}{}",
                        item[a].as_str().unwrap_or_default(),
                        item[b].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The YAML of an automated catalog item for a test: its text `fields`
/// (empty by default; at least one, as every item has a form) and its `actions`, YAML indented as the list under
/// `fulfillment.automated.actions` (six spaces).
pub fn automated_item(id: &str, description: &str, fields: &[&str], actions: &str) -> String {
    let fields: String = fields
        .iter()
        .map(|field| {
            format!("    - {{id: {field}, type: string, label: {field}, default: \"\"}}\n")
        })
        .collect();
    format!(
        "schema_version: 2\n\
         header:\n  id: {id}\n  name: {id}\n  version: 1.0.0\n  owner: team-a\n  category: tests\n  \
         description: {description}\n  tags: [test]\n\
         presentation:\n  fields:\n{fields}\
         fulfillment:\n  mode: automated\n  manual:\n    \
         jira: {{project: OPS, issue_type: Task, summary: \"Build it by hand\"}}\n  \
         automated:\n    actions:\n{actions}"
    )
}
