//! The kubernetes-deploy driver: an app onto an EKS cluster, with its
//! secrets, exposure, scaling and alarms (see `docs/actions/kubernetes-deploy.md`).
//!
//! - **start**: the cluster's API is reached as AWS documents it
//!   ([`crate::k8s`]); the namespace is taken only when it is new or this
//!   request's (a namespace of someone else's is never applied to, since
//!   compensation deletes it); it is recorded in the ledger, then every
//!   object is server-side applied (field manager `pao`, forced), and the
//!   alarms are recorded and put. Re-running it applies the same objects.
//! - **poll**: the rollout, judged from the Deployment's status and its
//!   pods' ([`rollout`]): done, still under way, or Fatal with the pods'
//!   reasons (an image that cannot be pulled, a crash loop, unschedulable
//!   past the deadline).
//! - **compensate**: the alarms, then the namespace (everything in it goes
//!   with it), waiting until it is gone; only a namespace carrying this
//!   request's label is deleted.

mod alarms;
mod app;
mod objects;
mod rollout;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::action::ActionError;
use crate::actions::driver::{Driver, Level, Outputs, Progress, Step, Undone};
use crate::aws::sdk;
use crate::catalog::item::ActionType;
use crate::catalog::validate::rendered_config_problems;
use crate::k8s::{Clusters, Reach};
use crate::requests::fulfillment::Resource as Recorded;
pub use objects::SecretStore;
use objects::{ExternalSecret, Objects, Owner, REQUEST_LABEL};
use rollout::{Rollout, Secrets};

const NAMESPACE: &str = "k8s:namespace";
const ALARM: &str = "cloudwatch:alarm";
/// The field manager of every apply.
const MANAGER: &str = "pao";
/// A rollout takes seconds to minutes; a namespace's deletion seconds.
const ROLLOUT_WAIT: u32 = 10;
const DELETION_WAIT: u32 = 5;

pub struct KubernetesDriver {
    clusters: Clusters,
    cloudwatch: aws_sdk_cloudwatch::Client,
    store: SecretStore,
    /// SNS topics the alarms notify (a deployment setting; may be none).
    alarm_actions: Vec<String>,
}

impl KubernetesDriver {
    pub fn new(
        clusters: Clusters,
        cloudwatch: aws_sdk_cloudwatch::Client,
        store: SecretStore,
        alarm_actions: Vec<String>,
    ) -> Self {
        Self {
            clusters,
            cloudwatch,
            store,
            alarm_actions,
        }
    }

    /// The config rendered, checked against the type's schema (templated
    /// values are only checkable now) and read. Nothing refused here
    /// succeeds on a retry: every error is Fatal.
    fn app(step: &Step<'_>) -> Result<app::App, ActionError> {
        let rendered = app::App::textual_env(step.rendered()?);
        let problems = rendered_config_problems(
            ActionType::KubernetesDeploy,
            &Value::Object(rendered.clone()),
        );
        if !problems.is_empty() {
            return Err(ActionError::Fatal(format!(
                "config, once rendered: {}",
                problems.join("; ")
            )));
        }
        let app = app::App::read(rendered)?;
        app.check()?;
        Ok(app)
    }

    /// The cluster's API, or how long to wait for it.
    async fn client(&self, cluster: &str) -> Result<Result<kube::Client, Progress>, ActionError> {
        match self.clusters.reach(cluster).await? {
            Reach::Ready(client) => Ok(Ok(client)),
            Reach::NotYet(why) => Ok(Err(Progress::Wait {
                seconds: 30,
                waiting_for: why,
            })),
            Reach::Gone => Err(ActionError::Fatal(format!(
                "EKS cluster {cluster} does not exist"
            ))),
        }
    }

