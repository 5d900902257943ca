//! The `aws-network` action: a VPC carved into public and private subnets
//! over the first N availability zones of the region, an internet gateway,
//! NAT gateways (none, one, or one per zone) with their Elastic IPs, route
//! tables, VPC flow logs to a CloudWatch Logs group, and two security
//! groups: the cluster's (workloads) and the database's, which admits
//! PostgreSQL from the cluster's group only.
//!
//! Every resource is tagged at creation with the step's tags and a
//! `pao:part` tag (`vpc`, `public-a`, `private-b`, `nat-a`, ...), so a
//! start that died halfway finds what it made and finishes; a start is
//! idempotent, and a poll is a start that finds everything made. Every id
//! goes to the ledger as soon as it is known. Compensation deletes the
//! ledger's resources only, newest dependency first. This module owns the
//! EC2 and CloudWatch Logs calls of the action and nothing else: it never
//! touches the requests table.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    AttributeBooleanValue, DomainType, Filter, FlowLogsResourceType, IpPermission,
    LogDestinationType, NatGatewayState, ResourceType, SecurityGroupRule, Tag, TagSpecification,
    TrafficType, UserIdGroupPair, VpcState,
};
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::action::ActionError;
use crate::actions::driver::{Driver, Outputs, Progress, Step, Undone, ACTION_TAG, REQUEST_TAG};
use crate::aws::sdk;
use crate::config::{ConfigError, Env};
use crate::requests::fulfillment::Resource;

/// The tag naming which part of the network a resource is.
pub const PART_TAG: &str = "pao:part";

/// The ledger's kinds of resource.
pub mod kind {
    pub const VPC: &str = "ec2:vpc";
    pub const SUBNET: &str = "ec2:subnet";
    pub const INTERNET_GATEWAY: &str = "ec2:internet-gateway";
    pub const ELASTIC_IP: &str = "ec2:elastic-ip";
    pub const NAT_GATEWAY: &str = "ec2:nat-gateway";
    pub const ROUTE_TABLE: &str = "ec2:route-table";
    pub const ROUTE_TABLE_ASSOCIATION: &str = "ec2:route-table-association";
    pub const SECURITY_GROUP: &str = "ec2:security-group";
    pub const SECURITY_GROUP_RULE: &str = "ec2:security-group-rule";
    pub const FLOW_LOG: &str = "ec2:flow-log";
    pub const LOG_GROUP: &str = "logs:log-group";
}

const VPC: &str = "vpc";
const GATEWAY: &str = "igw";
const PUBLIC: &str = "public";
const CLUSTER: &str = "cluster";
const DATABASE: &str = "database";
const FLOW_LOGS: &str = "flow-logs";
const ANYWHERE: &str = "0.0.0.0/0";
const POSTGRES_PORT: i32 = 5432;
/// The smallest subnet AWS allows.
const SMALLEST_SUBNET: u8 = 28;

/// A NAT gateway takes a few minutes to become available or to go.
const NAT_WAIT_SECONDS: u32 = 30;
/// A VPC is available within seconds.
const VPC_WAIT_SECONDS: u32 = 5;
/// Deletions blocked by a dependency that is going away.
const DEPENDENCY_WAIT_SECONDS: u32 = 15;

// ------------------------------------------------------------------ config

/// The action's config, once rendered.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    cidr_block: String,
    #[serde(default = "two", deserialize_with = "whole_number")]
    availability_zones: u64,
    #[serde(default = "yes", deserialize_with = "flag")]
    public_subnets: bool,
    #[serde(default)]
    nat_gateway: Nat,
    #[serde(default = "yes", deserialize_with = "flag")]
    flow_logs: bool,
    #[serde(default)]
    tags: Map<String, Value>,
}

fn two() -> u64 {
    2
}

fn yes() -> bool {
    true
}

/// NAT for the private subnets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nat {
    None,
    #[default]
    Single,
    PerAz,
}

/// A form's value rendered into a string leaf ("2", "true") reads as well
/// as the typed one.
#[derive(Deserialize)]
#[serde(untagged)]
enum Loose<T> {
    Typed(T),
    Text(String),
}

fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Loose::<u64>::deserialize(d)? {
        Loose::Typed(n) => Ok(n),
        Loose::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a whole number"))),
    }
}

fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Loose::<bool>::deserialize(d)? {
        Loose::Typed(b) => Ok(b),
        Loose::Text(text) => match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "`{text}` is not true or false"
            ))),
        },
    }
}

impl Config {
    /// The VPC's block and the number of zones, checked before anything
    /// is made.
    fn checked(&self) -> Result<(Ipv4Net, usize), ActionError> {
        let fatal = |message: String| ActionError::Fatal(message);
        let cidr: Ipv4Net = self.cidr_block.trim().parse().map_err(|_| {
            fatal(format!(
                "config.cidr_block: `{}` is not an IPv4 CIDR block such as 10.42.0.0/16",
                self.cidr_block
            ))
        })?;
        if !(16..=SMALLEST_SUBNET).contains(&cidr.prefix_len()) {
            return Err(fatal(format!(
                "config.cidr_block: a VPC is a /16 to a /28, not a /{}",
                cidr.prefix_len()
            )));
        }
        if cidr.addr() != cidr.network() {
            return Err(fatal(format!(
                "config.cidr_block: {cidr} has host bits set; the block is {}",
                cidr.trunc()
            )));
        }
        if !(1..=6).contains(&self.availability_zones) {
            return Err(fatal(format!(
                "config.availability_zones: {} is not between 1 and 6",
                self.availability_zones
            )));
        }
        if self.nat_gateway != Nat::None && !self.public_subnets {
            return Err(fatal(
                "config.nat_gateway: a NAT gateway lives in a public subnet, so it needs public_subnets: true"
                    .to_string(),
            ));
        }
        // At most 6, checked above.
        Ok((cidr, self.availability_zones as usize))
    }
}

// ------------------------------------------------------------------ layout

/// Splits `vpc` into `count` equal blocks, rounded up to the next power of
/// two, in address order: `10.42.0.0/16` in 4 gives four /18s. A block
/// smaller than a /28 (AWS's smallest subnet) is refused.
pub fn carve(vpc: Ipv4Net, count: usize) -> Result<Vec<Ipv4Net>, String> {
    if count == 0 {
        return Err("no subnets to carve".to_string());
    }
    let bits = count.next_power_of_two().trailing_zeros();
    let prefix = u32::from(vpc.prefix_len()) + bits;
    if prefix > u32::from(SMALLEST_SUBNET) {
        return Err(format!(
            "{vpc} is too small for {count} subnets: each would be a /{prefix}, and AWS's smallest subnet is a /{SMALLEST_SUBNET}"
        ));
    }
    let prefix = u8::try_from(prefix).map_err(|_| format!("/{prefix} is not a prefix"))?;
    let blocks = vpc
        .trunc()
        .subnets(prefix)
        .map_err(|err| format!("{vpc} cannot be split into /{prefix}s: {err}"))?;
    Ok(blocks.take(count).collect())
}

