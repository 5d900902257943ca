//! The HTTP edge shared by the API functions: which route API Gateway matched,
//! JSON responses, and the one error shape every route answers with. Domain
//! errors become HTTP responses here and nowhere else.

pub mod catalog;
pub mod health;
pub mod requests;

use std::num::NonZeroU32;

use lambda_http::http::{header, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

/// The route API Gateway matched, such as `GET /api/v1/health`: the HTTP API
/// puts it in the request context, and routing on it keeps each function's
/// routes exactly those that `template.yaml` gives it.
pub fn route_key(req: &Request) -> Option<&str> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.route_key.as_deref(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::Binary(bytes))
            .unwrap_or_else(|_| internal_error()),
        Err(err) => {
            tracing::error!(error = %err, "response did not serialize");
            internal_error()
        }
    }
}

fn internal_error() -> Response<Body> {
    let mut response = Response::new(Body::Text(
        r#"{"error":{"code":"internal","message":"internal error"}}"#.to_string(),
    ));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The one error shape of the API: `{"error": {"code": "...", "message": "..."}}`.
/// `code` is stable for programs; `message` is for people and never carries
/// internal details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Per-field problems of a submission, when that is what went wrong.
    pub fields: Option<serde_json::Value>,
    /// Seconds to wait before trying again, sent as `Retry-After` (at
    /// least 1: 0 would invite a retry at once).
    pub retry_after_seconds: Option<NonZeroU32>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a serde_json::Value>,
}

impl ApiError {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            fields: None,
            retry_after_seconds: None,
        }
    }

    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: None,
            retry_after_seconds: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            fields: None,
            retry_after_seconds: None,
        }
    }

    pub fn unauthenticated() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthenticated",
            message: "sign in: this route needs an authenticated caller".to_string(),
            fields: None,
            retry_after_seconds: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            fields: None,
            retry_after_seconds: None,
        }
    }

    /// A dependency failed; the detail is in the log, not in the answer.
    pub fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: "a service PAO depends on did not answer; try again shortly".to_string(),
            fields: None,
            retry_after_seconds: None,
        }
    }

    pub fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error".to_string(),
            fields: None,
            retry_after_seconds: None,
        }
    }

    pub fn no_route(req: &Request) -> Self {
        Self::not_found(format!(
            "no route for {} {}",
            req.method(),
            req.uri().path()
        ))
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = json(
            self.status,
            &ErrorBody {
                error: ErrorDetail {
                    code: self.code,
                    message: &self.message,
                    fields: self.fields.as_ref(),
                },
            },
        );
        if let Some(seconds) = self.retry_after_seconds {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from(seconds.get()),
            );
        }
        response
    }
}

impl From<crate::catalog::index::StoreError> for ApiError {
    fn from(err: crate::catalog::index::StoreError) -> Self {
        use crate::catalog::index::StoreError;
        match err {
            StoreError::Unavailable(_) => Self::unavailable(),
            StoreError::Corrupt(detail) => {
                tracing::error!(detail, "corrupt catalog record");
                Self::internal()
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use lambda_http::Request;

    /// An HTTP API (payload 2.0) event for `method path`, matched to `route`.
    pub fn request(method: &str, path: &str, route: &str) -> Request {
        let headers = serde_json::json!({"accept": "application/json"});
        request_with(method, path, route, headers, None)
    }

    /// The same with `headers` and a `body`.
    pub fn request_with(
        method: &str,
        path: &str,
        route: &str,
        headers: serde_json::Value,
        body: Option<&str>,
    ) -> Request {
        let mut event = serde_json::json!({
            "version": "2.0",
            "routeKey": route,
            "rawPath": path,
            "rawQueryString": "",
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": "localhost",
                "domainPrefix": "localhost",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "test"},
                "requestId": "test",
                "routeKey": route,
                "stage": "$default",
                "time": "23/Nov/2026:12:00:00 +0000",
                "timeEpoch": 0
            },
            "isBase64Encoded": false
        });
        if let Some(body) = body {
            event["body"] = serde_json::Value::from(body);
        }
        lambda_http::request::from_str(&event.to_string()).expect("a valid HTTP API event")
    }

    pub fn body_json(response: &lambda_http::Response<lambda_http::Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).expect("a JSON body")
    }
}
