//! The aws-eks-cluster driver in process against the emulator at
//! `AWS_ENDPOINT_URL` (moto through infra/local/moto_launcher.py, which adds
//! the access entries moto lacks). moto makes clusters and node groups
//! ACTIVE, and deletes them, at once: the states in between are covered by
//! the driver's unit tests.

use std::collections::HashMap;

use aws_sdk_eks::types::{AccessScopeType, AuthenticationMode, LogType};
use pao::action::ActionError;
use pao::actions::driver::{Driver, Progress, Undone, REQUEST_TAG};
use pao::actions::memory::{Fixture, MemoryJournal};
use pao::catalog::item::ActionType;
use pao::drivers::eks::{EksDriver, Roles, ACCESS_ENTRY, ACCESS_POLICY, CLUSTER, NODEGROUP};
use serde_json::{json, Map, Value};

const CLUSTER_ROLE: &str = "arn:aws:iam::123456789012:role/pao-local-EksClusterRole";
const NODE_ROLE: &str = "arn:aws:iam::123456789012:role/pao-local-EksNodeRole";
const DEPLOY_ROLE: &str = "arn:aws:iam::123456789012:role/pao-local-KubernetesDeployRole";
const ADMIN_POLICY: &str = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";
const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

async fn eks() -> aws_sdk_eks::Client {
    pao_integration::env("AWS_ENDPOINT_URL");
    aws_sdk_eks::Client::new(&pao::aws::sdk_config().await)
}

fn driver(eks: &aws_sdk_eks::Client) -> EksDriver {
    EksDriver::new(
        eks.clone(),
        Roles {
            cluster: CLUSTER_ROLE.to_string(),
            node: NODE_ROLE.to_string(),
            deploy: DEPLOY_ROLE.to_string(),
        },
    )
}

fn config(name: &str) -> Value {
    json!({
        "name": name,
        "kubernetes_version": "1.31",
        "subnet_ids": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"],
        "security_group_ids": ["sg-0a1b2c3d"],
        "endpoint_private_access": true,
        "endpoint_public_access": true,
        "public_access_cidrs": ["203.0.113.0/24"],
        "logging": ["api", "audit", "authenticator"],
        "node_groups": [
            {"name": "general", "instance_types": ["m6i.large"], "min_size": 2, "max_size": 5,
             "labels": {"workload": "general"}},
            {"name": "batch", "instance_types": ["c6i.xlarge"], "capacity_type": "SPOT",
             "min_size": 0, "max_size": 3, "desired_size": 1}
        ],
        "encryption": {"kms_key_arn": KEY},
        "tags": {"app": "checkout", "environment": "dev"}
    })
}

fn fixture(request: &str, config: Value) -> Fixture {
    Fixture::new(
        request,
        "eks-app-stack",
        ActionType::AwsEksCluster,
        "cluster",
        config,
    )
}

/// Starts, then polls while the driver waits (moto needs no real wait).
async fn run(driver: &EksDriver, fixture: &Fixture, journal: &MemoryJournal) -> Map<String, Value> {
    for _ in 0..10 {
        let ledger = journal.resources();
        match driver.start(&fixture.step(journal, &ledger)).await {
            Ok(Progress::Done(outputs)) => return outputs.values,
            Ok(Progress::Wait { .. }) => {}
            Err(err) => panic!("start failed: {err}"),
        }
    }
    panic!("not done after 10 calls");
}

async fn undo(driver: &EksDriver, fixture: &Fixture, journal: &MemoryJournal) -> String {
    let ledger = journal.resources();
    for _ in 0..10 {
        match driver.compensate(&fixture.step(journal, &ledger)).await {
            Ok(Undone::Done(described)) => return described,
            Ok(Undone::Wait { .. }) => {}
            other => panic!("compensation failed: {other:?}"),
        }
    }
    panic!("not undone after 10 calls");
}

/// The clusters of the emulator's account tagged with `request`.
async fn tagged(eks: &aws_sdk_eks::Client, request: &str) -> Vec<String> {
    let names = eks
        .list_clusters()
        .send()
        .await
        .expect("ListClusters")
        .clusters
        .unwrap_or_default();
    let mut tagged = Vec::new();
    for name in names {
        // Another test may delete its cluster between the list and this.
        let Ok(described) = eks.describe_cluster().name(&name).send().await else {
            continue;
        };
        let tags: HashMap<String, String> = described
            .cluster
            .and_then(|cluster| cluster.tags)
            .unwrap_or_default();
        if tags.get(REQUEST_TAG).map(String::as_str) == Some(request) {
            tagged.push(name);
        }
    }
    tagged
}

