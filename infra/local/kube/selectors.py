"""`labelSelector` and `fieldSelector` of list requests.

Label selectors: `k=v`, `k==v`, `k!=v`, `k` and `!k`, comma-separated (all
must hold). The set-based forms (`k in (a,b)`, `k notin (...)`) are refused
with 400 rather than misread. Field selectors: `path=v`, `path==v`,
`path!=v` on any dotted path (`metadata.name`, `status.phase`).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from kube.status import bad_request

Object = dict[str, Any]
REQUIREMENT = re.compile(r"^(!?)([A-Za-z0-9./_-]+)(?:\s*(==|=|!=)\s*([A-Za-z0-9._-]*))?$")


def matcher(label_selector: str, field_selector: str) -> Callable[[Object], bool]:
    labels = _requirements(label_selector, "labelSelector")
    fields = _requirements(field_selector, "fieldSelector")

    def matches(obj: Object) -> bool:
        own = obj["metadata"].get("labels") or {}
        return (all(_holds(own.get(key), key in own, op, value) for key, op, value in labels)
                and all(_holds(_at(obj, path), _at(obj, path) is not None, op, value) for path, op, value in fields))

    return matches


def _requirements(selector: str, name: str) -> list[tuple[str, str, str]]:
    found = []
    for term in filter(None, (part.strip() for part in selector.split(","))):
        matched = REQUIREMENT.match(term)
        if matched is None:
            raise bad_request(f"unable to parse requirement: {name} {term!r}: the stand-in reads =, ==, != "
                              "and existence only")
        negated, key, op, value = matched.groups()
        if op is None:
            found.append((key, "!exists" if negated else "exists", ""))
        elif negated:
            raise bad_request(f"unable to parse requirement: {name} {term!r}")
        else:
            found.append((key, "!=" if op == "!=" else "=", value))
    return found


def _holds(actual: Any, present: bool, op: str, value: str) -> bool:
    if op == "exists":
        return present
    if op == "!exists":
        return not present
    equal = present and str(actual) == value
    return equal if op == "=" else not equal


def _at(obj: Object, path: str) -> Any:
    node: Any = obj
    for key in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node
