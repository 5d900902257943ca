"""Checks the fake HCP Terraform (fake_terraform.py, served by
fake_services.py under /terraform) for real, the way PAO will meet it, with
no Rust: the fake is started on a free port with the env stack.py gives it,
and every call goes over HTTP with urllib, as JSON:API documents. First the
token (none, wrong: 401) and organizations (`missing...`: 404); then
workspaces (create, read by name and by id, 422 on a taken name, delete,
the pre-made `existing-` ones) and variables (sensitive ones never shown,
422 on a taken key, PATCH, DELETE). Then what a Terraform action does: runs
moving pending -> planning -> planned -> applying -> applied, with the
workspace's auto-apply or the run's, or waiting in planned until applied;
the levers (-fail, -policy, -slow, -ratelimited); cancel, force-cancel and
discard, 409 on a transition the status does not allow; the state version
and outputs an apply leaves (sensitive values null in the list, shown in
the single read), emptied by a destroy run; rate-limit headers on every
answer; /_terraform/workspaces; /_calls and the fake's log hold no token
and no sensitive value.

Each check prints `ok` or `FAIL` and what it checked; the run exits 1 if
any failed. The fake is started in a session of its own and stopped by PID
whatever happens; the whole run is bounded by DEADLINE_SECONDS. It takes
about 9 s, most of it the runs the fake plays in real time.

Usage: fake_terraform_check.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from check_harness import Checks, free_port, run_checks, start, stop, wait_for  # noqa: E402

DEADLINE_SECONDS = 40
START_SECONDS = 15
TOKEN = "local-tfc-token.atlasv1.not-a-real-one"
SECRET = "db-password-s3cr3t-value"
ORG = "acme"
JSON_API = "application/vnd.api+json"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
WS_ID = re.compile(r"ws-[A-Za-z0-9]{16}")
RUN_ID = re.compile(r"run-[A-Za-z0-9]{16}")
ORDER = ["pending", "planning", "planned", "confirmed", "policy_checking", "applying", "applied",
         "errored", "policy_soft_failed", "discarded", "canceled", "force_canceled"]


class Api:
    """HTTP calls to the fake, as an HCP Terraform client makes them."""

    def __init__(self, base: str):
        self.base = base
        self.answers: list[tuple[str, int, dict[str, str]]] = []  # (path, status, headers) under /terraform

    def call(self, method: str, path: str, body: Any = None, auth: str | None = f"Bearer {TOKEN}",
             raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Accept": JSON_API, "User-Agent": "pao-fake-terraform-check"}
        if data is not None:
            sent["Content-Type"] = JSON_API
        if auth is not None:
            sent["Authorization"] = auth
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, payload, got = response.status, response.read(), response.headers
        except urllib.error.HTTPError as err:
            status, payload, got = err.code, err.read(), err.headers
        headers = {k.lower(): v for k, v in got.items()}
        if path.startswith("/terraform/"):
            self.answers.append((path, status, headers))
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode(errors="replace")
        return status, parsed, headers

    # The routes, by what they do
    def tf(self, method: str, route: str, body: Any = None, **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
        return self.call(method, "/terraform/api/v2" + route, body, **kwargs)

    def create_workspace(self, name: str, **attributes: Any) -> tuple[int, Any, dict[str, str]]:
        return self.tf("POST", f"/organizations/{ORG}/workspaces",
                       {"data": {"type": "workspaces", "attributes": {"name": name, **attributes}}})

    def create_var(self, workspace: str, key: str, value: str, category: str = "terraform",
                   **attributes: Any) -> tuple[int, Any, dict[str, str]]:
        return self.tf("POST", f"/workspaces/{workspace}/vars", {"data": {"type": "vars", "attributes": {
            "key": key, "value": value, "category": category, **attributes}}})

    def create_run(self, workspace: str, **attributes: Any) -> tuple[int, Any, dict[str, str]]:
        return self.tf("POST", "/runs", {"data": {"type": "runs", "attributes": attributes, "relationships": {
            "workspace": {"data": {"type": "workspaces", "id": workspace}}}}})

    def run(self, run_id: str) -> dict:
        status, body, _ = self.tf("GET", f"/runs/{run_id}")
        return body["data"] if status == 200 else {"attributes": {"status": f"HTTP {status}"}}

    def action(self, run_id: str, action: str) -> tuple[int, Any, dict[str, str]]:
        return self.tf("POST", f"/runs/{run_id}/actions/{action}", {"comment": "from the check"})


def start_fake(work: Path, env: dict[str, str], processes: list[subprocess.Popen]) -> tuple[Api, Path]:
    port = free_port()
    log = work / "fake-services.log"
    processes.append(start([sys.executable, str(HERE / "fake_services.py"), "--port", str(port)], log, env))
    wait_for(f"http://127.0.0.1:{port}/_health", START_SECONDS, process=processes[-1], log=log)
    return Api(f"http://127.0.0.1:{port}"), log


def errors_of(body: Any) -> list[dict]:
    return body.get("errors", []) if isinstance(body, dict) else []


def in_order(seen: list[str]) -> bool:
    """The statuses seen only ever move forward."""
    ranks = [ORDER.index(s) if s in ORDER else -1 for s in seen]
    return -1 not in ranks and ranks == sorted(ranks)


def run(check: Checks, work: Path) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PAO_JIRA_USER": "pao-bot",
           "PAO_JIRA_API_TOKEN": "local-jira-token", "DBAAS_TOKEN": "local-dbaas-token", "PAO_TFC_TOKEN": TOKEN}
    processes: list[subprocess.Popen] = []
    try:
        api, log = start_fake(work, env, processes)
        timeline(check, api)
        status, calls, _ = api.call("GET", "/_calls")
        recorded = [c for c in (calls or {}).get("calls", []) if c["path"].startswith("/terraform/")]
        check("/_calls keeps every Terraform call, by method, path and status",
              status == 200 and len(recorded) == len(api.answers)
              and all(set(c) == {"at", "method", "path", "status"} for c in recorded)
              and [c["status"] for c in recorded] == [s for _, s, _ in api.answers], (len(recorded), len(api.answers)))
        text = json.dumps(calls)
        check("/_calls keeps no query string, token or sensitive value",
              not any("?" in c["path"] for c in recorded) and TOKEN not in text and SECRET not in text)
        log_text = log.read_text()
        check("the fake's log holds no token and no sensitive value",
              TOKEN not in log_text and SECRET not in log_text and "/terraform/api/v2/runs" in log_text)
    finally:
        stop(processes)


def timeline(check: Checks, api: Api) -> None:
    # ---------------------------------------------------------------- the token, organizations
    status, body, headers = api.tf("GET", f"/organizations/{ORG}/workspaces/app", auth=None)
    check("no Authorization: 401 unauthorized (JSON:API)",
          status == 401 and body == {"errors": [{"status": "401", "title": "unauthorized"}]}
          and headers.get("content-type") == JSON_API, (status, body, headers.get("content-type")))
    for what, auth in (("a wrong token", "Bearer not-the-token"), ("the token as Basic", f"Basic {TOKEN}"),
                       ("Bearer and nothing", "Bearer ")):
        status, body, _ = api.tf("GET", f"/organizations/{ORG}/workspaces/app", auth=auth)
        check(f"{what}: 401", status == 401 and errors_of(body)[:1] == [{"status": "401", "title": "unauthorized"}],
              (status, body))
    status, body, _ = api.tf("GET", "/organizations/missing-org/workspaces/app")
    check("an organization named missing...: 404 not found",
          status == 404 and body == {"errors": [{"status": "404", "title": "not found"}]}, (status, body))
    status, body, _ = api.tf("POST", "/organizations/missing-org/workspaces",
                             {"data": {"type": "workspaces", "attributes": {"name": "x"}}})
    check("creating in a missing organization: 404", status == 404, (status, body))
    status, body, _ = api.call("GET", "/terraform/api/v2/nowhere")
    check("an unknown route: 404 JSON:API", status == 404 and errors_of(body)[0]["status"] == "404", (status, body))

    # ---------------------------------------------------------------- workspaces
    vcs = {"identifier": "acme/infra-app", "branch": "main", "oauth-token-id": "ot-AbCdEfGhIjKlMnOp"}
    status, body, headers = api.create_workspace("app-dev", **{"auto-apply": True, "working-directory": "envs/dev",
                                                                "vcs-repo": vcs})
    data = (body or {}).get("data", {})
    attrs = data.get("attributes", {})
    auto_ws = data.get("id", "")
    check("create a workspace: 201, ws-<16>, name, auto-apply, working-directory, vcs-repo, created-at, self-html",
          status == 201 and WS_ID.fullmatch(auto_ws) is not None and data.get("type") == "workspaces"
          and attrs.get("name") == "app-dev" and attrs.get("auto-apply") is True
          and attrs.get("working-directory") == "envs/dev" and attrs.get("vcs-repo", {}).get("identifier") == vcs["identifier"]
          and attrs["vcs-repo"].get("branch") == "main" and attrs["vcs-repo"].get("oauth-token-id") == vcs["oauth-token-id"]
          and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", attrs.get("created-at", "")) is not None
          and data.get("links", {}).get("self-html") == f"/app/{ORG}/workspaces/app-dev"
          and headers.get("content-type") == JSON_API, (status, body))
    status, body, _ = api.tf("GET", f"/organizations/{ORG}/workspaces/app-dev")
    check("read it by name: 200, the same id", status == 200 and body["data"]["id"] == auto_ws, (status, body))
    status, body, _ = api.tf("GET", f"/workspaces/{auto_ws}")
    check("read it by id: 200", status == 200 and body["data"]["attributes"]["name"] == "app-dev", (status, body))
    status, body, _ = api.create_workspace("app-dev")
    check("the same name again: 422 Name has already been taken",
          status == 422 and errors_of(body)[:1] and errors_of(body)[0].get("detail") == "Name has already been taken"
          and errors_of(body)[0].get("status") == "422", (status, body))
    status, body, _ = api.create_workspace("bad name!")
    check("a name with a space and !: 422", status == 422, (status, body))
    status, body, _ = api.tf("POST", f"/organizations/{ORG}/workspaces",
                             {"data": {"type": "vars", "attributes": {"name": "typo"}}})
    check("a document of another type: 409 (JSON:API)", status == 409, (status, body))
    status, body, _ = api.tf("POST", f"/organizations/{ORG}/workspaces", raw=b"{not json")
    check("a body that is not JSON: 400", status == 400, (status, body))
    status, body, _ = api.tf("GET", f"/organizations/{ORG}/workspaces/never-made")
    check("a workspace never made: 404 not found",
          status == 404 and body == {"errors": [{"status": "404", "title": "not found"}]}, (status, body))

    status, body, _ = api.tf("GET", f"/organizations/{ORG}/workspaces/existing-platform-net")
    again = api.tf("GET", f"/organizations/{ORG}/workspaces/existing-platform-net")[1]
    existing_id = (body or {}).get("data", {}).get("id", "")
    check("an existing-... workspace is found though never created, its id stable",
          status == 200 and WS_ID.fullmatch(existing_id) is not None and again["data"]["id"] == existing_id,
          (status, body))
    status, body, _ = api.create_workspace("existing-platform-net")
    check("... and its name is taken", status == 422, (status, body))

    status, body, _ = api.create_workspace("throwaway")
    throwaway = (body or {}).get("data", {}).get("id", "")
    status_delete, body_delete, _ = api.tf("DELETE", f"/organizations/{ORG}/workspaces/throwaway")
    gone = api.tf("GET", f"/organizations/{ORG}/workspaces/throwaway")[0]
    gone_by_id = api.tf("GET", f"/workspaces/{throwaway}")[0]
    again_delete = api.tf("DELETE", f"/organizations/{ORG}/workspaces/throwaway")[0]
    check("delete a workspace: 204, no body; then 404 by name and by id, and a second delete 404",
          status == 201 and status_delete == 204 and body_delete is None and gone == 404 and gone_by_id == 404
          and again_delete == 404, (status, status_delete, gone, gone_by_id, again_delete))

    # ---------------------------------------------------------------- variables
    status, body, _ = api.create_var(auto_ws, "size", "small", description="the size")
    check("create a terraform variable: 201, var-, its value shown",
          status == 201 and body["data"]["id"].startswith("var-") and body["data"]["attributes"]["value"] == "small"
          and body["data"]["attributes"]["category"] == "terraform", (status, body))
    status, body, _ = api.create_var(auto_ws, "db_password", SECRET, sensitive=True)
    check("create a sensitive variable: 201, its value null in the answer",
          status == 201 and body["data"]["attributes"]["value"] is None
          and body["data"]["attributes"]["sensitive"] is True, (status, body))
    api.create_var(auto_ws, "tags", json.dumps({"team": "payments", "tier": 2}), hcl=True)
    api.create_var(auto_ws, "count_hint", "[1, 2", hcl=True)  # hcl that is not JSON: kept as text
    status, body, _ = api.create_var(auto_ws, "size", "large")
    check("the same key in the same category: 422",
          status == 422 and "taken" in errors_of(body)[0].get("detail", ""), (status, body))
    status, body, _ = api.create_var(auto_ws, "size", "env-side", category="env")
    env_var = (body or {}).get("data", {}).get("id", "")
    check("the same key as an env variable: 201", status == 201, (status, body))
    status, body, _ = api.create_var(auto_ws, "other", "x", category="shell")
    check("a category neither terraform nor env: 422", status == 422, (status, body))
    status, listed, _ = api.tf("GET", f"/workspaces/{auto_ws}/vars")
    by_key = {(v["attributes"]["key"], v["attributes"]["category"]): v for v in (listed or {}).get("data", [])}
    check("list the variables: sensitive ones with value null, the others shown",
          status == 200 and by_key[("db_password", "terraform")]["attributes"]["value"] is None
          and by_key[("size", "terraform")]["attributes"]["value"] == "small" and len(by_key) == 5
          and SECRET not in json.dumps(listed), (status, listed))
    size_id = by_key[("size", "terraform")]["id"]
    secret_id = by_key[("db_password", "terraform")]["id"]
    status, body, _ = api.tf("PATCH", f"/workspaces/{auto_ws}/vars/{size_id}",
                             {"data": {"type": "vars", "id": size_id, "attributes": {"value": "medium"}}})
    check("PATCH a variable's value: 200, the new value, the rest kept",
          status == 200 and body["data"]["attributes"]["value"] == "medium"
          and body["data"]["attributes"]["description"] == "the size", (status, body))
    status, body, _ = api.tf("PATCH", f"/workspaces/{auto_ws}/vars/{secret_id}",
                             {"data": {"type": "vars", "id": secret_id, "attributes": {"sensitive": False}}})
    check("PATCH a sensitive variable to not sensitive: 422", status == 422, (status, body))
    status, body, _ = api.tf("DELETE", f"/workspaces/{auto_ws}/vars/{env_var}")
    status_after = api.tf("PATCH", f"/workspaces/{auto_ws}/vars/{env_var}",
                          {"data": {"type": "vars", "attributes": {"value": "y"}}})[0]
    check("DELETE a variable: 204, then it is gone (404)", status == 204 and status_after == 404,
          (status, status_after))

    # ---------------------------------------------------------------- runs in real time
    def workspace(name: str, auto_apply: bool, variables: dict[str, str]) -> str:
        ws = api.create_workspace(name, **{"auto-apply": auto_apply})[1]["data"]["id"]
        for key, value in variables.items():
            api.create_var(ws, key, value)
        return ws

    manual_ws = workspace("app-manual", False, {"size": "small"})
    run_wins_ws = workspace("app-run-wins", False, {"size": "small"})
    fail_ws = workspace("app-fail", True, {"mode": "x-fail"})
    policy_ws = workspace("app-policy", True, {"mode": "x-policy"})
    slow_ws = workspace("app-slow", True, {"mode": "x-slow"})
    discard_ws = workspace("app-discard", False, {"size": "small"})
    limited_ws = workspace("app-limited", True, {"mode": "x-ratelimited"})

    started = time.monotonic()
    status, body, headers = api.create_run(auto_ws, message="PAO: create app-dev")
    data = (body or {}).get("data", {})
    auto_run = data.get("id", "")
    check("create a run: 201, run-<16>, pending, message, is-destroy, auto-apply, actions, workspace, links.self",
          status == 201 and RUN_ID.fullmatch(auto_run) is not None and data.get("type") == "runs"
          and data["attributes"]["status"] == "pending" and data["attributes"]["message"] == "PAO: create app-dev"
          and data["attributes"]["is-destroy"] is False and data["attributes"]["auto-apply"] is True
          and set(data["attributes"]["actions"]) >= {"is-confirmable", "is-cancelable", "is-discardable"}
          and data["relationships"]["workspace"]["data"] == {"type": "workspaces", "id": auto_ws}
          and data["links"]["self"] == f"/api/v2/runs/{auto_run}"
          and "plan-queueable-at" in data["attributes"]["status-timestamps"], (status, body))
    runs = {"auto": auto_run}
    for name, ws, attributes in (("manual", manual_ws, {}), ("run-wins", run_wins_ws, {"auto-apply": True}),
                                 ("fail", fail_ws, {}), ("policy", policy_ws, {}), ("slow", slow_ws, {}),
                                 ("slow-force", slow_ws, {}), ("discard", discard_ws, {})):
        status, body, _ = api.create_run(ws, **attributes)
        runs[name] = (body or {}).get("data", {}).get("id", "")
        if status != 201:
            check(f"create the {name} run: 201", False, (status, body))
    status, body, headers = api.create_run(limited_ws)
    check("the first run on a -ratelimited workspace: 429 Too many requests, limit 30, remaining 0, reset 1.5, "
          "Retry-After 2", status == 429 and errors_of(body)[:1]
          and errors_of(body)[0].get("status") == "429" and errors_of(body)[0].get("title") == "Too many requests"
          and headers.get("x-ratelimit-limit") == "30" and headers.get("x-ratelimit-remaining") == "0"
          and headers.get("x-ratelimit-reset") == "1.5" and headers.get("retry-after") == "2", (status, body, headers))
    status, body, headers = api.create_run(limited_ws)
    runs["limited"] = (body or {}).get("data", {}).get("id", "")
    check("the same again: 201, a run", status == 201 and RUN_ID.fullmatch(runs["limited"]) is not None, (status, body))
    status, body, _ = api.tf("POST", "/runs", {"data": {"type": "runs", "relationships": {
        "workspace": {"data": {"type": "workspaces", "id": "ws-NoSuchWorkspace0"}}}}})
    check("a run on a workspace that is not there: 404", status == 404, (status, body))
    status, body, _ = api.tf("POST", "/runs", {"data": {"type": "runs", "attributes": {"is-destroy": "yes"},
                                                        "relationships": {"workspace": {"data": {
                                                            "type": "workspaces", "id": auto_ws}}}}})
    check("a run with is-destroy not a boolean: 422", status == 422, (status, body))

    seen: dict[str, list[tuple[float, str]]] = {name: [] for name in runs}
    cancels: dict[str, Any] = {}
    manual_planned: dict = {}
    while time.monotonic() - started < 4.6:
        elapsed = time.monotonic() - started
        for name, run_id in runs.items():
            status_now = api.run(run_id)["attributes"]["status"]
            if not seen[name] or seen[name][-1][1] != status_now:
                seen[name].append((elapsed, status_now))
        if "slow" not in cancels and elapsed >= 0.9:
            cancels["slow"] = api.action(runs["slow"], "cancel")
            cancels["slow-force"] = api.action(runs["slow-force"], "force-cancel")
        if "discard" not in cancels and elapsed >= 1.8:
            manual_planned = api.run(runs["manual"])
            cancels["manual-cancel"] = api.action(runs["manual"], "cancel")
            cancels["discard"] = api.action(runs["discard"], "discard")
        if "apply" not in cancels and elapsed >= 2.2:
            cancels["still-planned"] = api.run(runs["manual"])["attributes"]["status"]
            cancels["apply"] = api.action(runs["manual"], "apply")
        time.sleep(0.25)

    def statuses(name: str) -> list[str]:
        return [s for _, s in seen[name]]

    def first(name: str, status_wanted: str) -> float:
        return next((t for t, s in seen[name] if s == status_wanted), -1.0)

    final = {name: api.run(run_id) for name, run_id in runs.items()}
    auto_final = final["auto"]["attributes"]
    check("an auto-apply run goes pending -> planning -> planned -> applying -> applied",
          in_order(statuses("auto")) and statuses("auto")[0] == "pending" and statuses("auto")[-1] == "applied"
          and {"plan-queueable-at", "planning-at", "planned-at", "applying-at", "applied-at"}
          <= set(auto_final["status-timestamps"]), (seen["auto"], auto_final.get("status-timestamps")))
    check("... planning from ~0.5 s, applied at ~3 s",
          0.3 <= first("auto", "planning") <= 1.3 and 2.6 <= first("auto", "applied") <= 3.9,
          (first("auto", "planning"), first("auto", "applied")))
    check("the run's auto-apply wins over the workspace's (false): applied",
          statuses("run-wins")[-1:] == ["applied"] and final["run-wins"]["attributes"]["auto-apply"] is True,
          seen["run-wins"])
    check("a run without auto-apply waits in planned, confirmable (is-confirmable, is-discardable)",
          manual_planned.get("attributes", {}).get("status") == "planned"
          and manual_planned["attributes"]["actions"]["is-confirmable"] is True
          and manual_planned["attributes"]["actions"]["is-discardable"] is True
          and cancels.get("still-planned") == "planned", (manual_planned.get("attributes"), cancels.get("still-planned")))
    check("... cancel while planned: 409 transition not allowed",
          cancels.get("manual-cancel", (0,))[0] == 409
          and errors_of(cancels["manual-cancel"][1])[0].get("title") == "transition not allowed", cancels.get("manual-cancel"))
    check("... apply: 202 and no body, then confirmed/applying -> applied",
          cancels.get("apply", (0,))[0] == 202 and cancels["apply"][1] is None
          and statuses("manual")[-1:] == ["applied"] and in_order(statuses("manual"))
          and first("manual", "applied") >= 2.2 + 1.0, (cancels.get("apply"), seen["manual"]))
    check("a -fail run: planning -> errored", statuses("fail")[-2:] == ["planning", "errored"]
          and in_order(statuses("fail")), seen["fail"])
    check("a -policy run: planned, then policy_soft_failed",
          in_order(statuses("policy")) and statuses("policy")[-1:] == ["policy_soft_failed"]
          and {"planned-at", "policy-checking-at", "policy-soft-failed-at"}
          <= set(final["policy"]["attributes"]["status-timestamps"]), (seen["policy"], final["policy"]["attributes"]))
    check("a -slow run is still planning after 0.9 s; cancel: 202, then canceled, canceled-at set",
          cancels.get("slow", (0,))[0] == 202 and statuses("slow")[-2:] == ["planning", "canceled"]
          and final["slow"]["attributes"]["canceled-at"] is not None, (cancels.get("slow"), seen["slow"]))
    check("force-cancel of a planning run: 202, force_canceled",
          cancels.get("slow-force", (0,))[0] == 202 and statuses("slow-force")[-1:] == ["force_canceled"],
          (cancels.get("slow-force"), seen["slow-force"]))
    check("discard of a planned run: 202, discarded",
          cancels.get("discard", (0,))[0] == 202 and statuses("discard")[-2:] == ["planned", "discarded"],
          (cancels.get("discard"), seen["discard"]))
    check("the run taken after the 429 applies", statuses("limited")[-1:] == ["applied"], seen["limited"])
    check("a finished run offers no action",
          not any(final["auto"]["attributes"]["actions"][k] for k in ("is-confirmable", "is-cancelable",
                                                                        "is-discardable")), final["auto"]["attributes"]["actions"])

    for what, run_id, action in (("apply of an applied run", runs["auto"], "apply"),
                                 ("discard of an applied run", runs["auto"], "discard"),
                                 ("cancel of an errored run", runs["fail"], "cancel"),
                                 ("force-cancel of a discarded run", runs["discard"], "force-cancel"),
                                 ("apply of a policy_soft_failed run", runs["policy"], "apply"),
                                 ("cancel of a canceled run", runs["slow"], "cancel")):
        status, body, _ = api.action(run_id, action)
        check(f"{what}: 409 transition not allowed",
              status == 409 and errors_of(body)[:1] and errors_of(body)[0].get("title") == "transition not allowed",
              (status, body))
    status, body, _ = api.action("run-NoSuchRun000000", "cancel")
    check("an action on an unknown run: 404", status == 404, (status, body))
    status, body, _ = api.tf("GET", f"/workspaces/{auto_ws}/runs?page%5Bsize%5D=5")
    check("the workspace's runs, newest first", status == 200 and [r["id"] for r in body["data"]] == [runs["auto"]],
          (status, body))

    # ---------------------------------------------------------------- state and outputs
    status, version, _ = api.tf("GET", f"/workspaces/{auto_ws}/current-state-version")
    sv = (version or {}).get("data", {})
    output_refs = sv.get("relationships", {}).get("outputs", {}).get("data", [])
    check("the current state version after the apply: sv-, serial 1, created-at, its outputs",
          status == 200 and sv.get("id", "").startswith("sv-") and sv.get("type") == "state-versions"
          and sv["attributes"].get("serial") == 1 and sv["attributes"].get("created-at")
          and len(output_refs) == 5 and all(o["type"] == "state-version-outputs" and o["id"].startswith("wsout-")
                                            for o in output_refs), (status, version))
    status, outputs, _ = api.tf("GET", f"/workspaces/{auto_ws}/current-state-version-outputs")
    by_name = {o["attributes"]["name"]: o for o in (outputs or {}).get("data", [])}
    check("the current outputs: one per terraform variable (its latest value) and workspace_id, no env one",
          status == 200 and set(by_name) == {"size", "db_password", "tags", "count_hint", "workspace_id"}
          and by_name["size"]["attributes"]["value"] == "medium"
          and by_name["workspace_id"]["attributes"]["value"] == auto_ws, (status, outputs))
    check("... a sensitive one listed with value null, sensitive true",
          by_name["db_password"]["attributes"]["value"] is None and by_name["db_password"]["attributes"]["sensitive"]
          is True and SECRET not in json.dumps(outputs), by_name.get("db_password"))
    check("... an hcl variable holding JSON: the parsed value, type and detailed-type",
          by_name["tags"]["attributes"]["value"] == {"team": "payments", "tier": 2}
          and by_name["tags"]["attributes"]["type"] == "object"
          and by_name["tags"]["attributes"]["detailed-type"] == ["object", {"team": "string", "tier": "number"}]
          and by_name["count_hint"]["attributes"]["value"] == "[1, 2"
          and by_name["size"]["attributes"]["detailed-type"] == "string", (by_name.get("tags"), by_name.get("count_hint")))
    status, one, _ = api.tf("GET", f"/state-version-outputs/{by_name['db_password']['id']}")
    check("the single read of the sensitive output: its value",
          status == 200 and one["data"]["attributes"]["value"] == SECRET
          and one["data"]["attributes"]["sensitive"] is True, (status, one and one["data"]["attributes"]["name"]))
    status, one, _ = api.tf("GET", f"/state-version-outputs/{by_name['size']['id']}")
    check("the single read of a plain output", status == 200 and one["data"]["attributes"]["value"] == "medium",
          (status, one))
    status, _, _ = api.tf("GET", f"/workspaces/{fail_ws}/current-state-version")
    status_outputs, _, _ = api.tf("GET", f"/workspaces/{fail_ws}/current-state-version-outputs")
    check("a workspace never applied: no current state version (404), no outputs (404)",
          status == 404 and status_outputs == 404, (status, status_outputs))
    status, outputs, _ = api.tf("GET", f"/workspaces/{manual_ws}/current-state-version-outputs")
    check("the manually applied run left its outputs too",
          status == 200 and {o["attributes"]["name"] for o in outputs["data"]} == {"size", "workspace_id"},
          (status, outputs))

    destroy_started = time.monotonic()
    status, body, _ = api.create_run(auto_ws, **{"is-destroy": True, "message": "PAO: undo app-dev"})
    destroy_run = (body or {}).get("data", {}).get("id", "")
    check("a destroy run: 201, is-destroy true", status == 201 and body["data"]["attributes"]["is-destroy"] is True,
          (status, body))
    destroy_status = ""
    while time.monotonic() - destroy_started < 5.0 and destroy_status != "applied":
        time.sleep(0.4)
        destroy_status = api.run(destroy_run)["attributes"]["status"]
    status, outputs, _ = api.tf("GET", f"/workspaces/{auto_ws}/current-state-version-outputs")
    status_sv, version, _ = api.tf("GET", f"/workspaces/{auto_ws}/current-state-version")
    check("after the destroy applied: a new state version (serial 2) with no outputs",
          destroy_status == "applied" and status == 200 and outputs["data"] == [] and status_sv == 200
          and version["data"]["attributes"]["serial"] == 2
          and version["data"]["relationships"]["outputs"]["data"] == [], (destroy_status, outputs, version))
    status, one, _ = api.tf("GET", f"/state-version-outputs/{by_name['size']['id']}")
    check("an output of the older state version can still be read", status == 200, (status, one))

    # ---------------------------------------------------------------- headers, the summary
    missing = [(p, s) for p, s, h in api.answers if not all(k in h for k in RATE_HEADERS)]
    check("every answer under /terraform carries x-ratelimit-limit/-remaining/-reset", not missing, missing[:3])
    odd = [(p, h) for p, s, h in api.answers if s != 429 and (
        h.get("x-ratelimit-limit") != "30" or not h.get("x-ratelimit-remaining", "").isdigit()
        or not re.fullmatch(r"\d+(\.\d+)?", h.get("x-ratelimit-reset", "")) or float(h["x-ratelimit-reset"]) > 1.0)]
    check("... limit 30, remaining a count, reset seconds (at most 1)", not odd, odd[:2])
    untyped = [(p, s, h.get("content-type")) for p, s, h in api.answers
               if s not in (202, 204) and h.get("content-type") != JSON_API]
    check("every answer with a body is application/vnd.api+json; 202 and 204 have none",
          not untyped and all(h.get("content-length") == "0" for p, s, h in api.answers if s in (202, 204)), untyped[:3])

    status, summary, _ = api.call("GET", "/_terraform/workspaces")
    by_ws = {w["name"]: w for w in (summary or {}).get("workspaces", [])}
    dev = by_ws.get("app-dev", {})
    check("/_terraform/workspaces: org, name, created by PAO or pre-made, deleted ones flagged, no auth",
          status == 200 and dev.get("organization") == ORG and dev.get("created_by_pao") is True
          and by_ws.get("existing-platform-net", {}).get("created_by_pao") is False
          and by_ws.get("throwaway", {}).get("deleted") is True and dev.get("deleted") is False, summary)
    check("... variables by key, category and sensitivity, never a sensitive value",
          {(v["key"], v["category"], v["sensitive"]) for v in dev.get("variables", [])}
          == {("size", "terraform", False), ("db_password", "terraform", True), ("tags", "terraform", False),
              ("count_hint", "terraform", False)} and SECRET not in json.dumps(summary), dev.get("variables"))
    check("... runs (id, status, is-destroy, message) and the current outputs' names",
          [(r["id"], r["status"], r["is_destroy"], r["message"]) for r in dev.get("runs", [])]
          == [(runs["auto"], "applied", False, "PAO: create app-dev"), (destroy_run, "applied", True, "PAO: undo app-dev")]
          and dev.get("outputs") == [] and by_ws.get("app-manual", {}).get("outputs") == ["size", "workspace_id"],
          (dev.get("runs"), dev.get("outputs")))


def main() -> int:
    return run_checks(run, "fake-terraform-check-", DEADLINE_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
