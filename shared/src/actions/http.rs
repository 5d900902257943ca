//! The `rest-api` and `webhook` actions: one HTTP call each, built from the
//! action's config rendered at run time, its answer classified for the
//! state machine (5xx, 429 and time-outs are worth retrying, any other
//! failure is not) and, for rest-api, mapped into the action's outputs with
//! RFC 9535 JSONPath.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_json_path::JsonPath;

use super::driver::{Driver, Level, Outputs, Progress, Step, Undone};
use crate::action::ActionError;
use crate::outbound::{Call, Egress, Reply};
use crate::template::render::{render, render_url, Context, Secrets};

/// The two kinds of HTTP action differ only in their defaults and in
/// whether they read the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RestApi,
    Webhook,
}

/// A config after rendering, with its types checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rendered {
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    query: BTreeMap<String, Value>,
    body: Option<Value>,
    success_codes: Option<Vec<u16>>,
    #[serde(default)]
    response_mapping: BTreeMap<String, String>,
    #[serde(default)]
    secret_outputs: Vec<String>,
    timeout_seconds: Option<u64>,
}

/// A call ready to send, with what to make of its answer.
#[derive(Debug)]
pub struct Prepared {
    call: Call,
    success_codes: Vec<u16>,
    mapping: Vec<(String, JsonPath)>,
    secret_outputs: Vec<String>,
}

impl Prepared {
    /// `POST https://host/path`: what a log line may say of the call (no
    /// query string, no headers, no body).
    pub fn describe(&self) -> String {
        let shown = reqwest::Url::parse(&self.call.url)
            .map(|url| {
                format!(
                    "{}://{}{}",
                    url.scheme(),
                    url.host_str().unwrap_or(""),
                    url.path()
                )
            })
            .unwrap_or_else(|_| "an invalid URL".to_string());
        format!("{} {shown}", self.call.method)
    }

    /// The outputs whose values are secrets, to be kept out of the request.
    pub fn secret_outputs(&self) -> &[String] {
        &self.secret_outputs
    }
}

const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// Said when a call succeeded but its answer could not be read: PAO does
/// not know what the call made, so compensation cannot undo it.
const UNMAPPED: &str =
    "; the call itself succeeded, so whatever it made is not known to PAO and may need removing by hand";
const MAX_TIMEOUT_SECONDS: u64 = 300;

