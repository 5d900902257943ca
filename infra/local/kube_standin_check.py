"""Checks the Kubernetes API stand-in for real, the way the kubernetes-deploy
action will meet it, with no Rust: moto (through moto_launcher.py) and
kube_standin.py are started on free ports; EKS clusters made in moto must
point at the stand-in with its CA; tokens are made as `aws eks get-token`
makes them (botocore) and the stand-in must take exactly the right ones;
every call goes over TLS trusting the stack's CA alone, as a client of EKS
trusts `certificateAuthority.data`. Then what the action does: apply,
poll a rollout, fail on an image that cannot be pulled, be refused an
invalid object, sync an ExternalSecret, delete a namespace; what the
platform's bootstrap put in every cluster (the namespace external-secrets,
the ClusterSecretStore aws-secrets-manager, Ready); pods that wait for the
Secrets their environment names (CreateContainerConfigError) and start
once an ExternalSecret, or a client, writes them.

Each check prints `ok` or `FAIL` and what it checked; the run exits 1 if
any failed. The processes are started in sessions of their own and stopped
by PID (their process group) whatever happens; the whole run is bounded
by DEADLINE_SECONDS. It takes about 20 s, most of it the rollouts and
deletions the stand-in plays in real time.

Usage: kube_standin_check.py
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import boto3
import botocore.auth
import botocore.session
from botocore.compat import HAS_CRT
from botocore.config import Config

if HAS_CRT:
    import botocore.crt.auth

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from check_harness import Checks, free_port, run_checks, start, stop, wait_for  # noqa: E402

DEADLINE_SECONDS = 120
START_SECONDS = 60
REGION = "us-east-1"
APPLY = "application/apply-patch+yaml"
PLACEHOLDER = "pao-local-placeholder-not-a-secret"
# What the stand-in's cluster bootstrap installs by default (kube/bootstrap.py).
PLATFORM_STORE = "aws-secrets-manager"


class Kube:
    """HTTPS calls to the stand-in, trusting its CA and nothing else."""

    def __init__(self, base: str, ca_file: Path):
        self.base = base
        self.context = ssl.create_default_context(cafile=str(ca_file))

    def call(self, method: str, path: str, token: str | None, body: Any = None,
             content_type: str = APPLY) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)


# ---------------------------------------------------------------- tokens, as `aws eks get-token` makes them
def eks_token(cluster: str, secret: str = "test", session_token: str | None = None, endpoint: str | None = None,
              regional: bool = True, expires: int = 60, signed_at: datetime.datetime | None = None,
              crt: bool = HAS_CRT) -> str:
    """awscli's customizations/eks/get_token.py: presign sts:GetCallerIdentity
    with the header `x-k8s-aws-id` added before signing, ExpiresIn=60.
    botocore signs with the AWS CRT when it is installed (it is here), else
    with its own SigV4 code; `crt=False` picks the latter."""
    session = botocore.session.get_session()
    session.set_credentials("test", secret, session_token)
    if not regional:
        session.set_config_variable("sts_regional_endpoints", "legacy")
    # The real STS host, whatever AWS_ENDPOINT_URL says: that is what EKS checks.
    sts = session.create_client("sts", region_name=REGION, endpoint_url=endpoint,
                                config=Config(ignore_configured_endpoint_urls=True))

    def keep_cluster_id(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "x-k8s-aws-id" in params:
            context["x-k8s-aws-id"] = params.pop("x-k8s-aws-id")

    def sign_cluster_id(request: Any, **_: Any) -> None:
        if "x-k8s-aws-id" in request.context:
            request.headers["x-k8s-aws-id"] = request.context["x-k8s-aws-id"]

    sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", keep_cluster_id)
    sts.meta.events.register("before-sign.sts.GetCallerIdentity", sign_cluster_id)
    def clock(remove_tzinfo: bool = True) -> datetime.datetime:
        moment = signed_at or _utcnow()
        return moment.replace(tzinfo=None) if remove_tzinfo else moment

    with contextlib.ExitStack() as patches:
        patches.enter_context(mock.patch.object(botocore.auth, "get_current_datetime", clock))
        if crt:
            patches.enter_context(mock.patch.object(botocore.crt.auth, "get_current_datetime", clock))
        else:
            python_signer = {"v4-query": botocore.auth.SigV4QueryAuth}
            patches.enter_context(mock.patch.dict(botocore.auth.AUTH_TYPE_MAPS, python_signer))
        url = sts.generate_presigned_url("get_caller_identity", Params={"x-k8s-aws-id": cluster},
                                         ExpiresIn=expires, HttpMethod="GET")
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _tampered(token: str) -> str:
    url = base64.urlsafe_b64decode(token[len("k8s-aws-v1."):] + "==").decode()
    flipped = url[:-1] + ("0" if url[-1] != "0" else "1")
    return "k8s-aws-v1." + base64.urlsafe_b64encode(flipped.encode()).decode().rstrip("=")


# ---------------------------------------------------------------- objects, as the action applies them
def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": "checks"}}}


def deployment(name: str, ns: str, image: str, replicas: Any = 2) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "pao"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "app", "image": image, "ports": [{"containerPort": 8080}],
                          "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}}}


def external_secret(name: str, ns: str, store: str) -> dict[str, Any]:
    return {"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"refreshInterval": "1h", "secretStoreRef": {"kind": "ClusterSecretStore", "name": store},
                     "target": {"name": f"{name}-env", "creationPolicy": "Owner"},
                     "data": [
                         {"secretKey": "DATABASE_PASSWORD", "remoteRef": {"key": "pao/db", "property": "password"}},
                         {"secretKey": "APP_SECRET_KEY", "remoteRef": {"key": "pao/app"}},
                     ]}}


# A store of the checks' own, beside the platform's.
CLUSTER_SECRET_STORE = {
    "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore", "metadata": {"name": "team-store"},
    "spec": {"provider": {"aws": {"service": "SecretsManager", "region": REGION,
                                  "auth": {"jwt": {"serviceAccountRef": {"name": "external-secrets",
                                                                         "namespace": "external-secrets"}}}}}},
}


def with_env(obj: dict[str, Any], env: list[dict[str, Any]] | None = None,
             env_from: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    if env:
        container["env"] = env
    if env_from:
        container["envFrom"] = env_from
    return obj


def secret_key(variable: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref = {"name": secret, "key": key, **({"optional": True} if optional else {})}
    return {"name": variable, "valueFrom": {"secretKeyRef": ref}}


def secret(name: str, ns: str, keys: list[str]) -> dict[str, Any]:
    data = {key: base64.b64encode(b"value").decode() for key in keys}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": name, "namespace": ns},
            "data": data}


def path_of(obj: dict[str, Any], plural: str, query: str = "fieldManager=pao&force=true") -> str:
    group_version = obj["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    ns = obj["metadata"].get("namespace")
    where = f"/namespaces/{ns}" if ns else ""
    return f"{base}{where}/{plural}/{obj['metadata']['name']}" + (f"?{query}" if query else "")


def wait_until(probe: Callable[[], Any], seconds: float) -> tuple[Any, float]:
    """The first truthy answer of `probe` and how long it took, or None."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        found = probe()
        if found:
            return found, time.monotonic() - started
        time.sleep(0.1)
    return None, time.monotonic() - started


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


