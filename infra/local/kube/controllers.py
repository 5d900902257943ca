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
  600 by default). **Missing Secrets**: a container (or init container)
  whose environment names a Secret that is not in the pod's namespace
  (`env[].valueFrom.secretKeyRef` or `envFrom[].secretRef`, unless
  `optional: true`) cannot be configured: its pods are made but stay
  `Pending`, the container waiting with reason `CreateContainerConfigError`
  and kubelet's message `secret "<name>" not found`, or `couldn't find key
  <key> in Secret <namespace>/<name>` when the Secret lacks the key of a
  `secretKeyRef` (an init container that waits holds back the later ones
  and every container: `PodInitializing`, `Initialized` False). The kubelet
  pulls the image before it makes the container's configuration, so an
  unpullable image is what such a container reports. When a Secret is
  written (by an ExternalSecret's sync or a client's apply), after
  RETRY_SECONDS the pods of the namespace's Deployments that wait for one
  are retried, as the kubelet retries them: they keep their names and
  start (Running) if nothing is missing any more, the older pods are
  dropped and the Deployment becomes `Available`. Secret volumes,
  ConfigMap references and the kubelet's back-off are not played. Pods
  name the Deployment in `ownerReferences` (in EKS they name its
  ReplicaSet), so deleting the Deployment deletes them.
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
RETRY_SECONDS = 0.5
CONFIG_ERROR = "CreateContainerConfigError"
UNPULLABLE_SUFFIX = "-unpullable"
PLACEHOLDER = "pao-local-placeholder-not-a-secret"
MANAGED_LABEL = "reconcile.external-secrets.io/managed"
POD_NAME_LETTERS = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes draws generated name suffixes from


class Controllers:
    def __init__(self, store: Store):
        self.store = store

    def applied(self, cluster: str, resource: Resource, obj: Object, spec_changed: bool) -> None:
        if resource is SECRETS:  # no spec: any write may bring what a pod waits for
            self._secret_written(cluster, obj["metadata"]["namespace"])
            return
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
            template_hash = _template_hash(deployment["spec"]["template"])
            secrets = self._secrets(cluster, deployment["metadata"]["namespace"])
            current = [pod for pod in self.store.owned_by(cluster, deployment["metadata"]["uid"])
                       if _hash_of(pod) == template_hash]
            wanted = deployment["spec"]["replicas"]
            for pod in current[wanted:]:
                self.store.remove(cluster, PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
            for pod in current[:wanted]:
                self._retry_pod(cluster, pod, secrets)
            for _ in range(wanted - len(current)):
                self.store.save(cluster, PODS, _pod(deployment, template_hash, secrets))
            self._drop_stale(cluster, deployment, secrets)
            self._set_status(cluster, deployment, timed_out=False)

    def _drop_stale(self, cluster: str, deployment: Object, secrets: dict[str, set[str]]) -> None:
        """A rollout whose pods start replaces every older pod; one whose pods
        cannot keeps the older pods that run and drops those that never started."""
        namespace, template = deployment["metadata"]["namespace"], deployment["spec"]["template"]
        template_hash = _template_hash(template)
        starts = not any(_problem(c, namespace, secrets) for c in _containers(template))
        for pod in self.store.owned_by(cluster, deployment["metadata"]["uid"]):
            if _hash_of(pod) != template_hash and (starts or pod["status"]["phase"] != "Running"):
                self.store.remove(cluster, PODS, namespace, pod["metadata"]["name"])

    def _secret_written(self, cluster: str, namespace: str) -> None:
        self._later(RETRY_SECONDS, self._retry_waiting, cluster, namespace)

    def _retry_waiting(self, cluster: str, namespace: str) -> None:
        """After a Secret is written: the pods of the current template of each
        Deployment that wait for a Secret are retried, and the rollout
        finishes if they start."""
        with self.store.lock:
            secrets = self._secrets(cluster, namespace)
            deployments, _ = self.store.list(cluster, DEPLOYMENTS, namespace, lambda _: True)
            for deployment in deployments:
                template_hash = _template_hash(deployment["spec"]["template"])
                waiting = [pod for pod in self.store.owned_by(cluster, deployment["metadata"]["uid"])
                           if _hash_of(pod) == template_hash and _waits_for_config(pod)]
                if not any([self._retry_pod(cluster, pod, secrets) for pod in waiting]):
                    continue
                self._drop_stale(cluster, deployment, secrets)
                timed_out = _condition_of(deployment, "Progressing").get("reason") == "ProgressDeadlineExceeded"
                self._set_status(cluster, deployment, timed_out)

    def _retry_pod(self, cluster: str, pod: Object, secrets: dict[str, set[str]]) -> bool:
        """The kubelet's retry of a pod whose containers wait for a Secret: whether anything changed."""
        if not _waits_for_config(pod):
            return False
        status = _pod_status(pod["spec"], pod["metadata"]["namespace"], secrets, now(), pod["status"])
        if status == pod["status"]:
            return False
        pod["status"] = status
        self.store.save(cluster, PODS, pod)
        return True

    def _secrets(self, cluster: str, namespace: str) -> dict[str, set[str]]:
        """The namespace's Secrets and their keys (`stringData` too: the API server folds it into `data`)."""
        found, _ = self.store.list(cluster, SECRETS, namespace, lambda _: True)
        return {secret["metadata"]["name"]: {*(secret.get("data") or {}), *(secret.get("stringData") or {})}
                for secret in found}

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
        self._secret_written(cluster, metadata["namespace"])
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
    previous = _condition_of(obj, kind)
    since = previous["lastTransitionTime"] if previous.get("status") == status else now()
    condition = {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    if with_update_time:
        condition["lastUpdateTime"] = now()
    return condition


def _condition_of(obj: Object, kind: str) -> dict[str, str]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


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


def _pod(deployment: Object, template_hash: str, secrets: dict[str, set[str]]) -> Object:
    metadata, template = deployment["metadata"], deployment["spec"]["template"]
    suffix = "".join(random.choices(POD_NAME_LETTERS, k=5))
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
        "status": _pod_status(template["spec"], metadata["namespace"], secrets, now()),
    }


def _pod_status(spec: Object, namespace: str, secrets: dict[str, set[str]], at: str,
                previous: Object | None = None) -> Object:
    """What the kubelet reports of a pod at `at`: init containers run one after
    the other, then the containers; one that cannot start waits, and holds
    back what comes after it. `previous`: the pod's status before a retry,
    whose containers that ran keep their state and whose conditions keep
    their times while they hold."""
    before = {(kind, status["name"]): status for kind in ("initContainerStatuses", "containerStatuses")
              for status in (previous or {}).get(kind, [])}

    def kept(kind: str, status: Object) -> Object:
        old = before.get((kind, status["name"]))
        return old if old is not None and ("running" in old["state"] or "terminated" in old["state"]) else status

    inits, blocked = [], False
    for container in spec.get("initContainers", []):
        problem = None if blocked else _problem(container, namespace, secrets)
        if blocked:
            inits.append(_waiting(container, "PodInitializing"))
        elif problem:
            inits.append(_waiting(container, *problem))
            blocked = True
        else:
            inits.append(kept("initContainerStatuses", _completed(container, at)))
    containers = [_waiting(container, "PodInitializing") if blocked
                  else kept("containerStatuses", _container_status(container, namespace, secrets, at))
                  for container in spec.get("containers", [])]
    incomplete = [status["name"] for status in inits if "terminated" not in status["state"]]
    unready = [status["name"] for status in containers if not status["ready"]]
    why = {
        "Initialized": {"reason": "ContainersNotInitialized",
                        "message": f"containers with incomplete status: [{' '.join(incomplete)}]"},
        "ContainersReady": {"reason": "ContainersNotReady",
                            "message": f"containers with unready status: [{' '.join(unready)}]"},
    }
    why["Ready"] = why["ContainersReady"]
    conditions = []
    for kind, holds in (("PodScheduled", True), ("Initialized", not incomplete),
                        ("ContainersReady", not unready), ("Ready", not unready)):
        status = "True" if holds else "False"
        old = _condition_of({"status": previous or {}}, kind)
        since = old["lastTransitionTime"] if old.get("status") == status else at
        conditions.append({"type": kind, "status": status, "lastTransitionTime": since,
                           **({} if holds else why[kind])})
    found = {"phase": "Pending" if incomplete or unready else "Running", "conditions": conditions,
             "startTime": (previous or {}).get("startTime", at)}
    if inits:
        found["initContainerStatuses"] = inits
    found["containerStatuses"] = containers
    return found


def _problem(container: Object, namespace: str, secrets: dict[str, set[str]]) -> tuple[str, str] | None:
    """Why the kubelet cannot start the container, as a reason and a message, or None.

    The real kubelet's order (kuberuntime's startContainer): it pulls the
    image first (ErrImagePull, then ImagePullBackOff while it waits to try
    again), and only then generates the container's configuration, where
    its environment is read from Secrets (CreateContainerConfigError). So
    an image that cannot be pulled is what a container reports even when a
    Secret it needs is missing too."""
    image = container.get("image", "")
    if _unpullable(image):
        return "ImagePullBackOff", f'Back-off pulling image "{image}"'
    missing = _missing_secret(container, namespace, secrets)
    return (CONFIG_ERROR, missing) if missing else None


def _missing_secret(container: Object, namespace: str, secrets: dict[str, set[str]]) -> str | None:
    """The kubelet's message for the first Secret or key the container's
    environment lacks, in its order (envFrom, then env), or None;
    `optional: true` references are skipped when what they name is missing."""
    for source in container.get("envFrom") or []:
        ref = source.get("secretRef")
        if ref is not None and not ref.get("optional") and ref.get("name", "") not in secrets:
            return f'secret "{ref.get("name", "")}" not found'
    for variable in container.get("env") or []:
        ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None or ref.get("optional"):
            continue
        name, key = ref.get("name", ""), ref.get("key", "")
        if name not in secrets:
            return f'secret "{name}" not found'
        if key not in secrets[name]:
            return f"couldn't find key {key} in Secret {namespace}/{name}"
    return None


def _waits_for_config(pod: Object) -> bool:
    status = pod["status"]
    return any(container["state"].get("waiting", {}).get("reason") == CONFIG_ERROR
               for container in status.get("initContainerStatuses", []) + status.get("containerStatuses", []))


def _base_status(container: Object) -> Object:
    return {"name": container["name"], "image": container.get("image", ""), "imageID": "", "restartCount": 0}


def _waiting(container: Object, reason: str, message: str | None = None) -> Object:
    waiting = {"reason": reason, **({"message": message} if message else {})}
    return {**_base_status(container), "ready": False, "started": False, "state": {"waiting": waiting}}


def _completed(container: Object, at: str) -> Object:
    """An init container that ran and exited 0."""
    done = {"exitCode": 0, "reason": "Completed", "startedAt": at, "finishedAt": at}
    return {**_base_status(container), "ready": True, "started": False, "state": {"terminated": done}}


def _container_status(container: Object, namespace: str, secrets: dict[str, set[str]], at: str) -> Object:
    problem = _problem(container, namespace, secrets)
    if problem:
        return _waiting(container, *problem)
    return {**_base_status(container), "ready": True, "started": True, "state": {"running": {"startedAt": at}}}


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
