//! The `aws-eks-cluster` action: an EKS cluster (API authentication,
//! control-plane logs, envelope encryption of Kubernetes secrets), an
//! access entry that lets the kubernetes-deploy function's role deploy to
//! it, and one managed node group per `node_groups` entry.
//!
//! Everything it makes is in the ledger before its next call: the cluster
//! (`eks:cluster`), the access entry (`eks:access-entry`) and its policy
//! association (`eks:access-policy`), the node groups (`eks:nodegroup`).
//! Compensation deletes exactly those, newest dependency first: the access
//! entry, the node groups, and the cluster once none of them is left. It
//! never deletes a cluster or node group the ledger does not name.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_eks::error::ProvideErrorMetadata;
use aws_sdk_eks::types::{
    AccessScope, AccessScopeType, AuthenticationMode, CapacityTypes, Cluster, ClusterStatus,
    CreateAccessConfigRequest, EncryptionConfig, LogSetup, LogType, Logging, Nodegroup,
    NodegroupScalingConfig, NodegroupStatus, Provider, Taint, TaintEffect, VpcConfigRequest,
};
use aws_sdk_eks::Client;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::action::ActionError;
use crate::actions::driver::{
    Driver, Level, Outputs, Progress, Step, Undone, ACTION_TAG, REQUEST_TAG,
};
use crate::aws::sdk;
use crate::config::{ConfigError, Env};
use crate::requests::fulfillment::Resource;

/// Ledger kinds.
pub const CLUSTER: &str = "eks:cluster";
pub const ACCESS_ENTRY: &str = "eks:access-entry";
pub const ACCESS_POLICY: &str = "eks:access-policy";
pub const NODEGROUP: &str = "eks:nodegroup";

/// A control plane takes 8-15 minutes, a node group 3-5: once a minute is
/// often enough. Deletions are shorter.
const CREATE_POLL_SECONDS: u32 = 60;
const DELETE_POLL_SECONDS: u32 = 30;

/// The access policy of the deploy role. The kubernetes-deploy action
/// creates its application's namespace, a cluster-scoped object that
/// neither AmazonEKSAdminPolicy nor AmazonEKSEditPolicy may create; the
/// cluster is the request's own, made for that one application.
const DEPLOY_ACCESS_POLICY: &str = "AmazonEKSClusterAdminPolicy";

const NOT_FOUND: &str = "ResourceNotFoundException";
const IN_USE: &str = "ResourceInUseException";
const ACCESS_DENIED: &str = "AccessDeniedException";

/// The IAM roles the driver hands to EKS, and the one it grants access to
/// the clusters it makes. Deployment settings, never catalog input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    /// `PAO_EKS_CLUSTER_ROLE_ARN`: the control plane's role.
    pub cluster: String,
    /// `PAO_EKS_NODE_ROLE_ARN`: the nodes' role.
    pub node: String,
    /// `PAO_DEPLOY_ROLE_ARN`: the kubernetes-deploy function's role.
    pub deploy: String,
}

impl Roles {
    pub const CLUSTER: &'static str = "PAO_EKS_CLUSTER_ROLE_ARN";
    pub const NODE: &'static str = "PAO_EKS_NODE_ROLE_ARN";
    pub const DEPLOY: &'static str = "PAO_DEPLOY_ROLE_ARN";

    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let role = |name: &'static str| {
            let arn = env.required(name)?;
            if is_role_arn(&arn) {
                Ok(arn)
            } else {
                Err(ConfigError::Invalid {
                    name,
                    reason: format!("`{arn}` is not an IAM role ARN"),
                })
            }
        };
        Ok(Self {
            cluster: role(Self::CLUSTER)?,
            node: role(Self::NODE)?,
            deploy: role(Self::DEPLOY)?,
        })
    }

    /// The access policy's ARN, in the deploy role's partition.
    fn deploy_policy(&self) -> String {
        let partition = self.deploy.split(':').nth(1).unwrap_or("aws");
        format!("arn:{partition}:eks::aws:cluster-access-policy/{DEPLOY_ACCESS_POLICY}")
    }
}