/// One zone's share of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZonePlan {
    /// Such as `us-east-1a`.
    pub zone: String,
    /// Such as `a`: names the zone's parts (`public-a`, `private-a`, `nat-a`).
    pub letter: String,
    pub public: Option<Ipv4Net>,
    pub private: Ipv4Net,
}

/// Where each subnet goes: public blocks first, then private ones (only
/// private ones when there are no public subnets).
pub fn layout(vpc: Ipv4Net, zones: &[String], public: bool) -> Result<Vec<ZonePlan>, String> {
    let n = zones.len();
    let blocks = carve(vpc, if public { 2 * n } else { n })?;
    let letters = letters(zones);
    Ok(zones
        .iter()
        .enumerate()
        .map(|(i, zone)| ZonePlan {
            zone: zone.clone(),
            letter: letters[i].clone(),
            public: public.then(|| blocks[i]),
            private: blocks[if public { n + i } else { i }],
        })
        .collect())
}

/// The zones' letters (`us-east-1a` → `a`), or their positions' letters
/// when the names do not give distinct ones.
fn letters(zones: &[String]) -> Vec<String> {
    let from_names: Vec<String> = zones
        .iter()
        .map(|zone| {
            let tail = zone.trim_end_matches(|c: char| c.is_ascii_lowercase());
            zone[tail.len()..].to_string()
        })
        .collect();
    let mut distinct = from_names.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() == zones.len() && from_names.iter().all(|l| !l.is_empty()) {
        from_names
    } else {
        (0..zones.len())
            .map(|i| char::from(b'a' + (i % 26) as u8).to_string())
            .collect()
    }
}

// ------------------------------------------------------------------ errors

/// A failed call of EC2, or of CloudWatch Logs for the flow logs' group.
fn classify<E>(call: &str, err: &SdkError<E, HttpResponse>) -> ActionError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let service = if call.contains("LogGroup") || call == "PutRetentionPolicy" {
        "CloudWatch Logs"
    } else {
        "EC2"
    };
    sdk::failed(service, call, err)
}

// ------------------------------------------------------------------ tags

/// What every resource of the step is tagged with.
struct Tagger {
    tags: Vec<(String, String)>,
    /// `pao-<request>-<action>`: the start of each resource's `Name`.
    name: String,
    /// The item sets its own `Name` tag.
    named: bool,
}

impl Tagger {
    fn new(step: &Step<'_>, item_tags: &Map<String, Value>) -> Self {
        // The item's `pao:` keys are dropped here, so `pao:part` is ours.
        let tags = step.tags(item_tags);
        let named = tags.iter().any(|(key, _)| key == "Name");
        Self {
            tags,
            name: step.name(""),
            named,
        }
    }

    fn pairs(&self, part: &str) -> Vec<(String, String)> {
        let mut pairs = self.tags.clone();
        pairs.push((PART_TAG.to_string(), part.to_string()));
        if !self.named {
            pairs.push(("Name".to_string(), format!("{}-{part}", self.name)));
        }
        pairs
    }

    fn spec(&self, resource: ResourceType, part: &str, extra: &[(&str, &str)]) -> TagSpecification {
        let mut tags: Vec<Tag> = self
            .pairs(part)
            .into_iter()
            .map(|(key, value)| Tag::builder().key(key).value(value).build())
            .collect();
        tags.extend(
            extra
                .iter()
                .map(|(key, value)| Tag::builder().key(*key).value(*value).build()),
        );
        TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(tags))
            .build()
    }
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

/// The filters that find the step's own resources.
fn ours(step: &Step<'_>) -> Vec<Filter> {
    vec![
        filter(&format!("tag:{REQUEST_TAG}"), &[&step.request.id]),
        filter(&format!("tag:{ACTION_TAG}"), &[&step.action.id]),
    ]
}

/// The part a resource is of this step, if it is the step's at all:
/// checked here too, since not every emulated filter honours tags.
fn part_of(tags: &[Tag], step: &Step<'_>) -> Option<String> {
    let value = |key: &str| {
        tags.iter()
            .find(|tag| tag.key() == Some(key))
            .and_then(Tag::value)
    };
    let mine = value(REQUEST_TAG) == Some(step.request.id.as_str())
        && value(ACTION_TAG) == Some(step.action.id.as_str());
    mine.then(|| value(PART_TAG).map(str::to_string)).flatten()
}

/// A client token for `part`: the same on every attempt, at most 64
/// characters, as EC2 asks.
fn client_token(step: &Step<'_>, part: &str, generation: usize) -> String {
    let digest = Sha256::digest(format!(
        "{}\n{}\n{part}\n{generation}",
        step.request.id, step.action.id
    ));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `resource` to the ledger unless it is there already.
async fn keep(step: &Step<'_>, resource: Resource) -> Result<(), ActionError> {
    if step
        .resources
        .iter()
        .any(|r| r.kind == resource.kind && r.id == resource.id)
    {
        return Ok(());
    }
    step.journal.record(resource).await
}

fn missing(call: &str, what: &str) -> ActionError {
    ActionError::Retryable(format!("{call} answered without {what}"))
}

// ------------------------------------------------------------------ driver

/// Where flow logs go: the role VPC Flow Logs assumes to write them, and
/// how long their log groups keep them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLogSettings {
    pub role_arn: String,
    pub retention_days: i32,
}

impl FlowLogSettings {
    pub const ROLE_ARN: &'static str = "PAO_FLOW_LOGS_ROLE_ARN";
    pub const RETENTION_DAYS: &'static str = "PAO_FLOW_LOGS_RETENTION_DAYS";
    /// What CloudWatch Logs accepts as a retention.
    const RETENTIONS: [u64; 22] = [
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
        2922, 3288, 3653,
    ];

    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let role_arn = env.required(Self::ROLE_ARN)?;
        let days = env.number(Self::RETENTION_DAYS, 30)?;
        if !Self::RETENTIONS.contains(&days) {
            return Err(ConfigError::Invalid {
                name: Self::RETENTION_DAYS,
                reason: format!(
                    "{days} is not one of CloudWatch Logs' retentions {:?}",
                    Self::RETENTIONS
                ),
            });
        }
        Ok(Self {
            role_arn,
            retention_days: i32::try_from(days).unwrap_or(30),
        })
    }
}

/// The aws-network driver.
pub struct NetworkDriver {
    ec2: aws_sdk_ec2::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    flow_logs: FlowLogSettings,
}

/// A NAT gateway as found or made.
#[derive(Debug, Clone)]
struct NatGateway {
    id: String,
    zone: String,
    state: NatGatewayState,
    failure: Option<String>,
}

/// A route table of the step's, as found.
#[derive(Debug, Clone, Default)]
struct Table {
    id: String,
    default_route: bool,
    /// (association id, subnet id)
    associations: Vec<(String, String)>,
}

