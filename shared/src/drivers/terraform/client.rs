//! HCP Terraform's (and Terraform Enterprise's) API v2 as the terraform
//! driver uses it: workspaces, their variables, runs and their actions,
//! and the current state's outputs. JSON:API documents, a team token as
//! the bearer; every call goes through the egress guard, and no message
//! holds the token or a sensitive value.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};

use crate::action::ActionError;
use crate::config::{ConfigError, Env};
use crate::outbound::{service_url, Call, Egress, Reply};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const MEDIA_TYPE: &str = "application/vnd.api+json";

/// The deployment's HCP Terraform settings.
pub struct Settings {
    pub url: String,
    pub organization: String,
    pub token: Option<SecretString>,
    /// The VCS connection new workspaces are linked through.
    pub oauth_token_id: Option<String>,
}

impl Settings {
    pub const URL: &'static str = "PAO_TFC_URL";
    pub const ORGANIZATION: &'static str = "PAO_TFC_ORGANIZATION";
    pub const TOKEN: &'static str = "PAO_TFC_TOKEN";
    pub const OAUTH_TOKEN_ID: &'static str = "PAO_TFC_OAUTH_TOKEN_ID";

    /// `PAO_TFC_URL` (default `https://app.terraform.io`; Terraform
    /// Enterprise's own host), https but on this machine's loopback;
    /// `PAO_TFC_ORGANIZATION`, the one organization items may name (empty:
    /// any); `PAO_TFC_TOKEN`, a team token; `PAO_TFC_OAUTH_TOKEN_ID`, the
    /// VCS connection of workspaces PAO creates.
    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let url = service_url(Self::URL, &env.or(Self::URL, "https://app.terraform.io"))?;
        let token = env.or(Self::TOKEN, "");
        let oauth = env.or(Self::OAUTH_TOKEN_ID, "");
        Ok(Self {
            url,
            organization: env.or(Self::ORGANIZATION, ""),
            token: (!token.is_empty()).then(|| SecretString::from(token)),
            oauth_token_id: (!oauth.is_empty()).then_some(oauth),
        })
    }
}

/// A workspace: its id and settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    pub id: String,
    pub name: String,
}

/// A run: its id, status and whether it may still be confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: String,
    pub status: String,
    pub confirmable: bool,
    pub cancelable: bool,
    pub discardable: bool,
}

/// What a workspace made by PAO is linked to.
#[derive(Debug, Clone)]
pub struct Vcs<'a> {
    pub repository: &'a str,
    pub branch: &'a str,
    pub path: &'a str,
}

/// A variable to set.
pub struct Variable<'a> {
    pub key: &'a str,
    pub value: String,
    pub hcl: bool,
    pub sensitive: bool,
}

/// A state output: its name, whether it is sensitive, and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub name: String,
    pub sensitive: bool,
    pub value: Value,
}

pub struct Terraform {
    settings: Settings,
    egress: Egress,
}

impl Terraform {
    pub fn new(settings: Settings, egress: Egress) -> Self {
        Self { settings, egress }
    }

    /// Fatal unless a token is configured and `organization` is the
    /// deployment's (when it names one).
    pub fn allows(&self, organization: &str) -> Result<(), ActionError> {
        if self.settings.token.is_none() {
            return Err(ActionError::Fatal(format!(
                "HCP Terraform: no team token is configured ({})",
                Settings::TOKEN
            )));
        }
        let allowed = &self.settings.organization;
        if !allowed.is_empty() && allowed != organization {
            return Err(ActionError::Fatal(format!(
                "HCP Terraform: organization {organization} is not this deployment's ({allowed})"
            )));
        }
        Ok(())
    }

    /// The run's page.
    pub fn run_url(&self, organization: &str, workspace: &str, run: &str) -> String {
        format!(
            "{}/app/{organization}/workspaces/{workspace}/runs/{run}",
            self.settings.url
        )
    }

