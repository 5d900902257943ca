//! The Kubernetes objects of one app, typed (k8s-openapi, and the External
//! Secrets Operator's `ExternalSecret` as a struct of its own): built here,
//! applied by the driver with server-side apply. Every object carries the
//! item's labels and the request's, so what a request made can be found.
//!
//! Secrets reach the container as environment variables without their
//! values passing through PAO: an `ExternalSecret` names the Secrets
//! Manager ARNs, the operator in the cluster reads them (and reads them
//! again every refresh interval, so a rotation reaches the Kubernetes
//! Secret), and the container's env refers to that Secret's keys.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Namespace, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SecretKeySelector, Service, ServiceAccount,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

use super::app::{Amounts, App, Check};

/// The labels PAO sets on everything it applies.
pub const REQUEST_LABEL: &str = "pao.dev/request-id";
pub const ACTION_LABEL: &str = "pao.dev/action-id";
const NAME_LABEL: &str = "app.kubernetes.io/name";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Where the External Secrets Operator finds AWS Secrets Manager: a
/// deployment setting, since the store is the platform's, not the item's.
#[derive(Debug, Clone)]
pub struct SecretStore {
    /// The `ClusterSecretStore`'s name.
    pub name: String,
    /// How often the operator reads the secrets again, such as `1h`.
    pub refresh_interval: String,
}

/// The objects of one app, in the order they are applied.
pub struct Objects {
    pub namespace: Namespace,
    pub service_account: ServiceAccount,
    pub external_secret: Option<ExternalSecret>,
    pub deployment: Deployment,
    pub service: Service,
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    pub ingress: Option<Ingress>,
    pub disruption_budget: Option<PodDisruptionBudget>,
}

/// What identifies the request's objects.
pub struct Owner<'a> {
    pub request_id: &'a str,
    pub action_id: &'a str,
}

impl Objects {
    pub fn build(app: &App, owner: &Owner<'_>, store: &SecretStore) -> Self {
        let labels = labels(app, owner);
        let meta = |name: &str| ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(app.namespace.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        };
        let account = service_account_name(app);
        let external_secret = (!app.secret_env.is_empty()).then(|| ExternalSecret {
            api_version: ExternalSecret::API_VERSION,
            kind: ExternalSecret::KIND,
            metadata: meta(&secret_name(app)),
            spec: external_secret_spec(app, store),
        });
        Self {
            namespace: Namespace {
                metadata: ObjectMeta {
                    name: Some(app.namespace.clone()),
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
            service_account: ServiceAccount {
                metadata: meta(&account),
                ..ServiceAccount::default()
            },
            external_secret,
            deployment: Deployment {
                metadata: meta(&app.name),
                spec: Some(deployment_spec(app, &labels, &account)),
                ..Deployment::default()
            },
            service: Service {
                metadata: meta(&app.name),
                spec: Some(ServiceSpec {
                    selector: Some(selector(app)),
                    ports: Some(vec![ServicePort {
                        name: Some("http".to_string()),
                        port: 80,
                        target_port: Some(IntOrString::Int(app.container_port)),
                        protocol: Some("TCP".to_string()),
                        ..ServicePort::default()
                    }]),
                    type_: Some("ClusterIP".to_string()),
                    ..ServiceSpec::default()
                }),
                ..Service::default()
            },
            autoscaler: app.autoscaling.enabled.then(|| HorizontalPodAutoscaler {
                metadata: meta(&app.name),
                spec: Some(autoscaler_spec(app)),
                ..HorizontalPodAutoscaler::default()
            }),
            ingress: app.ingress.enabled.then(|| Ingress {
                metadata: meta(&app.name),
                spec: Some(ingress_spec(app)),
                ..Ingress::default()
            }),
            disruption_budget: (app.starting_replicas() >= 2).then(|| PodDisruptionBudget {
                metadata: meta(&app.name),
                spec: Some(PodDisruptionBudgetSpec {
                    max_unavailable: Some(IntOrString::Int(1)),
                    selector: Some(LabelSelector {
                        match_labels: Some(selector(app)),
                        ..LabelSelector::default()
                    }),
                    ..PodDisruptionBudgetSpec::default()
                }),
                ..PodDisruptionBudget::default()
            }),
        }
    }
}

/// The item's labels, then PAO's (which win).
fn labels(app: &App, owner: &Owner<'_>) -> BTreeMap<String, String> {
    let mut labels = app.labels.clone();
    labels.insert(NAME_LABEL.to_string(), app.name.clone());
    labels.insert(MANAGED_BY_LABEL.to_string(), "pao".to_string());
    labels.insert(REQUEST_LABEL.to_string(), owner.request_id.to_string());
    labels.insert(ACTION_LABEL.to_string(), owner.action_id.to_string());
    labels
}

/// What the Deployment's pods are found by: only the app's name, which
/// never changes (a selector cannot).
fn selector(app: &App) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_string(), app.name.clone())])
}

