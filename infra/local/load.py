"""Load test: N concurrent submissions through the local API.

Sends N (default 1,000) submissions at once, each with its own
Idempotency-Key, as one user made up for the run. On one machine the local
stack cannot run a thousand functions at once as Lambda would, so requests
queue at the local gateway (a client waits up to 10 minutes); a client that
gets a 429 (the route's throttle), a 503 or a dropped connection retries
with the same key, as a portal does. Then it checks that exactly N requests exist
for that user and exactly N executions are named after them: nothing lost,
nothing duplicated. Prints throughput and latency. Bounded in count and time
(15 minutes); loopback only.

Usage: load.py [--requests N] [--concurrency C]   (needs a stack: make up)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "db_name": "orders", "engine": "postgres", "environment": "dev", "plan": "small",
    "admin_username": "app_admin", "storage_gb": 20, "admin_password": "Tr0ub4dor&3 horse staple",
}
TIMEOUT_SECONDS = 600
# The whole run stops by itself after this long.
DEADLINE_SECONDS = 900


def stack_env(name: str) -> dict[str, str]:
    path = ROOT / ".local" / name / "stack.env"
    if not path.exists():
        sys.exit(f"load: no {name} stack ({path} is missing): run `make up` first")
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def call(api: str, user: str, method: str, path: str, body: dict | None = None, key: str | None = None):
    headers = {"X-Pao-Dev-User": user, "X-Pao-Dev-Groups": "developers"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if key:
        headers["Idempotency-Key"] = key
    request = urllib.request.Request(f"{api}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
    except (urllib.error.URLError, OSError) as err:
        return 0, {"error": str(err)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--name", default="dev", help="the stack (.local/NAME)")
    args = parser.parse_args()
    env = stack_env(args.name)
    api = env["PAO_API_URL"]
    user = f"load-{uuid.uuid4().hex[:12]}@example.com"

    deadline = time.monotonic() + DEADLINE_SECONDS

    def submit(index: int):
        # A client retries a 429, a 503 or a dropped connection with the same
        # Idempotency-Key, as a portal would: the retry must not duplicate.
        started, attempts = time.monotonic(), 0
        while True:
            attempts += 1
            status, body = call(api, user, "POST", "/api/v1/requests",
                                {"item_id": "rest-database", "fields": FIELDS}, key=f"load-{index}")
            if status not in (0, 429, 502, 503, 504) or time.monotonic() > deadline:
                return status, body.get("id"), time.monotonic() - started, attempts
            time.sleep(min(10.0, 0.5 * attempts))

    print(f"load: {args.requests} submissions, {args.concurrency} at once, as {user}")
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(submit, range(args.requests)))
    elapsed = time.monotonic() - began
    failures = [status for status, _, _, _ in results if status != 202]
    latencies = sorted(latency for _, _, latency, _ in results)
    ids = {request_id for status, request_id, _, _ in results if status == 202}
    retried = sum(1 for *_, attempts in results if attempts > 1)
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"load: {len(results)} answered in {elapsed:.1f} s ({len(results) / elapsed:.0f}/s); "
          f"p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
          f"{retried} retried; {len(failures)} not 202 in the end {sorted(set(failures))}")

    listed, token = set(), None
    while True:
        path = "/api/v1/requests?limit=100" + (f"&next_token={token}" if token else "")
        status, page = call(api, user, "GET", path)
        if status in (0, 429, 503) and time.monotonic() < deadline:
            time.sleep(2)
            continue
        if status != 200:
            print(f"load: listing failed with {status}: {page}")
            return 1
        listed.update(r["id"] for r in page["requests"])
        token = page.get("next_token")
        if not token:
            break

    sfn = boto3.client("stepfunctions", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                       aws_access_key_id="test", aws_secret_access_key="test")
    executions = set()
    for page in sfn.get_paginator("list_executions").paginate(
            stateMachineArn=env["PAO_FULFILLMENT_STATE_MACHINE_ARN"]):
        executions.update(e["name"] for e in page["executions"] if e["name"] in ids)

    ok = not failures and len(ids) == len(listed) == len(executions) == args.requests
    print(f"load: {len(ids)} distinct requests answered, {len(listed)} listed, {len(executions)} executions "
          f"— {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