    pub async fn workspace(
        &self,
        organization: &str,
        name: &str,
    ) -> Result<Option<Workspace>, ActionError> {
        let path = format!("/api/v2/organizations/{organization}/workspaces/{name}");
        let reply = self.call(Method::GET, &path, None).await?;
        match reply.status {
            StatusCode::OK => Ok(Some(workspace(&document(&reply)?)?)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(refused(
                &format!("read workspace {organization}/{name}"),
                &reply,
            )),
        }
    }

    /// Creates the workspace, linked to `vcs`, applying as `auto_apply` says.
    pub async fn create_workspace(
        &self,
        organization: &str,
        name: &str,
        vcs: &Vcs<'_>,
        auto_apply: bool,
    ) -> Result<Workspace, ActionError> {
        let Some(oauth) = &self.settings.oauth_token_id else {
            return Err(ActionError::Fatal(format!(
                "HCP Terraform: workspace {name} must be created linked to {}, but no VCS \
                 connection is configured ({})",
                vcs.repository,
                Settings::OAUTH_TOKEN_ID
            )));
        };
        let body = json!({"data": {"type": "workspaces", "attributes": {
            "name": name, "auto-apply": auto_apply, "working-directory": vcs.path,
            "vcs-repo": {"identifier": vcs.repository, "branch": vcs.branch, "oauth-token-id": oauth}
        }}});
        let path = format!("/api/v2/organizations/{organization}/workspaces");
        let reply = self.call(Method::POST, &path, Some(body)).await?;
        if reply.status != StatusCode::CREATED {
            return Err(refused(
                &format!("create workspace {organization}/{name}"),
                &reply,
            ));
        }
        workspace(&document(&reply)?)
    }

    pub async fn delete_workspace(
        &self,
        organization: &str,
        name: &str,
    ) -> Result<(), ActionError> {
        let path = format!("/api/v2/organizations/{organization}/workspaces/{name}");
        let reply = self.call(Method::DELETE, &path, None).await?;
        match reply.status {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(refused(
                &format!("delete workspace {organization}/{name}"),
                &reply,
            )),
        }
    }

    /// Sets each variable (category terraform): updated where the key
    /// exists, created where it does not.
    pub async fn set_variables(
        &self,
        workspace_id: &str,
        variables: &[Variable<'_>],
    ) -> Result<(), ActionError> {
        let path = format!("/api/v2/workspaces/{workspace_id}/vars");
        let reply = self.call(Method::GET, &path, None).await?;
        if reply.status != StatusCode::OK {
            return Err(refused(
                &format!("read the variables of {workspace_id}"),
                &reply,
            ));
        }
        let existing = document(&reply)?;
        for variable in variables {
            let found = existing["data"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| {
                    v["attributes"]["key"] == variable.key
                        && v["attributes"]["category"] == "terraform"
                })
                .and_then(|v| v["id"].as_str());
            let attributes = json!({
                "key": variable.key, "value": variable.value, "category": "terraform",
                "hcl": variable.hcl, "sensitive": variable.sensitive,
            });
            let mut data = json!({"type": "vars", "attributes": attributes});
            let (method, path, wanted) = match found {
                Some(id) => {
                    data["id"] = json!(id);
                    (
                        Method::PATCH,
                        format!("/api/v2/workspaces/{workspace_id}/vars/{id}"),
                        StatusCode::OK,
                    )
                }
                None => (Method::POST, path.clone(), StatusCode::CREATED),
            };
            let reply = self
                .call(method, &path, Some(json!({"data": data})))
                .await?;
            if reply.status != wanted {
                return Err(refused(&format!("set variable {}", variable.key), &reply));
            }
        }
        Ok(())
    }

    /// Queues a run (`destroy`: one that destroys what the state holds).
    pub async fn create_run(
        &self,
        workspace_id: &str,
        message: &str,
        auto_apply: Option<bool>,
        destroy: bool,
    ) -> Result<Run, ActionError> {
        let mut attributes = json!({"message": message, "is-destroy": destroy});
        if let Some(auto_apply) = auto_apply {
            attributes["auto-apply"] = json!(auto_apply);
        }
        let body = json!({"data": {"type": "runs", "attributes": attributes, "relationships": {
            "workspace": {"data": {"type": "workspaces", "id": workspace_id}}
        }}});
        let reply = self.call(Method::POST, "/api/v2/runs", Some(body)).await?;
        if reply.status != StatusCode::CREATED {
            return Err(refused(&format!("queue a run on {workspace_id}"), &reply));
        }
        run(&document(&reply)?)
    }

    pub async fn run(&self, id: &str) -> Result<Run, ActionError> {
        let reply = self
            .call(Method::GET, &format!("/api/v2/runs/{id}"), None)
            .await?;
        if reply.status != StatusCode::OK {
            return Err(refused(&format!("read run {id}"), &reply));
        }
        run(&document(&reply)?)
    }

    /// `cancel`, `discard` or `force-cancel`; a run that moved on meanwhile
    /// (409) is fine: the next read says where it is.
    pub async fn act(&self, id: &str, action: &str) -> Result<(), ActionError> {
        let path = format!("/api/v2/runs/{id}/actions/{action}");
        let reply = self.call(Method::POST, &path, Some(json!({}))).await?;
        match reply.status {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::CONFLICT => Ok(()),
            _ => Err(refused(&format!("{action} run {id}"), &reply)),
        }
    }

    /// The outputs of the workspace's current state, sensitive values read
    /// one by one (the list leaves them out).
    pub async fn outputs(&self, workspace_id: &str) -> Result<Vec<Output>, ActionError> {
        let path = format!("/api/v2/workspaces/{workspace_id}/current-state-version-outputs");
        let reply = self.call(Method::GET, &path, None).await?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(Vec::new()),
            _ => {
                return Err(refused(
                    &format!("read the outputs of {workspace_id}"),
                    &reply,
                ))
            }
        }
        let listed = document(&reply)?;
        let mut outputs = Vec::new();
        for item in listed["data"].as_array().into_iter().flatten() {
            let attributes = &item["attributes"];
            let name = attributes["name"].as_str().unwrap_or_default().to_string();
            let sensitive = attributes["sensitive"].as_bool().unwrap_or(false);
            let mut value = attributes["value"].clone();
            if sensitive {
                let id = item["id"].as_str().unwrap_or_default();
                let path = format!("/api/v2/state-version-outputs/{id}");
                let reply = self.call(Method::GET, &path, None).await?;
                if reply.status != StatusCode::OK {
                    return Err(refused(&format!("read output {name}"), &reply));
                }
                value = document(&reply)?["data"]["attributes"]["value"].clone();
            }
            outputs.push(Output {
                name,
                sensitive,
                value,
            });
        }
        Ok(outputs)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, ActionError> {
        let token = self
            .settings
            .token
            .as_ref()
            .map(ExposeSecret::expose_secret);
        let call = Call {
            method,
            url: format!("{}{path}", self.settings.url),
            headers: vec![
                ("Content-Type".to_string(), MEDIA_TYPE.to_string()),
                ("Accept".to_string(), MEDIA_TYPE.to_string()),
                (
                    "Authorization".to_string(),
                    format!("Bearer {}", token.unwrap_or_default()),
                ),
            ],
            body,
            timeout: CALL_TIMEOUT,
        };
        let reply = self
            .egress
            .send(call)
            .await
            .map_err(|err| err.into_action("HCP Terraform"))?;
        limited(&reply)?;
        Ok(reply)
    }
}

/// 429: Throttled, for as long as `Retry-After` (or `X-RateLimit-Reset`,
/// seconds as a decimal) says.
fn limited(reply: &Reply) -> Result<(), ActionError> {
    if reply.status != StatusCode::TOO_MANY_REQUESTS {
        return Ok(());
    }
    let wait = reply
        .header("retry-after")
        .or_else(|| reply.header("x-ratelimit-reset"))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(1, |seconds| seconds.ceil().max(1.0) as u64);
    Err(ActionError::Throttled(format!(
        "HCP Terraform: rate limited (429), retry after {wait} s"
    ))
    .after(u32::try_from(wait).unwrap_or(u32::MAX)))
}

fn document(reply: &Reply) -> Result<Value, ActionError> {
    serde_json::from_slice(&reply.body).map_err(|err| {
        ActionError::Retryable(format!("HCP Terraform: an answer that is not JSON: {err}"))
    })
}

fn workspace(document: &Value) -> Result<Workspace, ActionError> {
    let data = &document["data"];
    match (data["id"].as_str(), data["attributes"]["name"].as_str()) {
        (Some(id), Some(name)) => Ok(Workspace {
            id: id.to_string(),
            name: name.to_string(),
        }),
        _ => Err(ActionError::Retryable(
            "HCP Terraform: a workspace without an id or name".to_string(),
        )),
    }
}

fn run(document: &Value) -> Result<Run, ActionError> {
    let data = &document["data"];
    let attributes = &data["attributes"];
    let action = |name: &str| attributes["actions"][name].as_bool().unwrap_or(false);
    match (data["id"].as_str(), attributes["status"].as_str()) {
        (Some(id), Some(status)) => Ok(Run {
            id: id.to_string(),
            status: status.to_string(),
            confirmable: action("is-confirmable"),
            cancelable: action("is-cancelable"),
            discardable: action("is-discardable"),
        }),
        _ => Err(ActionError::Retryable(
            "HCP Terraform: a run without an id or status".to_string(),
        )),
    }
}

/// A refusal, with the API's own errors: 5xx and 409 may pass, the rest
/// will not on a retry.
fn refused(what: &str, reply: &Reply) -> ActionError {
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let errors: Vec<String> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let title = e["title"].as_str().unwrap_or_default();
            match e["detail"].as_str() {
                Some(detail) => format!("{title}: {detail}"),
                None => title.to_string(),
            }
        })
        .collect();
    let text = format!(
        "HCP Terraform: {what}: {} ({})",
        if errors.is_empty() {
            "no detail".to_string()
        } else {
            errors.join("; ")
        },
        reply.status.as_u16()
    );
    if reply.status.is_server_error() || reply.status == StatusCode::CONFLICT {
        ActionError::Retryable(text)
    } else {
        ActionError::Fatal(text)
    }
}