pub fn service_account_name(app: &App) -> String {
    app.service_account
        .clone()
        .unwrap_or_else(|| app.name.clone())
}

/// The Kubernetes Secret the operator writes, and its ExternalSecret.
pub fn secret_name(app: &App) -> String {
    format!("{}-secrets", app.name)
}

fn deployment_spec(app: &App, labels: &BTreeMap<String, String>, account: &str) -> DeploymentSpec {
    DeploymentSpec {
        replicas: Some(app.starting_replicas()),
        selector: LabelSelector {
            match_labels: Some(selector(app)),
            ..LabelSelector::default()
        },
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(account.to_string()),
                containers: vec![container(app)],
                ..PodSpec::default()
            }),
        },
        ..DeploymentSpec::default()
    }
}

fn container(app: &App) -> Container {
    let plain = app.env.iter().map(|(name, value)| EnvVar {
        name: name.clone(),
        value: Some(value.clone()),
        ..EnvVar::default()
    });
    let secret = secret_name(app);
    let from_secrets = app.secret_env.keys().map(|name| EnvVar {
        name: name.clone(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.clone(),
                key: name.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
    Container {
        name: app.name.clone(),
        image: Some(app.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_string()),
            container_port: app.container_port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        env: Some(plain.chain(from_secrets).collect()),
        resources: Some(ResourceRequirements {
            requests: amounts(&app.resources.requests),
            limits: amounts(&app.resources.limits),
            ..ResourceRequirements::default()
        }),
        liveness_probe: app.health_check.as_ref().map(|check| probe(check, app)),
        readiness_probe: app.readiness_check.as_ref().map(|check| probe(check, app)),
        ..Container::default()
    }
}

fn amounts(amounts: &Amounts) -> Option<BTreeMap<String, Quantity>> {
    let listed: BTreeMap<String, Quantity> = [("cpu", &amounts.cpu), ("memory", &amounts.memory)]
        .into_iter()
        .filter_map(|(name, amount)| {
            amount
                .as_ref()
                .map(|amount| (name.to_string(), Quantity(amount.clone())))
        })
        .collect();
    (!listed.is_empty()).then_some(listed)
}

fn probe(check: &Check, app: &App) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(check.path.clone()),
            port: IntOrString::Int(check.port.unwrap_or(app.container_port)),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(check.initial_delay_seconds),
        period_seconds: Some(check.period_seconds),
        failure_threshold: Some(check.failure_threshold),
        ..Probe::default()
    }
}

fn autoscaler_spec(app: &App) -> HorizontalPodAutoscalerSpec {
    HorizontalPodAutoscalerSpec {
        scale_target_ref: CrossVersionObjectReference {
            api_version: Some("apps/v1".to_string()),
            kind: "Deployment".to_string(),
            name: app.name.clone(),
        },
        min_replicas: Some(app.autoscaling.min_replicas),
        max_replicas: app.autoscaling.max_replicas,
        metrics: Some(vec![MetricSpec {
            type_: "Resource".to_string(),
            resource: Some(ResourceMetricSource {
                name: "cpu".to_string(),
                target: MetricTarget {
                    type_: "Utilization".to_string(),
                    average_utilization: Some(app.autoscaling.target_cpu_percent),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        }]),
        ..HorizontalPodAutoscalerSpec::default()
    }
}

fn ingress_spec(app: &App) -> IngressSpec {
    let host = app.host().map(str::to_string);
    IngressSpec {
        ingress_class_name: Some(app.ingress.class_name.clone()),
        rules: Some(vec![IngressRule {
            host: host.clone(),
            http: Some(HTTPIngressRuleValue {
                paths: vec![HTTPIngressPath {
                    path: Some(app.ingress.path.clone()),
                    path_type: "Prefix".to_string(),
                    backend: IngressBackend {
                        service: Some(IngressServiceBackend {
                            name: app.name.clone(),
                            port: Some(ServiceBackendPort {
                                number: Some(80),
                                ..ServiceBackendPort::default()
                            }),
                        }),
                        ..IngressBackend::default()
                    },
                }],
            }),
        }]),
        tls: app.ingress.tls.then(|| {
            vec![IngressTLS {
                hosts: host.map(|host| vec![host]),
                secret_name: Some(format!("{}-tls", app.name)),
            }]
        }),
        ..IngressSpec::default()
    }
}

// ------------------------------------------------------------ ExternalSecret

/// The External Secrets Operator's `ExternalSecret`
/// (`external-secrets.io/v1`): the part of its schema PAO writes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecret {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
    pub spec: ExternalSecretSpec,
}

impl ExternalSecret {
    pub const API_VERSION: &'static str = "external-secrets.io/v1";
    pub const KIND: &'static str = "ExternalSecret";
    pub const GROUP: &'static str = "external-secrets.io";
    pub const VERSION: &'static str = "v1";
    pub const PLURAL: &'static str = "externalsecrets";
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretSpec {
    pub refresh_interval: String,
    pub secret_store_ref: StoreRef,
    pub target: Target,
    pub data: Vec<SecretData>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoreRef {
    pub name: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub name: String,
    pub creation_policy: &'static str,
    pub deletion_policy: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretData {
    /// The key in the Kubernetes Secret: the variable's name.
    pub secret_key: String,
    pub remote_ref: RemoteRef,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoteRef {
    /// The Secrets Manager secret's ARN.
    pub key: String,
}

fn external_secret_spec(app: &App, store: &SecretStore) -> ExternalSecretSpec {
    ExternalSecretSpec {
        refresh_interval: store.refresh_interval.clone(),
        secret_store_ref: StoreRef {
            name: store.name.clone(),
            kind: "ClusterSecretStore",
        },
        target: Target {
            name: secret_name(app),
            creation_policy: "Owner",
            deletion_policy: "Delete",
        },
        data: app
            .secret_env
            .iter()
            .map(|(name, arn)| SecretData {
                secret_key: name.clone(),
                remote_ref: RemoteRef { key: arn.clone() },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn app(extra: Value) -> App {
        let mut config = json!({
            "cluster": "shop-prod", "namespace": "shop", "name": "shop",
            "image": "example.com/shop:1.4.2", "replicas": 3, "container_port": 3000,
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
            "env": {"APP_ENV": "prod", "DATABASE_PORT": 5432},
            "secret_env": {"APP_SECRET_KEY": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf"},
            "health_check": {"path": "/healthz"},
            "readiness_check": {"path": "/ready", "period_seconds": 5},
            "labels": {"team": "checkout", "pao.dev/request-id": "forged"}
        });
        if let (Some(base), Value::Object(more)) = (config.as_object_mut(), extra) {
            base.extend(more);
        }
        App::read(config.as_object().cloned().unwrap()).unwrap()
    }

    fn build(app: &App) -> Objects {
        let owner = Owner {
            request_id: "r-1",
            action_id: "app",
        };
        let store = SecretStore {
            name: "aws-secrets-manager".to_string(),
            refresh_interval: "1h".to_string(),
        };
        Objects::build(app, &owner, &store)
    }

    #[test]
    fn the_deployment_runs_the_image_with_its_port_resources_probes_and_env() {
        let objects = build(&app(json!({})));
        let deployment = serde_json::to_value(&objects.deployment).unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(deployment["spec"]["replicas"], 3);
        assert_eq!(container["image"], "example.com/shop:1.4.2");
        assert_eq!(container["ports"][0]["containerPort"], 3000);
        assert_eq!(
            container["resources"],
            json!({"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}})
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"],
            json!({"path": "/healthz", "port": 3000})
        );
        assert_eq!(container["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(
            container["env"],
            json!([
                {"name": "APP_ENV", "value": "prod"},
                {"name": "DATABASE_PORT", "value": "5432"},
                {"name": "APP_SECRET_KEY", "valueFrom": {"secretKeyRef":
                    {"name": "shop-secrets", "key": "APP_SECRET_KEY", "optional": false}}}
            ])
        );
        assert_eq!(
            deployment["spec"]["selector"],
            json!({"matchLabels": {"app.kubernetes.io/name": "shop"}})
        );
    }

    #[test]
    fn pao_labels_every_object_and_the_item_cannot_forge_them() {
        let objects = build(&app(json!({})));
        let labels = objects.namespace.metadata.labels.clone().unwrap();
        assert_eq!(labels["pao.dev/request-id"], "r-1");
        assert_eq!(labels["pao.dev/action-id"], "app");
        assert_eq!(labels["team"], "checkout");
        assert_eq!(objects.service.metadata.labels, Some(labels.clone()));
        let pod_labels = objects
            .deployment
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels;
        assert_eq!(pod_labels, Some(labels));
    }

    #[test]
    fn secrets_are_named_by_arn_and_read_in_the_cluster_never_carried() {
        let objects = build(&app(json!({})));
        let secret = serde_json::to_value(objects.external_secret.unwrap()).unwrap();
        assert_eq!(secret["apiVersion"], "external-secrets.io/v1");
        assert_eq!(secret["kind"], "ExternalSecret");
        assert_eq!(
            secret["spec"],
            json!({
                "refreshInterval": "1h",
                "secretStoreRef": {"name": "aws-secrets-manager", "kind": "ClusterSecretStore"},
                "target": {"name": "shop-secrets", "creationPolicy": "Owner", "deletionPolicy": "Delete"},
                "data": [{"secretKey": "APP_SECRET_KEY", "remoteRef":
                    {"key": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf"}}]
            })
        );
        let no_secrets = build(&app(json!({"secret_env": {}})));
        assert!(no_secrets.external_secret.is_none());
    }

    #[test]
    fn autoscaler_ingress_and_budget_exist_only_when_asked_for() {
        let plain = build(&app(json!({"replicas": 1})));
        assert!(plain.autoscaler.is_none());
        assert!(plain.ingress.is_none());
        assert!(plain.disruption_budget.is_none(), "one replica: no budget");

        let full = build(&app(json!({
            "autoscaling": {"enabled": true, "min_replicas": 2, "max_replicas": 8, "target_cpu_percent": 60},
            "ingress": {"enabled": true, "host": "shop.example.com", "class_name": "alb"}
        })));
        let autoscaler = serde_json::to_value(full.autoscaler.unwrap()).unwrap();
        assert_eq!(autoscaler["spec"]["minReplicas"], 2);
        assert_eq!(autoscaler["spec"]["maxReplicas"], 8);
        assert_eq!(
            autoscaler["spec"]["metrics"][0]["resource"],
            json!({"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}})
        );
        let ingress = serde_json::to_value(full.ingress.unwrap()).unwrap();
        assert_eq!(ingress["spec"]["ingressClassName"], "alb");
        assert_eq!(ingress["spec"]["rules"][0]["host"], "shop.example.com");
        assert_eq!(
            ingress["spec"]["tls"],
            json!([{"hosts": ["shop.example.com"], "secretName": "shop-tls"}])
        );
        assert!(full.disruption_budget.is_some());
    }
}
