use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::outbound::AllowList;
use crate::template::render::{RequestVars, TemplateEnv};

const TOKEN: &str = "s3cr3t-token";

fn context(base: &str) -> Context {
    let base = base.to_string();
    let env = TemplateEnv::from_env(move |name| match name {
        "PAO_TEMPLATE_ENV" => Some("SERVICE_URL".to_string()),
        "PAO_TEMPLATE_SECRETS" => Some("SERVICE_TOKEN".to_string()),
        "SERVICE_URL" => Some(base.clone()),
        "SERVICE_TOKEN" => Some(TOKEN.to_string()),
        _ => None,
    })
    .unwrap();
    let mut response = Map::new();
    response.insert("network".to_string(), json!({"vpc_id": "vpc-1"}));
    Context::new(
        json!({"db_name": "orders", "storage_gb": 20}),
        json!({"id": "rest-database", "owner": "data-platform"}),
        RequestVars {
            id: "req-1",
            timestamp: "2026-11-23T12:00:00Z",
            user_id: "u-1",
            user_email: "dev@example.com",
        },
        &env,
        response,
    )
}

/// The local server is on loopback, which only an allow-list opens.
fn egress() -> Egress {
    Egress::new(AllowList::parse("127.0.0.1").unwrap()).unwrap()
}

fn database_config() -> Value {
    json!({
        "method": "POST",
        "url": "{{env.SERVICE_URL}}/v1/databases",
        "headers": {"Authorization": "Bearer {{env.SERVICE_TOKEN}}", "X-Request-Id": "{{request.id}}"},
        "query": {"owner": "{{header.owner}}"},
        "body": {"name": "{{fields.db_name}}", "storage_gb": "{{fields.storage_gb}}", "vpc": "{{response.network.vpc_id}}"},
        "success_codes": [201],
        "response_mapping": {"id": "$.id", "endpoint": "$.connection.host", "replicas": "$.replicas[*].az"},
        "timeout_seconds": 5,
    })
}

async fn run(server: &MockServer, config: Value) -> Result<Map<String, Value>, ActionError> {
    let prepared = prepare(Kind::RestApi, &config, &context(&server.uri()))?;
    execute(&egress(), prepared, &[TOKEN]).await
}

#[tokio::test]
async fn a_call_is_rendered_sent_and_mapped_into_outputs() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/databases"))
        .and(query_param("owner", "data-platform"))
        .and(header("authorization", "Bearer s3cr3t-token"))
        .and(header("x-request-id", "req-1"))
        .and(body_json(
            json!({"name": "orders", "storage_gb": 20, "vpc": "vpc-1"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": "db-42", "connection": {"host": "orders.db.internal", "port": 5432},
            "replicas": [{"az": "a"}, {"az": "b"}],
        })))
        .expect(1)
        .mount(&server)
        .await;
    let outputs = run(&server, database_config()).await.unwrap();
    assert_eq!(
        Value::Object(outputs),
        json!({"status_code": 201, "id": "db-42", "endpoint": "orders.db.internal", "replicas": ["a", "b"]})
    );
}

#[tokio::test]
async fn answers_are_classified_for_the_state_machine() {
    for (status, expected) in [
        (503, "Retryable"),
        (500, "Retryable"),
        (429, "Throttled"),
        (404, "Fatal"),
        (400, "Fatal"),
        (200, "Fatal"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_string(format!("upstream said no; echo: Bearer {TOKEN}")),
            )
            .mount(&server)
            .await;
        let err = run(&server, database_config()).await.unwrap_err();
        assert_eq!(err.name(), expected, "{status}: {err}");
        let message = err.to_string();
        assert!(
            message.starts_with("POST http://127.0.0.1/v1/databases answered"),
            "{message}"
        );
        assert!(message.contains("upstream said no"), "{message}");
        assert!(!message.contains(TOKEN), "{message}");
    }
}

#[tokio::test]
async fn a_failed_answer_is_quoted_without_any_part_of_a_secret() {
    // The token straddles the 200th character, where the quote is cut.
    let server = MockServer::start().await;
    let body = format!("{}{TOKEN} more", "x".repeat(195));
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string(body))
        .mount(&server)
        .await;
    let message = run(&server, database_config())
        .await
        .unwrap_err()
        .to_string();
    assert!(message.ends_with("xxxxx[reda"), "{message}");
    assert!(!message.contains(&TOKEN[..5]), "{message}");

    // An action whose answer carries secrets is never quoted.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_string(r#"{"password": "hunter2-generated"}"#),
        )
        .mount(&server)
        .await;
    let mut config = database_config();
    config["response_mapping"] = json!({"password": "$.password"});
    config["secret_outputs"] = json!(["password"]);
    let message = run(&server, config).await.unwrap_err().to_string();
    assert_eq!(
        message,
        "POST http://127.0.0.1/v1/databases answered 200 OK"
    );
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_worth_retrying() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let mut config = database_config();
    config["timeout_seconds"] = json!(1);
    let err = run(&server, config).await.unwrap_err();
    assert_eq!(err.name(), "Retryable", "{err}");
    assert!(err.to_string().contains("no answer within 1 s"), "{err}");
}