# ---------------------------------------------------------------- the checks
def check_eks(check: Checks, aws_url: str, kube_url: str, ca_pem: bytes) -> dict[str, str]:
    eks = boto3.client("eks", endpoint_url=aws_url, region_name=REGION, aws_access_key_id="test",
                       aws_secret_access_key="test")
    endpoints = {}
    for name in ("pao-check-a", "pao-check-b"):
        created = eks.create_cluster(name=name, roleArn="arn:aws:iam::123456789012:role/eks",
                                     resourcesVpcConfig={"subnetIds": ["subnet-1", "subnet-2"]})["cluster"]
        described = eks.describe_cluster(name=name)["cluster"]
        expected = f"{kube_url}/clusters/{name}"
        for answer, said in ((created, "CreateCluster"), (described, "DescribeCluster")):
            check(f"{said} {name}: endpoint is {expected}", answer["endpoint"] == expected, answer["endpoint"])
            data = answer["certificateAuthority"]["data"]
            check(f"{said} {name}: certificateAuthority.data is base64 of the stand-in's CA PEM",
                  base64.b64decode(data) == ca_pem, data[:40])
        endpoints[name] = described["endpoint"]
    return endpoints


def check_tls(check: Checks, kube: Kube, endpoint: str, token: str) -> None:
    status, body = kube.call("GET", endpoint.removeprefix(kube.base) + "/version", token)
    check("TLS trusting the CA from certificateAuthority.data: GET /version answers", status == 200, body)
    check("/version reports Kubernetes 1.32", body.get("gitVersion", "").startswith("v1.32"), body)
    try:
        urllib.request.urlopen(endpoint + "/version", context=ssl.create_default_context(), timeout=10)
        check("the system's CAs do not trust the stand-in", False, "the connection was trusted")
    except urllib.error.URLError as err:
        check("the system's CAs do not trust the stand-in", isinstance(err.reason, ssl.SSLCertVerificationError),
              err)


