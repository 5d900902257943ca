//! The driver against the SDK's test client: every state an instance can
//! report, every "already exists" and "not found", and the rules of
//! compensation. The requests each test expects are its rules, matched in
//! order; a request no rule expects fails the test.

use std::sync::{Arc, Mutex};

use aws_sdk_rds::config::retry::RetryConfig;
use aws_sdk_rds::error::ErrorMetadata;
use aws_sdk_rds::operation::create_db_instance::{
    CreateDBInstanceError, CreateDbInstanceInput, CreateDbInstanceOutput,
};
use aws_sdk_rds::operation::create_db_parameter_group::{
    CreateDBParameterGroupError, CreateDbParameterGroupOutput,
};
use aws_sdk_rds::operation::create_db_subnet_group::{
    CreateDBSubnetGroupError, CreateDbSubnetGroupOutput,
};
use aws_sdk_rds::operation::delete_db_instance::{
    DeleteDBInstanceError, DeleteDbInstanceInput, DeleteDbInstanceOutput,
};
use aws_sdk_rds::operation::delete_db_parameter_group::{
    DeleteDBParameterGroupError, DeleteDbParameterGroupOutput,
};
use aws_sdk_rds::operation::delete_db_subnet_group::{
    DeleteDBSubnetGroupError, DeleteDbSubnetGroupOutput,
};
use aws_sdk_rds::operation::describe_db_instances::{
    DescribeDBInstancesError, DescribeDbInstancesOutput,
};
use aws_sdk_rds::operation::describe_db_parameter_groups::{
    DescribeDBParameterGroupsError, DescribeDbParameterGroupsOutput,
};
use aws_sdk_rds::operation::describe_db_subnet_groups::{
    DescribeDBSubnetGroupsError, DescribeDbSubnetGroupsOutput,
};
use aws_sdk_rds::operation::modify_db_instance::ModifyDbInstanceOutput;
use aws_sdk_rds::operation::modify_db_parameter_group::ModifyDbParameterGroupOutput;
use aws_sdk_rds::primitives::DateTime;
use aws_sdk_rds::types::error::{
    DbInstanceAlreadyExistsFault, DbInstanceNotFoundFault, DbParameterGroupAlreadyExistsFault,
    DbParameterGroupNotFoundFault, DbSubnetGroupAlreadyExistsFault, DbSubnetGroupNotFoundFault,
    InvalidDbInstanceStateFault, InvalidDbParameterGroupStateFault,
};
use aws_sdk_rds::types::{DbParameterGroup, DbSubnetGroup, Endpoint, MasterUserSecret};
use aws_sdk_rds::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use serde_json::json;

use super::*;
use crate::actions::memory::{Fixture, MemoryJournal};
use crate::requests::RequestStatus;

const REQUEST: &str = "0190a4c2-7b3e-7c41-9d2a-3f5e8a1b2c3d";
const INSTANCE_ID: &str = "pao-0190a4c2-7b3e-7c41-9d2a-3f5e8a1b2c3d-database";
const SUBNETS: &str = "pao-0190a4c2-7b3e-7c41-9d2a-3f5e8a1b2c3d-database-subnets";
const PARAMS: &str = "pao-0190a4c2-7b3e-7c41-9d2a-3f5e8a1b2c3d-database-params";
const SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-0a1b2c3d-4e5f-aBcDeF";
const CREATED_AT: i64 = 1_764_636_098;

/// The database of the EKS stack item, its templates filled in.
fn config() -> Value {
    json!({
        "engine_version": "16.4",
        "instance_class": "db.t4g.medium",
        "allocated_storage_gb": 50,
        "max_allocated_storage_gb": 200,
        "storage_type": "gp3",
        "multi_az": true,
        "db_name": "orders",
        "master_username": "app_admin",
        "backup_retention_days": 14,
        "backup_window": "01:00-02:00",
        "maintenance_window": "sun:03:00-sun:04:00",
        "storage_encrypted": true,
        "deletion_protection": true,
        "performance_insights": true,
        "vpc_id": "vpc-0abc1234",
        "subnet_ids": ["subnet-0aaa1111", "subnet-0bbb2222"],
        "vpc_security_group_ids": ["sg-0ccc3333"],
        "parameters": {"log_min_duration_statement": "500", "rds.force_ssl": "1"},
        "tags": {"app": "orders", "environment": "prod"},
    })
}

