//! The terraform driver: a run on an HCP Terraform (or Terraform
//! Enterprise) workspace, with the item's variables, waited for (see
//! `docs/actions/terraform.md`).
//!
//! - **start**: the workspace is read, or, when the item gives a `vcs`
//!   block, created linked to that repository (and recorded, so only a
//!   workspace PAO made is ever deleted); the variables are set (sensitive
//!   ones marked so), and a run is queued and recorded.
//! - **poll**: the run, until it ends: `applied` and
//!   `planned_and_finished` give the outputs (`run_id`, `run_url`, and the
//!   state's outputs under `outputs`, but sensitive ones, which become
//!   secret outputs of their own: only their ARN is kept); `errored`,
//!   `discarded`, `canceled`, `force_canceled` and `policy_soft_failed` are
//!   Fatal with the run's page.
//! - **compensate**: a run still going is discarded or cancelled; if the
//!   action applied, a destroy run is queued and waited for; then a
//!   workspace PAO created is deleted.

pub mod client;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::action::ActionError;
use crate::actions::driver::{Driver, Level, Outputs, Progress, Step, Undone};
use crate::catalog::item::ActionType;
use crate::catalog::validate::rendered_config_problems;
use crate::requests::fulfillment::Resource;
use client::{split_outputs, Terraform, Variable, Vcs};

const WORKSPACE: &str = "tfc:workspace";
const RUN: &str = "tfc:run";
/// Plans and applies take a minute or more; the API allows 30 calls a second.
const RUN_WAIT: u32 = 10;
const SUCCEEDED: &[&str] = &["applied", "planned_and_finished"];
const ENDED_BADLY: &[&str] = &[
    "errored",
    "discarded",
    "canceled",
    "force_canceled",
    "policy_soft_failed",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    organization: String,
    workspace: String,
    #[serde(default)]
    variables: Map<String, Value>,
    #[serde(default)]
    sensitive_variables: Vec<String>,
    message: Option<String>,
    auto_apply: Option<Value>,
    vcs: Option<VcsConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VcsConfig {
    repository: String,
    #[serde(default = "default_branch")]
    branch: String,
    #[serde(default)]
    path: String,
}

fn default_branch() -> String {
    "main".to_string()
}

impl Config {
    fn auto_apply(&self) -> Option<bool> {
        match &self.auto_apply {
            Some(Value::Bool(flag)) => Some(*flag),
            Some(Value::String(text)) => text.parse().ok(),
            _ => None,
        }
    }

    /// The variables as the API takes them: text, and lists, maps, numbers
    /// and booleans as HCL (their JSON is HCL).
    fn variables(&self) -> Vec<Variable<'_>> {
        self.variables
            .iter()
            .map(|(key, value)| {
                let (value, hcl) = match value {
                    Value::String(text) => (text.clone(), false),
                    Value::Null => (String::new(), false),
                    other => (other.to_string(), true),
                };
                Variable {
                    key,
                    value,
                    hcl,
                    sensitive: self.sensitive_variables.iter().any(|name| name == key),
                }
            })
            .collect()
    }
}

pub struct TerraformDriver {
    terraform: Terraform,
}

impl TerraformDriver {
    pub fn new(terraform: Terraform) -> Self {
        Self { terraform }
    }

    fn config(step: &Step<'_>) -> Result<Config, ActionError> {
        let rendered = step.rendered()?;
        let problems =
            rendered_config_problems(ActionType::Terraform, &Value::Object(rendered.clone()));
        if !problems.is_empty() {
            return Err(ActionError::Fatal(format!(
                "config, once rendered: {}",
                problems.join("; ")
            )));
        }
        let config: Config = serde_json::from_value(Value::Object(rendered))
            .map_err(|err| ActionError::Fatal(format!("config, once rendered: {err}")))?;
        if let Some(name) = config
            .sensitive_variables
            .iter()
            .find(|name| !config.variables.contains_key(*name))
        {
            return Err(ActionError::Fatal(format!(
                "config.sensitive_variables: {name} is not one of the variables"
            )));
        }
        Ok(config)
    }

