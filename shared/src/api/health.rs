//! `GET /api/v1/health`, `GET /api/v1/health/ready` and
//! `GET /api/v1/openapi.json`, the OpenAPI document of the whole API.

use std::sync::LazyLock;
use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::{json, route_key, ApiError};
use crate::health::{Health, HealthReport};

/// A dependency check that takes longer than this counts as down: health
/// endpoints must answer fast, above all when something is wrong.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The OpenAPI 3.1 document of the API (`shared/openapi.json`), parsed once.
/// A unit test proves it parses; were it not to, the route answers 500
/// rather than the function panicking.
static OPENAPI: LazyLock<Option<serde_json::Value>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../openapi.json"))
        .inspect_err(|err| tracing::error!(error = %err, "openapi.json does not parse"))
        .ok()
});

pub struct HealthApi {
    health: Health,
}

#[derive(Serialize)]
struct Readiness<'a> {
    ready: bool,
    failing: &'a [&'static str],
}

impl HealthApi {
    pub fn new(health: Health) -> Self {
        Self { health }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        match route_key(&req) {
            Some("GET /api/v1/health") => report_response(&self.health.check().await),
            Some("GET /api/v1/health/ready") => {
                let report = self.health.check().await;
                let body = Readiness {
                    ready: report.is_healthy(),
                    failing: &report.failing,
                };
                json(status_of(&report), &body)
            }
            Some("GET /api/v1/openapi.json") => match &*OPENAPI {
                Some(document) => json(StatusCode::OK, document),
                None => ApiError::internal().into_response(),
            },
            _ => ApiError::no_route(&req).into_response(),
        }
    }
}

fn status_of(report: &HealthReport) -> StatusCode {
    if report.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn report_response(report: &HealthReport) -> Response<Body> {
    json(status_of(report), report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_support::{body_json, request};
    use crate::health::{Fixed, ProbeFailure};
    use std::sync::Arc;

    fn api(s3: Result<(), ProbeFailure>) -> HealthApi {
        HealthApi::new(Health::new(
            vec![
                Arc::new(Fixed("dynamodb", Ok(()))),
                Arc::new(Fixed("s3", s3)),
            ],
            Duration::from_secs(1),
        ))
    }

    #[tokio::test]
    async fn health_is_200_with_every_dependency() {
        let response = api(Ok(()))
            .handle(request("GET", "/api/v1/health", "GET /api/v1/health"))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = body_json(&response);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["dependencies"]["s3"]["reachable"], true);
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    }

    #[tokio::test]
    async fn health_is_503_naming_the_dependency_that_is_down() {
        let response = api(Err(ProbeFailure::Unreachable))
            .handle(request("GET", "/api/v1/health", "GET /api/v1/health"))
            .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body_json(&response);
        assert_eq!(body["failing"], serde_json::json!(["s3"]));
        assert_eq!(body["dependencies"]["s3"]["failure"], "unreachable");
    }

    #[tokio::test]
    async fn ready_answers_in_short() {
        let ok = api(Ok(()))
            .handle(request(
                "GET",
                "/api/v1/health/ready",
                "GET /api/v1/health/ready",
            ))
            .await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(
            body_json(&ok),
            serde_json::json!({"ready": true, "failing": []})
        );

        let down = api(Err(ProbeFailure::Timeout))
            .handle(request(
                "GET",
                "/api/v1/health/ready",
                "GET /api/v1/health/ready",
            ))
            .await;
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_json(&down)["failing"], serde_json::json!(["s3"]));
    }

    #[tokio::test]
    async fn openapi_serves_the_document_as_written() {
        let response = api(Err(ProbeFailure::Unreachable))
            .handle(request(
                "GET",
                "/api/v1/openapi.json",
                "GET /api/v1/openapi.json",
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = body_json(&response);
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../../openapi.json")).expect("openapi.json parses");
        assert_eq!(body, file);
        assert_eq!(body["openapi"], "3.1.0");
        assert!(body["paths"]["/api/v1/openapi.json"]["get"].is_object());
    }

    #[tokio::test]
    async fn an_unknown_route_is_a_json_404() {
        let response = api(Ok(()))
            .handle(request("GET", "/api/v1/nope", "$default"))
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_json(&response)["error"]["code"], "not_found");
    }
}
