//! The fakes keep the conditions the adapters document: these tests pin
//! them, so tests built on the fakes see the races the real systems show.

use serde_json::{json, Map};

use super::*;
use crate::catalog::item::ActionType;
use crate::requests::fulfillment::ActionStatus;
use crate::requests::{RequestStatus, Requester};

fn plan() -> Plan {
    serde_json::from_value(json!({
        "header": {"id": "demo"}, "mode": "automated",
        "manual": {"jira": {"project": "OPS", "issue_type": "Task", "summary": "s"}},
        "actions": [],
    }))
    .unwrap()
}

fn request(id: &str, subject: &str, item: &str, created_at: &str) -> Request {
    Request {
        id: id.to_string(),
        item_id: item.to_string(),
        item_version: "1.0.0".to_string(),
        item_hash: "h".to_string(),
        requester: Requester {
            subject: subject.to_string(),
            email: format!("{subject}@example.com"),
        },
        status: RequestStatus::Validated,
        version: 1,
        fields: Map::new(),
        secret_fields: Vec::new(),
        actions: Default::default(),
        execution_arn: None,
        reason: None,
        created_at: created_at.to_string(),
        updated_at: created_at.to_string(),
    }
}

fn log(message: &str) -> LogEntry {
    LogEntry {
        at: "2026-11-23T10:00:00.000000Z".to_string(),
        source: "api".to_string(),
        level: "info".to_string(),
        message: message.to_string(),
    }
}

fn change(request: &Request, to: RequestStatus) -> Transition {
    Transition {
        from: request.status,
        version: request.version,
        to,
        actor: "dev@example.com".to_string(),
        reason: Some("why".to_string()),
        execution_arn: None,
        at: "2026-11-23T10:00:01.000000Z".to_string(),
    }
}

fn record(action_id: &str, status: ActionStatus) -> ActionRecord {
    ActionRecord {
        action_id: action_id.to_string(),
        kind: ActionType::Webhook,
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
        started_at: "2026-11-23T10:00:00Z".to_string(),
        finished_at: None,
        attempt_started_at: None,
    }
}

async fn stored(store: &MemoryRequests, request: &Request) {
    assert!(store
        .create(request, &plan(), &[], &log("submitted"))
        .await
        .unwrap());
}

#[tokio::test]
async fn a_request_is_created_once_with_its_plan_and_first_log_line() {
    let store = MemoryRequests::default();
    let first = request("r-1", "u-1", "demo", "2026-11-23T10:00:00Z");
    stored(&store, &first).await;
    let mut second = first.clone();
    second.item_id = "other".to_string();
    assert!(!store
        .create(&second, &plan(), &[], &log("again"))
        .await
        .unwrap());
    assert_eq!(store.get("r-1").await.unwrap(), Some(first));
    assert_eq!(store.plan("r-1").await.unwrap(), Some(plan()));
    let messages: Vec<String> = store
        .logs("r-1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(messages, ["submitted"]);
    assert_eq!(store.get("r-2").await.unwrap(), None);
    assert_eq!(store.plan("r-2").await.unwrap(), None);
}

#[tokio::test]
async fn a_transition_is_conditional_on_status_and_version() {
    let store = MemoryRequests::default();
    let request = request("r-1", "u-1", "demo", "2026-11-23T10:00:00Z");
    stored(&store, &request).await;

    let refused = store
        .transition(&request, &change(&request, RequestStatus::Completed))
        .await;
    assert!(matches!(
        refused,
        Err(TransitionError::NotAllowed {
            from: RequestStatus::Validated,
            to: RequestStatus::Completed
        })
    ));

    let queued = store
        .transition(&request, &change(&request, RequestStatus::Queued))
        .await
        .unwrap();
    assert_eq!(
        (queued.status, queued.version, queued.reason.as_deref()),
        (RequestStatus::Queued, 2, Some("why"))
    );
    assert_eq!(store.get("r-1").await.unwrap(), Some(queued.clone()));

    // A second writer working from the old copy loses, and is told why.
    let late = store
        .transition(&request, &change(&request, RequestStatus::Cancelled))
        .await;
    assert!(matches!(
        late,
        Err(TransitionError::Conflict {
            current: RequestStatus::Queued
        })
    ));
    // The same status at another version is a conflict too.
    let mut stale = change(&queued, RequestStatus::InProgress);
    stale.version = 1;
    assert!(matches!(
        store.transition(&queued, &stale).await,
        Err(TransitionError::Conflict { .. })
    ));

    let audit = store.audit("r-1").await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].from, audit[0].to),
        (Some(RequestStatus::Validated), RequestStatus::Queued)
    );

    let missing = request_missing();
    assert!(matches!(
        store
            .transition(&missing, &change(&missing, RequestStatus::Queued))
            .await,
        Err(TransitionError::NotFound)
    ));
}