/// Where a route table's default route goes.
enum Target<'a> {
    Gateway(&'a str),
    Nat(&'a str),
}

/// A route table the step wants: its part, what the last look found of
/// it, its default route's target, and its subnets.
struct Routes<'a> {
    part: &'a str,
    found: Option<&'a Table>,
    target: Target<'a>,
    subnets: &'a [&'a str],
}

/// An ingress rule the step makes.
struct Rule<'a> {
    part: &'a str,
    group: &'a str,
    source: &'a str,
    protocol: &'a str,
    port: Option<i32>,
}

impl Rule<'_> {
    fn matches(&self, rule: &SecurityGroupRule) -> bool {
        rule.is_egress() == Some(false)
            && rule.group_id() == Some(self.group)
            && rule.referenced_group_info().and_then(|r| r.group_id()) == Some(self.source)
            && rule.ip_protocol() == Some(self.protocol)
            && self
                .port
                .is_none_or(|port| rule.from_port() == Some(port) && rule.to_port() == Some(port))
    }

    fn permission(&self) -> IpPermission {
        let pair = UserIdGroupPair::builder().group_id(self.source).build();
        let mut permission = IpPermission::builder()
            .ip_protocol(self.protocol)
            .user_id_group_pairs(pair);
        if let Some(port) = self.port {
            permission = permission.from_port(port).to_port(port);
        }
        permission.build()
    }
}

impl NetworkDriver {
    pub fn new(
        ec2: aws_sdk_ec2::Client,
        logs: aws_sdk_cloudwatchlogs::Client,
        flow_logs: FlowLogSettings,
    ) -> Self {
        Self {
            ec2,
            logs,
            flow_logs,
        }
    }

    /// The first `count` available zones of the region, in name order.
    async fn zones(&self, count: usize) -> Result<Vec<String>, ActionError> {
        let call = "DescribeAvailabilityZones";
        let answer = self
            .ec2
            .describe_availability_zones()
            .filters(filter("zone-type", &["availability-zone"]))
            .filters(filter("state", &["available"]))
            .send()
            .await
            .map_err(|err| classify(call, &err))?;
        let mut zones: Vec<String> = answer
            .availability_zones()
            .iter()
            .filter_map(|zone| zone.zone_name())
            .map(str::to_string)
            .collect();
        zones.sort();
        zones.dedup();
        if zones.len() < count {
            return Err(ActionError::Fatal(format!(
                "config.availability_zones: {count} asked, but the region has {} available ({})",
                zones.len(),
                zones.join(", ")
            )));
        }
        zones.truncate(count);
        Ok(zones)
    }

    /// The VPC, found by its tags or made; and whether it is available.
    async fn vpc(
        &self,
        step: &Step<'_>,
        tagger: &Tagger,
        cidr: Ipv4Net,
    ) -> Result<(String, bool), ActionError> {
        let call = "DescribeVpcs";
        let found = self
            .ec2
            .describe_vpcs()
            .set_filters(Some(ours(step)))
            .send()
            .await
            .map_err(|err| classify(call, &err))?;
        let vpc = found
            .vpcs()
            .iter()
            .find(|vpc| part_of(vpc.tags(), step).as_deref() == Some(VPC))
            .cloned();
        let vpc = match vpc {
            Some(vpc) => vpc,
            None => {
                let call = "CreateVpc";
                let made = self
                    .ec2
                    .create_vpc()
                    .cidr_block(cidr.to_string())
                    .tag_specifications(tagger.spec(ResourceType::Vpc, VPC, &[]))
                    .send()
                    .await
                    .map_err(|err| classify(call, &err))?;
                made.vpc().cloned().ok_or_else(|| missing(call, "a VPC"))?
            }
        };
        let id = vpc
            .vpc_id()
            .ok_or_else(|| missing(call, "a VPC id"))?
            .to_string();
        keep(
            step,
            Resource::new(kind::VPC, &id).with("cidr", cidr.to_string()),
        )
        .await?;
        Ok((id, vpc.state() != Some(&VpcState::Pending)))
    }

    /// EKS needs DNS hostnames in the VPC (DNS resolution is on by default).
    async fn enable_dns_hostnames(&self, vpc: &str) -> Result<(), ActionError> {
        self.ec2
            .modify_vpc_attribute()
            .vpc_id(vpc)
            .enable_dns_hostnames(AttributeBooleanValue::builder().value(true).build())
            .send()
            .await
            .map_err(|err| classify("ModifyVpcAttribute", &err))?;
        Ok(())
    }

