"""A stateful stand-in for the part of the HCP Terraform / Terraform
Enterprise API (v2, JSON:API) that makes workspaces, sets their variables,
runs plans and applies, and reads what they left in state; served by
fake_services.py under /terraform (PAO's Terraform base URL is then
http://127.0.0.1:<port>/terraform, and every path below follows it:
/terraform/api/v2/...). It checks what HCP Terraform checks: the token, and
what a caller sends. Answers are JSON:API documents
(`Content-Type: application/vnd.api+json`); errors are
{"errors": [{"status": "<code>", "title": ..., "detail": ...}]}.

Authentication
  Every route takes `Authorization: Bearer <token>` with the token in
  PAO_TFC_TOKEN; anything else (or no PAO_TFC_TOKEN at all) is 401
  {"errors": [{"status": "401", "title": "unauthorized"}]}. Something the
  token may not see, or that is not there, is 404
  {"errors": [{"status": "404", "title": "not found"}]}, as HCP Terraform
  answers both.

Workspaces
    GET    /api/v2/organizations/{org}/workspaces            the org's workspaces
    POST   /api/v2/organizations/{org}/workspaces            201; 422 "Name has
           already been taken" {"data": {"type": "workspaces", "attributes":
           {"name", "auto-apply", "working-directory", "vcs-repo":
           {"identifier": "org/repo", "branch", "oauth-token-id"}}}}
    GET    /api/v2/organizations/{org}/workspaces/{name}
    DELETE /api/v2/organizations/{org}/workspaces/{name}     204
    GET    /api/v2/workspaces/{ws-id}        DELETE /api/v2/workspaces/{ws-id}
  Any organization exists but one whose name starts with `missing` (404).
  A workspace whose name starts with `existing-` is there from the start (a
  platform team's pre-made workspace): found by name though never created,
  with no variables and no state, until it is deleted.

Variables
    GET    /api/v2/workspaces/{ws-id}/vars                   `value` null when sensitive
    POST   /api/v2/workspaces/{ws-id}/vars                   201; 422 if the key is
           taken in that category {"data": {"type": "vars", "attributes":
           {"key", "value", "category": "terraform"|"env", "hcl", "sensitive",
           "description"}}}
    PATCH  /api/v2/workspaces/{ws-id}/vars/{var-id}          200 (a sensitive
           variable stays sensitive: 422)
    DELETE /api/v2/workspaces/{ws-id}/vars/{var-id}          204

Runs
    POST /api/v2/runs   201 {"data": {"type": "runs", "attributes": {"message",
         "auto-apply", "is-destroy", "variables": [{"key", "value"}]},
         "relationships": {"workspace": {"data": {"type": "workspaces", "id"}}}}}
    GET  /api/v2/runs/{run-id}            GET /api/v2/workspaces/{ws-id}/runs
    POST /api/v2/runs/{run-id}/actions/apply         202 while planned and not
         auto-applied (confirmable)
    POST /api/v2/runs/{run-id}/actions/discard       202 while pending or
         confirmable: `discarded`
    POST /api/v2/runs/{run-id}/actions/cancel        202 while planning or
         applying: `canceled`
    POST /api/v2/runs/{run-id}/actions/force-cancel  202 while planning or
         applying: `force_canceled`
  An action the run's status does not allow is 409 "transition not allowed".
  A run plans with the workspace's variables as they are when it is created
  (and its own run-specific ones over them) and moves on its own, in
  seconds from its creation: `pending`, `planning` at 0.5, `planned` at 1.5;
  then, with auto-apply (the run's, else the workspace's), `applying` at
  1.75 and `applied` at 3; without, it waits in `planned`
  (actions.is-confirmable) until the apply action: `confirmed` at once,
  `applying` 0.25 s later, `applied` 1.25 s after that. An applied run that
  is not a destroy makes the workspace's new current state version, whose
  outputs are the run's terraform-category variables (same name; the value
  as a string, or parsed as JSON when `hcl` is true and the value is JSON;
  sensitive when the variable is) and `workspace_id`; an applied destroy
  makes one with no outputs.

State
    GET /api/v2/workspaces/{ws-id}/current-state-version          404 before an apply
    GET /api/v2/workspaces/{ws-id}/current-state-version-outputs  `value` null
        for sensitive outputs, as HCP Terraform lists them
    GET /api/v2/state-versions/{sv-id}    GET /api/v2/state-versions/{sv-id}/outputs
    GET /api/v2/state-version-outputs/{wsout-id}   one output, its value shown
        even when sensitive (as for a token that may read state)

Levers (for the demo and the tests; chosen by the values of the workspace's
terraform-category variables when the run is created)
  - a value ending in `-fail`: the plan errors (`planning` -> `errored`)
  - ending in `-policy`: `planned`, `policy_checking`, then
    `policy_soft_failed` (a soft-mandatory policy failed; final here)
  - ending in `-slow`: planning and applying each take 20 s (to cancel)
  - ending in `-ratelimited`: the first POST /api/v2/runs on that workspace
    is 429 {"errors": [{"status": "429", "title": "Too many requests"}]}
    with x-ratelimit-limit 30, x-ratelimit-remaining 0, x-ratelimit-reset 1.5
    (seconds, as HCP Terraform sends it) and Retry-After 2; the next is taken
  -fail wins over -policy; -slow goes with either.

Simplified: no configuration versions (every workspace has a configuration
to run), plans, applies, logs, locks, projects, tags, teams, policies,
run tasks or variable sets; runs on one workspace do not queue behind each
other; a plan always has changes; a cancel takes effect at once, and
force-cancel does not wait for a cancel and its cool-off as HCP Terraform
does; a soft-failed policy ends the run (`policy_soft_failed`, which HCP
Terraform keeps for plan-only runs; an applyable run there would wait in
`policy_override`); no pagination (every list is one page); request
bodies are JSON whatever their Content-Type. Every answer carries
x-ratelimit-limit (30), -remaining and -reset (seconds to the end of the
current one-second window) for one budget per credential, counted but only
ever exhausted by the lever. Links are relative to the host ("/api/v2/...",
"/app/..."), as HCP Terraform writes them. The token is compared and never
kept; sensitive values are kept in memory only, and nothing here records a
header or a body.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import string
import threading
import time
from typing import Any

PREFIX = "/terraform"
API = "/api/v2"
JSON_API = "application/vnd.api+json"
RATE_LIMIT = 30
RATE_WINDOW_SECONDS = 1.0
RATE_LIMITED_RESET = "1.5"
RATE_LIMITED_RETRY_AFTER = "2"
PENDING_SECONDS = 0.5
PLAN_SECONDS = 1.0
CONFIRM_SECONDS = 0.25
APPLY_SECONDS = 1.25
SLOW_SECONDS = 20.0
TERRAFORM_VERSION = "1.9.8"
DEFAULT_MESSAGE = "Queued manually via the Terraform Enterprise API"
EXISTING_CREATED_AT = 1767603600.0  # 2026-01-05T09:00:00Z, before any stack
ID_ALPHABET = string.ascii_letters + string.digits
NAME = re.compile(r"[A-Za-z0-9_-]{1,90}")
ID = r"[A-Za-z0-9]+"
FINAL = {"applied", "errored", "discarded", "canceled", "force_canceled", "policy_soft_failed",
         "planned_and_finished"}

Answer = tuple[int, Any, dict[str, str]]


def new_id(prefix: str) -> str:
    return prefix + "-" + "".join(secrets.choice(ID_ALPHABET) for _ in range(16))


def stable_id(prefix: str, text: str) -> str:
    """The same id for the same name, across restarts too (pre-made workspaces)."""
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")
    chars = []
    for _ in range(16):
        number, digit = divmod(number, len(ID_ALPHABET))
        chars.append(ID_ALPHABET[digit])
    return prefix + "-" + "".join(chars)


def iso_ms(moment: float) -> str:
    """created-at, as HCP Terraform writes it: 2026-01-05T09:00:00.123Z."""
    at = datetime.datetime.fromtimestamp(moment, datetime.timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def iso_offset(moment: float) -> str:
    """status-timestamps, as HCP Terraform writes them: 2026-01-05T09:00:00+00:00."""
    return datetime.datetime.fromtimestamp(int(moment), datetime.timezone.utc).isoformat()


def error(status: int, title: str, detail: str | None = None, pointer: str | None = None) -> tuple[int, dict]:
    item: dict[str, Any] = {"status": str(status), "title": title}
    if detail is not None:
        item["detail"] = detail
    if pointer is not None:
        item["source"] = {"pointer": pointer}
    return status, {"errors": [item]}


NOT_FOUND = error(404, "not found")
UNAUTHORIZED = error(401, "unauthorized")


def invalid(detail: str, pointer: str | None = None) -> tuple[int, dict]:
    return error(422, "invalid attribute", detail, pointer)


def transition(detail: str) -> tuple[int, dict]:
    return error(409, "transition not allowed", detail)


def output_types(value: Any) -> tuple[str, Any]:
    """(type, detailed-type) of an output value, as HCP Terraform shows them."""
    def detailed(item: Any) -> Any:
        if isinstance(item, bool):
            return "bool"
        if isinstance(item, (int, float)):
            return "number"
        if isinstance(item, str):
            return "string"
        if isinstance(item, list):
            return ["tuple", [detailed(x) for x in item]]
        if isinstance(item, dict):
            return ["object", {k: detailed(v) for k, v in item.items()}]
        return "dynamic"

    kind = ("boolean" if isinstance(value, bool) else "number" if isinstance(value, (int, float))
            else "string" if isinstance(value, str) else "array" if isinstance(value, list)
            else "object" if isinstance(value, dict) else "null")
    return kind, detailed(value)


def lever(values: list[str]) -> tuple[str, bool]:
    """(outcome, slow) chosen by the variables' values: -fail over -policy."""
    outcome = ("fail" if any(v.endswith("-fail") for v in values)
               else "policy" if any(v.endswith("-policy") for v in values) else "success")
    return outcome, any(v.endswith("-slow") for v in values)


