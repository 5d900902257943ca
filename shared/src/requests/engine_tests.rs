//! The engine's steps in process, against the in-memory requests table
//! (`super::super::memory`), which keeps the DynamoDB adapter's conditional
//! transitions.

use serde_json::Map;

use super::*;
use crate::catalog::item::ActionType;
use crate::requests::fulfillment::{ActionRecord, Plan, Resource};
use crate::requests::memory::MemoryRequests;
use crate::requests::{Request, Requester};

const ID: &str = "r-1";

struct Harness {
    store: Arc<MemoryRequests>,
    engine: Engine,
}

fn functions() -> ActionFunctions {
    ActionFunctions::new([
        (ActionType::Webhook, "pao-http".to_string()),
        (ActionType::JiraTicket, "pao-http".to_string()),
        (ActionType::AwsNetwork, "pao-network".to_string()),
    ])
}

fn plan(mode: &str, actions: Value) -> Plan {
    serde_json::from_value(json!({
        "header": {"id": "demo"}, "mode": mode,
        "manual": {"jira": {"project": "OPS", "issue_type": "Task", "summary": "s"}},
        "actions": actions,
    }))
    .unwrap()
}

fn action(id: &str, kind: &str, depends_on: &[&str]) -> Value {
    json!({"id": id, "type": kind, "depends_on": depends_on, "config": {"url": "https://x"}})
}

/// Network first, then the database and the cluster, then the hook.
fn stack() -> Plan {
    plan(
        "automated",
        json!([
            action("network", "aws-network", &[]),
            action("database", "webhook", &["network"]),
            action("cluster", "webhook", &["network"]),
            action("notify", "webhook", &["database", "cluster"]),
        ]),
    )
}

async fn harness(plan: Plan, status: RequestStatus) -> Harness {
    let store = Arc::new(MemoryRequests::default());
    let at = now();
    let request = Request {
        id: ID.to_string(),
        item_id: "demo".to_string(),
        item_version: "1.0.0".to_string(),
        item_hash: "h".to_string(),
        requester: Requester {
            subject: "u-1".to_string(),
            email: "dev@example.com".to_string(),
        },
        status,
        version: 3,
        fields: Map::new(),
        secret_fields: Vec::new(),
        actions: Default::default(),
        execution_arn: None,
        reason: None,
        created_at: at.clone(),
        updated_at: at.clone(),
    };
    let first = LogEntry {
        at,
        source: "api".to_string(),
        level: "info".to_string(),
        message: "submitted".to_string(),
    };
    assert!(store.create(&request, &plan, &[], &first).await.unwrap());
    let engine = Engine::new(store.clone(), functions());
    Harness { store, engine }
}

fn input(step: Step, state: Option<Value>) -> EngineInput {
    EngineInput {
        request_id: ID.to_string(),
        step,
        state,
    }
}

impl Harness {
    async fn run(&self, step: Step) -> Result<Value, ActionError> {
        self.engine.run(input(step, None)).await
    }

    async fn request(&self) -> Request {
        self.store.get(ID).await.unwrap().unwrap()
    }

    /// The engine's log lines, as `level: message`.
    async fn lines(&self) -> Vec<String> {
        self.store
            .logs(ID)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.source == "engine")
            .map(|e| format!("{}: {}", e.level, e.message))
            .collect()
    }

    async fn made(&self, action_id: &str) {
        let mut resource = Resource::new("ec2:vpc", format!("vpc-{action_id}"));
        resource.action_id = action_id.to_string();
        resource.recorded_at = now();
        self.store.record_resource(ID, &resource).await.unwrap();
    }
}

fn record(action_id: &str, kind: ActionType, status: ActionStatus, finished: &str) -> ActionRecord {
    ActionRecord {
        action_id: action_id.to_string(),
        kind,
        status,
        attempts: 1,
        failures: 0,
        polling: false,
        waiting_for: None,
        compensating_from: None,
        queued: false,
        outputs: Map::new(),
        secret_outputs: Vec::new(),
        error: None,
        started_at: "2026-11-23T10:00:00.000000Z".to_string(),
        finished_at: Some(finished.to_string()),
        attempt_started_at: Some(finished.to_string()),
    }
}