#[tokio::test]
async fn a_cluster_is_made_once_with_deploy_access_and_node_groups_and_undone_completely() {
    let eks = eks().await;
    let request = uuid::Uuid::new_v4().to_string();
    let name = format!("pao-test-{}", &request[..8]);
    let fixture = fixture(&request, config(&name));
    let driver = driver(&eks);
    let journal = MemoryJournal::default();

    let outputs = run(&driver, &fixture, &journal).await;
    assert_eq!(outputs["cluster_name"], json!(name));
    let arn = outputs["cluster_arn"].as_str().unwrap();
    assert!(arn.ends_with(&format!(":cluster/{name}")), "{arn}");
    assert!(outputs["endpoint"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    assert!(outputs["oidc_issuer"]
        .as_str()
        .unwrap()
        .starts_with("https://oidc.eks.us-east-1.amazonaws.com/id/"));
    assert_eq!(outputs.len(), 4, "{outputs:?}");

    let ledger: Vec<(String, String)> = journal
        .resources()
        .into_iter()
        .map(|r| (r.kind, r.id))
        .collect();
    assert_eq!(
        ledger,
        [
            (CLUSTER.to_string(), name.clone()),
            (ACCESS_ENTRY.to_string(), DEPLOY_ROLE.to_string()),
            (ACCESS_POLICY.to_string(), ADMIN_POLICY.to_string()),
            (NODEGROUP.to_string(), "general".to_string()),
            (NODEGROUP.to_string(), "batch".to_string()),
        ]
    );

    // What EKS holds is what the config asked for.
    let cluster = eks
        .describe_cluster()
        .name(&name)
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(cluster.version(), Some("1.31"));
    assert_eq!(cluster.role_arn(), Some(CLUSTER_ROLE));
    let access = cluster.access_config().unwrap();
    assert_eq!(access.authentication_mode(), Some(&AuthenticationMode::Api));
    assert_eq!(
        access.bootstrap_cluster_creator_admin_permissions(),
        Some(false)
    );
    let logging = &cluster.logging().unwrap().cluster_logging()[0];
    assert_eq!(
        logging.types(),
        [LogType::Api, LogType::Audit, LogType::Authenticator]
    );
    let encryption = &cluster.encryption_config()[0];
    assert_eq!(encryption.provider().unwrap().key_arn(), Some(KEY));
    #[allow(deprecated)]
    let resources = encryption.resources();
    assert_eq!(resources, ["secrets"]);
    let tags = cluster.tags().unwrap();
    assert_eq!(tags.get(REQUEST_TAG), Some(&request));
    assert_eq!(tags.get("app").map(String::as_str), Some("checkout"));

    let entry = eks
        .describe_access_entry()
        .cluster_name(&name)
        .principal_arn(DEPLOY_ROLE)
        .send()
        .await
        .unwrap()
        .access_entry
        .unwrap();
    assert_eq!(entry.r#type(), Some("STANDARD"));
    assert_eq!(
        entry.tags().unwrap().get(REQUEST_TAG).map(String::as_str),
        Some(request.as_str())
    );
    let policies = eks
        .list_associated_access_policies()
        .cluster_name(&name)
        .principal_arn(DEPLOY_ROLE)
        .send()
        .await
        .unwrap();
    let policy = &policies.associated_access_policies()[0];
    assert_eq!(policy.policy_arn(), Some(ADMIN_POLICY));
    assert_eq!(
        policy.access_scope().unwrap().r#type(),
        Some(&AccessScopeType::Cluster)
    );

    let general = eks
        .describe_nodegroup()
        .cluster_name(&name)
        .nodegroup_name("general")
        .send()
        .await
        .unwrap()
        .nodegroup
        .unwrap();
    assert_eq!(general.node_role(), Some(NODE_ROLE));
    assert_eq!(general.subnets(), ["subnet-0a1b2c3d", "subnet-0e1f2a3b"]);
    let scaling = general.scaling_config().unwrap();
    assert_eq!(
        (
            scaling.min_size(),
            scaling.desired_size(),
            scaling.max_size()
        ),
        (Some(2), Some(2), Some(5))
    );
    assert_eq!(
        general
            .labels()
            .unwrap()
            .get("workload")
            .map(String::as_str),
        Some("general")
    );

    // A second start (a duplicate delivery) makes nothing new.
    let again = MemoryJournal::default();
    let ledger = journal.resources();
    let progress = driver.start(&fixture.step(&again, &ledger)).await.unwrap();
    assert_eq!(
        progress,
        Progress::Done(pao::actions::driver::Outputs::new(outputs.clone()))
    );
    assert!(again.resources().is_empty(), "{:?}", again.resources());
    assert_eq!(tagged(&eks, &request).await, vec![name.clone()]);
    let groups = eks
        .list_nodegroups()
        .cluster_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(groups.nodegroups().len(), 2);

    let described = undo(&driver, &fixture, &journal).await;
    assert_eq!(
        described,
        format!(
            "deleted the deploy role's access entry, node groups general, batch, cluster {name}"
        )
    );
    assert!(tagged(&eks, &request).await.is_empty());
    let gone = eks.describe_cluster().name(&name).send().await.unwrap_err();
    assert_eq!(
        gone.as_service_error()
            .map(|e| e.is_resource_not_found_exception()),
        Some(true)
    );
    // Undoing again finds nothing left and says the same.
    assert_eq!(undo(&driver, &fixture, &journal).await, described);
}

#[tokio::test]
async fn a_cluster_of_that_name_made_by_someone_else_is_refused_and_left_alone() {
    let eks = eks().await;
    let request = uuid::Uuid::new_v4().to_string();
    let name = format!("pao-theirs-{}", &request[..8]);
    eks.create_cluster()
        .name(&name)
        .role_arn(CLUSTER_ROLE)
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-0a1b2c3d")
                .subnet_ids("subnet-0e1f2a3b")
                .build(),
        )
        .tags("team", "someone-else")
        .send()
        .await
        .expect("CreateCluster");

    let fixture = fixture(&request, config(&name));
    let driver = driver(&eks);
    let journal = MemoryJournal::default();
    let err = driver
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ActionError::Fatal(message) if message.contains("already exists and was not made by this action")),
        "{err:?}"
    );
    assert!(journal.resources().is_empty());
    let undone = driver
        .compensate(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert_eq!(undone, Undone::Kept("the action made nothing".to_string()));
    let theirs = eks.describe_cluster().name(&name).send().await.unwrap();
    assert!(theirs.cluster.is_some(), "their cluster is untouched");

    eks.delete_cluster()
        .name(&name)
        .send()
        .await
        .expect("cleanup");
}