    /// Every planned subnet, by part (`public-a`, `private-a`, ...).
    async fn subnets(
        &self,
        step: &Step<'_>,
        tagger: &Tagger,
        vpc: &str,
        plan: &[ZonePlan],
    ) -> Result<BTreeMap<String, String>, ActionError> {
        let call = "DescribeSubnets";
        let mut filters = ours(step);
        filters.push(filter("vpc-id", &[vpc]));
        let answer = self
            .ec2
            .describe_subnets()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|err| classify(call, &err))?;
        let found: BTreeMap<String, String> = answer
            .subnets()
            .iter()
            .filter_map(|s| Some((part_of(s.tags(), step)?, s.subnet_id()?.to_string())))
            .collect();
        let mut subnets = BTreeMap::new();
        for zone in plan {
            let wanted = zone
                .public
                .map(|cidr| (format!("{PUBLIC}-{}", zone.letter), cidr, true))
                .into_iter()
                .chain([(format!("private-{}", zone.letter), zone.private, false)]);
            for (part, cidr, public) in wanted {
                let id = match found.get(&part) {
                    Some(id) => id.clone(),
                    None => {
                        // The load balancer controller picks subnets by these tags.
                        let role = if public {
                            ("kubernetes.io/role/elb", "1")
                        } else {
                            ("kubernetes.io/role/internal-elb", "1")
                        };
                        self.create_subnet(tagger, vpc, &part, cidr, &zone.zone, role)
                            .await?
                    }
                };
                keep(
                    step,
                    Resource::new(kind::SUBNET, &id)
                        .with("part", &part)
                        .with("zone", &zone.zone)
                        .with("cidr", cidr.to_string()),
                )
                .await?;
                subnets.insert(part, id);
            }
        }
        Ok(subnets)
    }

    async fn create_subnet(
        &self,
        tagger: &Tagger,
        vpc: &str,
        part: &str,
        cidr: Ipv4Net,
        zone: &str,
        role: (&str, &str),
    ) -> Result<String, ActionError> {
        let call = "CreateSubnet";
        let made = self
            .ec2
            .create_subnet()
            .vpc_id(vpc)
            .cidr_block(cidr.to_string())
            .availability_zone(zone)
            .tag_specifications(tagger.spec(ResourceType::Subnet, part, &[role]))
            .send()
            .await
            .map_err(|err| match sdk::code(&err) {
                // Made by an attempt whose subnet the last look did not see yet.
                Some("InvalidSubnet.Conflict") => ActionError::Retryable(format!(
                    "{call}: {cidr} is taken in {vpc}; looking again"
                )),
                _ => classify(call, &err),
            })?;
        made.subnet()
            .and_then(|s| s.subnet_id())
            .map(str::to_string)
            .ok_or_else(|| missing(call, "a subnet id"))
    }

    /// The internet gateway, found or made, and attached to the VPC.
    async fn internet_gateway(
        &self,
        step: &Step<'_>,
        tagger: &Tagger,
        vpc: &str,
    ) -> Result<String, ActionError> {
        let call = "DescribeInternetGateways";
        let answer = self
            .ec2
            .describe_internet_gateways()
            .set_filters(Some(ours(step)))
            .send()
            .await
            .map_err(|err| classify(call, &err))?;
        let found = answer
            .internet_gateways()
            .iter()
            .find(|g| part_of(g.tags(), step).as_deref() == Some(GATEWAY));
        let (id, attached) = match found {
            Some(gateway) => (
                gateway
                    .internet_gateway_id()
                    .ok_or_else(|| missing(call, "a gateway id"))?
                    .to_string(),
                gateway
                    .attachments()
                    .iter()
                    .any(|a| a.vpc_id() == Some(vpc)),
            ),
            None => {
                let call = "CreateInternetGateway";
                let made = self
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(tagger.spec(ResourceType::InternetGateway, GATEWAY, &[]))
                    .send()
                    .await
                    .map_err(|err| classify(call, &err))?;
                let id = made
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .ok_or_else(|| missing(call, "a gateway id"))?
                    .to_string();
                (id, false)
            }
        };
        keep(
            step,
            Resource::new(kind::INTERNET_GATEWAY, &id).with("vpc_id", vpc),
        )
        .await?;
        if !attached {
            let call = "AttachInternetGateway";
            let attach = self
                .ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc)
                .send()
                .await;
            match attach {
                Ok(_) => {}
                Err(err) if sdk::code(&err) == Some("Resource.AlreadyAssociated") => {}
                Err(err) => return Err(classify(call, &err)),
            }
        }
        Ok(id)
    }

    /// The NAT gateways `nat` asks for, each with its Elastic IP, in the
    /// public subnet of its zone; found or made.
    async fn nat_gateways(
        &self,
        step: &Step<'_>,
        tagger: &Tagger,
        vpc: &str,
        plan: &[ZonePlan],
        nat: Nat,
        subnets: &BTreeMap<String, String>,
    ) -> Result<Vec<NatGateway>, ActionError> {
        let zones = match nat {
            Nat::None => return Ok(Vec::new()),
            Nat::Single => &plan[..plan.len().min(1)],
            Nat::PerAz => plan,
        };
        let call = "DescribeAddresses";
        let answer = self
            .ec2
            .describe_addresses()
            .set_filters(Some(ours(step)))
            .send()
            .await
            .map_err(|err| classify(call, &err))?;
        let addresses: BTreeMap<String, String> = answer
            .addresses()
            .iter()
            .filter_map(|a| Some((part_of(a.tags(), step)?, a.allocation_id()?.to_string())))
            .collect();
        let call = "DescribeNatGateways";
        let mut request = self
            .ec2
            .describe_nat_gateways()
            .filter(filter("vpc-id", &[vpc]));
        for tag in ours(step) {
            request = request.filter(tag);
        }
        let answer = request.send().await.map_err(|err| classify(call, &err))?;
        // One that is going or gone is from an earlier run, which failed.
        let found: BTreeMap<String, NatGateway> = answer
            .nat_gateways()
            .iter()
            .filter(|n| {
                !matches!(
                    n.state(),
                    Some(NatGatewayState::Deleting | NatGatewayState::Deleted)
                )
            })
            .filter_map(|n| {
                let part = part_of(n.tags(), step)?;
                Some((
                    part,
                    NatGateway {
                        id: n.nat_gateway_id()?.to_string(),
                        zone: String::new(),
                        state: n.state().cloned().unwrap_or(NatGatewayState::Pending),
                        failure: failure(n.failure_code(), n.failure_message()),
                    },
                ))
            })
            .collect();
        let mut gateways = Vec::new();
        for zone in zones {
            let part = format!("nat-{}", zone.letter);
            let allocation = match addresses.get(&part) {
                Some(id) => id.clone(),
                None => {
                    let call = "AllocateAddress";
                    let made = self
                        .ec2
                        .allocate_address()
                        .domain(DomainType::Vpc)
                        .tag_specifications(tagger.spec(ResourceType::ElasticIp, &part, &[]))
                        .send()
                        .await
                        .map_err(|err| classify(call, &err))?;
                    made.allocation_id()
                        .ok_or_else(|| missing(call, "an allocation id"))?
                        .to_string()
                }
            };
            keep(
                step,
                Resource::new(kind::ELASTIC_IP, &allocation).with("part", &part),
            )
            .await?;
            let mut gateway = match found.get(&part) {
                Some(gateway) => gateway.clone(),
                None => {
                    let subnet = subnets
                        .get(&format!("{PUBLIC}-{}", zone.letter))
                        .ok_or_else(|| {
                            ActionError::Fatal(format!(
                                "no public subnet in {} for its NAT gateway",
                                zone.zone
                            ))
                        })?;
                    // A token names one gateway: the same until this part's
                    // gateway is in the ledger, a new one for a later run
                    // whose earlier gateway failed and went.
                    let generation = step
                        .recorded(kind::NAT_GATEWAY)
                        .filter(|r| r.detail("part") == Some(part.as_str()))
                        .count();
                    let call = "CreateNatGateway";
                    let made = self
                        .ec2
                        .create_nat_gateway()
                        .subnet_id(subnet)
                        .allocation_id(&allocation)
                        .client_token(client_token(step, &part, generation))
                        .tag_specifications(tagger.spec(ResourceType::Natgateway, &part, &[]))
                        .send()
                        .await
                        .map_err(|err| classify(call, &err))?;
                    let nat = made
                        .nat_gateway()
                        .ok_or_else(|| missing(call, "a NAT gateway"))?;
                    NatGateway {
                        id: nat
                            .nat_gateway_id()
                            .ok_or_else(|| missing(call, "a NAT gateway id"))?
                            .to_string(),
                        zone: String::new(),
                        state: nat.state().cloned().unwrap_or(NatGatewayState::Pending),
                        failure: failure(nat.failure_code(), nat.failure_message()),
                    }
                }
            };
            gateway.zone = zone.zone.clone();
            keep(
                step,
                Resource::new(kind::NAT_GATEWAY, &gateway.id)
                    .with("part", &part)
                    .with("zone", &zone.zone)
                    .with("allocation_id", &allocation),
            )
            .await?;
            gateways.push(gateway);
        }
        Ok(gateways)
    }

    /// The step's route tables in the VPC, by part.
    async fn route_tables(
        &self,
        step: &Step<'_>,
        vpc: &str,
    ) -> Result<BTreeMap<String, Table>, ActionError> {
        let call = "DescribeRouteTables";
        let mut filters = ours(step);
        filters.push(filter("vpc-id", &[vpc]));
        let answer = self
            .ec2
            .describe_route_tables()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|err| classify(call, &err))?;
        Ok(answer
            .route_tables()
            .iter()
            .filter_map(|t| {
                let part = part_of(t.tags(), step)?;
                Some((
                    part,
                    Table {
                        id: t.route_table_id()?.to_string(),
                        default_route: t
                            .routes()
                            .iter()
                            .any(|r| r.destination_cidr_block() == Some(ANYWHERE)),
                        associations: t
                            .associations()
                            .iter()
                            .filter_map(|a| {
                                Some((
                                    a.route_table_association_id()?.to_string(),
                                    a.subnet_id()?.to_string(),
                                ))
                            })
                            .collect(),
                    },
                ))
            })
            .collect())
    }

    /// A route table with its default route to its target, associated
    /// with its subnets; found or made.
    async fn route_table(
        &self,
        step: &Step<'_>,
        tagger: &Tagger,
        vpc: &str,
        wanted: Routes<'_>,
    ) -> Result<String, ActionError> {
        let Routes {
            part,
            found,
            target,
            subnets,
        } = wanted;
        let table = match found {
            Some(table) => table.clone(),
            None => {
                let call = "CreateRouteTable";
                let made = self
                    .ec2
                    .create_route_table()
                    .vpc_id(vpc)
                    .tag_specifications(tagger.spec(ResourceType::RouteTable, part, &[]))
                    .send()
                    .await
                    .map_err(|err| classify(call, &err))?;
                Table {
                    id: made
                        .route_table()
                        .and_then(|t| t.route_table_id())
                        .ok_or_else(|| missing(call, "a route table id"))?
                        .to_string(),
                    ..Table::default()
                }
            }
        };
        keep(
            step,
            Resource::new(kind::ROUTE_TABLE, &table.id).with("part", part),
        )
        .await?;
        if !table.default_route {
            let call = "CreateRoute";
            let route = self
                .ec2
                .create_route()
                .route_table_id(&table.id)
                .destination_cidr_block(ANYWHERE);
            let route = match target {
                Target::Gateway(id) => route.gateway_id(id),
                Target::Nat(id) => route.nat_gateway_id(id),
            };
            match route.send().await {
                Ok(_) => {}
                Err(err) if sdk::code(&err) == Some("RouteAlreadyExists") => {}
                Err(err) => return Err(classify(call, &err)),
            }
        }
        for subnet in subnets {
            let association = match table.associations.iter().find(|(_, s)| s == subnet) {
                Some((id, _)) => id.clone(),
                None => {
                    let call = "AssociateRouteTable";
                    let made = self
                        .ec2
                        .associate_route_table()
                        .route_table_id(&table.id)
                        .subnet_id(*subnet)
                        .send()
                        .await
                        .map_err(|err| match sdk::code(&err) {
                            Some("Resource.AlreadyAssociated") => ActionError::Retryable(format!(
                                "{call}: {subnet} is associated already; looking again"
                            )),
                            _ => classify(call, &err),
                        })?;
                    made.association_id()
                        .ok_or_else(|| missing(call, "an association id"))?
                        .to_string()
                }
            };
            keep(
                step,
                Resource::new(kind::ROUTE_TABLE_ASSOCIATION, association)
                    .with("route_table_id", &table.id)
                    .with("subnet_id", *subnet),
            )
            .await?;
        }
        Ok(table.id)
    }

    /// The cluster's and the database's security groups with their rules:
    /// the cluster's admits itself, the database's admits PostgreSQL from
    /// the cluster's. Both keep AWS's default egress.
    async fn security_groups(
        &self,
        step: &Step<'_>,
        tagger: &Tagger,
        vpc: &str,
    ) -> Result<(String, String), ActionError> {
        let call = "DescribeSecurityGroups";
        let mut filters = ours(step);
        filters.push(filter("vpc-id", &[vpc]));
        let answer = self
            .ec2
            .describe_security_groups()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|err| classify(call, &err))?;
        let found: BTreeMap<String, String> = answer
            .security_groups()
            .iter()
            .filter_map(|g| Some((part_of(g.tags(), step)?, g.group_id()?.to_string())))
            .collect();
        let request = &step.request.id;
        let cluster = self
            .security_group(
                step,
                tagger,
                vpc,
                CLUSTER,
                found.get(CLUSTER),
                &format!("PAO request {request}: the cluster and its workloads"),
            )
            .await?;
        let database = self
            .security_group(
                step,
                tagger,
                vpc,
                DATABASE,
                found.get(DATABASE),
                &format!(
                    "PAO request {request}: the database, PostgreSQL from the cluster group only"
                ),
            )
            .await?;
        let rules = [
            Rule {
                part: "cluster-self",
                group: &cluster,
                source: &cluster,
                protocol: "-1",
                port: None,
            },
            Rule {
                part: "database-postgres",
                group: &database,
                source: &cluster,
                protocol: "tcp",
                port: Some(POSTGRES_PORT),
            },
        ];
        let existing = self.rules(&[&cluster, &database]).await?;
        for rule in &rules {
            self.rule(step, tagger, rule, &existing).await?;
        }
        Ok((cluster, database))
    }

    async fn security_group(
        &self,
        step: &Step<'_>,
        tagger: &Tagger,
        vpc: &str,
        part: &str,
        found: Option<&String>,
        description: &str,
    ) -> Result<String, ActionError> {
        let id = match found {
            Some(id) => id.clone(),
            None => {
                let call = "CreateSecurityGroup";
                let made = self
                    .ec2
                    .create_security_group()
                    .group_name(step.name(part))
                    .description(description)
                    .vpc_id(vpc)
                    .tag_specifications(tagger.spec(ResourceType::SecurityGroup, part, &[]))
                    .send()
                    .await
                    .map_err(|err| match sdk::code(&err) {
                        Some("InvalidGroup.Duplicate") => ActionError::Retryable(format!(
                            "{call}: {} exists already; looking again",
                            step.name(part)
                        )),
                        _ => classify(call, &err),
                    })?;
                made.group_id()
                    .ok_or_else(|| missing(call, "a group id"))?
                    .to_string()
            }
        };
        keep(
            step,
            Resource::new(kind::SECURITY_GROUP, &id).with("part", part),
        )
        .await?;
        Ok(id)
    }

    async fn rules(&self, groups: &[&str]) -> Result<Vec<SecurityGroupRule>, ActionError> {
        let call = "DescribeSecurityGroupRules";
        let answer = self
            .ec2
            .describe_security_group_rules()
            .filters(filter("group-id", groups))
            .send()
            .await
            .map_err(|err| classify(call, &err))?;
        Ok(answer.security_group_rules().to_vec())
    }

    async fn rule(
        &self,
        step: &Step<'_>,
        tagger: &Tagger,
        rule: &Rule<'_>,
        existing: &[SecurityGroupRule],
    ) -> Result<(), ActionError> {
        let mut ids: Vec<String> = existing
            .iter()
            .filter(|r| rule.matches(r))
            .filter_map(|r| r.security_group_rule_id().map(str::to_string))
            .collect();
        if ids.is_empty() {
            let call = "AuthorizeSecurityGroupIngress";
            let made = self
                .ec2
                .authorize_security_group_ingress()
                .group_id(rule.group)
                .ip_permissions(rule.permission())
                .tag_specifications(tagger.spec(ResourceType::SecurityGroupRule, rule.part, &[]))
                .send()
                .await;
            let made = match made {
                Ok(made) => made.security_group_rules().to_vec(),
                // Made by an earlier attempt that the last look missed.
                Err(err) if sdk::code(&err) == Some("InvalidPermission.Duplicate") => Vec::new(),
                Err(err) => return Err(classify(call, &err)),
            };
            ids = made
                .iter()
                .filter_map(|r| r.security_group_rule_id().map(str::to_string))
                .collect();
            if ids.is_empty() {
                ids = self
                    .rules(&[rule.group])
                    .await?
                    .iter()
                    .filter(|r| rule.matches(r))
                    .filter_map(|r| r.security_group_rule_id().map(str::to_string))
                    .collect();
            }
        }
        for id in ids {
            keep(
                step,
                Resource::new(kind::SECURITY_GROUP_RULE, id)
                    .with("group_id", rule.group)
                    .with("part", rule.part),
            )
            .await?;
        }
        Ok(())
    }

    /// The VPC's flow log to its own log group, found or made.
    async fn flow_log(
        &self,
        step: &Step<'_>,
        tagger: &Tagger,
        vpc: &str,
    ) -> Result<(), ActionError> {
        let call = "DescribeFlowLogs";
        let mut filters = ours(step);
        filters.push(filter("resource-id", &[vpc]));
        let answer = self
            .ec2
            .describe_flow_logs()
            .set_filter(Some(filters))
            .send()
            .await
            .map_err(|err| classify(call, &err))?;
        let found = answer
            .flow_logs()
            .iter()
            .find(|f| part_of(f.tags(), step).as_deref() == Some(FLOW_LOGS));
        // The name is known before the group exists: in the ledger first.
        let group = log_group(step);
        keep(step, Resource::new(kind::LOG_GROUP, &group)).await?;
        if let Some(id) = found.and_then(|f| f.flow_log_id()) {
            return keep(
                step,
                Resource::new(kind::FLOW_LOG, id).with("log_group", &group),
            )
            .await;
        }
        let call = "CreateLogGroup";
        let made = self
            .logs
            .create_log_group()
            .log_group_name(&group)
            .set_tags(Some(tagger.pairs(FLOW_LOGS).into_iter().collect()))
            .send()
            .await;
        match made {
            Ok(_) => {}
            Err(err) if sdk::code(&err) == Some("ResourceAlreadyExistsException") => {}
            Err(err) => return Err(classify(call, &err)),
        }
        self.logs
            .put_retention_policy()
            .log_group_name(&group)
            .retention_in_days(self.flow_logs.retention_days)
            .send()
            .await
            .map_err(|err| classify("PutRetentionPolicy", &err))?;
        let call = "CreateFlowLogs";
        let generation = step.recorded(kind::FLOW_LOG).count();
        let made = self
            .ec2
            .create_flow_logs()
            .resource_type(FlowLogsResourceType::Vpc)
            .resource_ids(vpc)
            .traffic_type(TrafficType::All)
            .log_destination_type(LogDestinationType::CloudWatchLogs)
            .log_group_name(&group)
            .deliver_logs_permission_arn(&self.flow_logs.role_arn)
            .client_token(client_token(step, FLOW_LOGS, generation))
            .tag_specifications(tagger.spec(ResourceType::VpcFlowLog, FLOW_LOGS, &[]))
            .send()
            .await
            .map_err(|err| match sdk::code(&err) {
                Some("FlowLogAlreadyExists") => ActionError::Retryable(format!(
                    "{call}: the flow log of {vpc} exists already; looking again"
                )),
                _ => classify(call, &err),
            })?;
        if let Some(refused) = made.unsuccessful().first() {
            let reason = refused
                .error()
                .map(|e| format!("{}: {}", e.code().unwrap_or(""), e.message().unwrap_or("")))
                .unwrap_or_default();
            return Err(ActionError::Fatal(format!(
                "{call}: refused for {vpc}: {reason}"
            )));
        }
        let id = made
            .flow_log_ids()
            .first()
            .ok_or_else(|| missing(call, "a flow log id"))?;
        keep(
            step,
            Resource::new(kind::FLOW_LOG, id).with("log_group", &group),
        )
        .await
    }
}

