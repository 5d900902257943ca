//! terraform end to end: an item of the test's own runs the real action
//! function against the local stack's fake HCP Terraform, which checks the
//! team token, keeps workspaces, variables, runs and state, and moves each
//! run through its states; a variable value ending in `-fail` makes the
//! plan error (`infra/local/fake_terraform.py`).

use std::time::Duration;

use pao_integration::portal::Portal;
use pao_integration::{env, http, unique};

use serde_json::{json, Value};

const GROUPS: &[&str] = &["developers"];
const LIMIT: Duration = Duration::from_secs(120);

fn item(id: &str, workspace: &str, vcs: bool) -> String {
    let vcs = if vcs {
        "\n          vcs: {repository: acme/infra-modules, branch: main, path: stacks/queue}"
    } else {
        ""
    };
    format!(
        r#"schema_version: 2
header:
  id: {id}
  name: Queue through Terraform
  version: 1.0.0
  owner: team-a
  category: tests
  description: A queue made by a Terraform workspace.
  tags: [test]
presentation:
  fields:
    - {{id: queue_name, type: string, label: Queue name, required: true}}
    - {{id: retention_days, type: integer, label: Retention, default: 7}}
fulfillment:
  mode: automated
  manual:
    jira: {{project: OPS, issue_type: Task, summary: "Make it by hand"}}
  automated:
    actions:
      - id: queue
        type: terraform
        config:
          organization: acme
          workspace: "{workspace}"
          auto_apply: true
          variables:
            queue_name: "{{{{fields.queue_name}}}}"
            retention_days: "{{{{fields.retention_days}}}}"
            signing_salt: "salt-for-{{{{fields.queue_name}}}}"
          sensitive_variables: [signing_salt]{vcs}
"#
    )
}

/// The fake's view of workspace `name`.
async fn workspace(name: &str) -> Value {
    let all: Value = http()
        .get(format!("{}/_terraform/workspaces", env("PAO_FAKE_URL")))
        .send()
        .await
        .expect("GET /_terraform/workspaces")
        .json()
        .await
        .expect("JSON");
    all["workspaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|w| w["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn publish(portal: &Portal, workspace: &str, vcs: bool) -> String {
    let id = unique("terraform");
    portal.publish(&id, item(&id, workspace, vcs)).await;
    id
}

#[tokio::test]
async fn a_workspace_is_made_applied_with_its_outputs_and_destroyed_and_deleted_on_rollback() {
    let portal = Portal::new(GROUPS).await;
    let name = unique("orders");
    let item = publish(&portal, &name, true).await;
    let id = portal
        .submit(
            &item,
            json!({"queue_name": "orders-events", "retention_days": 4}),
        )
        .await;
    portal.ends(&id, "Completed", LIMIT).await;

    let outputs = portal.stack.outputs(&id, "queue").await;
    let run = outputs["run_id"].as_str().expect("a run id");
    assert_eq!(
        outputs["run_url"],
        format!(
            "{}/terraform/app/acme/workspaces/{name}/runs/{run}",
            env("PAO_FAKE_URL")
        )
    );
    assert_eq!(outputs["outputs"]["queue_name"], "orders-events");
    assert_eq!(outputs["outputs"]["retention_days"], 4);
    assert!(
        outputs["outputs"].get("signing_salt").is_none(),
        "a sensitive output stays out of `outputs`: {outputs}"
    );
    let arn = outputs["signing_salt"]
        .as_str()
        .expect("the sensitive output");
    assert!(
        arn.starts_with("arn:aws:secretsmanager:"),
        "only its ARN: {arn}"
    );
    let secrets = aws_sdk_secretsmanager::Client::new(&portal.stack.sdk);
    let kept = secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .expect("GetSecretValue");
    assert_eq!(kept.secret_string(), Some("salt-for-orders-events"));

    let made = workspace(&name).await;
    assert_eq!(made["created_by_pao"], true, "{made}");
    assert_eq!(made["vcs_repo"], "acme/infra-modules");
    assert_eq!(made["working_directory"], "stacks/queue");
    let salt = made["variables"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["key"] == "signing_salt")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(salt["sensitive"], true, "{made}");

    portal.roll_back(&id, LIMIT).await;
    let after = workspace(&name).await;
    let destroyed = after["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["is_destroy"] == true && r["status"] == "applied");
    assert!(destroyed, "a destroy run applied: {after}");
    assert_eq!(
        after["deleted"], true,
        "the workspace PAO made is deleted: {after}"
    );
}

#[tokio::test]
async fn an_existing_workspace_is_destroyed_on_rollback_but_kept() {
    let portal = Portal::new(GROUPS).await;
    let name = unique("existing-platform");
    let item = publish(&portal, &name, false).await;
    let id = portal
        .submit(&item, json!({"queue_name": "billing-events"}))
        .await;
    portal.ends(&id, "Completed", LIMIT).await;
    portal.roll_back(&id, LIMIT).await;
    let after = workspace(&name).await;
    assert_eq!(after["created_by_pao"], false, "{after}");
    assert_eq!(after["deleted"], false, "kept: {after}");
    let kinds: Vec<bool> = after["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["is_destroy"] == true)
        .collect();
    assert_eq!(kinds, [false, true], "{after}");
}

#[tokio::test]
async fn a_run_that_errors_fails_the_request_with_its_page_and_the_new_workspace_goes() {
    let portal = Portal::new(GROUPS).await;
    let name = unique("orders");
    let item = publish(&portal, &name, true).await;
    let id = portal
        .submit(&item, json!({"queue_name": "orders-fail"}))
        .await;
    let status = portal.ends(&id, "Failed", LIMIT).await;
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("ended errored")
            && reason.contains(&format!("/workspaces/{name}/runs/run-")),
        "{reason}"
    );
    let after = workspace(&name).await;
    assert_eq!(after["deleted"], true, "{after}");
    assert!(
        after["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["is_destroy"] == false),
        "nothing applied, nothing to destroy: {after}"
    );
}
