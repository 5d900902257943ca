"""A stateful stand-in for the part of GitHub's REST API that dispatches and
follows GitHub Actions workflow runs, served by fake_services.py under
/github (PAO's GitHub API base URL is then http://127.0.0.1:<port>/github).
It checks what GitHub checks: who calls, and what they send.

Authentication, as GitHub does it
  GitHub App: the app id comes from PAO_GITHUB_APP_ID (and, optionally, its
  client id from PAO_GITHUB_APP_CLIENT_ID, which GitHub also takes as `iss`),
  its private key from the PEM file PAO_GITHUB_APP_KEY_FILE (make_app_key()
  writes one as GitHub hands them out: 2048-bit RSA, PKCS#1). The app's own
  endpoints take `Authorization: Bearer <JWT>`, RS256, signed with that key,
  `iss` the app id, `iat` at most 60 s ahead, `exp` in the future, at most
  600 s after `iat` and after now; anything else is 401 with GitHub's message.
    GET  /repos/{owner}/{repo}/installation          the owner's installation
    POST /app/installations/{id}/access_tokens       201, a `ghs_` token, 1 h
  Every other route takes `Bearer` (or `token`) with a token the fake issued
  and that has not expired, or the static token in PAO_GITHUB_TOKEN if set;
  else 401 "Requires authentication" (no header) or "Bad credentials". An
  installation token reaches only its owner's repositories (and those named
  when it was made, if any): another repository is 404, as on GitHub.

Workflows and runs
    GET  /repos/{o}/{r}/actions/workflows/{workflow_id}
    POST /repos/{o}/{r}/actions/workflows/{workflow_id}/dispatches
         {"ref", "inputs", "return_run_details"}: 200 with the run's id and
         URLs when return_run_details is true, else 204
    GET  /repos/{o}/{r}/actions/workflows/{workflow_id}/runs
         ?event= &branch= &status= &created= (>=, >, <=, <, a..b, a date)
         &per_page= (30, at most 100) &page=; newest first
    GET  /repos/{o}/{r}/actions/runs   (the same, every workflow)
    GET  /repos/{o}/{r}/actions/runs/{id}
    POST /repos/{o}/{r}/actions/runs/{id}/cancel         202; 409 if completed
    POST /repos/{o}/{r}/actions/runs/{id}/force-cancel   202; 409 if completed
  Any file name ending in .yml or .yaml is a workflow of every repository
  (GitHub would read .github/workflows/); a workflow's numeric id works
  once the workflow has been met by name. A run's `name` is the file name;
  its `display_title` is the input `pao_correlation_id` if given (workflows
  meant for PAO say `run-name: ${{ inputs.pao_correlation_id }}`, which is
  how a caller finds a run dispatched without run details), else the name.
  A run is `queued` when dispatched, `in_progress` 1 s later and
  `completed`/`success` 3 s after dispatch; a cancel makes it
  `completed`/`cancelled` 1 s later, a force-cancel at once.

Levers (for the demo and the tests; chosen by what the caller sends)
  - an input value ending in `-fail`: the run completes with `failure`
  - ending in `-hang`: the run stays `in_progress` until cancelled
  - ending in `-stubborn`: stays `in_progress` and ignores a cancel; only
    force-cancel stops it
  - ending in `-ratelimited`: the first dispatch with exactly these inputs
    (same repository and workflow) is refused with 403 "API rate limit
    exceeded for installation ID ...", x-ratelimit-remaining 0 and
    x-ratelimit-reset 2 s ahead; the next one with the same inputs is taken
  - a repository whose name starts with `legacy-` is an older GitHub
    Enterprise Server: `return_run_details` is not a permitted key (400),
    a dispatch answers 204 only
  - a workflow file whose name starts with `missing`: 404, no such workflow
  - a ref starting with `missing`: 422 "No ref found for: ..."
  - an owner whose name starts with `noinstall-`: the app is not installed
    there (404 from /repos/{o}/{r}/installation)
  - PAO_GITHUB_TOKEN_SECONDS: how long an installation token lives (3600)
  When several input values carry levers, -stubborn wins over -hang, -hang
  over -fail.

Simplified: workflows are not read from any repository, so inputs are not
checked against the workflow's declared ones (only that they are strings,
at most 25); no jobs, logs, re-runs, artifacts or webhooks; a run never
waits for a runner; every answer carries GitHub's x-ratelimit-* headers
for a budget of 5000 an hour per credential (60 for calls without one)
that is counted but only ever exhausted by the lever; GitHub would refuse
every call from an exhausted installation until the reset, the lever
refuses only that dispatch. The web URLs (html_url) point at
https://github.example.com. Tokens are kept as SHA-256 digests and never
written anywhere; nothing here records a header or a body.
"""

