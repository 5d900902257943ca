//! The aws-rds-postgres driver in process against the emulator at
//! `AWS_ENDPOINT_URL`: a database is made once (a second start makes
//! nothing new), and a rollback of the completed request deletes the
//! instance and its groups, keeping the final snapshot.
//!
//! The emulator makes instances available at once, so the poll branches
//! are covered by the unit tests (`drivers/rds_tests.rs`).

use aws_sdk_rds::types::Tag;
use pao::actions::driver::{Driver, Progress, Undone, REQUEST_TAG};
use pao::actions::memory::{Fixture, MemoryJournal};
use pao::catalog::item::ActionType;
use pao::drivers::rds::{RdsDriver, INSTANCE, PARAMETER_GROUP, SNAPSHOT, SUBNET_GROUP};
use pao::requests::RequestStatus;
use serde_json::{json, Value};

/// A VPC with two subnets in different zones: RDS checks a subnet group's
/// subnets against EC2.
struct Network {
    ec2: aws_sdk_ec2::Client,
    vpc: String,
    subnets: Vec<String>,
}

impl Network {
    async fn create(sdk: &aws_config::SdkConfig) -> Self {
        let ec2 = aws_sdk_ec2::Client::new(sdk);
        let region = sdk
            .region()
            .map_or("us-east-1".to_string(), |r| r.to_string());
        let vpc = ec2
            .create_vpc()
            .cidr_block("10.42.0.0/16")
            .send()
            .await
            .expect("CreateVpc")
            .vpc
            .and_then(|vpc| vpc.vpc_id)
            .expect("a VPC id");
        let mut subnets = Vec::new();
        for (cidr, zone) in [("10.42.1.0/24", "a"), ("10.42.2.0/24", "b")] {
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block(cidr)
                .availability_zone(format!("{region}{zone}"))
                .send()
                .await
                .expect("CreateSubnet")
                .subnet
                .and_then(|subnet| subnet.subnet_id)
                .expect("a subnet id");
            subnets.push(subnet);
        }
        Self { ec2, vpc, subnets }
    }

    async fn delete(self) {
        for subnet in &self.subnets {
            self.ec2
                .delete_subnet()
                .subnet_id(subnet)
                .send()
                .await
                .expect("DeleteSubnet");
        }
        self.ec2
            .delete_vpc()
            .vpc_id(&self.vpc)
            .send()
            .await
            .expect("DeleteVpc");
    }
}

fn tagged(tags: &[Tag], request_id: &str) -> bool {
    tags.iter()
        .any(|tag| tag.key() == Some(REQUEST_TAG) && tag.value() == Some(request_id))
}

/// Every RDS resource tagged with the request: instances, subnet groups,
/// parameter groups and snapshots, by listing the service.
async fn tagged_resources(rds: &aws_sdk_rds::Client, request_id: &str) -> Vec<String> {
    let mut arns = Vec::new();
    let instances = rds.describe_db_instances().send().await.expect("instances");
    for instance in instances.db_instances() {
        if tagged(instance.tag_list(), request_id) {
            arns.extend(instance.db_instance_arn().map(str::to_string));
        }
    }
    let snapshots = rds.describe_db_snapshots().send().await.expect("snapshots");
    // RDS's own automated snapshots (moto makes one at creation, tagged
    // like the instance) are RDS's backups, not something PAO made.
    for snapshot in snapshots.db_snapshots() {
        if tagged(snapshot.tag_list(), request_id) && snapshot.snapshot_type() != Some("automated")
        {
            arns.extend(snapshot.db_snapshot_arn().map(str::to_string));
        }
    }
    let mut groups: Vec<String> = Vec::new();
    let subnet_groups = rds
        .describe_db_subnet_groups()
        .send()
        .await
        .expect("subnets");
    groups.extend(
        subnet_groups
            .db_subnet_groups()
            .iter()
            .filter_map(|g| g.db_subnet_group_arn().map(str::to_string)),
    );
    let parameter_groups = rds
        .describe_db_parameter_groups()
        .send()
        .await
        .expect("parameter groups");
    groups.extend(
        parameter_groups
            .db_parameter_groups()
            .iter()
            .filter_map(|g| g.db_parameter_group_arn().map(str::to_string)),
    );
    for arn in groups {
        let tags = rds
            .list_tags_for_resource()
            .resource_name(&arn)
            .send()
            .await
            .expect("ListTagsForResource");
        if tagged(tags.tag_list(), request_id) {
            arns.push(arn);
        }
    }
    arns.sort();
    arns
}

