//! JIRA, the adapter: creating the issue of a manual request (summary,
//! description, assignee, labels and custom fields rendered from the item)
//! and commenting on it, through JIRA's REST API v2, over the guarded
//! egress client.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};

use super::driver::{Driver, Level, Outputs, Progress, Step, Undone};
use crate::action::ActionError;
use crate::catalog::item::JiraTicket;
use crate::config::{ConfigError, Env};
use crate::outbound::{service_url, Call, Egress};
use crate::requests::RequestStore;
use crate::template::render::{render_text, Context, Secrets};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Where JIRA is and how PAO signs in (`PAO_JIRA_URL`, `PAO_JIRA_USER`,
/// `PAO_JIRA_API_TOKEN`).
pub struct Jira {
    base_url: String,
    /// `Basic <user:token>`: a secret, sent as a header only.
    authorization: SecretString,
    egress: Egress,
}

/// An issue PAO created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub key: String,
    pub url: String,
}

impl Jira {
    /// `None` when no JIRA is configured: manual requests then fail with
    /// that reason instead of waiting for a ticket nobody will see.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
        egress: Egress,
    ) -> Result<Option<Self>, ConfigError> {
        let base_url = env.or("PAO_JIRA_URL", "");
        if base_url.is_empty() {
            return Ok(None);
        }
        // The credentials go with every call: in clear only to this machine.
        let base_url = service_url("PAO_JIRA_URL", &base_url)?;
        let user = env.required("PAO_JIRA_USER")?;
        let token = env.required("PAO_JIRA_API_TOKEN")?;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
        Ok(Some(Self {
            base_url,
            authorization: SecretString::from(format!("Basic {credentials}")),
            egress,
        }))
    }

    /// The secret to keep out of every message.
    pub fn secret(&self) -> &str {
        self.authorization.expose_secret()
    }

    /// Creates the issue described by `ticket`, rendered with `context`.
    pub async fn create(
        &self,
        ticket: &JiraTicket,
        context: &Context,
    ) -> Result<Issue, ActionError> {
        let render = |text: &str, at: &str| -> Result<Value, ActionError> {
            render_text(
                text,
                context,
                Secrets::Refused,
                &format!("fulfillment.manual.jira.{at}"),
            )
            .map_err(|err| ActionError::Fatal(err.to_string()))
        };
        let mut fields = Map::new();
        fields.insert("project".into(), json!({"key": ticket.project}));
        fields.insert("issuetype".into(), json!({"name": ticket.issue_type}));
        fields.insert(
            "summary".into(),
            as_text(render(&ticket.summary, "summary")?),
        );
        if let Some(description) = &ticket.description {
            fields.insert(
                "description".into(),
                as_text(render(description, "description")?),
            );
        }
        if let Some(assignee) = &ticket.assignee {
            fields.insert(
                "assignee".into(),
                json!({"name": as_text(render(assignee, "assignee")?)}),
            );
        }
        if !ticket.labels.is_empty() {
            let labels = ticket
                .labels
                .iter()
                .map(|label| render(label, "labels").map(as_text))
                .collect::<Result<Vec<_>, _>>()?;
            fields.insert("labels".into(), Value::Array(labels));
        }
        for (id, value) in &ticket.custom_fields {
            fields.insert(id.clone(), render(value, &format!("custom_fields.{id}"))?);
        }
        let answer = self
            .send(
                Method::POST,
                "/rest/api/2/issue",
                json!({ "fields": fields }),
            )
            .await?;
        let key = answer.get("key").and_then(Value::as_str).ok_or_else(|| {
            ActionError::Fatal("JIRA created an issue but sent no key".to_string())
        })?;
        Ok(Issue {
            key: key.to_string(),
            url: format!("{}/browse/{key}", self.base_url),
        })
    }

    pub async fn comment(&self, key: &str, text: &str) -> Result<(), ActionError> {
        self.send(
            Method::POST,
            &format!("/rest/api/2/issue/{key}/comment"),
            json!({ "body": text }),
        )
        .await
        .map(|_| ())
    }

    async fn send(&self, method: Method, path: &str, body: Value) -> Result<Value, ActionError> {
        let described = format!("JIRA {method} {path}");
        let call = Call {
            method,
            url: format!("{}{path}", self.base_url),
            headers: vec![
                (
                    "Authorization".to_string(),
                    self.authorization.expose_secret().to_string(),
                ),
                ("Accept".to_string(), "application/json".to_string()),
            ],
            body: Some(body),
            timeout: TIMEOUT,
        };
        let reply = self
            .egress
            .send(call)
            .await
            .map_err(|err| err.into_action(&described))?;
        let status = reply.status;
        if status.is_success() {
            return Ok(serde_json::from_slice(&reply.body).unwrap_or(Value::Null));
        }
        // JIRA's error body names the fields it refused; it never holds our credentials.
        let detail: String = String::from_utf8_lossy(&reply.body)
            .chars()
            .take(300)
            .collect();
        let message = format!(
            "{described} answered {status}: {}",
            detail.replace(self.authorization.expose_secret(), "[redacted]")
        );
        Err(if status.as_u16() == 429 {
            ActionError::Throttled(message)
        } else if status.is_server_error() {
            ActionError::Retryable(message)
        } else {
            ActionError::Fatal(message)
        })
    }
}

