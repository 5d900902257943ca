"""Runs moto server with its Lambda invocations sent to `cargo lambda watch`.

moto normally runs a Lambda function in Docker. Here the one method that does
so is replaced: the event goes to the Lambda Invoke API of `cargo lambda
watch`, which runs our real Rust binary and answers with its result, or with
HTTP 500 and `{errorType, errorMessage}` when the function fails. Step
Functions Task states and S3 bucket notifications both invoke through it.

It also closes two gaps between moto and AWS. DynamoDB applies a conditional
write atomically; moto's threaded server checks the condition and writes
without a lock, so two racing writers can both win; and it applies a
transaction item by item (undoing them when a condition fails), where
DynamoDB never shows a transaction half applied or rolled back: its write and
read operations are serialised here. S3: deleting an object of a versioned
bucket creates a delete marker, for which S3 sends
`s3:ObjectRemoved:DeleteMarkerCreated` and moto sends nothing. And Step
Functions: moto's SendTaskFailure handler drops the `cause`, so a failed
task lost its reason; it is passed on here. Faults the tests inject by tag
(an RDS instance or EKS cluster or node group in a failed state) are in
moto_faults.py. EKS: moto has no access entries or access policies, and
drops a cluster's `accessConfig`; both are kept here in memory, with the
cluster (see `eks_access_entries`). EC2: moto ignores tag filters on
DescribeNatGateways; they are applied here. Secrets Manager: rotation as
AWS runs it (see `rotate_secrets_as_aws_does`). EKS endpoints: moto's do
not resolve and its CA data is random text; here each cluster's endpoint
is its API on the local Kubernetes stand-in (kube_standin.py) and its CA
that stand-in's (see `eks_endpoints_on_kube_standin`).

Usage: moto_launcher.py --port PORT --lambda-url http://127.0.0.1:LAMBDA_PORT
                        --kube-url https://127.0.0.1:KUBE_PORT --kube-ca-file CA_PEM
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from moto import server
from moto.awslambda.models import LambdaFunction
from moto.dynamodb.models import DynamoDBBackend
from moto.s3 import notifications
from moto.core.responses import ActionResult, EmptyResult
from moto.core.utils import utcnow
from moto.eks import urls as eks_urls
from moto.eks.exceptions import (
    InvalidParameterException,
    InvalidRequestException,
    ResourceInUseException,
    ResourceNotFoundException,
)
from moto.eks.models import Cluster
from moto.ec2.models.nat_gateways import NatGatewayBackend
from moto.ec2.utils import tag_filter_matches
from moto.eks.responses import EKSResponse
from moto.moto_api._internal import mock_random
from moto.s3.models import S3Backend
from moto.secretsmanager.models import SecretsManagerBackend
from moto.stepfunctions.responses import StepFunctionResponse

import moto_cloudwatch_cbor
import moto_faults


def forwarding_invoke(lambda_url: str):
    def _invoke_lambda(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
        if event is None:
            event = {}
        payload = event if isinstance(event, (str, bytes)) else json.dumps(event)
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        url = f"{lambda_url}/2015-03-31/functions/{self.function_name}/invocations"
        request = urllib.request.Request(
            url, data=payload, method="POST", headers={"Content-Type": "application/json"}
        )
        # The function's own timeout, plus room for a first start of its binary.
        timeout = float(self.timeout or 3) + 30
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read().decode("utf-8"), False, ""
        except urllib.error.HTTPError as err:
            body = err.read().decode("utf-8", errors="replace")
            return _function_error(body, err.code), True, ""
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            message = f"cargo lambda watch did not answer for {self.function_name}: {err}"
            print(message, file=sys.stderr, flush=True)
            return json.dumps({"errorType": "Lambda.ServiceException", "errorMessage": message}), True, ""

    return _invoke_lambda


def _function_error(body: str, status: int) -> str:
    """Keeps a function's `{errorType, errorMessage}`; wraps anything else."""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and "errorType" in parsed:
            return body
    except json.JSONDecodeError:
        pass
    return json.dumps({"errorType": "Lambda.Unknown", "errorMessage": f"HTTP {status}: {body[:500]}"})


def serialise_dynamodb_writes() -> None:
    lock = threading.RLock()
    writes = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
    reads = ("get_item", "query", "scan", "batch_get_item", "transact_get_items")
    for name in writes + reads:
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue

        def locked(*args, __original=original, **kwargs):
            with lock:
                return __original(*args, **kwargs)

        setattr(DynamoDBBackend, name, locked)


