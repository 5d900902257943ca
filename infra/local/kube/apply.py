"""Server-side apply as the stand-in does it.

A field manager states the fields it wants; the object keeps, per manager,
the fields it stated (`metadata.managedFields`, one `Apply` entry per
manager). Applying again sets what is stated, removes what the manager
stated before and no longer does (unless another manager also states it),
and leaves every other field alone. Stating a field another manager owns,
with a different value, is a conflict: 409 unless `force`, which takes the
field over.

Simplified against the API server: lists are atomic (replaced whole,
owned as one field; the API server merges lists of containers, ports and
the like by key), so `fieldsV1` names a list but none of its items; it has
no `.` entries for maps. Nothing else in the object changes it.
"""

from __future__ import annotations

import copy
from typing import Any

from kube.resources import Resource
from kube.status import bad_request, conflict

Path = tuple[str, ...]
# Set by the API server alone; an apply that states them is not taken to own them.
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "selfLink", "managedFields")


def checked(resource: Resource, namespace: str, name: str, config: Any) -> dict[str, Any]:
    """The applied configuration, with its name and namespace, once it
    agrees with the request as the API server insists (else 400)."""
    if not isinstance(config, dict):
        raise bad_request("the apply patch is not a YAML or JSON object")
    if config.get("apiVersion") != resource.api_version:
        raise bad_request("Incorrect version specified in apply patch. Specified patch version: "
                          f"{config.get('apiVersion') or ''}, expected: {resource.api_version}")
    if config.get("kind") != resource.kind:
        raise bad_request("Incorrect kind specified in apply patch. Specified patch kind: "
                          f"{config.get('kind') or ''}, expected: {resource.kind}")
    metadata = config.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise bad_request("metadata in the apply patch is not an object")
    if metadata.setdefault("name", name) != name:
        raise bad_request(f"the name of the object ({metadata['name']}) does not match the name on the URL ({name})")
    if not resource.namespaced:
        metadata.pop("namespace", None)
    elif metadata.setdefault("namespace", namespace) != namespace:
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    if metadata.get("managedFields"):
        raise bad_request("metadata.managedFields must be nil")
    return config


def applied(resource: Resource, live: dict[str, Any] | None, config: dict[str, Any], manager: str, force: bool,
            now: str) -> dict[str, Any]:
    """The object once `manager` has applied `config` to `live` (None when it does not exist yet)."""
    stated = _stated(config)
    wanted = _leaves(stated)
    entries = {entry["manager"]: entry for entry in (live or {}).get("metadata", {}).get("managedFields", [])}
    owned = {other: _paths(entry.get("fieldsV1", {})) for other, entry in entries.items()}
    conflicts = sorted((other, path) for other, paths in owned.items() if other != manager
                       for path in paths & wanted.keys() if _lookup(live, path) != wanted[path])
    if conflicts and not force:
        raise _conflict(resource, config["metadata"]["name"], conflicts)
    for other, path in conflicts:
        owned[other].discard(path)

    result = copy.deepcopy(live) if live else {"apiVersion": config["apiVersion"], "kind": config["kind"],
                                                "metadata": {}}
    others = set().union(*(paths for other, paths in owned.items() if other != manager))
    for path in owned.get(manager, set()) - wanted.keys() - others:
        _remove(result, path)
    _merge(result, stated)
    metadata = result["metadata"]
    metadata.update({key: config["metadata"][key] for key in ("name", "namespace") if key in config["metadata"]})
    owned[manager] = set(wanted)
    # A manager that owns nothing has no entry, and an object no manager owns anything of has none at all.
    metadata.pop("managedFields", None)
    managed = [_entry(entries.get(who), who, paths, config["apiVersion"], now) for who, paths in owned.items() if paths]
    if managed:
        metadata["managedFields"] = managed
    return result


def _stated(config: dict[str, Any]) -> dict[str, Any]:
    """What a manager states: not the identity, not what only the server sets, not status."""
    stated = {key: copy.deepcopy(value) for key, value in config.items() if key not in ("apiVersion", "kind", "status")}
    metadata = {key: value for key, value in stated.pop("metadata").items()
                if key not in ("name", "namespace", *SERVER_METADATA)}
    if metadata:
        stated["metadata"] = metadata
    return stated


def _leaves(tree: dict[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    found: dict[Path, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            found.update(_leaves(value, (*prefix, key)))
        else:
            found[(*prefix, key)] = value
    return found


def _fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def _paths(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    found: set[Path] = set()
    for key, value in fields.items():
        path = (*prefix, key.removeprefix("f:"))
        found |= _paths(value, path) if value else {path}
    return found


def _entry(previous: dict[str, Any] | None, manager: str, paths: set[Path], api_version: str,
           now: str) -> dict[str, Any]:
    fields = _fields_v1(paths)
    if previous is not None and previous.get("fieldsV1") == fields:
        return previous
    return {"manager": manager, "operation": previous["operation"] if previous else "Apply",
            "apiVersion": api_version, "time": now, "fieldsType": "FieldsV1", "fieldsV1": fields}


def _lookup(tree: dict[str, Any] | None, path: Path) -> Any:
    node: Any = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _remove(tree: dict[str, Any], path: Path) -> None:
    """Removes a field, and the maps left empty above it."""
    parents = [tree]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for parent, key in reversed(list(zip(parents[:-1], path[:-1]))):
        if parent[key]:
            break
        del parent[key]


def _merge(into: dict[str, Any], stated: dict[str, Any]) -> None:
    for key, value in stated.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _conflict(resource: Resource, name: str, conflicts: list[tuple[str, Path]]):
    causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{other}" using {resource.api_version}',
               "field": "." + ".".join(path)} for other, path in conflicts]
    said = "; ".join(f"{cause['message']}: {cause['field']}" for cause in causes)
    count = f"{len(causes)} conflict" + ("s" if len(causes) > 1 else "")
    return conflict(resource, name, f"Apply failed with {count}: {said}", causes)