fn request_missing() -> Request {
    request("nope", "u-1", "demo", "2026-11-23T10:00:00Z")
}

#[tokio::test]
async fn action_records_are_written_only_past_their_guard() {
    let store = MemoryRequests::default();
    let running = record("db", ActionStatus::Running);
    let succeeded = record("db", ActionStatus::Succeeded);
    // No record yet: `Is` fails, `Not` passes.
    assert!(!store
        .put_action("r-1", &running, Guard::Is(ActionStatus::Running))
        .await
        .unwrap());
    assert!(store
        .put_action("r-1", &running, Guard::Not(ActionStatus::Succeeded))
        .await
        .unwrap());
    assert!(store
        .put_action("r-1", &succeeded, Guard::Is(ActionStatus::Running))
        .await
        .unwrap());
    // Succeeded: a late start may not take it back.
    assert!(!store
        .put_action("r-1", &running, Guard::Not(ActionStatus::Succeeded))
        .await
        .unwrap());
    assert!(!store
        .put_action("r-1", &running, Guard::Is(ActionStatus::Running))
        .await
        .unwrap());
    assert_eq!(store.actions("r-1").await.unwrap(), [succeeded]);
}

#[tokio::test]
async fn the_first_record_of_a_resource_stands() {
    let store = MemoryRequests::default();
    let mut vpc = Resource::new("ec2:vpc", "vpc-1");
    vpc.action_id = "network".to_string();
    vpc.recorded_at = "2026-11-23T10:00:00Z".to_string();
    let mut again = vpc.clone();
    again.recorded_at = "2026-11-23T11:00:00Z".to_string();
    let mut other_action = vpc.clone();
    other_action.action_id = "cluster".to_string();
    for resource in [&vpc, &again, &other_action] {
        store.record_resource("r-1", resource).await.unwrap();
    }
    assert_eq!(store.ledger("r-1").await.unwrap(), [other_action, vpc]);
    assert!(store.ledger("r-2").await.unwrap().is_empty());
}

#[tokio::test]
async fn an_idempotency_key_keeps_its_first_record() {
    let store = MemoryRequests::default();
    let first = IdempotencyRecord {
        payload_hash: "a".to_string(),
        request_id: "r-1".to_string(),
    };
    let second = IdempotencyRecord {
        payload_hash: "b".to_string(),
        request_id: "r-2".to_string(),
    };
    assert_eq!(
        store.claim_idempotency_key("u#k", &first).await.unwrap(),
        first
    );
    assert_eq!(
        store.claim_idempotency_key("u#k", &second).await.unwrap(),
        first
    );
    assert_eq!(
        store
            .claim_idempotency_key("u#other", &second)
            .await
            .unwrap(),
        second
    );
    assert_eq!(store.idempotency_record("u#k"), Some(first));
}

#[tokio::test]
async fn task_tokens_and_tickets_are_kept() {
    let store = MemoryRequests::default();
    assert_eq!(store.task_token("r-1").await.unwrap(), None);
    store.save_task_token("r-1", "t-1").await.unwrap();
    store.save_task_token("r-1", "t-2").await.unwrap();
    assert_eq!(
        store.task_token("r-1").await.unwrap().as_deref(),
        Some("t-2")
    );
    store.save_ticket("OPS-1", "r-1").await.unwrap();
    assert_eq!(
        store.ticket_request("OPS-1").await.unwrap().as_deref(),
        Some("r-1")
    );
    assert_eq!(store.ticket_request("OPS-2").await.unwrap(), None);
}

