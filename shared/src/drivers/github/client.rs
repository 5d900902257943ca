//! The GitHub REST API as the github-workflow driver uses it: Actions'
//! workflow dispatch and runs, authenticated as a GitHub App (a JWT signed
//! with the app's key buys an installation token per repository owner,
//! cached until shortly before it expires) or with a static token. Every
//! call goes through the egress guard; no message ever holds a credential.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::action::ActionError;
use crate::config::{ConfigError, Env};
use crate::outbound::{service_url, Call, Egress, Reply};

const API_VERSION: &str = "2022-11-28";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// GitHub refuses an app JWT valid for more than 10 minutes; a minute of
/// slack on each side for clocks that disagree.
const JWT_LIFETIME_SECONDS: u64 = 540;
const JWT_BACKDATE_SECONDS: u64 = 60;
/// An installation token lives an hour; it is replaced 5 minutes early.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// How PAO proves who it is to GitHub.
pub enum Credentials {
    /// A GitHub App: its id and private key (PEM).
    App {
        app_id: String,
        key: jsonwebtoken::EncodingKey,
    },
    /// A token (fine-grained or an app's installation token made elsewhere).
    Token(SecretString),
}

/// The deployment's GitHub settings.
pub struct Settings {
    pub api_url: String,
    pub credentials: Option<Credentials>,
}

impl Settings {
    pub const API_URL: &'static str = "PAO_GITHUB_API_URL";
    pub const APP_ID: &'static str = "PAO_GITHUB_APP_ID";
    pub const APP_KEY: &'static str = "PAO_GITHUB_APP_PRIVATE_KEY";
    pub const TOKEN: &'static str = "PAO_GITHUB_TOKEN";

    /// `PAO_GITHUB_API_URL` (default `https://api.github.com`; GitHub
    /// Enterprise Server's is `https://<host>/api/v3`), https but on this
    /// machine's loopback; then either `PAO_GITHUB_APP_ID` with
    /// `PAO_GITHUB_APP_PRIVATE_KEY` (the PEM; `\n` escapes are read as line
    /// breaks, for environments that hold one line) or `PAO_GITHUB_TOKEN`.
    /// None of them: github-workflow actions fail saying so.
    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let api_url = service_url(
            Self::API_URL,
            &env.or(Self::API_URL, "https://api.github.com"),
        )?;
        let app_id = env.or(Self::APP_ID, "");
        let token = env.or(Self::TOKEN, "");
        let credentials = if !app_id.is_empty() {
            let pem = env.required(Self::APP_KEY)?.replace("\\n", "\n");
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
                ConfigError::Invalid {
                    name: Self::APP_KEY,
                    reason: "not an RSA private key in PEM form".to_string(),
                }
            })?;
            Some(Credentials::App { app_id, key })
        } else if !token.is_empty() {
            Some(Credentials::Token(SecretString::from(token)))
        } else {
            None
        };
        Ok(Self {
            api_url,
            credentials,
        })
    }
}

/// A workflow run as GitHub reports it (the part PAO reads).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Run {
    pub id: u64,
    pub status: Option<String>,
    pub conclusion: Option<String>,
    #[serde(default)]
    pub html_url: String,
    #[serde(default)]
    pub display_title: String,
}

impl Run {
    pub fn completed(&self) -> bool {
        self.status.as_deref() == Some("completed")
    }
}

/// What a dispatch answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Dispatched {
    /// The run's id and page (`return_run_details`).
    Run { id: u64, html_url: String },
    /// Accepted without details (204): the run is found by its title.
    Accepted,
    /// The server does not know `return_run_details` (GitHub Enterprise
    /// Server before it): dispatch again without it.
    Unsupported,
}

pub struct GitHub {
    api_url: String,
    credentials: Option<Credentials>,
    egress: Egress,
    /// Installation tokens by repository owner, with when to replace them.
    tokens: Mutex<HashMap<String, (SecretString, Instant)>>,
}