/// The outputs a Done run gives: `outputs` holds the state's outputs but
/// the sensitive ones, which become outputs of their own (kept in Secrets
/// Manager by the lifecycle); returns the map and those names.
pub fn split_outputs(outputs: Vec<Output>) -> (Map<String, Value>, Map<String, Value>) {
    let mut plain = Map::new();
    let mut sensitive = Map::new();
    for output in outputs {
        if output.sensitive {
            sensitive.insert(output.name, output.value);
        } else {
            plain.insert(output.name, output.value);
        }
    }
    (plain, sensitive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_429_waits_as_long_as_the_api_says() {
        assert_eq!(
            limited(&reply(429, &[("retry-after", "2")], "")),
            Err(ActionError::Throttled(
                "HCP Terraform: rate limited (429), retry after 2 s".to_string()
            )
            .after(2))
        );
        assert_eq!(
            limited(&reply(429, &[("x-ratelimit-reset", "0.4")], "")),
            Err(ActionError::Throttled(
                "HCP Terraform: rate limited (429), retry after 1 s".to_string()
            )
            .after(1))
        );
        assert!(limited(&reply(200, &[("x-ratelimit-remaining", "0")], "")).is_ok());
    }

    #[test]
    fn refusals_carry_the_apis_errors() {
        let taken = refused(
            "create workspace acme/orders",
            &reply(
                422,
                &[],
                r#"{"errors": [{"status": "422", "title": "invalid attribute", "detail": "Name has already been taken"}]}"#,
            ),
        );
        assert_eq!(
            taken,
            ActionError::Fatal(
                "HCP Terraform: create workspace acme/orders: invalid attribute: Name has already \
                 been taken (422)"
                    .to_string()
            )
        );
        assert!(matches!(
            refused("x", &reply(503, &[], "")),
            ActionError::Retryable(_)
        ));
    }

    #[test]
    fn sensitive_outputs_are_kept_apart() {
        let (plain, sensitive) = split_outputs(vec![
            Output {
                name: "queue_url".to_string(),
                sensitive: false,
                value: json!("https://sqs/q"),
            },
            Output {
                name: "api_key".to_string(),
                sensitive: true,
                value: json!("k-123"),
            },
        ]);
        assert_eq!(Value::Object(plain), json!({"queue_url": "https://sqs/q"}));
        assert_eq!(Value::Object(sensitive), json!({"api_key": "k-123"}));
    }

    #[test]
    fn settings_want_https_and_name_the_token() {
        let read = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Settings::read(&Env(move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }))
        };
        let default = read(&[]).unwrap();
        assert_eq!(default.url, "https://app.terraform.io");
        assert!(default.token.is_none());
        assert!(read(&[(Settings::URL, "http://tfe.example.com")]).is_err());
        let terraform = Terraform::new(
            default,
            Egress::new(crate::outbound::AllowList::default()).unwrap(),
        );
        assert!(matches!(
            terraform.allows("acme"),
            Err(ActionError::Fatal(m)) if m.contains(Settings::TOKEN)
        ));
        let only_acme = Terraform::new(
            read(&[(Settings::TOKEN, "t"), (Settings::ORGANIZATION, "acme")]).unwrap(),
            Egress::new(crate::outbound::AllowList::default()).unwrap(),
        );
        assert!(only_acme.allows("acme").is_ok());
        assert!(only_acme.allows("other").is_err());
    }
}