#[tokio::test]
async fn the_log_reads_in_time_order() {
    let store = MemoryRequests::default();
    for (at, message) in [("10:00:02", "b"), ("10:00:01", "a"), ("10:00:02", "c")] {
        let mut entry = log(message);
        entry.at = format!("2026-11-23T{at}.000000Z");
        store.append_log("r-1", &entry).await.unwrap();
    }
    let messages: Vec<String> = store
        .logs("r-1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(messages, ["a", "b", "c"]);
}

#[tokio::test]
async fn a_listing_filters_and_pages_newest_first() {
    let store = MemoryRequests::default();
    for n in 0..7 {
        let subject = if n % 2 == 0 { "u-1" } else { "u-2" };
        let item = if n < 5 { "demo" } else { "other" };
        let at = format!("2026-11-23T10:00:0{n}Z");
        stored(&store, &request(&format!("r-{n}"), subject, item, &at)).await;
    }
    let first = store.get("r-0").await.unwrap().unwrap();
    store
        .transition(&first, &change(&first, RequestStatus::Queued))
        .await
        .unwrap();

    let all = |query: ListQuery| {
        let store = &store;
        async move {
            let mut ids = Vec::new();
            let mut query = query;
            loop {
                let page = store.list(&query).await.unwrap();
                assert!(page.requests.len() <= query.limit);
                ids.extend(page.requests.into_iter().map(|r| r.id));
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => return ids,
                }
            }
        }
    };
    let query = |subject: Option<&str>, status, item: Option<&str>| ListQuery {
        subject: subject.map(str::to_string),
        status,
        item_id: item.map(str::to_string),
        limit: 2,
        after: None,
    };
    assert_eq!(
        all(query(None, None, None)).await,
        ["r-6", "r-5", "r-4", "r-3", "r-2", "r-1", "r-0"]
    );
    assert_eq!(
        all(query(Some("u-1"), None, None)).await,
        ["r-6", "r-4", "r-2", "r-0"]
    );
    assert_eq!(
        all(query(
            Some("u-1"),
            Some(RequestStatus::Validated),
            Some("demo")
        ))
        .await,
        ["r-4", "r-2"]
    );
    assert_eq!(
        all(query(None, Some(RequestStatus::Queued), None)).await,
        ["r-0"]
    );
    // The last page carries no token.
    let page = store.list(&query(Some("u-2"), None, None)).await.unwrap();
    assert_eq!(page.requests.len(), 2);
    let last = store
        .list(&ListQuery {
            after: page.next,
            ..query(Some("u-2"), None, None)
        })
        .await
        .unwrap();
    assert_eq!(last.requests.len(), 1);
    assert_eq!(last.next, None);
}