    /// Refuses a namespace that exists and is not this request's.
    async fn claim_namespace(
        &self,
        client: &kube::Client,
        app: &app::App,
        step: &Step<'_>,
    ) -> Result<(), ActionError> {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let existing = namespaces
            .get_opt(&app.namespace)
            .await
            .map_err(|err| failed("read namespace", &app.namespace, err))?;
        if let Some(namespace) = existing {
            let owner = namespace
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(REQUEST_LABEL));
            if owner.map(String::as_str) != Some(step.request.id.as_str()) {
                return Err(ActionError::Fatal(format!(
                    "namespace {} exists on cluster {} and was not made by this request \
                     (it is {}): PAO deploys only into a namespace of its own, which it deletes \
                     on rollback; choose another namespace",
                    app.namespace,
                    app.cluster,
                    owner.map_or("nobody's".to_string(), |id| format!("request {id}'s"))
                )));
            }
        }
        let recorded = Recorded::new(NAMESPACE, format!("{}/{}", app.cluster, app.namespace))
            .with("cluster", &app.cluster)
            .with("namespace", &app.namespace);
        step.journal.record(recorded).await
    }

    async fn apply_all(&self, client: &kube::Client, objects: &Objects) -> Result<(), ActionError> {
        apply(Api::<Namespace>::all(client.clone()), &objects.namespace).await?;
        let namespace = objects
            .namespace
            .metadata
            .name
            .as_deref()
            .unwrap_or_default();
        let inside = || client.clone();
        apply(
            Api::namespaced(inside(), namespace),
            &objects.service_account,
        )
        .await?;
        if let Some(secret) = &objects.external_secret {
            let name = secret.metadata.name.as_deref().unwrap_or_default();
            patch(
                &external_secrets(inside(), namespace),
                name,
                ExternalSecret::KIND,
                secret,
            )
            .await
            .map_err(without_operator)?;
        }
        apply(Api::namespaced(inside(), namespace), &objects.deployment).await?;
        apply(Api::namespaced(inside(), namespace), &objects.service).await?;
        if let Some(autoscaler) = &objects.autoscaler {
            apply(Api::namespaced(inside(), namespace), autoscaler).await?;
        }
        if let Some(ingress) = &objects.ingress {
            apply(Api::namespaced(inside(), namespace), ingress).await?;
        }
        if let Some(budget) = &objects.disruption_budget {
            apply(Api::namespaced(inside(), namespace), budget).await?;
        }
        Ok(())
    }

    async fn put_alarms(&self, app: &app::App, step: &Step<'_>) -> Result<usize, ActionError> {
        let alarms = alarms::alarms(app, &app.cluster, &step.name(""));
        let tags = step.tags(&Map::new());
        for alarm in &alarms {
            step.journal
                .record(Recorded::new(ALARM, &alarm.name))
                .await?;
            alarm
                .put(&self.cloudwatch, &tags, &self.alarm_actions)
                .await?;
        }
        Ok(alarms.len())
    }

    async fn rollout(&self, client: &kube::Client, app: &app::App) -> Result<Rollout, ActionError> {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app.namespace);
        let deployment = deployments
            .get(&app.name)
            .await
            .map_err(|err| failed("read Deployment", &app.name, err))?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &app.namespace);
        let selector = format!("app.kubernetes.io/name={}", app.name);
        let listed = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|err| failed("list pods of", &app.name, err))?;
        let secrets = if app.secret_env.is_empty() {
            Secrets::Synced
        } else {
            let name = objects::secret_name(app);
            let external = external_secrets(client.clone(), &app.namespace)
                .get(&name)
                .await
                .map_err(|err| failed("read ExternalSecret", &name, err))?;
            Secrets::of(&name, &serde_json::to_value(&external).unwrap_or_default())
        };
        Ok(rollout::judge(&deployment, &listed.items, &secrets))
    }

    /// Deletes the namespace of the ledger; `Some(wait)` until it is gone.
    async fn remove_namespace(
        &self,
        step: &Step<'_>,
        recorded: &Recorded,
    ) -> Result<Option<String>, ActionError> {
        let cluster = recorded.detail.get("cluster").cloned().unwrap_or_default();
        let name = recorded
            .detail
            .get("namespace")
            .cloned()
            .unwrap_or_default();
        let client = match self.clusters.reach(&cluster).await? {
            Reach::Ready(client) => client,
            Reach::NotYet(why) => return Ok(Some(why)),
            // The cluster went first: everything on it went with it.
            Reach::Gone => return Ok(None),
        };
        let namespaces: Api<Namespace> = Api::all(client);
        let Some(namespace) = namespaces
            .get_opt(&name)
            .await
            .map_err(|err| failed("read namespace", &name, err))?
        else {
            return Ok(None);
        };
        let ours = namespace
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(REQUEST_LABEL))
            == Some(&step.request.id);
        if !ours {
            let message = format!(
                "namespace {name} on cluster {cluster} no longer carries this request's label: left alone"
            );
            step.journal.log(Level::Warn, &message).await?;
            return Ok(None);
        }
        if namespace.metadata.deletion_timestamp.is_none() {
            match namespaces.delete(&name, &DeleteParams::foreground()).await {
                Ok(_) => {}
                // Being deleted already.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
                Err(err) => return Err(failed("delete namespace", &name, err)),
            }
        }
        Ok(Some(format!(
            "namespace {name} on cluster {cluster} to be deleted"
        )))
    }
}

