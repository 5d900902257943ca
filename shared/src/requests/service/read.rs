//! Reading requests: one, a page of them, their logs, audit trail and
//! actions; someone else's request is not found.

use serde_json::{json, Value};

use crate::auth::Principal;
use crate::requests::{AuditEntry, ListQuery, LogEntry, Page, Request};

use super::{unknown, RequestError, Requests};

impl Requests {
    pub(super) async fn get_any(&self, id: &str) -> Result<Request, RequestError> {
        self.lookup(id).await?.ok_or_else(|| unknown(id))
    }

    /// A request the caller may see: their own, or any for an admin.
    /// Someone else's request is "not found", not "forbidden".
    pub async fn get(&self, caller: &Principal, id: &str) -> Result<Request, RequestError> {
        self.lookup(id)
            .await?
            .filter(|r| r.requester.subject == caller.subject || self.is_admin(caller))
            .ok_or_else(|| unknown(id))
    }

    /// The request `id` names. PAO's ids are UUIDs: anything else names no
    /// request, without asking the table (which refuses oversized keys).
    pub(super) async fn lookup(&self, id: &str) -> Result<Option<Request>, RequestError> {
        let plausible = (1..=64).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !plausible {
            return Ok(None);
        }
        Ok(self.store.get(id).await?)
    }

    pub async fn list(
        &self,
        caller: &Principal,
        mut query: ListQuery,
    ) -> Result<Page, RequestError> {
        if !self.is_admin(caller) {
            query.subject = Some(caller.subject.clone());
        }
        Ok(self.store.list(&query).await?)
    }

    pub async fn logs(&self, caller: &Principal, id: &str) -> Result<Vec<LogEntry>, RequestError> {
        self.get(caller, id).await?;
        Ok(self.store.logs(id).await?)
    }

    pub async fn audit(
        &self,
        caller: &Principal,
        id: &str,
    ) -> Result<Vec<AuditEntry>, RequestError> {
        self.get(caller, id).await?;
        Ok(self.store.audit(id).await?)
    }

    /// Each action of the request's plan with its record: status (Pending
    /// before it starts), attempts, outputs, last error.
    pub async fn actions(&self, caller: &Principal, id: &str) -> Result<Vec<Value>, RequestError> {
        self.get(caller, id).await?;
        let plan = self.store.plan(id).await?;
        let records = self.store.actions(id).await?;
        // The plan's actions in catalog order, then any other record (the
        // ticket of a manual request).
        let mut ids: Vec<String> = plan
            .iter()
            .flat_map(|plan| plan.actions.iter().map(|a| a.id.clone()))
            .collect();
        for record in &records {
            if !ids.contains(&record.action_id) {
                ids.push(record.action_id.clone());
            }
        }
        Ok(ids
            .into_iter()
            .map(|action_id| match records.iter().find(|r| r.action_id == action_id) {
                Some(record) => json!({
                    "id": action_id, "status": record.status.name(), "attempts": record.attempts,
                    "outputs": record.outputs, "error": record.error,
                    "waiting_for": record.waiting_for,
                }),
                None => json!({
                    "id": action_id, "status": "Pending", "attempts": 0, "outputs": {},
                    "error": null, "waiting_for": null,
                }),
            })
            .collect())
    }
}
