//! End to end on the local stack: real Step Functions executions (moto's
//! interpreter) running the real action functions, which call a local HTTP
//! server this test starts (wiremock on 127.0.0.1, which the local stack's
//! egress allow-list opens).

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use pao_integration::{as_user, env, http, pairs, queue_submission, unique, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const GROUPS: &[&str] = &["developers"];

/// What `create` answers as its `api_token`, a secret output.
const TOKEN: &str = "tok-4f1c9e7a2b-never-stored-in-clear";

/// Three HTTP actions: `create`, then `attach` and `announce` in parallel,
/// both reading `create`'s output. `create` and `attach` can be undone.
/// `create` also answers a token, which it keeps as a secret output.
fn three_actions(id: &str, base: &str) -> String {
    format!(
        r#"schema_version: 2
header:
  id: {id}
  name: Fulfillment test
  version: 1.0.0
  owner: team-a
  category: tests
  description: Three HTTP actions, one of them depending on another.
  tags: [test]
presentation:
  fields:
    - id: name
      type: string
      label: Name
      required: true
fulfillment:
  mode: automated
  manual:
    jira:
      project: OPS
      issue_type: Task
      summary: "Make {{{{fields.name}}}}"
  automated:
    actions:
      - id: create
        type: rest-api
        config:
          method: POST
          url: "{base}/things"
          body: {{name: "{{{{fields.name}}}}", by: "{{{{request.user.email}}}}"}}
          success_codes: [201]
          response_mapping: {{thing_id: "$.id", api_token: "$.token"}}
          secret_outputs: [api_token]
        rollback:
          method: DELETE
          url: "{base}/things/{{{{response.create.thing_id}}}}"
      - id: attach
        type: rest-api
        depends_on: [create]
        retry: {{max_attempts: 3, interval_seconds: 1, backoff_rate: 1.0}}
        config:
          method: PUT
          url: "{base}/things/{{{{response.create.thing_id}}}}/attachment"
          response_mapping: {{attachment: "$.attachment"}}
        rollback:
          method: DELETE
          url: "{base}/things/{{{{response.create.thing_id}}}}/attachment"
      - id: announce
        type: webhook
        depends_on: [create]
        config:
          url: "{base}/hooks"
          body: {{text: "made {{{{response.create.thing_id}}}} for {{{{fields.name}}}}"}}
"#
    )
}

struct Fixture {
    stack: Stack,
    server: MockServer,
    user: String,
    item: String,
}

impl Fixture {
    /// A fresh item pointing at a fresh server.
    async fn new() -> Self {
        let stack = Stack::connect().await;
        let server = MockServer::start().await;
        let item = unique("fulfill");
        let yaml = three_actions(&item, &server.uri());
        let s3 = aws_sdk_s3::Client::new(&stack.sdk);
        s3.put_object()
            .bucket(env("PAO_CATALOG_BUCKET"))
            .key(format!("it/{item}.yaml"))
            .body(ByteStream::from(yaml.into_bytes()))
            .send()
            .await
            .expect("PutObject");
        let user = format!("{}@example.com", unique("fulfill"));
        let fixture = Self {
            stack,
            server,
            user,
            item,
        };
        let (status, body) = fixture
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/catalog/items/{}", fixture.item),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "the item is published: {body}");
        fixture
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = as_user(
            http().request(method, self.stack.url(path)),
            &self.user,
            GROUPS,
        );
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.send().await.expect("the API answers");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// `DELETE /api/v1/requests/{id}`: cancels the request.
    async fn cancel(&self, id: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/api/v1/requests/{id}"),
            None,
        )
        .await
    }

    async fn submit(&self) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/requests",
                Some(json!({"item_id": self.item, "fields": {"name": "widget"}})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    /// Polls the status route until the request is in one of `statuses`.
    async fn wait_for(&self, id: &str, statuses: &[&str]) -> Value {
        let mut last = Value::Null;
        for _ in 0..240 {
            let (_, status) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/requests/{id}/status"),
                    None,
                )
                .await;
            if statuses.iter().any(|s| status["status"] == *s) {
                return status;
            }
            last = status;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (_, logs) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/requests/{id}/logs"),
                None,
            )
            .await;
        panic!("request {id} never reached {statuses:?}; last {last}; logs {logs:#}");
    }

    async fn logs(&self, id: &str) -> Vec<String> {
        let (_, logs) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/requests/{id}/logs"),
                None,
            )
            .await;
        pairs(&logs["entries"], "source", "message", ": ")
    }

    async fn calls(&self, verb: &str, at: &str) -> usize {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.method.as_str() == verb && r.url.path() == at)
            .count()
    }

    /// State transitions of the request's first execution, as AWS bills them.
    async fn transitions(&self, id: &str) -> usize {
        let sfn = aws_sdk_sfn::Client::new(&self.stack.sdk);
        let history = sfn
            .get_execution_history()
            .execution_arn(first_execution(id))
            .max_results(1000)
            .send()
            .await
            .expect("GetExecutionHistory");
        history
            .events()
            .iter()
            .filter(|e| e.r#type().as_str().ends_with("StateEntered"))
            .count()
    }
}

