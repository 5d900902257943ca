//! Native provisioning end to end on the local stack: a request for an item
//! with network → database → secret (rotation on) and network → cluster runs
//! the real action functions against the emulator's EC2, RDS, Secrets
//! Manager and EKS. Faults are injected by tag (`infra/local/moto_faults.py`):
//! the product code runs unchanged. After every failure and rollback the
//! services are listed for anything still tagged with the request's id.

use std::time::Duration;

use pao_integration::leftovers::{leftovers, snapshots};
use pao_integration::portal::Portal;
use pao_integration::{automated_item, env, unique};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const GROUPS: &[&str] = &["developers"];
const LIMIT: Duration = Duration::from_secs(240);

fn native_stack(id: &str) -> String {
    let actions = r#"      - id: network
        type: aws-network
        config:
          cidr_block: 10.60.0.0/16
          availability_zones: 2
          public_subnets: true
          nat_gateway: single
          flow_logs: false
          tags: {app: native-test}
      - id: database
        type: aws-rds-postgres
        depends_on: [network]
        config:
          engine_version: "16.4"
          instance_class: db.t4g.medium
          allocated_storage_gb: 20
          db_name: app
          master_username: app_admin
          deletion_protection: true
          subnet_ids: "{{response.network.private_subnet_ids}}"
          vpc_security_group_ids: ["{{response.network.database_security_group_id}}"]
          parameters: {log_min_duration_statement: "500"}
          tags: {app: native-test, "emulator:db-status": "{{fields.db_status}}"}
        retry: {max_attempts: 2, interval_seconds: 1, backoff_rate: 1.0}
      - id: app_secret
        type: aws-secret
        depends_on: [database]
        config:
          name: "it/{{request.id}}/secret-key"
          description: "Signing key, request {{request.id}}"
          generate: {length: 48, exclude_characters: "\"'\\`"}
          rotation: {enabled: true, schedule_days: 30}
          tags: {app: native-test}
      - id: cluster
        type: aws-eks-cluster
        depends_on: [network]
        config:
          name: "pao-{{request.id}}"
          kubernetes_version: "1.31"
          subnet_ids: "{{response.network.private_subnet_ids}}"
          security_group_ids: ["{{response.network.security_group_id}}"]
          endpoint_private_access: true
          endpoint_public_access: true
          public_access_cidrs: ["203.0.113.0/24"]
          logging: [api, audit]
          node_groups:
            - name: general
              instance_types: [m6i.large]
              min_size: 1
              max_size: 2
              desired_size: 1
              disk_size_gb: 20
          tags:
            app: native-test
            "emulator:cluster-status": "{{fields.cluster_status}}"
            "emulator:nodegroup-status": "{{fields.nodegroup_status}}"
"#;
    automated_item(
        id,
        "A network, a database and its secret, and a cluster with a node group.",
        &["db_status", "cluster_status", "nodegroup_status"],
        actions,
    )
}

struct Fixture {
    portal: Portal,
    item: String,
}

impl Fixture {
    async fn new() -> Self {
        let portal = Portal::new(GROUPS).await;
        let item = unique("native");
        portal.publish(&item, native_stack(&item)).await;
        Self { portal, item }
    }

    async fn run(&self, fields: Value, ends: &[&str]) -> (String, Value) {
        let id = self.portal.submit(&self.item, fields).await;
        let status = self.portal.wait_for(&id, ends, LIMIT).await;
        (id, status)
    }

    fn sdk(&self) -> &aws_config::SdkConfig {
        &self.portal.stack.sdk
    }
}

fn strings(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list
}

