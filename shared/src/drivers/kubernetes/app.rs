//! A kubernetes-deploy action's config, once rendered and checked against
//! the type's schema: what to run, how to probe it, how to expose and
//! scale it, which alarms to raise.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::action::ActionError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub cluster: String,
    pub namespace: String,
    pub name: String,
    pub image: String,
    #[serde(default = "App::default_replicas")]
    pub replicas: i32,
    #[serde(default = "App::default_port")]
    pub container_port: i32,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variable name → Secrets Manager ARN.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    pub health_check: Option<Check>,
    pub readiness_check: Option<Check>,
    #[serde(default)]
    pub autoscaling: Autoscaling,
    #[serde(default)]
    pub ingress: Ingress,
    #[serde(default)]
    pub monitoring: Monitoring,
    pub service_account: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub requests: Amounts,
    #[serde(default)]
    pub limits: Amounts,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amounts {
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub path: String,
    pub port: Option<i32>,
    #[serde(default = "Check::default_delay")]
    pub initial_delay_seconds: i32,
    #[serde(default = "Check::default_period")]
    pub period_seconds: i32,
    #[serde(default = "Check::default_threshold")]
    pub failure_threshold: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "App::default_replicas")]
    pub min_replicas: i32,
    #[serde(default = "Autoscaling::default_max")]
    pub max_replicas: i32,
    #[serde(default = "Autoscaling::default_cpu")]
    pub target_cpu_percent: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingress {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "Ingress::default_path")]
    pub path: String,
    #[serde(default = "App::yes")]
    pub tls: bool,
    #[serde(default = "Ingress::default_class")]
    pub class_name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    #[serde(default = "App::yes")]
    pub enabled: bool,
    #[serde(default)]
    pub alerts: Alerts,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    pub error_rate_percent: Option<f64>,
    pub p99_latency_ms: Option<f64>,
}

impl App {
    fn default_replicas() -> i32 {
        2
    }
    fn default_port() -> i32 {
        8080
    }
    fn yes() -> bool {
        true
    }

    /// Kubernetes takes environment values as text: a number or a boolean
    /// a template gave (a database port) is written as text.
    pub fn textual_env(mut rendered: Map<String, Value>) -> Map<String, Value> {
        if let Some(Value::Object(env)) = rendered.get_mut("env") {
            for value in env.values_mut() {
                if let Value::Number(_) | Value::Bool(_) = value {
                    *value = Value::String(value.to_string());
                }
            }
        }
        rendered
    }

    /// Reads the rendered config.
    pub fn read(rendered: Map<String, Value>) -> Result<Self, ActionError> {
        serde_json::from_value(Value::Object(Self::textual_env(rendered)))
            .map_err(|err| ActionError::Fatal(format!("config, once rendered: {err}")))
    }

    /// What the schema cannot say.
    pub fn check(&self) -> Result<(), ActionError> {
        let fatal = |message: String| Err(ActionError::Fatal(message));
        if self.autoscaling.enabled && self.autoscaling.min_replicas > self.autoscaling.max_replicas
        {
            return fatal(format!(
                "config.autoscaling: min_replicas ({}) exceeds max_replicas ({})",
                self.autoscaling.min_replicas, self.autoscaling.max_replicas
            ));
        }
        if self.ingress.enabled && self.ingress.tls && self.host().is_none() {
            return fatal(
                "config.ingress: TLS needs a host to hold the certificate for".to_string(),
            );
        }
        if let Some(clash) = self
            .env
            .keys()
            .find(|name| self.secret_env.contains_key(*name))
        {
            return fatal(format!("config: {clash} is in both env and secret_env"));
        }
        Ok(())
    }

    /// The ingress host, when one is named.
    pub fn host(&self) -> Option<&str> {
        self.ingress.host.as_deref().filter(|host| !host.is_empty())
    }

    /// The replicas the Deployment starts with.
    pub fn starting_replicas(&self) -> i32 {
        if self.autoscaling.enabled {
            self.replicas.max(self.autoscaling.min_replicas)
        } else {
            self.replicas
        }
    }
}

impl Check {
    fn default_delay() -> i32 {
        10
    }
    fn default_period() -> i32 {
        10
    }
    fn default_threshold() -> i32 {
        3
    }
}

impl Default for Autoscaling {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: App::default_replicas(),
            max_replicas: Self::default_max(),
            target_cpu_percent: Self::default_cpu(),
        }
    }
}

impl Autoscaling {
    fn default_max() -> i32 {
        10
    }
    fn default_cpu() -> i32 {
        70
    }
}

impl Default for Ingress {
    fn default() -> Self {
        Self {
            enabled: false,
            host: None,
            path: Self::default_path(),
            tls: true,
            class_name: Self::default_class(),
        }
    }
}

impl Ingress {
    fn default_path() -> String {
        "/".to_string()
    }
    fn default_class() -> String {
        "alb".to_string()
    }
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            enabled: true,
            alerts: Alerts::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(extra: Value) -> Result<App, ActionError> {
        let mut config =
            json!({"cluster": "c", "namespace": "shop", "name": "shop", "image": "shop:1"});
        if let (Some(base), Value::Object(more)) = (config.as_object_mut(), extra) {
            base.extend(more);
        }
        let app = App::read(config.as_object().cloned().unwrap())?;
        app.check()?;
        Ok(app)
    }

    #[test]
    fn defaults_fill_what_the_item_leaves_out() {
        let app = read(json!({})).unwrap();
        assert_eq!((app.replicas, app.container_port), (2, 8080));
        assert!(!app.autoscaling.enabled && !app.ingress.enabled);
        assert!(app.monitoring.enabled && app.ingress.tls);
    }

    #[test]
    fn numbers_and_booleans_a_template_gave_become_env_text() {
        let app = read(json!({"env": {"PORT": 5432, "DEBUG": false, "NAME": "x"}})).unwrap();
        assert_eq!(app.env["PORT"], "5432");
        assert_eq!(app.env["DEBUG"], "false");
    }

    #[test]
    fn what_the_schema_cannot_say_is_refused_by_name() {
        let refused = |extra| match read(extra) {
            Err(ActionError::Fatal(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(refused(
            json!({"autoscaling": {"enabled": true, "min_replicas": 5, "max_replicas": 2}})
        )
        .contains("min_replicas (5) exceeds max_replicas (2)"));
        assert!(refused(json!({"ingress": {"enabled": true, "tls": true}}))
            .contains("TLS needs a host"));
        assert!(refused(
            json!({"env": {"KEY": "x"}, "secret_env": {"KEY": "arn:aws:secretsmanager:x"}})
        )
        .contains("KEY is in both env and secret_env"));
        assert!(refused(json!({"unknown": 1})).contains("unknown field"));
    }

    #[test]
    fn autoscaling_starts_at_least_at_its_minimum() {
        let app = read(json!({"replicas": 1, "autoscaling": {"enabled": true, "min_replicas": 3}}))
            .unwrap();
        assert_eq!(app.starting_replicas(), 3);
    }
}
