//! The flagship item end to end: a request for the example catalog's
//! `eks-app-stack` provisions VPC → database → secret → cluster → app on
//! the local stack (moto for AWS, the Kubernetes stand-in for the cluster's
//! API), exactly as `make up` loads it. What the stand-in holds is checked
//! against what moto reports; after a failure or a rollback every service
//! is listed for what is still tagged with the request's id.

use std::time::Duration;

use pao_integration::kube::{of_kind, StandIn};
use pao_integration::leftovers::{leftovers, snapshots};
use pao_integration::portal::Portal;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ITEM: &str = "eks-app-stack";
const GROUPS: &[&str] = &["developers"];
const LIMIT: Duration = Duration::from_secs(300);

struct Stack {
    portal: Portal,
    kube: StandIn,
    app: String,
}

impl Stack {
    async fn new() -> Self {
        let app = format!("shop-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        Self {
            portal: Portal::new(GROUPS).await,
            kube: StandIn::connect(),
            app,
        }
    }

    fn sdk(&self) -> &aws_config::SdkConfig {
        &self.portal.stack.sdk
    }

    fn cluster(&self) -> String {
        format!("{}-dev", self.app)
    }

    /// The form as the portal starts it, this app's answers, then `extra`.
    async fn fields(&self, extra: Value) -> Value {
        let mut fields = self.portal.form_defaults(ITEM).await;
        let answers = json!({
            "app_name": self.app,
            "image": "registry.example.com/shop:1.4.2",
            "owner_email": "shop-team@example.com",
            "cost_center": "CC-4711",
        });
        if let Some(base) = fields.as_object_mut() {
            for more in [answers, extra] {
                base.extend(more.as_object().cloned().unwrap_or_default());
            }
        }
        fields
    }

    /// Submits the item and waits until it ends `expected`.
    async fn run(&self, extra: Value, expected: &str) -> String {
        let id = self.portal.submit(ITEM, self.fields(extra).await).await;
        self.portal.ends(&id, expected, LIMIT).await;
        id
    }

    async fn request(&self, id: &str) -> Value {
        let (code, request) = self
            .portal
            .call(Method::GET, &format!("/api/v1/requests/{id}"), None)
            .await;
        assert_eq!(code, StatusCode::OK, "{request}");
        request
    }

    /// What the app's namespace holds on its cluster.
    async fn deployed(&self) -> Vec<Value> {
        self.kube.namespace(&self.cluster(), &self.app).await
    }
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "one {kind} in {objects:#?}");
    found[0]
}

/// The container's env var `name`.
fn env_var<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|vars| vars.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no env var {name} in {container}"))
}