/// `arn:<partition>:iam::<account>:role/<path/name>`.
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if !partition.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty()))
}

pub struct EksDriver {
    eks: Client,
    roles: Roles,
}

impl EksDriver {
    pub fn new(eks: Client, roles: Roles) -> Self {
        Self { eks, roles }
    }
}

// ------------------------------------------------------------------ config

/// The action's config once rendered (catalog/schema/actions/aws-eks-cluster.schema.json).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: Option<String>,
    #[serde(default = "default_version")]
    kubernetes_version: String,
    subnet_ids: Vec<String>,
    #[serde(default)]
    security_group_ids: Vec<String>,
    #[serde(default = "yes")]
    endpoint_private_access: bool,
    #[serde(default)]
    endpoint_public_access: bool,
    #[serde(default = "anywhere")]
    public_access_cidrs: Vec<String>,
    #[serde(default = "default_logging")]
    logging: Vec<LogKind>,
    node_groups: Vec<NodeGroup>,
    /// Accepted, not acted on: the Cluster Autoscaler runs in the cluster.
    #[serde(default)]
    autoscaling: Option<Value>,
    encryption: Option<Encryption>,
    #[serde(default)]
    tags: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeGroup {
    name: String,
    instance_types: Vec<String>,
    #[serde(default)]
    capacity_type: Capacity,
    #[serde(default = "one")]
    min_size: i32,
    #[serde(default = "three")]
    max_size: i32,
    desired_size: Option<i32>,
    #[serde(default = "fifty")]
    disk_size_gb: i32,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    taints: Vec<TaintSpec>,
}