fn fixture(config: Value) -> Fixture {
    Fixture::new(
        REQUEST,
        "eks-app-stack",
        ActionType::AwsRdsPostgres,
        "database",
        config,
    )
}

/// A driver whose client answers only `rules`, in order, without retries.
/// A request no rule expects fails the test at once; a rule no request
/// used fails it when the driver is dropped.
fn driver(rules: &[&Rule]) -> Mocked {
    Mocked {
        driver: RdsDriver::new(mock_client!(
            aws_sdk_rds,
            RuleMode::Sequential,
            rules.iter().copied(),
            |config| config.retry_config(RetryConfig::disabled())
        )),
        rules: rules.iter().map(|rule| (*rule).clone()).collect(),
    }
}

struct Mocked {
    driver: RdsDriver,
    rules: Vec<Rule>,
}

impl std::ops::Deref for Mocked {
    type Target = RdsDriver;

    fn deref(&self) -> &RdsDriver {
        &self.driver
    }
}

impl Drop for Mocked {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for (index, rule) in self.rules.iter().enumerate() {
            assert!(
                rule.num_calls() > 0,
                "the call of rule {index} was never made"
            );
        }
    }
}

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(format!("{code} (test)"))
        .build()
}

fn instance(state: &str) -> DbInstance {
    like(state).build()
}

/// An instance of this request in `state`, to be varied.
fn like(state: &str) -> aws_sdk_rds::types::builders::DbInstanceBuilder {
    DbInstance::builder()
        .db_instance_identifier(INSTANCE_ID)
        .db_instance_status(state)
        .db_name("orders")
        .endpoint(
            Endpoint::builder()
                .address("orders.abc123.us-east-1.rds.amazonaws.com")
                .port(5432)
                .build(),
        )
        .master_user_secret(MasterUserSecret::builder().secret_arn(SECRET_ARN).build())
        .tag_list(Tag::builder().key(REQUEST_TAG).value(REQUEST).build())
        .deletion_protection(true)
        .instance_create_time(DateTime::from_secs(CREATED_AT))
}

fn described(instance: DbInstance) -> Rule {
    mock!(Client::describe_db_instances)
        .match_requests(|r| r.db_instance_identifier() == Some(INSTANCE_ID))
        .then_output(move || {
            DescribeDbInstancesOutput::builder()
                .db_instances(instance.clone())
                .build()
        })
}

fn no_instance() -> Rule {
    mock!(Client::describe_db_instances)
        .match_requests(|r| r.db_instance_identifier() == Some(INSTANCE_ID))
        .then_error(|| {
            DescribeDBInstancesError::DbInstanceNotFoundFault(
                DbInstanceNotFoundFault::builder()
                    .meta(meta("DBInstanceNotFound"))
                    .build(),
            )
        })
}

fn ours() -> String {
    format!("PAO request {REQUEST}, action database")
}

fn subnet_group_found(description: String) -> Rule {
    mock!(Client::describe_db_subnet_groups)
        .match_requests(|r| r.db_subnet_group_name() == Some(SUBNETS))
        .then_output(move || {
            DescribeDbSubnetGroupsOutput::builder()
                .db_subnet_groups(
                    DbSubnetGroup::builder()
                        .db_subnet_group_name(SUBNETS)
                        .db_subnet_group_description(description.clone())
                        .build(),
                )
                .build()
        })
}

fn no_subnet_group() -> Rule {
    mock!(Client::describe_db_subnet_groups).then_error(|| {
        DescribeDBSubnetGroupsError::DbSubnetGroupNotFoundFault(
            DbSubnetGroupNotFoundFault::builder()
                .meta(meta("DBSubnetGroupNotFoundFault"))
                .build(),
        )
    })
}

fn parameter_group_found(description: String) -> Rule {
    mock!(Client::describe_db_parameter_groups)
        .match_requests(|r| r.db_parameter_group_name() == Some(PARAMS))
        .then_output(move || {
            DescribeDbParameterGroupsOutput::builder()
                .db_parameter_groups(
                    DbParameterGroup::builder()
                        .db_parameter_group_name(PARAMS)
                        .db_parameter_group_family("postgres16")
                        .description(description.clone())
                        .build(),
                )
                .build()
        })
}

