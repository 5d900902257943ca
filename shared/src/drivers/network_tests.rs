use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatchlogs::operation as logs_op;
use aws_sdk_cloudwatchlogs::Client as Logs;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation as op;
use aws_sdk_ec2::types::{
    Address, AvailabilityZone, FlowLog, InternetGateway, InternetGatewayAttachment,
    NatGateway as Nat_, ReferencedSecurityGroup, Route, RouteTable, RouteTableAssociation,
    SecurityGroup, Subnet, UnsuccessfulItem, UnsuccessfulItemError, Vpc,
};
use aws_sdk_ec2::Client as Ec2;
use aws_smithy_mocks::{
    create_mock_http_client, mock, MockResponseInterceptor, Rule as Mock, RuleMode,
};
use aws_smithy_types::body::SdkBody;
use serde_json::json;

use super::*;
use crate::actions::memory::{Fixture, MemoryJournal};
use crate::catalog::item::ActionType;
use crate::requests::RequestStatus;

const REQUEST: &str = "req-1";
const ACTION: &str = "network";

// ------------------------------------------------------------------ pure parts

fn net(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn texts(nets: &[Ipv4Net]) -> Vec<String> {
    nets.iter().map(ToString::to_string).collect()
}

#[test]
fn carve_splits_into_equal_blocks_in_address_order() {
    assert_eq!(
        texts(&carve(net("10.42.0.0/16"), 4).unwrap()),
        [
            "10.42.0.0/18",
            "10.42.64.0/18",
            "10.42.128.0/18",
            "10.42.192.0/18"
        ]
    );
    // Rounded up to the next power of two: 6 subnets are /19s.
    let six = carve(net("10.42.0.0/16"), 6).unwrap();
    assert_eq!(six.len(), 6);
    assert!(six.iter().all(|b| b.prefix_len() == 19));
    assert_eq!(six[5].to_string(), "10.42.160.0/19");
    assert_eq!(
        texts(&carve(net("10.0.0.0/20"), 1).unwrap()),
        ["10.0.0.0/20"]
    );
}

#[test]
fn carve_refuses_blocks_smaller_than_a_slash_28() {
    assert_eq!(
        texts(&carve(net("10.0.0.0/26"), 4).unwrap()),
        [
            "10.0.0.0/28",
            "10.0.0.16/28",
            "10.0.0.32/28",
            "10.0.0.48/28"
        ]
    );
    let err = carve(net("10.0.0.0/26"), 5).unwrap_err();
    assert!(err.contains("too small for 5 subnets"), "{err}");
    assert!(err.contains("/29"), "{err}");
    assert!(carve(net("10.0.0.0/16"), 0).is_err());
}

#[test]
fn layout_puts_public_blocks_first_then_private_ones() {
    let zones = vec!["us-east-1a".to_string(), "us-east-1b".to_string()];
    let plan = layout(net("10.42.0.0/16"), &zones, true).unwrap();
    assert_eq!(plan[0].letter, "a");
    assert_eq!(plan[0].public, Some(net("10.42.0.0/18")));
    assert_eq!(plan[1].public, Some(net("10.42.64.0/18")));
    assert_eq!(plan[0].private, net("10.42.128.0/18"));
    assert_eq!(plan[1].private, net("10.42.192.0/18"));
    // Without public subnets the private ones take the whole block.
    let plan = layout(net("10.42.0.0/16"), &zones, false).unwrap();
    assert_eq!(plan[0].public, None);
    assert_eq!(plan[0].private, net("10.42.0.0/17"));
    assert_eq!(plan[1].private, net("10.42.128.0/17"));
}

#[test]
fn letters_come_from_zone_names_or_positions() {
    let names = |z: &[&str]| letters(&z.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(names(&["eu-west-3a", "eu-west-3c"]), ["a", "c"]);
    assert_eq!(names(&["zone1", "zone2"]), ["a", "b"]);
}

fn config(value: Value) -> Result<(Ipv4Net, usize), ActionError> {
    serde_json::from_value::<Config>(value)
        .map_err(|err| ActionError::Fatal(err.to_string()))?
        .checked()
}

#[test]
fn config_is_checked_before_anything_is_made() {
    assert_eq!(
        config(json!({"cidr_block": "10.42.0.0/16"})).unwrap(),
        (net("10.42.0.0/16"), 2)
    );
    // A form's values rendered into strings read as well.
    assert_eq!(
        config(
            json!({"cidr_block": "10.1.0.0/20", "availability_zones": "3", "flow_logs": "false"})
        )
        .unwrap(),
        (net("10.1.0.0/20"), 3)
    );
    let fatal = |value| match config(value) {
        Err(ActionError::Fatal(message)) => message,
        other => panic!("{other:?}"),
    };
    assert!(fatal(json!({"cidr_block": "10.42.1.0/16"})).contains("host bits"));
    assert!(fatal(json!({"cidr_block": "10.0.0.0/8"})).contains("/16 to a /28"));
    assert!(fatal(json!({"cidr_block": "ten"})).contains("not an IPv4 CIDR"));
    assert!(
        fatal(json!({"cidr_block": "10.0.0.0/16", "availability_zones": 7}))
            .contains("between 1 and 6")
    );
    assert!(
        fatal(json!({"cidr_block": "10.0.0.0/16", "public_subnets": false}))
            .contains("public_subnets: true")
    );
    assert!(config(json!({"cidr_block": "10.0.0.0/16", "nat_gateway": "both"})).is_err());
    assert!(config(json!({"cidr_block": "10.0.0.0/16", "extra": 1})).is_err());
}

#[test]
fn flow_log_settings_need_the_role_and_a_valid_retention() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        Env(move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    assert_eq!(
        FlowLogSettings::read(&env(&[])),
        Err(ConfigError::Missing(FlowLogSettings::ROLE_ARN))
    );
    let settings = FlowLogSettings::read(&env(&[(
        FlowLogSettings::ROLE_ARN,
        "arn:aws:iam::1:role/r",
    )]))
    .unwrap();
    assert_eq!(settings.retention_days, 30);
    assert!(FlowLogSettings::read(&env(&[
        (FlowLogSettings::ROLE_ARN, "arn:aws:iam::1:role/r"),
        (FlowLogSettings::RETENTION_DAYS, "31"),
    ]))
    .is_err());
}

#[test]
fn client_tokens_are_stable_and_fit_ec2s_limit() {
    let fixture = fixture(json!({"cidr_block": "10.42.0.0/16"}));
    let journal = MemoryJournal::default();
    let step = fixture.step(&journal, &[]);
    let token = client_token(&step, "nat-a", 0);
    assert_eq!(token.len(), 64);
    assert_eq!(token, client_token(&step, "nat-a", 0));
    assert_ne!(token, client_token(&step, "nat-b", 0));
    assert_ne!(token, client_token(&step, "nat-a", 1));
}

// ------------------------------------------------------------------ a mocked AWS

fn fixture(config: Value) -> Fixture {
    Fixture::new(
        REQUEST,
        "eks-app-stack",
        ActionType::AwsNetwork,
        ACTION,
        config,
    )
}

fn standard() -> Value {
    json!({
        "cidr_block": "10.42.0.0/16",
        "availability_zones": 2,
        "nat_gateway": "single",
        "flow_logs": true,
        "tags": {"app": "orders", "pao:request-id": "spoofed"},
    })
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The tags a resource of the fixture's step carries.
fn ours_tagged(part: &str) -> Vec<Tag> {
    vec![
        tag(REQUEST_TAG, REQUEST),
        tag(ACTION_TAG, ACTION),
        tag(PART_TAG, part),
    ]
}

fn part_in(specs: &[TagSpecification]) -> String {
    specs
        .iter()
        .flat_map(|s| s.tags())
        .find(|t| t.key() == Some(PART_TAG))
        .and_then(|t| t.value())
        .unwrap_or("?")
        .to_string()
}

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(format!("AWS says {code}"))
        .build()
}

/// What AWS holds, as mocked rules by operation, and the order of the
/// calls that change something.
struct World {
    ec2: BTreeMap<&'static str, Mock>,
    logs: BTreeMap<&'static str, Mock>,
    calls: Arc<Mutex<Vec<String>>>,
}

fn note(calls: &Arc<Mutex<Vec<String>>>, call: String) {
    calls.lock().unwrap().push(call);
}

impl World {
    /// A region with three zones (listed out of order) and nothing of
    /// the step's; every create succeeds; new NAT gateways are `nat`.
    fn empty(nat: NatGatewayState) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut ec2 = BTreeMap::new();
        let c = calls.clone();
        ec2.insert(
            "DescribeAvailabilityZones",
            mock!(Ec2::describe_availability_zones).then_output(|| {
                op::describe_availability_zones::DescribeAvailabilityZonesOutput::builder()
                    .set_availability_zones(Some(
                        ["us-east-1c", "us-east-1a", "us-east-1b"]
                            .iter()
                            .map(|z| AvailabilityZone::builder().zone_name(*z).build())
                            .collect(),
                    ))
                    .build()
            }),
        );
        ec2.insert(
            "DescribeVpcs",
            mock!(Ec2::describe_vpcs)
                .then_output(|| op::describe_vpcs::DescribeVpcsOutput::builder().build()),
        );
        ec2.insert(
            "CreateVpc",
            mock!(Ec2::create_vpc).then_compute_output(move |req| {
                note(&c, format!("CreateVpc {}", req.cidr_block().unwrap_or("")));
                op::create_vpc::CreateVpcOutput::builder()
                    .vpc(
                        Vpc::builder()
                            .vpc_id("vpc-1")
                            .state(VpcState::Available)
                            .build(),
                    )
                    .build()
            }),
        );
        ec2.insert(
            "ModifyVpcAttribute",
            mock!(Ec2::modify_vpc_attribute)
                .match_requests(|req| {
                    req.enable_dns_hostnames().and_then(|v| v.value()) == Some(true)
                })
                .then_output(|| {
                    op::modify_vpc_attribute::ModifyVpcAttributeOutput::builder().build()
                }),
        );
        ec2.insert(
            "DescribeSubnets",
            mock!(Ec2::describe_subnets)
                .then_output(|| op::describe_subnets::DescribeSubnetsOutput::builder().build()),
        );
        let c = calls.clone();
        ec2.insert(
            "CreateSubnet",
            mock!(Ec2::create_subnet).then_compute_output(move |req| {
                let part = part_in(req.tag_specifications());
                note(
                    &c,
                    format!(
                        "CreateSubnet {part} {} {}",
                        req.cidr_block().unwrap_or(""),
                        req.availability_zone().unwrap_or("")
                    ),
                );
                op::create_subnet::CreateSubnetOutput::builder()
                    .subnet(
                        Subnet::builder()
                            .subnet_id(format!("subnet-{part}"))
                            .build(),
                    )
                    .build()
            }),
        );
        ec2.insert(
            "DescribeInternetGateways",
            mock!(Ec2::describe_internet_gateways).then_output(|| {
                op::describe_internet_gateways::DescribeInternetGatewaysOutput::builder().build()
            }),
        );
        let c = calls.clone();
        ec2.insert(
            "CreateInternetGateway",
            mock!(Ec2::create_internet_gateway).then_compute_output(move |_| {
                note(&c, "CreateInternetGateway".to_string());
                op::create_internet_gateway::CreateInternetGatewayOutput::builder()
                    .internet_gateway(
                        InternetGateway::builder()
                            .internet_gateway_id("igw-1")
                            .build(),
                    )
                    .build()
            }),
        );
        let c = calls.clone();
        ec2.insert(
            "AttachInternetGateway",
            mock!(Ec2::attach_internet_gateway).then_compute_output(move |req| {
                note(
                    &c,
                    format!(
                        "AttachInternetGateway {} {}",
                        req.internet_gateway_id().unwrap_or(""),
                        req.vpc_id().unwrap_or("")
                    ),
                );
                op::attach_internet_gateway::AttachInternetGatewayOutput::builder().build()
            }),
        );
        ec2.insert(
            "DescribeRouteTables",
            mock!(Ec2::describe_route_tables).then_output(|| {
                op::describe_route_tables::DescribeRouteTablesOutput::builder().build()
            }),
        );
        let c = calls.clone();
        ec2.insert(
            "CreateRouteTable",
            mock!(Ec2::create_route_table).then_compute_output(move |req| {
                let part = part_in(req.tag_specifications());
                note(&c, format!("CreateRouteTable {part}"));
                op::create_route_table::CreateRouteTableOutput::builder()
                    .route_table(
                        RouteTable::builder()
                            .route_table_id(format!("rtb-{part}"))
                            .build(),
                    )
                    .build()
            }),
        );
        let c = calls.clone();
        ec2.insert(
            "CreateRoute",
            mock!(Ec2::create_route).then_compute_output(move |req| {
                note(
                    &c,
                    format!(
                        "CreateRoute {} {} -> {}",
                        req.route_table_id().unwrap_or(""),
                        req.destination_cidr_block().unwrap_or(""),
                        req.gateway_id().or(req.nat_gateway_id()).unwrap_or("")
                    ),
                );
                op::create_route::CreateRouteOutput::builder()
                    .r#return(true)
                    .build()
            }),
        );
        let c = calls.clone();
        ec2.insert(
            "AssociateRouteTable",
            mock!(Ec2::associate_route_table).then_compute_output(move |req| {
                let subnet = req.subnet_id().unwrap_or("");
                note(
                    &c,
                    format!(
                        "AssociateRouteTable {} {subnet}",
                        req.route_table_id().unwrap_or("")
                    ),
                );
                op::associate_route_table::AssociateRouteTableOutput::builder()
                    .association_id(format!("rtbassoc-{subnet}"))
                    .build()
            }),
        );
        ec2.insert(
            "DescribeSecurityGroups",
            mock!(Ec2::describe_security_groups).then_output(|| {
                op::describe_security_groups::DescribeSecurityGroupsOutput::builder().build()
            }),
        );
        let c = calls.clone();
        ec2.insert(
            "CreateSecurityGroup",
            mock!(Ec2::create_security_group).then_compute_output(move |req| {
                let part = part_in(req.tag_specifications());
                note(
                    &c,
                    format!("CreateSecurityGroup {}", req.group_name().unwrap_or("")),
                );
                op::create_security_group::CreateSecurityGroupOutput::builder()
                    .group_id(format!("sg-{part}"))
                    .build()
            }),
        );
        ec2.insert(
            "DescribeSecurityGroupRules",
            mock!(Ec2::describe_security_group_rules).then_output(|| {
                op::describe_security_group_rules::DescribeSecurityGroupRulesOutput::builder()
                    .build()
            }),
        );
        let c = calls.clone();
        ec2.insert(
            "AuthorizeSecurityGroupIngress",
            mock!(Ec2::authorize_security_group_ingress).then_compute_output(move |req| {
                let group = req.group_id().unwrap_or("").to_string();
                let permission = &req.ip_permissions()[0];
                let source = permission.user_id_group_pairs()[0].group_id().unwrap_or("");
                note(
                    &c,
                    format!(
                        "AuthorizeSecurityGroupIngress {group} {} {:?} from {source}",
                        permission.ip_protocol().unwrap_or(""),
                        permission.from_port()
                    ),
                );
                op::authorize_security_group_ingress::AuthorizeSecurityGroupIngressOutput::builder()
                    .security_group_rules(
                        SecurityGroupRule::builder()
                            .security_group_rule_id(format!("sgr-{group}"))
                            .build(),
                    )
                    .build()
            }),
        );
        ec2.insert(
            "DescribeFlowLogs",
            mock!(Ec2::describe_flow_logs)
                .then_output(|| op::describe_flow_logs::DescribeFlowLogsOutput::builder().build()),
        );
        let c = calls.clone();
        ec2.insert(
            "CreateFlowLogs",
            mock!(Ec2::create_flow_logs).then_compute_output(move |req| {
                note(
                    &c,
                    format!(
                        "CreateFlowLogs {} {} {}",
                        req.resource_ids().join(","),
                        req.log_group_name().unwrap_or(""),
                        req.deliver_logs_permission_arn().unwrap_or("")
                    ),
                );
                op::create_flow_logs::CreateFlowLogsOutput::builder()
                    .flow_log_ids("fl-1")
                    .build()
            }),
        );
        ec2.insert(
            "DescribeAddresses",
            mock!(Ec2::describe_addresses)
                .then_output(|| op::describe_addresses::DescribeAddressesOutput::builder().build()),
        );
        let c = calls.clone();
        ec2.insert(
            "AllocateAddress",
            mock!(Ec2::allocate_address).then_compute_output(move |req| {
                let part = part_in(req.tag_specifications());
                note(&c, format!("AllocateAddress {part}"));
                op::allocate_address::AllocateAddressOutput::builder()
                    .allocation_id(format!("eipalloc-{part}"))
                    .build()
            }),
        );
        ec2.insert(
            "DescribeNatGateways",
            mock!(Ec2::describe_nat_gateways).then_output(|| {
                op::describe_nat_gateways::DescribeNatGatewaysOutput::builder().build()
            }),
        );
        let c = calls.clone();
        ec2.insert(
            "CreateNatGateway",
            mock!(Ec2::create_nat_gateway).then_compute_output(move |req| {
                let part = part_in(req.tag_specifications());
                note(
                    &c,
                    format!(
                        "CreateNatGateway {part} {} {} token={}",
                        req.subnet_id().unwrap_or(""),
                        req.allocation_id().unwrap_or(""),
                        req.client_token().map_or(0, str::len)
                    ),
                );
                op::create_nat_gateway::CreateNatGatewayOutput::builder()
                    .nat_gateway(
                        Nat_::builder()
                            .nat_gateway_id(format!("nat-{part}"))
                            .state(nat.clone())
                            .build(),
                    )
                    .build()
            }),
        );
        let mut logs = BTreeMap::new();
        let c = calls.clone();
        logs.insert(
            "CreateLogGroup",
            mock!(Logs::create_log_group).then_compute_output(move |req| {
                let mut tags: Vec<String> = req
                    .tags()
                    .map(|t| t.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                tags.sort();
                note(
                    &c,
                    format!(
                        "CreateLogGroup {} [{}]",
                        req.log_group_name().unwrap_or(""),
                        tags.join(" ")
                    ),
                );
                logs_op::create_log_group::CreateLogGroupOutput::builder().build()
            }),
        );
        let c = calls.clone();
        logs.insert(
            "PutRetentionPolicy",
            mock!(Logs::put_retention_policy).then_compute_output(move |req| {
                note(
                    &c,
                    format!("PutRetentionPolicy {:?}", req.retention_in_days()),
                );
                logs_op::put_retention_policy::PutRetentionPolicyOutput::builder().build()
            }),
        );
        Self { ec2, logs, calls }
    }

    /// Everything a finished start made, found by its tags.
    fn built(nat: NatGatewayState) -> Self {
        let vpc = || {
            Vpc::builder()
                .vpc_id("vpc-1")
                .state(VpcState::Available)
                .set_tags(Some(ours_tagged(VPC)))
                .build()
        };
        let nat_ = nat.clone();
        Self::empty(nat)
            .with(
                "DescribeVpcs",
                mock!(Ec2::describe_vpcs).then_output(move || {
                    op::describe_vpcs::DescribeVpcsOutput::builder()
                        .vpcs(vpc())
                        .build()
                }),
            )
            .with(
                "DescribeSubnets",
                mock!(Ec2::describe_subnets).then_output(|| {
                    op::describe_subnets::DescribeSubnetsOutput::builder()
                        .set_subnets(Some(
                            ["public-a", "public-b", "private-a", "private-b"]
                                .iter()
                                .map(|part| {
                                    Subnet::builder()
                                        .subnet_id(format!("subnet-{part}"))
                                        .set_tags(Some(ours_tagged(part)))
                                        .build()
                                })
                                .collect(),
                        ))
                        .build()
                }),
            )
            .with(
                "DescribeInternetGateways",
                mock!(Ec2::describe_internet_gateways).then_output(|| {
                    op::describe_internet_gateways::DescribeInternetGatewaysOutput::builder()
                        .internet_gateways(
                            InternetGateway::builder()
                                .internet_gateway_id("igw-1")
                                .attachments(
                                    InternetGatewayAttachment::builder().vpc_id("vpc-1").build(),
                                )
                                .set_tags(Some(ours_tagged(GATEWAY)))
                                .build(),
                        )
                        .build()
                }),
            )
            .with(
                "DescribeRouteTables",
                mock!(Ec2::describe_route_tables).then_output(|| {
                    op::describe_route_tables::DescribeRouteTablesOutput::builder()
                        .route_tables(
                            RouteTable::builder()
                                .route_table_id("rtb-public")
                                .routes(
                                    Route::builder()
                                        .destination_cidr_block("10.42.0.0/16")
                                        .build(),
                                )
                                .routes(
                                    Route::builder()
                                        .destination_cidr_block(ANYWHERE)
                                        .gateway_id("igw-1")
                                        .build(),
                                )
                                .associations(
                                    RouteTableAssociation::builder()
                                        .route_table_association_id("rtbassoc-subnet-public-a")
                                        .subnet_id("subnet-public-a")
                                        .build(),
                                )
                                .associations(
                                    RouteTableAssociation::builder()
                                        .route_table_association_id("rtbassoc-subnet-public-b")
                                        .subnet_id("subnet-public-b")
                                        .build(),
                                )
                                .set_tags(Some(ours_tagged(PUBLIC)))
                                .build(),
                        )
                        .build()
                }),
            )
            .with(
                "DescribeSecurityGroups",
                mock!(Ec2::describe_security_groups).then_output(|| {
                    op::describe_security_groups::DescribeSecurityGroupsOutput::builder()
                        .security_groups(
                            SecurityGroup::builder()
                                .group_id("sg-cluster")
                                .set_tags(Some(ours_tagged(CLUSTER)))
                                .build(),
                        )
                        .security_groups(
                            SecurityGroup::builder()
                                .group_id("sg-database")
                                .set_tags(Some(ours_tagged(DATABASE)))
                                .build(),
                        )
                        .build()
                }),
            )
            .with(
                "DescribeSecurityGroupRules",
                mock!(Ec2::describe_security_group_rules).then_output(|| {
                    let rule = |id: &str, group: &str, protocol: &str, port: i32| {
                        SecurityGroupRule::builder()
                            .security_group_rule_id(id)
                            .group_id(group)
                            .is_egress(false)
                            .ip_protocol(protocol)
                            .from_port(port)
                            .to_port(port)
                            .referenced_group_info(
                                ReferencedSecurityGroup::builder()
                                    .group_id("sg-cluster")
                                    .build(),
                            )
                            .build()
                    };
                    op::describe_security_group_rules::DescribeSecurityGroupRulesOutput::builder()
                        .security_group_rules(rule("sgr-self", "sg-cluster", "-1", -1))
                        .security_group_rules(rule("sgr-pg", "sg-database", "tcp", 5432))
                        // AWS's default egress rule is not the step's.
                        .security_group_rules(
                            SecurityGroupRule::builder()
                                .security_group_rule_id("sgr-egress")
                                .group_id("sg-database")
                                .is_egress(true)
                                .ip_protocol("-1")
                                .build(),
                        )
                        .build()
                }),
            )
            .with(
                "DescribeFlowLogs",
                mock!(Ec2::describe_flow_logs).then_output(|| {
                    op::describe_flow_logs::DescribeFlowLogsOutput::builder()
                        .flow_logs(
                            FlowLog::builder()
                                .flow_log_id("fl-1")
                                .set_tags(Some(ours_tagged(FLOW_LOGS)))
                                .build(),
                        )
                        .build()
                }),
            )
            .with(
                "DescribeAddresses",
                mock!(Ec2::describe_addresses).then_output(|| {
                    op::describe_addresses::DescribeAddressesOutput::builder()
                        .addresses(
                            Address::builder()
                                .allocation_id("eipalloc-nat-a")
                                .set_tags(Some(ours_tagged("nat-a")))
                                .build(),
                        )
                        // Another request's address is not the step's.
                        .addresses(
                            Address::builder()
                                .allocation_id("eipalloc-other")
                                .tags(tag(REQUEST_TAG, "req-2"))
                                .tags(tag(ACTION_TAG, ACTION))
                                .tags(tag(PART_TAG, "nat-a"))
                                .build(),
                        )
                        .build()
                }),
            )
            .with(
                "DescribeNatGateways",
                mock!(Ec2::describe_nat_gateways).then_output(move || {
                    op::describe_nat_gateways::DescribeNatGatewaysOutput::builder()
                        .nat_gateways(
                            Nat_::builder()
                                .nat_gateway_id("nat-nat-a")
                                .state(nat_.clone())
                                .failure_code("Gateway.NotAttached")
                                .failure_message("Network vpc-1 has no Internet gateway attached")
                                .set_tags(Some(ours_tagged("nat-a")))
                                .build(),
                        )
                        // A gateway an earlier run lost is not looked at.
                        .nat_gateways(
                            Nat_::builder()
                                .nat_gateway_id("nat-old")
                                .state(NatGatewayState::Deleted)
                                .set_tags(Some(ours_tagged("nat-a")))
                                .build(),
                        )
                        .build()
                }),
            )
    }

    fn with(mut self, name: &'static str, rule: Mock) -> Self {
        if self.ec2.contains_key(name) || !self.logs.contains_key(name) {
            self.ec2.insert(name, rule);
        } else {
            self.logs.insert(name, rule);
        }
        self
    }

    fn with_logs(mut self, name: &'static str, rule: Mock) -> Self {
        self.logs.insert(name, rule);
        self
    }

    fn driver(&self) -> NetworkDriver {
        let interceptor = |rules: &BTreeMap<&'static str, Mock>| {
            rules.values().fold(
                MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny),
                |interceptor, rule| interceptor.with_rule(rule),
            )
        };
        let ec2 = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .http_client(create_mock_http_client())
            .interceptor(interceptor(&self.ec2))
            .retry_config(RetryConfig::disabled())
            .build();
        let logs = aws_sdk_cloudwatchlogs::Config::builder()
            .behavior_version(aws_sdk_cloudwatchlogs::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatchlogs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .http_client(create_mock_http_client())
            .interceptor(interceptor(&self.logs))
            .retry_config(aws_sdk_cloudwatchlogs::config::retry::RetryConfig::disabled())
            .build();
        NetworkDriver::new(
            Ec2::from_conf(ec2),
            Logs::from_conf(logs),
            FlowLogSettings {
                role_arn: "arn:aws:iam::123456789012:role/flow-logs".to_string(),
                retention_days: 30,
            },
        )
    }

    fn count(&self, name: &str) -> usize {
        self.ec2
            .get(name)
            .or_else(|| self.logs.get(name))
            .map_or(0, Mock::num_calls)
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn ledger(journal: &MemoryJournal) -> Vec<String> {
    journal
        .resources()
        .iter()
        .map(|r| format!("{} {}", r.kind, r.id))
        .collect()
}

fn outputs(progress: Progress) -> Map<String, Value> {
    match progress {
        Progress::Done(outputs) => outputs.values,
        other => panic!("not done: {other:?}"),
    }
}

// ------------------------------------------------------------------ start

#[tokio::test]
async fn a_first_start_makes_everything_and_waits_for_the_nat_gateway() {
    let world = World::empty(NatGatewayState::Pending);
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    let progress = world
        .driver()
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert_eq!(
        progress,
        Progress::Wait {
            seconds: 30,
            waiting_for: "NAT gateway nat-nat-a to become available".to_string()
        }
    );
    let calls = world.calls();
    let group = "pao/vpc-flow-logs/pao-req-1-network";
    assert_eq!(
        calls,
        [
            "CreateVpc 10.42.0.0/16",
            // The first two zones in name order; public blocks first.
            "CreateSubnet public-a 10.42.0.0/18 us-east-1a",
            "CreateSubnet private-a 10.42.128.0/18 us-east-1a",
            "CreateSubnet public-b 10.42.64.0/18 us-east-1b",
            "CreateSubnet private-b 10.42.192.0/18 us-east-1b",
            "CreateInternetGateway",
            "AttachInternetGateway igw-1 vpc-1",
            "CreateRouteTable public",
            "CreateRoute rtb-public 0.0.0.0/0 -> igw-1",
            "AssociateRouteTable rtb-public subnet-public-a",
            "AssociateRouteTable rtb-public subnet-public-b",
            "CreateSecurityGroup pao-req-1-network-cluster",
            "CreateSecurityGroup pao-req-1-network-database",
            "AuthorizeSecurityGroupIngress sg-cluster -1 None from sg-cluster",
            "AuthorizeSecurityGroupIngress sg-database tcp Some(5432) from sg-cluster",
            &format!("CreateLogGroup {group} [Name=pao-req-1-network-flow-logs app=orders pao:action-id=network pao:item-id=eks-app-stack pao:part=flow-logs pao:request-id=req-1]"),
            "PutRetentionPolicy Some(30)",
            &format!("CreateFlowLogs vpc-1 {group} arn:aws:iam::123456789012:role/flow-logs"),
            "AllocateAddress nat-a",
            "CreateNatGateway nat-a subnet-public-a eipalloc-nat-a token=64",
        ]
    );
    assert_eq!(world.count("ModifyVpcAttribute"), 1);
    assert_eq!(
        ledger(&journal),
        [
            "ec2:vpc vpc-1",
            "ec2:subnet subnet-public-a",
            "ec2:subnet subnet-private-a",
            "ec2:subnet subnet-public-b",
            "ec2:subnet subnet-private-b",
            "ec2:internet-gateway igw-1",
            "ec2:route-table rtb-public",
            "ec2:route-table-association rtbassoc-subnet-public-a",
            "ec2:route-table-association rtbassoc-subnet-public-b",
            "ec2:security-group sg-cluster",
            "ec2:security-group sg-database",
            "ec2:security-group-rule sgr-sg-cluster",
            "ec2:security-group-rule sgr-sg-database",
            &format!("logs:log-group {group}"),
            "ec2:flow-log fl-1",
            "ec2:elastic-ip eipalloc-nat-a",
            "ec2:nat-gateway nat-nat-a",
        ]
    );
    let resources = journal.resources();
    let subnet = &resources[1];
    assert_eq!(subnet.detail("part"), Some("public-a"));
    assert_eq!(subnet.detail("zone"), Some("us-east-1a"));
    assert_eq!(resources[5].detail("vpc_id"), Some("vpc-1"));
    assert_eq!(resources[12].detail("group_id"), Some("sg-database"));
}

#[tokio::test]
async fn resources_are_tagged_at_creation_and_item_tags_cannot_spoof_paos() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let world = World::empty(NatGatewayState::Available).with(
        "CreateVpc",
        mock!(Ec2::create_vpc).then_compute_output(move |req| {
            let spec = &req.tag_specifications()[0];
            let mut tags: Vec<String> = spec
                .tags()
                .iter()
                .map(|t| format!("{}={}", t.key().unwrap_or(""), t.value().unwrap_or("")))
                .collect();
            tags.sort();
            s.lock()
                .unwrap()
                .push(format!("{:?} {}", spec.resource_type(), tags.join(" ")));
            op::create_vpc::CreateVpcOutput::builder()
                .vpc(
                    Vpc::builder()
                        .vpc_id("vpc-1")
                        .state(VpcState::Available)
                        .build(),
                )
                .build()
        }),
    );
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    world
        .driver()
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["Some(Vpc) Name=pao-req-1-network-vpc app=orders pao:action-id=network pao:item-id=eks-app-stack pao:part=vpc pao:request-id=req-1"]
    );
}

#[tokio::test]
async fn a_start_with_the_nat_gateway_available_finishes_with_the_outputs() {
    let world = World::empty(NatGatewayState::Available);
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    let values = outputs(
        world
            .driver()
            .start(&fixture.step(&journal, &[]))
            .await
            .unwrap(),
    );
    assert_eq!(
        Value::Object(values),
        json!({
            "vpc_id": "vpc-1",
            "subnet_ids": ["subnet-public-a", "subnet-public-b", "subnet-private-a", "subnet-private-b"],
            "public_subnet_ids": ["subnet-public-a", "subnet-public-b"],
            "private_subnet_ids": ["subnet-private-a", "subnet-private-b"],
            "security_group_id": "sg-cluster",
            "database_security_group_id": "sg-database",
        })
    );
    // Every output the catalog declares, and no other.
    let mut declared: Vec<&str> = ActionType::AwsNetwork.fixed_outputs().to_vec();
    declared.sort();
    let mut made: Vec<String> = outputs(
        world
            .driver()
            .start(&fixture.step(&journal, &[]))
            .await
            .unwrap(),
    )
    .keys()
    .cloned()
    .collect();
    made.sort();
    assert_eq!(made, declared);
    // Both private subnets route through the one NAT gateway.
    let calls = world.calls();
    for zone in ["a", "b"] {
        assert!(
            calls.contains(&format!("CreateRouteTable private-{zone}")),
            "{calls:?}"
        );
        assert!(calls.contains(&format!(
            "CreateRoute rtb-private-{zone} 0.0.0.0/0 -> nat-nat-a"
        )));
        assert!(calls.contains(&format!(
            "AssociateRouteTable rtb-private-{zone} subnet-private-{zone}"
        )));
    }
    assert_eq!(
        world.count("CreateNatGateway"),
        2,
        "the mocked world keeps nothing"
    );
}

#[tokio::test]
async fn a_poll_finds_what_an_earlier_start_made_and_makes_nothing_again() {
    let world = World::built(NatGatewayState::Available);
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    // The ledger lost everything (a start that died before recording):
    // what the tags find is recorded.
    let values = outputs(
        world
            .driver()
            .poll(&fixture.step(&journal, &[]))
            .await
            .unwrap(),
    );
    assert_eq!(values["vpc_id"], "vpc-1");
    assert_eq!(values["security_group_id"], "sg-cluster");
    assert_eq!(values["database_security_group_id"], "sg-database");
    for create in [
        "CreateVpc",
        "CreateSubnet",
        "CreateInternetGateway",
        "AttachInternetGateway",
        "CreateSecurityGroup",
        "AuthorizeSecurityGroupIngress",
        "CreateFlowLogs",
        "AllocateAddress",
        "CreateNatGateway",
        "CreateLogGroup",
    ] {
        assert_eq!(world.count(create), 0, "{create}");
    }
    // Only the private routes, which wait for the NAT gateway, were missing.
    assert_eq!(
        world.calls(),
        [
            "CreateRouteTable private-a",
            "CreateRoute rtb-private-a 0.0.0.0/0 -> nat-nat-a",
            "AssociateRouteTable rtb-private-a subnet-private-a",
            "CreateRouteTable private-b",
            "CreateRoute rtb-private-b 0.0.0.0/0 -> nat-nat-a",
            "AssociateRouteTable rtb-private-b subnet-private-b",
        ]
    );
    let recorded = ledger(&journal);
    for expected in [
        "ec2:vpc vpc-1",
        "ec2:subnet subnet-private-b",
        "ec2:internet-gateway igw-1",
        "ec2:route-table-association rtbassoc-subnet-public-b",
        "ec2:security-group-rule sgr-self",
        "ec2:security-group-rule sgr-pg",
        "ec2:flow-log fl-1",
        "ec2:elastic-ip eipalloc-nat-a",
        "ec2:nat-gateway nat-nat-a",
    ] {
        assert!(
            recorded.contains(&expected.to_string()),
            "{expected} not in {recorded:?}"
        );
    }
    assert!(!recorded.iter().any(|r| r.contains("eipalloc-other")
        || r.contains("nat-old")
        || r.contains("sgr-egress")));

    // With everything in the ledger, a poll records nothing again.
    let resources = journal.resources();
    let again = MemoryJournal::default();
    world
        .driver()
        .poll(&fixture.step(&again, &resources))
        .await
        .unwrap();
    let new = ledger(&again);
    assert!(new.iter().all(|r| r.contains("private")), "{new:?}");
}

#[tokio::test]
async fn a_pending_nat_gateway_is_waited_for() {
    let world = World::built(NatGatewayState::Pending);
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    assert_eq!(
        world
            .driver()
            .poll(&fixture.step(&journal, &[]))
            .await
            .unwrap(),
        Progress::Wait {
            seconds: 30,
            waiting_for: "NAT gateway nat-nat-a to become available".to_string()
        }
    );
    assert!(world.calls().is_empty(), "{:?}", world.calls());
}

#[tokio::test]
async fn a_failed_nat_gateway_is_fatal_with_its_state_and_reason() {
    let world = World::built(NatGatewayState::Failed);
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    let err = world
        .driver()
        .poll(&fixture.step(&journal, &[]))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ActionError::Fatal(
            "NAT gateway nat-nat-a in us-east-1a is failed: Gateway.NotAttached: Network vpc-1 has no Internet gateway attached".to_string()
        )
    );
    // It is in the ledger, for compensation to delete.
    assert!(ledger(&journal).contains(&"ec2:nat-gateway nat-nat-a".to_string()));
}