    /// The workspace's id: read, or created when the item says how.
    async fn workspace(&self, step: &Step<'_>, config: &Config) -> Result<String, ActionError> {
        let (organization, name) = (&config.organization, &config.workspace);
        if let Some(found) = self.terraform.workspace(organization, name).await? {
            return Ok(found.id);
        }
        let Some(vcs) = &config.vcs else {
            return Err(ActionError::Fatal(format!(
                "workspace {organization}/{name} does not exist, and the item gives no `vcs` \
                 block to create it from"
            )));
        };
        let vcs = Vcs {
            repository: &vcs.repository,
            branch: &vcs.branch,
            path: &vcs.path,
        };
        let auto_apply = config.auto_apply().unwrap_or(false);
        let made = self
            .terraform
            .create_workspace(organization, name, &vcs, auto_apply)
            .await?;
        step.journal
            .record(
                Resource::new(WORKSPACE, format!("{organization}/{name}"))
                    .with("organization", organization)
                    .with("name", name)
                    .with("workspace_id", &made.id),
            )
            .await?;
        let message = format!(
            "created workspace {organization}/{name} from {} ({})",
            vcs.repository, vcs.branch
        );
        step.journal.log(Level::Info, &message).await?;
        Ok(made.id)
    }

    async fn queue(
        &self,
        step: &Step<'_>,
        config: &Config,
        workspace_id: &str,
        destroy: bool,
    ) -> Result<String, ActionError> {
        let message = match (&config.message, destroy) {
            (_, true) => format!("Destroy queued by PAO: request {} undone", step.request.id),
            (Some(message), false) => message.clone(),
            (None, false) => format!("Queued by PAO for request {}", step.request.id),
        };
        let auto_apply = if destroy {
            Some(true)
        } else {
            config.auto_apply()
        };
        let run = self
            .terraform
            .create_run(workspace_id, &message, auto_apply, destroy)
            .await?;
        let purpose = if destroy { "destroy" } else { "apply" };
        step.journal
            .record(
                Resource::new(RUN, &run.id)
                    .with("purpose", purpose)
                    .with("workspace_id", workspace_id)
                    .with("organization", &config.organization)
                    .with("workspace", &config.workspace),
            )
            .await?;
        let url = self.url(config, &run.id);
        step.journal
            .log(
                Level::Info,
                &format!(
                    "queued {purpose} run {} on {}/{}: {url}",
                    run.id, config.organization, config.workspace
                ),
            )
            .await?;
        Ok(run.id)
    }

    /// Deletes the workspaces PAO created for the action (only those).
    async fn delete_workspaces(&self, step: &Step<'_>) -> Result<Vec<String>, ActionError> {
        let mut deleted = Vec::new();
        for workspace in step.recorded(WORKSPACE) {
            let organization = workspace.detail("organization").unwrap_or_default();
            let name = workspace.detail("name").unwrap_or_default();
            self.terraform.delete_workspace(organization, name).await?;
            deleted.push(format!("deleted workspace {organization}/{name}"));
        }
        Ok(deleted)
    }

    fn url(&self, config: &Config, run: &str) -> String {
        self.terraform
            .run_url(&config.organization, &config.workspace, run)
    }

    fn latest<'s>(step: &'s Step<'_>, purpose: &str) -> Option<&'s Resource> {
        step.recorded(RUN)
            .filter(|r| r.detail("purpose") == Some(purpose))
            .last()
    }
}