/// The flow logs' log group of the step: `pao/vpc-flow-logs/pao-<request>-<action>`.
pub fn log_group(step: &Step<'_>) -> String {
    format!("pao/vpc-flow-logs/{}", step.name(""))
}

fn failure(code: Option<&str>, message: Option<&str>) -> Option<String> {
    match (code, message) {
        (None, None) => None,
        (code, message) => Some(format!(
            "{}: {}",
            code.unwrap_or("no code"),
            message.unwrap_or("no message")
        )),
    }
}

#[async_trait]
impl Driver for NetworkDriver {
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let config: Config = step.config()?;
        let (cidr, zone_count) = config.checked()?;
        // Too small a block is refused before anything is asked of AWS.
        carve(cidr, if config.public_subnets { 2 } else { 1 } * zone_count)
            .map_err(|err| ActionError::Fatal(format!("config.cidr_block: {err}")))?;
        let zones = self.zones(zone_count).await?;
        let plan = layout(cidr, &zones, config.public_subnets)
            .map_err(|err| ActionError::Fatal(format!("config.cidr_block: {err}")))?;
        let tagger = Tagger::new(step, &config.tags);

        let (vpc, available) = self.vpc(step, &tagger, cidr).await?;
        if !available {
            return Ok(Progress::Wait {
                seconds: VPC_WAIT_SECONDS,
                waiting_for: format!("VPC {vpc} to become available"),
            });
        }
        self.enable_dns_hostnames(&vpc).await?;
        let subnets = self.subnets(step, &tagger, &vpc, &plan).await?;
        let public: Vec<&str> = plan
            .iter()
            .filter_map(|z| subnets.get(&format!("{PUBLIC}-{}", z.letter)))
            .map(String::as_str)
            .collect();
        let private: Vec<&str> = plan
            .iter()
            .filter_map(|z| subnets.get(&format!("private-{}", z.letter)))
            .map(String::as_str)
            .collect();
        let tables = self.route_tables(step, &vpc).await?;
        if config.public_subnets {
            let gateway = self.internet_gateway(step, &tagger, &vpc).await?;
            let routes = Routes {
                part: PUBLIC,
                found: tables.get(PUBLIC),
                target: Target::Gateway(&gateway),
                subnets: &public,
            };
            self.route_table(step, &tagger, &vpc, routes).await?;
        }
        let (cluster, database) = self.security_groups(step, &tagger, &vpc).await?;
        if config.flow_logs {
            self.flow_log(step, &tagger, &vpc).await?;
        }
        let nats = self
            .nat_gateways(step, &tagger, &vpc, &plan, config.nat_gateway, &subnets)
            .await?;
        if let Some(nat) = nats.iter().find(|n| n.state == NatGatewayState::Failed) {
            return Err(ActionError::Fatal(format!(
                "NAT gateway {} in {} is {}: {}",
                nat.id,
                nat.zone,
                nat.state.as_str(),
                nat.failure.as_deref().unwrap_or("AWS gave no reason")
            )));
        }
        let pending: Vec<&str> = nats
            .iter()
            .filter(|n| n.state != NatGatewayState::Available)
            .map(|n| n.id.as_str())
            .collect();
        if !pending.is_empty() {
            return Ok(Progress::Wait {
                seconds: NAT_WAIT_SECONDS,
                waiting_for: format!("NAT gateway {} to become available", pending.join(", ")),
            });
        }
        // Private subnets route through the NAT of their zone, or the one.
        if let Some(first) = nats.first() {
            for zone in &plan {
                let nat = nats.iter().find(|n| n.zone == zone.zone).unwrap_or(first);
                let part = format!("private-{}", zone.letter);
                let Some(subnet) = subnets.get(&part) else {
                    continue;
                };
                let routes = Routes {
                    part: &part,
                    found: tables.get(&part),
                    target: Target::Nat(&nat.id),
                    subnets: &[subnet.as_str()],
                };
                self.route_table(step, &tagger, &vpc, routes).await?;
            }
        }
        let mut outputs = Map::new();
        let all: Vec<&str> = public.iter().chain(&private).copied().collect();
        outputs.insert("vpc_id".into(), json!(vpc));
        outputs.insert("subnet_ids".into(), json!(all));
        outputs.insert("public_subnet_ids".into(), json!(public));
        outputs.insert("private_subnet_ids".into(), json!(private));
        outputs.insert("security_group_id".into(), json!(cluster));
        outputs.insert("database_security_group_id".into(), json!(database));
        Ok(Progress::Done(Outputs::new(outputs)))
    }

    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError> {
        if step.resources.is_empty() {
            return Ok(Undone::Kept("the action made nothing".to_string()));
        }
        if step.retain() {
            return Ok(Undone::Kept(format!(
                "rollback.retain: the network's {} resources are kept ({})",
                step.resources.len(),
                summary(step)
            )));
        }
        // A network holds no data: a rollback of a completed request and
        // the compensation of a failed one both delete everything.
        let wait = |(seconds, waiting_for)| {
            Ok(Undone::Wait {
                seconds,
                waiting_for,
            })
        };
        if let Some(going) = self.delete_flow_logs(step).await? {
            return wait(going);
        }
        if let Some(going) = self.delete_nat_gateways(step).await? {
            return wait(going);
        }
        if let Some(going) = self.release_addresses(step).await? {
            return wait(going);
        }
        if let Some(going) = self.delete_route_tables(step).await? {
            return wait(going);
        }
        if let Some(going) = self.delete_internet_gateways(step).await? {
            return wait(going);
        }
        if let Some(going) = self.delete_security_groups(step).await? {
            return wait(going);
        }
        if let Some(going) = self.delete_subnets(step).await? {
            return wait(going);
        }
        if let Some(going) = self.delete_vpcs(step).await? {
            return wait(going);
        }
        Ok(Undone::Done(format!("deleted {}", summary(step))))
    }
}

