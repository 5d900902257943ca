//! The github-workflow driver against GitHub's API stood in by wiremock
//! (on 127.0.0.1), for the answers the stack's fake GitHub is not asked
//! for: a rate limit while polling, a run that ignores its cancel, no
//! credentials at all. `tests/github.rs` runs the driver end to end.

use pao::action::ActionError;
use pao::actions::driver::{Driver, Progress, Undone};
use pao::actions::memory::{Fixture, MemoryJournal};
use pao::catalog::item::ActionType;
use pao::drivers::github::client::{Credentials, GitHub, Settings};
use pao::drivers::github::GithubDriver;
use pao::outbound::{AllowList, Egress};
use pao::requests::fulfillment::Resource;
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "ghp_wiremock_token_1234567890";
const RUNS: &str = "/repos/acme/shop/actions/runs";

fn driver(server: &MockServer, credentials: Option<Credentials>) -> GithubDriver {
    let egress = Egress::new(AllowList::parse("127.0.0.1/32").unwrap()).unwrap();
    let settings = Settings {
        api_url: server.uri(),
        credentials,
    };
    GithubDriver::new(GitHub::new(settings, egress))
}

fn token() -> Option<Credentials> {
    Some(Credentials::Token(SecretString::from(TOKEN)))
}

fn fixture() -> Fixture {
    Fixture::new(
        &uuid::Uuid::new_v4().to_string(),
        "github-app-deploy",
        ActionType::GithubWorkflow,
        "deploy",
        json!({"owner": "acme", "repo": "shop", "workflow": "deploy.yml", "ref": "main",
               "inputs": {"image_tag": "1.8.2", "replicas": 3, "dry_run": false}}),
    )
}

fn run(id: u64, status: &str, conclusion: Value) -> Value {
    json!({"id": id, "status": status, "conclusion": conclusion,
           "html_url": format!("https://github.com/acme/shop/actions/runs/{id}"),
           "display_title": "deploy.yml"})
}

#[tokio::test]
async fn a_run_is_dispatched_with_its_inputs_as_text_and_polled_through_a_rate_limit() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/repos/acme/shop/actions/workflows/deploy.yml/dispatches",
        ))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("x-github-api-version", "2022-11-28"))
        .and(body_partial_json(json!({
            "ref": "main", "return_run_details": true,
            "inputs": {"image_tag": "1.8.2", "replicas": "3", "dry_run": "false"}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "workflow_run_id": 77, "run_url": format!("{}{RUNS}/77", server.uri()),
            "html_url": "https://github.com/acme/shop/actions/runs/77"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 42;
    Mock::given(method("GET"))
        .and(path(format!("{RUNS}/77")))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({"message": "API rate limit exceeded"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{RUNS}/77")))
        .respond_with(ResponseTemplate::new(200).set_body_json(run(
            77,
            "completed",
            json!("success"),
        )))
        .mount(&server)
        .await;
    let driver = driver(&server, token());
    let fixture = fixture();
    let journal = MemoryJournal::default();

    let started = driver.start(&fixture.step(&journal, &[])).await.unwrap();
    assert!(matches!(started, Progress::Wait { .. }), "{started:?}");
    let ledger = journal.resources();
    let kinds: Vec<&str> = ledger.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["github:dispatch", "github:workflow-run"]);
    assert_eq!(ledger[1].id, "acme/shop/77");

    // Rate limited: wait as long as GitHub says, then read the run.
    let limited = driver.poll(&fixture.step(&journal, &ledger)).await.unwrap();
    let Progress::Wait {
        seconds,
        waiting_for,
    } = limited
    else {
        panic!("{limited:?}");
    };
    assert!((41..=42).contains(&seconds), "{seconds} s: {waiting_for}");
    let done = driver.poll(&fixture.step(&journal, &ledger)).await.unwrap();
    assert_eq!(
        done,
        Progress::Done(pao::actions::driver::Outputs::new(
            json!({"run_id": 77, "run_url": "https://github.com/acme/shop/actions/runs/77",
                   "conclusion": "success"})
            .as_object()
            .cloned()
            .unwrap()
        ))
    );
}

#[tokio::test]
async fn a_failed_run_is_fatal_with_its_conclusion_and_page() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{RUNS}/78")))
        .respond_with(ResponseTemplate::new(200).set_body_json(run(
            78,
            "completed",
            json!("timed_out"),
        )))
        .mount(&server)
        .await;
    let driver = driver(&server, token());
    let fixture = fixture();
    let journal = MemoryJournal::default();
    let ledger = recorded_run(78);

    let failed = driver.poll(&fixture.step(&journal, &ledger)).await;

    assert_eq!(
        failed,
        Err(ActionError::Fatal(
            "workflow run 78 of acme/shop concluded timed_out: \
             https://github.com/acme/shop/actions/runs/78"
                .to_string()
        ))
    );
}

/// A dispatch and its run, as start records them.
fn recorded_run(id: u64) -> Vec<Resource> {
    vec![
        Resource::new("github:dispatch", "pao-x-deploy-run-1")
            .with("purpose", "run")
            .with("workflow", "deploy.yml")
            .with("dispatched_at", "2026-12-01T00:00:00Z"),
        Resource::new("github:workflow-run", format!("acme/shop/{id}"))
            .with("purpose", "run")
            .with("dispatch", "pao-x-deploy-run-1")
            .with("run_id", id.to_string())
            .with(
                "html_url",
                format!("https://github.com/acme/shop/actions/runs/{id}"),
            ),
    ]
}

#[tokio::test]
async fn a_run_that_ignores_its_cancel_is_force_cancelled() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{RUNS}/79")))
        .respond_with(ResponseTemplate::new(200).set_body_json(run(79, "in_progress", Value::Null)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{RUNS}/79/cancel")))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{RUNS}/79/force-cancel")))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let driver = driver(&server, token());
    let fixture = fixture();
    let journal = MemoryJournal::default();

    // First: a cancel, recorded with when it was asked.
    let ledger = recorded_run(79);
    let first = driver
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert!(matches!(first, Undone::Wait { .. }), "{first:?}");
    let asked = journal.resources();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].kind, "github:cancel");

    // Still running, but asked only now: no second call yet.
    let mut ledger = recorded_run(79);
    ledger.extend(asked);
    let again = driver
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert!(matches!(again, Undone::Wait { .. }), "{again:?}");

    // Asked long ago and still running: force-cancelled.
    let mut ledger = recorded_run(79);
    ledger.push(
        Resource::new("github:cancel", "acme/shop/79").with("asked_at", "2026-01-01T00:00:00Z"),
    );
    let forced = driver
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();
    assert!(matches!(forced, Undone::Wait { .. }), "{forced:?}");
}