#[async_trait]
impl Driver for KubernetesDriver {
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let app = Self::app(step)?;
        let client = match self.client(&app.cluster).await? {
            Ok(client) => client,
            Err(wait) => return Ok(wait),
        };
        self.claim_namespace(&client, &app, step).await?;
        let owner = Owner {
            request_id: &step.request.id,
            action_id: &step.action.id,
        };
        let objects = Objects::build(&app, &owner, &self.store);
        self.apply_all(&client, &objects).await?;
        let alarms = self.put_alarms(&app, step).await?;
        let message = format!(
            "applied Deployment {} ({} x {}) to {}/{}{}{}; {alarms} alarm(s)",
            app.name,
            app.starting_replicas(),
            app.image,
            app.cluster,
            app.namespace,
            if objects.autoscaler.is_some() {
                ", autoscaled"
            } else {
                ""
            },
            app.host()
                .filter(|_| objects.ingress.is_some())
                .map(|host| format!(", exposed at {host}"))
                .unwrap_or_default(),
        );
        step.journal.log(Level::Info, &message).await?;
        Ok(Progress::Wait {
            seconds: ROLLOUT_WAIT,
            waiting_for: format!("the rollout of Deployment {}", app.name),
        })
    }

    async fn poll(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let app = Self::app(step)?;
        let client = match self.client(&app.cluster).await? {
            Ok(client) => client,
            Err(wait) => return Ok(wait),
        };
        match self.rollout(&client, &app).await? {
            Rollout::Ready => Ok(Progress::Done(Outputs::new(outputs(&app)))),
            Rollout::Waiting(why) => Ok(Progress::Wait {
                seconds: ROLLOUT_WAIT,
                waiting_for: why,
            }),
            Rollout::Stuck(why) => Err(ActionError::Fatal(format!(
                "the rollout of Deployment {} cannot finish: {why}",
                app.name
            ))),
        }
    }

    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError> {
        if step.resources.is_empty() {
            return Ok(Undone::Kept("nothing was deployed".to_string()));
        }
        if step.retain() {
            return Ok(Undone::Kept(
                "kept as the item says (rollback: retain)".to_string(),
            ));
        }
        let alarms: Vec<String> = step.recorded(ALARM).map(|r| r.id.clone()).collect();
        if !alarms.is_empty() {
            self.cloudwatch
                .delete_alarms()
                .set_alarm_names(Some(alarms.clone()))
                .send()
                .await
                .map_err(|err| sdk::failed("CloudWatch", "DeleteAlarms", &err))?;
        }
        let mut deleted = Vec::new();
        for namespace in step.recorded(NAMESPACE) {
            if let Some(waiting_for) = self.remove_namespace(step, namespace).await? {
                return Ok(Undone::Wait {
                    seconds: DELETION_WAIT,
                    waiting_for,
                });
            }
            deleted.push(format!("namespace {}", namespace.id));
        }
        if !alarms.is_empty() {
            deleted.push(format!("alarms {}", alarms.join(", ")));
        }
        Ok(Undone::Done(format!("deleted {}", deleted.join("; "))))
    }
}

/// What the action gives later actions.
fn outputs(app: &app::App) -> Map<String, Value> {
    let url = match app.host().filter(|_| app.ingress.enabled) {
        Some(host) => {
            let scheme = if app.ingress.tls { "https" } else { "http" };
            format!("{scheme}://{host}")
        }
        None => format!("http://{}.{}.svc.cluster.local", app.name, app.namespace),
    };
    let values = json!({
        "namespace": app.namespace,
        "deployment": app.name,
        "service": app.name,
        "url": url,
    });
    values.as_object().cloned().unwrap_or_default()
}

/// Server-side apply of a typed object, as field manager `pao`.
async fn apply<K>(api: Api<K>, object: &K) -> Result<(), ActionError>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    patch(&api, &name, &K::kind(&()), object).await
}

async fn patch<K, P>(api: &Api<K>, name: &str, kind: &str, object: &P) -> Result<(), ActionError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    P: Serialize + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
    .map_err(|err| failed(&format!("apply {kind}"), name, err))
}

/// The app's ExternalSecrets, a custom resource of the External Secrets
/// Operator's.
fn external_secrets(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: ExternalSecret::GROUP.to_string(),
        version: ExternalSecret::VERSION.to_string(),
        api_version: ExternalSecret::API_VERSION.to_string(),
        kind: ExternalSecret::KIND.to_string(),
        plural: ExternalSecret::PLURAL.to_string(),
    };
    Api::namespaced_with(client, namespace, &resource)
}

/// A cluster that does not serve ExternalSecrets (404 on the kind) has no
/// External Secrets Operator: said plainly, as the fix is the cluster's.
fn without_operator(err: ActionError) -> ActionError {
    match err {
        ActionError::Fatal(text) if text.contains("(404)") => ActionError::Fatal(format!(
            "{text}: the cluster does not serve {}/{}, so the External Secrets Operator is not \
             installed on it; the platform's cluster bootstrap installs it with the \
             ClusterSecretStore PAO names",
            ExternalSecret::API_VERSION,
            ExternalSecret::KIND
        )),
        other => other,
    }
}

