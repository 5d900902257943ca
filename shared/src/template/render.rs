//! Rendering an action's config at run time. Rendering is structural: the
//! config is already a parsed value, and each string leaf is rendered on its
//! own, so whatever a user typed lands inside one value and can never break
//! out of it into the surrounding JSON or YAML. A leaf that is exactly one
//! placeholder takes the value's own type (`"{{fields.port}}"` → `5432`).
//! Output is never rendered again: `{{` typed by a user stays text.

use std::collections::{BTreeMap, BTreeSet};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use thiserror::Error;

use super::{defaulted, is_template, simple, Piece};
use crate::config::ConfigError;

/// The variables a template may read: `fields`, `header`, `request`, `env`
/// and `response`, each an object. Its `Debug` names no value: `env`
/// holds secrets.
#[derive(Clone)]
pub struct Context {
    root: Value,
    /// `env` names whose values are secrets.
    secrets: BTreeSet<String>,
}

/// The request's own variables: `request.id`, `request.timestamp`,
/// `request.user.{id,email,name}`.
#[derive(Debug, Clone)]
pub struct RequestVars<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub user_id: &'a str,
    pub user_email: &'a str,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        fields: Value,
        header: Value,
        request: RequestVars<'_>,
        env: &TemplateEnv,
        response: Map<String, Value>,
    ) -> Self {
        let name = request
            .user_email
            .split('@')
            .next()
            .unwrap_or(request.user_email);
        let root = serde_json::json!({
            "fields": fields,
            "header": header,
            "request": {
                "id": request.id,
                "timestamp": request.timestamp,
                "user": {"id": request.user_id, "email": request.user_email, "name": name},
            },
            "env": env.exposed(),
            "response": response,
        });
        Self {
            root,
            secrets: env.secrets.keys().cloned().collect(),
        }
    }

    /// The value at a dotted path (`fields.tags.0`), if there is one.
    fn lookup(&self, path: &str) -> Option<&Value> {
        path.split('.')
            .try_fold(&self.root, |value, segment| match value {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
                _ => None,
            })
    }

    /// A secret `env.NAME`, or the whole `env`, which holds the secrets.
    fn is_secret(&self, path: &str) -> bool {
        path == "env"
            || path
                .strip_prefix("env.")
                .is_some_and(|name| self.secrets.contains(name))
    }
}

/// Whether secrets (`env.*` names configured as secret) may be rendered
/// here. Only header values may hold them: a URL or a body is logged,
/// echoed by servers and kept in execution history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    Allowed,
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RenderError {
    #[error("{at}: `{name}` is not defined")]
    Undefined { at: String, name: String },
    #[error("{at}: the secret `{name}` may only be used in a header")]
    SecretOutsideHeader { at: String, name: String },
    #[error("{at}: {message}")]
    Template { at: String, message: String },
}

/// Renders every string leaf of `config`; `at` names the config in errors
/// (`config.url`). Object keys are not templates.
pub fn render(
    config: &Value,
    context: &Context,
    secrets: Secrets,
    at: &str,
) -> Result<Value, RenderError> {
    match config {
        Value::String(text) => render_text(text, context, secrets, at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| render(item, context, secrets, &format!("{at}[{index}]")))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| {
                let value = render(value, context, secrets, &format!("{at}.{key}"))?;
                Ok((key.clone(), value))
            })
            .collect::<Result<_, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// Renders one string leaf.
pub fn render_text(
    text: &str,
    context: &Context,
    secrets: Secrets,
    at: &str,
) -> Result<Value, RenderError> {
    if !is_template(text) {
        return Ok(Value::String(text.to_string()));
    }
    if let Some((path, default)) = defaulted(text) {
        return match render_text(&format!("{{{{{path}}}}}"), context, secrets, at) {
            Err(RenderError::Undefined { .. }) => Ok(default),
            Ok(Value::Null) => Ok(default),
            other => other,
        };
    }
    let Some(pieces) = simple(text) else {
        return render_with_tera(text, context, secrets, at);
    };
    let value_of = |path: &str| {
        if secrets == Secrets::Refused && context.is_secret(path) {
            return Err(RenderError::SecretOutsideHeader {
                at: at.to_string(),
                name: path.to_string(),
            });
        }
        context.lookup(path).ok_or_else(|| RenderError::Undefined {
            at: at.to_string(),
            name: path.to_string(),
        })
    };
    if let [Piece::Path(path)] = pieces.as_slice() {
        return value_of(path).cloned();
    }
    let mut out = String::with_capacity(text.len() + 32);
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Path(path) => push_text(&mut out, value_of(path)?),
        }
    }
    Ok(Value::String(out))
}

