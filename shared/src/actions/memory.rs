//! In-memory stand-ins for what a driver is given, for tests of drivers
//! against the SDK's test clients or the emulator: a journal that keeps the
//! ledger and the log in memory, and a fixture that makes a step of one
//! action with an already-rendered config.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::driver::{Journal, Level, Step};
use crate::action::ActionError;
use crate::catalog::item::{Action, ActionType};
use crate::clock::now;
use crate::requests::fulfillment::Resource;
use crate::requests::{Request, RequestStatus, Requester};
use crate::template::render::{Context, RequestVars, TemplateEnv};

/// The ledger and the log of one action, in memory. Recording a resource
/// twice keeps the first record, as the requests table does.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    resources: Mutex<Vec<Resource>>,
    lines: Mutex<Vec<(Level, String)>>,
}

impl MemoryJournal {
    pub fn resources(&self) -> Vec<Resource> {
        self.resources.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn lines(&self) -> Vec<(Level, String)> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn record(&self, mut resource: Resource) -> Result<(), ActionError> {
        let mut resources = self
            .resources
            .lock()
            .map_err(|_| ActionError::Fatal("journal poisoned".to_string()))?;
        if !resources
            .iter()
            .any(|r| r.kind == resource.kind && r.id == resource.id)
        {
            resource.recorded_at = now();
            resources.push(resource);
        }
        Ok(())
    }

    async fn log(&self, level: Level, message: &str) -> Result<(), ActionError> {
        self.lines
            .lock()
            .map_err(|_| ActionError::Fatal("journal poisoned".to_string()))?
            .push((level, message.to_string()));
        Ok(())
    }
}

/// One action of one request, ready to make steps of.
pub struct Fixture {
    pub request: Request,
    pub action: Action,
    pub context: Context,
    pub outputs: Map<String, Value>,
}

impl Fixture {
    /// A request `request_id` of item `item` whose action `action_id` of
    /// type `kind` has `config` (already rendered: no templates).
    pub fn new(
        request_id: &str,
        item: &str,
        kind: ActionType,
        action_id: &str,
        config: Value,
    ) -> Self {
        let at = now();
        let request = Request {
            id: request_id.to_string(),
            item_id: item.to_string(),
            item_version: "1.0.0".to_string(),
            item_hash: String::new(),
            requester: Requester {
                subject: "user-1".to_string(),
                email: "dev@example.com".to_string(),
            },
            status: RequestStatus::InProgress,
            version: 1,
            fields: Map::new(),
            secret_fields: Vec::new(),
            actions: Default::default(),
            execution_arn: None,
            reason: None,
            created_at: at.clone(),
            updated_at: at,
        };
        let context = Context::new(
            Value::Object(Map::new()),
            serde_json::json!({"id": item}),
            RequestVars {
                id: &request.id,
                timestamp: &request.created_at,
                user_id: &request.requester.subject,
                user_email: &request.requester.email,
            },
            &TemplateEnv::default(),
            Map::new(),
        );
        let action = Action {
            id: action_id.to_string(),
            kind,
            depends_on: Vec::new(),
            when: None,
            config: match config {
                Value::Object(config) => config,
                _ => Map::new(),
            },
            retry: None,
            timeout_seconds: None,
            rollback: None,
        };
        Self {
            request,
            action,
            context,
            outputs: Map::new(),
        }
    }

    /// The request in `status` (RollingBack: a person rolls back a
    /// completed request).
    pub fn status(mut self, status: RequestStatus) -> Self {
        self.request.status = status;
        self
    }

    /// The item's `rollback` of the action, such as `{"retain": true}`.
    pub fn rollback(mut self, rollback: Value) -> Self {
        if let Value::Object(rollback) = rollback {
            self.action.rollback = Some(rollback);
        }
        self
    }

    /// A step of the action, with the resources the ledger holds.
    pub fn step<'a>(&'a self, journal: &'a MemoryJournal, resources: &'a [Resource]) -> Step<'a> {
        Step {
            request: &self.request,
            action: &self.action,
            context: &self.context,
            resources,
            outputs: &self.outputs,
            journal,
            task_token: None,
            attempt: 1,
        }
    }
}