/// A failed call of the cluster's API, sorted for the state machine: a
/// refusal of the object (422) or of PAO (401, 403) is Fatal with the
/// server's message; 429 slows down; conflicts, server errors and the
/// network are tried again.
fn failed(what: &str, name: &str, err: kube::Error) -> ActionError {
    match err {
        kube::Error::Api(status) => {
            let causes: Vec<String> = status
                .details
                .iter()
                .flat_map(|details| &details.causes)
                .map(|cause| format!("{}: {}", cause.field, cause.message))
                .collect();
            let mut text = format!(
                "Kubernetes: {what} {name}: {} ({})",
                status.message, status.code
            );
            if !causes.is_empty() {
                text.push_str(&format!("; {}", causes.join("; ")));
            }
            match status.code {
                429 => ActionError::Throttled(text),
                409 | 500..=599 => ActionError::Retryable(text),
                // The namespace of an earlier rollback, still going away.
                403 if status.message.contains("being terminated") => ActionError::Retryable(text),
                401 | 403 => ActionError::Fatal(format!(
                    "{text}: the kubernetes-deploy function's role needs the cluster's access entry"
                )),
                _ => ActionError::Fatal(text),
            }
        }
        other => ActionError::Retryable(format!("Kubernetes: {what} {name}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(extra: Value) -> app::App {
        let mut config =
            json!({"cluster": "c", "namespace": "shop", "name": "shop", "image": "shop:1"});
        if let (Some(base), Value::Object(more)) = (config.as_object_mut(), extra) {
            base.extend(more);
        }
        app::App::read(config.as_object().cloned().unwrap()).unwrap()
    }

    /// The `Status` the API server answers with, as it sends it.
    fn api_error(code: u16, message: &str, causes: &[(&str, &str)]) -> kube::Error {
        let causes: Vec<Value> = causes
            .iter()
            .map(|(field, message)| json!({"field": field, "message": message, "reason": "FieldValueInvalid"}))
            .collect();
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "code": code, "message": message, "reason": "Invalid",
            "details": {"name": "shop", "kind": "deployments", "causes": causes}
        });
        kube::Error::Api(Box::new(serde_json::from_value(status).expect("a Status")))
    }

    #[test]
    fn the_api_servers_answers_are_sorted_for_the_state_machine() {
        let invalid = failed(
            "apply Deployment",
            "shop",
            api_error(
                422,
                "Deployment.apps \"shop\" is invalid",
                &[("spec.replicas", "must be an integer")],
            ),
        );
        assert_eq!(
            invalid,
            ActionError::Fatal(
                "Kubernetes: apply Deployment shop: Deployment.apps \"shop\" is invalid (422); \
                 spec.replicas: must be an integer"
                    .to_string()
            )
        );
        let denied = failed("apply Namespace", "shop", api_error(403, "forbidden", &[]));
        assert!(
            matches!(&denied, ActionError::Fatal(m) if m.contains("access entry")),
            "{denied:?}"
        );
        let terminating = failed(
            "apply Deployment",
            "shop",
            api_error(
                403,
                "unable to create new content in namespace shop because it is being terminated",
                &[],
            ),
        );
        assert!(matches!(terminating, ActionError::Retryable(_)));
        assert!(matches!(
            failed("apply", "x", api_error(409, "conflict", &[])),
            ActionError::Retryable(_)
        ));
        assert!(matches!(
            failed("apply", "x", api_error(429, "slow down", &[])),
            ActionError::Throttled(_)
        ));
        assert!(matches!(
            failed("apply", "x", api_error(503, "unavailable", &[])),
            ActionError::Retryable(_)
        ));
    }

    #[test]
    fn a_cluster_without_the_external_secrets_operator_is_said_plainly() {
        let unserved = failed(
            "apply ExternalSecret",
            "shop-secrets",
            api_error(404, "the server could not find the requested resource", &[]),
        );
        let ActionError::Fatal(text) = without_operator(unserved) else {
            panic!("a missing kind is Fatal");
        };
        assert!(
            text.contains("External Secrets Operator is not installed"),
            "{text}"
        );
        let conflict = failed("apply ExternalSecret", "x", api_error(409, "conflict", &[]));
        assert_eq!(without_operator(conflict.clone()), conflict);
    }

    #[test]
    fn the_url_is_the_ingress_host_or_the_services_in_cluster_name() {
        let exposed = app(json!({"ingress": {"enabled": true, "host": "shop.example.com"}}));
        assert_eq!(outputs(&exposed)["url"], "https://shop.example.com");
        let internal = app(json!({}));
        assert_eq!(
            outputs(&internal),
            json!({"namespace": "shop", "deployment": "shop", "service": "shop",
                   "url": "http://shop.shop.svc.cluster.local"})
            .as_object()
            .cloned()
            .unwrap()
        );
    }
}
