"""Checks the fake GitHub (fake_github.py, served by fake_services.py under
/github) for real, the way PAO will meet it, with no Rust: a GitHub App key
is made with `fake_services.py --make-app-key`, the fake is started on a
free port with the env stack.py gives it, and every call goes over HTTP
with urllib. JWTs are made here with `cryptography` (RS256), as a GitHub
App client makes them; the fake must take exactly the right ones (wrong key,
expired, too long, issued in the future, another app: 401), then the
installation, its token and what the token reaches. Then what the
github-workflow action does: dispatch with and without run details, an
older GHES refusing return_run_details and the run found by its
display_title instead, runs moving queued -> in_progress -> completed, the
levers (-fail, -hang, -stubborn, -ratelimited), cancel and force-cancel,
409 on a completed run, 404 on an unknown one; rate-limit headers on every
answer; /_calls and the fake's log hold no token, JWT or key.

Each check prints `ok` or `FAIL` and what it checked; the run exits 1 if
any failed. The fakes are started in sessions of their own and stopped by
PID whatever happens; the whole run is bounded by DEADLINE_SECONDS. It
takes about 6 s, most of it the runs the fake plays in real time.

Usage: fake_github_check.py
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import re
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from check_harness import Checks, free_port, run_checks, start, stop, wait_for  # noqa: E402

DEADLINE_SECONDS = 40
START_SECONDS = 15
APP_ID = "424242"
STATIC_TOKEN = "local-github-static-token"
OWNER = "acme"
WORKFLOW = "deploy.yml"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-used",
                "x-ratelimit-resource")
UNDECODABLE = "A JSON web token could not be decoded"


class Api:
    """HTTP calls to one fake, as a GitHub client makes them."""

    def __init__(self, base: str):
        self.base = base
        self.answers: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every /github answer

    def call(self, method: str, path: str, auth: str | None = None, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        sent = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "pao-fake-github-check"}
        if data is not None:
            sent["Content-Type"] = "application/json"
        if auth is not None:
            sent["Authorization"] = auth
        sent.update(headers or {})
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw, got = response.status, response.read(), response.headers
        except urllib.error.HTTPError as err:
            status, raw, got = err.code, err.read(), err.headers
        answer_headers = {k.lower(): v for k, v in got.items()}
        if path.startswith("/github/"):
            self.answers.append((path, answer_headers))
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return status, parsed, answer_headers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jwt(key: rsa.RSAPrivateKey, iss: Any = APP_ID, iat: float | None = None, exp: float | None = None,
        alg: str = "RS256") -> str:
    """A GitHub App's JWT, as octokit and jsonwebtoken make it: iat a minute
    back for clock drift, exp within ten minutes."""
    now = int(time.time())
    claims = {"iss": iss, "iat": int(now - 60 if iat is None else iat), "exp": int(now + 540 if exp is None else exp)}
    signing_input = f"{b64url(json.dumps({'alg': alg, 'typ': 'JWT'}).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def start_fake(work: Path, name: str, env: dict[str, str], processes: list[subprocess.Popen]) -> tuple[Api, Path]:
    port = free_port()
    log = work / f"{name}.log"
    processes.append(start([sys.executable, str(HERE / "fake_services.py"), "--port", str(port)], log, env))
    wait_for(f"http://127.0.0.1:{port}/_health", START_SECONDS, process=processes[-1], log=log)
    return Api(f"http://127.0.0.1:{port}"), log


def dispatch(api: Api, token: str, repo: str, inputs: dict[str, Any], details: bool | None = True,
             ref: str = "main", workflow: str = WORKFLOW, owner: str = OWNER) -> tuple[int, Any, dict[str, str]]:
    body: dict[str, Any] = {"ref": ref, "inputs": inputs}
    if details is not None:
        body["return_run_details"] = details
    return api.call("POST", f"/github/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches",
                    f"Bearer {token}", body)


def run(check: Checks, work: Path) -> None:
    key_file = work / "github-app.pem"
    made = subprocess.run([sys.executable, str(HERE / "fake_services.py"), "--make-app-key", str(key_file)],
                          capture_output=True, timeout=30)
    pem = key_file.read_bytes() if key_file.exists() else b""
    check("--make-app-key writes a PKCS#1 RSA key, as GitHub hands them out, readable by its owner only",
          made.returncode == 0 and pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
          and stat.S_IMODE(key_file.stat().st_mode) == 0o600, (made.returncode, pem[:40], made.stderr[-300:]))
    subprocess.run([sys.executable, str(HERE / "fake_services.py"), "--make-app-key", str(key_file)],
                   capture_output=True, timeout=30)
    check("--make-app-key keeps a key that is there", key_file.read_bytes() == pem)
    key = serialization.load_pem_private_key(pem, password=None)
    check("the key is 2048-bit RSA", isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PAO_JIRA_USER": "pao-bot",
           "PAO_JIRA_API_TOKEN": "local-jira-token", "DBAAS_TOKEN": "local-dbaas-token",
           "PAO_GITHUB_APP_ID": APP_ID, "PAO_GITHUB_APP_KEY_FILE": str(key_file), "PAO_GITHUB_TOKEN": STATIC_TOKEN}
    processes: list[subprocess.Popen] = []
    secrets_seen: list[str] = [STATIC_TOKEN]
    try:
        api, log = start_fake(work, "fake-services", env, processes)
        short, _ = start_fake(work, "fake-services-short-tokens", {**env, "PAO_GITHUB_TOKEN_SECONDS": "1"}, processes)
        timeline(check, api, short, key, other_key, secrets_seen)
        status, calls, _ = api.call("GET", "/_calls")
        paths = [call["path"] for call in calls["calls"]]
        check("/_calls keeps every GitHub call, by method, path and status",
              status == 200 and sum(p.startswith("/github/") for p in paths) == len(api.answers)
              and all(set(call) == {"at", "method", "path", "status"} for call in calls["calls"]),
              (len(paths), len(api.answers)))
        check("/_calls keeps no query string, token or JWT",
              not any("?" in p or "ghs_" in p or "eyJ" in p for p in paths), [p for p in paths if "?" in p][:3])
        log_text = log.read_text()
        check("the fake's log holds no token, JWT or key",
              not any(secret in log_text for secret in secrets_seen) and "PRIVATE KEY" not in log_text
              and "eyJ" not in log_text and "ghs_" not in log_text)
    finally:
        stop(processes)


def timeline(check: Checks, api: Api, short: Api, key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey,
             secrets_seen: list[str]) -> None:
    now = time.time()
    # ---------------------------------------------------------------- the app's JWT
    good = jwt(key)
    secrets_seen.append(good)
    status, installation, headers = api.call("GET", f"/github/repos/{OWNER}/app/installation", f"Bearer {good}")
    installation_id = (installation or {}).get("id")
    check("a JWT of the app's key gets the repository's installation (200, id, account.login)",
          status == 200 and isinstance(installation_id, int) and installation["account"]["login"] == OWNER,
          (status, installation))
    status, again, _ = api.call("GET", f"/github/repos/{OWNER}/other/installation", f"Bearer {jwt(key, iss=int(APP_ID))}")
    check("one installation per owner, its id stable (iss as a number too)",
          status == 200 and again.get("id") == installation_id, (status, again))
    status, elsewhere, _ = api.call("GET", "/github/repos/globex/app/installation", f"Bearer {good}")
    check("another owner, another installation", status == 200 and elsewhere["id"] != installation_id, elsewhere)
    status, body, _ = api.call("GET", "/github/repos/noinstall-corp/app/installation", f"Bearer {good}")
    check("an owner without the app: 404", status == 404 and body["message"] == "Not Found", (status, body))

    refusals = [
        ("signed with another key", f"Bearer {jwt(other_key)}", UNDECODABLE),
        ("expired", f"Bearer {jwt(key, iat=now - 700, exp=now - 100)}", "'Expiration time' claim ('exp') must be"),
        ("exp 660 s after iat", f"Bearer {jwt(key, iat=now - 60, exp=now + 600)}", "is too far in the future"),
        ("exp 11 minutes ahead", f"Bearer {jwt(key, iat=now + 30, exp=now + 660)}", "is too far in the future"),
        ("iat 2 minutes ahead", f"Bearer {jwt(key, iat=now + 120, exp=now + 300)}", "'Issued at' claim ('iat')"),
        ("another app's id", f"Bearer {jwt(key, iss=999)}", UNDECODABLE),
        ("alg HS256", f"Bearer {jwt(key, alg='HS256')}", UNDECODABLE),
        ("no Authorization", None, UNDECODABLE),
        ("the static token", f"Bearer {STATIC_TOKEN}", UNDECODABLE),
        ("a tampered payload", "Bearer " + ".".join([good.split(".")[0], b64url(json.dumps(
            {"iss": APP_ID, "iat": int(now), "exp": int(now + 300)}).encode()), good.split(".")[2]]), UNDECODABLE),
    ]
    for what, auth, message in refusals:
        status, body, _ = api.call("GET", f"/github/repos/{OWNER}/app/installation", auth)
        check(f"JWT {what}: 401, {message!r}",
              status == 401 and message in (body or {}).get("message", "") and "documentation_url" in body,
              (status, body))

    # ---------------------------------------------------------------- installation tokens
    status, issued, _ = api.call("POST", f"/github/app/installations/{installation_id}/access_tokens", f"Bearer {good}")
    token = (issued or {}).get("token", "")
    secrets_seen.append(token)
    expires = (issued or {}).get("expires_at", "")
    expires_in = (datetime.datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
                  .timestamp() - time.time()) if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expires) else 0
    check("the installation's access token: 201, ghs_ + 36, an hour, actions: write",
          status == 201 and re.fullmatch(r"ghs_[A-Za-z0-9]{36}", token) is not None and 3500 < expires_in <= 3600
          and issued["permissions"].get("actions") == "write", (status, expires, issued and issued.get("permissions")))
    status, body, _ = api.call("POST", "/github/app/installations/1/access_tokens", f"Bearer {good}")
    check("an unknown installation: 404", status == 404, (status, body))
    status, body, _ = api.call("POST", f"/github/app/installations/{installation_id}/access_tokens",
                               f"Bearer {jwt(other_key)}")
    check("a token for a JWT of another key: 401", status == 401 and body["message"] == UNDECODABLE, (status, body))
    status, body, _ = api.call("POST", f"/github/app/installations/{installation_id}/access_tokens", f"Bearer {token}")
    check("an installation token is no JWT: 401", status == 401, (status, body))
    status, scoped, _ = api.call("POST", f"/github/app/installations/{installation_id}/access_tokens", f"Bearer {good}",
                                 {"repositories": ["app"], "permissions": {"actions": "write"}})
    scoped_token = (scoped or {}).get("token", "")
    secrets_seen.append(scoped_token)
    check("a token for one repository", status == 201 and scoped.get("repository_selection") == "selected", (status, scoped))
    status, body, _ = api.call("POST", f"/github/app/installations/{installation_id}/access_tokens", f"Bearer {good}",
                               {"permissions": {"administration": "write"}})
    check("a permission the installation lacks: 422", status == 422, (status, body))

    status, body, _ = api.call("GET", f"/github/repos/{OWNER}/app/actions/runs/1", "Bearer ghs_" + "x" * 36)
    check("a token the fake did not issue: 401 Bad credentials",
          status == 401 and body["message"] == "Bad credentials", (status, body))
    status, body, _ = api.call("GET", f"/github/repos/{OWNER}/app/actions/runs/1", f"Bearer {good}")
    check("a JWT is no installation token: 401 Bad credentials", status == 401 and body["message"] == "Bad credentials",
          (status, body))
    status, body, _ = api.call("GET", f"/github/repos/{OWNER}/app/actions/runs/1")
    check("no Authorization: 401 Requires authentication",
          status == 401 and body["message"] == "Requires authentication", (status, body))
    status, body, _ = api.call("GET", f"/github/repos/{OWNER}/app/actions/workflows/{WORKFLOW}", f"token {STATIC_TOKEN}")
    check("the static token, as `token`: the workflow", status == 200 and body.get("path") == f".github/workflows/{WORKFLOW}",
          (status, body))
    status, body, _ = api.call("GET", f"/github/repos/globex/app/actions/workflows/{WORKFLOW}", f"Bearer {token}")
    check("an installation token does not reach another owner's repository: 404", status == 404, (status, body))
    status, body, _ = api.call("GET", f"/github/repos/{OWNER}/other/actions/workflows/{WORKFLOW}", f"Bearer {scoped_token}")
    status_app, _, _ = api.call("GET", f"/github/repos/{OWNER}/app/actions/workflows/{WORKFLOW}", f"Bearer {scoped_token}")
    check("a token made for one repository reaches it and no other", status == 404 and status_app == 200,
          (status, status_app))
    status, body, _ = api.call("GET", f"/github/repos/{OWNER}/app/actions/workflows/{WORKFLOW}", f"Bearer {token}",
                               headers={"User-Agent": ""})
    check("no User-Agent: 403, as GitHub refuses it", status == 403 and "User-Agent" in str(body), (status, body))

    short_jwt = jwt(key)
    short_installation = short.call("GET", f"/github/repos/{OWNER}/app/installation", f"Bearer {short_jwt}")[1]["id"]
    short_token = short.call("POST", f"/github/app/installations/{short_installation}/access_tokens",
                             f"Bearer {short_jwt}")[1]["token"]
    status_fresh = short.call("GET", f"/github/repos/{OWNER}/app/actions/runs", f"Bearer {short_token}")[0]

    # ---------------------------------------------------------------- dispatches refused
    refusals_dispatch = [
        ("no ref", {"inputs": {}}, 422, '"ref" wasn\'t supplied'),
        ("an input that is not a string", {"ref": "main", "inputs": {"replicas": 3}}, 422, "Invalid value for input"),
        ("26 inputs", {"ref": "main", "inputs": {f"i{n}": "v" for n in range(26)}}, 422, "25"),
        ("a key GitHub does not know", {"ref": "main", "foo": 1}, 400, '"foo" is not a permitted key'),
        ("a ref that is not there", {"ref": "missing-branch"}, 422, "No ref found for: missing-branch"),
    ]
    for what, body_sent, expected, message in refusals_dispatch:
        status, body, _ = api.call("POST", f"/github/repos/{OWNER}/app/actions/workflows/{WORKFLOW}/dispatches",
                                   f"Bearer {token}", body_sent)
        check(f"dispatch with {what}: {expected}", status == expected and message in (body or {}).get("message", ""),
              (status, body))
    status, body, _ = api.call("POST", f"/github/repos/{OWNER}/app/actions/workflows/{WORKFLOW}/dispatches",
                               f"Bearer {token}", b"{not json")
    check("dispatch with a body that is not JSON: 400 Problems parsing JSON",
          status == 400 and body["message"] == "Problems parsing JSON", (status, body))
    status, body, _ = dispatch(api, token, "app", {}, workflow="missing.yml")
    check("dispatch of a workflow that is not there: 404", status == 404, (status, body))

    # ---------------------------------------------------------------- runs in real time
    started = time.time()
    status, details, _ = dispatch(api, token, "app", {"pao_correlation_id": "pao-ok-1", "size": "small"})
    ok_id = (details or {}).get("workflow_run_id")
    check("dispatch with return_run_details: 200, the run's id and URLs",
          status == 200 and isinstance(ok_id, int)
          and details.get("run_url") == f"{api.base}/github/repos/{OWNER}/app/actions/runs/{ok_id}"
          and details.get("html_url") == f"https://github.example.com/{OWNER}/app/actions/runs/{ok_id}",
          (status, details))
    status, body, _ = dispatch(api, token, "app", {"pao_correlation_id": "pao-plain-1"}, details=None)
    check("dispatch without return_run_details: 204, no body", status == 204 and body is None, (status, body))
    levers = {}
    for lever in ("fail", "hang", "stubborn"):
        status, body, _ = dispatch(api, token, "app", {"pao_correlation_id": f"pao-{lever}-1", "mode": f"x-{lever}"})
        levers[lever] = (body or {}).get("workflow_run_id")
        check(f"dispatch of a -{lever} run: 200", status == 200 and levers[lever], (status, body))

    status, body, _ = dispatch(api, token, "legacy-app", {"pao_correlation_id": "pao-legacy-1"}, details=True)
    check("an older GHES: return_run_details is not a permitted key (400)",
          status == 400 and body["message"] == 'Invalid request.\n\n"return_run_details" is not a permitted key.',
          (status, body))
    status, body, _ = dispatch(api, token, "legacy-app", {"pao_correlation_id": "pao-legacy-1"}, details=None)
    check("an older GHES: the same without it: 204", status == 204, (status, body))
    since = datetime.datetime.fromtimestamp(int(started) - 1, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = urllib.parse.urlencode({"event": "workflow_dispatch", "branch": "main", "created": f">={since}", "per_page": 100})
    status, listed, _ = api.call("GET", f"/github/repos/{OWNER}/legacy-app/actions/workflows/{WORKFLOW}/runs?{query}",
                                 f"Bearer {token}")
    found = [r for r in (listed or {}).get("workflow_runs", []) if r["display_title"] == "pao-legacy-1"]
    check("the legacy run found by its display_title in the workflow's runs (event, branch, created>=)",
          status == 200 and listed["total_count"] >= 1 and len(found) == 1 and found[0]["event"] == "workflow_dispatch"
          and found[0]["head_branch"] == "main" and found[0]["path"] == f".github/workflows/{WORKFLOW}"
          and found[0]["run_attempt"] == 1, (status, listed))
    later = datetime.datetime.fromtimestamp(time.time() + 3600, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, listed, _ = api.call("GET", f"/github/repos/{OWNER}/legacy-app/actions/workflows/{WORKFLOW}/runs?"
                                 + urllib.parse.urlencode({"created": f">={later}"}), f"Bearer {token}")
    check("created>= an hour ahead: no run", status == 200 and listed["total_count"] == 0, listed)
    status, listed, _ = api.call("GET", f"/github/repos/{OWNER}/app/actions/workflows/{WORKFLOW}/runs?per_page=2",
                                 f"Bearer {token}")
    ids = [r["id"] for r in (listed or {}).get("workflow_runs", [])]
    check("the workflow's runs, newest first, per_page kept", status == 200 and listed["total_count"] >= 5
          and len(ids) == 2 and ids == sorted(ids, reverse=True) and ids[0] == levers["stubborn"], (status, ids))

    # Rate limited: refused once for these inputs, then taken.
    limited_inputs = {"pao_correlation_id": "pao-rl-1", "size": "x-ratelimited"}
    status, body, headers = dispatch(api, token, "app", limited_inputs)
    reset = int(headers.get("x-ratelimit-reset", 0)) - time.time()
    check("a -ratelimited dispatch: 403, rate limit exceeded for the installation, remaining 0, reset ~2 s ahead",
          status == 403 and body["message"].startswith(f"API rate limit exceeded for installation ID {installation_id}")
          and headers.get("x-ratelimit-remaining") == "0" and 0 < reset <= 3, (status, body, headers, reset))
    status, body, headers = dispatch(api, token, "app", limited_inputs)
    check("the same dispatch again: taken (200), budget left", status == 200 and body.get("workflow_run_id")
          and int(headers.get("x-ratelimit-remaining", 0)) > 0, (status, body, headers))

    def run_of(run_id: int, repo: str = "app") -> dict:
        status, body, _ = api.call("GET", f"/github/repos/{OWNER}/{repo}/actions/runs/{run_id}", f"Bearer {token}")
        return body if status == 200 else {"status": f"HTTP {status}"}

    first = run_of(ok_id)
    check("a run as GitHub shows it (name, display_title, event, head_branch, url, html_url, path, run_attempt)",
          first.get("name") == WORKFLOW and first.get("display_title") == "pao-ok-1"
          and first.get("event") == "workflow_dispatch" and first.get("head_branch") == "main"
          and first.get("url") == details["run_url"] and first.get("html_url") == details["html_url"]
          and first.get("path") == f".github/workflows/{WORKFLOW}" and first.get("run_attempt") == 1
          and all(first.get(k) for k in ("created_at", "updated_at", "run_started_at")), first)

    histories: dict[str, list[tuple[float, str, str | None]]] = {"ok": [], "fail": [], "hang": [], "stubborn": []}
    ids_by_name = {"ok": ok_id, **levers}
    cancelled_at = forced = None
    stubborn_before_force = None
    while time.time() - started < 4.0:
        elapsed = time.time() - started
        for name, run_id in ids_by_name.items():
            seen = run_of(run_id)
            histories[name].append((elapsed, seen.get("status"), seen.get("conclusion")))
        if cancelled_at is None and elapsed >= 1.3:
            cancelled_at = elapsed
            cancels = [api.call("POST", f"/github/repos/{OWNER}/app/actions/runs/{levers[n]}/cancel", f"Bearer {token}")
                       for n in ("hang", "stubborn")]
            check("cancel of an in-progress run: 202 {}", all(s == 202 and b == {} for s, b, _ in cancels),
                  [(s, b) for s, b, _ in cancels])
        if forced is None and elapsed >= 2.9:
            stubborn_before_force = run_of(levers["stubborn"])
            status, body, _ = api.call("POST", f"/github/repos/{OWNER}/app/actions/runs/{levers['stubborn']}/force-cancel",
                                       f"Bearer {token}")
            forced = (status, body, run_of(levers["stubborn"]))
        time.sleep(0.15)

    def transitions(history: list[tuple[float, str, str | None]]) -> list[tuple[str, str | None]]:
        seen: list[tuple[str, str | None]] = []
        for _, status, conclusion in history:
            if not seen or seen[-1] != (status, conclusion):
                seen.append((status, conclusion))
        return seen

    def first_seen(history: list[tuple[float, str, str | None]], status: str) -> float:
        return next((elapsed for elapsed, s, _ in history if s == status), -1)

    ok_history = histories["ok"]
    check("a run goes queued -> in_progress -> completed/success",
          transitions(ok_history) == [("queued", None), ("in_progress", None), ("completed", "success")],
          transitions(ok_history))
    check("... in_progress after ~1 s, completed after ~3 s",
          0.8 <= first_seen(ok_history, "in_progress") <= 1.6 and 2.8 <= first_seen(ok_history, "completed") <= 3.6,
          (first_seen(ok_history, "in_progress"), first_seen(ok_history, "completed")))
    check("a -fail run completes with failure", transitions(histories["fail"])[-1] == ("completed", "failure"),
          transitions(histories["fail"]))
    hang = histories["hang"]
    check("a -hang run stays in_progress until cancelled, then completed/cancelled ~1 s after the cancel",
          transitions(hang) == [("queued", None), ("in_progress", None), ("completed", "cancelled")]
          and cancelled_at is not None and cancelled_at + 0.8 <= first_seen(hang, "completed") <= cancelled_at + 1.6,
          (transitions(hang), cancelled_at, first_seen(hang, "completed")))
    check("a -stubborn run ignores the cancel (in_progress 1.6 s later)",
          (stubborn_before_force or {}).get("status") == "in_progress", stubborn_before_force)
    check("force-cancel stops it at once: 202, completed/cancelled",
          forced is not None and forced[0] == 202 and forced[2].get("status") == "completed"
          and forced[2].get("conclusion") == "cancelled", forced)

    for what, path in (("cancel of a completed run", f"{ok_id}/cancel"),
                       ("force-cancel of a completed run", f"{ok_id}/force-cancel"),
                       ("cancel of a cancelled run", f"{levers['hang']}/cancel")):
        status, body, _ = api.call("POST", f"/github/repos/{OWNER}/app/actions/runs/{path}", f"Bearer {token}")
        check(f"{what}: 409", status == 409
              and body["message"] == "Cannot cancel a workflow run that is completed.", (status, body))
    status, body, _ = api.call("GET", f"/github/repos/{OWNER}/app/actions/runs/12345", f"Bearer {token}")
    check("an unknown run: 404 Not Found", status == 404 and body["message"] == "Not Found", (status, body))
    status, body, _ = api.call("GET", f"/github/repos/{OWNER}/other/actions/runs/{ok_id}", f"Bearer {token}")
    check("a run asked for under another repository: 404", status == 404, (status, body))
    status, body, _ = api.call("POST", f"/github/repos/{OWNER}/app/actions/runs/12345/cancel", f"Bearer {token}")
    check("cancel of an unknown run: 404", status == 404, (status, body))

    status, runs, _ = api.call("GET", "/_github/runs")
    by_id = {r["id"]: r for r in (runs or {}).get("runs", [])}
    check("/_github/runs: every run with its repository, inputs and state, no auth",
          status == 200 and by_id.get(ok_id, {}).get("repository") == f"{OWNER}/app"
          and by_id[ok_id]["inputs"] == {"pao_correlation_id": "pao-ok-1", "size": "small"}
          and by_id[ok_id]["conclusion"] == "success" and by_id[levers["stubborn"]]["force_cancelled"]
          and len(by_id) == 7, (status, runs))

    missing = [(path, [h for h in RATE_HEADERS if h not in headers]) for path, headers in api.answers
               if not all(h in headers for h in RATE_HEADERS) and not headers.get("content-type", "").startswith("text/")]
    check("every answer of the fake GitHub (but the plain-text 403) carries x-ratelimit-limit/-remaining/-reset/-used/-resource",
          not missing and all(h["x-ratelimit-resource"] == "core" for _, h in api.answers if "x-ratelimit-resource" in h),
          missing[:3])
    limits = {h.get("x-ratelimit-limit") for p, h in api.answers if "x-ratelimit-limit" in h}
    check("... 5000 for a credential, 60 without", limits == {"5000", "60"}, limits)

    status_later, body, _ = short.call("GET", f"/github/repos/{OWNER}/app/actions/runs", f"Bearer {short_token}")
    check("an installation token past its expiry (PAO_GITHUB_TOKEN_SECONDS=1): 401 Bad credentials",
          status_fresh == 200 and status_later == 401 and body["message"] == "Bad credentials", (status_fresh, status_later))


def main() -> int:
    return run_checks(run, "fake-github-check-", DEADLINE_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
