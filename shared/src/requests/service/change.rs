//! Changing a request under way or finished: retry, rollback and cancel,
//! each a conditional transition that names the execution to come before
//! starting it, and JIRA's word on a manual request.

use serde_json::json;

use crate::auth::Principal;
use crate::requests::ticket::{Delivery, IssueEvent};
use crate::requests::{Request, RequestStatus, TransitionError};

use super::{refused, RequestError, Requests};

impl Requests {
    /// A new attempt of a Failed request: a new execution whose plan leaves
    /// out the actions that succeeded. Asking again while that attempt is
    /// queued or running answers with the request as it is.
    pub async fn retry(&self, caller: &Principal, id: &str) -> Result<Request, RequestError> {
        self.restart(
            caller,
            id,
            RequestStatus::Failed,
            RequestStatus::Queued,
            "retry",
        )
        .await
    }

    /// Compensates a Completed or Failed request's succeeded actions, newest
    /// first, then RolledBack. Asking again while it rolls back answers with
    /// the request as it is.
    pub async fn rollback(&self, caller: &Principal, id: &str) -> Result<Request, RequestError> {
        let request = self.get(caller, id).await?;
        let from = match request.status {
            RequestStatus::Failed => RequestStatus::Failed,
            _ => RequestStatus::Completed,
        };
        self.restart(caller, id, from, RequestStatus::RollingBack, "rollback")
            .await
    }

    /// Moves the request from `from` to `to`, then starts its execution
    /// `{id}-{what}-v{version}`. The status is written first, naming the
    /// execution to come, so of two changes racing (a retry and a rollback)
    /// only the winner starts anything. A repeated call starts the same
    /// name again, which starts nothing new but makes up for a start that
    /// failed after the status was written.
    pub(super) async fn restart(
        &self,
        caller: &Principal,
        id: &str,
        from: RequestStatus,
        to: RequestStatus,
        what: &str,
    ) -> Result<Request, RequestError> {
        for _ in 0..3 {
            let request = self.get(caller, id).await?;
            let in_flight = match to {
                RequestStatus::Queued => {
                    matches!(
                        request.status,
                        RequestStatus::Queued | RequestStatus::InProgress
                    )
                }
                _ => request.status == to,
            };
            let input =
                json!({"request_id": id, "rollback": to == RequestStatus::RollingBack}).to_string();
            let started = request
                .execution_arn
                .as_deref()
                .and_then(|arn| arn.rsplit(':').next())
                .filter(|name| name.starts_with(&format!("{id}-{what}-")));
            if let (true, Some(name)) = (in_flight, started) {
                self.workflow.start(name, &input).await?;
                return Ok(request);
            }
            if request.status != from {
                return Err(RequestError::Finished(request.status));
            }
            let name = format!("{id}-{what}-v{}", request.version);
            let mut change = self.change(
                &request,
                to,
                caller,
                Some(&format!("{what} asked by {}", caller.email)),
            );
            change.execution_arn = Some(self.workflow.execution_arn(&name));
            match self.store.transition(&request, &change).await {
                Ok(request) => {
                    self.workflow.start(&name, &input).await?;
                    self.log(
                        id,
                        "api",
                        "info",
                        format!("{what} asked by {}", caller.email),
                    )
                    .await?;
                    return Ok(request);
                }
                Err(TransitionError::Conflict { .. }) => continue,
                Err(err) => return Err(refused(err, id)),
            }
        }
        self.get(caller, id).await
    }

    /// A JIRA issue of a manual request changed (the signature is checked
    /// by the caller): resume the request waiting on it.
    pub async fn ticket_changed(&self, event: &IssueEvent) -> Result<Delivery, RequestError> {
        Ok(
            crate::requests::ticket::deliver(self.store.as_ref(), self.workflow.as_ref(), event)
                .await?,
        )
    }

    /// Stops the request's execution and marks it Cancelled.
    pub async fn cancel(&self, caller: &Principal, id: &str) -> Result<Request, RequestError> {
        for _ in 0..3 {
            let request = self.get(caller, id).await?;
            let undo = json!({"request_id": id, "rollback": true}).to_string();
            if request.status == RequestStatus::Cancelled {
                // Asked again: its compensation is started again too, in
                // case the first start failed (the same name starts
                // nothing new).
                self.workflow.start(&format!("{id}-cancel"), &undo).await?;
            }
            // Checked before anything is stopped: a request being rolled
            // back is not cancelled, and its rollback goes on.
            if !request.status.can_become(RequestStatus::Cancelled) {
                return Err(RequestError::Finished(request.status));
            }
            if let Some(arn) = &request.execution_arn {
                self.workflow
                    .stop(arn, &format!("cancelled by {}", caller.email))
                    .await?;
            }
            let change = self.change(
                &request,
                RequestStatus::Cancelled,
                caller,
                Some("cancelled by the requester"),
            );
            match self.store.transition(&request, &change).await {
                Ok(request) => {
                    self.log(id, "api", "info", format!("cancelled by {}", caller.email))
                        .await?;
                    // What the stopped execution made is undone by one of
                    // its own: it waits for a running action to end first.
                    self.workflow.start(&format!("{id}-cancel"), &undo).await?;
                    return Ok(request);
                }
                // The engine moved it meanwhile: look again.
                Err(TransitionError::Conflict { .. }) => continue,
                Err(err) => return Err(refused(err, id)),
            }
        }
        let request = self.get(caller, id).await?;
        Err(RequestError::Finished(request.status))
    }
}
