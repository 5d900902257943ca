//! The kubernetes-deploy driver in process against the emulator at
//! `AWS_ENDPOINT_URL` and the Kubernetes stand-in its EKS clusters point
//! at (`PAO_KUBE_URL`): the driver reaches the cluster as on AWS
//! (DescribeCluster, the cluster's CA, an EKS token the stand-in verifies),
//! applies the app, waits for its rollout, puts its alarms in CloudWatch,
//! and undoes all of it. `GET /_objects` shows what the cluster holds.

use std::time::Duration;

use aws_sdk_cloudwatch::types::StateValue;
use pao::action::ActionError;
use pao::actions::driver::{Driver, Progress, Undone};
use pao::actions::memory::{Fixture, MemoryJournal};
use pao::catalog::item::ActionType;
use pao::drivers::kubernetes::{KubernetesDriver, SecretStore};
use pao::k8s::Clusters;
use pao_integration::kube::{of_kind, StandIn};
use serde_json::{json, Map, Value};

const SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:apps/shop-AbCdEf";
const DB_SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1-XyZ";

struct World {
    sdk: aws_config::SdkConfig,
    eks: aws_sdk_eks::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    kube: StandIn,
}

impl World {
    async fn new() -> Self {
        pao_integration::env("AWS_ENDPOINT_URL");
        pao_integration::env("PAO_KUBE_URL");
        let sdk = pao::aws::sdk_config().await;
        Self {
            eks: aws_sdk_eks::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            kube: StandIn::connect(),
            sdk,
        }
    }

    fn driver(&self) -> KubernetesDriver {
        let clusters = Clusters::new(
            self.eks.clone(),
            self.sdk.credentials_provider().expect("credentials"),
            self.sdk.region().expect("a region").to_string(),
        );
        let store = SecretStore {
            name: "aws-secrets-manager".to_string(),
            refresh_interval: "1h".to_string(),
        };
        KubernetesDriver::new(clusters, self.cloudwatch.clone(), store, Vec::new())
    }

    /// An EKS cluster in the emulator, as aws-eks-cluster leaves it.
    async fn cluster(&self, request: &str) -> String {
        let name = format!("k8s-test-{}", &request[..8]);
        self.eks
            .create_cluster()
            .name(&name)
            .role_arn("arn:aws:iam::123456789012:role/pao-local-EksClusterRole")
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids("subnet-0a1b2c3d")
                    .subnet_ids("subnet-0e1f2a3b")
                    .build(),
            )
            .tags("pao:request-id", request)
            .send()
            .await
            .expect("CreateCluster");
        name
    }

    async fn alarms(&self, prefix: &str) -> Vec<String> {
        let listed = self
            .cloudwatch
            .describe_alarms()
            .alarm_name_prefix(prefix)
            .send()
            .await
            .expect("DescribeAlarms");
        listed
            .metric_alarms()
            .iter()
            .filter_map(|a| a.alarm_name().map(str::to_string))
            .collect()
    }
}

fn config(cluster: &str, image: &str) -> Value {
    json!({
        "cluster": cluster,
        "namespace": "shop",
        "name": "shop",
        "image": image,
        "replicas": 2,
        "container_port": 3000,
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "env": {"APP_ENV": "dev", "DATABASE_HOST": "db.internal", "DATABASE_PORT": 5432},
        "secret_env": {"APP_SECRET_KEY": SECRET_ARN, "DATABASE_CREDENTIALS": DB_SECRET_ARN},
        "health_check": {"path": "/healthz", "initial_delay_seconds": 20},
        "readiness_check": {"path": "/ready", "period_seconds": 5},
        "autoscaling": {"enabled": true, "min_replicas": 2, "max_replicas": 6},
        "ingress": {"enabled": true, "host": "shop.apps.example.com"},
        "monitoring": {"enabled": true, "alerts": {"cpu_percent": 80, "p99_latency_ms": 750}},
        "labels": {"team": "checkout"}
    })
}

fn fixture(request: &str, config: Value) -> Fixture {
    Fixture::new(
        request,
        "eks-app-stack",
        ActionType::KubernetesDeploy,
        "app",
        config,
    )
}

/// Starts, then polls until the driver is done or fails.
async fn run(
    driver: &KubernetesDriver,
    fixture: &Fixture,
    journal: &MemoryJournal,
) -> Result<Map<String, Value>, ActionError> {
    let ledger = journal.resources();
    let mut progress = driver.start(&fixture.step(journal, &ledger)).await?;
    for _ in 0..30 {
        match progress {
            Progress::Done(outputs) => return Ok(outputs.values),
            Progress::Wait { .. } => tokio::time::sleep(Duration::from_millis(500)).await,
        }
        let ledger = journal.resources();
        progress = driver.poll(&fixture.step(journal, &ledger)).await?;
    }
    panic!("the rollout did not end within 15 s");
}

async fn undo(driver: &KubernetesDriver, fixture: &Fixture, journal: &MemoryJournal) -> String {
    let ledger = journal.resources();
    for _ in 0..30 {
        match driver.compensate(&fixture.step(journal, &ledger)).await {
            Ok(Undone::Done(described)) => return described,
            Ok(Undone::Wait { .. }) => tokio::time::sleep(Duration::from_millis(500)).await,
            other => panic!("compensation failed: {other:?}"),
        }
    }
    panic!("not undone within 15 s");
}

