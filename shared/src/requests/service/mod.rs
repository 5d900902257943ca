//! The request service: the rules a developer's request goes through,
//! over the ports of `requests` — submitting (`submit`), reading
//! (`read`), and changing a request under way or finished (`change`:
//! retry, rollback, cancel, and JIRA's word on a manual request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonschema::Validator;
use serde_json::Value;

use crate::auth::Principal;
use crate::catalog::index::{CatalogStore, StoreError};
use crate::clock::now;
use crate::requests::fields::FieldError;
use crate::requests::limit::SubmissionLimit;
use crate::requests::{
    ListError, LogEntry, RequestStatus, RequestStore, SecretStore, TransitionError, Workflow,
};

mod change;
#[cfg(test)]
pub(crate) mod limit_tests;
mod read;
mod submit;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    NotFound(String),
    #[error("the fields are not valid")]
    InvalidFields(Vec<FieldError>),
    #[error("this Idempotency-Key was used with a different request body")]
    KeyReused,
    #[error("the request is {0}; it can no longer be cancelled")]
    Finished(RequestStatus),
    #[error("{0}")]
    BadInput(String),
    #[error(
        "at most {per_minute} new {} per minute per caller; try again in {retry_after_seconds} s",
        request_or_requests(.per_minute)
    )]
    RateLimited {
        per_minute: u32,
        /// 1 to 60.
        retry_after_seconds: u32,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn request_or_requests(count: &u32) -> &'static str {
    if *count == 1 {
        "request"
    } else {
        "requests"
    }
}

impl From<ListError> for RequestError {
    fn from(err: ListError) -> Self {
        match err {
            ListError::BadToken => {
                Self::BadInput("the page token is not valid for this listing".to_string())
            }
            ListError::Store(err) => Self::Store(err),
        }
    }
}

pub struct Submission {
    pub item_id: String,
    pub fields: Value,
    pub idempotency_key: Option<String>,
}

pub struct Requests {
    pub(super) store: Arc<dyn RequestStore>,
    pub(super) catalog: Arc<dyn CatalogStore>,
    pub(super) secrets: Arc<dyn SecretStore>,
    pub(super) workflow: Arc<dyn Workflow>,
    /// How many new requests a caller may make per minute; `None`: any.
    pub(super) limit: Option<Arc<dyn SubmissionLimit>>,
    pub(super) admin_group: String,
    /// Compiled form validators by item content hash.
    pub(super) validators: Mutex<HashMap<String, Arc<Validator>>>,
}

impl Requests {
    pub fn new(
        store: Arc<dyn RequestStore>,
        catalog: Arc<dyn CatalogStore>,
        secrets: Arc<dyn SecretStore>,
        workflow: Arc<dyn Workflow>,
        admin_group: impl Into<String>,
    ) -> Self {
        Self {
            store,
            catalog,
            secrets,
            workflow,
            limit: None,
            admin_group: admin_group.into(),
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// Limits the new requests each caller may make, by `limit`.
    pub fn with_limit(mut self, limit: Arc<dyn SubmissionLimit>) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn is_admin(&self, caller: &Principal) -> bool {
        caller.in_group(&self.admin_group)
    }

    pub(super) async fn log(
        &self,
        id: &str,
        source: &str,
        level: &str,
        message: String,
    ) -> Result<(), StoreError> {
        self.store
            .append_log(
                id,
                &LogEntry {
                    at: now(),
                    source: source.to_string(),
                    level: level.to_string(),
                    message,
                },
            )
            .await
    }
}

/// A transition the store refused, in the API's terms.
pub(super) fn refused(err: TransitionError, id: &str) -> RequestError {
    match err {
        TransitionError::NotAllowed { from, .. } => RequestError::Finished(from),
        TransitionError::Conflict { current } => RequestError::Finished(current),
        TransitionError::NotFound => unknown(id),
        TransitionError::Store(err) => err.into(),
    }
}

/// "No such request", quoting the id only when it is short.
pub(super) fn unknown(id: &str) -> RequestError {
    if id.len() <= 64 {
        RequestError::NotFound(format!("no request `{id}`"))
    } else {
        RequestError::NotFound("no request has that id".to_string())
    }
}
