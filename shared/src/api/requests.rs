//! The requests API: submit, list, read, follow and cancel requests. Bad
//! input is a 4xx with the JSON error shape; someone else's request is 404;
//! a caller over the submission limit gets 429 with `Retry-After`.

use std::num::NonZeroU32;

use lambda_http::http::{header, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{json, route_key, ApiError};
use crate::auth::{self, AuthMode, Principal};
use crate::requests::service::{RequestError, Requests, Submission};
use crate::requests::ticket::{self, Delivery};
use crate::requests::{ListQuery, RequestStatus};

/// The largest request body accepted (a form with a small file field).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
const MAX_KEY_CHARS: usize = 128;

pub struct RequestsApi {
    requests: Requests,
    auth: AuthMode,
    /// The group IAM-authorised service callers are members of.
    service_group: String,
    /// The shared secret JIRA signs its webhook deliveries with.
    jira_secret: Option<SecretString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    item_id: String,
    #[serde(default = "empty_object")]
    fields: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl From<RequestError> for ApiError {
    fn from(err: RequestError) -> Self {
        match err {
            RequestError::NotFound(message) => ApiError::not_found(message),
            RequestError::InvalidFields(fields) => ApiError {
                fields: serde_json::to_value(&fields).ok(),
                ..ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_fields",
                    "some fields are not valid",
                )
            },
            RequestError::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            ),
            err @ RequestError::Finished(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", err.to_string())
            }
            RequestError::BadInput(message) => ApiError::bad_request(message),
            err @ RequestError::RateLimited {
                retry_after_seconds,
                ..
            } => ApiError {
                retry_after_seconds: Some(
                    NonZeroU32::new(retry_after_seconds).unwrap_or(NonZeroU32::MIN),
                ),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    err.to_string(),
                )
            },
            RequestError::Store(err) => err.into(),
        }
    }
}

impl RequestsApi {
    pub fn new(requests: Requests, auth: AuthMode, service_group: String) -> Self {
        Self {
            requests,
            auth,
            service_group,
            jira_secret: None,
        }
    }

    /// Accepts JIRA webhook deliveries signed with `secret`.
    pub fn with_jira_secret(mut self, secret: Option<SecretString>) -> Self {
        self.jira_secret = secret.filter(|s| !s.expose_secret().is_empty());
        self
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        match self.route(&req).await {
            Ok(response) => response,
            Err(err) => err.into_response(),
        }
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let key = route_key(req);
        if key == Some("POST /api/v1/webhooks/jira") {
            // JIRA is no user: the delivery's signature is its credential.
            return self.jira_webhook(req).await;
        }
        // Service routes (`/api/v1/service/...`) sit behind the AWS_IAM
        // authorizer, every other route behind the JWT one; each reads only
        // its own kind of identity.
        let caller = match key {
            Some(key) if key.contains(" /api/v1/service/") => {
                auth::service_principal(req, self.auth, &self.service_group)
            }
            _ => auth::principal(req, self.auth),
        }
        .ok_or_else(ApiError::unauthenticated)?;
        let id = req
            .path_parameters_ref()
            .and_then(|params| params.first("id"))
            .unwrap_or_default()
            .to_string();
        match key {
            Some("POST /api/v1/requests") => self.submit(&caller, req, "/api/v1/requests").await,
            Some("POST /api/v1/service/requests") => {
                self.submit(&caller, req, "/api/v1/service/requests").await
            }
            Some("GET /api/v1/requests") => self.list(&caller, req).await,
            Some("GET /api/v1/requests/{id}" | "GET /api/v1/service/requests/{id}") => {
                let request = self.requests.get(&caller, &id).await?;
                Ok(json(StatusCode::OK, &request))
            }
            Some("GET /api/v1/requests/{id}/status") => {
                let request = self.requests.get(&caller, &id).await?;
                let actions = self.requests.actions(&caller, &id).await?;
                Ok(json(
                    StatusCode::OK,
                    &json!({
                        "id": request.id, "status": request.status, "version": request.version,
                        "reason": request.reason, "updated_at": request.updated_at, "actions": actions,
                    }),
                ))
            }
            Some("GET /api/v1/requests/{id}/logs") => {
                let entries = self.requests.logs(&caller, &id).await?;
                let audit = self.requests.audit(&caller, &id).await?;
                Ok(json(
                    StatusCode::OK,
                    &json!({"id": id, "entries": entries, "audit": audit}),
                ))
            }
            Some("POST /api/v1/requests/{id}/retry") => {
                let request = self.requests.retry(&caller, &id).await?;
                Ok(json(StatusCode::ACCEPTED, &request))
            }
            Some("POST /api/v1/requests/{id}/rollback") => {
                let request = self.requests.rollback(&caller, &id).await?;
                Ok(json(StatusCode::ACCEPTED, &request))
            }
            Some("DELETE /api/v1/requests/{id}") => {
                let request = self.requests.cancel(&caller, &id).await?;
                Ok(json(StatusCode::OK, &request))
            }
            _ => Err(ApiError::no_route(req)),
        }
    }

