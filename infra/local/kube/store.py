"""The objects of every cluster, in memory, behind one lock.

Each cluster (the name in `/clusters/<name>/`) gets its objects, the
namespaces a new EKS cluster has, and what the platform's bootstrap
installs (bootstrap.py: the add-ons the store is given, each stored as an
apply by its field manager) the first time it is addressed. Every
write moves one counter shared by all clusters, and an object's
`resourceVersion` is that counter when it was last written. An object's
`generation` starts at 1 and moves when its `spec` changes.

What the API server does beside storing, done here too: the defaults
PAO's objects meet (a Deployment's replicas, a namespace's finalizer,
phase and name label), validation (validation.py) of the object as it
will be stored, refusing new objects in a namespace that does not exist
(404) or is terminating (403), namespaces that go `Terminating` when
deleted (the controllers purge them), and garbage collection: deleting an
object deletes, at once, every object whose `ownerReferences` name it.
Nothing is kept when the process stops.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from typing import Any, Callable, Sequence

from kube import apply
from kube.resources import DEPLOYMENTS, NAMESPACES, Resource
from kube.status import conflict, forbidden, invalid, not_found
from kube.validation import Validator

SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
UNDELETABLE_NAMESPACES = ("default", "kube-public", "kube-system")
DEFAULTS = {
    DEPLOYMENTS: {"spec": {"replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}},
    NAMESPACES: {"spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
}

Key = tuple[Resource, str, str]  # resource, namespace ("" for cluster-scoped objects), name
Object = dict[str, Any]
# An object every cluster holds from the start: its resource, the field manager that applied it, and what it
# applied (with the status its controller wrote).
Addon = tuple[Resource, str, Object]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Store:
    def __init__(self, validator: Validator, addons: Sequence[Addon] = ()):
        """`addons`: what every cluster holds from its first request on (ValueError when one is invalid)."""
        # Controllers hold it across several calls to change objects together.
        self.lock = threading.RLock()
        self.validator = validator
        self.addons = list(addons)
        for resource, manager, config in self.addons:
            causes = validator.causes(resource, _installed(resource, manager, config))
            if causes:
                said = "; ".join(f"{cause['field']}: {cause['message']}" for cause in causes)
                raise ValueError(f"the add-on {resource.kind} {config['metadata']['name']!r} is invalid: {said}")
        self._clusters: dict[str, dict[Key, Object]] = {}
        self._version = 0

    # ------------------------------------------------------------ what clients do
    def get(self, cluster: str, resource: Resource, namespace: str, name: str) -> Object:
        with self.lock:
            found = self._objects(cluster).get((resource, namespace, name))
            if found is None:
                raise not_found(resource, name)
            return copy.deepcopy(found)

    def list(self, cluster: str, resource: Resource, namespace: str | None,
             matches: Callable[[Object], bool]) -> tuple[list[Object], str]:
        """The matching objects (of every namespace when `namespace` is None) and the current version."""
        with self.lock:
            found = [copy.deepcopy(obj) for (kind, ns, _), obj in self._objects(cluster).items()
                     if kind is resource and namespace in (None, ns) and matches(obj)]
            return sorted(found, key=_place), str(self._version)

    def apply(self, cluster: str, resource: Resource, namespace: str, name: str, config: Object, manager: str,
              force: bool) -> tuple[Object, bool, bool]:
        """The object after the apply, whether it was created, and whether its spec changed."""
        with self.lock:
            objects = self._objects(cluster)
            key = (resource, namespace, name)
            live = objects.get(key)
            if resource.namespaced:
                _check_namespace(objects, resource, namespace, name, creating=live is None)
            result = _defaulted(resource, apply.applied(resource, live, config, manager, force, now()))
            causes = self.validator.causes(resource, result)
            if causes:
                raise invalid(resource, name, causes)
            if result == live:
                return copy.deepcopy(live), False, False
            spec_changed = live is None or result.get("spec") != live.get("spec")
            metadata = result["metadata"]
            if live is None:
                metadata.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            elif spec_changed:
                metadata["generation"] = live["metadata"]["generation"] + 1
            self._write(objects, key, result)
            return copy.deepcopy(result), live is None, spec_changed

    def delete(self, cluster: str, resource: Resource, namespace: str, name: str) -> Object:
        """The object as it was deleted: a namespace stays, Terminating, until the controllers purge it."""
        with self.lock:
            objects = self._objects(cluster)
            key = (resource, namespace, name)
            found = objects.get(key)
            if found is None:
                raise not_found(resource, name)
            if resource is not NAMESPACES:
                self._remove(objects, key)
                return copy.deepcopy(found)
            if name in UNDELETABLE_NAMESPACES:
                raise forbidden(NAMESPACES, name, "this namespace may not be deleted")
            if found["metadata"].get("deletionTimestamp"):
                raise conflict(NAMESPACES, name, f'Operation cannot be fulfilled on namespaces "{name}": The system '
                               "is ensuring all content is removed from this namespace.  Upon completion, this "
                               "namespace will automatically be purged by the system.")
            terminating = copy.deepcopy(found)
            terminating["metadata"]["deletionTimestamp"] = now()
            terminating["status"]["phase"] = "Terminating"
            self._write(objects, key, terminating)
            return copy.deepcopy(terminating)

    def snapshot(self, cluster: str | None = None) -> dict[str, list[Object]]:
        with self.lock:
            names = [cluster] if cluster is not None else sorted(self._clusters)
            return {name: sorted((copy.deepcopy(obj) for obj in self._objects(name).values()), key=_place)
                    for name in names}

    # ------------------------------------------------------------ what controllers do
    def find(self, cluster: str, resource: Resource, namespace: str, name: str) -> Object | None:
        with self.lock:
            found = self._objects(cluster).get((resource, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def owned_by(self, cluster: str, uid: str) -> list[Object]:
        with self.lock:
            return sorted((copy.deepcopy(obj) for obj in self._objects(cluster).values() if _owned(obj, uid)),
                          key=_place)

    def save(self, cluster: str, resource: Resource, obj: Object) -> None:
        """Creates or replaces an object; unchanged, it is not written again."""
        with self.lock:
            objects = self._objects(cluster)
            metadata = obj["metadata"]
            key = (resource, metadata.get("namespace", ""), metadata["name"])
            if objects.get(key) == obj:
                return
            saved = copy.deepcopy(obj)
            if "uid" not in metadata:
                saved["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now())
            self._write(objects, key, saved)

    def remove(self, cluster: str, resource: Resource, namespace: str, name: str) -> None:
        with self.lock:
            objects = self._objects(cluster)
            if (resource, namespace, name) in objects:
                self._remove(objects, (resource, namespace, name))

    def purge_namespace(self, cluster: str, name: str, uid: str) -> None:
        """Everything in a terminating namespace, then the namespace."""
        with self.lock:
            objects = self._objects(cluster)
            namespace = objects.get((NAMESPACES, "", name))
            if namespace is None or namespace["metadata"]["uid"] != uid:
                return
            for key in [key for key in objects if key[1] == name]:
                if key in objects:
                    self._remove(objects, key)
            self._remove(objects, (NAMESPACES, "", name))

    # ------------------------------------------------------------ inside
    def _objects(self, cluster: str) -> dict[Key, Object]:
        if cluster not in self._clusters:
            self._clusters[cluster] = {}
            for name in SYSTEM_NAMESPACES:
                namespace = {"apiVersion": "v1", "kind": "Namespace",
                             "metadata": {"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": now(),
                                          "generation": 1, "labels": {"kubernetes.io/metadata.name": name}}}
                _with_defaults(namespace, DEFAULTS[NAMESPACES])
                self._write(self._clusters[cluster], (NAMESPACES, "", name), namespace)
            for resource, manager, config in self.addons:
                installed = _installed(resource, manager, config)
                metadata = installed["metadata"]
                metadata.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
                self._write(self._clusters[cluster], (resource, metadata.get("namespace", ""), metadata["name"]),
                            installed)
        return self._clusters[cluster]

    def _write(self, objects: dict[Key, Object], key: Key, obj: Object) -> None:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        objects[key] = obj

    def _remove(self, objects: dict[Key, Object], key: Key) -> None:
        """Removes an object and, as the garbage collector would, what it owns."""
        removed = objects.pop(key)
        self._version += 1
        uid = removed["metadata"]["uid"]
        for dependent in [other for other, obj in objects.items() if _owned(obj, uid)]:
            if dependent in objects:
                self._remove(objects, dependent)


def _check_namespace(objects: dict[Key, Object], resource: Resource, namespace: str, name: str,
                     creating: bool) -> None:
    found = objects.get((NAMESPACES, "", namespace))
    if found is None:
        raise not_found(NAMESPACES, namespace)
    if creating and found["metadata"].get("deletionTimestamp"):
        why = f"unable to create new content in namespace {namespace} because it is being terminated"
        raise forbidden(resource, name, why, [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                               "message": f"namespace {namespace} is being terminated"}])


def _defaulted(resource: Resource, obj: Object) -> Object:
    """`obj` with what the API server adds to every object of its kind."""
    _with_defaults(obj, DEFAULTS.get(resource, {}))
    if resource is NAMESPACES:
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    return obj


def _installed(resource: Resource, manager: str, config: Object) -> Object:
    """An add-on as its manager's apply leaves it, with the status its controller wrote (its conditions
    dated now, when the cluster gets it)."""
    at = now()
    installed = _defaulted(resource, apply.applied(resource, None, copy.deepcopy(config), manager, False, at))
    if "status" in config:
        installed["status"] = copy.deepcopy(config["status"])
        for condition in installed["status"].get("conditions", []):
            condition["lastTransitionTime"] = at
    return installed


def _with_defaults(obj: Object, defaults: dict[str, Any]) -> None:
    for key, value in defaults.items():
        if isinstance(value, dict):
            child = obj.setdefault(key, {})
            if isinstance(child, dict):  # anything else is left for validation to refuse
                _with_defaults(child, value)
        else:
            obj.setdefault(key, copy.deepcopy(value))


def _owned(obj: Object, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


def _place(obj: Object) -> tuple[str, str, str, str]:
    metadata = obj["metadata"]
    return obj["apiVersion"], obj["kind"], metadata.get("namespace", ""), metadata["name"]
