//! The JIRA webhook: a manual request's issue changed. Its signature is
//! checked (HMAC-SHA256 of the raw body with the shared secret, JIRA's
//! `X-Hub-Signature: sha256=<hex>`), then the waiting execution is resumed:
//! success when the issue is resolved as done, failure when it is rejected,
//! a heartbeat for any other change.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use super::fulfillment::ActionStatus;
use super::{LogEntry, RequestStore, TaskOutcome, Workflow};
use crate::actions::lifecycle::TICKET;
use crate::catalog::index::StoreError;
use crate::clock::now;

/// Resolutions that mean "we will not do this".
const REJECTED: &[&str] = &[
    "won't do",
    "won't fix",
    "rejected",
    "declined",
    "duplicate",
    "cannot reproduce",
    "incomplete",
];

/// Whether `signature` (`sha256=<hex>`) is the HMAC of `body` under `secret`.
/// Compared in constant time.
pub fn verify(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(hex) = signature.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = (hex.len() <= 128).then(|| hex::decode(hex).ok()).flatten() else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `sha256=<hex>` of `body` under `secret`: what JIRA sends (and tests and
/// the demo sign with).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex = hex::encode(digest);
    format!("sha256={hex}")
}

/// The parts of JIRA's issue event PAO reads.
#[derive(Debug, Deserialize)]
pub struct IssueEvent {
    pub issue: EventIssue,
}

#[derive(Debug, Deserialize)]
pub struct EventIssue {
    pub key: String,
    #[serde(default)]
    pub fields: EventFields,
}

#[derive(Debug, Default, Deserialize)]
pub struct EventFields {
    #[serde(default)]
    pub status: Option<Named>,
    #[serde(default)]
    pub resolution: Option<Named>,
}

#[derive(Debug, Deserialize)]
pub struct Named {
    pub name: String,
    #[serde(default, rename = "statusCategory")]
    pub category: Option<Category>,
}

#[derive(Debug, Deserialize)]
pub struct Category {
    pub key: String,
}

/// What the event means for the waiting request.
pub fn outcome(event: &IssueEvent) -> TaskOutcome {
    let key = &event.issue.key;
    let fields = &event.issue.fields;
    let status = fields.status.as_ref();
    let done = status.is_some_and(|s| {
        s.category.as_ref().is_some_and(|c| c.key == "done")
            || matches!(
                s.name.to_lowercase().as_str(),
                "done" | "resolved" | "closed"
            )
    });
    let resolution = fields.resolution.as_ref().map(|r| r.name.to_lowercase());
    let rejected_status = status.is_some_and(|s| {
        matches!(
            s.name.to_lowercase().as_str(),
            "rejected" | "declined" | "cancelled" | "canceled"
        )
    });
    let rejected_resolution = resolution.as_deref().is_some_and(|r| REJECTED.contains(&r));
    if rejected_status || (done && rejected_resolution) {
        let how = fields
            .resolution
            .as_ref()
            .or(status)
            .map_or("rejected", |n| n.name.as_str());
        return TaskOutcome::Failed {
            error: "Rejected".to_string(),
            cause: format!("JIRA {key} was closed as {how}"),
        };
    }
    if done {
        return TaskOutcome::Succeeded(json!({ "issue_key": key }));
    }
    TaskOutcome::Heartbeat
}

/// What became of one webhook delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Resumed(&'static str),
    /// Not an issue of a PAO request, or its request no longer waits.
    Ignored(&'static str),
}

/// Resumes the request waiting on the issue of `event`.
pub async fn deliver(
    store: &dyn RequestStore,
    workflow: &dyn Workflow,
    event: &IssueEvent,
) -> Result<Delivery, StoreError> {
    let key = &event.issue.key;
    let Some(id) = store.ticket_request(key).await? else {
        return Ok(Delivery::Ignored("not the issue of a PAO request"));
    };
    // A retried request has a new issue: its earlier, rejected one must not
    // resume the new attempt, however it is edited later.
    let current = store.actions(&id).await?.into_iter().find(|record| {
        record.action_id == TICKET
            && record.status == ActionStatus::Succeeded
            && record.outputs.get("issue_key").and_then(Value::as_str) == Some(key.as_str())
    });
    if current.is_none() {
        return Ok(Delivery::Ignored("not the request's current issue"));
    }
    let Some(token) = store.task_token(&id).await? else {
        return Ok(Delivery::Ignored("the request does not wait for its issue"));
    };
    let outcome = outcome(event);
    if !workflow.resume(&token, &outcome).await? {
        return Ok(Delivery::Ignored(
            "the request no longer waits for its issue",
        ));
    }
    let (level, message, label) = match &outcome {
        TaskOutcome::Succeeded(_) => (
            "info",
            format!("JIRA {key} resolved: fulfilled by the platform team"),
            "completed",
        ),
        TaskOutcome::Failed { cause, .. } => ("error", cause.clone(), "rejected"),
        TaskOutcome::Heartbeat => (
            "info",
            format!("JIRA {key} updated; still waiting"),
            "heartbeat",
        ),
    };
    store
        .append_log(
            &id,
            &LogEntry {
                at: now(),
                source: "jira".to_string(),
                level: level.to_string(),
                message,
            },
        )
        .await?;
    Ok(Delivery::Resumed(label))
}

/// The issue key of a delivery body, for a quick look before parsing all.
pub fn parse(body: &[u8]) -> Result<IssueEvent, String> {
    serde_json::from_slice::<IssueEvent>(body)
        .map_err(|err| format!("not a JIRA issue event: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: &str, category: &str, resolution: Option<&str>) -> IssueEvent {
        let mut fields = json!({"status": {"name": status, "statusCategory": {"key": category}}});
        if let Some(resolution) = resolution {
            fields["resolution"] = json!({"name": resolution});
        }
        serde_json::from_value(json!({"webhookEvent": "jira:issue_updated", "issue": {"key": "OPS-7", "fields": fields}}))
            .unwrap()
    }

    #[test]
    fn signatures_are_checked_in_full() {
        let body = br#"{"issue":{"key":"OPS-7"}}"#;
        let good = sign(b"s3cret", body);
        assert!(verify(b"s3cret", body, &good));
        assert!(!verify(b"other", body, &good));
        assert!(!verify(b"s3cret", b"{}", &good));
        for bad in [
            "",
            "sha256=",
            "sha256=zz",
            "md5=abcd",
            &good[..good.len() - 2],
            &good.replace("sha256=", ""),
        ] {
            assert!(!verify(b"s3cret", body, bad), "{bad}");
        }
    }

    #[test]
    fn done_resumes_rejected_fails_anything_else_is_a_heartbeat() {
        assert!(matches!(
            outcome(&event("Done", "done", Some("Done"))),
            TaskOutcome::Succeeded(_)
        ));
        assert!(matches!(
            outcome(&event("Resolved", "done", Some("Fixed"))),
            TaskOutcome::Succeeded(_)
        ));
        match outcome(&event("Done", "done", Some("Won't Do"))) {
            TaskOutcome::Failed { error, cause } => {
                assert_eq!(error, "Rejected");
                assert_eq!(cause, "JIRA OPS-7 was closed as Won't Do");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            outcome(&event("Declined", "done", None)),
            TaskOutcome::Failed { .. }
        ));
        assert_eq!(
            outcome(&event("In Progress", "indeterminate", None)),
            TaskOutcome::Heartbeat
        );
    }
}
