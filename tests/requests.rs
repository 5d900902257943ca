//! The requests API on the local stack: submission through the gateway to
//! the real requests-api binary, DynamoDB, Secrets Manager and a Step
//! Functions execution named after the request. Every test acts as its own
//! users, so tests do not see each other's requests.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use pao::aws::requests_table::RequestTable;
use pao::aws::submission_limit::SubmissionWindows;
use pao::requests::fulfillment::Plan;
use pao::requests::limit::{Admission, SubmissionLimit, Window};
use pao::requests::{
    AuditEntry, LogEntry, Request, RequestStatus, RequestStore, Requester, Transition,
    TransitionError,
};
use pao_integration::{as_admin, as_user, env, http, queue_submission, unique, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};

const PASSWORD: &str = "Tr0ub4dor&3 horse staple";

fn fields() -> Value {
    json!({
        "db_name": "orders", "engine": "postgres", "environment": "dev", "plan": "small",
        "admin_username": "app_admin", "storage_gb": 20, "admin_password": PASSWORD,
    })
}

fn developer() -> String {
    format!("{}@example.com", unique("dev"))
}

async fn submit(stack: &Stack, user: &str, body: Value, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = as_user(
        http().post(stack.url("/api/v1/requests")),
        user,
        &["developers"],
    )
    .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("the API answers");
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

async fn get(stack: &Stack, user: &str, groups: &[&str], path: &str) -> (StatusCode, Value) {
    let response = as_user(http().get(stack.url(path)), user, groups)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn database(fields: Value) -> Value {
    json!({"item_id": "rest-database", "fields": fields})
}

#[tokio::test]
async fn a_submission_is_queued_with_an_execution_named_after_it() {
    let stack = Stack::connect().await;
    let user = developer();
    let (status, request) = submit(&stack, &user, database(fields()), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    assert_eq!(request["status"], "Queued");
    assert_eq!(request["item_version"], "2.2.0");
    assert!(request["item_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let id = request["id"].as_str().unwrap();

    let sfn = aws_sdk_sfn::Client::new(&stack.sdk);
    let execution = sfn
        .describe_execution()
        .execution_arn(request["execution_arn"].as_str().unwrap())
        .send()
        .await
        .expect("the execution exists");
    assert_eq!(execution.name(), Some(id));
    // The execution carries the id, not the request.
    assert_eq!(
        execution.input(),
        Some(
            json!({"request_id": id, "rollback": false})
                .to_string()
                .as_str()
        )
    );
}

#[tokio::test]
async fn the_password_is_kept_only_in_secrets_manager() {
    let stack = Stack::connect().await;
    let (_, request) = submit(&stack, &developer(), database(fields()), None).await;
    let id = request["id"].as_str().unwrap().to_string();
    let arn = request["fields"]["admin_password"].as_str().unwrap();
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");
    assert_eq!(request["secret_fields"], json!(["admin_password"]));

    let secrets = aws_sdk_secretsmanager::Client::new(&stack.sdk);
    let secret = secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(secret.secret_string(), Some(PASSWORD));

    let execution = request["execution_arn"].as_str().unwrap();
    stack.assert_secret_kept_out(&id, execution, PASSWORD).await;
}

#[tokio::test]
async fn each_invalid_field_is_reported_by_name() {
    let stack = Stack::connect().await;
    let user = developer();
    let mut bad = fields();
    bad.as_object_mut().unwrap().remove("db_name"); // required
    bad["storage_gb"] = json!("twenty"); // type
    bad["admin_username"] = json!("App Admin!"); // pattern
    bad["plan"] = json!("enormous"); // enum
    bad["mysql_version"] = json!("8.4"); // shown only when engine is mysql
    let (status, body) = submit(&stack, &user, database(bad), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_fields");
    let named: HashSet<&str> = body["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for field in [
        "db_name",
        "storage_gb",
        "admin_username",
        "plan",
        "mysql_version",
    ] {
        assert!(named.contains(field), "{field} missing from {body}");
    }

    // The same conditional field, shown by its condition, is accepted.
    let mut mysql = fields();
    mysql["engine"] = json!("mysql");
    mysql["mysql_version"] = json!("8.4");
    let (status, body) = submit(&stack, &user, database(mysql), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn a_retried_submission_is_the_same_request() {
    let stack = Stack::connect().await;
    let user = developer();
    let key = unique("key");
    let (first_status, first) = submit(&stack, &user, database(fields()), Some(&key)).await;
    let (again_status, again) = submit(&stack, &user, database(fields()), Some(&key)).await;
    assert_eq!(first_status, StatusCode::ACCEPTED);
    assert_eq!(again_status, StatusCode::ACCEPTED);
    assert_eq!(first["id"], again["id"]);
    // Passwords are not part of what is compared (nothing derived from one
    // is stored): a retry that changes only the password is the same request.
    let mut new_password = fields();
    new_password["admin_password"] = json!("another long passphrase 42");
    let (status, same) = submit(&stack, &user, database(new_password), Some(&key)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{same}");
    assert_eq!(first["id"], same["id"]);

    let mut other = fields();
    other["db_name"] = json!("invoices");
    let (status, body) = submit(&stack, &user, database(other), Some(&key)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "idempotency_key_reused");

    let (_, listed) = get(&stack, &user, &["developers"], "/api/v1/requests").await;
    assert_eq!(listed["requests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_hundred_concurrent_identical_submissions_make_one_request_and_one_execution() {
    let stack = Stack::connect().await;
    let user = developer();
    let key = unique("burst");
    let submissions = (0..100).map(|_| submit(&stack, &user, database(fields()), Some(&key)));
    let answers = futures::future::join_all(submissions).await;
    let ids: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
            body["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let id = ids.into_iter().next().unwrap();

    let (_, listed) = get(&stack, &user, &["developers"], "/api/v1/requests?limit=100").await;
    assert_eq!(listed["requests"].as_array().unwrap().len(), 1);
    let sfn = aws_sdk_sfn::Client::new(&stack.sdk);
    let mut executions = 0;
    let mut pages = sfn
        .list_executions()
        .state_machine_arn(env("PAO_FULFILLMENT_STATE_MACHINE_ARN"))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        executions += page
            .unwrap()
            .executions()
            .iter()
            .filter(|e| e.name() == id)
            .count();
    }
    assert_eq!(executions, 1);
}

#[tokio::test]
async fn requests_are_seen_by_their_owner_and_admins_only() {
    let stack = Stack::connect().await;
    let owner = developer();
    let (_, request) = submit(&stack, &owner, database(fields()), None).await;
    let path = format!("/api/v1/requests/{}", request["id"].as_str().unwrap());

    assert_eq!(
        get(&stack, &owner, &["developers"], &path).await.0,
        StatusCode::OK
    );
    let (status, body) = get(&stack, &developer(), &["developers"], &path).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let admin = as_admin(http().get(stack.url(&path))).send().await.unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    let anonymous = http().get(stack.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // rest-database is for developers only: others cannot request it.
    let response = as_user(
        http().post(stack.url("/api/v1/requests")),
        &owner,
        &["finance"],
    )
    .json(&database(fields()))
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancel_stops_the_execution_and_a_finished_request_cannot_be_cancelled() {
    let stack = Stack::connect().await;
    let user = developer();
    // A manual request: it waits for its JIRA issue to be resolved.
    let (_, request) = submit(&stack, &user, queue_submission(), None).await;
    let path = format!("/api/v1/requests/{}", request["id"].as_str().unwrap());

    // Cancel mid-run: once the engine has started and the execution waits.
    for _ in 0..120 {
        let (_, now) = get(&stack, &user, &["developers"], &path).await;
        if now["status"] == "InProgress" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let cancel = || as_user(http().delete(stack.url(&path)), &user, &["developers"]).send();
    let first = cancel().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let cancelled: Value = first.json().await.unwrap();
    assert_eq!(cancelled["status"], "Cancelled");
    assert_eq!(
        cancelled["version"], 4,
        "Validated, Queued, InProgress, Cancelled"
    );
    // StopExecution was sent. The emulator does not interrupt a task that
    // waits for its token (AWS does), so whatever the execution does next
    // must not move the request: a late "complete" step is refused.
    let lambda = aws_sdk_lambda::Client::new(&stack.sdk);
    let late = json!({"request_id": request["id"], "step": "complete"});
    let invoked = lambda
        .invoke()
        .function_name("fulfillment-engine")
        .payload(aws_sdk_lambda::primitives::Blob::new(late.to_string()))
        .send()
        .await
        .unwrap();
    assert!(invoked.function_error().is_some());
    let error: Value = serde_json::from_slice(invoked.payload().unwrap().as_ref()).unwrap();
    assert_eq!(error["errorType"], "Fatal", "{error}");
    let (_, still) = get(&stack, &user, &["developers"], &path).await;
    assert_eq!(still["status"], "Cancelled");

    let second = cancel().await.unwrap();
    assert_eq!(second.status(), StatusCode::CONFLICT);

    let (_, logs) = get(&stack, &user, &["developers"], &format!("{path}/logs")).await;
    let audit: Vec<&str> = logs["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["to"].as_str().unwrap())
        .collect();
    assert_eq!(audit.first(), Some(&"Submitted"));
    assert_eq!(audit.last(), Some(&"Cancelled"));
}

#[tokio::test]
async fn listings_page_with_an_opaque_token_and_filter_by_status() {
    let stack = Stack::connect().await;
    let user = developer();
    for _ in 0..3 {
        submit(&stack, &user, database(fields()), None).await;
    }
    let mut seen = HashSet::new();
    let mut path = "/api/v1/requests?limit=2".to_string();
    loop {
        let (status, page) = get(&stack, &user, &["developers"], &path).await;
        assert_eq!(status, StatusCode::OK);
        for request in page["requests"].as_array().unwrap() {
            assert!(seen.insert(request["id"].as_str().unwrap().to_string()));
        }
        match page["next_token"].as_str() {
            Some(token) => path = format!("/api/v1/requests?limit=2&next_token={token}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);

    let (status, body) = get(
        &stack,
        &user,
        &["developers"],
        "/api/v1/requests?next_token=forged",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "bad_request");
    // Well-formed, for the right listing, but not a start key of its index.
    use base64::Engine as _;
    let partial = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"pk": "REQ#x", "sk": "REQUEST", "gsi2pk": "STATUS#Queued"}).to_string());
    let (status, body) = get(
        &stack,
        "admin@example.com",
        &["pao-admins"],
        &format!("/api/v1/requests?status=Queued&next_token={partial}"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = get(
        &stack,
        &user,
        &["developers"],
        "/api/v1/requests?status=Finished",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, filtered) = get(
        &stack,
        &user,
        &["developers"],
        "/api/v1/requests?status=Cancelled",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(filtered["requests"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bad_input_is_a_4xx_with_the_json_error_shape() {
    let stack = Stack::connect().await;
    let user = developer();
    let post = || {
        as_user(
            http().post(stack.url("/api/v1/requests")),
            &user,
            &["developers"],
        )
    };
    let cases = [
        (
            post()
                .header("content-type", "application/json")
                .body("{not json"),
            StatusCode::BAD_REQUEST,
        ),
        (
            post()
                .header("content-type", "application/json")
                .body(r#"{"item_id": 7}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            post()
                .header("content-type", "application/json")
                .body(r#"{"item_id": "x", "extra": 1}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            post().header("content-type", "text/plain").body("hello"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            post().json(&json!({"item_id": "no-such-item", "fields": {}})),
            StatusCode::NOT_FOUND,
        ),
        (
            post().json(&json!({"item_id": "i".repeat(3000), "fields": {}})),
            StatusCode::NOT_FOUND,
        ),
        (
            post().json(&database(json!([1, 2]))),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post()
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"item_id": "rest-database", "fields": {{"db_name": "{}"}}}}"#,
                    "a".repeat(300 * 1024)
                )),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            post()
                .json(&database(fields()))
                .header("Idempotency-Key", "x".repeat(200)),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (request, expected) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    let (status, _) = get(
        &stack,
        &user,
        &["developers"],
        "/api/v1/requests/no-such-request",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // An id far past any key DynamoDB takes is unknown too, not a 5xx.
    for path in ["", "/status", "/logs"] {
        let (status, body) = get(
            &stack,
            &user,
            &["developers"],
            &format!("/api/v1/requests/{}{path}", "r".repeat(3000)),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}

#[tokio::test]
async fn two_writers_racing_on_one_transition_one_wins() {
    let stack = Stack::connect().await;
    let table = RequestTable::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        env("PAO_REQUESTS_TABLE"),
    );
    let id = unique("race");
    let at = "2026-11-23T00:00:00Z".to_string();
    let request = Request {
        id: id.clone(),
        item_id: "rest-database".into(),
        item_version: "2.1.0".into(),
        item_hash: "sha256:0".into(),
        requester: Requester {
            subject: "u".into(),
            email: "u@example.com".into(),
        },
        status: RequestStatus::Queued,
        version: 1,
        fields: Default::default(),
        secret_fields: vec![],
        actions: Default::default(),
        execution_arn: None,
        reason: None,
        created_at: at.clone(),
        updated_at: at.clone(),
    };
    let audit = AuditEntry {
        at: at.clone(),
        actor: "test".into(),
        from: None,
        to: RequestStatus::Queued,
        reason: None,
    };
    let log = LogEntry {
        at: at.clone(),
        source: "test".into(),
        level: "info".into(),
        message: "created".into(),
    };
    let plan: Plan = serde_json::from_value(json!({
        "header": {"id": "rest-database"}, "mode": "manual",
        "manual": {"jira": {"project": "OPS", "issue_type": "Task", "summary": "s"}},
    }))
    .unwrap();
    assert!(table.create(&request, &plan, &[audit], &log).await.unwrap());
    let change = |to| Transition {
        from: RequestStatus::Queued,
        version: 1,
        to,
        actor: "test".into(),
        reason: None,
        execution_arn: None,
        at: at.clone(),
    };
    let (start, cancel) = (
        change(RequestStatus::InProgress),
        change(RequestStatus::Cancelled),
    );
    let (a, b) = tokio::join!(
        table.transition(&request, &start),
        table.transition(&request, &cancel)
    );
    let wins = [a.is_ok(), b.is_ok()].iter().filter(|won| **won).count();
    assert_eq!(wins, 1, "exactly one writer wins");
    let loser = if a.is_ok() { b } else { a };
    assert!(matches!(loser, Err(TransitionError::Conflict { .. })));
    let stored = table.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(table.audit(&id).await.unwrap().len(), 2);
}

/// The submission limit's adapter against the emulator's requests table: its
/// conditional update admits the limit's number of requests a minute, a
/// request counted already again, and refuses the next until the minute
/// ends; the caller's minute is one item that expires by the table's TTL.
/// (The stack's own limit, 600, is too high to reach cheaply through the
/// API; the 429 itself is tested in process.)
#[tokio::test]
async fn the_submission_limit_counts_a_callers_requests_in_the_table() {
    let stack = Stack::connect().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let limit = SubmissionWindows::new(dynamodb.clone(), env("PAO_REQUESTS_TABLE"), 3);
    // The few calls below take well under a second: start them early
    // enough in a minute that they all fall in it.
    let window = Window::now();
    if window.retry_after_seconds < 5 {
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(
            window.retry_after_seconds,
        )))
        .await;
    }
    let window = Window::now();
    let (caller, other) = (developer(), developer());
    let ids: Vec<String> = (0..3).map(|_| unique("request")).collect();
    for id in &ids {
        assert_eq!(limit.admit(&caller, id).await.unwrap(), Admission::Admitted);
    }
    assert_eq!(
        limit.admit(&caller, &ids[0]).await.unwrap(),
        Admission::Admitted,
        "a request counted already"
    );
    match limit.admit(&caller, &unique("request")).await.unwrap() {
        Admission::Refused {
            per_minute,
            retry_after_seconds,
        } => {
            assert_eq!(per_minute, 3);
            assert!((1..=60).contains(&retry_after_seconds));
        }
        Admission::Admitted => panic!("a fourth request in one minute was admitted"),
    }
    assert_eq!(
        limit.admit(&other, &unique("request")).await.unwrap(),
        Admission::Admitted,
        "another caller"
    );

    let item = dynamodb
        .get_item()
        .table_name(env("PAO_REQUESTS_TABLE"))
        .key("pk", AttributeValue::S(format!("RATE#{caller}")))
        .key("sk", AttributeValue::S(format!("MINUTE#{}", window.minute)))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the caller's minute");
    assert_eq!(item["requests"].as_ss().map(Vec::len), Ok(3));
    assert_eq!(
        item["expires_at"].as_n().map(String::as_str),
        Ok(window.ends_at.to_string().as_str())
    );
}
