//! The health routes: through the local gateway with the real function, and
//! the real SDK adapters against the emulator when a dependency is missing
//! or unreachable.

use std::sync::Arc;
use std::time::Duration;

use pao::aws::{dynamodb::TableProbe, s3::BucketProbe, sfn::StateMachineProbe};
use pao::health::{Health, ProbeFailure, Status};
use pao_integration::{env, http, unique, Stack};
use serde_json::Value;

#[tokio::test]
async fn health_answers_200_with_every_dependency_reachable() {
    let stack = Stack::connect().await;
    let response = http()
        .get(stack.url("/api/v1/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    for dependency in ["dynamodb", "s3", "stepfunctions"] {
        assert_eq!(
            body["dependencies"][dependency]["reachable"], true,
            "{dependency}"
        );
    }
}

#[tokio::test]
async fn ready_answers_200() {
    let stack = Stack::connect().await;
    let response = http()
        .get(stack.url("/api/v1/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"ready": true, "failing": []}));
}

#[tokio::test]
async fn an_unknown_route_is_404() {
    let stack = Stack::connect().await;
    let response = http()
        .get(stack.url("/api/v1/no-such-route"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_missing_table_is_named_as_not_found() {
    let stack = Stack::connect().await;
    let health = Health::new(
        vec![
            Arc::new(TableProbe::new(
                aws_sdk_dynamodb::Client::new(&stack.sdk),
                unique("missing-table"),
            )),
            Arc::new(BucketProbe::new(
                aws_sdk_s3::Client::new(&stack.sdk),
                env("PAO_CATALOG_BUCKET"),
            )),
            Arc::new(StateMachineProbe::new(
                aws_sdk_sfn::Client::new(&stack.sdk),
                env("PAO_SELFTEST_STATE_MACHINE_ARN"),
            )),
        ],
        Duration::from_secs(5),
    );
    let report = health.check().await;
    assert_eq!(report.status, Status::Unavailable);
    assert_eq!(report.failing, vec!["dynamodb"]);
    assert_eq!(
        report.dependencies["dynamodb"].failure,
        Some(ProbeFailure::NotFound)
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_named_as_unreachable() {
    let stack = Stack::connect().await;
    // Nothing listens on port 9 of the loopback: the connection is refused.
    let dead = aws_sdk_s3::config::Builder::from(&stack.sdk)
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let health = Health::new(
        vec![Arc::new(BucketProbe::new(
            aws_sdk_s3::Client::from_conf(dead),
            env("PAO_CATALOG_BUCKET"),
        ))],
        Duration::from_secs(10),
    );
    let report = health.check().await;
    assert_eq!(report.failing, vec!["s3"]);
    assert_eq!(
        report.dependencies["s3"].failure,
        Some(ProbeFailure::Unreachable)
    );
}