fn at(second: u32) -> String {
    format!("2026-11-23T10:00:{second:02}.000000Z")
}

fn step(action_id: &str, function: &str) -> Value {
    json!({"action_id": action_id, "function": function})
}

// ---------------------------------------------------------------- plan

#[tokio::test]
async fn plan_starts_the_request_and_returns_its_waves() {
    let h = harness(stack(), RequestStatus::Queued).await;

    let planned = h.run(Step::Plan).await.unwrap();

    assert_eq!(
        planned,
        json!({
            "mode": "automated",
            "waves": [
                [step("network", "pao-network")],
                [step("database", "pao-http"), step("cluster", "pao-http")],
                [step("notify", "pao-http")],
            ],
            "ticket": null,
        })
    );
    let request = h.request().await;
    assert_eq!(
        (request.status, request.version),
        (RequestStatus::InProgress, 4)
    );
    let audit = h.store.audit(ID).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "fulfillment-engine");
    assert_eq!(
        (audit[0].from, audit[0].to),
        (Some(RequestStatus::Queued), RequestStatus::InProgress)
    );
    assert_eq!(h.lines().await, ["info: fulfillment started: 3 wave(s)"]);

    // The state machine retries the step: the same plan, no second change.
    assert_eq!(h.run(Step::Plan).await.unwrap(), planned);
    assert_eq!(h.request().await.version, 4);
    assert_eq!(h.store.audit(ID).await.unwrap().len(), 1);
}

#[tokio::test]
async fn plan_leaves_out_what_succeeded_on_an_earlier_run() {
    let h = harness(stack(), RequestStatus::Queued).await;
    for (id, kind, status) in [
        ("network", ActionType::AwsNetwork, ActionStatus::Succeeded),
        ("database", ActionType::Webhook, ActionStatus::Succeeded),
        ("cluster", ActionType::Webhook, ActionStatus::Failed),
    ] {
        h.store.set_action(ID, record(id, kind, status, &at(1)));
    }

    let planned = h.run(Step::Plan).await.unwrap();

    assert_eq!(
        planned["waves"],
        json!([[step("cluster", "pao-http")], [step("notify", "pao-http")]])
    );
    assert_eq!(
        h.lines().await,
        ["info: fulfillment started: 2 wave(s); 2 action(s) succeeded before and are not run again"]
    );
}

#[tokio::test]
async fn plan_of_a_manual_item_is_its_ticket() {
    let h = harness(plan("manual", json!([])), RequestStatus::Queued).await;

    let planned = h.run(Step::Plan).await.unwrap();

    assert_eq!(
        planned,
        json!({"mode": "manual", "waves": [], "ticket": {"function": "pao-http"}})
    );
    assert_eq!(h.request().await.status, RequestStatus::InProgress);
    assert_eq!(
        h.lines().await,
        ["info: fulfillment started: a JIRA ticket for the platform team"]
    );
}

#[tokio::test]
async fn plan_refuses_an_action_type_no_function_runs() {
    let plan = plan(
        "automated",
        json!([
            action("network", "aws-network", &[]),
            {"id": "infra", "type": "terraform", "depends_on": ["network"], "config": {"workspace": "w"}},
        ]),
    );
    let h = harness(plan, RequestStatus::Queued).await;

    let err = h.run(Step::Plan).await.unwrap_err();

    assert_eq!(
        err,
        ActionError::Fatal(
            "actions of type terraform cannot run yet: no action function handles them".to_string()
        )
    );
    // Nothing started: the request is not marked under way.
    assert_eq!(h.request().await.status, RequestStatus::Queued);
    assert!(h.lines().await.is_empty());
}

