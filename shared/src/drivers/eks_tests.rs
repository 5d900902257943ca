//! The EKS driver against the SDK's test client: every state EKS can
//! answer with, including those the emulator never shows (CREATING,
//! FAILED, CREATE_FAILED, DEGRADED, DELETING).

use std::sync::{Arc, Mutex};

use aws_sdk_eks::operation::associate_access_policy::{
    AssociateAccessPolicyInput, AssociateAccessPolicyOutput,
};
use aws_sdk_eks::operation::create_access_entry::{
    CreateAccessEntryError, CreateAccessEntryInput, CreateAccessEntryOutput,
};
use aws_sdk_eks::operation::create_cluster::{
    CreateClusterError, CreateClusterInput, CreateClusterOutput,
};
use aws_sdk_eks::operation::create_nodegroup::{
    CreateNodegroupError, CreateNodegroupInput, CreateNodegroupOutput,
};
use aws_sdk_eks::operation::delete_access_entry::{
    DeleteAccessEntryError, DeleteAccessEntryOutput,
};
use aws_sdk_eks::operation::delete_cluster::{DeleteClusterError, DeleteClusterOutput};
use aws_sdk_eks::operation::delete_nodegroup::{DeleteNodegroupError, DeleteNodegroupOutput};
use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
use aws_sdk_eks::operation::describe_nodegroup::{DescribeNodegroupError, DescribeNodegroupOutput};
use aws_sdk_eks::operation::list_nodegroups::ListNodegroupsOutput;
use aws_sdk_eks::types::error::{
    InvalidParameterException, ResourceInUseException, ResourceNotFoundException, ServerException,
};
use aws_sdk_eks::types::{
    ClusterHealth, ClusterIssue, ClusterIssueCode, Identity, Issue, NodegroupHealth,
    NodegroupIssueCode, Oidc,
};
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use serde_json::json;

use super::*;
use crate::actions::driver::ITEM_TAG;
use crate::actions::memory::{Fixture, MemoryJournal};
use crate::catalog::item::ActionType;
use crate::requests::RequestStatus;

const REQUEST: &str = "req-1";
const NAME: &str = "checkout-dev";
const ARN: &str = "arn:aws:eks:us-east-1:123456789012:cluster/checkout-dev";
const ENDPOINT: &str = "https://0A1B2C3D.gr7.us-east-1.eks.amazonaws.com";
const ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/0A1B2C3D";
const CLUSTER_ROLE: &str = "arn:aws:iam::123456789012:role/pao-eks-cluster";
const NODE_ROLE: &str = "arn:aws:iam::123456789012:role/pao-eks-node";
const DEPLOY_ROLE: &str = "arn:aws:iam::123456789012:role/pao-kubernetes-deploy";
const ADMIN_POLICY: &str = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";
const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn roles() -> Roles {
    Roles {
        cluster: CLUSTER_ROLE.to_string(),
        node: NODE_ROLE.to_string(),
        deploy: DEPLOY_ROLE.to_string(),
    }
}

/// The flagship item's cluster, rendered, with a second (Spot) node group.
fn config() -> Value {
    json!({
        "name": NAME,
        "kubernetes_version": "1.31",
        "subnet_ids": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"],
        "security_group_ids": ["sg-0a1b2c3d"],
        "endpoint_private_access": true,
        "endpoint_public_access": true,
        "public_access_cidrs": ["203.0.113.0/24"],
        "logging": ["api", "audit", "authenticator"],
        "node_groups": [
            {"name": "general", "instance_types": ["m6i.large", "m6a.large"], "capacity_type": "ON_DEMAND",
             "min_size": 2, "max_size": 5, "disk_size_gb": 50, "labels": {"workload": "general"}},
            {"name": "batch", "instance_types": ["c6i.xlarge"], "capacity_type": "SPOT",
             "min_size": 0, "max_size": 4, "desired_size": 1,
             "taints": [{"key": "batch", "value": "true", "effect": "NO_SCHEDULE"}]}
        ],
        "autoscaling": {"enabled": true, "scale_down_utilization": 0.5},
        "encryption": {"kms_key_arn": KEY},
        "tags": {"app": "checkout", "environment": "dev"}
    })
}

fn fixture_with(config: Value) -> Fixture {
    Fixture::new(
        REQUEST,
        "eks-app-stack",
        ActionType::AwsEksCluster,
        "cluster",
        config,
    )
}

fn fixture() -> Fixture {
    fixture_with(config())
}

fn driver(rules: &[&Rule]) -> EksDriver {
    EksDriver::new(
        mock_client!(aws_sdk_eks, RuleMode::MatchAny, rules),
        roles(),
    )
}

/// What a rule saw of the requests it answered.
fn seen<T>() -> Arc<Mutex<Vec<T>>> {
    Arc::new(Mutex::new(Vec::new()))
}

fn meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

fn in_use(message: &str) -> ResourceInUseException {
    ResourceInUseException::builder()
        .message(message)
        .meta(meta("ResourceInUseException", message))
        .build()
}