from __future__ import annotations

import base64
import binascii
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
import uuid
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PREFIX = "/github"
HTML_BASE = "https://github.example.com"
DOCS = "https://docs.github.com/rest"
API_VERSIONS = ("2022-11-28", "2026-03-10")
RATE_LIMIT = 5000
ANONYMOUS_RATE_LIMIT = 60
JWT_MAX_SECONDS = 600
JWT_IAT_SKEW_SECONDS = 60
MAX_INPUTS = 25
QUEUED_SECONDS = 1.0
RUN_SECONDS = 3.0
CANCEL_SECONDS = 1.0
RATE_LIMITED_RESET_SECONDS = 2
INSTALLATION_PERMISSIONS = {"actions": "write", "metadata": "read"}
PERMISSION_LEVELS = {"read": 1, "write": 2}
TOKEN_ALPHABET = string.ascii_letters + string.digits
WORKFLOW_FILE = re.compile(r"[A-Za-z0-9_.-]+\.ya?ml")
NAME = r"[A-Za-z0-9_.-]+"

Answer = tuple[int, Any, dict[str, str]]


def make_app_key(path: str | os.PathLike[str]) -> Path:
    """Writes a new GitHub App private key to `path` if there is no file
    there: 2048-bit RSA in PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"), the form
    GitHub hands out, readable by its owner only. Returns the path."""
    path = Path(path)
    if path.exists():
        return path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    return path