/// The ARN of a request's first execution, which is named by its id.
fn first_execution(id: &str) -> String {
    format!(
        "{}:{id}",
        env("PAO_FULFILLMENT_STATE_MACHINE_ARN").replace(":stateMachine:", ":execution:")
    )
}

/// What `POST /things` answers.
fn created() -> Value {
    json!({"id": "t-1", "token": TOKEN})
}

async fn mount_create(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/things"))
        .respond_with(ResponseTemplate::new(201).set_body_json(created()))
        .mount(server)
        .await;
}

async fn mount_attach(server: &MockServer, status: u16) {
    Mock::given(method("PUT"))
        .and(path("/things/t-1/attachment"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({"attachment": "a-1"})))
        .mount(server)
        .await;
}

async fn mount_rest(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .and(body_json(json!({"text": "made t-1 for widget"})))
        .respond_with(ResponseTemplate::new(204))
        .mount(server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(204))
        .mount(server)
        .await;
}

/// The service the three actions call; `attach` answers `attach_status`.
async fn mount_all(server: &MockServer, attach_status: u16) {
    mount_create(server).await;
    mount_attach(server, attach_status).await;
    mount_rest(server).await;
}

#[tokio::test]
async fn a_graph_with_a_dependency_and_a_parallel_wave_completes_with_outputs_flowing() {
    let fixture = Fixture::new().await;
    mount_all(&fixture.server, 200).await;
    let id = fixture.submit().await;
    let done = fixture.wait_for(&id, &["Completed", "Failed"]).await;
    assert_eq!(
        done["status"],
        "Completed",
        "{done} {:#?}",
        fixture.logs(&id).await
    );
    let actions = done["actions"].as_array().unwrap();
    let outputs = |action: &str| {
        actions
            .iter()
            .find(|a| a["id"] == action)
            .map(|a| a["outputs"].clone())
            .unwrap()
    };
    let mut created = outputs("create");
    let token_arn = created["api_token"].take();
    assert_eq!(
        created,
        json!({"status_code": 201, "thing_id": "t-1", "api_token": null})
    );
    // The secret output is kept in Secrets Manager; the request holds its ARN.
    let token_arn = token_arn.as_str().expect("the token's ARN");
    assert!(
        token_arn.starts_with("arn:aws:secretsmanager:"),
        "{token_arn}"
    );
    let stored = aws_sdk_secretsmanager::Client::new(&fixture.stack.sdk)
        .get_secret_value()
        .secret_id(token_arn)
        .send()
        .await
        .expect("GetSecretValue");
    assert_eq!(stored.secret_string(), Some(TOKEN));
    fixture
        .stack
        .assert_secret_kept_out(&id, &first_execution(&id), TOKEN)
        .await;
    assert_eq!(
        outputs("attach"),
        json!({"status_code": 200, "attachment": "a-1"})
    );
    assert_eq!(outputs("announce"), json!({"status_code": 204}));
    for (verb, at) in [
        ("POST", "/things"),
        ("PUT", "/things/t-1/attachment"),
        ("POST", "/hooks"),
    ] {
        assert_eq!(fixture.calls(verb, at).await, 1, "{verb} {at}");
    }
    assert_eq!(fixture.calls("DELETE", "/things/t-1").await, 0);
    let transitions = fixture.transitions(&id).await;
    println!("state transitions of a three-action, two-wave fulfillment: {transitions}");
    assert!(transitions <= 40, "{transitions} state transitions");
}