impl GitHub {
    pub fn new(settings: Settings, egress: Egress) -> Self {
        Self {
            api_url: settings.api_url,
            credentials: settings.credentials,
            egress,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub async fn dispatch(
        &self,
        repo: &Repo<'_>,
        workflow: &str,
        git_ref: &str,
        inputs: &serde_json::Map<String, Value>,
        run_details: bool,
    ) -> Result<Dispatched, ActionError> {
        let mut body = serde_json::json!({"ref": git_ref, "inputs": inputs});
        if run_details {
            body["return_run_details"] = Value::Bool(true);
        }
        let path = format!("{}/actions/workflows/{workflow}/dispatches", repo.path());
        let reply = self.call(repo, Method::POST, &path, Some(body)).await?;
        match reply.status {
            StatusCode::OK => {
                let details: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
                let id = details["workflow_run_id"].as_u64().ok_or_else(|| {
                    ActionError::Retryable(
                        "GitHub: the dispatch answered 200 without a workflow_run_id".to_string(),
                    )
                })?;
                Ok(Dispatched::Run {
                    id,
                    html_url: details["html_url"].as_str().unwrap_or_default().to_string(),
                })
            }
            StatusCode::NO_CONTENT => Ok(Dispatched::Accepted),
            StatusCode::BAD_REQUEST if run_details && mentions(&reply, "return_run_details") => {
                Ok(Dispatched::Unsupported)
            }
            _ => Err(refused(&format!("dispatch {workflow} of {repo}"), &reply)),
        }
    }

    pub async fn run(&self, repo: &Repo<'_>, id: u64) -> Result<Run, ActionError> {
        let path = format!("{}/actions/runs/{id}", repo.path());
        let reply = self.call(repo, Method::GET, &path, None).await?;
        if reply.status != StatusCode::OK {
            return Err(refused(&format!("read run {id} of {repo}"), &reply));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|err| ActionError::Retryable(format!("GitHub: run {id} of {repo}: {err}")))
    }

    /// The workflow's dispatched runs created since `since` (RFC 3339).
    pub async fn runs_since(
        &self,
        repo: &Repo<'_>,
        workflow: &str,
        since: &str,
    ) -> Result<Vec<Run>, ActionError> {
        let path = format!(
            "{}/actions/workflows/{workflow}/runs?event=workflow_dispatch&per_page=100&created=%3E%3D{}",
            repo.path(),
            since.replace(':', "%3A").replace('+', "%2B")
        );
        let reply = self.call(repo, Method::GET, &path, None).await?;
        if reply.status != StatusCode::OK {
            return Err(refused(
                &format!("list runs of {workflow} of {repo}"),
                &reply,
            ));
        }
        #[derive(Deserialize)]
        struct Page {
            workflow_runs: Vec<Run>,
        }
        let page: Page = serde_json::from_slice(&reply.body).map_err(|err| {
            ActionError::Retryable(format!("GitHub: runs of {workflow} of {repo}: {err}"))
        })?;
        Ok(page.workflow_runs)
    }

    /// Asks the run to stop (`force`: at once, for a run that ignores a
    /// cancel). A run that finished meanwhile is fine.
    pub async fn cancel(&self, repo: &Repo<'_>, id: u64, force: bool) -> Result<(), ActionError> {
        let verb = if force { "force-cancel" } else { "cancel" };
        let path = format!("{}/actions/runs/{id}/{verb}", repo.path());
        let reply = self.call(repo, Method::POST, &path, None).await?;
        match reply.status {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::CONFLICT => Ok(()),
            _ => Err(refused(&format!("{verb} run {id} of {repo}"), &reply)),
        }
    }

    async fn call(
        &self,
        repo: &Repo<'_>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, ActionError> {
        let token = self.token(repo).await?;
        let reply = self
            .send(method, path, token.expose_secret(), "Bearer", body)
            .await?;
        limited(&reply)?;
        if reply.status == StatusCode::UNAUTHORIZED {
            // A token revoked or expired early: the next call buys another.
            self.tokens.lock().await.remove(repo.owner);
        }
        Ok(reply)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        credential: &str,
        scheme: &str,
        body: Option<Value>,
    ) -> Result<Reply, ActionError> {
        let call = Call {
            method,
            url: format!("{}{path}", self.api_url),
            headers: vec![
                (
                    "Accept".to_string(),
                    "application/vnd.github+json".to_string(),
                ),
                ("X-GitHub-Api-Version".to_string(), API_VERSION.to_string()),
                (
                    "Authorization".to_string(),
                    format!("{scheme} {credential}"),
                ),
            ],
            body,
            timeout: CALL_TIMEOUT,
        };
        self.egress
            .send(call)
            .await
            .map_err(|err| err.into_action("GitHub"))
    }

    /// Fatal when the deployment gave no credentials: nothing can be called.
    pub fn configured(&self) -> Result<(), ActionError> {
        match self.credentials {
            Some(_) => Ok(()),
            None => Err(unconfigured()),
        }
    }

    /// The credential for calls about `repo`'s owner.
    async fn token(&self, repo: &Repo<'_>) -> Result<SecretString, ActionError> {
        let (app_id, key) = match &self.credentials {
            None => return Err(unconfigured()),
            Some(Credentials::Token(token)) => return Ok(token.clone()),
            Some(Credentials::App { app_id, key }) => (app_id, key),
        };
        let mut tokens = self.tokens.lock().await;
        if let Some((token, until)) = tokens.get(repo.owner) {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let jwt = app_jwt(app_id, key)?;
        let path = format!("{}/installation", repo.path());
        let reply = self.send(Method::GET, &path, &jwt, "Bearer", None).await?;
        limited(&reply)?;
        if reply.status != StatusCode::OK {
            return Err(refused(
                &format!("find the app's installation on {}", repo.owner),
                &reply,
            ));
        }
        let installation: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let Some(installation) = installation["id"].as_u64() else {
            return Err(ActionError::Retryable(
                "GitHub: the installation has no id".to_string(),
            ));
        };
        let path = format!("/app/installations/{installation}/access_tokens");
        let reply = self.send(Method::POST, &path, &jwt, "Bearer", None).await?;
        limited(&reply)?;
        if reply.status != StatusCode::CREATED {
            return Err(refused(
                &format!("make an installation token for {}", repo.owner),
                &reply,
            ));
        }
        #[derive(Deserialize)]
        struct Minted {
            token: String,
            expires_at: String,
        }
        let minted: Minted = serde_json::from_slice(&reply.body).map_err(|_| {
            ActionError::Retryable("GitHub: the installation token was unreadable".to_string())
        })?;
        let lifetime = crate::clock::seconds_since(&minted.expires_at)
            .filter(|since| *since < 0.0)
            .map_or(Duration::from_secs(3600), |since| {
                Duration::from_secs_f64(-since)
            });
        let token = SecretString::from(minted.token);
        let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
        tokens.insert(repo.owner.to_string(), (token.clone(), until));
        Ok(token)
    }
}

fn unconfigured() -> ActionError {
    ActionError::Fatal(format!(
        "GitHub: no credentials are configured ({} with {}, or {})",
        Settings::APP_ID,
        Settings::APP_KEY,
        Settings::TOKEN
    ))
}

/// A repository: `owner/name`.
#[derive(Debug, Clone, Copy)]
pub struct Repo<'a> {
    pub owner: &'a str,
    pub name: &'a str,
}

impl Repo<'_> {
    fn path(&self) -> String {
        format!("/repos/{}/{}", self.owner, self.name)
    }
}

impl std::fmt::Display for Repo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The app's JWT: RS256, issued a minute in the past (clock drift),
/// expiring within GitHub's ten minutes.
fn app_jwt(app_id: &str, key: &jsonwebtoken::EncodingKey) -> Result<String, ActionError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = serde_json::json!({
        "iat": now - JWT_BACKDATE_SECONDS,
        "exp": now + JWT_LIFETIME_SECONDS,
        "iss": app_id,
    });
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    jsonwebtoken::encode(&header, &claims, key)
        .map_err(|err| ActionError::Fatal(format!("GitHub: the app's JWT cannot be signed: {err}")))
}

