//! github-workflow end to end: requests for the example `github-app-deploy`
//! item (and one item of the test's own, with a rollback workflow) run the
//! real action function against the local stack's fake GitHub, which
//! checks the app's JWT and installation tokens as GitHub does and moves
//! each dispatched run through its states; input values ending in `-fail`
//! or `-hang`, and repositories named `legacy-*`, choose its other paths
//! (`infra/local/fake_github.py`).

use std::time::Duration;

use pao_integration::portal::Portal;
use pao_integration::{env, http, unique};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ITEM: &str = "github-app-deploy";
const GROUPS: &[&str] = &["developers"];
const LIMIT: Duration = Duration::from_secs(120);

/// Every run the fake GitHub holds.
async fn runs() -> Vec<Value> {
    let all: Value = http()
        .get(format!("{}/_github/runs", env("PAO_FAKE_URL")))
        .send()
        .await
        .expect("GET /_github/runs")
        .json()
        .await
        .expect("JSON");
    all["runs"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no runs list in {all}"))
}

/// The runs of `repo`.
async fn runs_of(repo: &str) -> Vec<Value> {
    runs()
        .await
        .into_iter()
        .filter(|run| {
            run["repository"]
                .as_str()
                .is_some_and(|r| r.ends_with(&format!("/{repo}")))
        })
        .collect()
}

async fn deploy(portal: &Portal, repository: &str, image_tag: &str) -> String {
    let mut fields = portal.form_defaults(ITEM).await;
    if let Some(fields) = fields.as_object_mut() {
        fields.insert("repository".into(), json!(repository));
        fields.insert("image_tag".into(), json!(image_tag));
        fields.insert("notify_team".into(), json!(false));
    }
    portal.submit(ITEM, fields).await
}

#[tokio::test]
async fn the_example_deploy_item_completes_with_its_runs_outputs() {
    let portal = Portal::new(GROUPS).await;
    let repository = unique("checkout");
    let id = deploy(&portal, &repository, "1.8.2").await;
    portal.ends(&id, "Completed", LIMIT).await;
    let outputs = portal.stack.outputs(&id, "deploy").await;
    let run_id = outputs["run_id"].as_u64().expect("a run id");
    assert_eq!(outputs["conclusion"], "success");
    assert!(
        outputs["run_url"]
            .as_str()
            .is_some_and(|url| url.ends_with(&format!("/{repository}/actions/runs/{run_id}"))),
        "{outputs}"
    );
    let made = runs_of(&repository).await;
    assert_eq!(made.len(), 1, "one run: {made:#?}");
    let run = &made[0];
    assert_eq!(run["id"], run_id);
    assert_eq!(run["inputs"]["image_tag"], "1.8.2");
    assert_eq!(run["inputs"]["pao_request_id"], id.as_str());
    assert_eq!(run["inputs"]["replicas"], "2", "inputs go as text");
    assert_eq!(run["conclusion"], "success");
}

#[tokio::test]
async fn a_failing_workflow_fails_the_request_with_the_runs_page() {
    let portal = Portal::new(GROUPS).await;
    let repository = unique("checkout");
    let id = deploy(&portal, &repository, "1.8.2-fail").await;
    portal.ends(&id, "Failed", LIMIT).await;
    let made = runs_of(&repository).await;
    let page = made[0]["html_url"].as_str().expect("the run's page");
    let (_, request) = portal
        .call(Method::GET, &format!("/api/v1/requests/{id}"), None)
        .await;
    let reason = request["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("concluded failure") && reason.contains(page),
        "the reason names the conclusion and the run: {reason}"
    );
}

#[tokio::test]
async fn cancelling_a_request_mid_run_cancels_its_workflow_run() {
    let portal = Portal::new(GROUPS).await;
    let repository = unique("checkout");
    let id = deploy(&portal, &repository, "1.8.2-hang").await;
    let started = std::time::Instant::now();
    while runs_of(&repository).await.is_empty() {
        assert!(started.elapsed() < LIMIT, "the run never started");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (code, body) = portal
        .call(Method::DELETE, &format!("/api/v1/requests/{id}"), None)
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "Cancelled");
    loop {
        let run = runs_of(&repository).await.remove(0);
        if run["status"] == "completed" {
            assert_eq!(run["conclusion"], "cancelled", "{run}");
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the run was never cancelled: {run}; logs {:#?}",
            portal.logs(&id).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_server_without_run_details_has_its_run_found_by_title() {
    let portal = Portal::new(GROUPS).await;
    let repository = unique("legacy-checkout");
    let id = deploy(&portal, &repository, "1.8.2").await;
    portal.ends(&id, "Completed", LIMIT).await;
    let made = runs_of(&repository).await;
    assert_eq!(made.len(), 1, "dispatched once: {made:#?}");
    let title = made[0]["display_title"].as_str().unwrap_or_default();
    assert_eq!(made[0]["inputs"]["pao_correlation_id"], title);
    assert!(title.starts_with(&format!("pao-{id}-deploy")), "{title}");
    let outputs = portal.stack.outputs(&id, "deploy").await;
    assert_eq!(outputs["run_id"], made[0]["id"]);
}

fn with_rollback(id: &str) -> String {
    format!(
        r#"schema_version: 2
header:
  id: {id}
  name: Deploy with a rollback workflow
  version: 1.0.0
  owner: team-a
  category: tests
  description: Runs deploy.yml, and rollback.yml when undone.
  tags: [test]
presentation:
  fields:
    - {{id: repository, type: string, label: Repository, required: true}}
fulfillment:
  mode: automated
  manual:
    jira: {{project: OPS, issue_type: Task, summary: "Deploy by hand"}}
  automated:
    actions:
      - id: deploy
        type: github-workflow
        config:
          owner: acme-shop
          repo: "{{{{fields.repository}}}}"
          workflow: deploy.yml
          rollback_workflow: rollback.yml
          ref: main
          inputs: {{version: "2.0.0", requested_by: "{{{{request.user.email}}}}"}}
"#
    )
}

#[tokio::test]
async fn a_rollback_runs_the_items_rollback_workflow_with_the_same_inputs() {
    let portal = Portal::new(GROUPS).await;
    let item = unique("rollback");
    portal.publish(&item, with_rollback(&item)).await;
    let repository = unique("shop");
    let id = portal
        .submit(&item, json!({"repository": repository}))
        .await;
    portal.ends(&id, "Completed", LIMIT).await;
    portal.roll_back(&id, LIMIT).await;
    let made = runs_of(&repository).await;
    let workflows: Vec<&str> = made
        .iter()
        .filter_map(|run| run["workflow"].as_str())
        .collect();
    assert_eq!(made.len(), 2, "{made:#?}");
    assert!(workflows.contains(&"deploy.yml") && workflows.contains(&"rollback.yml"));
    for run in &made {
        assert_eq!(run["inputs"]["version"], "2.0.0");
        assert_eq!(run["conclusion"], "success");
    }
}