def check_tokens(check: Checks, kube: Kube, path: str, cluster: str, other: str) -> None:
    accepted = {
        "a token from the regional STS host": eks_token(cluster),
        "a token signed by botocore's own SigV4 code (not the CRT)": eks_token(cluster, crt=False),
        "a token from the global STS host (sts.amazonaws.com)": eks_token(cluster, regional=False),
        "a token signed with a session token (X-Amz-Security-Token)": eks_token(cluster, session_token="FwoGZX+/="),
        "a token signed 14 minutes ago": eks_token(cluster, signed_at=_utcnow() - datetime.timedelta(minutes=14)),
    }
    for what, token in accepted.items():
        status, body = kube.call("GET", path, token)
        check(f"accepted: {what}", status == 200, body)
    refused = {
        "no token": None,
        "a token for another cluster": eks_token(other),
        "a tampered signature": _tampered(eks_token(cluster)),
        "a token signed with another secret key": eks_token(cluster, secret="not-the-local-secret"),
        "a token signed 16 minutes ago (expired)":
            eks_token(cluster, signed_at=_utcnow() - datetime.timedelta(minutes=16)),
        "a token dated an hour ahead": eks_token(cluster, signed_at=_utcnow() + datetime.timedelta(hours=1)),
        "a token for a host that is not STS": eks_token(cluster, endpoint="https://sts.example.com"),
        "a token over http": eks_token(cluster, endpoint="http://sts.us-east-1.amazonaws.com"),
        "a token with X-Amz-Expires over 900": eks_token(cluster, expires=3600),
        "a token without its prefix": eks_token(cluster).removeprefix("k8s-aws-v1."),
    }
    for what, token in refused.items():
        status, body = kube.call("GET", path, token)
        check(f"refused with 401 Unauthorized Status: {what}",
              status == 401 and body.get("kind") == "Status" and body.get("reason") == "Unauthorized", (status, body))


def check_discovery(check: Checks, kube: Kube, base: str, token: str) -> None:
    _, apis = kube.call("GET", f"{base}/apis", token)
    groups = {group["name"] for group in apis.get("groups", [])}
    check("/apis lists apps, autoscaling, networking.k8s.io, policy, external-secrets.io",
          {"apps", "autoscaling", "networking.k8s.io", "policy", "external-secrets.io"} <= groups, groups)
    _, api = kube.call("GET", f"{base}/api", token)
    check("/api lists v1", api.get("versions") == ["v1"], api)
    _, listed = kube.call("GET", f"{base}/apis/apps/v1", token)
    check("/apis/apps/v1 lists deployments", "deployments" in {r["name"] for r in listed.get("resources", [])}, listed)


def check_bootstrap(check: Checks, kube: Kube, base: str, token: str) -> None:
    status, listed = kube.call("GET", f"{base}/apis/external-secrets.io/v1/clustersecretstores", token)
    stores = {store["metadata"]["name"]: store for store in listed.get("items", [])}
    store = stores.get(PLATFORM_STORE, {})
    check(f"a new cluster lists the platform's ClusterSecretStore {PLATFORM_STORE}, Ready True, reason Valid",
          status == 200 and list(stores) == [PLATFORM_STORE] and condition(store, "Ready").get("status") == "True"
          and condition(store, "Ready").get("reason") == "Valid", listed)
    aws = store.get("spec", {}).get("provider", {}).get("aws", {})
    check("it reads Secrets Manager in us-east-1 as the service account external-secrets/external-secrets",
          aws.get("service") == "SecretsManager" and aws.get("region") == REGION
          and aws.get("auth", {}).get("jwt", {}).get("serviceAccountRef")
          == {"name": "external-secrets", "namespace": "external-secrets"}, store)
    managers = [entry["manager"] for entry in store.get("metadata", {}).get("managedFields", [])]
    check("it is not PAO's: labelled managed-by platform-bootstrap, field manager platform-bootstrap",
          store.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/managed-by") == "platform-bootstrap"
          and managers == ["platform-bootstrap"], store.get("metadata"))
    status, found = kube.call("GET", f"{base}/api/v1/namespaces/external-secrets", token)
    check("and the namespace external-secrets, Active",
          status == 200 and found.get("status", {}).get("phase") == "Active", found)


