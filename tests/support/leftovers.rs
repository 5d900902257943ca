//! What a request left behind: every resource still tagged with its id, in
//! every service the drivers use, listed as `service:type id` lines, so a
//! test can assert that compensation left nothing (or only what it keeps).

use aws_config::SdkConfig;
use aws_sdk_ec2::types::Filter;

const REQUEST_TAG: &str = "pao:request-id";

/// Every resource still tagged `pao:request-id = id`, in every service
/// the drivers use, as `service:type id` lines.
pub async fn leftovers(sdk: &SdkConfig, id: &str) -> Vec<String> {
    let mut left = ec2(sdk, id).await;
    left.extend(rds(sdk, id).await);
    left.extend(secrets(sdk, id).await);
    left.extend(eks(sdk, id).await);
    left.extend(cloudwatch(sdk, id).await);
    left
}

async fn ec2(sdk: &SdkConfig, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let ours = || {
        Filter::builder()
            .name(format!("tag:{REQUEST_TAG}"))
            .values(id)
            .build()
    };
    let vpcs = ec2
        .describe_vpcs()
        .filters(ours())
        .send()
        .await
        .expect("DescribeVpcs");
    left.extend(
        vpcs.vpcs()
            .iter()
            .map(|v| format!("ec2:vpc {:?}", v.vpc_id())),
    );
    let subnets = ec2
        .describe_subnets()
        .filters(ours())
        .send()
        .await
        .expect("DescribeSubnets");
    left.extend(
        subnets
            .subnets()
            .iter()
            .map(|s| format!("ec2:subnet {:?}", s.subnet_id())),
    );
    let groups = ec2
        .describe_security_groups()
        .filters(ours())
        .send()
        .await
        .expect("DescribeSecurityGroups");
    left.extend(
        groups
            .security_groups()
            .iter()
            .map(|g| format!("ec2:security-group {:?}", g.group_id())),
    );
    let gateways = ec2
        .describe_internet_gateways()
        .filters(ours())
        .send()
        .await
        .expect("DescribeInternetGateways");
    left.extend(
        gateways
            .internet_gateways()
            .iter()
            .map(|g| format!("ec2:internet-gateway {:?}", g.internet_gateway_id())),
    );
    let nats = ec2
        .describe_nat_gateways()
        .filter(ours())
        .send()
        .await
        .expect("DescribeNatGateways");
    left.extend(
        nats.nat_gateways()
            .iter()
            .filter(|n| n.state().is_some_and(|s| s.as_str() != "deleted"))
            .map(|n| format!("ec2:nat-gateway {:?}", n.nat_gateway_id())),
    );
    let tables = ec2
        .describe_route_tables()
        .filters(ours())
        .send()
        .await
        .expect("DescribeRouteTables");
    left.extend(
        tables
            .route_tables()
            .iter()
            .map(|t| format!("ec2:route-table {:?}", t.route_table_id())),
    );
    let addresses = ec2
        .describe_addresses()
        .filters(ours())
        .send()
        .await
        .expect("DescribeAddresses");
    left.extend(
        addresses
            .addresses()
            .iter()
            .map(|a| format!("ec2:elastic-ip {:?}", a.allocation_id())),
    );
    let flow_logs = ec2
        .describe_flow_logs()
        .filter(ours())
        .send()
        .await
        .expect("DescribeFlowLogs");
    left.extend(
        flow_logs
            .flow_logs()
            .iter()
            .map(|f| format!("ec2:flow-log {:?}", f.flow_log_id())),
    );
    left
}

async fn rds(sdk: &SdkConfig, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let rds = aws_sdk_rds::Client::new(sdk);
    let tagged = |tags: &[aws_sdk_rds::types::Tag]| {
        tags.iter()
            .any(|t| t.key() == Some(REQUEST_TAG) && t.value() == Some(id))
    };
    let instances = rds
        .describe_db_instances()
        .send()
        .await
        .expect("DescribeDBInstances");
    left.extend(
        instances
            .db_instances()
            .iter()
            .filter(|i| tagged(i.tag_list()))
            .map(|i| {
                format!(
                    "rds:db {:?} ({:?})",
                    i.db_instance_identifier(),
                    i.db_instance_status()
                )
            }),
    );
    let prefix = format!("pao-{id}").to_ascii_lowercase();
    let subnet_groups = rds
        .describe_db_subnet_groups()
        .send()
        .await
        .expect("DescribeDBSubnetGroups");
    left.extend(
        subnet_groups
            .db_subnet_groups()
            .iter()
            .filter_map(|g| g.db_subnet_group_name())
            .filter(|name| name.starts_with(&prefix))
            .map(|name| format!("rds:subnet-group {name}")),
    );
    let parameter_groups = rds
        .describe_db_parameter_groups()
        .send()
        .await
        .expect("DescribeDBParameterGroups");
    left.extend(
        parameter_groups
            .db_parameter_groups()
            .iter()
            .filter_map(|g| g.db_parameter_group_name())
            .filter(|name| name.starts_with(&prefix))
            .map(|name| format!("rds:parameter-group {name}")),
    );
    for snapshot in snapshots(sdk, id).await {
        left.push(format!("rds:snapshot {snapshot}"));
    }
    left
}