#[tokio::test]
async fn a_stack_completes_with_outputs_flowing_rotates_its_secret_and_rolls_back_to_a_snapshot() {
    let fixture = Fixture::new().await;
    let (id, status) = fixture.run(json!({}), &["Completed", "Failed"]).await;
    assert_eq!(
        status["status"],
        "Completed",
        "{status}; logs {:#?}",
        fixture.portal.logs(&id).await
    );

    // The outputs flow: the database sits in the network's private subnets
    // and its database group; the cluster in the private subnets.
    let network = fixture.portal.stack.outputs(&id, "network").await;
    let private = strings(&network["private_subnet_ids"]);
    assert_eq!(private.len(), 2, "{network}");
    let database = fixture.portal.stack.outputs(&id, "database").await;
    let rds = aws_sdk_rds::Client::new(fixture.sdk());
    let described = rds
        .describe_db_instances()
        .db_instance_identifier(database["db_instance_id"].as_str().expect("db_instance_id"))
        .send()
        .await
        .expect("DescribeDBInstances");
    let instance = &described.db_instances()[0];
    let mut subnets: Vec<String> = instance
        .db_subnet_group()
        .map(|g| {
            g.subnets()
                .iter()
                .filter_map(|s| s.subnet_identifier())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    subnets.sort();
    assert_eq!(subnets, private);
    let groups: Vec<&str> = instance
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id())
        .collect();
    assert_eq!(
        groups,
        [network["database_security_group_id"]
            .as_str()
            .expect("a db group")]
    );
    assert!(
        database["master_secret_arn"]
            .as_str()
            .is_some_and(|arn| arn.contains(":secret:")),
        "{database}"
    );
    let cluster = fixture.portal.stack.outputs(&id, "cluster").await;
    let eks = aws_sdk_eks::Client::new(fixture.sdk());
    let described = eks
        .describe_cluster()
        .name(cluster["cluster_name"].as_str().expect("cluster_name"))
        .send()
        .await
        .expect("DescribeCluster");
    let mut cluster_subnets: Vec<String> = described
        .cluster()
        .and_then(|c| c.resources_vpc_config())
        .map(|v| v.subnet_ids().to_vec())
        .unwrap_or_default();
    cluster_subnets.sort();
    assert_eq!(cluster_subnets, private);

    // Rotating the secret runs the real rotation function; the secret still
    // reads afterwards, with a new value.
    let secret = fixture.portal.stack.outputs(&id, "app_secret").await;
    let arn = secret["secret_arn"]
        .as_str()
        .expect("secret_arn")
        .to_string();
    assert!(
        secret.get("value").is_none() && secret.as_object().is_some_and(|o| o.len() == 2),
        "{secret}"
    );
    let secrets = aws_sdk_secretsmanager::Client::new(fixture.sdk());
    let before = secrets
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .expect("GetSecretValue");
    let before = before.secret_string().expect("a value").to_string();
    assert_eq!(before.chars().count(), 48);
    secrets
        .rotate_secret()
        .secret_id(&arn)
        .rotate_immediately(true)
        .send()
        .await
        .expect("RotateSecret");
    let after = secrets
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .expect("GetSecretValue");
    let after = after.secret_string().expect("a value after rotation");
    assert_eq!(after.chars().count(), 48);
    assert_ne!(after, before, "rotation made a new value");

    // Rollback keeps the data: a final snapshot, and the secret in its
    // recovery window; nothing else.
    let rollback = format!("/api/v1/requests/{id}/rollback");
    let (code, body) = fixture.portal.call(Method::POST, &rollback, None).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let rolled = fixture
        .portal
        .wait_for(&id, &["RolledBack", "Failed"], LIMIT)
        .await;
    assert_eq!(
        rolled["status"],
        "RolledBack",
        "{rolled}; logs {:#?}",
        fixture.portal.logs(&id).await
    );
    let snapshots = snapshots(fixture.sdk(), &id).await;
    assert_eq!(snapshots.len(), 1, "one final snapshot: {snapshots:?}");
    let described = secrets
        .describe_secret()
        .secret_id(&arn)
        .send()
        .await
        .expect("DescribeSecret");
    assert!(
        described.deleted_date().is_some(),
        "the secret is in its recovery window"
    );
    let left = leftovers(fixture.sdk(), &id).await;
    let expected = [
        format!("rds:snapshot {}", snapshots[0]),
        format!(
            "secretsmanager:secret {:?} (scheduled for deletion)",
            described.name()
        ),
    ];
    let mut left_sorted = left.clone();
    left_sorted.sort();
    let mut expected_sorted = expected.to_vec();
    expected_sorted.sort();
    assert_eq!(
        left_sorted, expected_sorted,
        "only the snapshot and the secret are kept"
    );
}

/// A request with one injected fault ends Failed naming it, and nothing
/// tagged with its id is left.
async fn fails_cleanly(fields: Value, reason: &str) {
    let fixture = Fixture::new().await;
    let (id, status) = fixture.run(fields, &["Completed", "Failed"]).await;
    assert_eq!(status["status"], "Failed", "{status}");
    let (_, request) = fixture
        .portal
        .call(Method::GET, &format!("/api/v1/requests/{id}"), None)
        .await;
    let said = request["reason"].as_str().unwrap_or_default().to_string();
    assert!(said.contains(reason), "the reason names the fault: {said}");
    let left = leftovers(fixture.sdk(), &id).await;
    assert!(
        left.is_empty(),
        "left behind: {left:#?}; logs {:#?}",
        fixture.portal.logs(&id).await
    );
}

#[tokio::test]
async fn a_database_in_a_terminal_state_fails_the_request_and_leaves_nothing() {
    fails_cleanly(
        json!({"db_status": "incompatible-parameters"}),
        "incompatible-parameters",
    )
    .await;
}

#[tokio::test]
async fn a_failed_cluster_fails_the_request_and_leaves_nothing() {
    fails_cleanly(json!({"cluster_status": "FAILED"}), "FAILED").await;
}

#[tokio::test]
async fn a_node_group_that_fails_to_create_fails_the_request_and_leaves_nothing() {
    fails_cleanly(
        json!({"nodegroup_status": "CREATE_FAILED"}),
        "CREATE_FAILED",
    )
    .await;
}

/// The network action's ledger entries of request `id`.
async fn network_ledger(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    id: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let answer = dynamodb
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :sk)")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("REQ#{id}")),
        )
        .expression_attribute_values(
            ":sk",
            aws_sdk_dynamodb::types::AttributeValue::S("LEDGER#network#".into()),
        )
        .send()
        .await
        .expect("Query");
    answer.items().to_vec()
}