fn no_parameter_group() -> Rule {
    mock!(Client::describe_db_parameter_groups).then_error(|| {
        DescribeDBParameterGroupsError::DbParameterGroupNotFoundFault(
            DbParameterGroupNotFoundFault::builder()
                .meta(meta("DBParameterGroupNotFound"))
                .build(),
        )
    })
}

/// The two parameters of the config, set for the next start.
fn parameters_set() -> Rule {
    mock!(Client::modify_db_parameter_group)
        .match_requests(|r| {
            let set: Vec<(&str, &str, Option<&ApplyMethod>)> = r
                .parameters()
                .iter()
                .map(|p| {
                    (
                        p.parameter_name().unwrap_or(""),
                        p.parameter_value().unwrap_or(""),
                        p.apply_method(),
                    )
                })
                .collect();
            r.db_parameter_group_name() == Some(PARAMS)
                && set
                    == vec![
                        (
                            "log_min_duration_statement",
                            "500",
                            Some(&ApplyMethod::PendingReboot),
                        ),
                        ("rds.force_ssl", "1", Some(&ApplyMethod::PendingReboot)),
                    ]
        })
        .then_output(|| ModifyDbParameterGroupOutput::builder().build())
}

fn kinds(resources: &[Resource]) -> Vec<(String, String)> {
    resources
        .iter()
        .map(|r| (r.kind.clone(), r.id.clone()))
        .collect()
}

fn outputs(progress: Progress) -> Value {
    match progress {
        Progress::Done(outputs) => {
            assert!(outputs.secret.is_empty(), "nothing is a secret value");
            Value::Object(outputs.values)
        }
        other => panic!("not done: {other:?}"),
    }
}

fn expected_outputs() -> Value {
    json!({
        "endpoint": "orders.abc123.us-east-1.rds.amazonaws.com",
        "port": 5432,
        "db_instance_id": INSTANCE_ID,
        "db_name": "orders",
        "master_secret_arn": SECRET_ARN,
    })
}

fn the_ledger() -> Vec<Resource> {
    vec![
        Resource::new(SUBNET_GROUP, SUBNETS),
        Resource::new(PARAMETER_GROUP, PARAMS).with("family", "postgres16"),
        Resource::new(INSTANCE, INSTANCE_ID),
    ]
}

// ------------------------------------------------------------------ names

#[test]
fn names_are_rds_identifiers_derived_from_the_request_and_the_action() {
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let names = Names::of(&fixture.step(&journal, &[]));
    assert_eq!(
        names,
        Names {
            instance: INSTANCE_ID.to_string(),
            subnet_group: SUBNETS.to_string(),
            parameter_group: PARAMS.to_string(),
        }
    );
    assert_eq!(identifier("pao-R1-app__db_", 63), "pao-r1-app-db");
    assert_eq!(identifier("--9lives", 63), "pao-9lives");
}

#[test]
fn a_name_too_long_for_rds_keeps_its_start_and_ends_with_a_hash() {
    let long = format!("pao-{REQUEST}-{}", "replicated_orders_database".repeat(3));
    let other = format!("pao-{REQUEST}-{}", "replicated_orders_databasf".repeat(3));
    let name = identifier(&long, MAX_INSTANCE_ID);
    assert!(name.len() <= MAX_INSTANCE_ID, "{name}");
    assert!(
        name.starts_with(&format!("pao-{REQUEST}-replicated")),
        "{name}"
    );
    assert!(!name.contains("--") && !name.ends_with('-'), "{name}");
    assert_eq!(name, identifier(&long, MAX_INSTANCE_ID), "deterministic");
    assert_ne!(name, identifier(&other, MAX_INSTANCE_ID), "distinct");
    let hash = name.rsplit('-').next().unwrap();
    assert_eq!(hash.len(), 8, "{name}");
}

// ------------------------------------------------------------------ config

#[tokio::test]
async fn a_config_that_does_not_hold_once_rendered_fails_before_any_call() {
    let cases = [
        ("engine_version", json!("sixteen"), "engine_version"),
        ("allocated_storage_gb", json!(10), "allocated_storage_gb"),
        ("max_allocated_storage_gb", json!(40), "must exceed"),
        ("storage_type", json!("io1"), "provisioned IOPS"),
        ("subnet_ids", json!(["subnet-0aaa1111"]), "subnet_ids"),
        ("master_password", json!("hunter2"), "master_password"),
    ];
    for (key, value, said) in cases {
        let mut config = config();
        config[key] = value;
        let fixture = fixture(config);
        let journal = MemoryJournal::default();
        // No rules: any call would fail the test.
        let err = driver(&[])
            .start(&fixture.step(&journal, &[]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ActionError::Fatal(m) if m.contains(said)),
            "{key}: {err:?}"
        );
        assert!(journal.resources().is_empty());
    }
}