def check_namespace_apply(check: Checks, kube: Kube, base: str, token: str, name: str) -> None:
    status, created = kube.call("PATCH", base + path_of(namespace(name), "namespaces"), token, namespace(name))
    check("apply of a new Namespace: 201 with uid, creationTimestamp, resourceVersion, generation 1",
          status == 201 and created["metadata"].get("uid") and created["metadata"].get("creationTimestamp")
          and created["metadata"].get("resourceVersion") and created["metadata"].get("generation") == 1, created)
    status, again = kube.call("PATCH", base + path_of(namespace(name), "namespaces"), token, namespace(name))
    check("the same apply again: 200, resourceVersion unchanged",
          status == 200 and again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"], again)
    entry = (created["metadata"].get("managedFields") or [{}])[0]
    check("managedFields: one Apply entry for manager pao, FieldsV1",
          entry.get("manager") == "pao" and entry.get("operation") == "Apply" and entry.get("fieldsType") == "FieldsV1"
          and "f:metadata" in entry.get("fieldsV1", {}), created["metadata"].get("managedFields"))
    check("the Namespace is Active", created.get("status", {}).get("phase") == "Active", created)


def check_rollout(check: Checks, kube: Kube, base: str, token: str, ns: str) -> None:
    web = deployment("web", ns, "public.ecr.aws/nginx/nginx:1.27")
    applied_at = time.monotonic()
    status, created = kube.call("PATCH", base + path_of(web, "deployments"), token, web)
    check("apply of a valid Deployment: 201, generation 1", status == 201 and created["metadata"]["generation"] == 1,
          (status, created))
    status_path = base + path_of(web, "deployments", query="") + "/status"

    def available() -> dict[str, Any] | None:
        _, found = kube.call("GET", status_path, token)
        return found if condition(found, "Available").get("status") == "True" else None

    rolled, _ = wait_until(available, 6)
    took = time.monotonic() - applied_at
    check(f"the rollout becomes available after about 2 s (took {took:.1f} s)", rolled is not None and 1.5 <= took <= 4,
          took)
    if rolled is None:
        return
    s = rolled["status"]
    check("status: observedGeneration 1, replicas, updated, ready and available 2",
          s.get("observedGeneration") == 1 and s.get("replicas") == s.get("updatedReplicas") == s.get("readyReplicas")
          == s.get("availableReplicas") == 2, s)
    check("Progressing True, reason NewReplicaSetAvailable",
          condition(rolled, "Progressing").get("reason") == "NewReplicaSetAvailable", s)
    _, pods = kube.call("GET", f"{base}/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb", token)
    running = [p for p in pods.get("items", []) if p["status"]["phase"] == "Running"
               and all(c["ready"] for c in p["status"]["containerStatuses"])]
    check("2 pods listed by labelSelector app=web, Running and ready", len(running) == 2 == len(pods["items"]), pods)

    web["spec"]["replicas"] = 3
    status, scaled = kube.call("PATCH", base + path_of(web, "deployments"), token, web)
    check("apply with replicas 3: 200, generation 2", status == 200 and scaled["metadata"]["generation"] == 2, scaled)
    rolled, _ = wait_until(lambda: (lambda d: d if d.get("status", {}).get("observedGeneration") == 2
                                    and d["status"].get("availableReplicas") == 3 else None)(
        kube.call("GET", status_path, token)[1]), 6)
    check("observedGeneration 2 and 3 pods available after the second rollout", rolled is not None, rolled)
    web["metadata"]["labels"]["tier"] = "frontend"
    status, relabelled = kube.call("PATCH", base + path_of(web, "deployments"), token, web)
    check("a metadata-only change: 200, generation stays 2, resourceVersion moves",
          status == 200 and relabelled["metadata"]["generation"] == 2
          and int(relabelled["metadata"]["resourceVersion"]) > int(scaled["metadata"]["resourceVersion"]), relabelled)
    status, listed = kube.call("GET", f"{base}/apis/apps/v1/namespaces/{ns}/deployments", token)
    check("list: DeploymentList with items and metadata.resourceVersion",
          listed.get("kind") == "DeploymentList" and listed["metadata"].get("resourceVersion")
          and [d["metadata"]["name"] for d in listed.get("items", [])] == ["broken", "web"], listed)


def start_secret_refs(kube: Kube, base: str, token: str, ns: str) -> None:
    """Applied early, checked by check_secret_refs once they have rolled out: a
    Deployment needing a Secret nothing wrote yet (api-env, which the
    ExternalSecret api will write), and one needing a key its Secret lacks."""
    kube.call("PATCH", base + path_of(namespace(ns), "namespaces"), token, namespace(ns))
    partial = secret("partial", ns, ["A"])
    kube.call("PATCH", base + path_of(partial, "secrets"), token, partial)
    api = with_env(deployment("api", ns, "nginx:1.27"), env=[
        secret_key("DATABASE_PASSWORD", "api-env", "DATABASE_PASSWORD"),
        secret_key("OPTIONAL", "nowhere", "KEY", optional=True)],
        env_from=[{"secretRef": {"name": "nowhere-either", "optional": True}}])
    keyless = with_env(deployment("keyless", ns, "nginx:1.27", replicas=1),
                       env=[secret_key("B", "partial", "B")], env_from=[{"secretRef": {"name": "partial"}}])
    for obj in (api, keyless):
        kube.call("PATCH", base + path_of(obj, "deployments"), token, obj)


def check_secret_refs(check: Checks, kube: Kube, base: str, token: str, ns: str) -> None:
    def pods_of(app: str) -> list[dict[str, Any]]:
        return kube.call("GET", f"{base}/api/v1/namespaces/{ns}/pods?labelSelector=app%3D{app}", token)[1]["items"]

    def waiting(pod: dict[str, Any]) -> list[dict[str, Any]]:
        return [c["state"].get("waiting") for c in pod["status"]["containerStatuses"]]

    def deployment_of(app: str) -> dict[str, Any]:
        return kube.call("GET", f"{base}/apis/apps/v1/namespaces/{ns}/deployments/{app}", token)[1]

    pods, _ = wait_until(lambda: (lambda found: found if len(found) == 2 else None)(pods_of("api")), 4)
    pods = pods or []
    check('a Secret nothing wrote yet: 2 pods Pending, waiting CreateContainerConfigError, secret "api-env" not found '
          "(optional references to missing Secrets skipped)",
          len(pods) == 2 and all(p["status"]["phase"] == "Pending" and waiting(p) == [
              {"reason": "CreateContainerConfigError", "message": 'secret "api-env" not found'}] for p in pods), pods)
    status = deployment_of("api").get("status", {})
    check("that Deployment is not Available: no availableReplicas, 2 unavailable",
          condition({"status": status}, "Available").get("status") == "False" and not status.get("availableReplicas")
          and status.get("unavailableReplicas") == 2, status)
    keyless, _ = wait_until(lambda: pods_of("keyless"), 4)
    check("a key its Secret lacks: waiting CreateContainerConfigError, couldn't find key B in Secret <ns>/partial",
          keyless is not None and [waiting(p) for p in keyless] == [[
              {"reason": "CreateContainerConfigError", "message": f"couldn't find key B in Secret {ns}/partial"}]],
          keyless)

    api_secret = external_secret("api", ns, PLATFORM_STORE)
    kube.call("PATCH", base + path_of(api_secret, "externalsecrets"), token, api_secret)
    partial = secret("partial", ns, ["A", "B"])
    kube.call("PATCH", base + path_of(partial, "secrets"), token, partial)
    written_at = time.monotonic()

    def available(app: str) -> Callable[[], dict[str, Any] | None]:
        return lambda: (lambda d: d if condition(d, "Available").get("status") == "True" else None)(deployment_of(app))

    found, _ = wait_until(available("api"), 4)
    took = time.monotonic() - written_at
    synced = kube.call("GET", base + path_of(api_secret, "externalsecrets", query=""), token)[1]
    check(f"an ExternalSecret on the platform's store writes api-env; the Deployment becomes Available "
          f"(took {took:.1f} s)", found is not None and condition(synced, "Ready").get("reason") == "SecretSynced"
          and found["status"].get("availableReplicas") == 2, (synced.get("status"), found))
    started = pods_of("api")
    check("the same pods now Running and ready, as the kubelet retries them",
          {p["metadata"]["name"] for p in started} == {p["metadata"]["name"] for p in pods}
          and all(p["status"]["phase"] == "Running" and p["status"]["containerStatuses"][0]["ready"]
                  for p in started), started)
    found, _ = wait_until(available("keyless"), 3)
    check("a client's apply of the Secret with the missing key: that Deployment becomes Available",
          found is not None, deployment_of("keyless"))


def check_unpullable(check: Checks, kube: Kube, base: str, token: str, ns: str, applied_at: float) -> None:
    broken = deployment("broken", ns, "example/app:1.0-unpullable", replicas=1)
    status_path = base + path_of(broken, "deployments", query="") + "/status"

    def timed_out() -> dict[str, Any] | None:
        _, found = kube.call("GET", status_path, token)
        return found if condition(found, "Progressing").get("reason") == "ProgressDeadlineExceeded" else None

    found, _ = wait_until(timed_out, 8)
    took = time.monotonic() - applied_at
    check(f"an unpullable image: Progressing False, ProgressDeadlineExceeded after about 5 s (took {took:.1f} s)",
          found is not None and condition(found, "Progressing").get("status") == "False" and 4.5 <= took <= 8, took)
    if found is None:
        return
    check("the unpullable Deployment is never available: no availableReplicas, Available False",
          not found["status"].get("availableReplicas") and condition(found, "Available").get("status") == "False",
          found["status"])
    _, pods = kube.call("GET", f"{base}/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dbroken", token)
    waiting = [c["state"].get("waiting", {}) for p in pods.get("items", []) for c in p["status"]["containerStatuses"]]
    check('its pod is Pending, waiting ImagePullBackOff, "Back-off pulling image ..."',
          len(pods.get("items", [])) == 1 and pods["items"][0]["status"]["phase"] == "Pending"
          and waiting == [{"reason": "ImagePullBackOff",
                           "message": 'Back-off pulling image "example/app:1.0-unpullable"'}], pods)


def check_refusals(check: Checks, kube: Kube, base: str, token: str, ns: str) -> None:
    web = deployment("web", ns, "public.ecr.aws/nginx/nginx:1.27", replicas=5)
    status, body = kube.call("PATCH", base + path_of(web, "deployments", "fieldManager=kubectl"), token, web)
    check("another manager changing spec.replicas without force: 409 Conflict naming .spec.replicas",
          status == 409 and body.get("reason") == "Conflict"
          and ".spec.replicas" in {c["field"] for c in body.get("details", {}).get("causes", [])}, body)
    status, body = kube.call("PATCH", base + path_of(web, "deployments", "fieldManager=kubectl&force=true"), token, web)
    managers = {entry["manager"] for entry in body.get("metadata", {}).get("managedFields", [])}
    check("with force: 200, replicas 5, both managers in managedFields",
          status == 200 and body["spec"]["replicas"] == 5 and managers == {"pao", "kubectl"}, body)
    path = path_of(web, "deployments")
    cases = {
        "apply without fieldManager: 422": (path_of(web, "deployments", ""), web, APPLY, 422),
        "a name that differs from the URL: 400": (path.replace("/web?", "/other?"), web, APPLY, 400),
        "a kind that differs from the resource: 400": (path, {**web, "kind": "StatefulSet"}, APPLY, 400),
        "no apiVersion: 400": (path, {k: v for k, v in web.items() if k != "apiVersion"}, APPLY, 400),
        "a merge patch: 415": (path, web, "application/merge-patch+json", 415),
        "a body that is not YAML: 400": (path, b"{not: [yaml", APPLY, 400),
    }
    for what, (path, body_sent, content_type, code) in cases.items():
        status, body = kube.call("PATCH", base + path, token, body_sent, content_type)
        check(f"refused, {what}", status == code and body.get("kind") == "Status", (status, body))


def check_invalid(check: Checks, kube: Kube, base: str, token: str, ns: str) -> None:
    no_selector = deployment("bad", ns, "nginx:1.27")
    del no_selector["spec"]["selector"]
    cases = {
        "replicas: \"two\"":
            (deployment("bad", ns, "nginx:1.27", replicas="two"), "spec.replicas", "FieldValueTypeInvalid"),
        "no selector": (no_selector, "spec.selector", "FieldValueRequired"),
        "an undeclared field": ({**deployment("bad", ns, "nginx:1.27"), "spec": {
            **deployment("bad", ns, "nginx:1.27")["spec"], "replica": 2}}, "spec.replica", "FieldValueInvalid"),
        "a container without a name": ((lambda d: (d["spec"]["template"]["spec"]["containers"][0].pop("name"), d)[1])(
            deployment("bad", ns, "nginx:1.27")), "spec.template.spec.containers[0].name", "FieldValueRequired"),
    }
    for what, (obj, field, reason) in cases.items():
        status, body = kube.call("PATCH", base + path_of(obj, "deployments"), token, obj)
        causes = body.get("details", {}).get("causes", [])
        check(f"an invalid Deployment ({what}): 422 Invalid, cause {field} {reason}",
              status == 422 and body.get("reason") == "Invalid"
              and any(c["field"] == field and c["reason"] == reason for c in causes), body)
    bad_name = deployment("Web_1", ns, "nginx:1.27")
    status, body = kube.call("PATCH", base + path_of(bad_name, "deployments"), token, bad_name)
    check("a name that is not an RFC 1123 subdomain: 422, cause metadata.name",
          status == 422 and [c["field"] for c in body.get("details", {}).get("causes", [])] == ["metadata.name"], body)
    status, body = kube.call("GET", base + path_of(no_selector, "deployments", query=""), token)
    check("nothing invalid was stored: GET is 404 NotFound with details name and kind",
          status == 404 and body.get("reason") == "NotFound"
          and body.get("details") == {"name": "bad", "group": "apps", "kind": "deployments"}, body)


def check_external_secrets(check: Checks, kube: Kube, base: str, token: str, ns: str) -> None:
    status, body = kube.call("PATCH", base + path_of(CLUSTER_SECRET_STORE, "clustersecretstores"), token,
                             CLUSTER_SECRET_STORE)
    check("apply of a ClusterSecretStore (cluster-scoped, provider aws): 201", status == 201, body)
    valid = external_secret("app", ns, CLUSTER_SECRET_STORE["metadata"]["name"])
    status, body = kube.call("PATCH", base + path_of(valid, "externalsecrets"), token, valid)
    check("apply of a valid ExternalSecret: 201", status == 201, body)
    es_path = base + path_of(valid, "externalsecrets", query="")
    synced, _ = wait_until(lambda: (lambda e: e if condition(e, "Ready").get("status") == "True" else None)(
        kube.call("GET", es_path, token)[1]), 3)
    check("the ExternalSecret becomes Ready, reason SecretSynced",
          synced is not None and condition(synced, "Ready").get("reason") == "SecretSynced", synced)
    status, secret = kube.call("GET", f"{base}/api/v1/namespaces/{ns}/secrets/app-env", token)
    values = {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
    check("its target Secret app-env: type Opaque, both keys, each the placeholder (no real value)",
          status == 200 and secret.get("type") == "Opaque"
          and values == {"DATABASE_PASSWORD": PLACEHOLDER, "APP_SECRET_KEY": PLACEHOLDER}, secret)
    check("the Secret is owned by the ExternalSecret",
          [r["uid"] for r in secret["metadata"].get("ownerReferences", [])] == [synced["metadata"]["uid"]], secret)

    invalid = external_secret("broken", ns, PLATFORM_STORE)
    invalid["spec"]["secretStoreRef"]["kind"] = "Vault"
    del invalid["spec"]["data"][0]["remoteRef"]["key"]
    invalid["spec"]["data"][1]["secretKey"] = "not a key!"
    status, body = kube.call("PATCH", base + path_of(invalid, "externalsecrets"), token, invalid)
    fields = {c["field"] for c in body.get("details", {}).get("causes", [])}
    check("an invalid ExternalSecret: 422 naming secretStoreRef.kind, data[0].remoteRef.key, data[1].secretKey",
          status == 422 and fields == {"spec.secretStoreRef.kind", "spec.data[0].remoteRef.key",
                                       "spec.data[1].secretKey"}, body)
    orphan = external_secret("orphan", ns, "no-such-store")
    kube.call("PATCH", base + path_of(orphan, "externalsecrets"), token, orphan)
    failed, _ = wait_until(lambda: (lambda e: e if condition(e, "Ready").get("status") == "False" else None)(
        kube.call("GET", base + path_of(orphan, "externalsecrets", query=""), token)[1]), 3)
    check("an ExternalSecret naming a missing store: Ready False, SecretSyncedError",
          failed is not None and condition(failed, "Ready").get("reason") == "SecretSyncedError", failed)


def check_deletion(check: Checks, kube: Kube, base: str, token: str, ns: str) -> None:
    lost = deployment("web", "nowhere", "nginx:1.27")
    status, body = kube.call("PATCH", base + path_of(lost, "deployments"), token, lost)
    check('an object in a namespace that does not exist: 404, namespaces "nowhere" not found',
          status == 404 and body.get("message") == 'namespaces "nowhere" not found', body)
    status, body = kube.call("DELETE", base + path_of(lost, "deployments", query=""), token, {})
    check("DELETE of a missing object: 404", status == 404, body)
    web_path = base + path_of(deployment("web", ns, ""), "deployments", query="")
    status, body = kube.call("DELETE", web_path, token, {"propagationPolicy": "Background"})
    check("DELETE of a Deployment: 200 Status Success", status == 200 and body.get("status") == "Success", body)
    _, pods = kube.call("GET", f"{base}/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb", token)
    check("its pods are gone with it", pods.get("items") == [], pods)

    ns_path = f"{base}/api/v1/namespaces/{ns}"
    deleted_at = time.monotonic()
    status, body = kube.call("DELETE", ns_path, token, {})
    check("DELETE of a Namespace: 200, the namespace Terminating with a deletionTimestamp",
          status == 200 and body.get("status", {}).get("phase") == "Terminating"
          and body["metadata"].get("deletionTimestamp"), body)
    late = deployment("late", ns, "nginx:1.27")
    status, body = kube.call("PATCH", base + path_of(late, "deployments"), token, late)
    check("a new object in the terminating namespace: 403 Forbidden",
          status == 403 and body.get("reason") == "Forbidden", body)
    status, body = kube.call("DELETE", ns_path, token, {})
    check("DELETE of the terminating namespace again: 409 Conflict", status == 409, body)
    gone, _ = wait_until(lambda: kube.call("GET", ns_path, token)[0] == 404, 5)
    took = time.monotonic() - deleted_at
    check(f"the namespace is gone after about 2 s (took {took:.1f} s)", gone and 1.5 <= took <= 4, took)
    for plural, group in (("deployments", "/apis/apps/v1"), ("pods", "/api/v1"), ("secrets", "/api/v1"),
                          ("externalsecrets", "/apis/external-secrets.io/v1")):
        _, listed = kube.call("GET", f"{base}{group}/namespaces/{ns}/{plural}", token)
        check(f"nothing of it is left: no {plural}", listed.get("items") == [], listed)


def check_paths(check: Checks, kube: Kube, base: str, token: str) -> None:
    status, body = kube.call("POST", f"{base}/api/v1/namespaces", token, namespace("posted"), "application/json")
    check("POST (create) is not served: 405 MethodNotAllowed Status",
          status == 405 and body.get("reason") == "MethodNotAllowed", body)
    status, body = kube.call("PATCH", f"{base}/api/v1/namespaces/default/pods/p?fieldManager=pao", token, {})
    check("pods are read-only: PATCH is 405", status == 405, body)
    for path in (f"{base}/apis/example.com/v1/widgets", f"{base}/api/v1/namespaces/default/widgets/w", "/elsewhere"):
        status, body = kube.call("GET", path, token)
        check(f"an unknown path is 404 NotFound Status: {path}", status == 404 and body.get("kind") == "Status", body)


def check_objects(check: Checks, kube: Kube, clusters: tuple[str, str], token_b: str) -> None:
    a, b = clusters
    status, body = kube.call("GET", "/_health", None)
    check("/_health: 200 without a token", status == 200, body)
    only_in_b = namespace("only-in-b")
    kube.call("PATCH", f"/clusters/{b}" + path_of(only_in_b, "namespaces"), token_b, only_in_b)
    status, body = kube.call("GET", "/_objects", None)
    names = {name: {(o["kind"], o["metadata"]["name"]) for o in objects} for name, objects in body["clusters"].items()}
    own_store = ("ClusterSecretStore", CLUSTER_SECRET_STORE["metadata"]["name"])
    check("/_objects: both clusters, each with its own objects",
          status == 200 and own_store in names.get(a, set()) and own_store not in names.get(b, set())
          and ("Namespace", "only-in-b") in names.get(b, set()) and ("Namespace", "only-in-b") not in names[a], names)
    _, body = kube.call("GET", f"/_objects?cluster={b}", None)
    check("/_objects?cluster=: that cluster only", list(body["clusters"]) == [b], list(body["clusters"]))


def run(check: Checks, work: Path) -> None:
    kube_port, aws_port = free_port(), free_port()
    kube_url, aws_url = f"https://127.0.0.1:{kube_port}", f"http://127.0.0.1:{aws_port}"
    ca_file = work / "kube" / "ca.crt"
    python = sys.executable
    processes: list[subprocess.Popen] = []
    try:
        env = {**os.environ, "PAO_KUBE_ACCESS_KEY_ID": "test", "PAO_KUBE_SECRET_ACCESS_KEY": "test"}
        processes.append(start([python, str(HERE / "kube_standin.py"), "--port", str(kube_port),
                                "--state-dir", str(ca_file.parent)], work / "kube.log", env))
        wait_for(f"{kube_url}/_health", START_SECONDS, ca_file, processes[-1], work / "kube.log")
        processes.append(start([python, str(HERE / "moto_launcher.py"), "--port", str(aws_port),
                                "--lambda-url", "http://127.0.0.1:9", "--kube-url", kube_url,
                                "--kube-ca-file", str(ca_file)], work / "moto.log"))
        wait_for(f"{aws_url}/moto-api/", START_SECONDS, process=processes[-1], log=work / "moto.log")
        print(f"stand-in on {kube_url}, moto on {aws_url}", flush=True)
        kube = Kube(kube_url, ca_file)
        endpoints = check_eks(check, aws_url, kube_url, ca_file.read_bytes())
        a, b = "pao-check-a", "pao-check-b"
        base = endpoints[a].removeprefix(kube_url)
        token = eks_token(a)
        check_tls(check, kube, endpoints[a], token)
        check_tokens(check, kube, f"{base}/version", a, b)
        check_discovery(check, kube, base, token)
        check_bootstrap(check, kube, base, token)
        check_namespace_apply(check, kube, base, token, "shop")
        broken = deployment("broken", "shop", "example/app:1.0-unpullable", replicas=1)
        broken_at = time.monotonic()
        kube.call("PATCH", base + path_of(broken, "deployments"), token, broken)
        start_secret_refs(kube, base, token, "orders")
        check_rollout(check, kube, base, token, "shop")
        check_secret_refs(check, kube, base, token, "orders")
        check_refusals(check, kube, base, token, "shop")
        check_invalid(check, kube, base, token, "shop")
        check_external_secrets(check, kube, base, token, "shop")
        check_unpullable(check, kube, base, token, "shop", broken_at)
        check_deletion(check, kube, base, token, "shop")
        check_paths(check, kube, base, token)
        check_objects(check, kube, (a, b), eks_token(b))
    finally:
        stop(processes)
        if check.failed:
            for log in sorted(work.glob("*.log")):
                print(f"--- last lines of {log.name}", file=sys.stderr)
                print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)


def main() -> int:
    return run_checks(run, "kube-standin-check-", DEADLINE_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