#[tokio::test]
async fn a_pending_vpc_is_waited_for_before_anything_goes_in_it() {
    let world = World::empty(NatGatewayState::Available).with(
        "CreateVpc",
        mock!(Ec2::create_vpc).then_output(|| {
            op::create_vpc::CreateVpcOutput::builder()
                .vpc(
                    Vpc::builder()
                        .vpc_id("vpc-1")
                        .state(VpcState::Pending)
                        .build(),
                )
                .build()
        }),
    );
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    assert_eq!(
        world
            .driver()
            .start(&fixture.step(&journal, &[]))
            .await
            .unwrap(),
        Progress::Wait {
            seconds: 5,
            waiting_for: "VPC vpc-1 to become available".to_string()
        }
    );
    assert_eq!(ledger(&journal), ["ec2:vpc vpc-1"]);
    assert_eq!(world.count("CreateSubnet"), 0);
}

#[tokio::test]
async fn one_nat_gateway_per_zone_serves_its_own_zone() {
    let world = World::empty(NatGatewayState::Available);
    let mut config = standard();
    config["nat_gateway"] = json!("per-az");
    config["availability_zones"] = json!(3);
    let fixture = fixture(config);
    let journal = MemoryJournal::default();
    let values = outputs(
        world
            .driver()
            .start(&fixture.step(&journal, &[]))
            .await
            .unwrap(),
    );
    assert_eq!(values["private_subnet_ids"].as_array().unwrap().len(), 3);
    let calls = world.calls();
    for zone in ["a", "b", "c"] {
        assert!(
            calls.contains(&format!("AllocateAddress nat-{zone}")),
            "{calls:?}"
        );
        assert!(calls.contains(&format!(
            "CreateNatGateway nat-{zone} subnet-public-{zone} eipalloc-nat-{zone} token=64"
        )));
        assert!(calls.contains(&format!(
            "CreateRoute rtb-private-{zone} 0.0.0.0/0 -> nat-nat-{zone}"
        )));
    }
    // Three zones take four blocks of each kind: /19s.
    assert!(calls.contains(&"CreateSubnet private-c 10.42.160.0/19 us-east-1c".to_string()));
}

