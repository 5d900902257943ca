"""What the API server checks in an object before it stores it, and the
`causes` it lists when the object fails.

Built-in kinds are checked against Kubernetes' own OpenAPI schemas, as
shipped by the PyPI package kubernetes-validate for KUBERNETES_VERSION, in
their strict form: server-side apply refuses fields the schema does not
declare. The package's `validate()` stops at the first error; the API
server lists them all, so its schema files are read here and every error is
collected. External Secrets Operator's kinds are checked against
external_secrets.schema.json (a subset of its CRDs). On top of the schemas,
two checks the API server makes in code: object names (RFC 1123) and a
Deployment's selector matching its pod template's labels.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import referencing

from kube.resources import CLUSTER_SECRET_STORES, DEPLOYMENTS, EXTERNAL_SECRETS, KUBERNETES_VERSION, \
    NAMESPACES, RESOURCES, Resource

SCHEMAS = files("kubernetes_validate") / "kubernetes-json-schema" / \
    f"v{KUBERNETES_VERSION}.0-local-strict"
EXTERNAL_SECRETS_SCHEMA = Path(__file__).with_name("external_secrets.schema.json")
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Names that must be RFC 1123 labels (DNS names of their own); the rest are subdomains.
LABEL_NAMED = {NAMESPACES.plural, "services"}


class Validator:
    def __init__(self) -> None:
        definitions = json.loads((SCHEMAS / "_definitions.json").read_text())
        operator = json.loads(EXTERNAL_SECRETS_SCHEMA.read_text())
        registry = referencing.Registry().with_resources([
            (definitions["$id"], referencing.Resource.from_contents(definitions)),
            (operator["$id"], referencing.Resource.from_contents(operator)),
        ])
        self.validators = {
            resource: jsonschema.Draft202012Validator(_schema(resource, operator["$id"]), registry=registry)
            for resource in RESOURCES if resource.applicable
        }

    def causes(self, resource: Resource, obj: dict[str, Any]) -> list[dict[str, str]]:
        """Everything wrong with `obj`, one cause per field, as `details.causes` lists them."""
        found = [cause for error in self.validators[resource].iter_errors(obj) for cause in _causes(error)]
        if not found:
            found = _name_causes(resource, obj["metadata"]["name"])
        if not found and resource is DEPLOYMENTS:
            found = _selector_causes(obj)
        unique = {(cause["field"], cause["message"]): cause for cause in found}
        return [unique[key] for key in sorted(unique)]


def _schema(resource: Resource, operator_id: str) -> dict[str, Any]:
    if resource in (EXTERNAL_SECRETS, CLUSTER_SECRET_STORES):
        return {"$ref": f"{operator_id}#/$defs/{resource.kind}"}
    # kubernetes-validate's file names: <kind>-<first label of the group>-<version>.json, no group for core.
    group = f"{resource.group.split('.')[0]}-" if resource.group else ""
    return json.loads((SCHEMAS / f"{resource.kind.lower()}-{group}{resource.version}.json").read_text())


def _field(path: Iterable[Any], last: str | None = None) -> str:
    field = ""
    for part in [*path, *([last] if last else [])]:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    return field


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _causes(error: jsonschema.ValidationError) -> list[dict[str, str]]:
    where = list(error.absolute_path)
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in error.instance]
        return [{"reason": "FieldValueRequired", "message": "Required value", "field": _field(where, name)}
                for name in missing]
    if error.validator == "additionalProperties":
        declared = error.schema.get("properties", {})
        return [{"reason": "FieldValueInvalid", "message": "field not declared in schema",
                 "field": _field(where, name)} for name in error.instance if name not in declared]
    if error.validator == "type":
        expected = [kind for kind in _listed(error.validator_value) if kind != "null"]
        return [{"reason": "FieldValueTypeInvalid", "field": _field(where),
                 "message": f"Invalid value: {_shown(error.instance)}: must be of type {' or '.join(expected)}"}]
    if error.validator == "enum":
        supported = ", ".join(json.dumps(value) for value in error.validator_value if value is not None)
        return [{"reason": "FieldValueNotSupported", "field": _field(where),
                 "message": f"Unsupported value: {_shown(error.instance)}: supported values: {supported}"}]
    return [{"reason": "FieldValueInvalid", "field": _field(where),
             "message": f"Invalid value: {_shown(error.instance)}: {error.message}"}]


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _name_causes(resource: Resource, name: str) -> list[dict[str, str]]:
    if resource.plural in LABEL_NAMED:
        if len(name) <= 63 and LABEL.fullmatch(name):
            return []
        rule = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                "and must start and end with an alphanumeric character, at most 63 characters")
    else:
        if len(name) <= 253 and SUBDOMAIN.fullmatch(name):
            return []
        rule = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character, at most 253 characters")
    return [{"reason": "FieldValueInvalid", "field": "metadata.name",
             "message": f"Invalid value: {json.dumps(name)}: {rule}"}]


def _selector_causes(deployment: dict[str, Any]) -> list[dict[str, str]]:
    spec = deployment["spec"]
    wanted = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if all(labels.get(key) == value for key, value in wanted.items()):
        return []
    return [{"reason": "FieldValueInvalid", "field": "spec.template.metadata.labels",
             "message": f"Invalid value: {_shown(labels)}: `selector` does not match template `labels`"}]
