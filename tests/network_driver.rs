//! The aws-network driver in process against the emulator at
//! `AWS_ENDPOINT_URL` (moto's EC2 and CloudWatch Logs): start, poll until
//! done, the outputs and what they name, a second start that makes
//! nothing new, compensation until done, and nothing tagged with the
//! request left in EC2 or CloudWatch Logs.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::{Filter, NatGatewayState, Tag};
use pao::actions::driver::{Driver, Progress, Undone, REQUEST_TAG};
use pao::actions::memory::{Fixture, MemoryJournal};
use pao::catalog::item::ActionType;
use pao::drivers::network::{FlowLogSettings, NetworkDriver};
use pao_integration::env;
use serde_json::{json, Map, Value};

struct Emulator {
    ec2: aws_sdk_ec2::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
}

impl Emulator {
    async fn connect() -> Self {
        env("AWS_ENDPOINT_URL");
        let sdk = pao::aws::sdk_config().await;
        Self {
            ec2: aws_sdk_ec2::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
        }
    }

    fn driver(&self) -> NetworkDriver {
        NetworkDriver::new(
            self.ec2.clone(),
            self.logs.clone(),
            FlowLogSettings {
                role_arn: "arn:aws:iam::123456789012:role/pao-local-VpcFlowLogsRole".to_string(),
                retention_days: 30,
            },
        )
    }

    /// Every EC2 resource and log group tagged with request `id`, as
    /// `kind id` (moto ignores some tag filters: checked here again).
    async fn tagged(&self, id: &str) -> BTreeSet<String> {
        let by_request = || {
            Filter::builder()
                .name(format!("tag:{REQUEST_TAG}"))
                .values(id)
                .build()
        };
        let ours = |tags: &[Tag]| {
            tags.iter()
                .any(|t| t.key() == Some(REQUEST_TAG) && t.value() == Some(id))
        };
        let mut found = BTreeSet::new();
        let ec2 = &self.ec2;
        for vpc in ec2
            .describe_vpcs()
            .filters(by_request())
            .send()
            .await
            .unwrap()
            .vpcs()
        {
            if ours(vpc.tags()) {
                found.insert(format!("vpc {}", vpc.vpc_id().unwrap()));
            }
        }
        for subnet in ec2
            .describe_subnets()
            .filters(by_request())
            .send()
            .await
            .unwrap()
            .subnets()
        {
            if ours(subnet.tags()) {
                found.insert(format!("subnet {}", subnet.subnet_id().unwrap()));
            }
        }
        for gateway in ec2
            .describe_internet_gateways()
            .filters(by_request())
            .send()
            .await
            .unwrap()
            .internet_gateways()
        {
            if ours(gateway.tags()) {
                found.insert(format!(
                    "internet-gateway {}",
                    gateway.internet_gateway_id().unwrap()
                ));
            }
        }
        for table in ec2
            .describe_route_tables()
            .filters(by_request())
            .send()
            .await
            .unwrap()
            .route_tables()
        {
            if ours(table.tags()) {
                found.insert(format!("route-table {}", table.route_table_id().unwrap()));
            }
        }
        for group in ec2
            .describe_security_groups()
            .filters(by_request())
            .send()
            .await
            .unwrap()
            .security_groups()
        {
            if ours(group.tags()) {
                found.insert(format!("security-group {}", group.group_id().unwrap()));
            }
        }
        for address in ec2
            .describe_addresses()
            .filters(by_request())
            .send()
            .await
            .unwrap()
            .addresses()
        {
            if ours(address.tags()) {
                found.insert(format!("elastic-ip {}", address.allocation_id().unwrap()));
            }
        }
        for nat in ec2
            .describe_nat_gateways()
            .send()
            .await
            .unwrap()
            .nat_gateways()
        {
            let gone = matches!(nat.state(), Some(NatGatewayState::Deleted));
            if ours(nat.tags()) && !gone {
                found.insert(format!("nat-gateway {}", nat.nat_gateway_id().unwrap()));
            }
        }
        for log in ec2
            .describe_flow_logs()
            .filter(by_request())
            .send()
            .await
            .unwrap()
            .flow_logs()
        {
            if ours(log.tags()) {
                found.insert(format!("flow-log {}", log.flow_log_id().unwrap()));
            }
        }
        let groups = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix("pao/vpc-flow-logs/")
            .send()
            .await
            .unwrap();
        for group in groups.log_groups() {
            let name = group.log_group_name().unwrap();
            if name.contains(id) {
                found.insert(format!("log-group {name}"));
            }
        }
        found
    }
}