#[test]
fn the_parameter_group_family_follows_the_engine_major_version() {
    let mut config: Config = serde_json::from_value(config()).unwrap();
    assert_eq!(config.family(), "postgres16");
    config.engine_version = "17".to_string();
    assert_eq!(config.family(), "postgres17");
}

// ------------------------------------------------------------------ start

#[tokio::test]
async fn a_start_makes_the_groups_then_the_instance_with_an_rds_managed_password() {
    let seen: Arc<Mutex<Option<CreateDbInstanceInput>>> = Arc::default();
    let seen_in = seen.clone();
    let subnet_group = mock!(Client::create_db_subnet_group)
        .match_requests(|r| {
            r.db_subnet_group_name() == Some(SUBNETS)
                && r.db_subnet_group_description() == Some(ours().as_str())
                && r.subnet_ids() == ["subnet-0aaa1111", "subnet-0bbb2222"]
                && r.tags()
                    .iter()
                    .any(|t| t.key() == Some("pao:request-id") && t.value() == Some(REQUEST))
                && r.tags()
                    .iter()
                    .any(|t| t.key() == Some("app") && t.value() == Some("orders"))
        })
        .then_output(|| CreateDbSubnetGroupOutput::builder().build());
    let parameter_group = mock!(Client::create_db_parameter_group)
        .match_requests(|r| {
            r.db_parameter_group_name() == Some(PARAMS)
                && r.db_parameter_group_family() == Some("postgres16")
                && r.tags().iter().any(|t| t.key() == Some("pao:action-id"))
        })
        .then_output(|| CreateDbParameterGroupOutput::builder().build());
    let create = mock!(Client::create_db_instance).then_compute_output(move |input| {
        *seen_in.lock().unwrap() = Some(input.clone());
        CreateDbInstanceOutput::builder()
            .db_instance(instance("creating"))
            .build()
    });
    let rules = [
        &no_subnet_group(),
        &subnet_group,
        &no_parameter_group(),
        &parameter_group,
        &parameters_set(),
        &no_instance(),
        &create,
    ];
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let progress = driver(&rules)
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert_eq!(
        progress,
        Progress::Wait {
            seconds: 60,
            waiting_for: format!("DB instance {INSTANCE_ID} to become available (it is creating)"),
        }
    );
    assert_eq!(
        kinds(&journal.resources()),
        kinds(&the_ledger()),
        "each recorded before it is made, in order"
    );
    let sent = seen.lock().unwrap().clone().expect("CreateDBInstance sent");
    assert_eq!(sent.db_instance_identifier(), Some(INSTANCE_ID));
    assert_eq!(sent.engine(), Some("postgres"));
    assert_eq!(sent.engine_version(), Some("16.4"));
    assert_eq!(sent.db_instance_class(), Some("db.t4g.medium"));
    assert_eq!(sent.manage_master_user_password(), Some(true));
    assert_eq!(sent.master_user_password(), None, "never a password");
    assert_eq!(sent.master_username(), Some("app_admin"));
    assert_eq!(sent.db_name(), Some("orders"));
    assert_eq!(sent.allocated_storage(), Some(50));
    assert_eq!(sent.max_allocated_storage(), Some(200));
    assert_eq!(sent.storage_type(), Some("gp3"));
    assert_eq!(sent.storage_encrypted(), Some(true));
    assert_eq!(sent.multi_az(), Some(true));
    assert_eq!(sent.backup_retention_period(), Some(14));
    assert_eq!(sent.preferred_backup_window(), Some("01:00-02:00"));
    assert_eq!(
        sent.preferred_maintenance_window(),
        Some("sun:03:00-sun:04:00")
    );
    assert_eq!(sent.enable_performance_insights(), Some(true));
    assert_eq!(sent.performance_insights_retention_period(), Some(7));
    assert_eq!(sent.deletion_protection(), Some(true));
    assert_eq!(sent.db_subnet_group_name(), Some(SUBNETS));
    assert_eq!(sent.db_parameter_group_name(), Some(PARAMS));
    assert_eq!(sent.vpc_security_group_ids(), ["sg-0ccc3333"]);
    assert_eq!(sent.publicly_accessible(), Some(false));
    assert_eq!(sent.copy_tags_to_snapshot(), Some(true));
    let tags: Vec<(&str, &str)> = sent
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(
        tags,
        [
            ("pao:request-id", REQUEST),
            ("pao:action-id", "database"),
            ("pao:item-id", "eks-app-stack"),
            ("app", "orders"),
            ("environment", "prod"),
        ]
    );
    assert!(journal
        .lines()
        .iter()
        .any(|(_, line)| line == &format!("creating DB instance {INSTANCE_ID}")));
}