#[tokio::test]
async fn a_token_continues_only_its_own_listing() {
    let store = MemoryRequests::default();
    for n in 0..3 {
        let at = format!("2026-11-23T10:00:0{n}Z");
        stored(&store, &request(&format!("r-{n}"), "u-1", "demo", &at)).await;
    }
    let mine = ListQuery {
        subject: Some("u-1".to_string()),
        limit: 1,
        ..ListQuery::default()
    };
    let token = store.list(&mine).await.unwrap().next.unwrap();
    let foreign = [
        ListQuery {
            subject: Some("u-2".to_string()),
            ..mine.clone()
        },
        ListQuery {
            subject: None,
            ..mine.clone()
        },
        ListQuery {
            status: Some(RequestStatus::Validated),
            ..mine.clone()
        },
    ];
    for query in foreign {
        let query = ListQuery {
            after: Some(token.clone()),
            ..query
        };
        assert!(matches!(store.list(&query).await, Err(ListError::BadToken)));
    }
    for garbage in ["", "mem.", "mem.!!", "eyJ9", &token[..token.len() - 2]] {
        let query = ListQuery {
            after: Some(garbage.to_string()),
            ..mine.clone()
        };
        assert!(
            matches!(store.list(&query).await, Err(ListError::BadToken)),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_table_fails_every_call() {
    let store = MemoryRequests::default();
    let request = request("r-1", "u-1", "demo", "2026-11-23T10:00:00Z");
    stored(&store, &request).await;
    store.fail_with(Some(StoreError::Unavailable("down".to_string())));
    assert!(matches!(
        store.get("r-1").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(store
        .create(&request, &plan(), &[], &log("x"))
        .await
        .is_err());
    assert!(matches!(
        store
            .transition(&request, &change(&request, RequestStatus::Queued))
            .await,
        Err(TransitionError::Store(StoreError::Unavailable(_)))
    ));
    assert!(matches!(
        store.list(&ListQuery::default()).await,
        Err(ListError::Store(StoreError::Unavailable(_)))
    ));
    assert!(store.append_log("r-1", &log("x")).await.is_err());
    assert!(store
        .put_action(
            "r-1",
            &record("a", ActionStatus::Running),
            Guard::Not(ActionStatus::Succeeded)
        )
        .await
        .is_err());
    assert!(store
        .record_resource("r-1", &Resource::new("k", "i"))
        .await
        .is_err());
    assert!(store.actions("r-1").await.is_err());
    assert!(store.ledger("r-1").await.is_err());
    store.fail_with(None);
    assert_eq!(store.get("r-1").await.unwrap(), Some(request));
    assert!(store.actions("r-1").await.unwrap().is_empty());
}

#[tokio::test]
async fn secrets_are_put_once_replaced_and_deleted_restorably() {
    let secrets = MemorySecrets::default();
    let arn = secrets.put("pao/r-1/password", "one").await.unwrap();
    assert_eq!(arn, MemorySecrets::arn("pao/r-1/password"));
    // The same name again is the same secret, value and all.
    assert_eq!(secrets.put("pao/r-1/password", "two").await.unwrap(), arn);
    assert_eq!(secrets.secret("pao/r-1/password").unwrap().value, "one");

    let out = "pao/requests/r-1/actions/api/key";
    let arn = secrets.replace(out, "k1").await.unwrap();
    assert_eq!(secrets.replace(out, "k2").await.unwrap(), arn);
    secrets.delete(out).await.unwrap();
    secrets.delete(out).await.unwrap();
    secrets.delete("never-made").await.unwrap();
    let deleted = secrets.secret(out).unwrap();
    assert!(deleted.deleted);
    assert_eq!(deleted.versions, ["k1", "k2"]);
    // A re-run takes it back with its newer answer.
    assert_eq!(secrets.replace(out, "k3").await.unwrap(), arn);
    let restored = secrets.secret(out).unwrap();
    assert!(!restored.deleted);
    assert_eq!(restored.value, "k3");
    assert_eq!(secrets.secrets().len(), 2);

    secrets.fail_with(Some(StoreError::Unavailable("down".to_string())));
    assert!(secrets.put("x", "y").await.is_err());
    assert!(secrets.replace("x", "y").await.is_err());
    assert!(secrets.delete(out).await.is_err());
    assert!(!secrets.secret(out).unwrap().deleted);
}

#[tokio::test]
async fn an_execution_starts_once_by_name() {
    let workflow = MemoryWorkflow::default();
    let input = r#"{"request_id":"r-1","rollback":false}"#;
    let arn = workflow.start("r-1", input).await.unwrap();
    assert_eq!(arn, workflow.execution_arn("r-1"));
    assert!(arn.ends_with(":execution:pao-fulfillment:r-1"), "{arn}");
    assert_eq!(workflow.start("r-1", input).await.unwrap(), arn);
    workflow
        .start("r-1-cancel", r#"{"request_id":"r-1","rollback":true}"#)
        .await
        .unwrap();
    let names: Vec<String> = workflow.executions().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["r-1", "r-1-cancel"]);

    workflow.stop(&arn, "cancelled by dev").await.unwrap();
    workflow.stop(&arn, "again").await.unwrap();
    workflow.stop("arn:unknown", "x").await.unwrap();
    assert_eq!(
        workflow.executions()[0].stopped.as_deref(),
        Some("cancelled by dev")
    );
    assert_eq!(workflow.executions()[1].stopped, None);

    workflow.fail_with(Some(StoreError::Unavailable("down".to_string())));
    assert!(workflow.start("r-2", input).await.is_err());
    assert!(workflow.stop(&arn, "x").await.is_err());
    workflow.fail_with(None);
    assert_eq!(workflow.executions().len(), 2);
}

#[tokio::test]
async fn only_a_waiting_task_can_be_resumed() {
    let workflow = MemoryWorkflow::default();
    let arn = workflow.start("r-1", "{}").await.unwrap();
    assert!(!workflow
        .resume("unknown", &TaskOutcome::Heartbeat)
        .await
        .unwrap());
    workflow.wait_for_task(&arn, "t-1");
    assert!(workflow
        .resume("t-1", &TaskOutcome::Heartbeat)
        .await
        .unwrap());
    let done = TaskOutcome::Succeeded(json!({"resolution": "Done"}));
    assert!(workflow.resume("t-1", &done).await.unwrap());
    // The task went on: its token names nothing now.
    assert!(!workflow.resume("t-1", &done).await.unwrap());
    assert_eq!(
        workflow.resumed(),
        [
            ("t-1".to_string(), TaskOutcome::Heartbeat),
            ("t-1".to_string(), done)
        ]
    );
    // A stopped execution's task is gone too.
    workflow.wait_for_task(&arn, "t-2");
    workflow.stop(&arn, "cancelled").await.unwrap();
    assert!(!workflow
        .resume("t-2", &TaskOutcome::Heartbeat)
        .await
        .unwrap());
}