def notify_delete_markers() -> None:
    original = S3Backend.delete_object

    def delete_object(self, bucket_name, key_name, version_id=None, bypass=False):
        bucket = self.get_bucket(bucket_name)
        deleted = bucket.keys.get(key_name) if getattr(bucket, "is_versioned", False) else None
        result = original(self, bucket_name, key_name, version_id, bypass)
        if deleted is not None and version_id is None and result[1].get("delete-marker") == "true":
            notifications.send_event(
                self.account_id,
                notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT,
                bucket,
                deleted,
            )
        return result

    S3Backend.delete_object = delete_object


def pass_task_failure_cause() -> None:
    def send_task_failure(self) -> ActionResult:
        backend = self.stepfunction_backend
        token, error, cause = (self._get_param(name) for name in ("taskToken", "error", "cause"))
        try:
            backend.send_task_failure(token, error=error, cause=cause)
        except TypeError:  # the backend without the ASL interpreter takes no cause
            backend.send_task_failure(token, error=error)
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure


def filter_nat_gateways_by_tag() -> None:
    """EC2 applies `tag:<key>`, `tag-key` and `tag-value` filters to
    DescribeNatGateways as to every Describe call; moto 5.2 applies only
    the id, VPC, subnet and state filters to NAT gateways and ignores the
    rest, answering with other requests' gateways."""
    original = NatGatewayBackend.describe_nat_gateways

    def describe_nat_gateways(self, filters: Any, nat_gateway_ids: list[str] | None) -> list[Any]:
        found = original(self, filters, nat_gateway_ids)
        tags = {name: values for name, values in (filters or {}).items()
                if name.startswith("tag:") or name in ("tag-key", "tag-value")}
        return [gateway for gateway in found
                if all(tag_filter_matches(gateway, name, values) for name, values in tags.items())]

    NatGatewayBackend.describe_nat_gateways = describe_nat_gateways


def rotate_secrets_as_aws_does() -> None:
    """Three differences of moto's Secrets Manager that rotation meets:
    - RotateSecret without RotationLambdaARN rotates with the function the
      secret is configured with, in AWS; moto forgets the function and moves
      the labels itself, so the rotation function never ran.
    - RotateImmediately=false tests the function on an AWSPENDING version
      that AWS removes again; moto leaves it behind, with a copy of the
      current value.
    - GetSecretValue without a version or stage reads AWSCURRENT; moto
      reads the version it last made the default, which rotation can leave
      pointing at a version without a value."""
    original_rotate = SecretsManagerBackend.rotate_secret
    original_get = SecretsManagerBackend.get_secret_value

    def rotate_secret(self, secret_id: str, client_request_token: str | None = None,
                      rotation_lambda_arn: str | None = None, rotation_rules: dict[str, Any] | None = None,
                      rotate_immediately: bool = True) -> str:
        secret = self.secrets[secret_id] if secret_id in self.secrets else None
        if not rotation_lambda_arn and secret is not None:
            rotation_lambda_arn = getattr(secret, "rotation_lambda_arn", "") or None
        before = set(getattr(secret, "versions", {}))
        result = original_rotate(self, secret_id, client_request_token, rotation_lambda_arn,
                                 rotation_rules, rotate_immediately)
        if secret is not None and not rotate_immediately:
            for version_id in set(secret.versions) - before:
                del secret.versions[version_id]
        return result

    def get_secret_value(self, secret_id: str, version_id: str | None, version_stage: str | None) -> dict[str, Any]:
        if not version_id and not version_stage:
            version_stage = "AWSCURRENT"
        return original_get(self, secret_id, version_id, version_stage)

    SecretsManagerBackend.rotate_secret = rotate_secret
    SecretsManagerBackend.get_secret_value = get_secret_value