#[tokio::test]
async fn without_nat_or_flow_logs_or_public_subnets_less_is_made() {
    let world = World::empty(NatGatewayState::Available);
    let fixture = fixture(json!({
        "cidr_block": "10.9.0.0/24",
        "availability_zones": 2,
        "public_subnets": false,
        "nat_gateway": "none",
        "flow_logs": false,
    }));
    let journal = MemoryJournal::default();
    let values = outputs(
        world
            .driver()
            .start(&fixture.step(&journal, &[]))
            .await
            .unwrap(),
    );
    assert_eq!(values["public_subnet_ids"], json!([]));
    assert_eq!(
        values["subnet_ids"],
        json!(["subnet-private-a", "subnet-private-b"])
    );
    for none in [
        "CreateInternetGateway",
        "CreateRouteTable",
        "AllocateAddress",
        "CreateNatGateway",
        "DescribeNatGateways",
        "CreateFlowLogs",
        "CreateLogGroup",
    ] {
        assert_eq!(world.count(none), 0, "{none}");
    }
    assert!(world
        .calls()
        .contains(&"CreateSubnet private-b 10.9.0.128/25 us-east-1b".to_string()));
}

#[tokio::test]
async fn a_block_too_small_is_fatal_before_any_call() {
    // No rules: any call would panic the mocked client.
    let world = World {
        ec2: BTreeMap::new(),
        logs: BTreeMap::new(),
        calls: Arc::default(),
    };
    let fixture = fixture(json!({"cidr_block": "10.0.0.0/28", "availability_zones": 2}));
    let journal = MemoryJournal::default();
    let err = world
        .driver()
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ActionError::Fatal(
            "config.cidr_block: 10.0.0.0/28 is too small for 4 subnets: each would be a /30, and AWS's smallest subnet is a /28".to_string()
        )
    );
}

