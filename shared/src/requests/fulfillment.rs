//! What a fulfillment works from and what it leaves behind: the plan (the
//! item's fulfillment as it was when the request was submitted, so a later
//! catalog change never alters a running request), the dependency waves,
//! and one record per action with its status, outputs and attempts, which
//! is also the request's resource ledger: compensation undoes exactly the
//! actions recorded as having succeeded, newest first.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::item::{Action, ActionType, CatalogItem, Manual, Mode};
use crate::clock::{epoch_seconds, seconds_since};

/// The item's fulfillment, pinned at submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The `header` template namespace.
    pub header: Value,
    pub mode: Mode,
    pub manual: Manual,
    #[serde(default)]
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn of(item: &CatalogItem) -> Self {
        let header = &item.header;
        Self {
            header: serde_json::json!({
                "id": header.id, "name": header.name, "version": header.version,
                "owner": header.owner, "category": header.category,
                "description": header.description,
            }),
            mode: item.fulfillment.mode,
            manual: item.fulfillment.manual.clone(),
            actions: match item.fulfillment.mode {
                Mode::Automated => item.actions().to_vec(),
                Mode::Manual => Vec::new(),
            },
        }
    }

    pub fn action(&self, id: &str) -> Option<&Action> {
        self.actions.iter().find(|action| action.id == id)
    }

    /// The actions still to run, in waves: an action runs in the wave after
    /// the last of its dependencies; the actions of one wave run in
    /// parallel. Actions in `done` (succeeded on an earlier attempt) and
    /// those whose `when` does not hold for `fields` are left out.
    pub fn waves(&self, fields: &Map<String, Value>, done: &BTreeSet<String>) -> Vec<Vec<String>> {
        let remaining: Vec<&Action> = self
            .actions
            .iter()
            .filter(|action| !done.contains(&action.id))
            .filter(|action| {
                action
                    .when
                    .as_ref()
                    .is_none_or(|when| when.holds(fields.get(&when.field)))
            })
            .collect();
        // A dependency that is done or left out does not hold anything back.
        let mut level: BTreeMap<&str, usize> = remaining
            .iter()
            .map(|action| (action.id.as_str(), 0))
            .collect();
        // Validation guarantees an acyclic graph; the bound keeps a damaged
        // plan from looping.
        for _ in 0..remaining.len() {
            for action in &remaining {
                let depth = action
                    .depends_on
                    .iter()
                    .filter_map(|dep| level.get(dep.as_str()).map(|l| l + 1))
                    .max()
                    .unwrap_or(0);
                level.insert(action.id.as_str(), depth);
            }
        }
        let mut waves: Vec<Vec<String>> = Vec::new();
        for action in &remaining {
            let wave = level[action.id.as_str()];
            if waves.len() <= wave {
                waves.resize(wave + 1, Vec::new());
            }
            waves[wave].push(action.id.clone());
        }
        waves.retain(|wave| !wave.is_empty());
        waves
    }
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
pub enum ActionStatus {
    Running,
    Succeeded,
    Failed,
    Compensating,
    Compensated,
}

impl ActionStatus {
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// One action of one request: its state, what it produced (secrets only
/// as ARNs), and how often it was tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub action_id: String,
    #[serde(rename = "type")]
    pub kind: ActionType,
    pub status: ActionStatus,
    /// Calls made in the action's current run (a retry of the request
    /// starts a new run).
    pub attempts: u32,
    /// Failed calls in the current run, which its retry policy counts.
    #[serde(default)]
    pub failures: u32,
    /// The driver said the work is under way: the next call polls it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub polling: bool,
    /// What the action (or its compensation) last said it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// While compensating: the status it had before, which it returns to
    /// when compensation keeps the action or fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensating_from: Option<ActionStatus>,
    /// Waiting for a slot of its type's concurrency cap: not started yet,
    /// so its timeout's clock starts when it gets one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
    #[serde(default)]
    pub outputs: Map<String, Value>,
    /// The outputs kept in Secrets Manager (their values are ARNs), deleted
    /// when the action is undone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_outputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// When the call now under way (an attempt, or the compensation) began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_started_at: Option<String>,
}