fn not_found() -> ResourceNotFoundException {
    let message = "No cluster found for name: checkout-dev.";
    ResourceNotFoundException::builder()
        .message(message)
        .meta(meta("ResourceNotFoundException", message))
        .build()
}

fn our_tags() -> HashMap<String, String> {
    HashMap::from([
        (REQUEST_TAG.to_string(), REQUEST.to_string()),
        (ACTION_TAG.to_string(), "cluster".to_string()),
        (ITEM_TAG.to_string(), "eks-app-stack".to_string()),
    ])
}

fn cluster(status: ClusterStatus) -> Cluster {
    Cluster::builder()
        .name(NAME)
        .arn(ARN)
        .endpoint(ENDPOINT)
        .identity(
            Identity::builder()
                .oidc(Oidc::builder().issuer(ISSUER).build())
                .build(),
        )
        .status(status)
        .set_tags(Some(our_tags()))
        .build()
}

fn describe_cluster(status: ClusterStatus) -> Rule {
    mock!(Client::describe_cluster)
        .match_requests(|input| input.name() == Some(NAME))
        .then_output(move || {
            DescribeClusterOutput::builder()
                .cluster(cluster(status.clone()))
                .build()
        })
}

fn node_group(name: &str, status: NodegroupStatus) -> Nodegroup {
    Nodegroup::builder()
        .nodegroup_name(name)
        .cluster_name(NAME)
        .status(status)
        .set_tags(Some(our_tags()))
        .build()
}

fn describe_node_group(name: &'static str, status: NodegroupStatus) -> Rule {
    mock!(Client::describe_nodegroup)
        .match_requests(move |input| {
            input.cluster_name() == Some(NAME) && input.nodegroup_name() == Some(name)
        })
        .then_output(move || {
            DescribeNodegroupOutput::builder()
                .nodegroup(node_group(name, status.clone()))
                .build()
        })
}

fn made_cluster() -> Resource {
    Resource::new(CLUSTER, NAME).with("arn", ARN)
}

fn made_access() -> Vec<Resource> {
    vec![
        Resource::new(ACCESS_ENTRY, DEPLOY_ROLE).with("cluster", NAME),
        Resource::new(ACCESS_POLICY, ADMIN_POLICY)
            .with("cluster", NAME)
            .with("principal", DEPLOY_ROLE),
    ]
}

fn made_group(name: &str) -> Resource {
    Resource::new(NODEGROUP, name).with("cluster", NAME)
}

/// Everything a finished start leaves in the ledger.
fn made_all() -> Vec<Resource> {
    let mut ledger = vec![made_cluster()];
    ledger.extend(made_access());
    ledger.push(made_group("general"));
    ledger.push(made_group("batch"));
    ledger
}

fn kinds(journal: &MemoryJournal) -> Vec<(String, String)> {
    journal
        .resources()
        .into_iter()
        .map(|r| (r.kind, r.id))
        .collect()
}