fn as_text(value: Value) -> Value {
    match value {
        Value::String(_) => value,
        Value::Null => Value::String(String::new()),
        other => Value::String(other.to_string()),
    }
}

/// A manual request's ticket: opens its JIRA issue (the action's config is
/// the item's `fulfillment.manual.jira`) and remembers which request the
/// issue belongs to, so the JIRA webhook can resume it. Compensation
/// comments on the issue that it is no longer needed.
pub struct TicketDriver {
    /// `None` when no JIRA is configured: the request fails with that
    /// reason instead of waiting for a ticket nobody will see.
    jira: Option<Jira>,
    store: Arc<dyn RequestStore>,
}

impl TicketDriver {
    pub fn new(jira: Option<Jira>, store: Arc<dyn RequestStore>) -> Self {
        Self { jira, store }
    }

    fn jira(&self) -> Result<&Jira, ActionError> {
        self.jira.as_ref().ok_or_else(|| {
            ActionError::Fatal(
                "no JIRA is configured (PAO_JIRA_URL), so no ticket can be opened".to_string(),
            )
        })
    }
}

#[async_trait::async_trait]
impl Driver for TicketDriver {
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let jira = self.jira()?;
        if step.task_token.is_none() {
            return Err(ActionError::Fatal(
                "the ticket step needs its task token".to_string(),
            ));
        }
        let ticket: JiraTicket = serde_json::from_value(Value::Object(step.action.config.clone()))
            .map_err(|err| ActionError::Fatal(format!("the ticket's config: {err}")))?;
        let issue = jira.create(&ticket, step.context).await?;
        self.store.save_ticket(&issue.key, &step.request.id).await?;
        let message = format!("JIRA issue {} opened: {}", issue.key, issue.url);
        step.journal.log(Level::Info, &message).await?;
        let mut values = Map::new();
        values.insert("issue_key".into(), Value::String(issue.key));
        values.insert("issue_url".into(), Value::String(issue.url));
        Ok(Progress::Done(Outputs::new(values)))
    }

    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError> {
        let jira = self.jira()?;
        let key = step
            .outputs
            .get("issue_key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let note = format!(
            "PAO request {} ended ({}); this ticket is no longer needed.",
            step.request.id, step.request.status
        );
        jira.comment(key, &note).await?;
        Ok(Undone::Done(format!(
            "commented on {key}: no longer needed"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::AllowList;

    #[test]
    fn credentials_travel_in_clear_only_to_this_machine() {
        let configured = |url: &'static str| {
            let env = Env(move |name: &str| match name {
                "PAO_JIRA_URL" => Some(url.to_string()),
                "PAO_JIRA_USER" => Some("pao@example.com".to_string()),
                "PAO_JIRA_API_TOKEN" => Some("token".to_string()),
                _ => None,
            });
            Jira::from_env(&env, Egress::new(AllowList::default()).unwrap())
        };
        assert!(configured("https://example.atlassian.net")
            .unwrap()
            .is_some());
        assert!(configured("http://127.0.0.1:3071/jira").unwrap().is_some());
        assert!(configured("http://jira.example.com").is_err());
        assert!(configured("not a url").is_err());
        assert!(configured("").unwrap().is_none());
    }
}
