"""What a cluster's controllers do after an object changes, played on
timers, so a client waiting for them sees what it would see in EKS.

- **Deployment** (created, or its spec changed): after OBSERVE_SECONDS its
  status carries `observedGeneration` with the current pods counted; after
  ROLL_SECONDS its pods are replaced by `spec.replicas` pods of the new
  template (labels from the template plus `pod-template-hash`), Running and
  ready, and the status says `Available` True and `Progressing` True with
  reason `NewReplicaSetAvailable`. **Unpullable images**: a container whose
  image tag ends in `-unpullable` (`example/app:1.0-unpullable`) cannot be
  pulled, as a tag that does not exist cannot be: its pods stay `Pending`,
  the container waiting with reason `ImagePullBackOff` and kubelet's
  message `Back-off pulling image "<image>"`; pods of the previous template
  that were running stay (as a rolling update keeps them), and after
  PROGRESS_DEADLINE_SECONDS `Progressing` turns False with reason
  `ProgressDeadlineExceeded` (EKS waits `spec.progressDeadlineSeconds`,
  600 by default). Pods name the Deployment in `ownerReferences` (in EKS
  they name its ReplicaSet), so deleting the Deployment deletes them.
- **ExternalSecret** (created, or its spec changed): after SYNC_SECONDS, if
  the ClusterSecretStore it names exists, its target Secret (type Opaque,
  named `spec.target.name` or after the ExternalSecret) holds every
  `spec.data[].secretKey`, and its status is `Ready` True, `SecretSynced`;
  else `Ready` False, `SecretSyncedError`, saying the store is missing, as
  the operator does. **The values are not secrets**: the stand-in never
  reaches Secrets Manager, and every key holds PLACEHOLDER, so there is
  nothing real to leak. Keys of `dataFrom` are not known and not written.
  `creationPolicy: Owner` (the default) makes the ExternalSecret the
  Secret's owner; `None` writes no Secret.
- **ClusterSecretStore**: `Ready` True after SYNC_SECONDS (nothing checks it
  can reach AWS), and the ExternalSecrets waiting for it are synced. The
  one the platform's bootstrap installs (bootstrap.py) is Ready from the
  start.
- **Namespace** deleted: after NAMESPACE_PURGE_SECONDS everything in it, and
  then the namespace, is gone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
from typing import Any, Callable

from kube.resources import CLUSTER_SECRET_STORES, DEPLOYMENTS, EXTERNAL_SECRETS, NAMESPACES, PODS, SECRETS, \
    Resource
from kube.store import Object, Store, now

OBSERVE_SECONDS = 0.1
ROLL_SECONDS = 2.0
PROGRESS_DEADLINE_SECONDS = 5.0
SYNC_SECONDS = 0.5
NAMESPACE_PURGE_SECONDS = 2.0
UNPULLABLE_SUFFIX = "-unpullable"
PLACEHOLDER = "pao-local-placeholder-not-a-secret"
MANAGED_LABEL = "reconcile.external-secrets.io/managed"
POD_NAME_LETTERS = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes draws generated name suffixes from


class Controllers:
    def __init__(self, store: Store):
        self.store = store

    def applied(self, cluster: str, resource: Resource, obj: Object, spec_changed: bool) -> None:
        if not spec_changed:
            return
        ref = _ref(obj)
        if resource is DEPLOYMENTS:
            self._later(OBSERVE_SECONDS, self._observe, cluster, ref)
            self._later(ROLL_SECONDS, self._roll, cluster, ref)
            self._later(PROGRESS_DEADLINE_SECONDS, self._deadline, cluster, ref)
        elif resource is EXTERNAL_SECRETS:
            self._later(SYNC_SECONDS, self._sync, cluster, ref)
        elif resource is CLUSTER_SECRET_STORES:
            self._later(SYNC_SECONDS, self._store_ready, cluster, ref)

    def deleted(self, cluster: str, resource: Resource, obj: Object) -> None:
        if resource is NAMESPACES:
            metadata = obj["metadata"]
            self._later(NAMESPACE_PURGE_SECONDS, self.store.purge_namespace, cluster, metadata["name"], metadata["uid"])

    def _later(self, seconds: float, action: Callable[..., None], *args: Any) -> None:
        timer = threading.Timer(seconds, action, args)
        timer.daemon = True
        timer.start()

    # ------------------------------------------------------------ Deployments
    def _current(self, cluster: str, resource: Resource, ref: tuple[str, str, str, int]) -> Object | None:
        """The object the timer was set for, unless it was deleted or its spec changed since."""
        namespace, name, uid, generation = ref
        found = self.store.find(cluster, resource, namespace, name)
        if found is None or found["metadata"]["uid"] != uid or found["metadata"].get("generation") != generation:
            return None
        return found

    def _observe(self, cluster: str, ref: tuple[str, str, str, int]) -> None:
        with self.store.lock:
            deployment = self._current(cluster, DEPLOYMENTS, ref)
            if deployment is not None:
                self._set_status(cluster, deployment, timed_out=False)

    def _roll(self, cluster: str, ref: tuple[str, str, str, int]) -> None:
        with self.store.lock:
            deployment = self._current(cluster, DEPLOYMENTS, ref)
            if deployment is None:
                return
            template = deployment["spec"]["template"]
            template_hash = _template_hash(template)
            pods = self.store.owned_by(cluster, deployment["metadata"]["uid"])
            current = [pod for pod in pods if _hash_of(pod) == template_hash]
            pullable = not any(_unpullable(c.get("image", "")) for c in _containers(template))
            # A rollout that completes replaces every older pod; one that cannot
            # keeps the older pods that run and drops those that never started.
            stale = [pod for pod in pods if _hash_of(pod) != template_hash
                     and (pullable or pod["status"]["phase"] != "Running")]
            wanted = deployment["spec"]["replicas"]
            for pod in stale + current[wanted:]:
                self.store.remove(cluster, PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
            for _ in range(wanted - len(current)):
                self.store.save(cluster, PODS, _pod(deployment, template_hash))
            self._set_status(cluster, deployment, timed_out=False)

    def _deadline(self, cluster: str, ref: tuple[str, str, str, int]) -> None:
        with self.store.lock:
            deployment = self._current(cluster, DEPLOYMENTS, ref)
            if deployment is not None:
                self._set_status(cluster, deployment, timed_out=True)

    def _set_status(self, cluster: str, deployment: Object, timed_out: bool) -> None:
        pods = self.store.owned_by(cluster, deployment["metadata"]["uid"])
        deployment["status"] = _deployment_status(deployment, pods, timed_out)
        self.store.save(cluster, DEPLOYMENTS, deployment)

    # ------------------------------------------------------------ External Secrets
    def _sync(self, cluster: str, ref: tuple[str, str, str, int]) -> None:
        with self.store.lock:
            external = self._current(cluster, EXTERNAL_SECRETS, ref)
            if external is None:
                return
            spec = external["spec"]
            store_ref = spec.get("secretStoreRef") or {}
            kind, store_name = store_ref.get("kind", "SecretStore"), store_ref.get("name", "")
            # A SecretStore (namespaced) is not served here, so it is never found.
            found = kind == "ClusterSecretStore" and self.store.find(cluster, CLUSTER_SECRET_STORES, "", store_name)
            if found:
                target = self._write_secret(cluster, external)
                ready = _condition(external, "Ready", "True", "SecretSynced", "secret synced")
                external["status"] = {"binding": {"name": target}, "conditions": [ready], "refreshTime": now()}
            else:
                message = f'could not get {kind} "{store_name}", {kind}.external-secrets.io "{store_name}" not found'
                ready = _condition(external, "Ready", "False", "SecretSyncedError", message)
                external["status"] = {**external.get("status", {}), "conditions": [ready]}
            self.store.save(cluster, EXTERNAL_SECRETS, external)

    def _write_secret(self, cluster: str, external: Object) -> str:
        metadata, spec = external["metadata"], external["spec"]
        target = spec.get("target") or {}
        name = target.get("name") or metadata["name"]
        policy = target.get("creationPolicy", "Owner")
        if policy == "None":
            return name
        placeholder = base64.b64encode(PLACEHOLDER.encode()).decode()
        data = {item["secretKey"]: placeholder for item in spec.get("data", [])}
        secret = self.store.find(cluster, SECRETS, metadata["namespace"], name) or {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": metadata["namespace"]},
        }
        secret["data"] = {**secret.get("data", {}), **data} if policy in ("Merge", "CreateOrMerge") else data
        secret["metadata"].setdefault("labels", {})[MANAGED_LABEL] = "true"
        if policy == "Owner":
            secret["metadata"]["ownerReferences"] = [{
                "apiVersion": EXTERNAL_SECRETS.api_version, "kind": EXTERNAL_SECRETS.kind, "name": metadata["name"],
                "uid": metadata["uid"], "controller": True, "blockOwnerDeletion": True,
            }]
        if "immutable" in target:
            secret["immutable"] = target["immutable"]
        self.store.save(cluster, SECRETS, secret)
        return name

    def _store_ready(self, cluster: str, ref: tuple[str, str, str, int]) -> None:
        with self.store.lock:
            store = self._current(cluster, CLUSTER_SECRET_STORES, ref)
            if store is None:
                return
            store["status"] = store_status(store)
            self.store.save(cluster, CLUSTER_SECRET_STORES, store)
            waiting, _ = self.store.list(cluster, EXTERNAL_SECRETS, None, lambda external: _waits_for(external, store))
            for external in waiting:
                self._sync(cluster, _ref(external))


def store_status(store: Object) -> Object:
    """The status External Secrets Operator writes in a store it validated."""
    return {"capabilities": "ReadWrite", "conditions": [_condition(store, "Ready", "True", "Valid", "store validated")]}


def _ref(obj: Object) -> tuple[str, str, str, int]:
    metadata = obj["metadata"]
    return metadata.get("namespace", ""), metadata["name"], metadata["uid"], metadata["generation"]


def _waits_for(external: Object, store: Object) -> bool:
    ref = external["spec"].get("secretStoreRef") or {}
    ready = [c for c in external.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
    return (ref.get("kind") == "ClusterSecretStore" and ref.get("name") == store["metadata"]["name"]
            and not (ready and ready[0]["status"] == "True"))


def _condition(obj: Object, kind: str, status: str, reason: str, message: str,
               with_update_time: bool = False) -> dict[str, str]:
    """A condition, keeping its lastTransitionTime while its status holds."""
    previous = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)
    since = previous["lastTransitionTime"] if previous and previous["status"] == status else now()
    condition = {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    if with_update_time:
        condition["lastUpdateTime"] = now()
    return condition


def _containers(template: Object) -> list[Object]:
    spec = template.get("spec", {})
    return spec.get("initContainers", []) + spec.get("containers", [])


def _unpullable(image: str) -> bool:
    reference = image.split("@")[0]
    name, _, tag = reference.rpartition(":")
    return bool(name) and "/" not in tag and tag.endswith(UNPULLABLE_SUFFIX)


def _template_hash(template: Object) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _hash_of(pod: Object) -> str | None:
    return pod["metadata"].get("labels", {}).get("pod-template-hash")


def _pod(deployment: Object, template_hash: str) -> Object:
    metadata, template = deployment["metadata"], deployment["spec"]["template"]
    suffix = "".join(random.choices(POD_NAME_LETTERS, k=5))
    started = now()
    statuses = [_container_status(container, started) for container in template["spec"].get("containers", [])]
    waiting = [status["name"] for status in statuses if "waiting" in status["state"]]
    ready = "False" if waiting else "True"
    not_ready = {"reason": "ContainersNotReady", "message": f"containers with unready status: [{' '.join(waiting)}]"}
    conditions = [{"type": kind, "status": status, "lastTransitionTime": started,
                   **(not_ready if status == "False" else {})}
                  for kind, status in (("PodScheduled", "True"), ("Initialized", "True"),
                                       ("ContainersReady", ready), ("Ready", ready))]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{metadata['name']}-{template_hash}-{suffix}", "namespace": metadata["namespace"],
            "labels": {**template.get("metadata", {}).get("labels", {}), "pod-template-hash": template_hash},
            "ownerReferences": [{"apiVersion": DEPLOYMENTS.api_version, "kind": DEPLOYMENTS.kind,
                                 "name": metadata["name"], "uid": metadata["uid"], "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": template["spec"],
        "status": {"phase": "Pending" if waiting else "Running", "conditions": conditions,
                   "startTime": started, "containerStatuses": statuses},
    }


def _container_status(container: Object, started: str) -> Object:
    image = container.get("image", "")
    status = {"name": container["name"], "image": image, "imageID": "", "restartCount": 0}
    if _unpullable(image):
        waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
        return {**status, "ready": False, "started": False, "state": {"waiting": waiting}}
    return {**status, "ready": True, "started": True, "state": {"running": {"startedAt": started}}}


def _deployment_status(deployment: Object, pods: list[Object], timed_out: bool) -> Object:
    name, wanted = deployment["metadata"]["name"], deployment["spec"]["replicas"]
    template_hash = _template_hash(deployment["spec"]["template"])
    updated = sum(1 for pod in pods if _hash_of(pod) == template_hash)
    available = sum(1 for pod in pods if pod["status"]["phase"] == "Running")
    complete = updated == wanted == len(pods) == available
    replica_set = f'ReplicaSet "{name}-{template_hash}"'
    if complete:
        progressing = ("True", "NewReplicaSetAvailable", f"{replica_set} has successfully progressed.")
    elif timed_out:
        progressing = ("False", "ProgressDeadlineExceeded", f"{replica_set} has timed out progressing.")
    else:
        progressing = ("True", "ReplicaSetUpdated", f"{replica_set} is progressing.")
    enough = available >= wanted
    status = {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": len(pods), "updatedReplicas": updated, "readyReplicas": available,
        "availableReplicas": available, "unavailableReplicas": max(wanted - available, 0),
        "conditions": [
            _condition(deployment, "Available", "True" if enough else "False",
                       "MinimumReplicasAvailable" if enough else "MinimumReplicasUnavailable",
                       "Deployment has minimum availability." if enough
                       else "Deployment does not have minimum availability.", with_update_time=True),
            _condition(deployment, "Progressing", *progressing, with_update_time=True),
        ],
    }
    # The API server leaves out counts that are zero (`omitempty`).
    return {key: value for key, value in status.items() if value != 0}
