//! Whether a Deployment's rollout is done, under way, or cannot finish,
//! read from the Deployment's status and its pods' as the Deployment
//! controller and the kubelet report them.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;

/// The kubelet's reasons for a container that will not start by waiting:
/// an image that cannot be pulled, a configuration it cannot run, a crash
/// loop. (`ErrImagePull` comes first and may pass; its back-off does not.)
const STUCK: &[&str] = &[
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica is updated and available.
    Ready,
    /// Under way; says what for.
    Waiting(String),
    /// Cannot finish: the pods' reasons.
    Stuck(String),
}

pub fn judge(deployment: &Deployment, pods: &[Pod]) -> Rollout {
    let name = deployment
        .metadata
        .name
        .as_deref()
        .unwrap_or("the Deployment");
    let generation = deployment.metadata.generation.unwrap_or(0);
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let reasons = pod_reasons(pods);
    if !reasons.is_empty() {
        return Rollout::Stuck(reasons.join("; "));
    }
    let deadline_passed = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline_passed {
        let unscheduled = unschedulable(pods);
        let why = if unscheduled.is_empty() {
            "no new pod became available".to_string()
        } else {
            unscheduled.join("; ")
        };
        return Rollout::Stuck(format!(
            "Deployment {name} exceeded its progress deadline: {why}"
        ));
    }
    if status.observed_generation.unwrap_or(0) < generation {
        return Rollout::Waiting(format!(
            "the controller to take up generation {generation} of Deployment {name}"
        ));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if updated >= wanted && available >= wanted && total <= updated {
        return Rollout::Ready;
    }
    Rollout::Waiting(format!(
        "Deployment {name}: {updated} of {wanted} replicas updated, {available} available"
    ))
}

/// Each stuck container once: `pod/container: Reason: message`.
fn pod_reasons(pods: &[Pod]) -> Vec<String> {
    let mut reasons = Vec::new();
    for pod in pods {
        let pod_name = pod.metadata.name.as_deref().unwrap_or("a pod");
        let statuses = pod
            .status
            .iter()
            .flat_map(|status| status.container_statuses.iter().flatten());
        for container in statuses {
            let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if STUCK.contains(&reason) {
                let message = waiting.message.as_deref().unwrap_or("no message");
                reasons.push(format!(
                    "pod {pod_name}, container {}: {reason}: {message}",
                    container.name
                ));
            }
        }
    }
    reasons
}

/// Pods the scheduler cannot place. Not a failure at once: a cluster
/// autoscaler may add the node they need; only after the deadline.
fn unschedulable(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|pod| {
            let condition = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })?;
            Some(format!(
                "pod {}: Unschedulable: {}",
                pod.metadata.name.as_deref().unwrap_or("a pod"),
                condition.message.as_deref().unwrap_or("no message")
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "shop", "generation": generation},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "shop-1"}, "status": status})).unwrap()
    }

    #[test]
    fn every_replica_updated_and_available_is_ready() {
        let done = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(judge(&done, &[]), Rollout::Ready);
    }

    #[test]
    fn a_generation_not_yet_observed_is_waited_for() {
        let stale = deployment(
            4,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            judge(&stale, &[]),
            Rollout::Waiting(
                "the controller to take up generation 4 of Deployment shop".to_string()
            )
        );
    }

    #[test]
    fn replicas_on_their_way_are_waited_for_and_old_ones_must_be_gone() {
        let partway = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            judge(&partway, &[]),
            Rollout::Waiting("Deployment shop: 2 of 2 replicas updated, 2 available".to_string())
        );
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_stuck_with_the_kubelets_reason() {
        let pulling = deployment(
            1,
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}),
        );
        let backing_off = pod(json!({"containerStatuses": [{
            "name": "shop", "image": "shop:9", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"shop:9\""}}
        }]}));
        assert_eq!(
            judge(&pulling, &[backing_off]),
            Rollout::Stuck(
                "pod shop-1, container shop: ImagePullBackOff: Back-off pulling image \"shop:9\""
                    .to_string()
            )
        );
    }

    #[test]
    fn a_first_pull_error_may_pass_and_is_waited_for() {
        let pulling = deployment(
            1,
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}),
        );
        let first_error = pod(json!({"containerStatuses": [{
            "name": "shop", "image": "shop:9", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull"}}
        }]}));
        assert!(matches!(
            judge(&pulling, &[first_error]),
            Rollout::Waiting(_)
        ));
    }

    #[test]
    fn a_crash_loop_is_stuck() {
        let running = deployment(
            1,
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}),
        );
        let crashing = pod(json!({"containerStatuses": [{
            "name": "shop", "image": "shop:1", "imageID": "", "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}}
        }]}));
        assert!(
            matches!(judge(&running, &[crashing]), Rollout::Stuck(reason) if reason.contains("CrashLoopBackOff"))
        );
    }

    #[test]
    fn unschedulable_pods_are_waited_for_until_the_progress_deadline() {
        let unplaced = pod(json!({"conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory."
        }]}));
        let early = deployment(
            1,
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}),
        );
        assert!(matches!(
            judge(&early, std::slice::from_ref(&unplaced)),
            Rollout::Waiting(_)
        ));
        let late = deployment(
            1,
            json!({
                "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
            }),
        );
        assert_eq!(
            judge(&late, &[unplaced]),
            Rollout::Stuck(
                "Deployment shop exceeded its progress deadline: pod shop-1: Unschedulable: \
                 0/3 nodes are available: 3 Insufficient memory."
                    .to_string()
            )
        );
    }
}