/// What the ledger holds, counted: "VPC vpc-1, 4 subnets, ...".
fn summary(step: &Step<'_>) -> String {
    let count = |kind: &str| step.recorded(kind).count();
    let mut parts: Vec<String> = step
        .recorded(kind::VPC)
        .map(|vpc| format!("VPC {}", vpc.id))
        .collect();
    for (kind, one, many) in [
        (kind::SUBNET, "subnet", "subnets"),
        (
            kind::INTERNET_GATEWAY,
            "internet gateway",
            "internet gateways",
        ),
        (kind::NAT_GATEWAY, "NAT gateway", "NAT gateways"),
        (kind::ELASTIC_IP, "Elastic IP", "Elastic IPs"),
        (kind::ROUTE_TABLE, "route table", "route tables"),
        (kind::SECURITY_GROUP, "security group", "security groups"),
        (kind::FLOW_LOG, "flow log", "flow logs"),
        (kind::LOG_GROUP, "log group", "log groups"),
    ] {
        match count(kind) {
            0 => {}
            1 => parts.push(format!("1 {one}")),
            n => parts.push(format!("{n} {many}")),
        }
    }
    parts.join(", ")
}

/// A deletion still under way: how long to wait, and what for.
type Waiting = Option<(u32, String)>;

fn waiting(seconds: u32, what: &str, blocked: &[String]) -> Waiting {
    (!blocked.is_empty()).then(|| (seconds, format!("{what}: {}", blocked.join("; "))))
}

