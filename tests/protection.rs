//! Protection of what PAO calls, on the local stack:
//! - the circuit breaker of a target, its state in the emulator's DynamoDB
//!   (the requests table), shared by two instances of the guarded HTTP
//!   client, against a target stood in by wiremock;
//! - the concurrency cap of aws-eks-cluster, 1 on the local stack: two
//!   requests that each make a cluster run their clusters one after the
//!   other, both complete, and the one that waits says why.

use std::sync::Arc;
use std::time::Duration;

use pao::aws::shared_table::SharedTable;
use pao::catalog::item::ActionType;
use pao::outbound::{AllowList, Call, Egress, EgressError};
use pao::protect::breaker::{self, Breakers};
use pao::protect::slots::{self, Slot, Slots};
use pao::protect::system_clock;
use pao_integration::portal::Portal;
use pao_integration::{automated_item, env, unique, Stack};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OPEN_SECONDS: u64 = 2;

fn table(stack: &Stack) -> Arc<SharedTable> {
    Arc::new(SharedTable::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        env("PAO_REQUESTS_TABLE"),
    ))
}

/// One instance of a function's guarded client: its own breaker object,
/// the breaker's state in the shared table.
fn instance(stack: &Stack) -> Egress {
    let settings = breaker::Settings {
        failures: 3,
        window: 60,
        open_seconds: OPEN_SECONDS,
    };
    let breakers = Breakers::new(table(stack), settings, system_clock());
    Egress::new(AllowList::parse("127.0.0.1/32").unwrap())
        .unwrap()
        .with_breakers(Arc::new(breakers))
}

fn call(server: &MockServer) -> Call {
    Call {
        method: reqwest::Method::GET,
        url: format!("{}/things", server.uri()),
        headers: Vec::new(),
        body: None,
        timeout: Duration::from_secs(5),
    }
}

/// A target of its own: wiremock's pooled servers come back with the port
/// of an earlier test, whose breaker (in the shared table) may be open.
async fn fresh_server() -> MockServer {
    MockServer::builder().start().await
}

async fn answering(server: &MockServer, status: u16) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/things"))
        .respond_with(ResponseTemplate::new(status))
        .mount(server)
        .await;
}