def eks_endpoints_on_kube_standin(kube_url: str, ca_file: Path) -> None:
    """EKS gives each cluster an API server endpoint and, in
    `certificateAuthority.data`, the base64 of the PEM of the CA its
    certificate chains to; clients connect to the one trusting only the
    other. moto's endpoint is a host that does not resolve and its data is
    random text. Here a cluster's endpoint is its own path on the local
    Kubernetes API stand-in (`<kube_url>/clusters/<name>`, kube_standin.py)
    and its CA the stand-in's, in CreateCluster's answer and every
    DescribeCluster, so a client that does what it does with EKS reaches the
    stand-in."""
    ca_data = base64.b64encode(ca_file.read_bytes()).decode()
    original = Cluster.__init__

    def __init__(self: Cluster, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.endpoint = f"{kube_url}/clusters/{self.name}"
        self.certificate_authority = {"data": ca_data}

    Cluster.__init__ = __init__


# ---------------------------------------------------------------- EKS access entries
# What the EKS API does with access entries (CreateAccessEntry, DescribeAccessEntry,
# ListAccessEntries, DeleteAccessEntry) and their access policies (AssociateAccessPolicy,
# ListAssociatedAccessPolicies, DisassociateAccessPolicy), which moto 5.2 lacks: kept on the
# cluster, so they go with it. Not reproduced: the cluster creator's own bootstrap entry,
# node-type entries' Kubernetes groups, and anything Kubernetes does with an entry.

_PRINCIPAL = re.compile(r"^arn:([^:]+):iam::(\d{12}):(role|user)/(?:.*/)?([^/]+)$")
_ACCESS_POLICY = re.compile(r"^arn:[^:]+:eks::aws:cluster-access-policy/[A-Za-z0-9]+$")
_ENTRY_TYPES = {"STANDARD", "EC2", "EC2_LINUX", "EC2_WINDOWS", "FARGATE_LINUX", "HYBRID_LINUX"}
_API_MODES = ("API", "API_AND_CONFIG_MAP")


def _entries(response: EKSResponse) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The cluster named in the path and its access entries, by principal ARN."""
    name = response._get_param("name") or response._get_param("clusterName")
    cluster = response.eks_backend.clusters.get(name)
    if cluster is None:
        raise ResourceNotFoundException(
            clusterName=name, nodegroupName=None, fargateProfileName=None, addonName=None,
            message=f"No cluster found for name: {name}.",
        )
    if not hasattr(cluster, "access_entries"):
        cluster.access_entries = {}
    return cluster, cluster.access_entries


def _entry(response: EKSResponse) -> tuple[Any, dict[str, Any]]:
    cluster, entries = _entries(response)
    principal = response._get_param("principalArn")
    entry = entries.get(principal)
    if entry is None:
        raise ResourceNotFoundException(
            clusterName=cluster.name, nodegroupName=None, fargateProfileName=None, addonName=None,
            message=f"The specified principalArn could not be found: {principal}",
        )
    return cluster, entry


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key != "policies"}


def create_cluster_keeping_access_config(original):
    def create_cluster(self: EKSResponse) -> ActionResult:
        result = original(self)
        cluster = self.eks_backend.clusters[self._get_param("name")]
        requested = self._get_param("accessConfig") or {}
        # The EKS API's defaults when a CreateCluster call leaves them out.
        cluster.access_config = {
            "authenticationMode": requested.get("authenticationMode", "CONFIG_MAP"),
            "bootstrapClusterCreatorAdminPermissions": requested.get(
                "bootstrapClusterCreatorAdminPermissions", True
            ),
        }
        cluster.access_entries = {}
        return result

    return create_cluster


def create_access_entry(self: EKSResponse) -> ActionResult:
    cluster, entries = _entries(self)
    mode = getattr(cluster, "access_config", {}).get("authenticationMode", "CONFIG_MAP")
    if mode not in _API_MODES:
        raise InvalidRequestException(
            message="The cluster's authentication mode must be set to one of [API, API_AND_CONFIG_MAP] "
            "to perform this operation."
        )
    principal = self._get_param("principalArn") or ""
    matched = _PRINCIPAL.match(principal)
    if matched is None:
        raise InvalidParameterException(message=f"The principalArn {principal} is not a valid IAM principal ARN.")
    kind = self._get_param("type") or "STANDARD"
    if kind not in _ENTRY_TYPES:
        raise InvalidParameterException(message=f"The type {kind} is not a valid access entry type.")
    if principal in entries:
        raise ResourceInUseException(
            clusterName=cluster.name, nodegroupName=None, addonName=None,
            message="The specified access entry resource is already in use on this cluster.",
        )
    partition, account, identity, name = matched.groups()
    username = self._get_param("username") or (
        f"arn:{partition}:sts::{account}:assumed-role/{name}/{{{{SessionName}}}}" if identity == "role" else principal
    )
    now = utcnow()
    region, owner = self.eks_backend.region_name, self.eks_backend.account_id
    entries[principal] = {
        "clusterName": cluster.name,
        "principalArn": principal,
        "kubernetesGroups": self._get_param("kubernetesGroups") or [],
        "accessEntryArn": f"arn:{partition}:eks:{region}:{owner}:access-entry/{cluster.name}/{identity}/"
        f"{account}/{name}/{mock_random.uuid4()}",
        "createdAt": now,
        "modifiedAt": now,
        "tags": self._get_param("tags") or {},
        "username": username,
        "type": kind,
        "policies": {},
    }
    return ActionResult({"accessEntry": _public(entries[principal])})


def describe_access_entry(self: EKSResponse) -> ActionResult:
    _, entry = _entry(self)
    return ActionResult({"accessEntry": _public(entry)})


def list_access_entries(self: EKSResponse) -> ActionResult:
    _, entries = _entries(self)
    policy = self._get_param("associatedPolicyArn")
    principals = sorted(p for p, e in entries.items() if policy is None or policy in e["policies"])
    return ActionResult({"accessEntries": principals})


def delete_access_entry(self: EKSResponse) -> ActionResult:
    cluster, entry = _entry(self)
    del cluster.access_entries[entry["principalArn"]]
    return EmptyResult()


def associate_access_policy(self: EKSResponse) -> ActionResult:
    cluster, entry = _entry(self)
    policy = self._get_param("policyArn") or ""
    if not _ACCESS_POLICY.match(policy):
        raise InvalidParameterException(message=f"The policyArn {policy} is not a valid access policy ARN.")
    if entry["type"] != "STANDARD":
        raise InvalidRequestException(message="Access policies can only be associated with STANDARD access entries.")
    scope = self._get_param("accessScope") or {}
    namespaces = scope.get("namespaces") or []
    if scope.get("type") not in ("cluster", "namespace") or (scope.get("type") == "namespace") != bool(namespaces):
        raise InvalidParameterException(
            message="accessScope: type cluster takes no namespaces; type namespace needs at least one."
        )
    now = utcnow()
    previous = entry["policies"].get(policy)
    # Associating a policy again replaces its scope.
    entry["policies"][policy] = {
        "policyArn": policy,
        "accessScope": {"type": scope["type"], "namespaces": namespaces},
        "associatedAt": previous["associatedAt"] if previous else now,
        "modifiedAt": now,
    }
    return ActionResult(
        {
            "clusterName": cluster.name,
            "principalArn": entry["principalArn"],
            "associatedAccessPolicy": entry["policies"][policy],
        }
    )


def list_associated_access_policies(self: EKSResponse) -> ActionResult:
    cluster, entry = _entry(self)
    return ActionResult(
        {
            "clusterName": cluster.name,
            "principalArn": entry["principalArn"],
            "associatedAccessPolicies": list(entry["policies"].values()),
        }
    )


def disassociate_access_policy(self: EKSResponse) -> ActionResult:
    _, entry = _entry(self)
    policy = self._get_param("policyArn")
    if entry["policies"].pop(policy, None) is None:
        raise ResourceNotFoundException(
            clusterName=entry["clusterName"], nodegroupName=None, fargateProfileName=None, addonName=None,
            message=f"The access policy {policy} is not associated with {entry['principalArn']}.",
        )
    return EmptyResult()


def eks_access_entries() -> None:
    # A principal ARN holds `/`: the paths take the rest of the URL, and
    # the service's own model tells the operations apart.
    eks_urls.url_paths.update(
        {
            "{0}/clusters/(?P<name>[^/]+)/access-entries$": EKSResponse.dispatch,
            "{0}/clusters/(?P<name>[^/]+)/access-entries/(?P<principalArn>.+)$": EKSResponse.dispatch,
        }
    )
    EKSResponse.create_cluster = create_cluster_keeping_access_config(EKSResponse.create_cluster)
    for handler in (
        create_access_entry,
        describe_access_entry,
        list_access_entries,
        delete_access_entry,
        associate_access_policy,
        list_associated_access_policies,
        disassociate_access_policy,
    ):
        setattr(EKSResponse, handler.__name__, handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lambda-url", required=True)
    parser.add_argument("--kube-url", required=True, help="the Kubernetes API stand-in, https://127.0.0.1:PORT")
    parser.add_argument("--kube-ca-file", type=Path, required=True, help="the stand-in's CA certificate (PEM)")
    args = parser.parse_args()
    # moto's Step Functions interpreter calls back into this server on MOTO_PORT.
    os.environ["MOTO_PORT"] = str(args.port)
    LambdaFunction._invoke_lambda = forwarding_invoke(args.lambda_url.rstrip("/"))
    notify_delete_markers()
    serialise_dynamodb_writes()
    pass_task_failure_cause()
    filter_nat_gateways_by_tag()
    rotate_secrets_as_aws_does()
    moto_faults.install()
    moto_cloudwatch_cbor.install()
    eks_access_entries()
    eks_endpoints_on_kube_standin(args.kube_url.rstrip("/"), args.kube_ca_file)
    server.main(["--host", "127.0.0.1", "--port", str(args.port)])


if __name__ == "__main__":
    main()