def iso(moment: float) -> str:
    return datetime.datetime.fromtimestamp(int(moment), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def error(status: int, message: str, docs: str = DOCS) -> tuple[int, dict[str, str]]:
    # GitHub's error bodies: the message, a link, and the status as a string.
    return status, {"message": message, "documentation_url": docs, "status": str(status)}


def stable_id(text: str, base: int) -> int:
    """Ids that stay the same for the same name, across restarts too."""
    return base + zlib.crc32(text.encode()) % 10_000_000


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Credential:
    """Who a call is from: an installation (its id, owner, repositories) or
    the static token; `key` names its rate-limit budget."""

    def __init__(self, key: str, installation: int | None = None, owner: str | None = None,
                 repositories: list[str] | None = None):
        self.key = key
        self.installation = installation
        self.owner = owner
        self.repositories = repositories

    def reaches(self, owner: str, repo: str) -> bool:
        if self.installation is None:
            return True
        if owner.lower() != (self.owner or "").lower():
            return False
        return self.repositories is None or repo.lower() in self.repositories


class GitHub:
    def __init__(self, app_id: str | None, public_key: rsa.RSAPublicKey | None, client_id: str | None = None,
                 static_token: str | None = None, token_seconds: int = 3600):
        self.lock = threading.Lock()
        self.app_id = app_id
        self.client_id = client_id
        self.public_key = public_key
        self.static_token = static_token
        self.token_seconds = token_seconds
        self.installations: dict[int, str] = {}      # id -> owner
        self.tokens: dict[str, dict] = {}            # SHA-256 of the token -> installation, expiry, repos
        self.runs: dict[int, dict] = {}
        self.run_numbers: dict[tuple[str, str, str], int] = {}
        self.workflows: dict[tuple[str, str, int], str] = {}  # (owner, repo, id) -> file
        self.next_run = 7_100_000_000 + int(time.time()) % 1_000_000 * 100
        self.budgets: dict[str, dict] = {}
        self.rate_limited: set[str] = set()

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ) -> GitHub:
        app_id = env.get("PAO_GITHUB_APP_ID") or None
        key_file = env.get("PAO_GITHUB_APP_KEY_FILE")
        public_key = None
        if app_id and key_file:
            private = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
            if not isinstance(private, rsa.RSAPrivateKey):
                raise SystemExit(f"{key_file}: a GitHub App key is RSA")
            public_key = private.public_key()
        return cls(app_id, public_key, env.get("PAO_GITHUB_APP_CLIENT_ID") or None,
                   env.get("PAO_GITHUB_TOKEN") or None, int(env.get("PAO_GITHUB_TOKEN_SECONDS") or 3600))

    # ------------------------------------------------------------ routing
    def handle(self, method: str, target: str, headers: Any, raw: bytes, host: str | None) -> Answer:
        """One call to a path under /github: (status, body, headers). The
        body is a dict, None (no content) or a str (text/plain)."""
        if not host or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", host):
            host = "127.0.0.1"
        status, body, extra = self.route(method, target, headers, raw, f"http://{host}{PREFIX}")
        common = {"x-github-request-id": new_request_id()}
        if isinstance(body, dict):
            common["Content-Type"] = "application/json; charset=utf-8"
            common["x-github-api-version-selected"] = headers.get("X-GitHub-Api-Version") or API_VERSIONS[0]
        return status, body, {**common, **extra}

    def route(self, method: str, target: str, headers: Any, raw: bytes, base: str) -> Answer:
        path, _, query = target.partition("?")
        route = path[len(PREFIX):]
        if not headers.get("User-Agent"):
            # GitHub refuses calls without one, in plain text.
            return 403, ("Request forbidden by administrative rules. Please make sure your request has a "
                         "User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api"
                         "#user-agent-required). Check https://developer.github.com for other possible causes.\n"), {}
        version = headers.get("X-GitHub-Api-Version")
        if version and version not in API_VERSIONS:
            return (*error(400, f"API version {version} is not supported."), self.rate_headers(None))

        match = re.fullmatch(rf"/repos/({NAME})/({NAME})/installation", route)
        if match and method == "GET":
            return self.app_call(headers, lambda: self.installation(match.group(1), base))
        match = re.fullmatch(r"/app/installations/(\d+)/access_tokens", route)
        if match and method == "POST":
            return self.app_call(headers, lambda: self.access_token(int(match.group(1)), raw, base))

        who, refusal = self.authenticate(headers)
        if who is None:
            return (*refusal, self.rate_headers(None))
        status, body, extra = self.repo_route(who, method, route, query, raw, base)
        return status, body, extra if "x-ratelimit-limit" in extra else {**self.rate_headers(who.key), **extra}

    def repo_route(self, who: Credential, method: str, route: str, query: str, raw: bytes, base: str) -> Answer:
        match = re.fullmatch(rf"/repos/({NAME})/({NAME})/actions/(.+)", route)
        if not match:
            return (*error(404, "Not Found"), {})
        owner, repo, rest = match.groups()
        if not who.reaches(owner, repo):
            return (*error(404, "Not Found"), {})
        parts = rest.split("/")
        if parts[0] == "workflows" and len(parts) >= 2:
            workflow = self.workflow_file(owner, repo, parts[1])
            if workflow is None:
                return (*error(404, "Not Found"), {})
            if len(parts) == 2 and method == "GET":
                return 200, self.workflow_view(owner, repo, workflow, base), {}
            if parts[2:] == ["dispatches"] and method == "POST":
                return self.dispatch(who, owner, repo, workflow, raw, base)
            if parts[2:] == ["runs"] and method == "GET":
                return self.list_runs(owner, repo, workflow, query, base)
        if parts[0] == "runs":
            if len(parts) == 1 and method == "GET":
                return self.list_runs(owner, repo, None, query, base)
            if len(parts) >= 2 and parts[1].isdigit():
                run_id = int(parts[1])
                if len(parts) == 2 and method == "GET":
                    with self.lock:
                        run = self.find(owner, repo, run_id)
                        view = run and self.view(run, base)
                    return (200, view, {}) if view else (*error(404, "Not Found"), {})
                if len(parts) == 3 and parts[2] in ("cancel", "force-cancel") and method == "POST":
                    return self.cancel(owner, repo, run_id, force=parts[2] == "force-cancel")
        return (*error(404, "Not Found"), {})

    # ------------------------------------------------------------ the app, its installations, their tokens
    def app_call(self, headers: Any, then: Any) -> Answer:
        refusal = self.verify_jwt(headers.get("Authorization") or "")
        if refusal:
            return (*error(401, refusal), self.rate_headers(None))
        status, body = then()
        return status, body, self.rate_headers("app")

    def verify_jwt(self, authorization: str) -> str | None:
        """None if `authorization` is `Bearer <JWT>` of this app, valid now;
        else GitHub's message."""
        undecodable = "A JSON web token could not be decoded"
        scheme, _, jwt = authorization.partition(" ")
        if scheme.lower() != "bearer" or self.public_key is None or jwt.count(".") != 2:
            return undecodable
        head, payload, signature = jwt.strip().split(".")
        try:
            header = json.loads(b64url_decode(head))
            claims = json.loads(b64url_decode(payload))
            signature_bytes = b64url_decode(signature)
        except (ValueError, binascii.Error):
            return undecodable
        if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
            return undecodable
        issuer = claims.get("iss")
        if isinstance(issuer, bool) or not isinstance(issuer, (int, str)):
            return "'Issuer' claim ('iss') must be an Integer"
        if str(issuer) not in {self.app_id, self.client_id}:
            return undecodable  # another app's JWT: this app's key does not verify it
        try:
            self.public_key.verify(signature_bytes, f"{head}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return undecodable
        now = time.time()
        issued, expires = claims.get("iat"), claims.get("exp")
        if not self.number(issued) or issued > now + JWT_IAT_SKEW_SECONDS:
            return "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
        if not self.number(expires) or expires <= now:
            return ("'Expiration time' claim ('exp') must be a numeric value representing the future time "
                    "at which the assertion expires")
        if expires - issued > JWT_MAX_SECONDS or expires > now + JWT_MAX_SECONDS:
            return "'Expiration time' claim ('exp') is too far in the future"
        return None

    @staticmethod
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def installation(self, owner: str, base: str) -> tuple[int, dict]:
        if owner.lower().startswith("noinstall-"):
            return error(404, "Not Found", "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app")
        installation_id = stable_id(owner.lower(), 50_000_000)
        with self.lock:
            self.installations[installation_id] = owner
        account_id = stable_id(owner.lower(), 90_000_000)
        return 200, {
            "id": installation_id,
            "account": {"login": owner, "id": account_id, "type": "Organization",
                        "url": f"{base}/users/{owner}", "html_url": f"{HTML_BASE}/{owner}"},
            "app_id": int(self.app_id) if (self.app_id or "").isdigit() else self.app_id,
            "app_slug": "pao", "target_id": account_id, "target_type": "Organization",
            "repository_selection": "all",
            "access_tokens_url": f"{base}/app/installations/{installation_id}/access_tokens",
            "repositories_url": f"{base}/installation/repositories",
            "html_url": f"{HTML_BASE}/organizations/{owner}/settings/installations/{installation_id}",
            "permissions": dict(INSTALLATION_PERMISSIONS), "events": [],
            "created_at": "2026-01-05T09:00:00Z", "updated_at": "2026-01-05T09:00:00Z",
            "single_file_name": None, "suspended_at": None, "suspended_by": None,
        }

    def access_token(self, installation_id: int, raw: bytes, base: str) -> tuple[int, dict]:
        with self.lock:
            owner = self.installations.get(installation_id)
        if owner is None:
            return error(404, "Not Found", "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app")
        body, refusal = self.json_body(raw)
        if refusal:
            return refusal
        permissions = dict(INSTALLATION_PERMISSIONS)
        asked = body.get("permissions")
        if asked is not None:
            if not isinstance(asked, dict) or any(
                    PERMISSION_LEVELS.get(level, 9) > PERMISSION_LEVELS.get(INSTALLATION_PERMISSIONS.get(name, ""), 0)
                    for name, level in asked.items()):
                return error(422, "The permissions requested are not granted to this installation.")
            permissions = dict(asked)
        repositories = body.get("repositories")
        if repositories is not None and (not isinstance(repositories, list)
                                         or not all(isinstance(r, str) for r in repositories)):
            return error(422, "Invalid request.\n\nFor 'properties/repositories', it is not an array of strings.")
        token = "ghs_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36))
        expires = time.time() + self.token_seconds
        with self.lock:
            now = time.time()
            self.tokens = {k: v for k, v in self.tokens.items() if v["expires"] > now}
            self.tokens[self.digest(token)] = {
                "installation": installation_id, "owner": owner, "expires": expires,
                "repositories": [r.lower() for r in repositories] if repositories is not None else None}
        answer = {"token": token, "expires_at": iso(expires), "permissions": permissions,
                  "repository_selection": "selected" if repositories is not None else "all"}
        if repositories is not None:
            answer["repositories"] = [{"name": r, "full_name": f"{owner}/{r}"} for r in repositories]
        return 201, answer

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def authenticate(self, headers: Any) -> tuple[Credential | None, tuple[int, dict]]:
        authorization = headers.get("Authorization")
        if not authorization:
            return None, error(401, "Requires authentication")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() in ("bearer", "token") and token:
            if self.static_token and hmac.compare_digest(token.encode(), self.static_token.encode()):
                return Credential("static"), (0, {})
            with self.lock:
                issued = self.tokens.get(self.digest(token))
            if issued and issued["expires"] > time.time():
                return Credential(f"installation:{issued['installation']}", issued["installation"],
                                  issued["owner"], issued["repositories"]), (0, {})
        return None, error(401, "Bad credentials")

    def rate_headers(self, key: str | None, exhausted_until: float | None = None) -> dict[str, str]:
        """GitHub's x-ratelimit-* headers: a budget per credential, an hour
        long from its first call; `exhausted_until` answers as if spent."""
        limit = RATE_LIMIT if key else ANONYMOUS_RATE_LIMIT
        if exhausted_until is not None:
            return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": str(int(exhausted_until)), "x-ratelimit-used": str(limit),
                    "x-ratelimit-resource": "core"}
        now = time.time()
        with self.lock:
            budget = self.budgets.get(key or "anonymous")
            if budget is None or budget["reset"] <= now:
                budget = self.budgets[key or "anonymous"] = {"used": 0, "reset": int(now) + 3600}
            budget["used"] = min(budget["used"] + 1, limit)
            used, reset = budget["used"], budget["reset"]
        return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(limit - used),
                "x-ratelimit-reset": str(reset), "x-ratelimit-used": str(used), "x-ratelimit-resource": "core"}

    # ------------------------------------------------------------ workflows
    def workflow_file(self, owner: str, repo: str, workflow_id: str) -> str | None:
        if WORKFLOW_FILE.fullmatch(workflow_id):
            if workflow_id.startswith("missing"):
                return None
            with self.lock:
                self.workflows[(owner.lower(), repo.lower(), self.workflow_number(owner, repo, workflow_id))] = workflow_id
            return workflow_id
        if workflow_id.isdigit():
            with self.lock:
                return self.workflows.get((owner.lower(), repo.lower(), int(workflow_id)))
        return None

    @staticmethod
    def workflow_number(owner: str, repo: str, workflow: str) -> int:
        return stable_id(f"{owner.lower()}/{repo.lower()}/{workflow}", 160_000_000)

    def workflow_view(self, owner: str, repo: str, workflow: str, base: str) -> dict:
        number = self.workflow_number(owner, repo, workflow)
        path = f".github/workflows/{workflow}"
        return {"id": number, "node_id": f"W_{number}", "name": workflow, "path": path, "state": "active",
                "created_at": "2026-01-05T09:00:00Z", "updated_at": "2026-01-05T09:00:00Z",
                "url": f"{base}/repos/{owner}/{repo}/actions/workflows/{number}",
                "html_url": f"{HTML_BASE}/{owner}/{repo}/blob/main/{path}",
                "badge_url": f"{HTML_BASE}/{owner}/{repo}/workflows/{workflow}/badge.svg"}

    def dispatch(self, who: Credential, owner: str, repo: str, workflow: str, raw: bytes, base: str) -> Answer:
        body, refusal = self.json_body(raw)
        if refusal:
            return (*refusal, {})
        legacy = repo.lower().startswith("legacy-")
        permitted = ("ref", "inputs") if legacy else ("ref", "inputs", "return_run_details")
        for key in body:
            if key not in permitted:
                return (*error(400, f'Invalid request.\n\n"{key}" is not a permitted key.'), {})
        ref = body.get("ref")
        if "ref" not in body:
            return (*error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.'), {})
        if not isinstance(ref, str) or not ref:
            return (*error(422, "Invalid request.\n\nFor 'properties/ref', it is not a string."), {})
        details = body.get("return_run_details", False)
        if not isinstance(details, bool):
            return (*error(422, "Invalid request.\n\nFor 'properties/return_run_details', it is not a boolean."), {})
        inputs = body.get("inputs", {})
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            return (*error(422, "Invalid request.\n\nFor 'properties/inputs', it is not an object."), {})
        for name, value in inputs.items():
            if not isinstance(value, str):
                return (*error(422, f"Invalid value for input '{name}': it must be a string."), {})
        if len(inputs) > MAX_INPUTS:
            return (*error(422, f"you may only define up to {MAX_INPUTS} `inputs` for a `workflow_dispatch` event"), {})
        branch = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        if branch.startswith("missing"):
            return (*error(422, f"No ref found for: {ref}"), {})

        if any(value.endswith("-ratelimited") for value in inputs.values()):
            seen = json.dumps([owner.lower(), repo.lower(), workflow, sorted(inputs.items())])
            with self.lock:
                first = seen not in self.rate_limited
                self.rate_limited.add(seen)
            if first:
                whom = (f"installation ID {who.installation}" if who.installation is not None else "user ID 1")
                status, answer = error(403, f"API rate limit exceeded for {whom}.",
                                       "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api")
                return status, answer, self.rate_headers(who.key, time.time() + RATE_LIMITED_RESET_SECONDS)

        now = time.time()
        with self.lock:
            self.next_run += 1
            run_id = self.next_run
            counter = (owner.lower(), repo.lower(), workflow)
            self.run_numbers[counter] = self.run_numbers.get(counter, 0) + 1
            self.runs[run_id] = {
                "id": run_id, "owner": owner, "repo": repo, "workflow": workflow, "ref": ref, "branch": branch,
                "inputs": dict(inputs), "created": now, "cancel_at": None, "force_at": None,
                "run_number": self.run_numbers[counter], "head_sha": secrets.token_hex(20),
                "lever": self.lever(inputs),
            }
        if not details:
            return 204, None, {}
        return 200, {"workflow_run_id": run_id, "run_url": f"{base}/repos/{owner}/{repo}/actions/runs/{run_id}",
                     "html_url": f"{HTML_BASE}/{owner}/{repo}/actions/runs/{run_id}"}, {}

    @staticmethod
    def lever(inputs: dict[str, str]) -> str:
        for lever in ("stubborn", "hang", "fail"):
            if any(value.endswith(f"-{lever}") for value in inputs.values()):
                return lever
        return "success"

    @staticmethod
    def json_body(raw: bytes) -> tuple[dict, tuple[int, dict] | None]:
        if not raw.strip():
            return {}, None
        try:
            body = json.loads(raw)
        except ValueError:
            return {}, error(400, "Problems parsing JSON")
        if not isinstance(body, dict):
            return {}, error(400, "Problems parsing JSON")
        return body, None

    # ------------------------------------------------------------ runs
    def find(self, owner: str, repo: str, run_id: int) -> dict | None:
        run = self.runs.get(run_id)
        if run and run["owner"].lower() == owner.lower() and run["repo"].lower() == repo.lower():
            return run
        return None

    @staticmethod
    def state(run: dict, now: float) -> tuple[str, str | None, float]:
        """(status, conclusion, updated) of a run at `now`, played from its
        dispatch, its lever and the cancels it was sent."""
        created = run["created"]
        ends = []
        if run["lever"] in ("success", "fail"):
            ends.append((created + RUN_SECONDS, "failure" if run["lever"] == "fail" else "success"))
        if run["cancel_at"] is not None and run["lever"] != "stubborn":
            ends.append((run["cancel_at"] + CANCEL_SECONDS, "cancelled"))
        if run["force_at"] is not None:
            ends.append((run["force_at"], "cancelled"))
        if ends:
            end, conclusion = min(ends, key=lambda item: item[0])
            if now >= end:
                return "completed", conclusion, end
        if now >= created + QUEUED_SECONDS:
            touched = [created + QUEUED_SECONDS] + [t for t in (run["cancel_at"],) if t is not None and t <= now]
            return "in_progress", None, max(touched)
        return "queued", None, created

    def view(self, run: dict, base: str, now: float | None = None) -> dict:
        status, conclusion, updated = self.state(run, time.time() if now is None else now)
        owner, repo, run_id, workflow = run["owner"], run["repo"], run["id"], run["workflow"]
        api = f"{base}/repos/{owner}/{repo}"
        number = self.workflow_number(owner, repo, workflow)
        return {
            "id": run_id, "name": workflow, "node_id": f"WFR_{run_id}", "head_branch": run["branch"],
            "head_sha": run["head_sha"], "path": f".github/workflows/{workflow}",
            "display_title": run["inputs"].get("pao_correlation_id") or workflow,
            "run_number": run["run_number"], "event": "workflow_dispatch", "status": status,
            "conclusion": conclusion, "workflow_id": number, "check_suite_id": run_id + 1,
            "url": f"{api}/actions/runs/{run_id}", "html_url": f"{HTML_BASE}/{owner}/{repo}/actions/runs/{run_id}",
            "pull_requests": [], "created_at": iso(run["created"]), "updated_at": iso(updated),
            "actor": {"login": "pao[bot]", "type": "Bot"}, "triggering_actor": {"login": "pao[bot]", "type": "Bot"},
            "run_attempt": 1, "referenced_workflows": [], "run_started_at": iso(run["created"]),
            "jobs_url": f"{api}/actions/runs/{run_id}/jobs", "logs_url": f"{api}/actions/runs/{run_id}/logs",
            "cancel_url": f"{api}/actions/runs/{run_id}/cancel", "rerun_url": f"{api}/actions/runs/{run_id}/rerun",
            "workflow_url": f"{api}/actions/workflows/{number}",
            "repository": {"name": repo, "full_name": f"{owner}/{repo}", "owner": {"login": owner}},
        }

    def list_runs(self, owner: str, repo: str, workflow: str | None, query: str, base: str) -> Answer:
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        created = params.get("created")
        window = self.created_window(created) if created else (float("-inf"), float("inf"))
        if window is None:
            return (*error(422, f"Invalid value for parameter 'created': {created}"), {})
        try:
            per_page = min(max(int(params.get("per_page", 30)), 1), 100)
            page = max(int(params.get("page", 1)), 1)
        except ValueError:
            return (*error(422, "Invalid value for parameter 'per_page' or 'page'"), {})
        now = time.time()
        with self.lock:
            views = [self.view(run, base, now) for run in self.runs.values()
                     if run["owner"].lower() == owner.lower() and run["repo"].lower() == repo.lower()
                     and (workflow is None or run["workflow"] == workflow)
                     and window[0] <= run["created"] <= window[1]]
        if params.get("event"):
            views = [v for v in views if v["event"] == params["event"]]
        if params.get("branch"):
            views = [v for v in views if v["head_branch"] == params["branch"]]
        if params.get("status"):
            views = [v for v in views if params["status"] in (v["status"], v["conclusion"])]
        views.sort(key=lambda v: v["id"], reverse=True)
        return 200, {"total_count": len(views),
                     "workflow_runs": views[(page - 1) * per_page: page * per_page]}, {}

    @staticmethod
    def created_window(created: str) -> tuple[float, float] | None:
        """GitHub's search syntax for dates: >=X, >X, <=X, <X, X..Y, X
        (a day, or a moment)."""
        def moment(text: str, end: bool = False) -> float | None:
            text = text.strip()
            try:
                if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                    day = datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc)
                    return day.timestamp() + (86400 - 0.001 if end else 0)
                parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=datetime.timezone.utc)
            return parsed.timestamp()

        for operator in (">=", "<=", ">", "<"):
            if created.startswith(operator):
                edge = moment(created[len(operator):], end=operator in ("<=", ">"))
                if edge is None:
                    return None
                # Timestamps in answers are whole seconds: compare as GitHub shows them.
                return {">=": (int(edge), float("inf")), ">": (int(edge) + 1, float("inf")),
                        "<=": (float("-inf"), int(edge) + 0.999), "<": (float("-inf"), int(edge) - 0.001)}[operator]
        first, _, last = created.partition("..")
        low, high = moment(first), moment(last or first, end=True)
        return None if low is None or high is None else (int(low), int(high) + 0.999)

    def cancel(self, owner: str, repo: str, run_id: int, force: bool) -> Answer:
        now = time.time()
        with self.lock:
            run = self.find(owner, repo, run_id)
            if run is None:
                return (*error(404, "Not Found"), {})
            status, _, _ = self.state(run, now)
            if status == "completed":
                anchor = "force-cancel-a-workflow-run" if force else "cancel-a-workflow-run"
                return (*error(409, "Cannot cancel a workflow run that is completed.",
                               f"https://docs.github.com/rest/actions/workflow-runs#{anchor}"), {})
            if force:
                run["force_at"] = now
            elif run["cancel_at"] is None:
                run["cancel_at"] = now
        return 202, {}, {}

    def runs_summary(self) -> list[dict]:
        """Every run, for GET /_github/runs (tests, the demo)."""
        now = time.time()
        with self.lock:
            summary = []
            for run in sorted(self.runs.values(), key=lambda r: r["id"]):
                status, conclusion, updated = self.state(run, now)
                summary.append({"id": run["id"], "repository": f"{run['owner']}/{run['repo']}",
                                "workflow": run["workflow"], "ref": run["ref"], "inputs": dict(run["inputs"]),
                                "display_title": run["inputs"].get("pao_correlation_id") or run["workflow"],
                                "html_url": f"{HTML_BASE}/{run['owner']}/{run['repo']}/actions/runs/{run['id']}",
                                "status": status, "conclusion": conclusion,
                                "cancel_requested": run["cancel_at"] is not None,
                                "force_cancelled": run["force_at"] is not None,
                                "created_at": iso(run["created"]), "updated_at": iso(updated)})
        return summary


def new_request_id() -> str:
    return uuid.uuid4().hex[:8].upper() + ":" + uuid.uuid4().hex[:6].upper()