async fn secrets(sdk: &SdkConfig, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let secrets = aws_sdk_secretsmanager::Client::new(sdk);
    let listed = secrets
        .list_secrets()
        .include_planned_deletion(true)
        .send()
        .await
        .expect("ListSecrets");
    for secret in listed.secret_list() {
        let ours = secret
            .tags()
            .iter()
            .any(|t| t.key() == Some(REQUEST_TAG) && t.value() == Some(id));
        if ours {
            let state = if secret.deleted_date().is_some() {
                "scheduled for deletion"
            } else {
                "live"
            };
            left.push(format!(
                "secretsmanager:secret {:?} ({state})",
                secret.name()
            ));
        }
    }
    left
}

async fn eks(sdk: &SdkConfig, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let eks = aws_sdk_eks::Client::new(sdk);
    let clusters = eks.list_clusters().send().await.expect("ListClusters");
    for name in clusters.clusters() {
        let Ok(described) = eks.describe_cluster().name(name).send().await else {
            continue;
        };
        let Some(cluster) = described.cluster() else {
            continue;
        };
        if cluster
            .tags()
            .and_then(|t| t.get(REQUEST_TAG))
            .map(String::as_str)
            == Some(id)
        {
            left.push(format!("eks:cluster {name}"));
            let groups = eks
                .list_nodegroups()
                .cluster_name(name)
                .send()
                .await
                .expect("ListNodegroups");
            left.extend(
                groups
                    .nodegroups()
                    .iter()
                    .map(|g| format!("eks:nodegroup {name}/{g}")),
            );
        }
    }
    left
}

/// Alarms and log groups (the VPC's flow logs) tagged with the request.
async fn cloudwatch(sdk: &SdkConfig, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let cloudwatch = aws_sdk_cloudwatch::Client::new(sdk);
    let alarms = cloudwatch
        .describe_alarms()
        .send()
        .await
        .expect("DescribeAlarms");
    for alarm in alarms.metric_alarms() {
        let tags = cloudwatch
            .list_tags_for_resource()
            .resource_arn(alarm.alarm_arn().unwrap_or_default())
            .send()
            .await
            .expect("ListTagsForResource");
        if tags
            .tags()
            .iter()
            .any(|t| t.key() == Some(REQUEST_TAG) && t.value() == Some(id))
        {
            left.push(format!("cloudwatch:alarm {:?}", alarm.alarm_name()));
        }
    }
    let logs = aws_sdk_cloudwatchlogs::Client::new(sdk);
    let groups = logs
        .describe_log_groups()
        .send()
        .await
        .expect("DescribeLogGroups");
    for group in groups.log_groups() {
        let Some(arn) = group.log_group_arn().or(group.arn()) else {
            continue;
        };
        // DescribeLogGroups gives the ARN with `:*`; tags take it without.
        let tags = logs
            .list_tags_for_resource()
            .resource_arn(arn.trim_end_matches(":*"))
            .send()
            .await
            .expect("ListTagsForResource");
        if tags
            .tags()
            .and_then(|t| t.get(REQUEST_TAG))
            .map(String::as_str)
            == Some(id)
        {
            left.push(format!("logs:log-group {:?}", group.log_group_name()));
        }
    }
    left
}

/// The RDS snapshots made for request `id` (their identifiers name it).
pub async fn snapshots(sdk: &SdkConfig, id: &str) -> Vec<String> {
    let rds = aws_sdk_rds::Client::new(sdk);
    let snapshots = rds
        .describe_db_snapshots()
        .send()
        .await
        .expect("DescribeDBSnapshots");
    let id = id.to_ascii_lowercase();
    snapshots
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier())
        .filter(|name| name.contains(&id))
        .map(str::to_string)
        .collect()
}