#[tokio::test]
async fn the_stack_deploys_the_app_wired_to_its_database_and_secrets_and_rolls_back() {
    let stack = Stack::new().await;
    let host = format!("{}.apps.example.com", stack.app);
    let extra = json!({
        "pod_autoscaling": true,
        "max_replicas": 4,
        "expose_publicly": true,
        "ingress_host": host,
    });
    let id = stack.run(extra, "Completed").await;

    // What moto reports for the database and the secrets.
    let database = stack.portal.stack.outputs(&id, "database").await;
    let rds = aws_sdk_rds::Client::new(stack.sdk());
    let described = rds
        .describe_db_instances()
        .db_instance_identifier(database["db_instance_id"].as_str().expect("db_instance_id"))
        .send()
        .await
        .expect("DescribeDBInstances");
    let instance = &described.db_instances()[0];
    let endpoint = instance
        .endpoint()
        .and_then(|e| e.address())
        .expect("an endpoint");
    let master_arn = instance
        .master_user_secret()
        .and_then(|s| s.secret_arn())
        .expect("RDS keeps the master password in Secrets Manager");
    let app_secret = stack.portal.stack.outputs(&id, "app_secret").await;
    let app_secret_arn = app_secret["secret_arn"].as_str().expect("secret_arn");

    // The Deployment as asked, on the cluster the stack made.
    let objects = stack.deployed().await;
    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/shop:1.4.2");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], 8080, "{probe}");
    }
    assert_eq!(env_var(container, "DATABASE_HOST")["value"], endpoint);
    assert_eq!(env_var(container, "DATABASE_NAME")["value"], "app");
    assert_eq!(env_var(container, "APP_ENV")["value"], "dev");

    // The secrets reach the container by reference: its env names the
    // Secret the operator writes, the ExternalSecret names the two ARNs.
    let secret_name = format!("{}-secrets", stack.app);
    for name in ["APP_SECRET_KEY", "DATABASE_CREDENTIALS"] {
        let var = env_var(container, name);
        assert!(var.get("value").is_none(), "{var}");
        assert_eq!(
            var["valueFrom"]["secretKeyRef"],
            json!({"name": secret_name, "key": name, "optional": false})
        );
    }
    let external = one(&objects, "ExternalSecret");
    let mut remote: Vec<(String, String)> = external["spec"]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| {
            (
                d["secretKey"].as_str().unwrap_or_default().to_string(),
                d["remoteRef"]["key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    remote.sort();
    assert_eq!(
        remote,
        [
            ("APP_SECRET_KEY".to_string(), app_secret_arn.to_string()),
            ("DATABASE_CREDENTIALS".to_string(), master_arn.to_string()),
        ]
    );
    assert_eq!(external["status"]["conditions"][0]["status"], "True");
    let secrets = aws_sdk_secretsmanager::Client::new(stack.sdk());
    for arn in [app_secret_arn, master_arn] {
        secrets
            .describe_secret()
            .secret_id(arn)
            .send()
            .await
            .unwrap_or_else(|err| panic!("{arn} is a secret in Secrets Manager: {err:?}"));
    }

    // Exposed and autoscaled, as asked; two replicas keep a budget.
    let autoscaler = one(&objects, "HorizontalPodAutoscaler");
    assert_eq!(autoscaler["spec"]["minReplicas"], 2);
    assert_eq!(autoscaler["spec"]["maxReplicas"], 4);
    let ingress = one(&objects, "Ingress");
    assert_eq!(ingress["spec"]["rules"][0]["host"], host.as_str());
    assert_eq!(ingress["spec"]["ingressClassName"], "alb");
    one(&objects, "PodDisruptionBudget");
    one(&objects, "Service");
    let app = stack.portal.stack.outputs(&id, "app").await;
    assert_eq!(app["url"], format!("https://{host}"));
    assert_eq!(app["namespace"], stack.app.as_str());

    // Four alarms, tagged with the request.
    let made = leftovers(stack.sdk(), &id).await;
    let alarms: Vec<&String> = made
        .iter()
        .filter(|l| l.starts_with("cloudwatch:alarm"))
        .collect();
    assert_eq!(alarms.len(), 4, "{made:#?}");

    // No secret value in the table, the execution's history or any log.
    let request = stack.request(&id).await;
    let execution = request["execution_arn"].as_str().expect("an execution");
    for arn in [app_secret_arn, master_arn] {
        let value = secrets
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .expect("GetSecretValue");
        let value = value.secret_string().expect("a value");
        stack
            .portal
            .stack
            .assert_secret_kept_out(&id, execution, value)
            .await;
    }

    // Rollback keeps the data only: the final snapshot, and the secret in
    // its recovery window; the namespace is gone from the cluster.
    stack.portal.roll_back(&id, LIMIT).await;
    let snapshots = snapshots(stack.sdk(), &id).await;
    assert_eq!(snapshots.len(), 1, "one final snapshot: {snapshots:?}");
    let mut left = leftovers(stack.sdk(), &id).await;
    left.sort();
    let described = secrets
        .describe_secret()
        .secret_id(app_secret_arn)
        .send()
        .await
        .expect("DescribeSecret");
    let mut kept = vec![
        format!("rds:snapshot {}", snapshots[0]),
        format!(
            "secretsmanager:secret {:?} (scheduled for deletion)",
            described.name()
        ),
    ];
    kept.sort();
    assert_eq!(left, kept, "only the snapshot and the secret are kept");
    assert_eq!(stack.deployed().await, Vec::<Value>::new());
}

#[tokio::test]
async fn an_internal_app_gets_no_ingress_no_autoscaler_and_one_replica_no_budget() {
    let stack = Stack::new().await;
    let id = stack
        .run(json!({"replicas": 1, "notify_team": false}), "Completed")
        .await;
    let objects = stack.deployed().await;
    assert_eq!(one(&objects, "Deployment")["spec"]["replicas"], 1);
    for absent in ["Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget"] {
        assert!(of_kind(&objects, absent).is_empty(), "no {absent}");
    }
    let app = stack.portal.stack.outputs(&id, "app").await;
    assert_eq!(
        app["url"],
        format!("http://{0}.{0}.svc.cluster.local", stack.app)
    );
    stack.portal.roll_back(&id, LIMIT).await;
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_stack_with_the_pods_reason_and_leaves_nothing() {
    let stack = Stack::new().await;
    let unpullable = json!({"image": "registry.example.com/shop:1.4.2-unpullable"});
    let id = stack.run(unpullable, "Failed").await;
    let request = stack.request(&id).await;
    let reason = request["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("ImagePullBackOff")
            && reason
                .contains("Back-off pulling image \"registry.example.com/shop:1.4.2-unpullable\""),
        "the reason is the pods': {reason}"
    );
    let left = leftovers(stack.sdk(), &id).await;
    assert!(
        left.is_empty(),
        "left behind: {left:#?}; logs {:#?}",
        stack.portal.logs(&id).await
    );
    assert_eq!(stack.deployed().await, Vec::<Value>::new());
}
