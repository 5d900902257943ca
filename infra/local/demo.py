"""PAO end to end on the running local stack (`make up` first).

1. An automated request for the rest-database example: its rest-api action
   creates the database on the (fake) DBaaS, its webhook tells the team.
2. A manual request for the messaging-queue example: PAO opens a JIRA issue
   (on the fake JIRA) and waits; the demo then plays JIRA's webhook, signed
   with the shared secret, as a platform engineer resolving the issue would.
3. The flagship: an eks-app-stack request, exposed publicly and autoscaled,
   provisions VPC -> database -> secret -> cluster -> app natively (moto
   for AWS, the Kubernetes stand-in for the cluster's API); the demo shows
   what was made, the state transitions and wall time it took, then rolls it
   back and shows what is kept: the final DB snapshot and the secret in its
   recovery window.
4. A deployment through GitHub Actions: a github-app-deploy request
   dispatches the repository's deploy.yml on the (fake) GitHub as a GitHub
   App and waits for the run; then one whose image tag makes the workflow
   fail ends Failed with the run's page in its reason.

Every status change is shown as it happens, with the actions' progress.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import ssl
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
DEADLINE_SECONDS = 300


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


def aws(env: dict[str, str], service: str):
    import boto3

    return boto3.client(service, endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def cluster_objects(env: dict[str, str], cluster: str, namespace: str) -> list[dict]:
    """What the Kubernetes stand-in holds in `namespace` of `cluster`."""
    context = ssl.create_default_context(cafile=env["PAO_KUBE_CA_FILE"])
    url = f"{env['PAO_KUBE_URL']}/_objects?cluster={cluster}"
    with urllib.request.urlopen(url, timeout=10, context=context) as response:
        objects = json.load(response)["clusters"].get(cluster, [])
    return [o for o in objects if o["metadata"].get("namespace") == namespace
            or (o["kind"] == "Namespace" and o["metadata"]["name"] == namespace)]


def state_transitions(env: dict[str, str], execution_arn: str) -> int:
    """States entered by the execution: what Step Functions bills."""
    sfn = aws(env, "stepfunctions")
    entered, token = 0, None
    while True:
        page = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000,
                                         **({"nextToken": token} if token else {}))
        entered += sum(1 for event in page["events"] if event["type"].endswith("StateEntered"))
        token = page.get("nextToken")
        if not token:
            return entered


def eks_stack(api: Api, env: dict[str, str], values: dict[str, str]) -> int:
    """Runs the stack and rolls it back; puts its secrets' values in
    `values`, for the search of the logs."""
    app = f"shop-{uuid.uuid4().hex[:6]}"
    _, form = api.call("GET", "/api/v1/catalog/items/eks-app-stack/schema")
    fields = {name: spec["default"] for name, spec in form["schema"]["properties"].items() if "default" in spec}
    fields.update({
        "app_name": app, "image": "registry.example.com/shop:1.4.2", "replicas": 2,
        "pod_autoscaling": True, "max_replicas": 6, "expose_publicly": True,
        "ingress_host": f"{app}.apps.example.com", "owner_email": "shop-team@example.com",
        "cost_center": "CC-4711",
    })
    started = time.monotonic()
    request_id = submit(api, "eks-app-stack", fields)
    done = follow(api, request_id, {"Completed", "Failed"})
    took = time.monotonic() - started
    if done["status"] != "Completed":
        print(f"  reason: {done.get('reason')}")
        return 1
    outputs = {a["id"]: a.get("outputs", {}) for a in done["actions"]}
    _, request = api.call("GET", f"/api/v1/requests/{request_id}")
    transitions = state_transitions(env, request["execution_arn"])
    print(f"  completed in {took:.1f} s, {transitions} state transitions (polls included)")
    network, database, secret, cluster = (outputs.get(k, {}) for k in ("network", "database", "app_secret", "cluster"))
    print(f"  VPC        {network.get('vpc_id')}: private subnets {', '.join(network.get('private_subnet_ids', []))}")
    print(f"  database   {database.get('endpoint')}:{database.get('port')} ({database.get('db_instance_id')})")
    print(f"  secrets    {secret.get('secret_arn')}")
    print(f"             {database.get('master_secret_arn')} (the master password, kept by RDS)")
    print(f"  cluster    {cluster.get('cluster_name')}")
    objects = cluster_objects(env, cluster.get("cluster_name", ""), app)
    print(f"  on it, in namespace {app}: {', '.join(sorted(o['kind'] + '/' + o['metadata']['name'] for o in objects))}")
    deployment = next((o for o in objects if o["kind"] == "Deployment"), None)
    if deployment is None:
        print("  no Deployment on the cluster")
        return 1
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    print(f"  Deployment {app}: {container['image']} x {deployment['spec']['replicas']}, "
          f"{deployment['status'].get('availableReplicas', 0)} available")
    for var in container.get("env", []):
        if "value" in var:
            shown = var["value"].strip().replace("\n", "\\n")
            shown = shown if len(shown) < 110 else shown[:107] + "..."
            print(f"    {var['name']:<22} = {shown}")
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            print(f"    {var['name']:<22} <- Secret {ref['name']}/{ref['key']} (synced by External Secrets)")
    external = next((o for o in objects if o["kind"] == "ExternalSecret"), {})
    for item in external.get("spec", {}).get("data", []):
        print(f"    ExternalSecret {item['secretKey']:<20} <- {item['remoteRef']['key']}")
    print(f"  url: {outputs.get('app', {}).get('url')}")
    secrets_manager = aws(env, "secretsmanager")
    values["app_secret"] = secrets_manager.get_secret_value(SecretId=secret["secret_arn"])["SecretString"]
    master = secrets_manager.get_secret_value(SecretId=database["master_secret_arn"])["SecretString"]
    values["db_master_password"] = json.loads(master)["password"]

    print("  rolling it back")
    status, body = api.call("POST", f"/api/v1/requests/{request_id}/rollback")
    if status != 202:
        print(f"  rollback refused ({status}): {json.dumps(body)}")
        return 1
    rolled = follow(api, request_id, {"RolledBack", "Failed"})
    if rolled["status"] != "RolledBack":
        print(f"  reason: {rolled.get('reason')}")
        return 1
    snapshots = [s["DBSnapshotIdentifier"] for s in aws(env, "rds").describe_db_snapshots()["DBSnapshots"]
                 if request_id.lower() in s["DBSnapshotIdentifier"]]
    print(f"  kept: final snapshot {', '.join(snapshots)}")
    described = secrets_manager.describe_secret(SecretId=secret["secret_arn"])
    print(f"  kept: secret {described['Name']}, scheduled for deletion (restorable for 7 days)")
    left = cluster_objects(env, cluster.get("cluster_name", ""), app)
    print(f"  namespace {app} on the cluster: {'gone' if not left else 'still there'}")
    return 0 if not left else 1


def github_deploy(api: Api) -> int:
    _, form = api.call("GET", "/api/v1/catalog/items/github-app-deploy/schema")
    fields = {name: spec["default"] for name, spec in form["schema"]["properties"].items() if "default" in spec}
    fields.update({"repository": "checkout-service", "image_tag": "1.8.2", "notify_team": False})
    request_id = submit(api, "github-app-deploy", fields)
    done = follow(api, request_id, {"Completed", "Failed"})
    deploy = next((a for a in done["actions"] if a["id"] == "deploy"), {})
    print(f"  outputs of `deploy`: {json.dumps(deploy.get('outputs', {}))}")
    if done["status"] != "Completed":
        print(f"  reason: {done.get('reason')}")
        return 1
    print("  the same with image tag 1.8.3-fail (the fake's workflow fails on it):")
    fields["image_tag"] = "1.8.3-fail"
    failing = follow(api, submit(api, "github-app-deploy", fields), {"Completed", "Failed"})
    print(f"  reason: {failing.get('reason')}")
    return 0 if failing["status"] == "Failed" else 1


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

    print("\n3. native: the eks-app-stack item, VPC -> database -> secret -> cluster -> app")
    stack_secrets: dict[str, str] = {}
    if eks_stack(api, env, stack_secrets) != 0:
        return 1

    print("\n4. automated: a deployment through GitHub Actions, from the github-app-deploy item")
    if github_deploy(api) != 0:
        return 1

    print("\nwhat the fake services received:")
    with urllib.request.urlopen(f"{env['PAO_FAKE_URL']}/_calls", timeout=10) as response:
        for call in json.load(response)["calls"][-6:]:
            print(f"  {call['at']}  {call['method']:<6} {call['path']} -> {call['status']}")

    print("\nsecrets in the stack's logs:")
    check = subprocess.run([sys.executable, str(Path(__file__).with_name("check_logs.py")),
                            "--name", stack, "--secret", f"admin_password={DEMO_PASSWORD}",
                            *(arg for name, value in stack_secrets.items() for arg in ("--secret", f"{name}={value}"))])
    return check.returncode


if __name__ == "__main__":
    sys.exit(main())