    async fn jira_webhook(&self, req: &Request) -> Result<Response<Body>, ApiError> {
        let secret = self
            .jira_secret
            .as_ref()
            .map(ExposeSecret::expose_secret)
            .ok_or_else(|| {
                ApiError::not_found("the JIRA webhook is not configured (PAO_JIRA_WEBHOOK_SECRET)")
            })?;
        let body = req.body().as_ref();
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("a delivery may be at most {MAX_BODY_BYTES} bytes"),
            ));
        }
        let signature = req
            .headers()
            .get("x-hub-signature")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !ticket::verify(secret.as_bytes(), body, signature) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                "the delivery's X-Hub-Signature is not the HMAC-SHA256 of its body under the shared secret",
            ));
        }
        let event = ticket::parse(body).map_err(ApiError::bad_request)?;
        let answer = match self.requests.ticket_changed(&event).await? {
            Delivery::Resumed(outcome) => json!({"outcome": outcome}),
            Delivery::Ignored(reason) => json!({"outcome": "ignored", "reason": reason}),
        };
        Ok(json(StatusCode::OK, &answer))
    }

    /// Submits a request; the answer's `Location` is `{base}/{id}`, on the
    /// caller's own side of the API (user or service routes).
    async fn submit(
        &self,
        caller: &Principal,
        req: &Request,
        base: &str,
    ) -> Result<Response<Body>, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/json")
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the request as application/json",
            ));
        }
        let body = req.body().as_ref();
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("a request body may be at most {MAX_BODY_BYTES} bytes"),
            ));
        }
        let parsed: SubmitBody = serde_json::from_slice(body).map_err(|err| {
            // serde's message names the problem and its position, not the values.
            ApiError::bad_request(format!(
                "the body is not a valid request: {}",
                err.to_string().split(" at line").next().unwrap_or_default()
            ))
        })?;
        let key = match req.headers().get("idempotency-key") {
            None => None,
            Some(value) => {
                let key = value.to_str().unwrap_or_default().trim();
                if key.is_empty()
                    || key.chars().count() > MAX_KEY_CHARS
                    || key.chars().any(char::is_control)
                {
                    return Err(ApiError::bad_request(format!(
                        "Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable characters"
                    )));
                }
                Some(key.to_string())
            }
        };
        let request = self
            .requests
            .submit(
                caller,
                Submission {
                    item_id: parsed.item_id,
                    fields: parsed.fields,
                    idempotency_key: key,
                },
            )
            .await?;
        let mut response = json(StatusCode::ACCEPTED, &request);
        if let Ok(location) = header::HeaderValue::from_str(&format!("{base}/{}", request.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    }

    async fn list(&self, caller: &Principal, req: &Request) -> Result<Response<Body>, ApiError> {
        let params = req.query_string_parameters_ref();
        // A value is taken as given (the document says what each may be);
        // an empty one, as a form sends for a filter left blank, is none.
        let get = |name: &str| params.and_then(|p| p.first(name)).filter(|v| !v.is_empty());
        let status = get("status")
            .map(|s| s.parse::<RequestStatus>().map_err(ApiError::bad_request))
            .transpose()?;
        let limit = match get("limit") {
            None => 20,
            // Digits only: Rust's parse would also take `+5`.
            Some(text) => Some(text)
                .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<usize>().ok())
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request("limit must be a whole number from 1 to 100")
                })?,
        };
        let query = ListQuery {
            subject: None,
            status,
            item_id: get("item").map(str::to_string),
            limit,
            after: get("next_token").map(str::to_string),
        };
        let page = self.requests.list(caller, query).await?;
        Ok(json(
            StatusCode::OK,
            &json!({"requests": page.requests, "next_token": page.next}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::test_support::{body_json, request_with};
    use crate::requests::service::limit_tests::world;

    /// `POST /api/v1/requests` of the demo item, as `email` in dev mode.
    fn submission(email: &str, name: &str) -> Request {
        let path = "/api/v1/requests";
        let route = "POST /api/v1/requests";
        let body = json!({"item_id": "demo-item", "fields": {"name": name, "size": 3}});
        let headers = json!({
            "content-type": "application/json",
            crate::auth::DEV_USER_HEADER: email,
            crate::auth::DEV_GROUPS_HEADER: "developers",
        });
        request_with("POST", path, route, headers, Some(&body.to_string()))
    }

    #[test]
    fn over_the_limit_is_429_with_retry_after_and_the_error_shape() {
        let response = ApiError::from(RequestError::RateLimited {
            per_minute: 30,
            retry_after_seconds: 12,
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "12");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_json(&response),
            json!({"error": {
                "code": "rate_limited",
                "message": "at most 30 new requests per minute per caller; try again in 12 s",
            }})
        );
    }

    #[test]
    fn retry_after_is_never_0() {
        let response = ApiError::from(RequestError::RateLimited {
            per_minute: 30,
            retry_after_seconds: 0,
        })
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn a_submission_over_the_callers_limit_is_answered_429() {
        let world = world(1).await;
        let api = RequestsApi::new(world.requests, AuthMode::Dev, "services".to_string());
        let made = api.handle(submission("dev@example.com", "a")).await;
        assert_eq!(made.status(), StatusCode::ACCEPTED, "{}", body_json(&made));
        assert!(made.headers().get(header::RETRY_AFTER).is_none());

        let refused = api.handle(submission("dev@example.com", "b")).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // The world's clock stands 12 s before the next minute.
        assert_eq!(refused.headers()[header::RETRY_AFTER], "12");
        let body = body_json(&refused);
        assert_eq!(body["error"]["code"], "rate_limited");
        assert_eq!(
            body["error"]["message"],
            "at most 1 new request per minute per caller; try again in 12 s"
        );

        let other = api.handle(submission("other@example.com", "b")).await;
        assert_eq!(other.status(), StatusCode::ACCEPTED);
    }
}