impl NetworkDriver {
    async fn delete_flow_logs(&self, step: &Step<'_>) -> Result<Waiting, ActionError> {
        let ids: Vec<String> = step
            .recorded(kind::FLOW_LOG)
            .map(|r| r.id.clone())
            .collect();
        if !ids.is_empty() {
            let call = "DeleteFlowLogs";
            match self
                .ec2
                .delete_flow_logs()
                .set_flow_log_ids(Some(ids))
                .send()
                .await
            {
                Ok(answer) => {
                    for refused in answer.unsuccessful() {
                        let code = refused.error().and_then(|e| e.code());
                        if !sdk::gone(code) {
                            let message = refused.error().and_then(|e| e.message()).unwrap_or("");
                            return Err(ActionError::Fatal(format!(
                                "{call}: {} refused: {}: {message}",
                                refused.resource_id().unwrap_or("a flow log"),
                                code.unwrap_or("no code")
                            )));
                        }
                    }
                }
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                Err(err) => return Err(classify(call, &err)),
            }
        }
        for group in step.recorded(kind::LOG_GROUP) {
            match self
                .logs
                .delete_log_group()
                .log_group_name(&group.id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                Err(err) => return Err(classify("DeleteLogGroup", &err)),
            }
        }
        Ok(None)
    }

    async fn delete_nat_gateways(&self, step: &Step<'_>) -> Result<Waiting, ActionError> {
        let mut going = Vec::new();
        for nat in step.recorded(kind::NAT_GATEWAY) {
            let call = "DescribeNatGateways";
            let state = match self
                .ec2
                .describe_nat_gateways()
                .nat_gateway_ids(&nat.id)
                .send()
                .await
            {
                Ok(answer) => answer
                    .nat_gateways()
                    .iter()
                    .find(|n| n.nat_gateway_id() == Some(nat.id.as_str()))
                    .and_then(|n| n.state().cloned()),
                Err(err) if sdk::gone(sdk::code(&err)) => None,
                Err(err) => return Err(classify(call, &err)),
            };
            match state {
                None | Some(NatGatewayState::Deleted) => {}
                Some(NatGatewayState::Deleting) => going.push(nat.id.clone()),
                Some(_) => {
                    let call = "DeleteNatGateway";
                    match self
                        .ec2
                        .delete_nat_gateway()
                        .nat_gateway_id(&nat.id)
                        .send()
                        .await
                    {
                        Ok(_) => going.push(nat.id.clone()),
                        Err(err) if sdk::gone(sdk::code(&err)) => {}
                        Err(err) => return Err(classify(call, &err)),
                    }
                }
            }
        }
        Ok(waiting(
            NAT_WAIT_SECONDS,
            "NAT gateways to be deleted",
            &going,
        ))
    }