#[tokio::test]
async fn an_app_is_deployed_with_its_secrets_by_reference_and_undone_completely() {
    let world = World::new().await;
    let request = uuid::Uuid::new_v4().to_string();
    let cluster = world.cluster(&request).await;
    let fixture = fixture(&request, config(&cluster, "example.com/shop:1.4.2"));
    let driver = world.driver();
    let journal = MemoryJournal::default();

    let outputs = run(&driver, &fixture, &journal).await.expect("deployed");
    assert_eq!(
        Value::Object(outputs),
        json!({"namespace": "shop", "deployment": "shop", "service": "shop",
               "url": "https://shop.apps.example.com"})
    );

    let objects = world.kube.namespace(&cluster, "shop").await;
    let deployment = of_kind(&objects, "Deployment")[0];
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(container["image"], "example.com/shop:1.4.2");
    assert_eq!(
        container["resources"]["limits"],
        json!({"cpu": "1", "memory": "512Mi"})
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    let env = container["env"].as_array().expect("env");
    let named = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(named("DATABASE_HOST").unwrap()["value"], "db.internal");
    assert_eq!(named("DATABASE_PORT").unwrap()["value"], "5432");
    assert_eq!(
        named("APP_SECRET_KEY").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "shop-secrets", "key": "APP_SECRET_KEY", "optional": false})
    );
    let external = of_kind(&objects, "ExternalSecret")[0];
    let arns: Vec<&Value> = external["spec"]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|d| &d["remoteRef"]["key"])
        .collect();
    assert_eq!(arns, [&json!(SECRET_ARN), &json!(DB_SECRET_ARN)]);
    assert_eq!(of_kind(&objects, "HorizontalPodAutoscaler").len(), 1);
    assert_eq!(
        of_kind(&objects, "Ingress")[0]["spec"]["rules"][0]["host"],
        "shop.apps.example.com"
    );
    assert_eq!(of_kind(&objects, "PodDisruptionBudget").len(), 1);
    assert_eq!(
        of_kind(&objects, "Pod").len(),
        2,
        "the rollout made the pods"
    );
    for object in of_kind(&objects, "Deployment")
        .into_iter()
        .chain(of_kind(&objects, "Service"))
    {
        assert_eq!(
            object["metadata"]["labels"]["pao.dev/request-id"],
            json!(request)
        );
    }

    let prefix = format!("pao-{request}-app");
    let mut alarms = world.alarms(&prefix).await;
    alarms.sort();
    assert_eq!(
        alarms,
        [format!("{prefix}-cpu"), format!("{prefix}-latency")]
    );
    let described = world
        .cloudwatch
        .describe_alarms()
        .alarm_names(format!("{prefix}-cpu"))
        .send()
        .await
        .expect("DescribeAlarms");
    let cpu = &described.metric_alarms()[0];
    assert_eq!(cpu.threshold(), Some(80.0));
    assert_eq!(cpu.state_value(), Some(&StateValue::InsufficientData));

    // A start repeated (a retry) applies the same objects again.
    let ledger = journal.resources();
    assert!(matches!(
        driver.start(&fixture.step(&journal, &ledger)).await,
        Ok(Progress::Wait { .. })
    ));
    assert_eq!(
        of_kind(&world.kube.namespace(&cluster, "shop").await, "Deployment").len(),
        1
    );

    let undone = undo(&driver, &fixture, &journal).await;
    assert!(
        undone.contains(&format!("namespace {cluster}/shop")),
        "{undone}"
    );
    assert!(world.kube.namespace(&cluster, "shop").await.is_empty());
    assert!(world.alarms(&prefix).await.is_empty());
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_with_the_pods_reason_and_is_undone() {
    let world = World::new().await;
    let request = uuid::Uuid::new_v4().to_string();
    let cluster = world.cluster(&request).await;
    let fixture = fixture(
        &request,
        config(&cluster, "example.com/shop:9.9-unpullable"),
    );
    let driver = world.driver();
    let journal = MemoryJournal::default();

    let failed = run(&driver, &fixture, &journal).await;
    let Err(ActionError::Fatal(reason)) = failed else {
        panic!("expected Fatal, got {failed:?}");
    };
    assert!(reason.contains("ImagePullBackOff"), "{reason}");
    assert!(
        reason.contains("example.com/shop:9.9-unpullable"),
        "{reason}"
    );

    undo(&driver, &fixture, &journal).await;
    assert!(world.kube.namespace(&cluster, "shop").await.is_empty());
    assert!(world.alarms(&format!("pao-{request}-app")).await.is_empty());
}

#[tokio::test]
async fn a_namespace_of_another_request_is_never_applied_to() {
    let world = World::new().await;
    let first = uuid::Uuid::new_v4().to_string();
    let cluster = world.cluster(&first).await;
    let driver = world.driver();
    let journal = MemoryJournal::default();
    let owner = fixture(&first, config(&cluster, "example.com/shop:1.0"));
    run(&driver, &owner, &journal).await.expect("deployed");

    let second = uuid::Uuid::new_v4().to_string();
    let intruder = fixture(&second, config(&cluster, "example.com/other:2.0"));
    let other_journal = MemoryJournal::default();
    let refused = driver.start(&intruder.step(&other_journal, &[])).await;
    assert!(
        matches!(&refused, Err(ActionError::Fatal(reason)) if reason.contains("was not made by this request")),
        "{refused:?}"
    );
    assert!(other_journal.resources().is_empty(), "nothing recorded");
    let deployment =
        of_kind(&world.kube.namespace(&cluster, "shop").await, "Deployment")[0].clone();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "example.com/shop:1.0"
    );
    undo(&driver, &owner, &journal).await;
}