async fn calls_received(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn a_target_that_keeps_failing_opens_its_breaker_for_every_instance_and_a_probe_closes_it() {
    let stack = Stack::connect().await;
    let server = fresh_server().await;
    answering(&server, 503).await;
    let (one, two) = (instance(&stack), instance(&stack));

    for _ in 0..3 {
        let reply = one.send(call(&server)).await.expect("an answer");
        assert_eq!(reply.status, 503);
    }
    // The fourth call, from the other instance, never reaches the target.
    let refused = two.send(call(&server)).await.unwrap_err();
    let EgressError::Open(open) = &refused else {
        panic!("refused by the breaker, not {refused:?}");
    };
    assert_eq!(open.failures, 3);
    assert!((1..=OPEN_SECONDS).contains(&open.seconds), "{open:?}");
    assert_eq!(calls_received(&server).await, 3);
    // As an action's failure: retried, once the breaker lets a probe try.
    let failure = refused.into_action("GET /things");
    assert_eq!(failure.name(), "Retryable");
    assert!(failure.asked_wait().is_some_and(|s| s <= 2), "{failure}");
    assert!(
        failure.to_string().contains("circuit breaker") && failure.to_string().contains("open"),
        "{failure}"
    );

    // The target recovers; after the open period one probe goes through
    // and closes the breaker for every instance.
    answering(&server, 200).await;
    tokio::time::sleep(Duration::from_secs(OPEN_SECONDS) + Duration::from_millis(200)).await;
    assert_eq!(
        one.send(call(&server)).await.expect("the probe").status,
        200
    );
    assert_eq!(two.send(call(&server)).await.expect("closed").status, 200);
    assert_eq!(calls_received(&server).await, 2);
}

#[tokio::test]
async fn a_probe_that_fails_opens_the_breaker_again() {
    let stack = Stack::connect().await;
    let server = fresh_server().await;
    answering(&server, 500).await;
    let client = instance(&stack);
    for _ in 0..3 {
        client.send(call(&server)).await.expect("an answer");
    }
    tokio::time::sleep(Duration::from_secs(OPEN_SECONDS) + Duration::from_millis(200)).await;
    assert_eq!(
        client.send(call(&server)).await.expect("the probe").status,
        500
    );
    assert!(matches!(
        client.send(call(&server)).await,
        Err(EgressError::Open(_))
    ));
    assert_eq!(calls_received(&server).await, 4);
}

fn failing_item(id: &str, base: &str) -> String {
    let actions = format!(
        r#"      - id: create
        type: rest-api
        retry: {{max_attempts: 7, interval_seconds: 1, backoff_rate: 1.0}}
        config:
          method: POST
          url: "{base}/things"
          success_codes: [201]
"#
    );
    automated_item(
        id,
        "One call to a service that keeps failing.",
        &["note"],
        &actions,
    )
}

/// Through the stack: the http-action function's breaker (the stack's
/// defaults: 5 failures within 60 s open it for 30 s). The action's sixth
/// attempt is refused without reaching the target, says so in the request's
/// log, and waits for the breaker rather than its own backoff.
#[tokio::test]
async fn a_request_whose_target_keeps_failing_shows_the_open_breaker_in_its_log() {
    let portal = Portal::new(&["developers"]).await;
    let server = fresh_server().await;
    Mock::given(method("POST"))
        .and(path("/things"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let item = unique("breaker");
    portal
        .publish(&item, failing_item(&item, &server.uri()))
        .await;
    let id = portal.submit(&item, json!({})).await;

    let mut logs = Vec::new();
    for _ in 0..120 {
        logs = portal.logs(&id).await;
        if logs.iter().any(|line| line.contains("circuit breaker")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let open = logs
        .iter()
        .find(|line| line.contains("circuit breaker"))
        .unwrap_or_else(|| panic!("no breaker in the log: {logs:#?}"));
    let target = server.uri().trim_start_matches("http://").to_string();
    assert!(
        open.starts_with("create: ")
            && open.contains(&format!(
                "the circuit breaker for {target} is open after 5 failures"
            ))
            && open.contains("not called"),
        "{open}"
    );
    // Waiting for the breaker (up to 30 s), not the action's 1 s backoff.
    let waited: u32 = open
        .rsplit_once("trying again in ")
        .and_then(|(_, rest)| rest.trim_end_matches(" s").parse().ok())
        .unwrap_or_else(|| panic!("a wait in {open}"));
    assert!((2..=30).contains(&waited), "{open}");
    assert_eq!(calls_received(&server).await, 5);
    let now = status(&portal, &id).await;
    assert_eq!(now["status"], "InProgress", "{now}");
    let path = format!("/api/v1/requests/{id}");
    let (cancelled, body) = portal.call(reqwest::Method::DELETE, &path, None).await;
    assert!(cancelled.is_success(), "{body}");
}

// ---------------------------------------------------------------- concurrency cap

const LIMIT: Duration = Duration::from_secs(240);

fn cluster_item(id: &str) -> String {
    let actions = r#"      - id: network
        type: aws-network
        config:
          cidr_block: 10.70.0.0/16
          availability_zones: 2
          public_subnets: false
          nat_gateway: none
          flow_logs: false
      - id: cluster
        type: aws-eks-cluster
        depends_on: [network]
        config:
          name: "pao-{{request.id}}"
          kubernetes_version: "1.31"
          subnet_ids: "{{response.network.private_subnet_ids}}"
          security_group_ids: ["{{response.network.security_group_id}}"]
          node_groups:
            - {name: general, instance_types: [m6i.large], min_size: 1, max_size: 1, desired_size: 1}
"#;
    automated_item(
        id,
        "A network and a cluster with a node group.",
        &["note"],
        actions,
    )
}

/// The slot the stack's cap of 1 allows, held by this test while it
/// submits, as another request's cluster would be.
async fn hold_the_slot(slots: &Slots) {
    for _ in 0..120 {
        if slots
            .take(ActionType::AwsEksCluster, "elsewhere#cluster")
            .await
            .expect("the slots")
            == Slot::Held
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the aws-eks-cluster slot stayed busy for a minute");
}

async fn status(portal: &Portal, id: &str) -> Value {
    let route = format!("/api/v1/requests/{id}/status");
    portal.call(reqwest::Method::GET, &route, None).await.1
}

async fn cluster_waits_for_a_slot(portal: &Portal, id: &str) -> Value {
    for _ in 0..240 {
        let cluster = status(portal, id).await["actions"]
            .as_array()
            .and_then(|all| all.iter().find(|a| a["id"] == "cluster"))
            .cloned()
            .unwrap_or(Value::Null);
        if cluster["waiting_for"]
            .as_str()
            .is_some_and(|w| w.starts_with("a slot"))
        {
            return cluster;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the cluster of {id} never waited for a slot");
}

#[tokio::test]
async fn with_a_cap_of_one_two_cluster_requests_run_one_after_the_other_and_both_complete() {
    let portal = Portal::new(&["developers"]).await;
    let item = unique("capped");
    portal.publish(&item, cluster_item(&item)).await;
    let slots = Slots::new(
        table(&portal.stack),
        slots::Settings {
            caps: [(ActionType::AwsEksCluster, 1)].into(),
            lease: 60,
        },
        system_clock(),
    );
    hold_the_slot(&slots).await;

    let first = portal.submit(&item, json!({})).await;
    let second = portal.submit(&item, json!({})).await;
    for id in [&first, &second] {
        let cluster = cluster_waits_for_a_slot(&portal, id).await;
        assert_eq!(cluster["status"], "Running", "{cluster}");
        let why = cluster["waiting_for"].as_str().unwrap_or_default();
        assert!(
            why.contains("at most 1 aws-eks-cluster") && why.contains("1 other request(s)"),
            "{why}"
        );
        let now = status(&portal, id).await;
        assert_eq!(now["status"], "InProgress", "waits, not fails: {now}");
    }
    slots
        .release(ActionType::AwsEksCluster, "elsewhere#cluster")
        .await
        .expect("the slot given back");

    portal.ends(&first, "Completed", LIMIT).await;
    portal.ends(&second, "Completed", LIMIT).await;
    let mut runs = Vec::new();
    for id in [&first, &second] {
        let record = portal.stack.record(id, "cluster").await;
        let started = record["started_at"].as_str().expect("started").to_string();
        let finished = record["finished_at"]
            .as_str()
            .expect("finished")
            .to_string();
        runs.push((started, finished, id.clone()));
        let logs = portal.logs(id).await;
        assert!(
            logs.iter()
                .any(|line| line.starts_with("cluster: waiting for a slot")),
            "{logs:#?}"
        );
    }
    runs.sort();
    let (earlier, later) = (&runs[0], &runs[1]);
    assert!(
        earlier.1 <= later.0,
        "the clusters were made at once: {earlier:?} and {later:?}"
    );
    for id in [&first, &second] {
        portal.roll_back(id, LIMIT).await;
    }
}