#[tokio::test]
async fn a_region_with_too_few_zones_is_fatal() {
    let world = World::empty(NatGatewayState::Available);
    let mut config = standard();
    config["availability_zones"] = json!(4);
    let fixture = fixture(config);
    let journal = MemoryJournal::default();
    let err = world
        .driver()
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ActionError::Fatal(
            "config.availability_zones: 4 asked, but the region has 3 available (us-east-1a, us-east-1b, us-east-1c)".to_string()
        )
    );
    assert_eq!(world.count("CreateVpc"), 0);
}

#[tokio::test]
async fn answers_that_mean_it_is_there_already_are_success() {
    let world = World::built(NatGatewayState::Available)
        // The gateway is attached, though the last look did not say so.
        .with(
            "DescribeInternetGateways",
            mock!(Ec2::describe_internet_gateways).then_output(|| {
                op::describe_internet_gateways::DescribeInternetGatewaysOutput::builder()
                    .internet_gateways(
                        InternetGateway::builder()
                            .internet_gateway_id("igw-1")
                            .set_tags(Some(ours_tagged(GATEWAY)))
                            .build(),
                    )
                    .build()
            }),
        )
        .with(
            "AttachInternetGateway",
            mock!(Ec2::attach_internet_gateway).then_error(|| {
                op::attach_internet_gateway::AttachInternetGatewayError::generic(meta(
                    "Resource.AlreadyAssociated",
                ))
            }),
        )
        .with(
            "CreateRoute",
            mock!(Ec2::create_route).then_error(|| {
                op::create_route::CreateRouteError::generic(meta("RouteAlreadyExists"))
            }),
        )
        // The flow log is not there but its log group is.
        .with(
            "DescribeFlowLogs",
            mock!(Ec2::describe_flow_logs)
                .then_output(|| op::describe_flow_logs::DescribeFlowLogsOutput::builder().build()),
        )
        .with_logs(
            "CreateLogGroup",
            mock!(Logs::create_log_group).then_error(|| {
                logs_op::create_log_group::CreateLogGroupError::generic(meta(
                    "ResourceAlreadyExistsException",
                ))
            }),
        )
        // The database's rule exists; the last look missed it.
        .with(
            "DescribeSecurityGroupRules",
            mock!(Ec2::describe_security_group_rules)
                .match_requests(|req| req.filters()[0].values().len() == 2)
                .then_output(|| {
                    op::describe_security_group_rules::DescribeSecurityGroupRulesOutput::builder()
                        .build()
                }),
        )
        .with(
            "DescribeSecurityGroupRules (again)",
            mock!(Ec2::describe_security_group_rules).then_compute_output(|req| {
                let group = req.filters()[0].values()[0].clone();
                let source = "sg-cluster";
                let (protocol, port) = if group == "sg-database" {
                    ("tcp", 5432)
                } else {
                    ("-1", -1)
                };
                op::describe_security_group_rules::DescribeSecurityGroupRulesOutput::builder()
                    .security_group_rules(
                        SecurityGroupRule::builder()
                            .security_group_rule_id(format!("sgr-found-{group}"))
                            .group_id(&group)
                            .is_egress(false)
                            .ip_protocol(protocol)
                            .from_port(port)
                            .to_port(port)
                            .referenced_group_info(
                                ReferencedSecurityGroup::builder().group_id(source).build(),
                            )
                            .build(),
                    )
                    .build()
            }),
        )
        .with(
            "AuthorizeSecurityGroupIngress",
            mock!(Ec2::authorize_security_group_ingress).then_error(|| {
                op::authorize_security_group_ingress::AuthorizeSecurityGroupIngressError::generic(
                    meta("InvalidPermission.Duplicate"),
                )
            }),
        );
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    let values = outputs(
        world
            .driver()
            .poll(&fixture.step(&journal, &[]))
            .await
            .unwrap(),
    );
    assert_eq!(values["vpc_id"], "vpc-1");
    assert_eq!(world.count("AttachInternetGateway"), 1);
    assert_eq!(world.count("CreateRoute"), 2);
    assert_eq!(world.count("CreateLogGroup"), 1);
    assert_eq!(world.count("CreateFlowLogs"), 1);
    let recorded = ledger(&journal);
    assert!(
        recorded.contains(&"ec2:security-group-rule sgr-found-sg-database".to_string()),
        "{recorded:?}"
    );
    assert!(recorded.contains(&"ec2:security-group-rule sgr-found-sg-cluster".to_string()));
    assert!(recorded.contains(&"logs:log-group pao/vpc-flow-logs/pao-req-1-network".to_string()));
}

