//! The github-workflow driver: a GitHub Actions workflow dispatched and,
//! unless the item says `wait: false`, waited for (see
//! `docs/actions/github-workflow.md`).
//!
//! - **start**: the dispatch is recorded in the ledger before it is made
//!   (its correlation id), then made with `return_run_details`, which
//!   gives the run's id; the run is recorded at once. A server that does
//!   not know `return_run_details` (GitHub Enterprise Server before it)
//!   answers 400: the dispatch is made again without it, with the input
//!   `pao_correlation_id`, and the run is found by its title (the workflow
//!   sets `run-name: ${{ inputs.pao_correlation_id }}`).
//! - **poll**: the run, until it completes: `success` gives the outputs
//!   (`run_id`, `run_url`, `conclusion`); any other conclusion is Fatal with
//!   the conclusion and the run's page.
//! - **compensate**: a run still going is cancelled, and force-cancelled
//!   if it ignores that for [`FORCE_AFTER_SECONDS`]; then, when the item
//!   names a `rollback_workflow`, that workflow is dispatched with the same
//!   inputs and waited for.
//!
//! A rate limit (403 or 429 with `x-ratelimit-remaining: 0`, or
//! `retry-after`) is Throttled at start, and waited out as GitHub asks
//! while polling or compensating.

pub mod client;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::action::ActionError;
use crate::actions::driver::{Driver, Level, Outputs, Progress, Step, Undone};
use crate::catalog::item::ActionType;
use crate::catalog::validate::rendered_config_problems;
use crate::clock::{now, seconds_since};
use crate::requests::fulfillment::Resource;
use client::{Dispatched, GitHub, Repo, Run};

const DISPATCH: &str = "github:dispatch";
const RUN: &str = "github:workflow-run";
const CANCEL: &str = "github:cancel";
/// The input that carries the correlation id when the server gives no run id.
pub const CORRELATION_INPUT: &str = "pao_correlation_id";
/// A run takes minutes; GitHub's API allows 5,000 calls an hour.
const RUN_WAIT: u32 = 10;
const SEARCH_WAIT: u32 = 5;
/// How long a dispatched run may take to appear in the runs list.
const APPEAR_WITHIN_SECONDS: f64 = 120.0;
/// How long a cancelled run may keep running before it is force-cancelled.
pub const FORCE_AFTER_SECONDS: f64 = 30.0;

/// What a run is for: the item's workflow, or its rollback workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Run,
    Rollback,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Purpose::Run => "run",
            Purpose::Rollback => "rollback",
        }
    }
}

/// The config after rendering.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    owner: String,
    repo: String,
    workflow: Value,
    #[serde(rename = "ref", default = "default_ref")]
    git_ref: String,
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default = "yes")]
    wait: Value,
    rollback_workflow: Option<Value>,
}

fn default_ref() -> String {
    "main".to_string()
}

fn yes() -> Value {
    Value::Bool(true)
}