class Terraform:
    def __init__(self, token: str | None):
        self.lock = threading.Lock()
        self.token = token
        self.workspaces: dict[str, dict] = {}          # id -> workspace (deleted ones kept, marked)
        self.by_name: dict[tuple[str, str], str] = {}  # (org, name) -> id of the latest
        self.runs: dict[str, dict] = {}
        self.state_versions: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        self.rate_limited: set[str] = set()            # workspaces whose first run was refused
        self.budgets: dict[str, dict] = {}

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ) -> Terraform:
        return cls(env.get("PAO_TFC_TOKEN") or None)

    # ------------------------------------------------------------ routing
    def handle(self, method: str, target: str, headers: Any, raw: bytes) -> Answer:
        """One call to a path under /terraform: (status, body, headers). The
        body is a dict or None (no content)."""
        path = target.split("?", 1)[0]
        authorized = self.authorized(headers.get("Authorization") or "")
        if not authorized:
            status, body = UNAUTHORIZED
            return status, body, self.answer_headers(body, self.rate_headers(None))
        status, body, extra = self.route(method, path[len(PREFIX):], raw)
        if "x-ratelimit-limit" not in extra:
            extra = {**self.rate_headers("token"), **extra}
        return status, body, self.answer_headers(body, extra)

    @staticmethod
    def answer_headers(body: Any, extra: dict[str, str]) -> dict[str, str]:
        return {**({"Content-Type": JSON_API} if body is not None else {}), **extra}

    def authorized(self, authorization: str) -> bool:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        return (self.token is not None and scheme.lower() == "bearer" and bool(token)
                and hmac.compare_digest(token.encode(), self.token.encode()))

    def route(self, method: str, route: str, raw: bytes) -> Answer:
        if not route.startswith(API + "/"):
            return (*NOT_FOUND, {})
        parts = route[len(API) + 1:].split("/")
        with self.lock:
            self.settle(time.time())
            if parts[0] == "organizations" and len(parts) in (3, 4) and parts[2] == "workspaces":
                org = parts[1]
                if org.startswith("missing") or not NAME.fullmatch(org):
                    return (*NOT_FOUND, {})
                if len(parts) == 3:
                    if method == "GET":
                        return 200, {"data": [self.workspace_view(w) for w in self.workspaces.values()
                                              if w["org"] == org and not w["deleted"]]}, {}
                    if method == "POST":
                        return (*self.create_workspace(org, raw), {})
                else:
                    workspace = self.workspace_by_name(org, parts[3])
                    if workspace is None:
                        return (*NOT_FOUND, {})
                    if method == "GET":
                        return 200, {"data": self.workspace_view(workspace)}, {}
                    if method == "DELETE":
                        workspace["deleted"] = True
                        return 204, None, {}
                return (*NOT_FOUND, {})
            if parts[0] == "workspaces" and len(parts) >= 2:
                workspace = self.workspace_by_id(parts[1])
                if workspace is None:
                    return (*NOT_FOUND, {})
                return self.workspace_route(method, workspace, parts[2:], raw)
            if parts == ["runs"] and method == "POST":
                return self.create_run(raw)
            if parts[0] == "runs" and len(parts) in (2, 4):
                run = self.runs.get(parts[1])
                if run is None or self.workspaces[run["workspace"]]["deleted"]:
                    return (*NOT_FOUND, {})
                if len(parts) == 2 and method == "GET":
                    return 200, {"data": self.run_view(run, time.time())}, {}
                if parts[2] == "actions" and method == "POST":
                    return (*self.run_action(run, parts[3]), {})
                return (*NOT_FOUND, {})
            if parts[0] == "state-versions" and len(parts) in (2, 3):
                version = self.state_versions.get(parts[1])
                if version is None or self.workspaces[version["workspace"]]["deleted"]:
                    return (*NOT_FOUND, {})
                if len(parts) == 2 and method == "GET":
                    return 200, {"data": self.state_version_view(version)}, {}
                if parts[2:] == ["outputs"] and method == "GET":
                    return 200, {"data": [self.output_view(self.outputs[o], reveal=False)
                                          for o in version["outputs"]]}, {}
                return (*NOT_FOUND, {})
            if parts[0] == "state-version-outputs" and len(parts) == 2 and method == "GET":
                output = self.outputs.get(parts[1])
                if output is None or self.workspaces[output["workspace"]]["deleted"]:
                    return (*NOT_FOUND, {})
                return 200, {"data": self.output_view(output, reveal=True)}, {}
        return (*NOT_FOUND, {})

    def workspace_route(self, method: str, workspace: dict, rest: list[str], raw: bytes) -> Answer:
        if not rest:
            if method == "GET":
                return 200, {"data": self.workspace_view(workspace)}, {}
            if method == "DELETE":
                workspace["deleted"] = True
                return 204, None, {}
        elif rest == ["vars"]:
            if method == "GET":
                return 200, {"data": [self.var_view(workspace, v) for v in workspace["vars"].values()]}, {}
            if method == "POST":
                return (*self.create_var(workspace, raw), {})
        elif rest[0] == "vars" and len(rest) == 2:
            variable = workspace["vars"].get(rest[1])
            if variable is None:
                return (*NOT_FOUND, {})
            if method == "PATCH":
                return (*self.update_var(workspace, variable, raw), {})
            if method == "DELETE":
                del workspace["vars"][rest[1]]
                return 204, None, {}
        elif rest == ["runs"] and method == "GET":
            now = time.time()
            runs = sorted((r for r in self.runs.values() if r["workspace"] == workspace["id"]),
                          key=lambda r: r["created"], reverse=True)
            views = [self.run_view(r, now) for r in runs]
            return 200, {"data": views, "meta": {"pagination": {
                "current-page": 1, "page-size": 20, "prev-page": None, "next-page": None,
                "total-pages": 1, "total-count": len(views)}}}, {}
        elif rest == ["current-state-version"] and method == "GET":
            version = self.state_versions.get(workspace["current_state"] or "")
            if version is None:
                return (*NOT_FOUND, {})
            return 200, {"data": self.state_version_view(version)}, {}
        elif rest == ["current-state-version-outputs"] and method == "GET":
            version = self.state_versions.get(workspace["current_state"] or "")
            if version is None:
                return (*NOT_FOUND, {})
            return 200, {"data": [self.output_view(self.outputs[o], reveal=False) for o in version["outputs"]]}, {}
        return (*NOT_FOUND, {})

    # ------------------------------------------------------------ rate limits
    def rate_headers(self, key: str | None) -> dict[str, str]:
        """x-ratelimit-*: 30 calls a second per credential (per address
        without one), counted in one-second windows, reset in seconds."""
        now = time.time()
        with self.lock:
            budget = self.budgets.get(key or "anonymous")
            if budget is None or budget["reset"] <= now:
                budget = self.budgets[key or "anonymous"] = {"used": 0, "reset": now + RATE_WINDOW_SECONDS}
            budget["used"] = min(budget["used"] + 1, RATE_LIMIT)
            used, reset = budget["used"], budget["reset"]
        return {"x-ratelimit-limit": str(RATE_LIMIT), "x-ratelimit-remaining": str(RATE_LIMIT - used),
                "x-ratelimit-reset": f"{max(reset - now, 0.0):.3f}"}

    # ------------------------------------------------------------ bodies
    @staticmethod
    def document(raw: bytes, kind: str) -> tuple[dict, tuple[int, dict] | None]:
        """The `data` of a JSON:API request document of type `kind`."""
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return {}, error(400, "bad request", "The request body is not valid JSON.")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return {}, error(422, "invalid attribute", "The request must be a JSON:API document with data.",
                             "/data")
        if data.get("type") != kind:
            return {}, error(409, "conflict", f"The resource type must be {kind}.", "/data/type")
        attributes = data.get("attributes", {})
        if not isinstance(attributes, dict):
            return {}, invalid("Attributes must be an object.", "/data/attributes")
        return data, None

    @staticmethod
    def typed(attributes: dict, name: str, kind: type | tuple[type, ...], default: Any) -> tuple[Any, tuple | None]:
        value = attributes.get(name)
        if value is None:
            return default, None
        if not isinstance(value, kind):
            return None, invalid(f"{name} is invalid", f"/data/attributes/{name}")
        return value, None

    # ------------------------------------------------------------ workspaces
    def workspace_by_name(self, org: str, name: str) -> dict | None:
        found = self.by_name.get((org, name))
        if found is not None:
            workspace = self.workspaces[found]
            return None if workspace["deleted"] else workspace
        if name.startswith("existing-") and NAME.fullmatch(name):
            # A platform team's workspace, there before PAO came: made on first sight.
            return self.add_workspace(org, name, stable_id("ws", f"{org}/{name}"), EXISTING_CREATED_AT,
                                      {"auto-apply": False, "working-directory": None, "vcs-repo": None},
                                      created_by_pao=False)
        return None

    def workspace_by_id(self, workspace_id: str) -> dict | None:
        workspace = self.workspaces.get(workspace_id)
        return None if workspace is None or workspace["deleted"] else workspace

    def add_workspace(self, org: str, name: str, workspace_id: str, created: float, settings: dict,
                      created_by_pao: bool) -> dict:
        workspace = {"id": workspace_id, "org": org, "name": name, "created": created, "deleted": False,
                     "created_by_pao": created_by_pao, "vars": {}, "current_state": None, "serial": 0,
                     **settings}
        self.workspaces[workspace_id] = workspace
        self.by_name[(org, name)] = workspace_id
        return workspace

    def create_workspace(self, org: str, raw: bytes) -> tuple[int, dict]:
        data, refusal = self.document(raw, "workspaces")
        if refusal:
            return refusal
        attributes = data.get("attributes", {})
        name = attributes.get("name")
        if not isinstance(name, str) or not name:
            return invalid("Name can't be blank", "/data/attributes/name")
        if not NAME.fullmatch(name):
            return invalid("Name is invalid: only letters, numbers, -, and _ are allowed, at most 90",
                           "/data/attributes/name")
        if self.workspace_by_name(org, name) is not None:
            return invalid("Name has already been taken", "/data/attributes/name")
        auto_apply, refusal = self.typed(attributes, "auto-apply", bool, False)
        if refusal:
            return refusal
        directory, refusal = self.typed(attributes, "working-directory", str, None)
        if refusal:
            return refusal
        vcs = attributes.get("vcs-repo")
        if vcs is not None:
            if not isinstance(vcs, dict) or not isinstance(vcs.get("identifier"), str) \
                    or not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", vcs["identifier"]):
                return invalid("VCS repository identifier must be of the form owner/repository",
                               "/data/attributes/vcs-repo/identifier")
            if not isinstance(vcs.get("oauth-token-id") or vcs.get("github-app-installation-id"), str):
                return invalid("VCS repository needs an oauth-token-id or a github-app-installation-id",
                               "/data/attributes/vcs-repo/oauth-token-id")
            branch = vcs.get("branch") or ""
            if not isinstance(branch, str):
                return invalid("branch is invalid", "/data/attributes/vcs-repo/branch")
            vcs = {"identifier": vcs["identifier"], "display-identifier": vcs["identifier"], "branch": branch,
                   "oauth-token-id": vcs.get("oauth-token-id"),
                   "github-app-installation-id": vcs.get("github-app-installation-id"),
                   "ingress-submodules": bool(vcs.get("ingress-submodules", False)),
                   "service-provider": "github",
                   "repository-http-url": f"https://github.com/{vcs['identifier']}"}
        workspace = self.add_workspace(org, name, new_id("ws"), time.time(),
                                       {"auto-apply": auto_apply, "working-directory": directory, "vcs-repo": vcs},
                                       created_by_pao=True)
        return 201, {"data": self.workspace_view(workspace)}

    def workspace_view(self, workspace: dict) -> dict:
        org, name = workspace["org"], workspace["name"]
        current = workspace["current_state"]
        latest = max((r for r in self.runs.values() if r["workspace"] == workspace["id"]),
                     key=lambda r: r["created"], default=None)
        return {
            "id": workspace["id"], "type": "workspaces",
            "attributes": {
                "name": name, "auto-apply": workspace["auto-apply"],
                "working-directory": workspace["working-directory"], "vcs-repo": workspace["vcs-repo"],
                "vcs-repo-identifier": (workspace["vcs-repo"] or {}).get("identifier"),
                "created-at": iso_ms(workspace["created"]), "updated-at": iso_ms(workspace["created"]),
                "description": None, "environment": "default", "execution-mode": "remote",
                "locked": False, "terraform-version": TERRAFORM_VERSION, "queue-all-runs": False,
                "speculative-enabled": True, "resource-count": 0,
                "actions": {"is-destroyable": True},
                "permissions": {"can-queue-run": True, "can-queue-apply": True, "can-queue-destroy": True,
                                "can-read-variable": True, "can-update-variable": True,
                                "can-read-state-versions": True, "can-read-state-outputs": True,
                                "can-destroy": True, "can-cancel": True, "can-force-unlock": True},
            },
            "relationships": {
                "organization": {"data": {"id": org, "type": "organizations"}},
                "current-run": {"data": {"id": latest["id"], "type": "runs"} if latest else None},
                "current-state-version": {"data": {"id": current, "type": "state-versions"} if current else None},
            },
            "links": {"self": f"{API}/organizations/{org}/workspaces/{name}",
                      "self-html": f"/app/{org}/workspaces/{name}"},
        }

    # ------------------------------------------------------------ variables
    def create_var(self, workspace: dict, raw: bytes) -> tuple[int, dict]:
        data, refusal = self.document(raw, "vars")
        if refusal:
            return refusal
        attributes = data.get("attributes", {})
        variable = {"id": new_id("var")}
        refusal = self.set_var(workspace, variable, attributes, creating=True)
        if refusal:
            return refusal
        workspace["vars"][variable["id"]] = variable
        return 201, {"data": self.var_view(workspace, variable)}

    def update_var(self, workspace: dict, variable: dict, raw: bytes) -> tuple[int, dict]:
        data, refusal = self.document(raw, "vars")
        if refusal:
            return refusal
        if data.get("id") not in (None, variable["id"]):
            return error(409, "conflict", "The id in the document is not the variable's.", "/data/id")
        updated = dict(variable)
        refusal = self.set_var(workspace, updated, data.get("attributes", {}), creating=False)
        if refusal:
            return refusal
        variable.update(updated)
        return 200, {"data": self.var_view(workspace, variable)}

    def set_var(self, workspace: dict, variable: dict, attributes: dict, creating: bool) -> tuple | None:
        """Checks and applies `attributes` to `variable`; a refusal, or None."""
        defaults = {"key": None, "value": "", "category": None, "hcl": False, "sensitive": False,
                    "description": None} if creating else {}
        merged = {**defaults, **{k: variable[k] for k in ("key", "value", "category", "hcl", "sensitive",
                                                          "description") if k in variable}}
        for name, kind in (("key", str), ("value", str), ("category", str), ("hcl", bool), ("sensitive", bool),
                           ("description", str)):
            if name in attributes:
                value = attributes[name]
                if value is None and name in ("description", "value"):
                    merged[name] = "" if name == "value" else None
                    continue
                if not isinstance(value, kind):
                    return invalid(f"{name.capitalize()} is invalid", f"/data/attributes/{name}")
                merged[name] = value
        if not merged.get("key"):
            return invalid("Key can't be blank", "/data/attributes/key")
        if merged.get("category") not in ("terraform", "env"):
            return invalid("Category is not included in the list", "/data/attributes/category")
        if variable.get("sensitive") and not merged["sensitive"]:
            return invalid("Sensitive cannot be changed from true to false", "/data/attributes/sensitive")
        for other in workspace["vars"].values():
            if other["id"] != variable["id"] and other["key"] == merged["key"] \
                    and other["category"] == merged["category"]:
                return invalid("Key has already been taken", "/data/attributes/key")
        variable.update(merged)
        variable["version"] = secrets.token_hex(18)
        return None

    @staticmethod
    def var_view(workspace: dict, variable: dict) -> dict:
        return {
            "id": variable["id"], "type": "vars",
            "attributes": {"key": variable["key"], "value": None if variable["sensitive"] else variable["value"],
                           "description": variable["description"], "sensitive": variable["sensitive"],
                           "category": variable["category"], "hcl": variable["hcl"],
                           "version-id": variable["version"]},
            "relationships": {"configurable": {
                "data": {"id": workspace["id"], "type": "workspaces"},
                "links": {"related": f"{API}/organizations/{workspace['org']}/workspaces/{workspace['name']}"}}},
            "links": {"self": f"{API}/workspaces/{workspace['id']}/vars/{variable['id']}"},
        }

    # ------------------------------------------------------------ runs
    def create_run(self, raw: bytes) -> Answer:
        data, refusal = self.document(raw, "runs")
        if refusal:
            return (*refusal, {})
        attributes = data.get("attributes", {})
        relationship = ((data.get("relationships") or {}).get("workspace") or {}).get("data")
        if not isinstance(relationship, dict) or not isinstance(relationship.get("id"), str):
            return (*invalid("Workspace is required", "/data/relationships/workspace/data/id"), {})
        workspace = self.workspace_by_id(relationship["id"])
        if workspace is None:
            return (*NOT_FOUND, {})
        settings = {}
        for name, kind, default in (("message", str, DEFAULT_MESSAGE), ("is-destroy", bool, False),
                                    ("auto-apply", bool, None)):
            settings[name], refusal = self.typed(attributes, name, kind, default)
            if refusal:
                return (*refusal, {})
        message, destroy, auto_apply = settings["message"], settings["is-destroy"], settings["auto-apply"]
        run_variables = attributes.get("variables") or []
        if not isinstance(run_variables, list) or not all(
                isinstance(v, dict) and isinstance(v.get("key"), str) and isinstance(v.get("value"), str)
                for v in run_variables):
            return (*invalid("Variables must be a list of {key, value} strings", "/data/attributes/variables"), {})

        # What the plan sees: the workspace's terraform variables now, the run's own over them.
        planned = {v["key"]: {"value": v["value"], "hcl": v["hcl"], "sensitive": v["sensitive"]}
                   for v in workspace["vars"].values() if v["category"] == "terraform"}
        for override in run_variables:
            # Run-specific values are HCL literals: a quoted string is JSON too.
            previous = planned.get(override["key"], {"sensitive": False})
            planned[override["key"]] = {"value": override["value"], "hcl": True, "sensitive": previous["sensitive"]}
        values = [literal_text(v) for v in planned.values()]
        if any(v.endswith("-ratelimited") for v in values) and workspace["id"] not in self.rate_limited:
            self.rate_limited.add(workspace["id"])
            status, body = error(429, "Too many requests", "You have exceeded the API's rate limit.")
            return status, body, {"x-ratelimit-limit": str(RATE_LIMIT), "x-ratelimit-remaining": "0",
                                  "x-ratelimit-reset": RATE_LIMITED_RESET, "Retry-After": RATE_LIMITED_RETRY_AFTER}

        now = time.time()
        outcome, slow = lever(values)
        auto = workspace["auto-apply"] if auto_apply is None else auto_apply
        run = {"id": new_id("run"), "workspace": workspace["id"], "created": now, "message": message,
               "is-destroy": destroy, "auto-apply": auto, "slow": slow, "planned": planned,
               "state_made": False, "events": self.schedule(now, outcome, slow, auto)}
        self.runs[run["id"]] = run
        return 201, {"data": self.run_view(run, now)}, {}

    @staticmethod
    def schedule(start: float, outcome: str, slow: bool, auto_apply: bool) -> list[tuple[float, str]]:
        """The statuses a run will pass through, and when, if nobody acts."""
        planning = start + PENDING_SECONDS
        planned = planning + (SLOW_SECONDS if slow else PLAN_SECONDS)
        events = [(start, "pending"), (planning, "planning")]
        if outcome == "fail":
            return events + [(planned, "errored")]
        events.append((planned, "planned"))
        if outcome == "policy":
            return events + [(planned + CONFIRM_SECONDS, "policy_checking"),
                             (planned + 2 * CONFIRM_SECONDS, "policy_soft_failed")]
        if auto_apply:
            applying = planned + CONFIRM_SECONDS
            events += [(applying, "applying"), (applying + (SLOW_SECONDS if slow else APPLY_SECONDS), "applied")]
        return events

    @staticmethod
    def status(run: dict, now: float) -> tuple[str, float]:
        current = run["events"][0]
        for event in run["events"]:
            if event[0] <= now:
                current = event
        return current[1], current[0]

    def confirmable(self, run: dict, now: float) -> bool:
        return self.status(run, now)[0] == "planned" and not run["auto-apply"]

    def run_action(self, run: dict, action: str) -> tuple[int, dict | None]:
        now = time.time()
        status, _ = self.status(run, now)
        past = [e for e in run["events"] if e[0] <= now]
        if action == "apply":
            if not self.confirmable(run, now):
                return transition(f"The run is {status}, not waiting for confirmation: it cannot be applied.")
            applying = now + CONFIRM_SECONDS
            run["events"] = past + [(now, "confirmed"), (applying, "applying"),
                                    (applying + (SLOW_SECONDS if run["slow"] else APPLY_SECONDS), "applied")]
        elif action == "discard":
            if status != "pending" and not self.confirmable(run, now):
                return transition(f"The run is {status}, not paused: it cannot be discarded.")
            run["events"] = past + [(now, "discarded")]
        elif action in ("cancel", "force-cancel"):
            if status not in ("planning", "applying"):
                return transition(f"The run is {status}, not planning or applying: it cannot be canceled.")
            run["events"] = past + [(now, "canceled" if action == "cancel" else "force_canceled")]
        else:
            return NOT_FOUND
        return 202, None

    def run_view(self, run: dict, now: float) -> dict:
        status, _ = self.status(run, now)
        active = status in ("planning", "applying")
        timestamps = {("plan-queueable-at" if s == "pending" else s.replace("_", "-") + "-at"): iso_offset(t)
                      for t, s in run["events"] if t <= now}
        canceled = next((t for t, s in run["events"] if t <= now and s in ("canceled", "force_canceled")), None)
        return {
            "id": run["id"], "type": "runs",
            "attributes": {
                "status": status, "message": run["message"], "is-destroy": run["is-destroy"],
                "auto-apply": run["auto-apply"], "created-at": iso_ms(run["created"]),
                "status-timestamps": timestamps, "has-changes": True, "plan-only": False,
                "refresh": True, "refresh-only": False, "source": "tfe-api", "trigger-reason": "manual",
                "target-addrs": None, "replace-addrs": None, "allow-empty-apply": False,
                "terraform-version": TERRAFORM_VERSION,
                "canceled-at": iso_ms(canceled) if canceled is not None else None,
                "variables": [],
                "actions": {"is-confirmable": self.confirmable(run, now), "is-cancelable": active,
                            "is-discardable": status == "pending" or self.confirmable(run, now),
                            "is-force-cancelable": active},
                "permissions": {"can-apply": True, "can-cancel": True, "can-comment": True, "can-discard": True,
                                "can-force-execute": True, "can-force-cancel": True,
                                "can-override-policy-check": False},
            },
            "relationships": {"workspace": {"data": {"id": run["workspace"], "type": "workspaces"}}},
            "links": {"self": f"{API}/runs/{run['id']}"},
        }

    # ------------------------------------------------------------ state
    def settle(self, now: float) -> None:
        """Makes the state versions of the runs that have applied by `now`,
        in the order they applied (under the lock)."""
        done = []
        for run in self.runs.values():
            if run["state_made"] or self.workspaces[run["workspace"]]["deleted"]:
                continue
            status, at = self.status(run, now)
            if status == "applied":
                done.append((at, run))
        for at, run in sorted(done, key=lambda item: item[0]):
            run["state_made"] = True
            workspace = self.workspaces[run["workspace"]]
            workspace["serial"] += 1
            version = {"id": new_id("sv"), "workspace": workspace["id"], "run": run["id"], "created": at,
                       "serial": workspace["serial"], "outputs": []}
            if not run["is-destroy"]:
                values = {key: (output_value(v), v["sensitive"]) for key, v in run["planned"].items()}
                values["workspace_id"] = (workspace["id"], False)
                for name, (value, sensitive) in values.items():
                    output = {"id": new_id("wsout"), "workspace": workspace["id"], "name": name,
                              "value": value, "sensitive": sensitive}
                    self.outputs[output["id"]] = output
                    version["outputs"].append(output["id"])
            self.state_versions[version["id"]] = version
            workspace["current_state"] = version["id"]

    def state_version_view(self, version: dict) -> dict:
        return {
            "id": version["id"], "type": "state-versions",
            "attributes": {"serial": version["serial"], "created-at": iso_ms(version["created"]),
                           "resources-processed": True, "status": "finalized",
                           "terraform-version": TERRAFORM_VERSION, "size": 0},
            "relationships": {
                "run": {"data": {"id": version["run"], "type": "runs"}},
                "outputs": {"data": [{"id": o, "type": "state-version-outputs"} for o in version["outputs"]]},
            },
            "links": {"self": f"{API}/state-versions/{version['id']}"},
        }

    @staticmethod
    def output_view(output: dict, reveal: bool) -> dict:
        kind, detailed = output_types(output["value"])
        hidden = output["sensitive"] and not reveal
        return {
            "id": output["id"], "type": "state-version-outputs",
            "attributes": {"name": output["name"], "sensitive": output["sensitive"], "type": kind,
                           "value": None if hidden else output["value"], "detailed-type": detailed},
            "links": {"self": f"{API}/state-version-outputs/{output['id']}"},
        }

    # ------------------------------------------------------------ for the tests and the demo
    def summary(self) -> list[dict]:
        """Every workspace, for GET /_terraform/workspaces: never a
        sensitive value."""
        now = time.time()
        with self.lock:
            self.settle(now)
            answer = []
            for workspace in sorted(self.workspaces.values(), key=lambda w: w["created"]):
                runs = sorted((r for r in self.runs.values() if r["workspace"] == workspace["id"]),
                              key=lambda r: r["created"])
                version = self.state_versions.get(workspace["current_state"] or "")
                answer.append({
                    "id": workspace["id"], "organization": workspace["org"], "name": workspace["name"],
                    "created_by_pao": workspace["created_by_pao"], "deleted": workspace["deleted"],
                    "auto_apply": workspace["auto-apply"], "working_directory": workspace["working-directory"],
                    "vcs_repo": (workspace["vcs-repo"] or {}).get("identifier"),
                    "variables": [{"key": v["key"], "category": v["category"], "hcl": v["hcl"],
                                   "sensitive": v["sensitive"],
                                   **({} if v["sensitive"] else {"value": v["value"]})}
                                  for v in workspace["vars"].values()],
                    "runs": [{"id": r["id"], "status": self.status(r, now)[0], "is_destroy": r["is-destroy"],
                              "auto_apply": r["auto-apply"], "message": r["message"],
                              "created_at": iso_ms(r["created"])} for r in runs],
                    "outputs": [self.outputs[o]["name"] for o in version["outputs"]] if version else [],
                })
        return answer


def literal_text(planned: dict) -> str:
    """A planned variable's value as text, for the levers (a run-specific
    HCL string literal without its quotes)."""
    value = planned["value"]
    if planned["hcl"]:
        parsed = parse_json(value)
        if isinstance(parsed, str):
            return parsed
    return value


def output_value(planned: dict) -> Any:
    """The output a variable makes: its string, or, when `hcl`, the value
    parsed as JSON if it is JSON."""
    if planned["hcl"]:
        parsed = parse_json(planned["value"])
        return planned["value"] if parsed is NOT_JSON else parsed
    return planned["value"]


NOT_JSON = object()


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return NOT_JSON