fn ec2_error(status: u16, code: &str) -> HttpResponse {
    HttpResponse::new(
        status.try_into().unwrap(),
        SdkBody::from(format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>AWS says {code}</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
        )),
    )
}

#[tokio::test]
async fn aws_failures_are_classified_for_the_state_machine() {
    type Case = (u16, &'static str, fn(String) -> ActionError);
    let cases: [Case; 4] = [
        (503, "RequestLimitExceeded", ActionError::Throttled),
        (503, "Unavailable", ActionError::Retryable),
        (500, "InternalError", ActionError::Retryable),
        (403, "UnauthorizedOperation", ActionError::Fatal),
    ];
    for (status, code, expected) in cases {
        let world = World::empty(NatGatewayState::Available).with(
            "DescribeVpcs",
            mock!(Ec2::describe_vpcs).then_http_response(move || ec2_error(status, code)),
        );
        let fixture = fixture(standard());
        let journal = MemoryJournal::default();
        let err = world
            .driver()
            .start(&fixture.step(&journal, &[]))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            expected(format!("EC2 DescribeVpcs: {code}: AWS says {code}"))
        );
    }
    // A quota is no reason to try again.
    let world = World::empty(NatGatewayState::Available).with(
        "CreateVpc",
        mock!(Ec2::create_vpc)
            .then_error(|| op::create_vpc::CreateVpcError::generic(meta("VpcLimitExceeded"))),
    );
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    assert_eq!(
        world
            .driver()
            .start(&fixture.step(&journal, &[]))
            .await
            .unwrap_err(),
        ActionError::Fatal(
            "EC2 CreateVpc: VpcLimitExceeded: AWS says VpcLimitExceeded".to_string()
        )
    );
}