fn fixture(id: &str, config: Value) -> Fixture {
    Fixture::new(
        id,
        "eks-app-stack",
        ActionType::AwsNetwork,
        "network",
        config,
    )
}

/// Starts, then polls until done, as the lifecycle would.
async fn run(
    driver: &NetworkDriver,
    fixture: &Fixture,
    journal: &MemoryJournal,
) -> Map<String, Value> {
    let mut progress = driver
        .start(&fixture.step(journal, &journal.resources()))
        .await
        .expect("start");
    for _ in 0..20 {
        match progress {
            Progress::Done(outputs) => return outputs.values,
            Progress::Wait { .. } => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                progress = driver
                    .poll(&fixture.step(journal, &journal.resources()))
                    .await
                    .expect("poll");
            }
        }
    }
    panic!("not done after 20 polls: {progress:?}");
}

async fn compensate(driver: &NetworkDriver, fixture: &Fixture, journal: &MemoryJournal) -> String {
    for _ in 0..20 {
        match driver
            .compensate(&fixture.step(journal, &journal.resources()))
            .await
            .expect("compensate")
        {
            Undone::Done(described) => return described,
            Undone::Wait { .. } => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            Undone::Kept(reason) => panic!("kept: {reason}"),
        }
    }
    panic!("compensation not done after 20 calls");
}