#[tokio::test]
async fn a_start_after_a_crash_finds_what_it_made_and_makes_nothing_again() {
    let rules = [
        &subnet_group_found(ours()),
        &parameter_group_found(ours()),
        &parameters_set(),
        &described(instance("available")),
    ];
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    // The ledger holds the groups; the instance's record was lost.
    let ledger = &the_ledger()[..2];
    let progress = driver(&rules)
        .start(&fixture.step(&journal, ledger))
        .await
        .unwrap();
    assert_eq!(outputs(progress), expected_outputs());
    assert_eq!(
        kinds(&journal.resources()),
        vec![(INSTANCE.to_string(), INSTANCE_ID.to_string())],
        "only what the ledger lacked is recorded"
    );
}

#[tokio::test]
async fn already_exists_is_success_for_this_requests_own_resources() {
    let subnet_group_exists = mock!(Client::create_db_subnet_group).then_error(|| {
        CreateDBSubnetGroupError::DbSubnetGroupAlreadyExistsFault(
            DbSubnetGroupAlreadyExistsFault::builder()
                .meta(meta("DBSubnetGroupAlreadyExists"))
                .build(),
        )
    });
    let parameter_group_exists = mock!(Client::create_db_parameter_group).then_error(|| {
        CreateDBParameterGroupError::DbParameterGroupAlreadyExistsFault(
            DbParameterGroupAlreadyExistsFault::builder()
                .meta(meta("DBParameterGroupAlreadyExists"))
                .build(),
        )
    });
    let instance_exists = mock!(Client::create_db_instance).then_error(|| {
        CreateDBInstanceError::DbInstanceAlreadyExistsFault(
            DbInstanceAlreadyExistsFault::builder()
                .meta(meta("DBInstanceAlreadyExists"))
                .build(),
        )
    });
    // Another call of the same start made each one meanwhile.
    let rules = [
        &no_subnet_group(),
        &subnet_group_exists,
        &subnet_group_found(ours()),
        &no_parameter_group(),
        &parameter_group_exists,
        &parameter_group_found(ours()),
        &parameters_set(),
        &no_instance(),
        &instance_exists,
        &described(instance("backing-up")),
    ];
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let progress = driver(&rules)
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert!(
        matches!(&progress, Progress::Wait { seconds: 60, waiting_for } if waiting_for.contains("backing-up")),
        "{progress:?}"
    );
    assert_eq!(kinds(&journal.resources()), kinds(&the_ledger()));
}

#[tokio::test]
async fn an_instance_of_someone_else_under_the_name_fails_the_action_and_stays_out_of_the_ledger() {
    let mut theirs = like("available");
    theirs = theirs.set_tag_list(Some(vec![Tag::builder()
        .key(REQUEST_TAG)
        .value("another-request")
        .build()]));
    let rules = [
        &subnet_group_found(ours()),
        &parameter_group_found(ours()),
        &parameters_set(),
        &described(theirs.build()),
    ];
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let err = driver(&rules)
        .start(&fixture.step(&journal, &the_ledger()[..2]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ActionError::Fatal(m) if m.contains("not tagged pao:request-id")),
        "{err:?}"
    );
    assert!(journal.resources().is_empty());
}

#[tokio::test]
async fn a_group_of_someone_else_under_the_name_fails_the_action() {
    let rules = [&subnet_group_found("made by hand".to_string())];
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let err = driver(&rules)
        .start(&fixture.step(&journal, &[]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ActionError::Fatal(m) if m.contains(&format!("DB subnet group {SUBNETS} exists but was not made by request"))),
        "{err:?}"
    );
    assert!(journal.resources().is_empty());
}

// ------------------------------------------------------------------ poll