#[tokio::test]
async fn a_start_repeated_after_a_crash_finishes_without_duplicates() {
    let fixture = Fixture::new().await;
    let (id, status) = fixture.run(json!({}), &["Completed", "Failed"]).await;
    assert_eq!(status["status"], "Completed", "{status}");
    let before = fixture.portal.stack.outputs(&id, "network").await;
    let made = leftovers(fixture.sdk(), &id).await;

    // The function "died" after making the network and before recording
    // it: the record is back to a call that never reported back.
    let dynamodb = aws_sdk_dynamodb::Client::new(fixture.sdk());
    let table = env("PAO_REQUESTS_TABLE");
    let key = |sk: &str| {
        [
            (
                "pk".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(format!("REQ#{id}")),
            ),
            (
                "sk".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(sk.to_string()),
            ),
        ]
    };
    let stored = dynamodb
        .get_item()
        .table_name(&table)
        .set_key(Some(key("ACTION#network").into_iter().collect()))
        .send()
        .await
        .expect("GetItem");
    let mut item = stored.item().cloned().expect("the network's record");
    let mut record: Value =
        serde_json::from_str(item["document"].as_s().expect("a document")).expect("JSON");
    record["status"] = json!("Running");
    record["outputs"] = json!({});
    record["polling"] = json!(false);
    record["attempt_started_at"] = json!("2026-01-01T00:00:00.000000Z");
    record.as_object_mut().map(|r| r.remove("finished_at"));
    item.insert(
        "document".into(),
        aws_sdk_dynamodb::types::AttributeValue::S(record.to_string()),
    );
    item.insert(
        "status".into(),
        aws_sdk_dynamodb::types::AttributeValue::S("Running".into()),
    );
    dynamodb
        .put_item()
        .table_name(&table)
        .set_item(Some(item))
        .send()
        .await
        .expect("PutItem");

    // Nor had it written its ledger: the next start must find what it
    // made by name, client token and tags.
    let ledger = network_ledger(&dynamodb, &table, &id).await;
    assert!(!ledger.is_empty(), "the network's ledger");
    for entry in &ledger {
        let sk = entry["sk"].as_s().expect("a sort key");
        dynamodb
            .delete_item()
            .table_name(&table)
            .set_key(Some(key(sk).into_iter().collect()))
            .send()
            .await
            .expect("DeleteItem");
    }

    // The state machine's retry starts it again.
    let lambda = aws_sdk_lambda::Client::new(fixture.sdk());
    let payload = json!({"request_id": id, "action_id": "network", "op": "start", "attempt": 1});
    let answer = lambda
        .invoke()
        .function_name(env("PAO_ACTION_FUNCTION_AWS_NETWORK"))
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await
        .expect("Invoke");
    assert!(answer.function_error().is_none(), "{answer:?}");
    let output: Value =
        serde_json::from_slice(answer.payload().expect("a payload").as_ref()).expect("JSON");
    assert_eq!(output["done"], true, "{output}");
    assert_eq!(output["outputs"], before, "the same network, found again");
    let mut again = leftovers(fixture.sdk(), &id).await;
    let mut made = made;
    again.sort();
    made.sort();
    assert_eq!(again, made, "nothing made twice");
    let relisted = network_ledger(&dynamodb, &table, &id).await;
    assert_eq!(
        relisted.len(),
        ledger.len(),
        "what it found again is back in the ledger"
    );
}