#[tokio::test]
async fn plan_waits_for_the_api_to_record_the_queued_status() {
    for status in [RequestStatus::Validated, RequestStatus::Failed] {
        let h = harness(stack(), status).await;
        let err = h.run(Step::Plan).await.unwrap_err();
        assert_eq!(
            err,
            ActionError::Retryable(format!(
                "request {ID} is {status}; the API has not recorded its next status yet"
            ))
        );
        assert_eq!(h.request().await.status, status);
    }
}

#[tokio::test]
async fn plan_of_a_cancelled_request_is_fatal() {
    let h = harness(stack(), RequestStatus::Cancelled).await;

    let err = h.run(Step::Plan).await.unwrap_err();

    assert_eq!(
        err,
        ActionError::Fatal(format!(
            "request {ID} is Cancelled; it cannot become InProgress"
        ))
    );
    assert_eq!(h.request().await.status, RequestStatus::Cancelled);
}

#[tokio::test]
async fn a_step_of_a_request_that_does_not_exist_is_fatal() {
    let h = harness(stack(), RequestStatus::Queued).await;
    for step in [Step::Plan, Step::Complete, Step::Fail, Step::RolledBack] {
        let input = EngineInput {
            request_id: "r-404".to_string(),
            step,
            state: None,
        };
        assert_eq!(
            h.engine.run(input).await.unwrap_err(),
            ActionError::Fatal("request r-404 does not exist".to_string()),
            "{step:?}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_table_is_retryable() {
    let h = harness(stack(), RequestStatus::Queued).await;
    h.store.fail_with(Some(StoreError::Unavailable(
        "DynamoDB timed out".to_string(),
    )));
    for step in [Step::Plan, Step::Undo, Step::Complete] {
        assert_eq!(
            h.run(step).await.unwrap_err(),
            ActionError::Retryable("DynamoDB timed out".to_string())
        );
    }
}

// ---------------------------------------------------------------- undo

#[tokio::test]
async fn undo_lists_what_to_compensate_newest_first() {
    let h = harness(stack(), RequestStatus::InProgress).await;
    for record in [
        record(
            "network",
            ActionType::AwsNetwork,
            ActionStatus::Succeeded,
            &at(1),
        ),
        record(
            "database",
            ActionType::Webhook,
            ActionStatus::Succeeded,
            &at(3),
        ),
        // Failed after making something: its resources are undone too.
        record("cluster", ActionType::Webhook, ActionStatus::Failed, &at(2)),
        // Failed having made nothing: left alone.
        record("notify", ActionType::Webhook, ActionStatus::Failed, &at(4)),
    ] {
        h.store.set_action(ID, record);
    }
    h.made("cluster").await;

    let undo = h.run(Step::Undo).await.unwrap();

    assert_eq!(
        undo,
        json!({"actions": [
            step("database", "pao-http"),
            step("cluster", "pao-http"),
            step("network", "pao-network"),
        ]})
    );
    assert_eq!(
        h.lines().await,
        ["info: compensating, newest first: database, cluster, network"]
    );
    // Undo changes no status: the state machine's later steps do.
    assert_eq!(h.request().await.status, RequestStatus::InProgress);
}

#[tokio::test]
async fn undo_leaves_out_what_was_compensated_already() {
    let h = harness(stack(), RequestStatus::InProgress).await;
    h.store.set_action(
        ID,
        record(
            "network",
            ActionType::AwsNetwork,
            ActionStatus::Compensated,
            &at(1),
        ),
    );
    h.made("network").await;

    assert_eq!(h.run(Step::Undo).await.unwrap(), json!({"actions": []}));
    assert_eq!(h.lines().await, ["info: nothing to compensate"]);
}

#[tokio::test]
async fn undo_waits_for_an_action_call_under_way() {
    let h = harness(stack(), RequestStatus::Cancelled).await;
    h.store.set_action(
        ID,
        record(
            "network",
            ActionType::AwsNetwork,
            ActionStatus::Succeeded,
            &at(1),
        ),
    );
    let mut running = record(
        "database",
        ActionType::Webhook,
        ActionStatus::Running,
        &at(2),
    );
    running.finished_at = None;
    running.attempt_started_at = Some(now());
    h.store.set_action(ID, running);

    let err = h.run(Step::Undo).await.unwrap_err();

    assert_eq!(
        err,
        ActionError::Retryable("database is still running".to_string())
    );
    assert!(h.lines().await.is_empty());
}

#[tokio::test]
async fn undo_warns_of_a_lost_call_that_recorded_nothing() {
    let h = harness(stack(), RequestStatus::InProgress).await;
    // Calls that began long ago and never reported back.
    let lost = |id: &str| {
        let mut record = record(id, ActionType::Webhook, ActionStatus::Running, &at(5));
        record.finished_at = None;
        record
    };
    h.store.set_action(ID, lost("database"));
    h.store.set_action(ID, lost("cluster"));
    h.made("cluster").await;
    h.store.set_action(
        ID,
        record(
            "network",
            ActionType::AwsNetwork,
            ActionStatus::Succeeded,
            &at(1),
        ),
    );

    let undo = h.run(Step::Undo).await.unwrap();

    // The lost call that recorded a resource is compensated; the other
    // cannot be, and an operator is told.
    assert_eq!(
        undo,
        json!({"actions": [step("cluster", "pao-http"), step("network", "pao-network")]})
    );
    assert_eq!(
        h.lines().await,
        [
            "warn: database: its last call never reported back; if it made something, remove it by hand",
            "info: compensating, newest first: cluster, network",
        ]
    );
}

#[tokio::test]
async fn undo_refuses_an_action_type_no_function_runs() {
    let h = harness(stack(), RequestStatus::InProgress).await;
    h.store.set_action(
        ID,
        record(
            "infra",
            ActionType::Terraform,
            ActionStatus::Succeeded,
            &at(1),
        ),
    );

    let err = h.run(Step::Undo).await.unwrap_err();

    assert_eq!(
        err,
        ActionError::Fatal(
            "actions of type terraform cannot run yet: no action function handles them".to_string()
        )
    );
}

// ---------------------------------------------------------------- endings

#[tokio::test]
async fn complete_marks_the_request_completed_once() {
    let h = harness(stack(), RequestStatus::InProgress).await;

    assert_eq!(
        h.run(Step::Complete).await.unwrap(),
        json!({"request_id": ID})
    );
    let request = h.request().await;
    assert_eq!(
        (request.status, request.version),
        (RequestStatus::Completed, 4)
    );
    assert_eq!(h.lines().await, ["info: fulfillment completed"]);

    // A retried step finds it done.
    h.run(Step::Complete).await.unwrap();
    assert_eq!(h.request().await.version, 4);
    assert_eq!(h.store.audit(ID).await.unwrap().len(), 1);
}

#[tokio::test]
async fn complete_refuses_a_request_that_cannot_complete() {
    let h = harness(stack(), RequestStatus::Queued).await;

    let err = h.run(Step::Complete).await.unwrap_err();

    assert_eq!(
        err,
        ActionError::Fatal(format!(
            "request {ID} is Queued; it cannot become Completed"
        ))
    );
}

#[tokio::test]
async fn fail_records_the_reason_read_from_the_caught_error() {
    let cause = r#"{"errorType":"Fatal","errorMessage":"database: quota exceeded"}"#;
    let cases = [
        (
            RequestStatus::InProgress,
            json!({"error": {"Error": "Fatal", "Cause": cause}}),
            "Fatal: database: quota exceeded",
        ),
        (
            RequestStatus::InProgress,
            json!({
                "error": {"Error": "States.Timeout"},
                "compensation_error": {"Error": "Retryable", "Cause": "EC2 is down"},
            }),
            "States.Timeout; compensation failed too: Retryable: EC2 is down",
        ),
        (
            RequestStatus::RollingBack,
            json!({"compensation_error": {"Error": "Fatal", "Cause": cause}}),
            "rollback failed: Fatal: database: quota exceeded",
        ),
        (RequestStatus::Queued, json!({}), "unknown error"),
    ];
    for (status, state, reason) in cases {
        let h = harness(stack(), status).await;

        h.engine.run(input(Step::Fail, Some(state))).await.unwrap();

        let request = h.request().await;
        assert_eq!(request.status, RequestStatus::Failed, "{reason}");
        assert_eq!(request.reason.as_deref(), Some(reason));
        let audit = h.store.audit(ID).await.unwrap();
        assert_eq!(audit[0].reason.as_deref(), Some(reason));
        assert_eq!(audit[0].from, Some(status));
        assert_eq!(
            h.lines().await,
            [format!("error: fulfillment failed: {reason}")]
        );
    }
}

#[tokio::test]
async fn rolled_back_ends_a_rollback() {
    let h = harness(stack(), RequestStatus::RollingBack).await;

    h.run(Step::RolledBack).await.unwrap();

    assert_eq!(h.request().await.status, RequestStatus::RolledBack);
    assert_eq!(h.lines().await, ["info: rolled back"]);
}

#[tokio::test]
async fn rolled_back_waits_for_the_api_to_record_the_rollback() {
    for status in [RequestStatus::Completed, RequestStatus::Failed] {
        let h = harness(stack(), status).await;
        let err = h.run(Step::RolledBack).await.unwrap_err();
        assert_eq!(
            err,
            ActionError::Retryable(format!(
                "request {ID} is {status}; the API has not recorded its next status yet"
            ))
        );
        assert_eq!(h.request().await.status, status);
    }
}

#[tokio::test]
async fn a_cancelled_request_stays_cancelled_when_its_compensation_ends() {
    for (step, state) in [
        (Step::RolledBack, None),
        (
            Step::Fail,
            Some(json!({"compensation_error": {"Error": "Fatal", "Cause": "x"}})),
        ),
    ] {
        let h = harness(stack(), RequestStatus::Cancelled).await;

        h.engine.run(input(step, state)).await.unwrap();

        let request = h.request().await;
        assert_eq!(
            (request.status, request.version),
            (RequestStatus::Cancelled, 3),
            "{step:?}"
        );
        assert_eq!(
            h.lines().await,
            ["info: the cancelled request's actions are compensated"]
        );
    }
}

// ---------------------------------------------------------------- reasons and the machine

#[test]
fn reasons_read_the_lambda_error_message() {
    let error = json!({"Error": "Fatal", "Cause": "{\"errorType\":\"Fatal\",\"errorMessage\":\"quota exceeded\"}"});
    assert_eq!(failure_reason(Some(&error)), "Fatal: quota exceeded");
    assert_eq!(
        failure_reason(Some(&json!({"Error": "States.Timeout"}))),
        "States.Timeout"
    );
    assert_eq!(failure_reason(None), "unknown error");
}

/// Undo waits for an action call under way by failing with Retryable:
/// the state machine's retries must outlast the longest such call, or
/// a cancellation would give up before the call could be compensated.
#[test]
fn undo_retries_outlast_a_call_under_way() {
    let asl: Value =
        serde_json::from_str(include_str!("../../../statemachines/fulfillment.asl.json")).unwrap();
    let retry = &asl["States"]["Undo"]["Retry"][0];
    assert!(retry["ErrorEquals"]
        .as_array()
        .unwrap()
        .contains(&json!("Retryable")));
    assert!(
        retry.get("JitterStrategy").is_none(),
        "jitter shortens the waits"
    );
    let (mut wait, mut total) = (retry["IntervalSeconds"].as_f64().unwrap(), 0.0);
    for _ in 0..retry["MaxAttempts"].as_u64().unwrap() {
        total += wait.min(retry["MaxDelaySeconds"].as_f64().unwrap());
        wait *= retry["BackoffRate"].as_f64().unwrap();
    }
    let lost_after = crate::requests::fulfillment::LOST_AFTER_SECONDS;
    assert!(
        total > lost_after,
        "{total} s of retries, calls lost after {lost_after} s"
    );
    assert!(asl["States"]["Undo"]["Catch"][0]["Next"] == "MarkFailed");
}
