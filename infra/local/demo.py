"""PAO end to end on the running local stack (`make up` first).

1. An automated request for the rest-database example: its rest-api action
   creates the database on the (fake) DBaaS, its webhook tells the team.
2. A manual request for the messaging-queue example: PAO opens a JIRA issue
   (on the fake JIRA) and waits; the demo then plays JIRA's webhook, signed
   with the shared secret, as a platform engineer resolving the issue would.

Every status change is shown as it happens, with the actions' progress.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USER = "demo@example.com"
GROUPS = "developers"
DEADLINE_SECONDS = 120


def load_env(name: str) -> dict[str, str]:
    path = ROOT / ".local" / name / "stack.env"
    if not path.exists():
        sys.exit(f"no running stack: {path} is missing (run `make up` first)")
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


class Api:
    def __init__(self, base: str):
        self.base = base.rstrip("/")

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None,
             raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "X-Pao-Dev-User": USER, "X-Pao-Dev-Groups": GROUPS, "Content-Type": "application/json",
            **(headers or {}),
        })
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")


def bar(done: int, total: int, width: int = 20) -> str:
    filled = width * done // total if total else 0
    return "[" + "#" * filled + "-" * (width - filled) + f"] {done}/{total}"


def follow(api: Api, request_id: str, until: set[str]) -> dict:
    """Prints each change of the request and its actions until it reaches one of `until`."""
    seen_status, seen_actions = None, {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        _, view = api.call("GET", f"/api/v1/requests/{request_id}/status")
        actions = view.get("actions", [])
        changed = view["status"] != seen_status
        for action in actions:
            if seen_actions.get(action["id"]) != action["status"]:
                seen_actions[action["id"]] = action["status"]
                changed = True
        if changed:
            seen_status = view["status"]
            finished = sum(1 for a in actions if a["status"] in ("Succeeded", "Compensated"))
            steps = ", ".join(f"{a['id']}={a['status']}" for a in actions) or "no actions yet"
            print(f"  {time.strftime('%H:%M:%S')}  {view['status']:<11} {bar(finished, len(actions))}  {steps}")
        if view["status"] in until:
            return view
        time.sleep(0.3)
    sys.exit(f"request {request_id} did not reach {sorted(until)} within {DEADLINE_SECONDS} s")


def submit(api: Api, item_id: str, fields: dict) -> str:
    status, body = api.call("POST", "/api/v1/requests", {"item_id": item_id, "fields": fields},
                            {"Idempotency-Key": f"demo-{uuid.uuid4()}"})
    if status != 202:
        sys.exit(f"submission refused ({status}): {json.dumps(body)}")
    print(f"  submitted {body['id']} ({item_id} {body['item_version']}), status {body['status']}")
    return body["id"]


def jira_webhook(api: Api, secret: str, key: str, status: str, category: str, resolution: str | None) -> dict:
    fields = {"status": {"name": status, "statusCategory": {"key": category}}}
    if resolution:
        fields["resolution"] = {"name": resolution}
    raw = json.dumps({"webhookEvent": "jira:issue_updated", "issue": {"key": key, "fields": fields}}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    _, answer = api.call("POST", "/api/v1/webhooks/jira", raw=raw, headers={"X-Hub-Signature": signature})
    return answer


# Typed into a password field: it must end up in Secrets Manager and nowhere
# else, the stack's logs included (checked at the end).
DEMO_PASSWORD = "a long demo passphrase"


def main() -> int:
    stack = os.environ.get("PAO_STACK", "dev")
    env = load_env(stack)
    api = Api(env["PAO_API_URL"])

    print("1. automated: a PostgreSQL database from the rest-database item")
    request_id = submit(api, "rest-database", {
        "db_name": "orders", "engine": "postgres", "environment": "dev", "plan": "small",
        "admin_username": "app_admin", "storage_gb": 20, "admin_password": DEMO_PASSWORD,
    })
    done = follow(api, request_id, {"Completed", "Failed"})
    database = next((a for a in done["actions"] if a["id"] == "database"), {})
    print(f"  outputs of `database`: {json.dumps(database.get('outputs', {}))}")
    if done["status"] != "Completed":
        print(f"  reason: {done.get('reason')}")
        return 1

    print("\n2. manual: a queue from the messaging-queue item, through a JIRA ticket")
    request_id = submit(api, "messaging-queue", {
        "queue_name": "orders-events", "environment": "dev", "queue_type": "standard", "throughput": 50,
        "retention_days": 4, "data_classification": "internal", "dead_letter_queue": False,
        "consumers": "The billing service reads order events.",
    })
    waiting = follow(api, request_id, {"InProgress", "Failed"})
    deadline = time.monotonic() + DEADLINE_SECONDS
    key = None
    while key is None and time.monotonic() < deadline:
        _, view = api.call("GET", f"/api/v1/requests/{request_id}/status")
        ticket = next((a for a in view.get("actions", []) if a["id"] == "ticket"), None)
        key = ticket and ticket["outputs"].get("issue_key")
        time.sleep(0.3)
    if waiting["status"] != "InProgress" or key is None:
        print(f"  no ticket was opened: {waiting.get('reason')}")
        return 1
    print(f"  JIRA issue {key} is open; the request waits for the platform team")
    secret = env["PAO_JIRA_WEBHOOK_SECRET"]
    forged = jira_webhook(api, "a guess", key, "Done", "done", "Done")
    print(f"  a delivery with a forged signature: {json.dumps(forged)}")
    print(f"  JIRA: {key} moves to In Progress -> {json.dumps(jira_webhook(api, secret, key, 'In Progress', 'indeterminate', None))}")
    print(f"  JIRA: {key} is resolved as Done -> {json.dumps(jira_webhook(api, secret, key, 'Done', 'done', 'Done'))}")
    done = follow(api, request_id, {"Completed", "Failed"})
    if done["status"] != "Completed":
        return 1

    print("\nwhat the fake services received:")
    with urllib.request.urlopen(f"{env['PAO_FAKE_URL']}/_calls", timeout=10) as response:
        for call in json.load(response)["calls"][-6:]:
            print(f"  {call['at']}  {call['method']:<6} {call['path']} -> {call['status']}")

    print("\nsecrets in the stack's logs:")
    check = subprocess.run([sys.executable, str(Path(__file__).with_name("check_logs.py")),
                            "--name", stack, "--secret", f"admin_password={DEMO_PASSWORD}"])
    return check.returncode


if __name__ == "__main__":
    sys.exit(main())