    async fn release_addresses(&self, step: &Step<'_>) -> Result<Waiting, ActionError> {
        let mut blocked = Vec::new();
        for address in step.recorded(kind::ELASTIC_IP) {
            let call = "ReleaseAddress";
            match self
                .ec2
                .release_address()
                .allocation_id(&address.id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                // Still held by a NAT gateway on its way out.
                Err(err) if sdk::code(&err) == Some("InvalidIPAddress.InUse") => {
                    blocked.push(format!(
                        "{} ({})",
                        address.id,
                        err.message().unwrap_or("in use")
                    ));
                }
                Err(err) => return Err(classify(call, &err)),
            }
        }
        Ok(waiting(
            DEPENDENCY_WAIT_SECONDS,
            "Elastic IPs to be released",
            &blocked,
        ))
    }

    async fn delete_route_tables(&self, step: &Step<'_>) -> Result<Waiting, ActionError> {
        for association in step.recorded(kind::ROUTE_TABLE_ASSOCIATION) {
            let call = "DisassociateRouteTable";
            match self
                .ec2
                .disassociate_route_table()
                .association_id(&association.id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                Err(err) => return Err(classify(call, &err)),
            }
        }
        // A table's routes go with it.
        let mut blocked = Vec::new();
        for table in step.recorded(kind::ROUTE_TABLE) {
            let call = "DeleteRouteTable";
            match self
                .ec2
                .delete_route_table()
                .route_table_id(&table.id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                Err(err) if sdk::code(&err) == Some("DependencyViolation") => {
                    blocked.push(dependency(&table.id, &err));
                }
                Err(err) => return Err(classify(call, &err)),
            }
        }
        Ok(waiting(
            DEPENDENCY_WAIT_SECONDS,
            "route tables to be free to delete",
            &blocked,
        ))
    }

    async fn delete_internet_gateways(&self, step: &Step<'_>) -> Result<Waiting, ActionError> {
        let mut blocked = Vec::new();
        for gateway in step.recorded(kind::INTERNET_GATEWAY) {
            if let Some(vpc) = gateway.detail("vpc_id") {
                let call = "DetachInternetGateway";
                match self
                    .ec2
                    .detach_internet_gateway()
                    .internet_gateway_id(&gateway.id)
                    .vpc_id(vpc)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(err) if sdk::gone(sdk::code(&err)) => continue,
                    Err(err) if sdk::code(&err) == Some("Gateway.NotAttached") => {}
                    // Public addresses still mapped in the VPC.
                    Err(err) if sdk::code(&err) == Some("DependencyViolation") => {
                        blocked.push(dependency(&gateway.id, &err));
                        continue;
                    }
                    Err(err) => return Err(classify(call, &err)),
                }
            }
            let call = "DeleteInternetGateway";
            match self
                .ec2
                .delete_internet_gateway()
                .internet_gateway_id(&gateway.id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                Err(err) if sdk::code(&err) == Some("DependencyViolation") => {
                    blocked.push(dependency(&gateway.id, &err));
                }
                Err(err) => return Err(classify(call, &err)),
            }
        }
        Ok(waiting(
            DEPENDENCY_WAIT_SECONDS,
            "the internet gateway to be free to delete",
            &blocked,
        ))
    }

    async fn delete_security_groups(&self, step: &Step<'_>) -> Result<Waiting, ActionError> {
        for rule in step.recorded(kind::SECURITY_GROUP_RULE) {
            let Some(group) = rule.detail("group_id") else {
                continue;
            };
            let call = "RevokeSecurityGroupIngress";
            match self
                .ec2
                .revoke_security_group_ingress()
                .group_id(group)
                .security_group_rule_ids(&rule.id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                Err(err) => return Err(classify(call, &err)),
            }
        }
        // The database's group first: its rule named the cluster's.
        let mut groups: Vec<&Resource> = step.recorded(kind::SECURITY_GROUP).collect();
        groups.sort_by_key(|g| g.detail("part") != Some(DATABASE));
        let mut blocked = Vec::new();
        for group in groups {
            let call = "DeleteSecurityGroup";
            match self
                .ec2
                .delete_security_group()
                .group_id(&group.id)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                // Network interfaces (a database, a cluster) still in it.
                Err(err) if sdk::code(&err) == Some("DependencyViolation") => {
                    blocked.push(dependency(&group.id, &err));
                }
                Err(err) => return Err(classify(call, &err)),
            }
        }
        Ok(waiting(
            DEPENDENCY_WAIT_SECONDS,
            "security groups to be free to delete",
            &blocked,
        ))
    }

    async fn delete_subnets(&self, step: &Step<'_>) -> Result<Waiting, ActionError> {
        let mut blocked = Vec::new();
        for subnet in step.recorded(kind::SUBNET) {
            let call = "DeleteSubnet";
            match self.ec2.delete_subnet().subnet_id(&subnet.id).send().await {
                Ok(_) => {}
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                Err(err) if sdk::code(&err) == Some("DependencyViolation") => {
                    blocked.push(dependency(&subnet.id, &err));
                }
                Err(err) => return Err(classify(call, &err)),
            }
        }
        Ok(waiting(
            DEPENDENCY_WAIT_SECONDS,
            "subnets to be free to delete",
            &blocked,
        ))
    }

    async fn delete_vpcs(&self, step: &Step<'_>) -> Result<Waiting, ActionError> {
        let mut blocked = Vec::new();
        for vpc in step.recorded(kind::VPC) {
            let call = "DeleteVpc";
            match self.ec2.delete_vpc().vpc_id(&vpc.id).send().await {
                Ok(_) => {}
                Err(err) if sdk::gone(sdk::code(&err)) => {}
                Err(err) if sdk::code(&err) == Some("DependencyViolation") => {
                    blocked.push(dependency(&vpc.id, &err));
                }
                Err(err) => return Err(classify(call, &err)),
            }
        }
        Ok(waiting(
            DEPENDENCY_WAIT_SECONDS,
            "the VPC to be free to delete",
            &blocked,
        ))
    }
}

/// `subnet-1 (DependencyViolation: ...)`, for the request's log.
fn dependency<E: ProvideErrorMetadata>(id: &str, err: &SdkError<E, HttpResponse>) -> String {
    format!("{id} ({})", err.message().unwrap_or("DependencyViolation"))
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