/// A rate limit, as GitHub signals it: 403 or 429 with
/// `x-ratelimit-remaining: 0` (wait until `x-ratelimit-reset`) or with
/// `retry-after` (seconds). Throttled, saying how long GitHub asked for.
fn limited(reply: &Reply) -> Result<(), ActionError> {
    if !matches!(
        reply.status,
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    ) {
        return Ok(());
    }
    let wait = if let Some(seconds) = reply
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
    {
        seconds
    } else if reply.header("x-ratelimit-remaining") == Some("0") {
        let reset = reply
            .header("x-ratelimit-reset")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        reset.saturating_sub(now).max(1)
    } else {
        return Ok(());
    };
    Err(ActionError::Throttled(format!(
        "GitHub: rate limited ({}), retry after {wait} s",
        reply.status.as_u16()
    ))
    .after(u32::try_from(wait).unwrap_or(u32::MAX)))
}

fn mentions(reply: &Reply, word: &str) -> bool {
    String::from_utf8_lossy(&reply.body).contains(word)
}

/// A refusal: GitHub's own message; 5xx and 409 may pass, the rest will
/// not on a retry.
fn refused(what: &str, reply: &Reply) -> ActionError {
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let message = body["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&reply.body)
                .chars()
                .take(300)
                .collect()
        });
    let text = format!(
        "GitHub: {what}: {} ({})",
        message.trim(),
        reply.status.as_u16()
    );
    if reply.status.is_server_error() || reply.status == StatusCode::CONFLICT {
        ActionError::Retryable(text)
    } else {
        ActionError::Fatal(text)
    }
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
    fn a_rate_limit_is_throttled_for_as_long_as_github_asks() {
        let retry_after = limited(&reply(429, &[("retry-after", "17")], "")).unwrap_err();
        assert_eq!(
            retry_after,
            ActionError::Throttled("GitHub: rate limited (429), retry after 17 s".to_string())
                .after(17)
        );
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 40;
        let exhausted = limited(&reply(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset.to_string()),
            ],
            "{\"message\": \"API rate limit exceeded\"}",
        ))
        .unwrap_err();
        assert!(exhausted.is_throttled(), "{exhausted}");
        let wait = exhausted.asked_wait().unwrap();
        assert!((39..=40).contains(&wait), "{exhausted}");
        // A 403 with requests left is a refusal, not a limit.
        assert!(limited(&reply(403, &[("x-ratelimit-remaining", "4999")], "")).is_ok());
    }

    #[test]
    fn refusals_carry_githubs_message_and_only_server_errors_are_retried() {
        let missing = refused(
            "dispatch deploy.yml of acme/shop",
            &reply(404, &[], "{\"message\": \"Not Found\"}"),
        );
        assert_eq!(
            missing,
            ActionError::Fatal(
                "GitHub: dispatch deploy.yml of acme/shop: Not Found (404)".to_string()
            )
        );
        assert!(matches!(
            refused("x", &reply(502, &[], "bad gateway")),
            ActionError::Retryable(m) if m.contains("bad gateway")
        ));
    }

    #[test]
    fn settings_want_https_and_one_kind_of_credential() {
        let read = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let env = Env(move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            });
            Settings::read(&env)
        };
        let default = read(&[]).unwrap();
        assert_eq!(default.api_url, "https://api.github.com");
        assert!(default.credentials.is_none());
        assert!(read(&[(Settings::API_URL, "http://github.example.com/api/v3")]).is_err());
        assert!(
            read(&[(Settings::API_URL, "http://127.0.0.1:3071/github/")])
                .is_ok_and(|s| s.api_url == "http://127.0.0.1:3071/github")
        );
        assert!(matches!(
            read(&[(Settings::TOKEN, "ghp_x")]).unwrap().credentials,
            Some(Credentials::Token(_))
        ));
        assert!(
            read(&[(Settings::APP_ID, "42")]).is_err(),
            "the key is required"
        );
        assert!(read(&[(Settings::APP_ID, "42"), (Settings::APP_KEY, "not a key")]).is_err());
    }
}