// ------------------------------------------------------------------ compensation

/// The ledger of a finished start.
fn made() -> Vec<Resource> {
    let r = |kind: &str, id: &str| Resource::new(kind, id);
    vec![
        r(kind::VPC, "vpc-1"),
        r(kind::SUBNET, "subnet-public-a").with("part", "public-a"),
        r(kind::SUBNET, "subnet-private-a").with("part", "private-a"),
        r(kind::INTERNET_GATEWAY, "igw-1").with("vpc_id", "vpc-1"),
        r(kind::ROUTE_TABLE, "rtb-public").with("part", "public"),
        r(kind::ROUTE_TABLE_ASSOCIATION, "rtbassoc-1").with("route_table_id", "rtb-public"),
        r(kind::SECURITY_GROUP, "sg-cluster").with("part", CLUSTER),
        r(kind::SECURITY_GROUP, "sg-database").with("part", DATABASE),
        r(kind::SECURITY_GROUP_RULE, "sgr-self").with("group_id", "sg-cluster"),
        r(kind::SECURITY_GROUP_RULE, "sgr-pg").with("group_id", "sg-database"),
        r(kind::LOG_GROUP, "pao/vpc-flow-logs/pao-req-1-network"),
        r(kind::FLOW_LOG, "fl-1"),
        r(kind::ELASTIC_IP, "eipalloc-1").with("part", "nat-a"),
        r(kind::NAT_GATEWAY, "nat-1").with("part", "nat-a"),
        r(kind::ROUTE_TABLE, "rtb-private-a").with("part", "private-a"),
        r(kind::ROUTE_TABLE_ASSOCIATION, "rtbassoc-2").with("route_table_id", "rtb-private-a"),
    ]
}