/// One resource an action made, as the request's ledger holds it: written
/// as soon as its id is known, read by compensation, which deletes exactly
/// these and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Filled in by the lifecycle.
    #[serde(default)]
    pub action_id: String,
    /// `<service>:<type>`, such as `ec2:vpc`.
    pub kind: String,
    pub id: String,
    /// What deleting it needs besides its id (its parent, its name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
    /// Filled in by the lifecycle.
    #[serde(default)]
    pub recorded_at: String,
}

impl Resource {
    pub fn new(kind: &str, id: impl Into<String>) -> Self {
        Self {
            action_id: String::new(),
            kind: kind.to_string(),
            id: id.into(),
            detail: BTreeMap::new(),
            recorded_at: String::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.detail.insert(key.to_string(), value.into());
        self
    }

    pub fn detail(&self, key: &str) -> Option<&str> {
        self.detail.get(key).map(String::as_str)
    }
}

/// How long a call of an action may go without reporting back before it
/// is taken as lost: longer than the action function's own timeout
/// (320 s), so no such call can still be running.
pub const LOST_AFTER_SECONDS: f64 = 330.0;

impl ActionRecord {
    /// Whether a call of this action may be under way right now: an attempt
    /// or a compensation began, has not reported back, and is recent
    /// enough for its function to be alive.
    pub fn in_flight(&self) -> bool {
        self.busy() && !self.overdue()
    }

    /// A call began and never reported back, and its function is gone.
    pub fn lost(&self) -> bool {
        self.busy() && self.overdue()
    }

    fn busy(&self) -> bool {
        match self.status {
            ActionStatus::Running => self.finished_at.is_none(),
            // A compensation waiting for deletions has no call under way.
            ActionStatus::Compensating => self.attempt_started_at.is_some(),
            _ => false,
        }
    }

    /// Whether compensation may take this action up now: it succeeded; its
    /// compensation was lost or waits between calls; or it failed, or its
    /// last call was lost, having made resources (`has_resources`).
    pub fn compensable(&self, has_resources: bool) -> bool {
        match self.status {
            ActionStatus::Succeeded => true,
            ActionStatus::Compensating => !self.in_flight(),
            ActionStatus::Failed => has_resources,
            ActionStatus::Running => has_resources && !self.in_flight(),
            ActionStatus::Compensated => false,
        }
    }