#[tokio::test]
async fn without_credentials_the_action_fails_naming_the_settings() {
    let server = MockServer::start().await;
    let driver = driver(&server, None);
    let fixture = fixture();
    let journal = MemoryJournal::default();

    let refused = driver.start(&fixture.step(&journal, &[])).await;

    let Err(ActionError::Fatal(message)) = refused else {
        panic!("{refused:?}");
    };
    assert!(
        message.contains("PAO_GITHUB_APP_ID") && message.contains("PAO_GITHUB_TOKEN"),
        "{message}"
    );
    assert!(server
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());
}

#[tokio::test]
async fn without_waiting_the_dispatched_runs_id_is_the_output() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/repos/acme/shop/actions/workflows/deploy.yml/dispatches",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "workflow_run_id": 81, "html_url": "https://github.com/acme/shop/actions/runs/81"
        })))
        .mount(&server)
        .await;
    let driver = driver(&server, token());
    let mut fixture = fixture();
    fixture.action.config.insert("wait".into(), json!(false));
    let journal = MemoryJournal::default();

    let done = driver.start(&fixture.step(&journal, &[])).await.unwrap();

    let Progress::Done(outputs) = done else {
        panic!("{done:?}");
    };
    assert_eq!(
        Value::Object(outputs.values),
        json!({"run_id": 81, "run_url": "https://github.com/acme/shop/actions/runs/81",
               "conclusion": null})
    );
}

#[tokio::test]
async fn a_run_dispatched_without_details_is_found_by_title_and_cancelled_when_undone() {
    let server = MockServer::start().await;
    let title = "pao-x-deploy-run-1";
    let mut found = run(82, "in_progress", Value::Null);
    found["display_title"] = json!(title);
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/actions/workflows/deploy.yml/runs"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "total_count": 2,
            "workflow_runs": [run(83, "in_progress", Value::Null), found]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{RUNS}/82")))
        .respond_with(ResponseTemplate::new(200).set_body_json(run(82, "in_progress", Value::Null)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{RUNS}/82/cancel")))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let driver = driver(&server, token());
    let fixture = fixture();
    let journal = MemoryJournal::default();
    // The dispatch, made without run details; its run never recorded.
    let ledger = vec![Resource::new("github:dispatch", title)
        .with("purpose", "run")
        .with("workflow", "deploy.yml")
        .with("dispatched_at", "2026-12-01T00:00:00Z")];

    let undone = driver
        .compensate(&fixture.step(&journal, &ledger))
        .await
        .unwrap();

    assert!(matches!(undone, Undone::Wait { .. }), "{undone:?}");
    let kinds: Vec<String> = journal
        .resources()
        .iter()
        .map(|r| format!("{} {}", r.kind, r.id))
        .collect();
    assert_eq!(
        kinds,
        [
            "github:workflow-run acme/shop/82",
            "github:cancel acme/shop/82"
        ]
    );
}