impl NodeGroup {
    fn desired(&self) -> i32 {
        self.desired_size.unwrap_or(self.min_size)
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Capacity {
    #[default]
    OnDemand,
    Spot,
}

impl Capacity {
    fn sdk(self) -> CapacityTypes {
        match self {
            Self::OnDemand => CapacityTypes::OnDemand,
            Self::Spot => CapacityTypes::Spot,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaintSpec {
    key: String,
    value: Option<String>,
    effect: Effect,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum Effect {
    NoSchedule,
    NoExecute,
    PreferNoSchedule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "camelCase")]
enum LogKind {
    Api,
    Audit,
    Authenticator,
    ControllerManager,
    Scheduler,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Encryption {
    kms_key_arn: String,
}

fn default_version() -> String {
    "1.31".to_string()
}
fn yes() -> bool {
    true
}
fn anywhere() -> Vec<String> {
    vec!["0.0.0.0/0".to_string()]
}
fn default_logging() -> Vec<LogKind> {
    vec![LogKind::Api, LogKind::Audit, LogKind::Authenticator]
}
fn one() -> i32 {
    1
}
fn three() -> i32 {
    3
}
fn fifty() -> i32 {
    50
}

/// What the action makes: the cluster's name and the checked config.
struct Wanted {
    cluster: String,
    config: Config,
}

impl Wanted {
    fn of(step: &Step<'_>) -> Result<Self, ActionError> {
        let config: Config = step.config()?;
        let cluster = config.name.clone().unwrap_or_else(|| step.name(""));
        check_name("config.name", &cluster, 100)?;
        let fatal = |message: String| Err(ActionError::Fatal(message));
        if config.subnet_ids.len() < 2 {
            return fatal(
                "config.subnet_ids: EKS needs subnets in at least two availability zones"
                    .to_string(),
            );
        }
        if !config.endpoint_private_access && !config.endpoint_public_access {
            return fatal(
                "config: at least one of endpoint_private_access and endpoint_public_access must be true"
                    .to_string(),
            );
        }
        if config.node_groups.is_empty() {
            return fatal("config.node_groups: at least one node group is needed".to_string());
        }
        let mut names = BTreeSet::new();
        for (index, group) in config.node_groups.iter().enumerate() {
            let at = format!("config.node_groups[{index}]");
            check_name(&format!("{at}.name"), &group.name, 63)?;
            if !names.insert(group.name.as_str()) {
                return fatal(format!("{at}.name: `{}` is used twice", group.name));
            }
            if group.instance_types.is_empty() {
                return fatal(format!("{at}.instance_types: at least one is needed"));
            }
            let (min, max, desired) = (group.min_size, group.max_size, group.desired());
            if min < 0 || max < 1 || min > max || !(min..=max).contains(&desired) {
                return fatal(format!(
                    "{at}: sizes must satisfy 0 <= min_size <= desired_size <= max_size and max_size >= 1 (min {min}, desired {desired}, max {max})"
                ));
            }
        }
        Ok(Self { cluster, config })
    }
}

/// EKS names: a letter or digit, then letters, digits, `-` and `_`.
fn check_name(at: &str, name: &str, max: usize) -> Result<(), ActionError> {
    let valid = name.len() <= max
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(ActionError::Fatal(format!(
            "{at}: `{name}` is not an EKS name (at most {max} letters, digits, - and _, starting with a letter or digit)"
        )))
    }
}

/// The idempotency token of one create call: the same on every attempt of
/// the action, different for every request, action and resource.
fn client_token(step: &Step<'_>, resource: &str) -> String {
    let mut hash = Sha256::new();
    for part in [&step.request.id, &step.action.id, resource] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// Whether a resource carries this action's PAO tags.
fn ours(step: &Step<'_>, tags: Option<&HashMap<String, String>>) -> bool {
    tags.is_some_and(|tags| {
        tags.get(REQUEST_TAG) == Some(&step.request.id)
            && tags.get(ACTION_TAG) == Some(&step.action.id)
    })
}

// ------------------------------------------------------------------ errors

// ------------------------------------------------------------------ calls

/// What is left of a resource being deleted.
enum Left {
    Gone,
    /// Still there, in this state.
    Deleting(String),
}

impl EksDriver {
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>, ActionError> {
        match self.eks.describe_cluster().name(name).send().await {
            Ok(out) => Ok(out.cluster),
            Err(err) if sdk::code(&err) == Some(NOT_FOUND) => Ok(None),
            Err(err) => Err(sdk::failed("EKS", "DescribeCluster", &err)),
        }
    }

    async fn describe_node_group(
        &self,
        cluster: &str,
        name: &str,
    ) -> Result<Option<Nodegroup>, ActionError> {
        let call = self
            .eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await;
        match call {
            Ok(out) => Ok(out.nodegroup),
            Err(err) if sdk::code(&err) == Some(NOT_FOUND) => Ok(None),
            Err(err) => Err(sdk::failed("EKS", "DescribeNodegroup", &err)),
        }
    }

    /// Creates the cluster, or adopts the one an earlier attempt made
    /// (found by its name and PAO tags), and records it.
    async fn create_cluster(&self, step: &Step<'_>, wanted: &Wanted) -> Result<(), ActionError> {
        let config = &wanted.config;
        let mut vpc = VpcConfigRequest::builder()
            .set_subnet_ids(Some(config.subnet_ids.clone()))
            .endpoint_private_access(config.endpoint_private_access)
            .endpoint_public_access(config.endpoint_public_access);
        if !config.security_group_ids.is_empty() {
            vpc = vpc.set_security_group_ids(Some(config.security_group_ids.clone()));
        }
        if config.endpoint_public_access {
            vpc = vpc.set_public_access_cidrs(Some(config.public_access_cidrs.clone()));
        }
        // Without a bootstrap entry for the caller: this function's role
        // never becomes a cluster admin; the deploy role gets its own entry.
        let access = CreateAccessConfigRequest::builder()
            .authentication_mode(AuthenticationMode::Api)
            .bootstrap_cluster_creator_admin_permissions(false)
            .build();
        let mut request = self
            .eks
            .create_cluster()
            .name(&wanted.cluster)
            .version(&config.kubernetes_version)
            .role_arn(&self.roles.cluster)
            .resources_vpc_config(vpc.build())
            .access_config(access)
            .set_tags(Some(step.tags(&config.tags).into_iter().collect()))
            .client_request_token(client_token(step, "cluster"));
        let kinds: BTreeSet<LogKind> = config.logging.iter().copied().collect();
        if !kinds.is_empty() {
            let types = kinds.into_iter().map(|kind| match kind {
                LogKind::Api => LogType::Api,
                LogKind::Audit => LogType::Audit,
                LogKind::Authenticator => LogType::Authenticator,
                LogKind::ControllerManager => LogType::ControllerManager,
                LogKind::Scheduler => LogType::Scheduler,
            });
            let setup = LogSetup::builder()
                .set_types(Some(types.collect()))
                .enabled(true)
                .build();
            request = request.logging(Logging::builder().cluster_logging(setup).build());
        }
        if let Some(encryption) = &config.encryption {
            request = request.encryption_config(secrets_encryption(&encryption.kms_key_arn));
        }
        let arn = match request.send().await {
            Ok(out) => out.cluster.and_then(|cluster| cluster.arn),
            Err(err) if sdk::code(&err) == Some(IN_USE) => {
                // The function may describe only PAO's clusters: a denial
                // says the cluster is someone else's as clearly as its tags.
                let existing = match self
                    .eks
                    .describe_cluster()
                    .name(&wanted.cluster)
                    .send()
                    .await
                {
                    Ok(out) => out.cluster.filter(|cluster| ours(step, cluster.tags())),
                    Err(err) if sdk::code(&err) == Some(ACCESS_DENIED) => None,
                    Err(err) if sdk::code(&err) == Some(NOT_FOUND) => {
                        return Err(ActionError::Retryable(format!(
                            "cluster {} was in use a moment ago and is gone now",
                            wanted.cluster
                        )))
                    }
                    Err(err) => return Err(sdk::failed("EKS", "DescribeCluster", &err)),
                };
                let Some(existing) = existing else {
                    return Err(ActionError::Fatal(format!(
                        "a cluster named {} already exists and was not made by this action: choose another name",
                        wanted.cluster
                    )));
                };
                existing.arn
            }
            Err(err) => return Err(sdk::failed("EKS", "CreateCluster", &err)),
        };
        let mut resource = Resource::new(CLUSTER, &wanted.cluster);
        if let Some(arn) = arn {
            resource = resource.with("arn", arn);
        }
        step.journal.record(resource).await?;
        let message = format!(
            "creating EKS cluster {} (Kubernetes {})",
            wanted.cluster, config.kubernetes_version
        );
        step.journal.log(Level::Info, &message).await?;
        let autoscaling = config.autoscaling.as_ref().is_some_and(|autoscaling| {
            autoscaling.get("enabled").and_then(Value::as_bool) != Some(false)
        });
        if autoscaling {
            step.journal
                .log(
                    Level::Warn,
                    "autoscaling: the Cluster Autoscaler is not installed by this action; EKS tags the node groups' Auto Scaling groups for its auto-discovery",
                )
                .await?;
        }
        Ok(())
    }

    /// Lets the kubernetes-deploy function's role into the cluster: an
    /// access entry, then its access policy, each recorded once made.
    async fn grant_deploy_access(
        &self,
        step: &Step<'_>,
        wanted: &Wanted,
    ) -> Result<(), ActionError> {
        if step.recorded(ACCESS_POLICY).next().is_some() {
            return Ok(());
        }
        let cluster = wanted.cluster.as_str();
        let principal = self.roles.deploy.as_str();
        if step.recorded(ACCESS_ENTRY).next().is_none() {
            let call = self
                .eks
                .create_access_entry()
                .cluster_name(cluster)
                .principal_arn(principal)
                .r#type("STANDARD")
                .set_tags(Some(step.tags(&wanted.config.tags).into_iter().collect()))
                .client_request_token(client_token(step, "access-entry"))
                .send()
                .await;
            match call {
                Ok(_) => {}
                // Made by an earlier attempt: nobody else knows this new cluster.
                Err(err) if sdk::code(&err) == Some(IN_USE) => {}
                Err(err) => return Err(sdk::failed("EKS", "CreateAccessEntry", &err)),
            }
            let entry = Resource::new(ACCESS_ENTRY, principal).with("cluster", cluster);
            step.journal.record(entry).await?;
        }
        let policy = self.roles.deploy_policy();
        self.eks
            .associate_access_policy()
            .cluster_name(cluster)
            .principal_arn(principal)
            .policy_arn(&policy)
            .access_scope(
                AccessScope::builder()
                    .r#type(AccessScopeType::Cluster)
                    .build(),
            )
            .send()
            .await
            .map_err(|err| sdk::failed("EKS", "AssociateAccessPolicy", &err))?;
        let association = Resource::new(ACCESS_POLICY, &policy)
            .with("cluster", cluster)
            .with("principal", principal);
        step.journal.record(association).await?;
        let message =
            format!("granted {principal} {DEPLOY_ACCESS_POLICY} on cluster {cluster}, for kubernetes-deploy");
        step.journal.log(Level::Info, &message).await
    }

    /// Creates the node groups not made yet, each recorded once made.
    async fn create_node_groups(
        &self,
        step: &Step<'_>,
        wanted: &Wanted,
    ) -> Result<(), ActionError> {
        let cluster = wanted.cluster.as_str();
        let made: BTreeSet<&str> = step.recorded(NODEGROUP).map(|r| r.id.as_str()).collect();
        for group in &wanted.config.node_groups {
            if made.contains(group.name.as_str()) {
                continue;
            }
            let scaling = NodegroupScalingConfig::builder()
                .min_size(group.min_size)
                .max_size(group.max_size)
                .desired_size(group.desired())
                .build();
            let taints = group.taints.iter().map(|taint| {
                Taint::builder()
                    .key(&taint.key)
                    .set_value(taint.value.clone())
                    .effect(match taint.effect {
                        Effect::NoSchedule => TaintEffect::NoSchedule,
                        Effect::NoExecute => TaintEffect::NoExecute,
                        Effect::PreferNoSchedule => TaintEffect::PreferNoSchedule,
                    })
                    .build()
            });
            let mut request = self
                .eks
                .create_nodegroup()
                .cluster_name(cluster)
                .nodegroup_name(&group.name)
                .scaling_config(scaling)
                .disk_size(group.disk_size_gb)
                .set_subnets(Some(wanted.config.subnet_ids.clone()))
                .set_instance_types(Some(group.instance_types.clone()))
                .capacity_type(group.capacity_type.sdk())
                .node_role(&self.roles.node)
                .set_tags(Some(step.tags(&wanted.config.tags).into_iter().collect()))
                .client_request_token(client_token(step, &format!("nodegroup/{}", group.name)));
            if !group.labels.is_empty() {
                request = request.set_labels(Some(group.labels.clone().into_iter().collect()));
            }
            if !group.taints.is_empty() {
                request = request.set_taints(Some(taints.collect()));
            }
            match request.send().await {
                Ok(_) => {}
                Err(err) if sdk::code(&err) == Some(IN_USE) => {
                    let described = self
                        .eks
                        .describe_nodegroup()
                        .cluster_name(cluster)
                        .nodegroup_name(&group.name)
                        .send()
                        .await;
                    let existing = match described {
                        Ok(out) => out.nodegroup,
                        Err(err) if sdk::code(&err) == Some(ACCESS_DENIED) => None,
                        Err(err) => return Err(sdk::failed("EKS", "DescribeNodegroup", &err)),
                    };
                    if !existing.is_some_and(|ng| ours(step, ng.tags())) {
                        return Err(ActionError::Fatal(format!(
                            "cluster {cluster} has a node group {} that this action did not make",
                            group.name
                        )));
                    }
                }
                Err(err) => return Err(sdk::failed("EKS", "CreateNodegroup", &err)),
            }
            let resource = Resource::new(NODEGROUP, &group.name).with("cluster", cluster);
            step.journal.record(resource).await?;
            let message = format!(
                "creating node group {} of cluster {cluster}: {} x {}-{} ({} at first), {}",
                group.name,
                group.instance_types.join("/"),
                group.min_size,
                group.max_size,
                group.desired(),
                group.capacity_type.sdk().as_str(),
            );
            step.journal.log(Level::Info, &message).await?;
        }
        Ok(())
    }

    /// The node groups still being created; an error for one that failed.
    async fn node_groups_creating(&self, wanted: &Wanted) -> Result<Vec<String>, ActionError> {
        let cluster = wanted.cluster.as_str();
        let mut creating = Vec::new();
        for group in &wanted.config.node_groups {
            let name = group.name.as_str();
            let found = self.describe_node_group(cluster, name).await?;
            let Some(found) = found else {
                return Err(ActionError::Fatal(format!(
                    "node group {name} of cluster {cluster} was deleted while it was being made"
                )));
            };
            let status = found.status.clone();
            match status {
                Some(NodegroupStatus::Active) => {}
                Some(NodegroupStatus::CreateFailed | NodegroupStatus::Degraded) => {
                    return Err(ActionError::Fatal(format!(
                        "node group {name} of cluster {cluster} is {}: {}",
                        status.as_ref().map_or("", NodegroupStatus::as_str),
                        node_group_issues(&found)
                    )));
                }
                Some(NodegroupStatus::Deleting | NodegroupStatus::DeleteFailed) => {
                    return Err(ActionError::Fatal(format!(
                        "node group {name} of cluster {cluster} is being deleted ({})",
                        status.as_ref().map_or("", NodegroupStatus::as_str)
                    )));
                }
                // CREATING, UPDATING, or a state newer than this SDK.
                _ => creating.push(name.to_string()),
            }
        }
        Ok(creating)
    }

    async fn delete_access_entry(&self, cluster: &str, principal: &str) -> Result<(), ActionError> {
        let call = self
            .eks
            .delete_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal)
            .send()
            .await;
        match call {
            Ok(_) => Ok(()),
            Err(err) if sdk::code(&err) == Some(NOT_FOUND) => Ok(()),
            Err(err) => Err(sdk::failed("EKS", "DeleteAccessEntry", &err)),
        }
    }

    /// Asks for a node group's deletion (again: a call while it is being
    /// created is refused as in use), then looks at what is left.
    async fn delete_node_group(&self, cluster: &str, name: &str) -> Result<Left, ActionError> {
        let call = self
            .eks
            .delete_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await;
        match call {
            Ok(_) => {}
            Err(err) if sdk::code(&err) == Some(NOT_FOUND) => return Ok(Left::Gone),
            Err(err) if sdk::code(&err) == Some(IN_USE) => {}
            Err(err) => return Err(sdk::failed("EKS", "DeleteNodegroup", &err)),
        }
        let Some(found) = self.describe_node_group(cluster, name).await? else {
            return Ok(Left::Gone);
        };
        match found.status.clone() {
            Some(NodegroupStatus::DeleteFailed) => Err(ActionError::Fatal(format!(
                "node group {name} of cluster {cluster} could not be deleted (DELETE_FAILED): {}",
                node_group_issues(&found)
            ))),
            status => Ok(Left::Deleting(
                status
                    .as_ref()
                    .map_or("", NodegroupStatus::as_str)
                    .to_string(),
            )),
        }
    }

    /// Asks for the cluster's deletion, which EKS refuses while node
    /// groups are attached; PAO's own are gone by then, so any left are
    /// either still going or someone else's.
    async fn delete_cluster(&self, step: &Step<'_>, name: &str) -> Result<Left, ActionError> {
        match self.eks.delete_cluster().name(name).send().await {
            Ok(_) => {}
            Err(err) if sdk::code(&err) == Some(NOT_FOUND) => return Ok(Left::Gone),
            Err(err) if sdk::code(&err) == Some(IN_USE) => {
                let attached = match self.eks.list_nodegroups().cluster_name(name).send().await {
                    Ok(out) => out.nodegroups.unwrap_or_default(),
                    Err(err) if sdk::code(&err) == Some(NOT_FOUND) => return Ok(Left::Gone),
                    Err(err) => return Err(sdk::failed("EKS", "ListNodegroups", &err)),
                };
                let ours: BTreeSet<&str> =
                    step.recorded(NODEGROUP).map(|r| r.id.as_str()).collect();
                let foreign: Vec<&str> = attached
                    .iter()
                    .map(String::as_str)
                    .filter(|group| !ours.contains(group))
                    .collect();
                if !foreign.is_empty() {
                    return Err(ActionError::Fatal(format!(
                        "cluster {name} has node groups PAO did not make ({}): delete them, then roll back again",
                        foreign.join(", ")
                    )));
                }
                let message = err
                    .as_service_error()
                    .and_then(ProvideErrorMetadata::message)
                    .unwrap_or("in use")
                    .to_string();
                return Ok(Left::Deleting(message));
            }
            Err(err) => return Err(sdk::failed("EKS", "DeleteCluster", &err)),
        }
        Ok(match self.describe_cluster(name).await? {
            None => Left::Gone,
            Some(cluster) => Left::Deleting(
                cluster
                    .status
                    .as_ref()
                    .map_or("", ClusterStatus::as_str)
                    .to_string(),
            ),
        })
    }
}

/// Envelope encryption of Kubernetes secrets with `key`. EKS now encrypts
/// all Kubernetes API data and deprecates `resources`, which is still how
/// the API takes a key, with `secrets` its only value.
#[allow(deprecated)]
fn secrets_encryption(key: &str) -> EncryptionConfig {
    EncryptionConfig::builder()
        .resources("secrets")
        .provider(Provider::builder().key_arn(key).build())
        .build()
}

/// A node group's health issues: `code: message (resources)`, joined.
fn node_group_issues(group: &Nodegroup) -> String {
    let issues: Vec<String> = group
        .health()
        .map(|health| health.issues())
        .unwrap_or_default()
        .iter()
        .map(|issue| {
            let mut text = format!(
                "{}: {}",
                issue.code().map_or("Unknown", |code| code.as_str()),
                issue.message().unwrap_or("no message")
            );
            if !issue.resource_ids().is_empty() {
                text.push_str(&format!(" ({})", issue.resource_ids().join(", ")));
            }
            text
        })
        .collect();
    if issues.is_empty() {
        "no health issues reported".to_string()
    } else {
        issues.join("; ")
    }
}

fn cluster_issues(cluster: &Cluster) -> String {
    let issues: Vec<String> = cluster
        .health()
        .map(|health| health.issues())
        .unwrap_or_default()
        .iter()
        .map(|issue| {
            format!(
                "{}: {}",
                issue.code().map_or("Unknown", |code| code.as_str()),
                issue.message().unwrap_or("no message")
            )
        })
        .collect();
    if issues.is_empty() {
        "no health issues reported".to_string()
    } else {
        issues.join("; ")
    }
}

/// The action's outputs, from the active cluster.
fn outputs(name: &str, cluster: &Cluster) -> Result<Outputs, ActionError> {
    let missing = |what: &str| {
        ActionError::Retryable(format!(
            "cluster {name} is ACTIVE but EKS does not report its {what} yet"
        ))
    };
    let arn = cluster.arn().ok_or_else(|| missing("ARN"))?;
    let endpoint = cluster.endpoint().ok_or_else(|| missing("endpoint"))?;
    let issuer = cluster
        .identity()
        .and_then(|identity| identity.oidc())
        .and_then(|oidc| oidc.issuer())
        .ok_or_else(|| missing("OIDC issuer"))?;
    let mut values = Map::new();
    values.insert("cluster_name".to_string(), Value::from(name));
    values.insert("cluster_arn".to_string(), Value::from(arn));
    values.insert("endpoint".to_string(), Value::from(endpoint));
    values.insert("oidc_issuer".to_string(), Value::from(issuer));
    Ok(Outputs::new(values))
}

fn detail<'r>(resource: &'r Resource, key: &str) -> Result<&'r str, ActionError> {
    resource.detail(key).ok_or_else(|| {
        ActionError::Fatal(format!(
            "the ledger's {} {} has no {key}",
            resource.kind, resource.id
        ))
    })
}

#[async_trait]
impl Driver for EksDriver {
    /// Makes what is missing, in order, and reports how far EKS got: a
    /// start that died halfway is finished here, and every poll is a start.
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let wanted = Wanted::of(step)?;
        let name = wanted.cluster.as_str();
        if step.recorded(CLUSTER).next().is_none() {
            self.create_cluster(step, &wanted).await?;
        }
        let cluster = self.describe_cluster(name).await?.ok_or_else(|| {
            ActionError::Fatal(format!(
                "cluster {name} was deleted while it was being made"
            ))
        })?;
        match cluster.status.clone() {
            Some(ClusterStatus::Active) => {}
            Some(ClusterStatus::Failed) => {
                return Err(ActionError::Fatal(format!(
                    "cluster {name} is FAILED: {}",
                    cluster_issues(&cluster)
                )))
            }
            Some(ClusterStatus::Deleting) => {
                return Err(ActionError::Fatal(format!(
                    "cluster {name} is being deleted"
                )))
            }
            // CREATING, UPDATING, PENDING, or a state newer than this SDK.
            status => {
                return Ok(Progress::Wait {
                    seconds: CREATE_POLL_SECONDS,
                    waiting_for: format!(
                        "EKS cluster {name} to become ACTIVE ({})",
                        status.as_ref().map_or("", ClusterStatus::as_str)
                    ),
                })
            }
        }
        self.grant_deploy_access(step, &wanted).await?;
        self.create_node_groups(step, &wanted).await?;
        let creating = self.node_groups_creating(&wanted).await?;
        if !creating.is_empty() {
            return Ok(Progress::Wait {
                seconds: CREATE_POLL_SECONDS,
                waiting_for: format!(
                    "node groups {} of cluster {name} to become ACTIVE",
                    creating.join(", ")
                ),
            });
        }
        Ok(Progress::Done(outputs(name, &cluster)?))
    }

    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError> {
        let clusters: Vec<&str> = step.recorded(CLUSTER).map(|r| r.id.as_str()).collect();
        let groups: Vec<&Resource> = step.recorded(NODEGROUP).collect();
        if step.resources.is_empty() {
            return Ok(Undone::Kept("the action made nothing".to_string()));
        }
        if step.retain() {
            return Ok(Undone::Kept(format!(
                "cluster {} and its node groups are retained (rollback.retain)",
                clusters.join(", ")
            )));
        }
        for entry in step.recorded(ACCESS_ENTRY) {
            self.delete_access_entry(detail(entry, "cluster")?, &entry.id)
                .await?;
        }
        let mut deleting = Vec::new();
        for group in &groups {
            let cluster = detail(group, "cluster")?;
            if let Left::Deleting(status) = self.delete_node_group(cluster, &group.id).await? {
                deleting.push(format!("{} of cluster {cluster} ({status})", group.id));
            }
        }
        if !deleting.is_empty() {
            return Ok(Undone::Wait {
                seconds: DELETE_POLL_SECONDS,
                waiting_for: format!("node groups {} to be deleted", deleting.join(", ")),
            });
        }
        for name in &clusters {
            if let Left::Deleting(status) = self.delete_cluster(step, name).await? {
                return Ok(Undone::Wait {
                    seconds: DELETE_POLL_SECONDS,
                    waiting_for: format!("EKS cluster {name} to be deleted ({status})"),
                });
            }
        }
        let mut deleted = Vec::new();
        if step.recorded(ACCESS_ENTRY).next().is_some() {
            deleted.push("the deploy role's access entry".to_string());
        }
        if !groups.is_empty() {
            let names: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
            deleted.push(format!("node groups {}", names.join(", ")));
        }
        if !clusters.is_empty() {
            deleted.push(format!("cluster {}", clusters.join(", ")));
        }
        Ok(Undone::Done(format!("deleted {}", deleted.join(", "))))
    }
}

#[cfg(test)]
#[path = "eks_tests.rs"]
mod tests;