    fn overdue(&self) -> bool {
        let began = self.attempt_started_at.as_ref().unwrap_or(&self.started_at);
        seconds_since(began).is_some_and(|age| age >= LOST_AFTER_SECONDS)
    }
}

/// The records to compensate, newest first: the succeeded ones, those
/// whose compensation was lost on the way or waits for deletions, and
/// those that failed (or whose call was lost) after making resources, as
/// `has_resources` tells by action id.
pub fn compensation_order(
    records: &[ActionRecord],
    has_resources: impl Fn(&str) -> bool,
) -> Vec<&ActionRecord> {
    let mut done: Vec<&ActionRecord> = records
        .iter()
        .filter(|record| record.compensable(has_resources(&record.action_id)))
        .collect();
    let finished = |record: &ActionRecord| {
        record
            .finished_at
            .as_ref()
            .or(record.attempt_started_at.as_ref())
            .and_then(|at| epoch_seconds(at))
            .unwrap_or(f64::MAX)
    };
    done.sort_by(|a, b| finished(b).total_cmp(&finished(a)));
    done
}

/// The `response` template namespace: each succeeded action's outputs.
pub fn responses(records: &[ActionRecord]) -> Map<String, Value> {
    records
        .iter()
        .filter(|record| record.status == ActionStatus::Succeeded)
        .map(|record| {
            (
                record.action_id.clone(),
                Value::Object(record.outputs.clone()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(actions: Value) -> Plan {
        serde_json::from_value(json!({
            "header": {"id": "x"}, "mode": "automated",
            "manual": {"jira": {"project": "OPS", "issue_type": "Task", "summary": "s"}},
            "actions": actions,
        }))
        .unwrap()
    }

    fn action(id: &str, depends_on: &[&str]) -> Value {
        json!({"id": id, "type": "webhook", "depends_on": depends_on, "config": {"url": "https://x"}})
    }

    #[test]
    fn actions_run_in_waves_after_their_dependencies() {
        // The EKS stack's graph.
        let plan = plan(json!([
            action("network", &[]),
            action("database", &["network"]),
            action("app_secret", &["database"]),
            action("cluster", &["network"]),
            action("app", &["cluster", "database", "app_secret"]),
            action("notify", &["app"]),
        ]));
        assert_eq!(
            plan.waves(&Map::new(), &BTreeSet::new()),
            vec![
                vec!["network"],
                vec!["database", "cluster"],
                vec!["app_secret"],
                vec!["app"],
                vec!["notify"]
            ]
        );
        // A retry leaves out what succeeded before.
        let done = BTreeSet::from(["network".to_string(), "database".to_string()]);
        assert_eq!(
            plan.waves(&Map::new(), &done),
            vec![vec!["app_secret", "cluster"], vec!["app"], vec!["notify"]]
        );
    }

    #[test]
    fn an_action_whose_condition_fails_is_left_out() {
        let mut notify = action("notify", &["db"]);
        notify["when"] = json!({"field": "notify", "equals": true});
        let plan = plan(json!([action("db", &[]), notify]));
        let fields = |on: bool| json!({"notify": on}).as_object().unwrap().clone();
        assert_eq!(
            plan.waves(&fields(true), &BTreeSet::new()),
            vec![vec!["db"], vec!["notify"]]
        );
        assert_eq!(
            plan.waves(&fields(false), &BTreeSet::new()),
            vec![vec!["db"]]
        );
    }

    #[test]
    fn a_call_is_under_way_until_it_reports_back_or_is_overdue() {
        let mut record = ActionRecord {
            action_id: "db".to_string(),
            kind: ActionType::RestApi,
            status: ActionStatus::Running,
            attempts: 2,
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
            attempt_started_at: Some(crate::clock::now()),
        };
        assert!(record.in_flight(), "a fresh attempt of an old run");
        record.attempt_started_at = Some("2026-11-23T10:00:00Z".to_string());
        assert!(record.lost() && !record.in_flight());
        record.finished_at = Some("2026-11-23T10:00:05Z".to_string());
        assert!(
            !record.lost() && !record.in_flight(),
            "waiting between attempts"
        );
        record.status = ActionStatus::Succeeded;
        assert!(!record.lost() && !record.in_flight());
    }

    #[test]
    fn compensation_undoes_the_newest_success_first() {
        let record = |id: &str, status, finished: &str| ActionRecord {
            action_id: id.to_string(),
            kind: ActionType::RestApi,
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
            started_at: "t".to_string(),
            finished_at: Some(finished.to_string()),
            attempt_started_at: None,
        };
        // Written by an older clock without fixed-width fractions: read as times.
        let records = [
            record("a", ActionStatus::Succeeded, "2026-11-23T10:00:00.55Z"),
            record("c", ActionStatus::Failed, "2026-11-23T10:00:00.9Z"),
            record("b", ActionStatus::Succeeded, "2026-11-23T10:00:00.6Z"),
        ];
        let order: Vec<&str> = compensation_order(&records, |_| false)
            .iter()
            .map(|r| r.action_id.as_str())
            .collect();
        assert_eq!(order, ["b", "a"]);
        assert_eq!(responses(&records).keys().collect::<Vec<_>>(), ["a", "b"]);

        // A compensation whose function died is taken up again; a recent
        // one is not (it is waited for).
        let mut lost = record("d", ActionStatus::Compensating, "2026-11-23T10:00:00.7Z");
        lost.attempt_started_at = Some("2026-11-23T10:00:01Z".to_string());
        let mut busy = lost.clone();
        busy.action_id = "e".to_string();
        busy.attempt_started_at = Some(crate::clock::now());
        assert!(lost.lost() && !lost.in_flight());
        assert!(busy.in_flight() && !busy.lost());
        let records = [records[0].clone(), lost, busy];
        let order: Vec<&str> = compensation_order(&records, |_| false)
            .iter()
            .map(|r| r.action_id.as_str())
            .collect();
        assert_eq!(order, ["d", "a"]);
    }
}