fn ids(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_network_is_made_once_and_deleted_completely() {
    let emulator = Emulator::connect().await;
    let driver = emulator.driver();
    let id = uuid::Uuid::new_v4().to_string();
    let fixture = fixture(
        &id,
        json!({
            "cidr_block": "10.42.0.0/16",
            "availability_zones": 2,
            "public_subnets": true,
            "nat_gateway": "per-az",
            "flow_logs": true,
            "tags": {"app": "orders", "environment": "test"},
        }),
    );
    let journal = MemoryJournal::default();
    let outputs = run(&driver, &fixture, &journal).await;

    let vpc = outputs["vpc_id"].as_str().unwrap().to_string();
    let public = ids(&outputs["public_subnet_ids"]);
    let private = ids(&outputs["private_subnet_ids"]);
    let all = ids(&outputs["subnet_ids"]);
    assert_eq!(public.len(), 2);
    assert_eq!(private.len(), 2);
    assert_eq!(all, [public.clone(), private.clone()].concat());
    let cluster = outputs["security_group_id"].as_str().unwrap().to_string();
    let database = outputs["database_security_group_id"]
        .as_str()
        .unwrap()
        .to_string();

    // The subnets are carved as planned, in the first two zones.
    let subnets = emulator
        .ec2
        .describe_subnets()
        .set_subnet_ids(Some(all.clone()))
        .send()
        .await
        .unwrap();
    let mut carved: Vec<(String, String, String)> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.subnet_id().unwrap().to_string(),
                s.cidr_block().unwrap().to_string(),
                s.availability_zone().unwrap().to_string(),
            )
        })
        .collect();
    carved.sort_by_key(|(id, _, _)| all.iter().position(|a| a == id));
    assert_eq!(
        carved
            .iter()
            .map(|(_, cidr, zone)| format!("{cidr} {zone}"))
            .collect::<Vec<_>>(),
        [
            "10.42.0.0/18 us-east-1a",
            "10.42.64.0/18 us-east-1b",
            "10.42.128.0/18 us-east-1a",
            "10.42.192.0/18 us-east-1b",
        ]
    );
    assert!(subnets
        .subnets()
        .iter()
        .all(|s| s.vpc_id() == Some(vpc.as_str())));

    // The database admits PostgreSQL from the cluster's group only.
    let rules = emulator
        .ec2
        .describe_security_group_rules()
        .filters(Filter::builder().name("group-id").values(&database).build())
        .send()
        .await
        .unwrap();
    let ingress: Vec<_> = rules
        .security_group_rules()
        .iter()
        .filter(|r| r.is_egress() == Some(false))
        .collect();
    assert_eq!(ingress.len(), 1, "{ingress:?}");
    assert_eq!(ingress[0].ip_protocol(), Some("tcp"));
    assert_eq!(ingress[0].from_port(), Some(5432));
    assert_eq!(
        ingress[0]
            .referenced_group_info()
            .and_then(|r| r.group_id()),
        Some(cluster.as_str())
    );

    // Each private subnet routes through the NAT gateway of its zone; the
    // public ones through the internet gateway.
    let tables = emulator
        .ec2
        .describe_route_tables()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    let default_route = |subnet: &str| {
        tables
            .route_tables()
            .iter()
            .find(|t| {
                t.associations()
                    .iter()
                    .any(|a| a.subnet_id() == Some(subnet))
            })
            .and_then(|t| {
                t.routes()
                    .iter()
                    .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
                    .map(|r| {
                        r.nat_gateway_id()
                            .or(r.gateway_id())
                            .unwrap_or("")
                            .to_string()
                    })
            })
            .unwrap_or_default()
    };
    for subnet in &public {
        assert!(default_route(subnet).starts_with("igw-"), "{subnet}");
    }
    let nats: BTreeSet<String> = private.iter().map(|s| default_route(s)).collect();
    assert_eq!(nats.len(), 2, "one NAT gateway per zone: {nats:?}");
    assert!(nats.iter().all(|n| n.starts_with("nat-")));

    // The flow log goes to the step's log group.
    let logs = emulator
        .ec2
        .describe_flow_logs()
        .filter(Filter::builder().name("resource-id").values(&vpc).build())
        .send()
        .await
        .unwrap();
    assert_eq!(logs.flow_logs().len(), 1);
    assert_eq!(
        logs.flow_logs()[0].log_group_name(),
        Some(format!("pao/vpc-flow-logs/pao-{id}-network").as_str())
    );

    // Everything tagged with the request is in the ledger.
    let made = emulator.tagged(&id).await;
    let ledger = journal.resources();
    let kinds = |kind: &str| ledger.iter().filter(|r| r.kind == kind).count();
    assert_eq!(kinds("ec2:vpc"), 1);
    assert_eq!(kinds("ec2:subnet"), 4);
    assert_eq!(kinds("ec2:nat-gateway"), 2);
    assert_eq!(kinds("ec2:elastic-ip"), 2);
    assert_eq!(kinds("ec2:route-table"), 3);
    assert_eq!(kinds("ec2:security-group"), 2);
    assert_eq!(kinds("ec2:security-group-rule"), 2);
    assert_eq!(kinds("ec2:flow-log"), 1);
    assert_eq!(kinds("logs:log-group"), 1);
    for thing in &made {
        let id = thing.split(' ').nth(1).unwrap();
        assert!(
            ledger.iter().any(|r| r.id == id),
            "{thing} is not in the ledger"
        );
    }
    assert_eq!(made.len(), 1 + 4 + 1 + 3 + 2 + 2 + 2 + 1 + 1, "{made:?}");

    // A second start makes nothing new and answers the same.
    let again = driver
        .start(&fixture.step(&journal, &journal.resources()))
        .await
        .unwrap();
    match again {
        Progress::Done(second) => assert_eq!(second.values, outputs),
        other => panic!("{other:?}"),
    }
    assert_eq!(emulator.tagged(&id).await, made);
    assert_eq!(journal.resources().len(), ledger.len());

    let described = compensate(&driver, &fixture, &journal).await;
    assert!(
        described.starts_with(&format!("deleted VPC {vpc}, 4 subnets")),
        "{described}"
    );
    let left = emulator.tagged(&id).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    // Compensating again finds everything gone, which is done.
    compensate(&driver, &fixture, &journal).await;
}

#[tokio::test]
async fn a_private_only_network_without_nat_or_flow_logs() {
    let emulator = Emulator::connect().await;
    let driver = emulator.driver();
    let id = uuid::Uuid::new_v4().to_string();
    let fixture = fixture(
        &id,
        json!({
            "cidr_block": "10.7.0.0/24",
            "availability_zones": 3,
            "public_subnets": false,
            "nat_gateway": "none",
            "flow_logs": false,
        }),
    );
    let journal = MemoryJournal::default();
    let outputs = run(&driver, &fixture, &journal).await;
    assert_eq!(outputs["public_subnet_ids"], json!([]));
    assert_eq!(ids(&outputs["private_subnet_ids"]).len(), 3);
    let made = emulator.tagged(&id).await;
    // VPC, 3 subnets, 2 security groups.
    assert_eq!(made.len(), 6, "{made:?}");
    compensate(&driver, &fixture, &journal).await;
    assert!(emulator.tagged(&id).await.is_empty());
}
