//! Whether a Deployment's rollout is done, under way, or cannot finish,
//! read from the Deployment's status and its pods' as the Deployment
//! controller and the kubelet report them, and from the app's
//! ExternalSecret as the External Secrets Operator reports it.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

/// The kubelet's reasons for a container that will not start by waiting:
/// an image that cannot be pulled, a configuration it cannot run, a crash
/// loop. (`ErrImagePull` comes first and may pass; its back-off does not.)
const STUCK: &[&str] = &[
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerError",
    "RunContainerError",
];

/// The kubelet's reason for a container whose env names a Secret (or a
/// key) that does not exist: expected until the operator has synced it.
const CONFIG_ERROR: &str = "CreateContainerConfigError";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica is updated and available.
    Ready,
    /// Under way; says what for.
    Waiting(String),
    /// Cannot finish: the pods' reasons.
    Stuck(String),
}

/// Where the app's secrets stand, as the External Secrets Operator reports
/// on its ExternalSecret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secrets {
    /// Synced into the Kubernetes Secret, or the app has none.
    Synced,
    /// Not (yet) synced: what the operator says.
    Pending(String),
}

impl Secrets {
    /// Read from an ExternalSecret's `status.conditions` (its `Ready`).
    pub fn of(name: &str, external: &Value) -> Self {
        let ready = external["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|condition| condition["type"] == "Ready");
        match ready {
            Some(condition) if condition["status"] == "True" => Secrets::Synced,
            Some(condition) => Secrets::Pending(format!(
                "ExternalSecret {name} is not synced: {}: {}",
                condition["reason"].as_str().unwrap_or("no reason"),
                condition["message"].as_str().unwrap_or("no message")
            )),
            None => Secrets::Pending(format!(
                "ExternalSecret {name} to be synced by the External Secrets Operator"
            )),
        }
    }
}

pub fn judge(deployment: &Deployment, pods: &[Pod], secrets: &Secrets) -> Rollout {
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
    // A container waiting for its Secret is stuck only once the operator
    // says it synced: before, the Secret is on its way.
    let reasons: Vec<String> = pod_reasons(pods)
        .into_iter()
        .filter(|(reason, _)| *reason != CONFIG_ERROR || *secrets == Secrets::Synced)
        .map(|(_, text)| text)
        .collect();
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
        let why = match secrets {
            _ if !unscheduled.is_empty() => unscheduled.join("; "),
            Secrets::Pending(why) => why.clone(),
            Secrets::Synced => "no new pod became available".to_string(),
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
    let rolled = updated >= wanted && available >= wanted && total <= updated;
    match secrets {
        Secrets::Pending(why) => Rollout::Waiting(why.clone()),
        Secrets::Synced if rolled => Rollout::Ready,
        Secrets::Synced => Rollout::Waiting(format!(
            "Deployment {name}: {updated} of {wanted} replicas updated, {available} available"
        )),
    }
}

/// Each stuck container once, with its reason:
/// `pod <pod>, container <container>: Reason: message`.
fn pod_reasons(pods: &[Pod]) -> Vec<(&str, String)> {
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
            if STUCK.contains(&reason) || reason == CONFIG_ERROR {
                let message = waiting.message.as_deref().unwrap_or("no message");
                let text = format!(
                    "pod {pod_name}, container {}: {reason}: {message}",
                    container.name
                );
                reasons.push((reason, text));
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

    fn judge_synced(deployment: &Deployment, pods: &[Pod]) -> Rollout {
        judge(deployment, pods, &Secrets::Synced)
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
        assert_eq!(judge_synced(&done, &[]), Rollout::Ready);
    }

    #[test]
    fn a_generation_not_yet_observed_is_waited_for() {
        let stale = deployment(
            4,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            judge_synced(&stale, &[]),
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
            judge_synced(&partway, &[]),
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
            judge_synced(&pulling, &[backing_off]),
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
            judge_synced(&pulling, &[first_error]),
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
            matches!(judge_synced(&running, &[crashing]), Rollout::Stuck(reason) if reason.contains("CrashLoopBackOff"))
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
            judge_synced(&early, std::slice::from_ref(&unplaced)),
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
            judge_synced(&late, &[unplaced]),
            Rollout::Stuck(
                "Deployment shop exceeded its progress deadline: pod shop-1: Unschedulable: \
                 0/3 nodes are available: 3 Insufficient memory."
                    .to_string()
            )
        );
    }

    fn waiting_for_its_secret() -> Pod {
        pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "shop", "image": "shop:1", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"shop-secrets\" not found"}}
        }]}))
    }

    #[test]
    fn the_operators_ready_condition_says_whether_the_secrets_are_synced() {
        let synced = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "SecretSynced", "message": "secret synced"}
        ]}});
        assert_eq!(Secrets::of("shop-secrets", &synced), Secrets::Synced);
        let failing = json!({"status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "SecretSyncedError",
            "message": "could not get ClusterSecretStore \"aws-secrets-manager\""
        }]}});
        assert_eq!(
            Secrets::of("shop-secrets", &failing),
            Secrets::Pending(
                "ExternalSecret shop-secrets is not synced: SecretSyncedError: \
                 could not get ClusterSecretStore \"aws-secrets-manager\""
                    .to_string()
            )
        );
        assert_eq!(
            Secrets::of("shop-secrets", &json!({"spec": {}})),
            Secrets::Pending(
                "ExternalSecret shop-secrets to be synced by the External Secrets Operator"
                    .to_string()
            )
        );
    }

    #[test]
    fn a_container_waiting_for_a_secret_the_operator_has_not_synced_yet_is_waited_for() {
        let starting = deployment(
            1,
            json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2}),
        );
        let pending = Secrets::Pending("ExternalSecret shop-secrets to be synced".to_string());
        assert_eq!(
            judge(&starting, &[waiting_for_its_secret()], &pending),
            Rollout::Waiting("ExternalSecret shop-secrets to be synced".to_string())
        );
        // Synced, and the container still cannot find it: it never will.
        assert_eq!(
            judge(&starting, &[waiting_for_its_secret()], &Secrets::Synced),
            Rollout::Stuck(
                "pod shop-1, container shop: CreateContainerConfigError: \
                 secret \"shop-secrets\" not found"
                    .to_string()
            )
        );
    }

    #[test]
    fn secrets_never_synced_by_the_deadline_are_the_reason_it_is_stuck() {
        let late = deployment(
            1,
            json!({
                "observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
            }),
        );
        let failing = Secrets::Pending(
            "ExternalSecret shop-secrets is not synced: SecretSyncedError: store not found"
                .to_string(),
        );
        assert_eq!(
            judge(&late, &[waiting_for_its_secret()], &failing),
            Rollout::Stuck(
                "Deployment shop exceeded its progress deadline: ExternalSecret shop-secrets \
                 is not synced: SecretSyncedError: store not found"
                    .to_string()
            )
        );
    }

    #[test]
    fn a_rolled_out_deployment_still_waits_for_its_secrets_to_sync() {
        let done = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        let pending = Secrets::Pending("ExternalSecret shop-secrets to be synced".to_string());
        assert_eq!(
            judge(&done, &[], &pending),
            Rollout::Waiting("ExternalSecret shop-secrets to be synced".to_string())
        );
    }
}
