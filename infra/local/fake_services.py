"""Stand-ins for the outside services the example catalog calls, for the
local stack: JIRA's REST API (issues, comments), the DBaaS the rest-database
item provisions through, a team chat webhook, GitHub's REST API for
GitHub Actions under /github (fake_github.py: a GitHub App's JWTs and
installation tokens, workflow dispatches and runs that move on their own,
with levers for failures), and the HCP Terraform / Terraform Enterprise API
under /terraform (fake_terraform.py: workspaces, their variables, runs that
plan and apply on their own, state versions and their outputs, with levers
for failures). PAO reaches them through configured URLs (PAO_JIRA_URL,
DBAAS_URL, TEAM_WEBHOOK_URL, its GitHub API and Terraform base URLs) exactly
as it would reach the real ones, and they check what the real ones check:
the credentials PAO must send.

    GET /_calls         every call received so far (method, path without its
                        query, status), for the demo and for people watching
    GET /_github/runs   every GitHub Actions run with its repository, inputs
                        and state, for the tests and the demo
    GET /_terraform/workspaces   every Terraform workspace (deleted ones too)
                        with its variables (no sensitive value), runs and
                        current outputs' names, for the tests and the demo

    fake_services.py --make-app-key PATH   writes a GitHub App private key to
                        PATH if there is none, and exits

Standard library and `cryptography` (for the GitHub App's RS256 JWTs); state
is in memory and gone when the stack stops.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fake_github import PREFIX as GITHUB, GitHub, make_app_key
from fake_terraform import PREFIX as TERRAFORM, Terraform

MAX_BODY = 1024 * 1024


class State:
    def __init__(self, jira_user: str, jira_token: str, dbaas_token: str, github: GitHub, terraform: Terraform):
        self.lock = threading.Lock()
        self.github = github
        self.terraform = terraform
        self.jira_auth = "Basic " + base64.b64encode(f"{jira_user}:{jira_token}".encode()).decode()
        self.dbaas_auth = f"Bearer {dbaas_token}"
        self.issues: dict[str, dict] = {}
        self.counters: dict[str, int] = {}
        self.databases: dict[str, dict] = {}
        self.by_key: dict[str, str] = {}
        self.calls: list[dict] = []


class Handler(BaseHTTPRequestHandler):
    state: State
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:  # one JSON line per call instead
        pass

    def do_GET(self) -> None:
        if self.path == "/_health":
            return self.answer(200, {"ok": True}, record=False)
        if self.path == "/_calls":
            with self.state.lock:
                return self.answer(200, {"calls": list(self.state.calls)}, record=False)
        if self.path == "/_github/runs":
            return self.answer(200, {"runs": self.state.github.runs_summary()}, record=False)
        if self.path == "/_terraform/workspaces":
            return self.answer(200, {"workspaces": self.state.terraform.summary()}, record=False)
        if self.path.startswith(GITHUB + "/"):
            return self.github()
        if self.path.startswith(TERRAFORM + "/"):
            return self.terraform()
        self.answer(404, {"message": "no such route"})

    def do_POST(self) -> None:
        if self.path.startswith(GITHUB + "/"):
            return self.github()
        if self.path.startswith(TERRAFORM + "/"):
            return self.terraform()
        body = self.body()
        if body is None:
            return
        if self.path == "/jira/rest/api/2/issue":
            return self.create_issue(body)
        match = re.fullmatch(r"/jira/rest/api/2/issue/([A-Z][A-Z0-9]*-\d+)/comment", self.path)
        if match:
            return self.comment(match.group(1), body)
        if self.path == "/dbaas/v1/databases":
            return self.create_database(body)
        if self.path.startswith("/hooks/"):
            return self.answer(204, None)
        self.answer(404, {"message": "no such route"})

    def do_PATCH(self) -> None:
        if self.path.startswith(TERRAFORM + "/"):
            return self.terraform()
        self.answer(404, {"message": "no such route"})

    def do_DELETE(self) -> None:
        if self.path.startswith(TERRAFORM + "/"):
            return self.terraform()
        match = re.fullmatch(r"/dbaas/v1/databases/([a-z0-9-]+)", self.path)
        if not match:
            return self.answer(404, {"message": "no such route"})
        if not self.authorized(self.state.dbaas_auth):
            return
        with self.state.lock:
            found = self.state.databases.pop(match.group(1), None)
        self.answer(204 if found else 404, None if found else {"message": "no such database"})

    # ------------------------------------------------------------ JIRA
    def create_issue(self, body: dict) -> None:
        if not self.authorized(self.state.jira_auth):
            return
        fields = body.get("fields") or {}
        project = (fields.get("project") or {}).get("key")
        summary = fields.get("summary")
        if not project or not summary or not (fields.get("issuetype") or {}).get("name"):
            return self.answer(400, {"errorMessages": [], "errors": {"summary": "project, issuetype and summary are required"}})
        with self.state.lock:
            number = self.state.counters.get(project, 0) + 1
            self.state.counters[project] = number
            key = f"{project}-{number}"
            self.state.issues[key] = {"fields": fields, "comments": []}
        port = self.server.server_address[1]
        self.answer(201, {"id": str(10000 + number), "key": key, "self": f"http://127.0.0.1:{port}/jira/rest/api/2/issue/{key}"})

    def comment(self, key: str, body: dict) -> None:
        if not self.authorized(self.state.jira_auth):
            return
        with self.state.lock:
            issue = self.state.issues.get(key)
            if issue is not None:
                issue["comments"].append(body.get("body", ""))
        if issue is None:
            return self.answer(404, {"errorMessages": ["Issue does not exist"]})
        self.answer(201, {"id": str(uuid.uuid4().int % 100000)})

    # ------------------------------------------------------------ DBaaS
    def create_database(self, body: dict) -> None:
        if not self.authorized(self.state.dbaas_auth):
            return
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return self.answer(422, {"message": "name is required"})
        key = self.headers.get("Idempotency-Key") or str(uuid.uuid4())
        with self.state.lock:
            existing = self.state.by_key.get(key)
            if existing and existing in self.state.databases:
                return self.answer(201, self.state.databases[existing])
            database_id = f"db-{uuid.uuid4().hex[:12]}"
            port = 3306 if body.get("engine") == "mysql" else 5432
            # Like the real DBaaS, it makes a read-only user and answers its password once.
            database = {"id": database_id, "host": f"{name}.{body.get('environment', 'dev')}.dbaas.local",
                        "port": port, "status": "available",
                        "readonly": {"user": f"{name}_ro", "password": secrets.token_urlsafe(24)}}
            self.state.databases[database_id] = database
            self.state.by_key[key] = database_id
        self.answer(201, database)

    # ------------------------------------------------------------ GitHub
    def github(self) -> None:
        raw = self.raw_body()
        if raw is None:
            return
        status, body, headers = self.state.github.handle(self.command, self.path, self.headers, raw,
                                                         self.headers.get("Host"))
        self.answer(status, body, headers=headers)

    # ------------------------------------------------------------ HCP Terraform
    def terraform(self) -> None:
        raw = self.raw_body()
        if raw is None:
            return
        status, body, headers = self.state.terraform.handle(self.command, self.path, self.headers, raw)
        self.answer(status, body, headers=headers)

    # ------------------------------------------------------------ plumbing
    def authorized(self, expected: str) -> bool:
        if self.headers.get("Authorization") == expected:
            return True
        self.answer(401, {"message": "missing or wrong credentials"})
        return False

    def raw_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.answer(413, {"message": "too large"})
            return None
        return self.rfile.read(length) if length else b""

    def body(self) -> dict | None:
        raw = self.raw_body()
        if raw is None:
            return None
        if not raw:
            return {}
        try:
            parsed = json.loads(raw)
        except ValueError:
            self.answer(400, {"message": "the body is not JSON"})
            return None
        return parsed if isinstance(parsed, dict) else {}

    def answer(self, status: int, body: dict | str | None, record: bool = True,
               headers: dict[str, str] | None = None) -> None:
        headers = dict(headers or {})
        if isinstance(body, str):
            data = body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        else:
            data = b"" if body is None else json.dumps(body).encode()
            if body is not None:
                headers.setdefault("Content-Type", "application/json")
        if record:
            # Recorded before the answer leaves, so a caller's next call is
            # never listed before this one. The path without its query:
            # nothing a caller sent beyond the route is kept.
            path = self.path.split("?", 1)[0]
            call = {"at": time.strftime("%H:%M:%S"), "method": self.command, "path": path, "status": status}
            with self.state.lock:
                self.state.calls.append(call)
            sys.stdout.write(json.dumps(call) + "\n")
            sys.stdout.flush()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int)
    parser.add_argument("--make-app-key", metavar="PATH",
                        help="write a GitHub App private key (RSA 2048, PKCS#1 PEM) to PATH if there is none, and exit")
    args = parser.parse_args()
    if args.make_app_key:
        make_app_key(args.make_app_key)
        return 0
    if args.port is None:
        parser.error("--port is required")
    # Credentials come from the environment, never the command line (ps shows it):
    # GitHub's from PAO_GITHUB_APP_ID, PAO_GITHUB_APP_KEY_FILE and PAO_GITHUB_TOKEN,
    # HCP Terraform's from PAO_TFC_TOKEN (without it, every Terraform call is 401).
    Handler.state = State(os.environ["PAO_JIRA_USER"], os.environ["PAO_JIRA_API_TOKEN"], os.environ["DBAAS_TOKEN"],
                          GitHub.from_env(os.environ), Terraform.from_env(os.environ))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
