//! The submission limit as `Requests::submit` applies it, in process, over
//! the in-memory ports: the catalog gets its item through ingest, as in
//! AWS, and the limit's clock is stopped so no test straddles two minutes.

use std::collections::BTreeSet;

use serde_json::json;

use super::*;
use crate::catalog::index::Ingest;
use crate::catalog::memory::{MemoryBucket, MemoryCatalog};
use crate::requests::memory::{MemoryLimit, MemoryRequests, MemorySecrets, MemoryWorkflow};
use crate::requests::ListQuery;

const DEMO: &str = include_str!("../../../tests/fixtures/catalog/valid/minimal-automated.yaml");
/// 48 seconds into a minute: the next begins in 12.
const CLOCK: u64 = 29_000_000 * 60 + 48;

pub(crate) struct World {
    pub requests: Requests,
    pub limit: Arc<MemoryLimit>,
    pub store: Arc<MemoryRequests>,
    pub workflow: Arc<MemoryWorkflow>,
}

/// `Requests` over in-memory ports with the demo item published, each
/// caller limited to `per_minute` new requests a minute.
pub(crate) async fn world(per_minute: u32) -> World {
    let bucket = Arc::new(MemoryBucket::default());
    let catalog = Arc::new(MemoryCatalog::default());
    bucket.put("items/demo.yaml", DEMO, 100);
    Ingest::new(bucket, catalog.clone())
        .sync_key("items/demo.yaml")
        .await
        .expect("the demo item is published");
    let limit = Arc::new(MemoryLimit::new(per_minute));
    limit.set_clock(CLOCK);
    let store = Arc::new(MemoryRequests::default());
    let workflow = Arc::new(MemoryWorkflow::default());
    let requests = Requests::new(
        store.clone(),
        catalog,
        Arc::new(MemorySecrets::default()),
        workflow.clone(),
        "pao-admins",
    )
    .with_limit(limit.clone());
    World {
        requests,
        limit,
        store,
        workflow,
    }
}

pub(crate) fn caller(email: &str) -> Principal {
    Principal {
        subject: email.to_string(),
        email: email.to_string(),
        groups: BTreeSet::from(["developers".to_string()]),
    }
}

pub(crate) fn demo(name: &str, key: Option<&str>) -> Submission {
    Submission {
        item_id: "demo-item".to_string(),
        fields: json!({"name": name, "size": 3}),
        idempotency_key: key.map(str::to_string),
    }
}

#[tokio::test]
async fn a_caller_gets_the_limit_a_minute_then_is_told_when_the_next_begins() {
    let world = world(3).await;
    let dev = caller("dev@example.com");
    for n in 0..3 {
        let made = world
            .requests
            .submit(&dev, demo(&format!("n{n}"), None))
            .await;
        assert_eq!(made.unwrap().status, RequestStatus::Queued);
    }
    let refused = world.requests.submit(&dev, demo("n3", None)).await;
    let Err(RequestError::RateLimited {
        per_minute,
        retry_after_seconds,
    }) = refused
    else {
        panic!("not refused: {refused:?}");
    };
    assert_eq!((per_minute, retry_after_seconds), (3, 12));
    assert_eq!(
        RequestError::RateLimited {
            per_minute,
            retry_after_seconds
        }
        .to_string(),
        "at most 3 new requests per minute per caller; try again in 12 s"
    );
    // Nothing of the refused request was made.
    assert_eq!(world.workflow.executions().len(), 3);
    let listed = world.requests.list(
        &dev,
        ListQuery {
            limit: 100,
            ..ListQuery::default()
        },
    );
    assert_eq!(listed.await.unwrap().requests.len(), 3);

    world.limit.set_clock(CLOCK + 12);
    assert!(world.requests.submit(&dev, demo("n3", None)).await.is_ok());
}