#[tokio::test]
async fn an_available_instance_is_done_with_its_outputs() {
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let progress = driver(&[&described(instance("available"))])
        .poll(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap();
    assert_eq!(outputs(progress), expected_outputs());
}

#[tokio::test]
async fn an_instance_under_way_is_polled_every_minute() {
    for state in [
        "creating",
        "backing-up",
        "modifying",
        "configuring-enhanced-monitoring",
        "configuring-log-exports",
        "rebooting",
        "upgrading",
    ] {
        let fixture = fixture(config());
        let journal = MemoryJournal::default();
        let progress = driver(&[&described(instance(state))])
            .poll(&fixture.step(&journal, &the_ledger()))
            .await
            .unwrap();
        assert_eq!(
            progress,
            Progress::Wait {
                seconds: 60,
                waiting_for: format!(
                    "DB instance {INSTANCE_ID} to become available (it is {state})"
                ),
            }
        );
    }
}

#[tokio::test]
async fn an_instance_in_a_state_it_does_not_leave_fails_the_action_naming_the_state() {
    for state in [
        "failed",
        "incompatible-parameters",
        "incompatible-network",
        "incompatible-option-group",
        "incompatible-restore",
        "storage-full",
        "inaccessible-encryption-credentials",
        "insufficient-capacity",
        "stopped",
        "deleting",
    ] {
        let fixture = fixture(config());
        let journal = MemoryJournal::default();
        let err = driver(&[&described(instance(state))])
            .poll(&fixture.step(&journal, &the_ledger()))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ActionError::Fatal(format!(
                "DB instance {INSTANCE_ID} is {state}; see its events in the RDS console"
            ))
        );
    }
}