fn config(subnets: &[String]) -> Value {
    json!({
        "engine_version": "16.4",
        "instance_class": "db.t4g.micro",
        "allocated_storage_gb": 20,
        "max_allocated_storage_gb": 100,
        "db_name": "orders",
        "master_username": "app_admin",
        "backup_retention_days": 7,
        "backup_window": "01:00-02:00",
        "maintenance_window": "sun:03:00-sun:04:00",
        "deletion_protection": true,
        "performance_insights": true,
        "subnet_ids": subnets,
        "parameters": {"log_min_duration_statement": "500", "rds.force_ssl": "1"},
        "tags": {"app": "orders", "environment": "test"},
    })
}

async fn run(driver: &RdsDriver, fixture: &Fixture, journal: &MemoryJournal) -> Value {
    let ledger = journal.resources();
    let mut progress = driver
        .start(&fixture.step(journal, &ledger))
        .await
        .expect("start");
    for _ in 0..10 {
        match progress {
            Progress::Done(outputs) => return Value::Object(outputs.values),
            Progress::Wait { .. } => {
                let ledger = journal.resources();
                progress = driver
                    .poll(&fixture.step(journal, &ledger))
                    .await
                    .expect("poll");
            }
        }
    }
    panic!("not available after 10 polls");
}

#[tokio::test]
async fn a_database_is_made_once_and_rolled_back_to_a_kept_final_snapshot() {
    pao_integration::env("AWS_ENDPOINT_URL");
    let sdk = pao::aws::sdk_config().await;
    let rds = aws_sdk_rds::Client::new(&sdk);
    let network = Network::create(&sdk).await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let fixture = Fixture::new(
        &request_id,
        "eks-app-stack",
        ActionType::AwsRdsPostgres,
        "database",
        config(&network.subnets),
    );
    let journal = MemoryJournal::default();
    let driver = RdsDriver::new(rds.clone());

    let outputs = run(&driver, &fixture, &journal).await;
    let instance_id = format!("pao-{request_id}-database");
    assert_eq!(outputs["db_instance_id"], json!(instance_id));
    assert_eq!(outputs["db_name"], json!("orders"));
    assert_eq!(outputs["port"], json!(5432));
    assert!(outputs["endpoint"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(
        outputs["master_secret_arn"]
            .as_str()
            .is_some_and(|arn| arn.contains(":secret:rds!")),
        "{outputs}"
    );
    let kinds: Vec<(String, String)> = journal
        .resources()
        .into_iter()
        .map(|r| (r.kind, r.id))
        .collect();
    assert_eq!(
        kinds,
        [
            (SUBNET_GROUP.to_string(), format!("{instance_id}-subnets")),
            (PARAMETER_GROUP.to_string(), format!("{instance_id}-params")),
            (INSTANCE.to_string(), instance_id.clone()),
        ]
    );
    let made = tagged_resources(&rds, &request_id).await;
    assert_eq!(made.len(), 3, "{made:?}");

    // A second start finds everything and makes nothing new.
    let again = run(&driver, &fixture, &journal).await;
    assert_eq!(again, outputs);
    assert_eq!(journal.resources().len(), 3);
    assert_eq!(tagged_resources(&rds, &request_id).await, made);

    // A person rolls the completed request back.
    let rollback = Fixture::new(
        &request_id,
        "eks-app-stack",
        ActionType::AwsRdsPostgres,
        "database",
        config(&network.subnets),
    )
    .status(RequestStatus::RollingBack);
    let mut undone = None;
    for _ in 0..10 {
        let ledger = journal.resources();
        match driver
            .compensate(&rollback.step(&journal, &ledger))
            .await
            .expect("compensate")
        {
            Undone::Wait { .. } => continue,
            other => {
                undone = Some(other);
                break;
            }
        }
    }
    let Some(Undone::Done(described)) = undone else {
        panic!("not undone: {undone:?}");
    };
    let snapshots: Vec<String> = journal
        .resources()
        .into_iter()
        .filter(|r| r.kind == SNAPSHOT)
        .map(|r| r.id)
        .collect();
    assert_eq!(snapshots.len(), 1, "{:?}", journal.resources());
    assert!(described.contains(&snapshots[0]), "{described}");

    // Only the final snapshot is left, and PAO never deletes it.
    let left = tagged_resources(&rds, &request_id).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].ends_with(&format!(":snapshot:{}", snapshots[0])),
        "{left:?}"
    );
    rds.delete_db_snapshot()
        .db_snapshot_identifier(&snapshots[0])
        .send()
        .await
        .expect("DeleteDBSnapshot");
    assert!(tagged_resources(&rds, &request_id).await.is_empty());
    network.delete().await;
}