/// Renders `config` and checks what rendering produced. A config that does
/// not render will not render on a retry either: every error is fatal.
pub fn prepare(kind: Kind, config: &Value, context: &Context) -> Result<Prepared, ActionError> {
    let fatal = |message: String| ActionError::Fatal(message);
    let Value::Object(config) = config else {
        return Err(fatal("config: must be a mapping".to_string()));
    };
    let mut rendered = Map::new();
    for (key, value) in config {
        // Secrets may be sent in headers only, never in a URL or a body.
        let secrets = if key == "headers" {
            Secrets::Allowed
        } else {
            Secrets::Refused
        };
        // The mapping's JSONPath expressions and output names are not templates.
        let at = format!("config.{key}");
        let value = match (key.as_str(), value) {
            ("response_mapping" | "secret_outputs", _) => value.clone(),
            ("url", Value::String(url)) => {
                render_url(url, context, &at).map_err(|err| fatal(err.to_string()))?
            }
            _ => render(value, context, secrets, &at).map_err(|err| fatal(err.to_string()))?,
        };
        rendered.insert(key.clone(), value);
    }
    let rendered: Rendered = serde_json::from_value(Value::Object(rendered))
        .map_err(|err| fatal(format!("config, once rendered: {err}")))?;

    let method = match (&rendered.method, kind) {
        (Some(method), _) => method.to_ascii_uppercase(),
        (None, Kind::RestApi) => "GET".to_string(),
        (None, Kind::Webhook) => "POST".to_string(),
    };
    let method = match method.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => Method::from_bytes(method.as_bytes())
            .map_err(|_| fatal(format!("config.method: `{method}` is not an HTTP method")))?,
        other => {
            return Err(fatal(format!(
                "config.method: `{other}` is not one of GET, POST, PUT, PATCH, DELETE"
            )))
        }
    };
    let mut url = reqwest::Url::parse(&rendered.url).map_err(|err| {
        fatal(format!(
            "config.url: `{}` is not a URL ({err})",
            rendered.url
        ))
    })?;
    if !rendered.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &rendered.query {
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            pairs.append_pair(name, &value);
        }
    }
    let timeout = rendered.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if !(1..=MAX_TIMEOUT_SECONDS).contains(&timeout) {
        return Err(fatal(format!(
            "config.timeout_seconds: {timeout} is not between 1 and {MAX_TIMEOUT_SECONDS}"
        )));
    }
    let mapping = rendered
        .response_mapping
        .iter()
        .map(|(name, path)| {
            JsonPath::parse(path)
                .map(|parsed| (name.clone(), parsed))
                .map_err(|err| {
                    fatal(format!(
                        "config.response_mapping.{name}: `{path}` is not JSONPath: {err}"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    if let Some(name) = rendered
        .secret_outputs
        .iter()
        .find(|name| !rendered.response_mapping.contains_key(*name))
    {
        return Err(fatal(format!(
            "config.secret_outputs: `{name}` is not an output of response_mapping"
        )));
    }
    Ok(Prepared {
        call: Call {
            method,
            url: url.to_string(),
            headers: rendered.headers.into_iter().collect(),
            body: rendered.body,
            timeout: Duration::from_secs(timeout),
        },
        success_codes: rendered
            .success_codes
            .unwrap_or_else(|| vec![200, 201, 202, 204]),
        mapping,
        secret_outputs: rendered.secret_outputs,
    })
}

/// Sends the call and makes the action's outputs of the answer:
/// `status_code`, and each `response_mapping` entry. `redact` holds values
/// that must never appear in a message (the secrets of the env namespace).
pub async fn execute(
    egress: &Egress,
    prepared: Prepared,
    redact: &[&str],
) -> Result<Map<String, Value>, ActionError> {
    let described = prepared.describe();
    let reply = egress
        .send(prepared.call)
        .await
        .map_err(|err| err.into_action(&described))?;
    let status = reply.status;
    if !prepared.success_codes.contains(&status.as_u16()) {
        // An answer that can carry secrets is not quoted at all.
        let quoted = if prepared.secret_outputs.is_empty() {
            excerpt(&reply, redact)
        } else {
            String::new()
        };
        let message = format!("{described} answered {status}{quoted}");
        return Err(if status == StatusCode::TOO_MANY_REQUESTS {
            ActionError::Throttled(message)
        } else if status.is_server_error() {
            ActionError::Retryable(message)
        } else {
            ActionError::Fatal(message)
        });
    }
    let mut outputs = Map::new();
    outputs.insert("status_code".to_string(), Value::from(status.as_u16()));
    if prepared.mapping.is_empty() {
        return Ok(outputs);
    }
    let body: Value = serde_json::from_slice(&reply.body).map_err(|_| {
        ActionError::Fatal(format!(
            "{described} answered {status} without a JSON body, so response_mapping cannot apply{UNMAPPED}"
        ))
    })?;
    for (name, path) in prepared.mapping {
        let found = path.query(&body).all();
        let value = match found.as_slice() {
            [] => {
                return Err(ActionError::Fatal(format!(
                    "response_mapping.{name}: `{path}` matched nothing in the answer of {described}{UNMAPPED}"
                )))
            }
            [one] => (*one).clone(),
            many => Value::Array(many.iter().map(|v| (*v).clone()).collect()),
        };
        outputs.insert(name, value);
    }
    Ok(outputs)
}

/// `: <the first 200 characters of the answer>`, secrets blanked, for an
/// operator reading why a call failed.
fn excerpt(reply: &Reply, redact: &[&str]) -> String {
    // Blanked before it is cut, so no part of a secret survives the cut.
    let text = crate::template::render::redact(
        &String::from_utf8_lossy(&reply.body),
        redact.iter().copied(),
    );
    let text: String = text.chars().take(200).collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// The rest-api and webhook driver: a start is the call; a poll after a
/// retryable failure calls again; compensation is the item's `rollback`
/// call, which may read the action's own outputs as `response.<id>.*`.
pub struct HttpDriver {
    kind: Kind,
    egress: Egress,
    /// Values no message may show (the env namespace's secrets).
    redact: Vec<String>,
}

impl HttpDriver {
    pub fn new(kind: Kind, egress: Egress, redact: Vec<String>) -> Self {
        Self {
            kind,
            egress,
            redact,
        }
    }
}

#[async_trait::async_trait]
impl Driver for HttpDriver {
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let config = Value::Object(step.action.config.clone());
        let prepared = prepare(self.kind, &config, step.context)?;
        let message = format!("attempt {}: {}", step.attempt, prepared.describe());
        step.journal.log(Level::Info, &message).await?;
        let secret = prepared.secret_outputs().to_vec();
        let redact: Vec<&str> = self.redact.iter().map(String::as_str).collect();
        let values = execute(&self.egress, prepared, &redact).await?;
        Ok(Progress::Done(Outputs { values, secret }))
    }

    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError> {
        let Some(rollback) = &step.action.rollback else {
            return Ok(Undone::Kept("the action has no rollback".to_string()));
        };
        let prepared = prepare(self.kind, &Value::Object(rollback.clone()), step.context)?;
        let described = prepared.describe();
        let redact: Vec<&str> = self.redact.iter().map(String::as_str).collect();
        execute(&self.egress, prepared, &redact).await?;
        Ok(Undone::Done(described))
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
