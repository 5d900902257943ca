//! A developer at the portal: publishes a test item the way a platform
//! team's CI does (an upload to the catalog bucket), then submits requests
//! against it and watches them through the API.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{as_user, env, http, pairs, unique, Stack};

pub struct Portal {
    pub stack: Stack,
    pub user: String,
    groups: Vec<String>,
}

impl Portal {
    /// A fresh developer in `groups`.
    pub async fn new(groups: &[&str]) -> Self {
        Self {
            stack: Stack::connect().await,
            user: format!("{}@example.com", unique("dev")),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// Uploads `yaml` as item `id` and checks the catalog serves it.
    pub async fn publish(&self, id: &str, yaml: String) {
        aws_sdk_s3::Client::new(&self.stack.sdk)
            .put_object()
            .bucket(env("PAO_CATALOG_BUCKET"))
            .key(format!("it/{id}.yaml"))
            .body(ByteStream::from(yaml.into_bytes()))
            .send()
            .await
            .expect("PutObject");
        let (status, body) = self
            .call(Method::GET, &format!("/api/v1/catalog/items/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "the item is published: {body}");
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
        let request = as_user(
            http().request(method, self.stack.url(path)),
            &self.user,
            &groups,
        );
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// The values item `item`'s form starts with: each field's default,
    /// read from the form's schema as the portal reads it.
    pub async fn form_defaults(&self, item: &str) -> Value {
        let (status, form) = self
            .call(
                Method::GET,
                &format!("/api/v1/catalog/items/{item}/schema"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{form}");
        let defaults: serde_json::Map<String, Value> = form["schema"]["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(field, property)| Some((field.clone(), property.get("default")?.clone())))
            .collect();
        Value::Object(defaults)
    }

    /// Submits a request of `item` and returns its id.
    pub async fn submit(&self, item: &str, fields: Value) -> String {
        let body = json!({"item_id": item, "fields": fields});
        let (status, body) = self
            .call(Method::POST, "/api/v1/requests", Some(body))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["id"].as_str().expect("an id").to_string()
    }

    /// Polls the status route until the request is in one of `statuses`,
    /// for at most `limit`.
    pub async fn wait_for(&self, id: &str, statuses: &[&str], limit: Duration) -> Value {
        let started = std::time::Instant::now();
        let mut last = Value::Null;
        while started.elapsed() < limit {
            let (_, status) = self
                .call(Method::GET, &format!("/api/v1/requests/{id}/status"), None)
                .await;
            if statuses.iter().any(|s| status["status"] == *s) {
                return status;
            }
            last = status;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let logs = self.logs(id).await;
        panic!("request {id} never reached {statuses:?}; last {last}; logs {logs:#?}");
    }

    /// Waits until the request ends (`Completed` or `Failed`) and asserts
    /// it ended `expected`, showing its log when not.
    pub async fn ends(&self, id: &str, expected: &str, limit: Duration) -> Value {
        let status = self.wait_for(id, &["Completed", "Failed"], limit).await;
        if status["status"] != expected {
            let logs = self.logs(id).await;
            panic!(
                "request {id} ended {}, not {expected}: {status}; logs {logs:#?}",
                status["status"]
            );
        }
        status
    }

    /// Rolls the completed request back and asserts it ends `RolledBack`.
    pub async fn roll_back(&self, id: &str, limit: Duration) {
        let path = format!("/api/v1/requests/{id}/rollback");
        let (code, body) = self.call(Method::POST, &path, None).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{body}");
        let rolled = self.wait_for(id, &["RolledBack", "Failed"], limit).await;
        if rolled["status"] != "RolledBack" {
            let logs = self.logs(id).await;
            panic!("request {id} did not roll back: {rolled}; logs {logs:#?}");
        }
    }

    /// The request's log as `source: message` lines.
    pub async fn logs(&self, id: &str) -> Vec<String> {
        let (_, logs) = self
            .call(Method::GET, &format!("/api/v1/requests/{id}/logs"), None)
            .await;
        pairs(&logs["entries"], "source", "message", ": ")
    }
}