/// A world whose deletions all succeed, noting their order; the NAT
/// gateway is `states` on successive looks.
fn deletions(states: Vec<Option<NatGatewayState>>) -> World {
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut ec2 = BTreeMap::new();
    macro_rules! deleting {
        ($name:literal, $method:ident, $output:path, |$req:ident| $id:expr) => {{
            let c = calls.clone();
            ec2.insert(
                $name,
                mock!(Ec2::$method).then_compute_output(move |$req| {
                    note(&c, format!("{} {}", $name, $id));
                    <$output>::builder().build()
                }),
            );
        }};
    }
    deleting!(
        "DeleteFlowLogs",
        delete_flow_logs,
        op::delete_flow_logs::DeleteFlowLogsOutput,
        |req| req.flow_log_ids().join(",")
    );
    deleting!(
        "DeleteNatGateway",
        delete_nat_gateway,
        op::delete_nat_gateway::DeleteNatGatewayOutput,
        |req| req.nat_gateway_id().unwrap_or("")
    );
    deleting!(
        "ReleaseAddress",
        release_address,
        op::release_address::ReleaseAddressOutput,
        |req| req.allocation_id().unwrap_or("")
    );
    deleting!(
        "DisassociateRouteTable",
        disassociate_route_table,
        op::disassociate_route_table::DisassociateRouteTableOutput,
        |req| req.association_id().unwrap_or("")
    );
    deleting!(
        "DeleteRouteTable",
        delete_route_table,
        op::delete_route_table::DeleteRouteTableOutput,
        |req| req.route_table_id().unwrap_or("")
    );
    deleting!(
        "DetachInternetGateway",
        detach_internet_gateway,
        op::detach_internet_gateway::DetachInternetGatewayOutput,
        |req| format!(
            "{} {}",
            req.internet_gateway_id().unwrap_or(""),
            req.vpc_id().unwrap_or("")
        )
    );
    deleting!(
        "DeleteInternetGateway",
        delete_internet_gateway,
        op::delete_internet_gateway::DeleteInternetGatewayOutput,
        |req| req.internet_gateway_id().unwrap_or("")
    );
    deleting!(
        "RevokeSecurityGroupIngress",
        revoke_security_group_ingress,
        op::revoke_security_group_ingress::RevokeSecurityGroupIngressOutput,
        |req| format!(
            "{} {}",
            req.group_id().unwrap_or(""),
            req.security_group_rule_ids().join(",")
        )
    );
    deleting!(
        "DeleteSecurityGroup",
        delete_security_group,
        op::delete_security_group::DeleteSecurityGroupOutput,
        |req| req.group_id().unwrap_or("")
    );
    deleting!(
        "DeleteSubnet",
        delete_subnet,
        op::delete_subnet::DeleteSubnetOutput,
        |req| req.subnet_id().unwrap_or("")
    );
    deleting!(
        "DeleteVpc",
        delete_vpc,
        op::delete_vpc::DeleteVpcOutput,
        |req| req.vpc_id().unwrap_or("")
    );
    let looks = Arc::new(Mutex::new(states));
    ec2.insert(
        "DescribeNatGateways",
        mock!(Ec2::describe_nat_gateways).then_compute_output(move |req| {
            let mut looks = looks.lock().unwrap();
            let state = if looks.len() > 1 {
                looks.remove(0)
            } else {
                looks[0].clone()
            };
            let mut answer = op::describe_nat_gateways::DescribeNatGatewaysOutput::builder();
            if let Some(state) = state {
                answer = answer.nat_gateways(
                    Nat_::builder()
                        .nat_gateway_id(req.nat_gateway_ids()[0].clone())
                        .state(state)
                        .build(),
                );
            }
            answer.build()
        }),
    );
    let mut logs = BTreeMap::new();
    let c = calls.clone();
    logs.insert(
        "DeleteLogGroup",
        mock!(Logs::delete_log_group).then_compute_output(move |req| {
            note(
                &c,
                format!("DeleteLogGroup {}", req.log_group_name().unwrap_or("")),
            );
            logs_op::delete_log_group::DeleteLogGroupOutput::builder().build()
        }),
    );
    World { ec2, logs, calls }
}