#[tokio::test]
async fn an_available_instance_without_its_endpoint_yet_is_waited_for() {
    let bare = like("available").set_endpoint(None).build();
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let progress = driver(&[&described(bare)])
        .poll(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap();
    assert!(
        matches!(&progress, Progress::Wait { waiting_for, .. } if waiting_for.contains("endpoint")),
        "{progress:?}"
    );
}

#[tokio::test]
async fn an_instance_without_its_managed_secret_fails_the_action() {
    let bare = like("available").set_master_user_secret(None).build();
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let err = driver(&[&described(bare)])
        .poll(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ActionError::Fatal(m) if m.contains("master user secret")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_instance_deleted_while_being_created_fails_the_action() {
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let err = driver(&[&no_instance()])
        .poll(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ActionError::Fatal(m) if m.contains("no longer exists")),
        "{err:?}"
    );
}

// ------------------------------------------------------------------ errors

#[tokio::test]
async fn failed_calls_are_throttled_retried_or_fatal() {
    let throttled = mock!(Client::describe_db_instances).then_error(|| {
        DescribeDBInstancesError::generic(
            ErrorMetadata::builder()
                .code("Throttling")
                .message("Rate exceeded")
                .build(),
        )
    });
    let unavailable = mock!(Client::describe_db_instances)
        .sequence()
        .http_status(
            503,
            Some(
                "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure</Code>\
                 <Message>try later</Message></Error></ErrorResponse>"
                    .to_string(),
            ),
        )
        .build();
    let invalid = mock!(Client::describe_db_instances).then_error(|| {
        DescribeDBInstancesError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized to perform rds:DescribeDBInstances")
                .build(),
        )
    });
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let ledger = the_ledger();
    let step = fixture.step(&journal, &ledger);
    let err = driver(&[&throttled]).poll(&step).await.unwrap_err();
    assert_eq!(
        err,
        ActionError::Throttled("RDS DescribeDBInstances: Throttling: Rate exceeded".into())
    );
    let err = driver(&[&unavailable]).poll(&step).await.unwrap_err();
    assert!(
        matches!(&err, ActionError::Retryable(m) if m.contains("InternalFailure")),
        "{err:?}"
    );
    let err = driver(&[&invalid]).poll(&step).await.unwrap_err();
    assert_eq!(
        err,
        ActionError::Fatal(
            "RDS DescribeDBInstances: AccessDenied: not authorized to perform rds:DescribeDBInstances"
                .into()
        )
    );
}

// ------------------------------------------------------------------ compensation

fn protection_lifted() -> Rule {
    mock!(Client::modify_db_instance)
        .match_requests(|r| {
            r.db_instance_identifier() == Some(INSTANCE_ID)
                && r.deletion_protection() == Some(false)
                && r.apply_immediately() == Some(true)
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build())
}

fn deleted(check: impl Fn(&DeleteDbInstanceInput) -> bool + Send + Sync + 'static) -> Rule {
    mock!(Client::delete_db_instance)
        .match_requests(move |r| r.db_instance_identifier() == Some(INSTANCE_ID) && check(r))
        .then_output(|| DeleteDbInstanceOutput::builder().build())
}

fn groups_deleted() -> [Rule; 2] {
    [
        mock!(Client::delete_db_parameter_group)
            .match_requests(|r| r.db_parameter_group_name() == Some(PARAMS))
            .then_output(|| DeleteDbParameterGroupOutput::builder().build()),
        mock!(Client::delete_db_subnet_group)
            .match_requests(|r| r.db_subnet_group_name() == Some(SUBNETS))
            .then_output(|| DeleteDbSubnetGroupOutput::builder().build()),
    ]
}

fn final_snapshot_name() -> String {
    format!("{INSTANCE_ID}-final-{CREATED_AT}")
}

#[tokio::test]
async fn rolling_back_a_completed_request_keeps_a_final_snapshot_then_deletes_everything() {
    let fixture = fixture(config()).status(RequestStatus::RollingBack);
    let journal = MemoryJournal::default();
    let snapshot = final_snapshot_name();
    let expected = snapshot.clone();
    // 1. The instance: protection lifted, deleted with a final snapshot.
    let rules = [
        &described(instance("available")),
        &protection_lifted(),
        &deleted(move |r| {
            r.skip_final_snapshot() == Some(false)
                && r.final_db_snapshot_identifier() == Some(expected.as_str())
                && r.delete_automated_backups() == Some(true)
        }),
    ];
    let ledger = the_ledger();
    let undone = driver(&rules)
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Wait {
            seconds: 60,
            waiting_for: format!("DB instance {INSTANCE_ID} to be deleted"),
        }
    );
    let recorded = journal.resources();
    assert_eq!(
        kinds(&recorded),
        vec![(SNAPSHOT.to_string(), snapshot.clone())],
        "the snapshot is in the ledger before the deletion that makes it"
    );
    assert_eq!(recorded[0].detail("instance"), Some(INSTANCE_ID));
    // 2. Still deleting.
    let mut ledger = the_ledger();
    ledger.extend(recorded);
    let undone = driver(&[&described(instance("deleting"))])
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert!(
        matches!(undone, Undone::Wait { seconds: 60, .. }),
        "{undone:?}"
    );
    // 3. Gone: the groups follow; the snapshot stays.
    let [parameters, subnets] = groups_deleted();
    let undone = driver(&[&no_instance(), &parameters, &subnets])
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Done(format!(
            "deleted {SUBNETS}, {PARAMS}, {INSTANCE_ID}; final snapshot {snapshot} kept"
        ))
    );
}

#[tokio::test]
async fn undoing_a_failed_fulfillment_takes_no_snapshot_and_keeps_no_backups() {
    // An instance still creating; one the action saw available before a
    // later action failed (it has outputs); one available whose action
    // failed after all (no outputs). The request never completed: none is
    // kept.
    let cases = [
        (
            like("creating").deletion_protection(false).build(),
            json!({}),
        ),
        (instance("available"), expected_outputs()),
        (instance("available"), json!({})),
    ];
    for (described_instance, outputs) in cases {
        let protected = described_instance.deletion_protection() == Some(true);
        let mut fixture = fixture(config());
        fixture.outputs = outputs.as_object().cloned().unwrap();
        let journal = MemoryJournal::default();
        let deletion = deleted(|r| {
            r.skip_final_snapshot() == Some(true)
                && r.final_db_snapshot_identifier().is_none()
                && r.delete_automated_backups() == Some(true)
        });
        let described_rule = described(described_instance);
        let lifted = protection_lifted();
        let rules: Vec<&Rule> = if protected {
            vec![&described_rule, &lifted, &deletion]
        } else {
            vec![&described_rule, &deletion]
        };
        let undone = driver(&rules)
            .compensate(&fixture.step(&journal, &the_ledger()))
            .await
            .unwrap();
        assert!(
            matches!(undone, Undone::Wait { seconds: 60, .. }),
            "{undone:?}"
        );
        assert!(journal.resources().is_empty(), "no snapshot recorded");
    }
}