/// The EKS stack's dependency graph (network → database, cluster → secret
/// → app → notify) with webhook actions, to count the state transitions a
/// fulfillment of that shape takes.
fn eks_shaped(id: &str, base: &str) -> String {
    let actions = [
        ("network", ""),
        ("database", "network"),
        ("app_secret", "database"),
        ("cluster", "network"),
        ("app", "cluster, database, app_secret"),
        ("notify", "app"),
    ]
    .iter()
    .map(|(action, deps)| {
        format!(
            "      - id: {action}\n        type: webhook\n        depends_on: [{deps}]\n        config: {{url: \"{base}/hooks\", body: {{step: {action}}}}}\n"
        )
    })
    .collect::<String>();
    three_actions(id, base)
        .split("    actions:\n")
        .next()
        .map(|head| format!("{head}    actions:\n{actions}"))
        .unwrap()
}

#[tokio::test]
async fn the_eks_stack_graph_takes_at_most_40_state_transitions() {
    let fixture = Fixture::new().await;
    let item = unique("eks-shaped");
    let s3 = aws_sdk_s3::Client::new(&fixture.stack.sdk);
    s3.put_object()
        .bucket(env("PAO_CATALOG_BUCKET"))
        .key(format!("it/{item}.yaml"))
        .body(ByteStream::from(
            eks_shaped(&item, &fixture.server.uri()).into_bytes(),
        ))
        .send()
        .await
        .expect("PutObject");
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&fixture.server)
        .await;
    let (status, body) = fixture
        .call(
            reqwest::Method::POST,
            "/api/v1/requests",
            Some(json!({"item_id": item, "fields": {"name": "shop"}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap();
    let done = fixture.wait_for(id, &["Completed", "Failed"]).await;
    assert_eq!(done["status"], "Completed", "{done}");
    assert_eq!(fixture.calls("POST", "/hooks").await, 6);
    let transitions = fixture.transitions(id).await;
    println!("state transitions of the EKS stack's graph (6 actions, 5 waves): {transitions}");
    assert!(transitions <= 40, "{transitions} state transitions");
}

#[tokio::test]
async fn a_failing_action_is_retried_then_compensated_and_a_retry_completes_without_repeating_what_succeeded(
) {
    let fixture = Fixture::new().await;
    mount_all(&fixture.server, 503).await;
    let id = fixture.submit().await;
    let failed = fixture.wait_for(&id, &["Completed", "Failed"]).await;
    assert_eq!(failed["status"], "Failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("attach") && reason.contains("503"),
        "{reason}"
    );
    // Tried as often as its retry policy says, then given up.
    assert_eq!(fixture.calls("PUT", "/things/t-1/attachment").await, 3);
    // Compensated: what create made is deleted; the announcement has no rollback.
    assert_eq!(fixture.calls("DELETE", "/things/t-1").await, 1);
    let logs = fixture.logs(&id).await;
    assert!(
        logs.iter().any(|l| l.contains("trying again in")),
        "{logs:#?}"
    );
    assert!(
        logs.iter().any(|l| l.starts_with("create: compensated")),
        "{logs:#?}"
    );
    // create's secret output went with what it described.
    let token = secret_name(&id);
    assert!(
        logs.iter()
            .any(|l| l.starts_with("create: secret output api_token scheduled for deletion")),
        "{logs:#?}"
    );
    let secrets = aws_sdk_secretsmanager::Client::new(&fixture.stack.sdk);
    let described = secrets
        .describe_secret()
        .secret_id(&token)
        .send()
        .await
        .expect("DescribeSecret");
    assert!(described.deleted_date().is_some(), "{described:?}");

    // The cause is fixed: a retry completes, and announce is not sent again.
    fixture.server.reset().await;
    mount_all(&fixture.server, 200).await;
    let retry = format!("/api/v1/requests/{id}/retry");
    let (status, body) = fixture.call(reqwest::Method::POST, &retry, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (again, _) = fixture.call(reqwest::Method::POST, &retry, None).await;
    assert_eq!(
        again,
        StatusCode::ACCEPTED,
        "a repeated retry is the same retry"
    );
    let done = fixture.wait_for(&id, &["Completed", "Failed"]).await;
    assert_eq!(done["status"], "Completed", "{done}");
    assert_eq!(
        fixture.calls("POST", "/things").await,
        1,
        "create ran again: it was undone"
    );
    assert_eq!(fixture.calls("PUT", "/things/t-1/attachment").await, 1);
    assert_eq!(
        fixture.calls("POST", "/hooks").await,
        0,
        "announce had succeeded"
    );
    // create ran again: its secret output is back, with the new answer.
    let restored = secrets
        .get_secret_value()
        .secret_id(&token)
        .send()
        .await
        .expect("GetSecretValue");
    assert_eq!(restored.secret_string(), Some(TOKEN));
}

/// Where the request's `create` action keeps its `api_token` output.
fn secret_name(id: &str) -> String {
    format!("pao/requests/{id}/actions/create/api_token")
}

#[tokio::test]
async fn rollback_compensates_a_completed_request() {
    let fixture = Fixture::new().await;
    // The first undo takes a while, so the rollback is seen under way.
    Mock::given(method("DELETE"))
        .and(path("/things/t-1/attachment"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_secs(3)))
        .mount(&fixture.server)
        .await;
    mount_all(&fixture.server, 200).await;
    let id = fixture.submit().await;
    let done = fixture.wait_for(&id, &["Completed", "Failed"]).await;
    assert_eq!(done["status"], "Completed");
    let rollback = format!("/api/v1/requests/{id}/rollback");
    let (status, body) = fixture.call(reqwest::Method::POST, &rollback, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "RollingBack");
    // A rollback under way is not cancelled, and goes on.
    let (status, body) = fixture.cancel(&id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let rolled = fixture.wait_for(&id, &["RolledBack", "Failed"]).await;
    assert_eq!(rolled["status"], "RolledBack", "{rolled}");
    // Newest first: attach's undo before create's.
    let deletes: Vec<String> = fixture
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(deletes, ["/things/t-1/attachment", "/things/t-1"]);
    let (status, _) = fixture.call(reqwest::Method::POST, &rollback, None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a rolled-back request cannot roll back again"
    );
}

#[tokio::test]
async fn cancelling_mid_run_stops_and_compensates() {
    let fixture = Fixture::new().await;
    Mock::given(method("POST"))
        .and(path("/things"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(created())
                .set_delay(Duration::from_secs(4)),
        )
        .mount(&fixture.server)
        .await;
    mount_attach(&fixture.server, 200).await;
    mount_rest(&fixture.server).await;
    let id = fixture.submit().await;
    fixture.wait_for(&id, &["InProgress"]).await;
    let (status, body) = fixture.cancel(&id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "Cancelled");
    // What create made while the cancellation arrived is undone, and
    // nothing after it runs.
    for _ in 0..60 {
        if fixture.calls("DELETE", "/things/t-1").await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        fixture.calls("DELETE", "/things/t-1").await,
        1,
        "{:#?}",
        fixture.logs(&id).await
    );
    assert_eq!(fixture.calls("PUT", "/things/t-1/attachment").await, 0);
    assert_eq!(fixture.calls("POST", "/hooks").await, 0);
    let (_, still) = fixture
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/requests/{id}/status"),
            None,
        )
        .await;
    assert_eq!(still["status"], "Cancelled");
}

/// The manual messaging-queue example: its ticket goes to the stack's fake
/// JIRA, and the JIRA webhook resumes the request.
mod manual {
    use super::*;

    /// Submits a manual request and waits until its JIRA issue is open.
    async fn open_ticket(fixture: &Fixture) -> (String, String) {
        let (status, body) = fixture
            .call(
                reqwest::Method::POST,
                "/api/v1/requests",
                Some(queue_submission()),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let key = wait_for_ticket(fixture, &id, 1).await;
        (id, key)
    }

    /// Waits until the request's `attempt`-th JIRA issue is open and its
    /// task token kept, and answers the issue's key.
    async fn wait_for_ticket(fixture: &Fixture, id: &str, attempt: usize) -> String {
        for _ in 0..120 {
            let (_, status) = fixture
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/requests/{id}/status"),
                    None,
                )
                .await;
            let ticket = status["actions"]
                .as_array()
                .and_then(|actions| actions.iter().find(|a| a["id"] == "ticket").cloned());
            let waiting = fixture
                .logs(id)
                .await
                .iter()
                .filter(|l| l.contains("waiting for the platform team"))
                .count();
            if let Some(key) = ticket
                .as_ref()
                .filter(|t| t["status"] == "Succeeded")
                .and_then(|t| t["outputs"]["issue_key"].as_str())
            {
                // The log says so too, once the task token is kept.
                if waiting == attempt {
                    assert_eq!(status["status"], "InProgress", "{status}");
                    return key.to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("no ticket for {id}: {:#?}", fixture.logs(id).await);
    }

    async fn deliver(
        fixture: &Fixture,
        key: &str,
        status: &str,
        category: &str,
        resolution: Option<&str>,
        secret: &str,
    ) -> (StatusCode, Value) {
        let mut fields = json!({"status": {"name": status, "statusCategory": {"key": category}}});
        if let Some(resolution) = resolution {
            fields["resolution"] = json!({"name": resolution});
        }
        let body =
            json!({"webhookEvent": "jira:issue_updated", "issue": {"key": key, "fields": fields}})
                .to_string();
        let response = http()
            .post(fixture.stack.url("/api/v1/webhooks/jira"))
            .header("Content-Type", "application/json")
            .header(
                "X-Hub-Signature",
                pao::requests::ticket::sign(secret.as_bytes(), body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let code = response.status();
        (code, response.json().await.unwrap_or(Value::Null))
    }

    /// Asserts the webhook took the delivery, with this outcome.
    fn assert_outcome((status, body): (StatusCode, Value), expected: &str) {
        assert_eq!(
            (status, body["outcome"].as_str()),
            (StatusCode::OK, Some(expected)),
            "{body}"
        );
    }

    async fn fake_calls() -> Vec<String> {
        let calls: Value = http()
            .get(format!("{}/_calls", env("PAO_FAKE_URL")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pairs(&calls["calls"], "method", "path", " ")
    }

    #[tokio::test]
    async fn a_manual_request_waits_for_its_ticket_and_completes_when_it_is_resolved() {
        let fixture = Fixture::new().await;
        let secret = env("PAO_JIRA_WEBHOOK_SECRET");
        let (id, key) = open_ticket(&fixture).await;
        assert!(key.starts_with("INTPLAT-"), "{key}");
        assert!(fake_calls()
            .await
            .contains(&"POST /jira/rest/api/2/issue".to_string()));

        // A forged delivery is refused and changes nothing.
        let (status, body) = deliver(
            &fixture,
            &key,
            "Done",
            "done",
            Some("Done"),
            "not-the-secret",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "bad_signature");
        // Work in progress keeps it waiting.
        let (status, body) = deliver(
            &fixture,
            &key,
            "In Progress",
            "indeterminate",
            None,
            &secret,
        )
        .await;
        assert_eq!(
            (status, body["outcome"].as_str()),
            (StatusCode::OK, Some("heartbeat")),
            "{body}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, still) = fixture
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/requests/{id}/status"),
                None,
            )
            .await;
        assert_eq!(still["status"], "InProgress");

        assert_outcome(
            deliver(&fixture, &key, "Done", "done", Some("Done"), &secret).await,
            "completed",
        );
        let done = fixture.wait_for(&id, &["Completed", "Failed"]).await;
        assert_eq!(done["status"], "Completed", "{done}");
        // A late delivery for the same issue resumes nothing.
        assert_outcome(
            deliver(&fixture, &key, "Done", "done", Some("Done"), &secret).await,
            "ignored",
        );
    }

    #[tokio::test]
    async fn a_rejected_ticket_fails_the_request_with_the_reason() {
        let fixture = Fixture::new().await;
        let secret = env("PAO_JIRA_WEBHOOK_SECRET");
        let (id, key) = open_ticket(&fixture).await;
        assert_outcome(
            deliver(&fixture, &key, "Done", "done", Some("Won't Do"), &secret).await,
            "rejected",
        );
        let failed = fixture.wait_for(&id, &["Completed", "Failed"]).await;
        assert_eq!(failed["status"], "Failed");
        assert_eq!(
            failed["reason"],
            format!("Rejected: JIRA {key} was closed as Won't Do").as_str()
        );
        // Compensation tells the issue it is no longer needed.
        let comment = format!("POST /jira/rest/api/2/issue/{key}/comment");
        let mut commented = false;
        for _ in 0..40 {
            commented = fake_calls().await.contains(&comment);
            if commented {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            commented,
            "no comment on {key}: {:#?}",
            fixture.logs(&id).await
        );

        // Retried, the request opens a new issue; the rejected one, edited
        // later, resumes nothing.
        let retry = format!("/api/v1/requests/{id}/retry");
        let (status, body) = fixture.call(reqwest::Method::POST, &retry, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let second = wait_for_ticket(&fixture, &id, 2).await;
        assert_ne!(second, key);
        assert_outcome(
            deliver(&fixture, &key, "Done", "done", Some("Done"), &secret).await,
            "ignored",
        );
        assert_outcome(
            deliver(&fixture, &second, "Done", "done", Some("Done"), &secret).await,
            "completed",
        );
        let done = fixture.wait_for(&id, &["Completed", "Failed"]).await;
        assert_eq!(done["status"], "Completed", "{done}");
    }
}