#[tokio::test]
async fn compensation_deletes_the_ledger_in_dependency_order_waiting_for_the_nat_gateway() {
    let world = deletions(vec![
        Some(NatGatewayState::Available),
        Some(NatGatewayState::Deleting),
        Some(NatGatewayState::Deleted),
    ]);
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    let resources = made();
    let step = fixture.step(&journal, &resources);
    let driver = world.driver();
    let waiting = Undone::Wait {
        seconds: 30,
        waiting_for: "NAT gateways to be deleted: nat-1".to_string(),
    };
    assert_eq!(driver.compensate(&step).await.unwrap(), waiting);
    assert_eq!(driver.compensate(&step).await.unwrap(), waiting);
    let done = driver.compensate(&step).await.unwrap();
    assert_eq!(
        done,
        Undone::Done(
            "deleted VPC vpc-1, 2 subnets, 1 internet gateway, 1 NAT gateway, 1 Elastic IP, 2 route tables, 2 security groups, 1 flow log, 1 log group".to_string()
        )
    );
    let calls = world.calls();
    // Each call deleted the flow logs again (gone is done); after the NAT
    // gateway is gone, the rest in order.
    let last: Vec<&str> = calls
        .iter()
        .skip_while(|c| !c.starts_with("ReleaseAddress"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        last,
        [
            "ReleaseAddress eipalloc-1",
            "DisassociateRouteTable rtbassoc-1",
            "DisassociateRouteTable rtbassoc-2",
            "DeleteRouteTable rtb-public",
            "DeleteRouteTable rtb-private-a",
            "DetachInternetGateway igw-1 vpc-1",
            "DeleteInternetGateway igw-1",
            "RevokeSecurityGroupIngress sg-cluster sgr-self",
            "RevokeSecurityGroupIngress sg-database sgr-pg",
            "DeleteSecurityGroup sg-database",
            "DeleteSecurityGroup sg-cluster",
            "DeleteSubnet subnet-public-a",
            "DeleteSubnet subnet-private-a",
            "DeleteVpc vpc-1",
        ]
    );
    assert_eq!(
        &calls[..3],
        [
            "DeleteFlowLogs fl-1",
            "DeleteLogGroup pao/vpc-flow-logs/pao-req-1-network",
            "DeleteNatGateway nat-1",
        ]
    );
    assert_eq!(
        world.count("DeleteNatGateway"),
        1,
        "a deleting gateway is not deleted again"
    );
}

#[tokio::test]
async fn compensation_treats_not_found_as_done() {
    let world = deletions(vec![None])
        .with(
            "DeleteFlowLogs",
            mock!(Ec2::delete_flow_logs).then_output(|| {
                op::delete_flow_logs::DeleteFlowLogsOutput::builder()
                    .unsuccessful(
                        UnsuccessfulItem::builder()
                            .resource_id("fl-1")
                            .error(
                                UnsuccessfulItemError::builder()
                                    .code("InvalidFlowLogId.NotFound")
                                    .message("gone")
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            }),
        )
        .with(
            "ReleaseAddress",
            mock!(Ec2::release_address).then_error(|| {
                op::release_address::ReleaseAddressError::generic(meta(
                    "InvalidAllocationID.NotFound",
                ))
            }),
        )
        .with(
            "DisassociateRouteTable",
            mock!(Ec2::disassociate_route_table).then_error(|| {
                op::disassociate_route_table::DisassociateRouteTableError::generic(meta(
                    "InvalidAssociationID.NotFound",
                ))
            }),
        )
        .with(
            "DeleteRouteTable",
            mock!(Ec2::delete_route_table).then_error(|| {
                op::delete_route_table::DeleteRouteTableError::generic(meta(
                    "InvalidRouteTableID.NotFound",
                ))
            }),
        )
        .with(
            "DetachInternetGateway",
            mock!(Ec2::detach_internet_gateway).then_error(|| {
                op::detach_internet_gateway::DetachInternetGatewayError::generic(meta(
                    "InvalidInternetGatewayID.NotFound",
                ))
            }),
        )
        .with(
            "RevokeSecurityGroupIngress",
            mock!(Ec2::revoke_security_group_ingress).then_error(|| {
                op::revoke_security_group_ingress::RevokeSecurityGroupIngressError::generic(meta(
                    "InvalidGroup.NotFound",
                ))
            }),
        )
        .with(
            "DeleteSecurityGroup",
            mock!(Ec2::delete_security_group).then_error(|| {
                op::delete_security_group::DeleteSecurityGroupError::generic(meta(
                    "InvalidGroup.NotFound",
                ))
            }),
        )
        .with(
            "DeleteSubnet",
            mock!(Ec2::delete_subnet).then_error(|| {
                op::delete_subnet::DeleteSubnetError::generic(meta("InvalidSubnetID.NotFound"))
            }),
        )
        .with(
            "DeleteVpc",
            mock!(Ec2::delete_vpc).then_error(|| {
                op::delete_vpc::DeleteVpcError::generic(meta("InvalidVpcID.NotFound"))
            }),
        )
        .with_logs(
            "DeleteLogGroup",
            mock!(Logs::delete_log_group).then_error(|| {
                logs_op::delete_log_group::DeleteLogGroupError::generic(meta(
                    "ResourceNotFoundException",
                ))
            }),
        );
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    let resources = made();
    let undone = world
        .driver()
        .compensate(&fixture.step(&journal, &resources))
        .await
        .unwrap();
    assert!(matches!(undone, Undone::Done(_)), "{undone:?}");
    // A gateway detached already (or gone) is not deleted by a second call.
    assert_eq!(world.count("DeleteInternetGateway"), 0);
    assert_eq!(world.count("DeleteNatGateway"), 0);
    assert_eq!(world.count("DeleteVpc"), 1);
}

#[tokio::test]
async fn a_nat_gateway_aws_no_longer_knows_is_gone() {
    let world = deletions(vec![None]).with(
        "DescribeNatGateways",
        mock!(Ec2::describe_nat_gateways).then_error(|| {
            op::describe_nat_gateways::DescribeNatGatewaysError::generic(meta("NatGatewayNotFound"))
        }),
    );
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    let resources = made();
    let undone = world
        .driver()
        .compensate(&fixture.step(&journal, &resources))
        .await
        .unwrap();
    assert!(matches!(undone, Undone::Done(_)), "{undone:?}");
    assert_eq!(world.count("DeleteNatGateway"), 0);
}

#[tokio::test]
async fn dependencies_still_going_make_compensation_wait() {
    let cases: [(&'static str, Mock, &str); 4] = [
        (
            "ReleaseAddress",
            mock!(Ec2::release_address).then_error(|| {
                op::release_address::ReleaseAddressError::generic(meta("InvalidIPAddress.InUse"))
            }),
            "Elastic IPs to be released: eipalloc-1 (AWS says InvalidIPAddress.InUse)",
        ),
        (
            "DeleteSecurityGroup",
            mock!(Ec2::delete_security_group)
                .match_requests(|req| req.group_id() == Some("sg-database"))
                .then_error(|| {
                    op::delete_security_group::DeleteSecurityGroupError::generic(meta("DependencyViolation"))
                }),
            "security groups to be free to delete: sg-database (AWS says DependencyViolation)",
        ),
        (
            "DeleteSubnet",
            mock!(Ec2::delete_subnet).then_error(|| {
                op::delete_subnet::DeleteSubnetError::generic(meta("DependencyViolation"))
            }),
            "subnets to be free to delete: subnet-public-a (AWS says DependencyViolation); subnet-private-a (AWS says DependencyViolation)",
        ),
        (
            "DeleteVpc",
            mock!(Ec2::delete_vpc).then_error(|| {
                op::delete_vpc::DeleteVpcError::generic(meta("DependencyViolation"))
            }),
            "the VPC to be free to delete: vpc-1 (AWS says DependencyViolation)",
        ),
    ];
    for (name, rule, waiting_for) in cases {
        // The blocked deletion's rule goes first, so it answers for what it matches.
        let mut world = deletions(vec![None]);
        let fallback = world.ec2.remove(name).unwrap();
        world.ec2.insert(name, rule);
        world.ec2.insert("~fallback", fallback);
        let fixture = fixture(standard());
        let journal = MemoryJournal::default();
        let resources = made();
        let undone = world
            .driver()
            .compensate(&fixture.step(&journal, &resources))
            .await
            .unwrap();
        assert_eq!(
            undone,
            Undone::Wait {
                seconds: 15,
                waiting_for: waiting_for.to_string()
            },
            "{name}"
        );
        if name == "DeleteSecurityGroup" {
            // The database's group is tried first, the cluster's still.
            let calls = world.calls();
            assert!(
                calls.contains(&"DeleteSecurityGroup sg-cluster".to_string()),
                "{calls:?}"
            );
            assert_eq!(world.count("DeleteSubnet"), 0);
        }
    }
}

#[tokio::test]
async fn a_refused_deletion_is_fatal() {
    let world = deletions(vec![None]).with(
        "DeleteVpc",
        mock!(Ec2::delete_vpc)
            .then_error(|| op::delete_vpc::DeleteVpcError::generic(meta("UnauthorizedOperation"))),
    );
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    let resources = made();
    assert_eq!(
        world
            .driver()
            .compensate(&fixture.step(&journal, &resources))
            .await
            .unwrap_err(),
        ActionError::Fatal(
            "EC2 DeleteVpc: UnauthorizedOperation: AWS says UnauthorizedOperation".to_string()
        )
    );
}

#[tokio::test]
async fn rollback_of_a_completed_request_deletes_everything_too() {
    let world = deletions(vec![None]);
    let fixture = fixture(standard()).status(RequestStatus::RollingBack);
    let journal = MemoryJournal::default();
    let resources = made();
    let undone = world
        .driver()
        .compensate(&fixture.step(&journal, &resources))
        .await
        .unwrap();
    assert!(matches!(undone, Undone::Done(_)), "{undone:?}");
    assert_eq!(world.count("DeleteVpc"), 1);
}

#[tokio::test]
async fn retain_keeps_everything_and_calls_nothing() {
    let world = deletions(vec![None]);
    let fixture = fixture(standard()).rollback(json!({"retain": true}));
    let journal = MemoryJournal::default();
    let resources = made();
    let undone = world
        .driver()
        .compensate(&fixture.step(&journal, &resources))
        .await
        .unwrap();
    assert!(
        matches!(&undone, Undone::Kept(reason) if reason.starts_with("rollback.retain: the network's 16 resources are kept (VPC vpc-1, 2 subnets")),
        "{undone:?}"
    );
    assert!(world.calls().is_empty());
}

#[tokio::test]
async fn an_empty_ledger_has_nothing_to_undo() {
    let world = deletions(vec![None]);
    let fixture = fixture(standard());
    let journal = MemoryJournal::default();
    let undone = world
        .driver()
        .compensate(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert_eq!(undone, Undone::Kept("the action made nothing".to_string()));
    assert!(world.calls().is_empty());
}

#[tokio::test]
async fn a_nat_gateway_of_an_earlier_failed_run_gets_a_new_client_token() {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let t = tokens.clone();
    let world = World::empty(NatGatewayState::Pending).with(
        "CreateNatGateway",
        mock!(Ec2::create_nat_gateway).then_compute_output(move |req| {
            t.lock()
                .unwrap()
                .push(req.client_token().unwrap_or("").to_string());
            op::create_nat_gateway::CreateNatGatewayOutput::builder()
                .nat_gateway(
                    Nat_::builder()
                        .nat_gateway_id("nat-2")
                        .state(NatGatewayState::Pending)
                        .build(),
                )
                .build()
        }),
    );
    let mut config = standard();
    config["nat_gateway"] = json!("per-az");
    let fixture = fixture(config);
    let journal = MemoryJournal::default();
    // The ledger holds zone a's gateway of the failed run (deleted since).
    let earlier = [Resource::new(kind::NAT_GATEWAY, "nat-1").with("part", "nat-a")];
    let step = fixture.step(&journal, &earlier);
    world.driver().start(&step).await.unwrap();
    assert_eq!(
        tokens.lock().unwrap().as_slice(),
        [
            client_token(&step, "nat-a", 1),
            client_token(&step, "nat-b", 0)
        ]
    );
}