#[tokio::test]
async fn a_completed_requests_instance_that_cannot_be_snapshotted_is_not_deleted() {
    let fixture = fixture(config()).status(RequestStatus::RollingBack);
    let journal = MemoryJournal::default();
    let err = driver(&[&described(instance("failed"))])
        .compensate(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ActionError::Fatal(m) if m.contains("cannot take its final snapshot")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_instance_busy_with_something_else_is_waited_for_before_deletion() {
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let busy = mock!(Client::delete_db_instance).then_error(|| {
        DeleteDBInstanceError::InvalidDbInstanceStateFault(
            InvalidDbInstanceStateFault::builder()
                .meta(meta("InvalidDBInstanceState"))
                .build(),
        )
    });
    let unprotected = like("modifying").deletion_protection(false).build();
    let undone = driver(&[&described(unprotected), &busy])
        .compensate(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Wait {
            seconds: 60,
            waiting_for: format!("DB instance {INSTANCE_ID} to accept deletion (it is modifying)"),
        }
    );
}

#[tokio::test]
async fn a_group_still_in_use_is_waited_for_and_groups_already_gone_are_done() {
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let in_use = mock!(Client::delete_db_parameter_group).then_error(|| {
        DeleteDBParameterGroupError::InvalidDbParameterGroupStateFault(
            InvalidDbParameterGroupStateFault::builder()
                .meta(meta("InvalidDBParameterGroupState"))
                .build(),
        )
    });
    let undone = driver(&[&no_instance(), &in_use])
        .compensate(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Wait {
            seconds: 30,
            waiting_for: format!("DB parameter group {PARAMS} to be released by its instance"),
        }
    );
    let parameters_gone = mock!(Client::delete_db_parameter_group).then_error(|| {
        DeleteDBParameterGroupError::DbParameterGroupNotFoundFault(
            DbParameterGroupNotFoundFault::builder()
                .meta(meta("DBParameterGroupNotFound"))
                .build(),
        )
    });
    let subnets_gone = mock!(Client::delete_db_subnet_group).then_error(|| {
        DeleteDBSubnetGroupError::DbSubnetGroupNotFoundFault(
            DbSubnetGroupNotFoundFault::builder()
                .meta(meta("DBSubnetGroupNotFoundFault"))
                .build(),
        )
    });
    let undone = driver(&[&no_instance(), &parameters_gone, &subnets_gone])
        .compensate(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap();
    assert!(matches!(undone, Undone::Done(_)), "{undone:?}");
}

#[tokio::test]
async fn an_instance_in_the_ledger_not_tagged_for_the_request_is_left_alone() {
    let fixture = fixture(config());
    let journal = MemoryJournal::default();
    let theirs = like("available").set_tag_list(Some(Vec::new())).build();
    let [parameters, subnets] = groups_deleted();
    // No ModifyDBInstance, no DeleteDBInstance.
    let undone = driver(&[&described(theirs), &parameters, &subnets])
        .compensate(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap();
    assert!(matches!(undone, Undone::Done(_)), "{undone:?}");
    assert!(journal
        .lines()
        .iter()
        .any(|(level, line)| *level == Level::Warn && line.contains("left alone")));
}

#[tokio::test]
async fn compensation_touches_only_the_ledger_and_retain_keeps_everything() {
    let journal = MemoryJournal::default();
    // Nothing in the ledger: no call at all (no rules).
    let fixture = fixture(config());
    let undone = driver(&[])
        .compensate(&fixture.step(&journal, &[]))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Kept("the action made nothing to undo".to_string())
    );
    // A snapshot alone is never undone.
    let snapshot = [Resource::new(SNAPSHOT, final_snapshot_name())];
    let undone = driver(&[])
        .compensate(&fixture.step(&journal, &snapshot))
        .await
        .unwrap();
    assert!(matches!(undone, Undone::Kept(_)), "{undone:?}");
    // rollback.retain keeps everything, whatever the request's state.
    let fixture = fixture_retained();
    let undone = driver(&[])
        .compensate(&fixture.step(&journal, &the_ledger()))
        .await
        .unwrap();
    assert_eq!(
        undone,
        Undone::Kept(format!(
            "rollback.retain keeps {SUBNETS}, {PARAMS}, {INSTANCE_ID}"
        ))
    );
}

fn fixture_retained() -> Fixture {
    fixture(config())
        .status(RequestStatus::RollingBack)
        .rollback(json!({"retain": true}))
}