impl Config {
    fn repo(&self) -> Repo<'_> {
        Repo {
            owner: &self.owner,
            name: &self.repo,
        }
    }

    fn workflow(&self, purpose: Purpose) -> Option<String> {
        let workflow = match purpose {
            Purpose::Run => Some(&self.workflow),
            Purpose::Rollback => self.rollback_workflow.as_ref(),
        }?;
        Some(match workflow {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
    }

    fn waits(&self) -> bool {
        !matches!(&self.wait, Value::Bool(false)) && self.wait != json!("false")
    }
}

pub struct GithubDriver {
    github: GitHub,
}

impl GithubDriver {
    pub fn new(github: GitHub) -> Self {
        Self { github }
    }

    /// The config rendered, its inputs as GitHub takes them (text), checked
    /// against the type's schema.
    fn config(step: &Step<'_>) -> Result<Config, ActionError> {
        let mut rendered = step.rendered()?;
        if let Some(Value::Object(inputs)) = rendered.get_mut("inputs") {
            for value in inputs.values_mut() {
                let text = match &*value {
                    Value::String(_) => continue,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                *value = Value::String(text);
            }
        }
        let problems =
            rendered_config_problems(ActionType::GithubWorkflow, &Value::Object(rendered.clone()));
        if !problems.is_empty() {
            return Err(ActionError::Fatal(format!(
                "config, once rendered: {}",
                problems.join("; ")
            )));
        }
        serde_json::from_value(Value::Object(rendered))
            .map_err(|err| ActionError::Fatal(format!("config, once rendered: {err}")))
    }

    /// Dispatches the workflow for `purpose`, recording the dispatch
    /// before it is made and the run as soon as its id is known.
    async fn launch(
        &self,
        step: &Step<'_>,
        config: &Config,
        purpose: Purpose,
    ) -> Result<Launched, ActionError> {
        let Some(workflow) = config.workflow(purpose) else {
            return Err(ActionError::Fatal("no workflow to dispatch".to_string()));
        };
        let repo = config.repo();
        let earlier = step
            .recorded(DISPATCH)
            .filter(|d| d.detail("purpose") == Some(purpose.name()))
            .count();
        let correlation = step.name(&format!("{}-{}", purpose.name(), earlier + 1));
        step.journal
            .record(
                Resource::new(DISPATCH, &correlation)
                    .with("purpose", purpose.name())
                    .with("owner", &config.owner)
                    .with("repo", &config.repo)
                    .with("workflow", &workflow)
                    .with("dispatched_at", now()),
            )
            .await?;
        let dispatched = match self
            .github
            .dispatch(&repo, &workflow, &config.git_ref, &config.inputs, true)
            .await?
        {
            Dispatched::Unsupported => {
                let mut inputs = config.inputs.clone();
                inputs.insert(CORRELATION_INPUT.to_string(), json!(correlation));
                self.github
                    .dispatch(&repo, &workflow, &config.git_ref, &inputs, false)
                    .await?
            }
            other => other,
        };
        match dispatched {
            Dispatched::Run { id, html_url } => {
                self.record_run(step, config, purpose, &correlation, id, &html_url)
                    .await?;
                let message = format!(
                    "dispatched {workflow} of {repo} on {}: run {id} {html_url}",
                    config.git_ref
                );
                step.journal.log(Level::Info, &message).await?;
                Ok(Launched {
                    waiting_for: format!("workflow run {id} of {repo} ({html_url})"),
                    run: Some((id, html_url)),
                })
            }
            _ => {
                let message = format!(
                    "dispatched {workflow} of {repo} on {} without run details; finding the run titled {correlation}",
                    config.git_ref
                );
                step.journal.log(Level::Info, &message).await?;
                Ok(Launched {
                    waiting_for: format!("the run of {workflow} titled {correlation} to appear"),
                    run: None,
                })
            }
        }
    }

    async fn record_run(
        &self,
        step: &Step<'_>,
        config: &Config,
        purpose: Purpose,
        dispatch: &str,
        id: u64,
        html_url: &str,
    ) -> Result<(), ActionError> {
        step.journal
            .record(
                Resource::new(RUN, format!("{}/{}/{id}", config.owner, config.repo))
                    .with("purpose", purpose.name())
                    .with("dispatch", dispatch)
                    .with("owner", &config.owner)
                    .with("repo", &config.repo)
                    .with("run_id", id.to_string())
                    .with("html_url", html_url),
            )
            .await
    }

    /// The latest run of `purpose`: found in the ledger, or by its title
    /// after a dispatch without run details.
    async fn latest_run(
        &self,
        step: &Step<'_>,
        config: &Config,
        purpose: Purpose,
    ) -> Result<Latest, ActionError> {
        let of = |r: &&Resource| r.detail("purpose") == Some(purpose.name());
        let Some(dispatch) = step.recorded(DISPATCH).filter(of).last() else {
            return Ok(Latest::NotDispatched);
        };
        let repo = config.repo();
        let of_dispatch = |run: &&Resource| run.detail("dispatch") == Some(dispatch.id.as_str());
        if let Some(run) = step.recorded(RUN).filter(of_dispatch).last() {
            let id = run
                .detail("run_id")
                .and_then(|id| id.parse().ok())
                .unwrap_or_default();
            return Ok(Latest::Run(self.github.run(&repo, id).await?));
        }
        if let Some(run) = self.find_by_title(step, config, dispatch).await? {
            return Ok(Latest::Run(run));
        }
        let workflow = dispatch.detail("workflow").unwrap_or_default();
        let since = dispatch.detail("dispatched_at").unwrap_or_default();
        if seconds_since(since).is_some_and(|s| s > APPEAR_WITHIN_SECONDS) {
            return Err(ActionError::Fatal(format!(
                "no run of {workflow} of {repo} titled {} appeared within {APPEAR_WITHIN_SECONDS} s: \
                 without run details the workflow must set `run-name: ${{{{ inputs.{CORRELATION_INPUT} }}}}`",
                dispatch.id
            )));
        }
        Ok(Latest::NotYet(format!(
            "the run of {workflow} of {repo} titled {} to appear",
            dispatch.id
        )))
    }

    /// The run of a dispatch made without run details, found by its title
    /// (the correlation id) among the workflow's runs since the dispatch,
    /// and recorded.
    async fn find_by_title(
        &self,
        step: &Step<'_>,
        config: &Config,
        dispatch: &Resource,
    ) -> Result<Option<Run>, ActionError> {
        let purpose = match dispatch.detail("purpose") {
            Some("rollback") => Purpose::Rollback,
            _ => Purpose::Run,
        };
        let workflow = dispatch.detail("workflow").unwrap_or_default();
        let since = dispatch.detail("dispatched_at").unwrap_or_default();
        let found = self
            .github
            .runs_since(&config.repo(), workflow, since)
            .await?
            .into_iter()
            .find(|run| run.display_title == dispatch.id);
        if let Some(run) = &found {
            self.record_run(step, config, purpose, &dispatch.id, run.id, &run.html_url)
                .await?;
        }
        Ok(found)
    }

    /// Stops the action's runs (never its rollback's) that are still going;
    /// `Some(wait)` until they have stopped.
    async fn stop_runs(
        &self,
        step: &Step<'_>,
        config: &Config,
    ) -> Result<Option<String>, ActionError> {
        let repo = config.repo();
        let ours = |r: &&Resource| r.detail("purpose") == Some(Purpose::Run.name());
        let mut runs: Vec<Resource> = step.recorded(RUN).filter(ours).cloned().collect();
        // A dispatch made without run details whose run was not found yet.
        for dispatch in step.recorded(DISPATCH).filter(ours) {
            let known = runs
                .iter()
                .any(|run| run.detail("dispatch") == Some(dispatch.id.as_str()));
            if !known {
                if let Some(run) = self.find_by_title(step, config, dispatch).await? {
                    runs.push(
                        Resource::new(RUN, format!("{}/{}/{}", config.owner, config.repo, run.id))
                            .with("run_id", run.id.to_string()),
                    );
                }
            }
        }
        for recorded in &runs {
            let Some(id) = recorded.detail("run_id").and_then(|id| id.parse().ok()) else {
                continue;
            };
            let run = self.github.run(&repo, id).await?;
            if run.completed() {
                continue;
            }
            let asked = step.recorded(CANCEL).find(|c| c.id == recorded.id);
            let force = asked.is_some_and(|c| {
                c.detail("asked_at")
                    .and_then(seconds_since)
                    .is_some_and(|s| s > FORCE_AFTER_SECONDS)
            });
            if asked.is_none() {
                step.journal
                    .record(Resource::new(CANCEL, &recorded.id).with("asked_at", now()))
                    .await?;
            }
            if asked.is_none() || force {
                self.github.cancel(&repo, id, force).await?;
                let verb = if force {
                    "force-cancelled"
                } else {
                    "cancelled"
                };
                let message = format!("{verb} workflow run {id} of {repo} ({})", run.html_url);
                step.journal.log(Level::Info, &message).await?;
            }
            return Ok(Some(format!("workflow run {id} of {repo} to stop")));
        }
        Ok(None)
    }
}

#[async_trait]
impl Driver for GithubDriver {
    async fn start(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        self.github.configured()?;
        let config = Self::config(step)?;
        let launched = self.launch(step, &config, Purpose::Run).await?;
        if !config.waits() {
            let (id, url) = launched.run.unzip();
            return Ok(Progress::Done(Outputs::new(outputs(
                id,
                url.as_deref(),
                None,
            ))));
        }
        Ok(Progress::Wait {
            seconds: RUN_WAIT,
            waiting_for: launched.waiting_for,
        })
    }

    async fn poll(&self, step: &Step<'_>) -> Result<Progress, ActionError> {
        let config = Self::config(step)?;
        let run = match self.latest_run(step, &config, Purpose::Run).await {
            Ok(Latest::Run(run)) => run,
            Ok(Latest::NotYet(waiting_for)) => {
                return Ok(Progress::Wait {
                    seconds: SEARCH_WAIT,
                    waiting_for,
                })
            }
            Ok(Latest::NotDispatched) => {
                return Err(ActionError::Fatal("no dispatch recorded".to_string()))
            }
            Err(err) => return Progress::waiting_out(err),
        };
        let repo = config.repo();
        if !run.completed() {
            return Ok(Progress::Wait {
                seconds: RUN_WAIT,
                waiting_for: format!(
                    "workflow run {} of {repo}: {} ({})",
                    run.id,
                    run.status.as_deref().unwrap_or("queued"),
                    run.html_url
                ),
            });
        }
        match run.conclusion.as_deref() {
            Some("success") => Ok(Progress::Done(Outputs::new(outputs(
                Some(run.id),
                Some(&run.html_url),
                Some("success"),
            )))),
            other => Err(ActionError::Fatal(format!(
                "workflow run {} of {repo} concluded {}: {}",
                run.id,
                other.unwrap_or("without a conclusion"),
                run.html_url
            ))),
        }
    }

    async fn compensate(&self, step: &Step<'_>) -> Result<Undone, ActionError> {
        if step.recorded(DISPATCH).next().is_none() {
            return Ok(Undone::Kept("no workflow was dispatched".to_string()));
        }
        let config = Self::config(step)?;
        match self.stop_runs(step, &config).await {
            Ok(Some(waiting_for)) => {
                return Ok(Undone::Wait {
                    seconds: SEARCH_WAIT,
                    waiting_for,
                })
            }
            Ok(None) => {}
            Err(err) => return Undone::waiting_out(err),
        }
        if step.retain() {
            return Ok(Undone::Kept(
                "workflow runs stopped; what they did is kept, as the item says (rollback: retain)"
                    .to_string(),
            ));
        }
        let Some(rollback) = config.workflow(Purpose::Rollback) else {
            return Ok(Undone::Kept(
                "workflow runs stopped; the item names no rollback_workflow, so what they did stays"
                    .to_string(),
            ));
        };
        let repo = config.repo();
        let run = match self.latest_run(step, &config, Purpose::Rollback).await {
            Ok(Latest::NotDispatched) => {
                let launched = self.launch(step, &config, Purpose::Rollback).await?;
                return Ok(Undone::Wait {
                    seconds: RUN_WAIT,
                    waiting_for: launched.waiting_for,
                });
            }
            Ok(Latest::Run(run)) => run,
            Ok(Latest::NotYet(waiting_for)) => {
                return Ok(Undone::Wait {
                    seconds: SEARCH_WAIT,
                    waiting_for,
                })
            }
            Err(err) => return Undone::waiting_out(err),
        };
        if !run.completed() {
            return Ok(Undone::Wait {
                seconds: RUN_WAIT,
                waiting_for: format!(
                    "rollback workflow run {} of {repo} ({})",
                    run.id, run.html_url
                ),
            });
        }
        match run.conclusion.as_deref() {
            Some("success") => Ok(Undone::Done(format!(
                "rollback workflow {rollback} of {repo} succeeded: run {} {}",
                run.id, run.html_url
            ))),
            other => Err(ActionError::Fatal(format!(
                "rollback workflow run {} of {repo} concluded {}: {}",
                run.id,
                other.unwrap_or("without a conclusion"),
                run.html_url
            ))),
        }
    }
}

/// The latest run of a purpose.
enum Latest {
    NotDispatched,
    Run(Run),
    /// Dispatched without run details, and not found yet: what to wait for.
    NotYet(String),
}

/// What a dispatch gave: what to wait for, and the run when its id came
/// with the answer.
struct Launched {
    waiting_for: String,
    run: Option<(u64, String)>,
}

fn outputs(
    run_id: Option<u64>,
    run_url: Option<&str>,
    conclusion: Option<&str>,
) -> Map<String, Value> {
    let mut values = Map::new();
    values.insert(
        "run_id".to_string(),
        run_id.map_or(Value::Null, Value::from),
    );
    values.insert(
        "run_url".to_string(),
        run_url.map_or(Value::Null, Value::from),
    );
    values.insert(
        "conclusion".to_string(),
        conclusion.map_or(Value::Null, Value::from),
    );
    values
}