#[tokio::test]
async fn a_replay_of_an_idempotency_key_is_not_counted() {
    let world = world(2).await;
    let dev = caller("dev@example.com");
    let first = world
        .requests
        .submit(&dev, demo("a", Some("k1")))
        .await
        .unwrap();
    for _ in 0..5 {
        let again = world
            .requests
            .submit(&dev, demo("a", Some("k1")))
            .await
            .unwrap();
        assert_eq!(again.id, first.id);
    }
    assert_eq!(world.limit.counted("dev@example.com"), 1);

    // The second request fills the minute; a replay still answers as before.
    world.requests.submit(&dev, demo("b", None)).await.unwrap();
    let again = world
        .requests
        .submit(&dev, demo("a", Some("k1")))
        .await
        .unwrap();
    assert_eq!(again.id, first.id);
    let refused = world.requests.submit(&dev, demo("c", Some("k2"))).await;
    assert!(
        matches!(refused, Err(RequestError::RateLimited { .. })),
        "{refused:?}"
    );
    // The key used with another body is refused before anything is counted.
    let reused = world.requests.submit(&dev, demo("other", Some("k1"))).await;
    assert!(matches!(reused, Err(RequestError::KeyReused)), "{reused:?}");

    // In a later minute, a replay is not counted either.
    world.limit.set_clock(CLOCK + 60);
    let later = world
        .requests
        .submit(&dev, demo("a", Some("k1")))
        .await
        .unwrap();
    assert_eq!(later.id, first.id);
    assert_eq!(world.limit.counted("dev@example.com"), 0);
    // The refused key's retry, with its body, is made now.
    let made = world
        .requests
        .submit(&dev, demo("c", Some("k2")))
        .await
        .unwrap();
    assert_eq!(made.status, RequestStatus::Queued);
    assert_eq!(world.workflow.executions().len(), 3);
}

#[tokio::test]
async fn many_retries_of_one_key_at_once_count_once() {
    let world = world(1).await;
    let dev = caller("dev@example.com");
    let retries = (0..20).map(|_| world.requests.submit(&dev, demo("a", Some("burst"))));
    let answers = futures::future::join_all(retries).await;
    let ids: BTreeSet<String> = answers
        .into_iter()
        .map(|answer| answer.expect("every retry answers with the request").id)
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(world.limit.counted("dev@example.com"), 1);
    assert_eq!(world.workflow.executions().len(), 1);
}

#[tokio::test]
async fn another_caller_has_a_budget_of_their_own() {
    let world = world(1).await;
    let (dev, other) = (caller("dev@example.com"), caller("other@example.com"));
    world.requests.submit(&dev, demo("a", None)).await.unwrap();
    let refused = world.requests.submit(&dev, demo("b", None)).await;
    assert!(
        matches!(refused, Err(RequestError::RateLimited { .. })),
        "{refused:?}"
    );
    let made = world
        .requests
        .submit(&other, demo("b", None))
        .await
        .unwrap();
    assert_eq!(made.requester.subject, "other@example.com");
    assert_eq!(world.limit.counted("other@example.com"), 1);
}

#[tokio::test]
async fn a_submission_with_invalid_fields_is_not_counted() {
    let world = world(1).await;
    let dev = caller("dev@example.com");
    let mut bad = demo("a", None);
    bad.fields = json!({"size": 11});
    let invalid = world.requests.submit(&dev, bad).await;
    assert!(
        matches!(invalid, Err(RequestError::InvalidFields(_))),
        "{invalid:?}"
    );
    assert_eq!(world.limit.counted("dev@example.com"), 0);
    assert!(world.requests.submit(&dev, demo("a", None)).await.is_ok());
}

#[tokio::test]
async fn a_limit_that_cannot_be_reached_is_the_store_unavailable_and_nothing_is_made() {
    let world = world(5).await;
    world.limit.fail_with(Some(StoreError::Unavailable(
        "DynamoDB UpdateItem failed".into(),
    )));
    let failed = world
        .requests
        .submit(&caller("dev@example.com"), demo("a", None))
        .await;
    assert!(
        matches!(failed, Err(RequestError::Store(StoreError::Unavailable(_)))),
        "{failed:?}"
    );
    assert!(world.workflow.executions().is_empty());
    let everything = ListQuery {
        limit: 100,
        ..ListQuery::default()
    };
    let listed = world.store.list(&everything).await.unwrap();
    assert!(listed.requests.is_empty());
}