#[tokio::test]
async fn a_mapping_that_finds_nothing_fails_the_action() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"name": "orders"})))
        .mount(&server)
        .await;
    let err = run(&server, database_config()).await.unwrap_err();
    assert_eq!(err.name(), "Fatal");
    assert!(err.to_string().contains("response_mapping."), "{err}");
    assert!(
        err.to_string().contains("may need removing by hand"),
        "{err}"
    );
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_string("<html>created</html>"))
        .mount(&server)
        .await;
    let err = run(&server, database_config()).await.unwrap_err();
    assert!(err.to_string().contains("without a JSON body"), "{err}");
    assert!(
        err.to_string().contains("may need removing by hand"),
        "{err}"
    );
}

#[tokio::test]
async fn internal_addresses_need_the_allow_list() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let prepared = prepare(
        Kind::Webhook,
        &json!({"url": server.uri()}),
        &context(&server.uri()),
    )
    .unwrap();
    let err = execute(&Egress::new(AllowList::default()).unwrap(), prepared, &[])
        .await
        .unwrap_err();
    assert_eq!(err.name(), "Fatal", "{err}");
    assert!(err.to_string().contains("internal address"), "{err}");
}

#[tokio::test]
async fn a_webhook_posts_its_body_and_reads_nothing_back() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/provisioned"))
        .and(body_json(
            json!({"text": "orders is ready for dev@example.com"}),
        ))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let config = json!({
        "url": "{{env.SERVICE_URL}}/hooks/provisioned",
        "body": {"text": "{{fields.db_name}} is ready for {{request.user.email}}"},
    });
    let prepared = prepare(Kind::Webhook, &config, &context(&server.uri())).unwrap();
    let outputs = execute(&egress(), prepared, &[]).await.unwrap();
    assert_eq!(Value::Object(outputs), json!({"status_code": 204}));
}

#[test]
fn secrets_go_in_headers_only_and_bad_configs_are_fatal() {
    let context = context("https://service.example.com");
    for (config, needle) in [
        (
            json!({"url": "https://x.example.com/?t={{env.SERVICE_TOKEN}}"}),
            "may only be used in a header",
        ),
        (
            json!({"url": "https://x.example.com", "body": {"t": "{{env.SERVICE_TOKEN}}"}}),
            "may only be used in a header",
        ),
        (
            json!({"url": "https://x.example.com", "query": {"t": "{{env.SERVICE_TOKEN}}"}}),
            "may only be used in a header",
        ),
        (
            json!({"url": "{{fields.missing}}"}),
            "`fields.missing` is not defined",
        ),
        (
            json!({"url": "https://x.example.com", "method": "TRACE"}),
            "config.method",
        ),
        (json!({"url": "{{fields.storage_gb}}"}), "`20` is not a URL"),
        (
            json!({"url": "https://x.example.com", "headers": {"X-Size": "{{fields.storage_gb}}"}}),
            "config, once rendered",
        ),
        (
            json!({"url": "https://x.example.com", "timeout_seconds": 0}),
            "config.timeout_seconds",
        ),
        (
            json!({"url": "https://x.example.com", "response_mapping": {"id": "$[?"}}),
            "is not JSONPath",
        ),
        (
            json!({"url": "https://x.example.com", "response_mapping": {"id": "$.id"}, "secret_outputs": ["key"]}),
            "`key` is not an output of response_mapping",
        ),
    ] {
        let err = prepare(Kind::RestApi, &config, &context).unwrap_err();
        assert_eq!(err.name(), "Fatal");
        assert!(err.to_string().contains(needle), "{config}: {err}");
        assert!(!err.to_string().contains(TOKEN));
    }
    let prepared = prepare(
        Kind::RestApi,
        &json!({"url": "https://x.example.com/a?b=c"}),
        &context,
    )
    .unwrap();
    assert_eq!(prepared.describe(), "GET https://x.example.com/a");
    let prepared = prepare(
        Kind::RestApi,
        &json!({"url": "https://x.example.com", "response_mapping": {"key": "$.key"}, "secret_outputs": ["key"]}),
        &context,
    )
    .unwrap();
    assert_eq!(prepared.secret_outputs(), ["key"]);
}