#[async_trait]
impl Driver for TerraformDriver {
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let config = Self::config(step)?;
        self.terraform.allows(&config.organization)?;
        let workspace_id = self.workspace(step, &config).await?;
        self.terraform
            .set_variables(&workspace_id, &config.variables())
            .await?;
        let run = self.queue(step, &config, &workspace_id, false).await?;
        Ok(Progress::Wait {
            seconds: RUN_WAIT,
            waiting_for: format!("run {run}: {}", self.url(&config, &run)),
        })
    }

    async fn poll(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let config = Self::config(step)?;
        let Some(recorded) = Self::latest(step, "apply") else {
            return Err(ActionError::Fatal("no run recorded".to_string()));
        };
        let url = self.url(&config, &recorded.id);
        let run = match self.terraform.run(&recorded.id).await {
            Ok(run) => run,
            Err(err) => return Progress::waiting_out(err),
        };
        let status = run.status.as_str();
        if ENDED_BADLY.contains(&status) {
            return Err(ActionError::Fatal(format!(
                "run {} on {}/{} ended {status}: {url}",
                run.id, config.organization, config.workspace
            )));
        }
        if !SUCCEEDED.contains(&status) {
            let waiting_for = if run.confirmable {
                format!(
                    "run {} is planned and waits to be confirmed in HCP Terraform: {url}",
                    run.id
                )
            } else {
                format!("run {} ({status}): {url}", run.id)
            };
            return Ok(Progress::Wait {
                seconds: RUN_WAIT,
                waiting_for,
            });
        }
        let workspace_id = recorded.detail("workspace_id").unwrap_or_default();
        let (plain, sensitive) = split_outputs(self.terraform.outputs(workspace_id).await?);
        let mut values = Map::new();
        values.insert("run_id".to_string(), json!(run.id));
        values.insert("run_url".to_string(), json!(url));
        values.insert("outputs".to_string(), Value::Object(plain));
        let secret: Vec<String> = sensitive.keys().cloned().collect();
        values.extend(sensitive);
        Ok(Progress::Done(Outputs { values, secret }))
    }

    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError> {
        let config = Self::config(step)?;
        let Some(applying) = Self::latest(step, "apply") else {
            let deleted = self.delete_workspaces(step).await?;
            return Ok(if deleted.is_empty() {
                Undone::Kept("no run was queued".to_string())
            } else {
                Undone::Done(deleted.join("; "))
            });
        };
        let run = self.terraform.run(&applying.id).await?;
        let status = run.status.as_str();
        let ended = SUCCEEDED.contains(&status) || ENDED_BADLY.contains(&status);
        if !ended {
            let action = if run.discardable {
                "discard"
            } else if run.cancelable {
                "cancel"
            } else {
                "force-cancel"
            };
            self.terraform.act(&run.id, action).await?;
            return Ok(Undone::Wait {
                seconds: RUN_WAIT,
                waiting_for: format!("run {} to stop ({action})", run.id),
            });
        }
        if step.retain() {
            return Ok(Undone::Kept(
                "what the run applied is kept, as the item says (rollback: retain)".to_string(),
            ));
        }
        let mut done = Vec::new();
        if status == "applied" {
            let workspace_id = applying.detail("workspace_id").unwrap_or_default();
            let destroy = match Self::latest(step, "destroy") {
                Some(destroy) => self.terraform.run(&destroy.id).await?,
                None => {
                    let id = self.queue(step, &config, workspace_id, true).await?;
                    return Ok(Undone::Wait {
                        seconds: RUN_WAIT,
                        waiting_for: format!("destroy run {id}: {}", self.url(&config, &id)),
                    });
                }
            };
            let url = self.url(&config, &destroy.id);
            match destroy.status.as_str() {
                "applied" => done.push(format!("destroyed by run {} ({url})", destroy.id)),
                bad if ENDED_BADLY.contains(&bad) => {
                    return Err(ActionError::Fatal(format!(
                        "destroy run {} ended {bad}: {url}",
                        destroy.id
                    )))
                }
                other => {
                    return Ok(Undone::Wait {
                        seconds: RUN_WAIT,
                        waiting_for: format!("destroy run {} ({other}): {url}", destroy.id),
                    })
                }
            }
        }
        done.extend(self.delete_workspaces(step).await?);
        if done.is_empty() {
            return Ok(Undone::Kept(format!(
                "run {} ended {status} without applying: nothing to destroy",
                run.id
            )));
        }
        Ok(Undone::Done(done.join("; ")))
    }
}