fn fatal(result: Result<impl std::fmt::Debug, ActionError>) -> String {
    match result {
        Err(ActionError::Fatal(message)) => message,
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

// ------------------------------------------------------------------ start

#[tokio::test]
async fn start_creates_the_cluster_as_configured_and_waits_while_it_is_creating() {
    let requests = seen::<CreateClusterInput>();
    let record = requests.clone();
    let create = mock!(Client::create_cluster).then_compute_output(move |input| {
        record.lock().unwrap().push(input.clone());
        CreateClusterOutput::builder()
            .cluster(cluster(ClusterStatus::Creating))
            .build()
    });
    let describe = describe_cluster(ClusterStatus::Creating);
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let progress = driver(&[&create, &describe])
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap();

    assert_eq!(
        progress,
        Progress::Wait {
            seconds: 60,
            waiting_for: "EKS cluster checkout-dev to become ACTIVE (CREATING)".to_string()
        }
    );
    let ledger = journal.resources();
    assert_eq!(kinds(&journal), [(CLUSTER.to_string(), NAME.to_string())]);
    assert_eq!(ledger[0].detail("arn"), Some(ARN));

    let requests = requests.lock().unwrap();
    let sent = &requests[0];
    assert_eq!(sent.name(), Some(NAME));
    assert_eq!(sent.version(), Some("1.31"));
    assert_eq!(sent.role_arn(), Some(CLUSTER_ROLE));
    let vpc = sent.resources_vpc_config().unwrap();
    assert_eq!(vpc.subnet_ids(), ["subnet-0a1b2c3d", "subnet-0e1f2a3b"]);
    assert_eq!(vpc.security_group_ids(), ["sg-0a1b2c3d"]);
    assert_eq!(vpc.endpoint_private_access(), Some(true));
    assert_eq!(vpc.endpoint_public_access(), Some(true));
    assert_eq!(vpc.public_access_cidrs(), ["203.0.113.0/24"]);
    let logging = &sent.logging().unwrap().cluster_logging()[0];
    assert_eq!(
        logging.types(),
        [LogType::Api, LogType::Audit, LogType::Authenticator]
    );
    assert_eq!(logging.enabled(), Some(true));
    let encryption = &sent.encryption_config()[0];
    #[allow(deprecated)]
    let resources = encryption.resources();
    assert_eq!(resources, ["secrets"]);
    assert_eq!(encryption.provider().unwrap().key_arn(), Some(KEY));
    let access = sent.access_config().unwrap();
    assert_eq!(access.authentication_mode(), Some(&AuthenticationMode::Api));
    assert_eq!(
        access.bootstrap_cluster_creator_admin_permissions(),
        Some(false)
    );
    let tags = sent.tags().unwrap();
    assert_eq!(tags.get(REQUEST_TAG).map(String::as_str), Some(REQUEST));
    assert_eq!(tags.get(ACTION_TAG).map(String::as_str), Some("cluster"));
    assert_eq!(
        tags.get(ITEM_TAG).map(String::as_str),
        Some("eks-app-stack")
    );
    assert_eq!(tags.get("app").map(String::as_str), Some("checkout"));
    let step = fixture.step(&journal, &[]);
    assert_eq!(
        sent.client_request_token(),
        Some(client_token(&step, "cluster").as_str())
    );
    // The Cluster Autoscaler is asked for and not installed: said so.
    assert!(journal
        .lines()
        .iter()
        .any(|(level, line)| *level == Level::Warn && line.contains("Cluster Autoscaler")));
}

#[tokio::test]
async fn without_a_name_the_cluster_is_named_after_the_request_and_action() {
    let mut config = config();
    config.as_object_mut().unwrap().remove("name");
    let fixture = fixture_with(config);
    let create = mock!(Client::create_cluster)
        .match_requests(|input| input.name() == Some("pao-req-1-cluster"))
        .then_output(|| CreateClusterOutput::builder().build());
    let describe = mock!(Client::describe_cluster)
        .match_requests(|input| input.name() == Some("pao-req-1-cluster"))
        .then_output(|| {
            DescribeClusterOutput::builder()
                .cluster(
                    Cluster::builder()
                        .name("pao-req-1-cluster")
                        .status(ClusterStatus::Creating)
                        .build(),
                )
                .build()
        });
    let journal = MemoryJournal::default();
    let progress = driver(&[&create, &describe])
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert!(matches!(progress, Progress::Wait { .. }));
    assert_eq!(
        kinds(&journal),
        [(CLUSTER.to_string(), "pao-req-1-cluster".to_string())]
    );
}

#[tokio::test]
async fn the_client_token_is_the_same_on_every_attempt_and_differs_per_resource() {
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let step = fixture.step(&journal, &[]);
    let cluster = client_token(&step, "cluster");
    assert_eq!(cluster, client_token(&step, "cluster"));
    assert_ne!(cluster, client_token(&step, "nodegroup/general"));
    let other = Fixture::new(
        "req-2",
        "eks-app-stack",
        ActionType::AwsEksCluster,
        "cluster",
        config(),
    );
    assert_ne!(cluster, client_token(&other.step(&journal, &[]), "cluster"));
    assert_eq!(cluster.len(), 36, "{cluster}");
}

#[tokio::test]
async fn an_active_cluster_gets_the_deploy_roles_access_and_its_node_groups() {
    let entries = seen::<CreateAccessEntryInput>();
    let record_entry = entries.clone();
    let create_entry = mock!(Client::create_access_entry).then_compute_output(move |input| {
        record_entry.lock().unwrap().push(input.clone());
        CreateAccessEntryOutput::builder().build()
    });
    let policies = seen::<AssociateAccessPolicyInput>();
    let record_policy = policies.clone();
    let associate = mock!(Client::associate_access_policy).then_compute_output(move |input| {
        record_policy.lock().unwrap().push(input.clone());
        AssociateAccessPolicyOutput::builder().build()
    });
    let groups = seen::<CreateNodegroupInput>();
    let record_group = groups.clone();
    let create_group = mock!(Client::create_nodegroup).then_compute_output(move |input| {
        record_group.lock().unwrap().push(input.clone());
        CreateNodegroupOutput::builder().build()
    });
    let rules = [
        describe_cluster(ClusterStatus::Active),
        create_entry,
        associate,
        create_group,
        describe_node_group("general", NodegroupStatus::Creating),
        describe_node_group("batch", NodegroupStatus::Active),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = [made_cluster()];
    let progress = driver(&rules.iter().collect::<Vec<_>>())
        .start(&fixture.step(&journal, &ledger))
        .await
        .unwrap();

    assert_eq!(
        progress,
        Progress::Wait {
            seconds: 60,
            waiting_for: "node groups general of cluster checkout-dev to become ACTIVE".to_string()
        }
    );
    assert_eq!(
        kinds(&journal),
        [
            (ACCESS_ENTRY.to_string(), DEPLOY_ROLE.to_string()),
            (ACCESS_POLICY.to_string(), ADMIN_POLICY.to_string()),
            (NODEGROUP.to_string(), "general".to_string()),
            (NODEGROUP.to_string(), "batch".to_string()),
        ]
    );
    assert!(journal
        .resources()
        .iter()
        .all(|r| r.detail("cluster") == Some(NAME)));

    let entries = entries.lock().unwrap();
    assert_eq!(entries[0].cluster_name(), Some(NAME));
    assert_eq!(entries[0].principal_arn(), Some(DEPLOY_ROLE));
    assert_eq!(entries[0].r#type(), Some("STANDARD"));
    assert_eq!(
        entries[0]
            .tags()
            .unwrap()
            .get(REQUEST_TAG)
            .map(String::as_str),
        Some(REQUEST)
    );
    let policies = policies.lock().unwrap();
    assert_eq!(policies[0].policy_arn(), Some(ADMIN_POLICY));
    assert_eq!(policies[0].principal_arn(), Some(DEPLOY_ROLE));
    assert_eq!(
        policies[0].access_scope().unwrap().r#type(),
        Some(&AccessScopeType::Cluster)
    );

    let groups = groups.lock().unwrap();
    assert_eq!(groups.len(), 2);
    let general = &groups[0];
    assert_eq!(general.nodegroup_name(), Some("general"));
    assert_eq!(general.cluster_name(), Some(NAME));
    let scaling = general.scaling_config().unwrap();
    assert_eq!(
        (
            scaling.min_size(),
            scaling.desired_size(),
            scaling.max_size()
        ),
        (Some(2), Some(2), Some(5))
    );
    assert_eq!(general.disk_size(), Some(50));
    assert_eq!(general.subnets(), ["subnet-0a1b2c3d", "subnet-0e1f2a3b"]);
    assert_eq!(general.instance_types(), ["m6i.large", "m6a.large"]);
    assert_eq!(general.capacity_type(), Some(&CapacityTypes::OnDemand));
    assert_eq!(general.node_role(), Some(NODE_ROLE));
    assert_eq!(
        general
            .labels()
            .unwrap()
            .get("workload")
            .map(String::as_str),
        Some("general")
    );
    assert_eq!(
        general
            .tags()
            .unwrap()
            .get("environment")
            .map(String::as_str),
        Some("dev")
    );
    let batch = &groups[1];
    let scaling = batch.scaling_config().unwrap();
    assert_eq!(
        (
            scaling.min_size(),
            scaling.desired_size(),
            scaling.max_size()
        ),
        (Some(0), Some(1), Some(4))
    );
    assert_eq!(batch.capacity_type(), Some(&CapacityTypes::Spot));
    assert_eq!(batch.disk_size(), Some(50));
    let taint = &batch.taints()[0];
    assert_eq!(
        (taint.key(), taint.value(), taint.effect()),
        (Some("batch"), Some("true"), Some(&TaintEffect::NoSchedule))
    );
    assert_ne!(general.client_request_token(), batch.client_request_token());
}

#[tokio::test]
async fn a_start_that_died_halfway_makes_only_what_is_missing() {
    // The cluster, the access and node group `general` are in the ledger:
    // only `batch` is created (a call for anything else matches no rule).
    let create_batch = mock!(Client::create_nodegroup)
        .match_requests(|input| input.nodegroup_name() == Some("batch"))
        .then_output(|| CreateNodegroupOutput::builder().build());
    let rules = [
        describe_cluster(ClusterStatus::Active),
        create_batch,
        describe_node_group("general", NodegroupStatus::Active),
        describe_node_group("batch", NodegroupStatus::Creating),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let mut ledger = vec![made_cluster()];
    ledger.extend(made_access());
    ledger.push(made_group("general"));
    let progress = driver(&rules.iter().collect::<Vec<_>>())
        .start(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert!(
        matches!(&progress, Progress::Wait { waiting_for, .. } if waiting_for.contains("batch")),
        "{progress:?}"
    );
    assert_eq!(rules[1].num_calls(), 1);
    assert_eq!(
        kinds(&journal),
        [(NODEGROUP.to_string(), "batch".to_string())]
    );
}

#[tokio::test]
async fn done_when_the_cluster_and_every_node_group_are_active() {
    let rules = [
        describe_cluster(ClusterStatus::Active),
        describe_node_group("general", NodegroupStatus::Active),
        describe_node_group("batch", NodegroupStatus::Active),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = made_all();
    let progress = driver(&rules.iter().collect::<Vec<_>>())
        .start(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    let Progress::Done(outputs) = progress else {
        panic!("expected done, got {progress:?}");
    };
    assert_eq!(
        Value::Object(outputs.values),
        json!({"cluster_name": NAME, "cluster_arn": ARN, "endpoint": ENDPOINT, "oidc_issuer": ISSUER})
    );
    assert!(outputs.secret.is_empty());
    assert!(journal.resources().is_empty(), "nothing new is made");
}

#[tokio::test]
async fn a_failed_cluster_is_fatal_with_its_health_issues() {
    let describe = mock!(Client::describe_cluster).then_output(|| {
        let mut failed = cluster(ClusterStatus::Failed);
        failed.health = Some(
            ClusterHealth::builder()
                .issues(
                    ClusterIssue::builder()
                        .code(ClusterIssueCode::Ec2SubnetNotFound)
                        .message("The subnet ID 'subnet-0a1b2c3d' does not exist")
                        .build(),
                )
                .build(),
        );
        DescribeClusterOutput::builder().cluster(failed).build()
    });
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = [made_cluster()];
    let message = fatal(
        driver(&[&describe])
            .start(&fixture.step(&journal, &ledger))
            .await,
    );
    assert_eq!(
        message,
        "cluster checkout-dev is FAILED: Ec2SubnetNotFound: The subnet ID 'subnet-0a1b2c3d' does not exist"
    );
}

#[tokio::test]
async fn a_node_group_that_failed_to_create_is_fatal_naming_it_its_status_and_issues() {
    let failed = mock!(Client::describe_nodegroup)
        .match_requests(|input| input.nodegroup_name() == Some("general"))
        .then_output(|| {
            let mut group = node_group("general", NodegroupStatus::CreateFailed);
            group.health = Some(
                NodegroupHealth::builder()
                    .issues(
                        Issue::builder()
                            .code(NodegroupIssueCode::AsgInstanceLaunchFailures)
                            .message("Could not launch On-Demand Instances. InsufficientInstanceCapacity")
                            .resource_ids("eks-general-4ac5f3b2")
                            .build(),
                    )
                    .issues(
                        Issue::builder()
                            .code(NodegroupIssueCode::NodeCreationFailure)
                            .message("Instances failed to join the kubernetes cluster")
                            .build(),
                    )
                    .build(),
            );
            DescribeNodegroupOutput::builder().nodegroup(group).build()
        });
    let rules = [describe_cluster(ClusterStatus::Active), failed];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = made_all();
    let message = fatal(
        driver(&rules.iter().collect::<Vec<_>>())
            .start(&fixture.step(&journal, &ledger))
            .await,
    );
    assert_eq!(
        message,
        "node group general of cluster checkout-dev is CREATE_FAILED: \
         AsgInstanceLaunchFailures: Could not launch On-Demand Instances. InsufficientInstanceCapacity (eks-general-4ac5f3b2); \
         NodeCreationFailure: Instances failed to join the kubernetes cluster"
    );
}

#[tokio::test]
async fn a_degraded_node_group_is_fatal() {
    let rules = [
        describe_cluster(ClusterStatus::Active),
        describe_node_group("general", NodegroupStatus::Active),
        describe_node_group("batch", NodegroupStatus::Degraded),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = made_all();
    let message = fatal(
        driver(&rules.iter().collect::<Vec<_>>())
            .start(&fixture.step(&journal, &ledger))
            .await,
    );
    assert_eq!(
        message,
        "node group batch of cluster checkout-dev is DEGRADED: no health issues reported"
    );
}

#[tokio::test]
async fn a_cluster_of_that_name_with_this_actions_tags_is_adopted() {
    let create = mock!(Client::create_cluster).then_error(|| {
        CreateClusterError::ResourceInUseException(in_use(
            "Cluster already exists with name: checkout-dev",
        ))
    });
    let rules = [create, describe_cluster(ClusterStatus::Creating)];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let progress = driver(&rules.iter().collect::<Vec<_>>())
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert!(matches!(progress, Progress::Wait { seconds: 60, .. }));
    assert_eq!(journal.resources()[0].detail("arn"), Some(ARN));
    assert_eq!(kinds(&journal), [(CLUSTER.to_string(), NAME.to_string())]);
}

#[tokio::test]
async fn a_cluster_of_that_name_that_is_not_ours_is_fatal_and_never_recorded() {
    let create = mock!(Client::create_cluster).then_error(|| {
        CreateClusterError::ResourceInUseException(in_use(
            "Cluster already exists with name: checkout-dev",
        ))
    });
    let describe = mock!(Client::describe_cluster).then_output(|| {
        let mut theirs = cluster(ClusterStatus::Active);
        theirs.tags = Some(HashMap::from([(
            REQUEST_TAG.to_string(),
            "someone-else".to_string(),
        )]));
        DescribeClusterOutput::builder().cluster(theirs).build()
    });
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let message = fatal(
        driver(&[&create, &describe])
            .start(&fixture.step(&journal, &[]))
            .await,
    );
    assert!(
        message.contains("a cluster named checkout-dev already exists"),
        "{message}"
    );
    assert!(
        journal.resources().is_empty(),
        "compensation must not delete it"
    );
}

#[tokio::test]
async fn a_cluster_of_that_name_this_function_may_not_describe_is_not_ours() {
    // The function's policy lets it describe PAO's clusters only.
    let create = mock!(Client::create_cluster).then_error(|| {
        CreateClusterError::ResourceInUseException(in_use(
            "Cluster already exists with name: checkout-dev",
        ))
    });
    let denied = mock!(Client::describe_cluster).then_error(|| {
        aws_sdk_eks::operation::describe_cluster::DescribeClusterError::generic(meta(
            "AccessDeniedException",
            "not authorized to perform: eks:DescribeCluster",
        ))
    });
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let message = fatal(
        driver(&[&create, &denied])
            .start(&fixture.step(&journal, &[]))
            .await,
    );
    assert!(
        message.contains("already exists and was not made by this action"),
        "{message}"
    );
    assert!(journal.resources().is_empty());
}

#[tokio::test]
async fn an_access_entry_made_by_an_earlier_attempt_is_ours() {
    let create_entry = mock!(Client::create_access_entry).then_error(|| {
        CreateAccessEntryError::ResourceInUseException(in_use(
            "The specified access entry resource is already in use on this cluster.",
        ))
    });
    let associate = mock!(Client::associate_access_policy)
        .then_output(|| AssociateAccessPolicyOutput::builder().build());
    let rules = [
        describe_cluster(ClusterStatus::Active),
        create_entry,
        associate,
        describe_node_group("general", NodegroupStatus::Active),
        describe_node_group("batch", NodegroupStatus::Active),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = [made_cluster(), made_group("general"), made_group("batch")];
    let progress = driver(&rules.iter().collect::<Vec<_>>())
        .start(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert!(matches!(progress, Progress::Done(_)), "{progress:?}");
    assert_eq!(rules[2].num_calls(), 1, "the policy is associated");
    assert_eq!(
        kinds(&journal),
        [
            (ACCESS_ENTRY.to_string(), DEPLOY_ROLE.to_string()),
            (ACCESS_POLICY.to_string(), ADMIN_POLICY.to_string()),
        ]
    );
}

#[tokio::test]
async fn a_node_group_made_by_an_earlier_attempt_is_adopted_and_a_foreign_one_is_fatal() {
    let create = mock!(Client::create_nodegroup).then_error(|| {
        CreateNodegroupError::ResourceInUseException(in_use(
            "NodeGroup already exists with name general and cluster name checkout-dev",
        ))
    });
    let rules = [
        describe_cluster(ClusterStatus::Active),
        create,
        describe_node_group("general", NodegroupStatus::Active),
        describe_node_group("batch", NodegroupStatus::Creating),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let mut ledger = vec![made_cluster()];
    ledger.extend(made_access());
    let progress = driver(&rules.iter().collect::<Vec<_>>())
        .start(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert!(matches!(progress, Progress::Wait { .. }), "{progress:?}");
    assert_eq!(
        kinds(&journal),
        [
            (NODEGROUP.to_string(), "general".to_string()),
            (NODEGROUP.to_string(), "batch".to_string()),
        ]
    );

    let create = mock!(Client::create_nodegroup).then_error(|| {
        CreateNodegroupError::ResourceInUseException(in_use("NodeGroup already exists"))
    });
    let foreign = mock!(Client::describe_nodegroup).then_output(|| {
        let mut group = node_group("general", NodegroupStatus::Active);
        group.tags = None;
        DescribeNodegroupOutput::builder().nodegroup(group).build()
    });
    let rules = [describe_cluster(ClusterStatus::Active), create, foreign];
    let journal = MemoryJournal::default();
    let message = fatal(
        driver(&rules.iter().collect::<Vec<_>>())
            .start(&fixture.step(&journal, &ledger))
            .await,
    );
    assert_eq!(
        message,
        "cluster checkout-dev has a node group general that this action did not make"
    );
    assert!(journal.resources().is_empty());
}

#[tokio::test]
async fn eks_errors_are_throttled_retried_or_fatal_by_their_code() {
    type Answer = fn() -> CreateClusterError;
    let cases: [(Answer, &str); 4] = [
        (
            || CreateClusterError::generic(meta("ThrottlingException", "Rate exceeded")),
            "Throttled",
        ),
        (
            || {
                CreateClusterError::ServerException(
                    ServerException::builder()
                        .message("internal error")
                        .meta(meta("ServerException", "internal error"))
                        .build(),
                )
            },
            "Retryable",
        ),
        (
            || {
                CreateClusterError::InvalidParameterException(
                    InvalidParameterException::builder()
                        .message("Subnets specified must be in at least two different AZs")
                        .meta(meta(
                            "InvalidParameterException",
                            "Subnets specified must be in at least two different AZs",
                        ))
                        .build(),
                )
            },
            "Fatal",
        ),
        (
            || {
                CreateClusterError::generic(meta(
                    "AccessDeniedException",
                    "not authorized to perform: iam:PassRole",
                ))
            },
            "Fatal",
        ),
    ];
    for (error, expected) in cases {
        let create = mock!(Client::create_cluster).then_error(error);
        let fixture = fixture();
        let journal = MemoryJournal::default();
        let err = driver(&[&create])
            .start(&fixture.step(&journal, &[]))
            .await
            .unwrap_err();
        assert_eq!(err.name(), expected, "{err}");
        assert!(err.to_string().starts_with("EKS CreateCluster: "), "{err}");
        assert!(journal.resources().is_empty());
    }
}

#[tokio::test]
async fn a_config_eks_would_refuse_is_fatal_before_any_call() {
    let cases = [
        (
            json!({"name": "checkout dev"}),
            "config.name: `checkout dev` is not an EKS name",
        ),
        (
            json!({"name": "x".repeat(101)}),
            "is not an EKS name (at most 100",
        ),
        (
            json!({"subnet_ids": ["subnet-0a1b2c3d"]}),
            "at least two availability zones",
        ),
        (
            json!({"endpoint_private_access": false, "endpoint_public_access": false}),
            "at least one of endpoint_private_access",
        ),
        (json!({"node_groups": []}), "at least one node group"),
        (
            json!({"node_groups": [{"name": "a", "instance_types": ["m6i.large"], "min_size": 3, "max_size": 2}]}),
            "config.node_groups[0]: sizes must satisfy",
        ),
        (
            json!({"node_groups": [
                {"name": "a", "instance_types": ["m6i.large"], "min_size": 1, "max_size": 2},
                {"name": "a", "instance_types": ["m6i.large"], "min_size": 1, "max_size": 2}]}),
            "config.node_groups[1].name: `a` is used twice",
        ),
        (json!({"logging": ["kubelet"]}), "config, once rendered"),
    ];
    for (change, expected) in cases {
        let mut config = config();
        for (key, value) in change.as_object().unwrap() {
            config[key] = value.clone();
        }
        let fixture = fixture_with(config);
        let journal = MemoryJournal::default();
        let message = fatal(driver(&[]).start(&fixture.step(&journal, &[])).await);
        assert!(message.contains(expected), "{message} lacks {expected}");
    }
}

// ------------------------------------------------------------------ compensate

fn delete_entry() -> Rule {
    mock!(Client::delete_access_entry)
        .match_requests(|input| {
            input.cluster_name() == Some(NAME) && input.principal_arn() == Some(DEPLOY_ROLE)
        })
        .then_output(|| DeleteAccessEntryOutput::builder().build())
}

fn delete_entry_gone() -> Rule {
    mock!(Client::delete_access_entry)
        .then_error(|| DeleteAccessEntryError::ResourceNotFoundException(not_found()))
}

fn delete_groups_gone() -> Rule {
    mock!(Client::delete_nodegroup)
        .then_error(|| DeleteNodegroupError::ResourceNotFoundException(not_found()))
}

#[tokio::test]
async fn compensation_deletes_the_access_entry_and_node_groups_and_waits_for_them() {
    let deleted = seen::<String>();
    let record = deleted.clone();
    let delete_groups = mock!(Client::delete_nodegroup).then_compute_output(move |input| {
        record
            .lock()
            .unwrap()
            .push(input.nodegroup_name().unwrap_or_default().to_string());
        DeleteNodegroupOutput::builder().build()
    });
    // No DeleteCluster rule: a call for it would fail the test.
    let rules = [
        delete_entry(),
        delete_groups,
        describe_node_group("general", NodegroupStatus::Deleting),
        mock!(Client::describe_nodegroup)
            .match_requests(|input| input.nodegroup_name() == Some("batch"))
            .then_error(|| DescribeNodegroupError::ResourceNotFoundException(not_found())),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = made_all();
    let undone = driver(&rules.iter().collect::<Vec<_>>())
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Wait {
            seconds: 30,
            waiting_for: "node groups general of cluster checkout-dev (DELETING) to be deleted"
                .to_string()
        }
    );
    assert_eq!(rules[0].num_calls(), 1);
    assert_eq!(*deleted.lock().unwrap(), ["general", "batch"]);
}

#[tokio::test]
async fn a_node_group_still_being_created_is_asked_again_until_it_goes() {
    let busy = mock!(Client::delete_nodegroup).then_error(|| {
        DeleteNodegroupError::ResourceInUseException(in_use(
            "Nodegroup cannot be deleted while it is being created",
        ))
    });
    let rules = [
        delete_entry_gone(),
        busy,
        describe_node_group("general", NodegroupStatus::Creating),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = [made_cluster(), made_group("general")];
    let undone = driver(&rules.iter().collect::<Vec<_>>())
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Wait {
            seconds: 30,
            waiting_for: "node groups general of cluster checkout-dev (CREATING) to be deleted"
                .to_string()
        }
    );
}

#[tokio::test]
async fn a_node_group_whose_deletion_failed_is_fatal_with_its_issues() {
    let delete =
        mock!(Client::delete_nodegroup).then_output(|| DeleteNodegroupOutput::builder().build());
    let failed = mock!(Client::describe_nodegroup).then_output(|| {
        let mut group = node_group("general", NodegroupStatus::DeleteFailed);
        group.health = Some(
            NodegroupHealth::builder()
                .issues(
                    Issue::builder()
                        .code(NodegroupIssueCode::Ec2SecurityGroupDeletionFailure)
                        .message("DependencyViolation")
                        .resource_ids("sg-0f1e2d3c")
                        .build(),
                )
                .build(),
        );
        DescribeNodegroupOutput::builder().nodegroup(group).build()
    });
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = [made_cluster(), made_group("general")];
    let message = fatal(
        driver(&[&delete, &failed])
            .compensate(&fixture.step(&journal, &ledger))
            .await,
    );
    assert_eq!(
        message,
        "node group general of cluster checkout-dev could not be deleted (DELETE_FAILED): \
         Ec2SecurityGroupDeletionFailure: DependencyViolation (sg-0f1e2d3c)"
    );
}

#[tokio::test]
async fn once_its_node_groups_are_gone_the_cluster_is_deleted_and_waited_for() {
    let delete_cluster = mock!(Client::delete_cluster)
        .match_requests(|input| input.name() == Some(NAME))
        .then_output(|| DeleteClusterOutput::builder().build());
    let rules = [
        delete_entry_gone(),
        delete_groups_gone(),
        delete_cluster,
        describe_cluster(ClusterStatus::Deleting),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = made_all();
    let undone = driver(&rules.iter().collect::<Vec<_>>())
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Wait {
            seconds: 30,
            waiting_for: "EKS cluster checkout-dev to be deleted (DELETING)".to_string()
        }
    );
    assert_eq!(rules[2].num_calls(), 1);
}

#[tokio::test]
async fn compensation_is_done_when_everything_is_gone() {
    let rules = [
        delete_entry_gone(),
        delete_groups_gone(),
        mock!(Client::delete_cluster)
            .then_error(|| DeleteClusterError::ResourceNotFoundException(not_found())),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = made_all();
    let undone = driver(&rules.iter().collect::<Vec<_>>())
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Done(
            "deleted the deploy role's access entry, node groups general, batch, cluster checkout-dev"
                .to_string()
        )
    );
}

#[tokio::test]
async fn a_cluster_still_holding_node_groups_waits_for_ours_and_refuses_foreign_ones() {
    let busy = || {
        mock!(Client::delete_cluster).then_error(|| {
            DeleteClusterError::ResourceInUseException(in_use("Cluster has nodegroups attached"))
        })
    };
    // Ours are reported gone, but EKS still lists one for a moment.
    let listed_ours = mock!(Client::list_nodegroups).then_output(|| {
        ListNodegroupsOutput::builder()
            .nodegroups("general")
            .build()
    });
    let rules = [
        delete_entry_gone(),
        delete_groups_gone(),
        busy(),
        listed_ours,
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = made_all();
    let undone = driver(&rules.iter().collect::<Vec<_>>())
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Wait {
            seconds: 30,
            waiting_for: "EKS cluster checkout-dev to be deleted (Cluster has nodegroups attached)"
                .to_string()
        }
    );

    let listed_foreign = mock!(Client::list_nodegroups).then_output(|| {
        ListNodegroupsOutput::builder()
            .nodegroups("general")
            .nodegroups("added-by-hand")
            .build()
    });
    let rules = [
        delete_entry_gone(),
        delete_groups_gone(),
        busy(),
        listed_foreign,
    ];
    let message = fatal(
        driver(&rules.iter().collect::<Vec<_>>())
            .compensate(&fixture.step(&journal, &ledger))
            .await,
    );
    assert_eq!(
        message,
        "cluster checkout-dev has node groups PAO did not make (added-by-hand): delete them, then roll back again"
    );
}

#[tokio::test]
async fn compensation_touches_only_what_the_ledger_names() {
    // The start failed before any node group or access entry was made:
    // only the cluster is deleted (other calls match no rule).
    let rules = [
        mock!(Client::delete_cluster).then_output(|| DeleteClusterOutput::builder().build()),
        mock!(Client::describe_cluster)
            .then_error(|| aws_sdk_eks::operation::describe_cluster::DescribeClusterError::ResourceNotFoundException(not_found())),
    ];
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = [made_cluster()];
    let undone = driver(&rules.iter().collect::<Vec<_>>())
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Done("deleted cluster checkout-dev".to_string())
    );
}

#[tokio::test]
async fn retained_or_never_made_clusters_are_kept_without_a_call() {
    let fixture = fixture().rollback(json!({"retain": true}));
    let journal = MemoryJournal::default();
    let ledger = made_all();
    let undone = driver(&[])
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Kept(
            "cluster checkout-dev and its node groups are retained (rollback.retain)".to_string()
        )
    );

    let fixture = fixture_with(config()).status(RequestStatus::RollingBack);
    let undone = driver(&[])
        .compensate(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert_eq!(undone, Undone::Kept("the action made nothing".to_string()));
}

// ------------------------------------------------------------------ settings

#[test]
fn the_roles_are_read_once_and_must_be_role_arns() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        Env(move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    };
    let roles = Roles::read(&env(&[
        (Roles::CLUSTER, CLUSTER_ROLE),
        (Roles::NODE, NODE_ROLE),
        (
            Roles::DEPLOY,
            "arn:aws-us-gov:iam::123456789012:role/ci/pao-deploy",
        ),
    ]))
    .unwrap();
    assert_eq!(roles.cluster, CLUSTER_ROLE);
    assert_eq!(
        roles.deploy_policy(),
        "arn:aws-us-gov:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    );
    assert_eq!(
        Roles::read(&env(&[
            (Roles::CLUSTER, CLUSTER_ROLE),
            (Roles::NODE, NODE_ROLE)
        ])),
        Err(ConfigError::Missing(Roles::DEPLOY))
    );
    assert!(matches!(
        Roles::read(&env(&[
            (Roles::CLUSTER, "arn:aws:iam::123456789012:user/someone"),
            (Roles::NODE, NODE_ROLE),
            (Roles::DEPLOY, DEPLOY_ROLE),
        ])),
        Err(ConfigError::Invalid {
            name: Roles::CLUSTER,
            ..
        })
    ));
}