/// Renders a URL. Values a requester controls (`fields`, `request`,
/// `response`) are percent-encoded where they land, so they cannot move the
/// host, climb the path or start a query: the deployment's `env` and the
/// item's `header` make the URL's shape, users only fill its slots. Those
/// values must be plain placeholders: through a filter or a condition they
/// could not be encoded one by one. Secrets are refused, as in a body.
pub fn render_url(text: &str, context: &Context, at: &str) -> Result<Value, RenderError> {
    super::check_url(text).map_err(|message| RenderError::Template {
        at: at.to_string(),
        message,
    })?;
    let Some(pieces) = simple(text) else {
        return render_text(text, context, Secrets::Refused, at);
    };
    let mut url = String::with_capacity(text.len() + 32);
    for piece in pieces {
        match piece {
            Piece::Text(text) => url.push_str(text),
            Piece::Path(path) => {
                let value = render_text(&format!("{{{{{path}}}}}"), context, Secrets::Refused, at)?;
                let mut text = String::new();
                push_text(&mut text, &value);
                if super::is_user_namespace(path.split('.').next().unwrap_or_default()) {
                    url.push_str(&percent_encode(&text));
                } else {
                    url.push_str(&text);
                }
            }
        }
    }
    Ok(Value::String(url))
}

/// Every byte but RFC 3986's unreserved characters, encoded as `%XX`.
pub const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, UNRESERVED).to_string()
}

/// A value inside text: strings as they are, null as nothing, lists and
/// mappings as compact JSON.
fn push_text(out: &mut String, value: &Value) {
    match value {
        Value::String(text) => out.push_str(text),
        Value::Null => {}
        other => out.push_str(&other.to_string()),
    }
}

/// Filters, conditions and loops: Tera, strict about undefined names.
fn render_with_tera(
    text: &str,
    context: &Context,
    secrets: Secrets,
    at: &str,
) -> Result<Value, RenderError> {
    let references = super::references(text).map_err(|message| RenderError::Template {
        at: at.to_string(),
        message,
    })?;
    if secrets == Secrets::Refused {
        if let Some(secret) = references
            .iter()
            .map(super::Reference::dotted)
            .find(|path| context.is_secret(path))
        {
            return Err(RenderError::SecretOutsideHeader {
                at: at.to_string(),
                name: secret,
            });
        }
    }
    let tera_context =
        tera::Context::from_value(context.root.clone()).map_err(|err| RenderError::Template {
            at: at.to_string(),
            message: err.to_string(),
        })?;
    locked_tera()
        .render_str(text, &tera_context)
        .map(Value::String)
        .map_err(|err| RenderError::Template {
            at: at.to_string(),
            message: tera_reason(&err),
        })
}

/// A Tera whose only way out of the context is closed: its built-in
/// `get_env` reads any variable of the process, the function's AWS
/// credentials among them. The template check refuses function calls
/// already; this holds should one get past it.
fn locked_tera() -> tera::Tera {
    let mut tera = tera::Tera::default();
    // Its other function, `range`, would loop for as long as it is asked.
    for name in ["get_env", "range"] {
        tera.register_function(
            name,
            |_: &std::collections::HashMap<String, tera::Value>| -> tera::Result<tera::Value> {
                Err(tera::Error::msg(
                    "templates cannot call functions: read configuration as env.NAME",
                ))
            },
        );
    }
    tera
}

/// Tera's innermost cause ("Variable `fields.x` not found in context while
/// rendering '__tera_one_off'") without the name of its internal template.
fn tera_reason(err: &tera::Error) -> String {
    use std::error::Error as _;
    let mut reason = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        reason = cause.to_string();
        source = cause.source();
    }
    reason
        .split(" while rendering")
        .next()
        .unwrap_or(&reason)
        .to_string()
}

/// The `env` namespace: only the names a deployment allow-lists, read once
/// at start-up. The runtime's own variables (AWS credentials, Lambda
/// settings) cannot be listed, whatever the configuration says.
#[derive(Debug, Clone, Default)]
pub struct TemplateEnv {
    values: BTreeMap<String, String>,
    /// Never printed: `SecretString`'s `Debug` shows no value.
    secrets: BTreeMap<String, SecretString>,
}

const NEVER_READABLE: &[&str] = &["AWS_", "LAMBDA_", "_"];

impl TemplateEnv {
    /// `PAO_TEMPLATE_ENV` and `PAO_TEMPLATE_SECRETS`: comma-separated names.
    pub const PLAIN: &'static str = "PAO_TEMPLATE_ENV";
    pub const SECRET: &'static str = "PAO_TEMPLATE_SECRETS";

    pub fn from_env(read: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut env = Self::default();
        for (variable, secret) in [(Self::PLAIN, false), (Self::SECRET, true)] {
            let list = read(variable).unwrap_or_default();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if NEVER_READABLE.iter().any(|prefix| name.starts_with(prefix))
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(ConfigError::Invalid {
                        name: variable,
                        reason: format!("`{name}` cannot be offered to templates"),
                    });
                }
                let value = read(name).ok_or_else(|| ConfigError::Invalid {
                    name: variable,
                    reason: format!("`{name}` is listed but not set"),
                })?;
                if secret {
                    env.secrets
                        .insert(name.to_string(), SecretString::from(value));
                } else {
                    env.values.insert(name.to_string(), value);
                }
            }
        }
        Ok(env)
    }

    /// The secret values, for redacting them from anything logged.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secrets.values().map(|value| value.expose_secret())
    }

    /// The `env` namespace as templates read it: every value, in clear.
    fn exposed(&self) -> BTreeMap<&str, &str> {
        let plain = self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let secret = self
            .secrets
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()));
        plain.chain(secret).collect()
    }
}

/// `text` with each of `secrets` blanked, for a message or a log line.
pub fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = text.to_string();
    for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[redacted]");
    }
    text
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
