"""Creates on the emulator what template.yaml declares.

Tables, buckets, one Lambda registration per function binary, the state
machines with their substitutions applied, and the buckets' notifications to
functions (SAM `S3` events). It also returns the environment the functions
run with, resolved from the template, for `cargo lambda watch`.

Idempotent: running it twice against one emulator changes nothing.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from sam_template import ACCOUNT_ID, REGION, Template, TemplateError

LOCAL_ROLE = "pao-local-execution"
# Locally every function may run as long as a slow first build needs.
MIN_LOCAL_TIMEOUT = 60


def client(service: str, endpoint: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=60),
    )


def _exists(err: ClientError, *codes: str) -> bool:
    return err.response.get("Error", {}).get("Code") in codes


def enable_step_functions_interpreter(endpoint: str) -> None:
    import urllib.request

    body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def create_role(endpoint: str) -> str:
    iam = client("iam", endpoint)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
            "Action": "sts:AssumeRole",
        }],
    }
    try:
        iam.create_role(RoleName=LOCAL_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    except ClientError as err:
        if not _exists(err, "EntityAlreadyExists"):
            raise
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{LOCAL_ROLE}"


def create_tables(template: Template, endpoint: str) -> None:
    dynamodb = client("dynamodb", endpoint)
    for logical_id, resource in template.of_type("AWS::DynamoDB::Table").items():
        props = template.resolve(resource.get("Properties", {}))
        args: dict[str, Any] = {
            "TableName": template.physical_name(logical_id),
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        try:
            dynamodb.create_table(**args)
        except ClientError as err:
            if not _exists(err, "ResourceInUseException"):
                raise
        ttl = props.get("TimeToLiveSpecification")
        if ttl:
            dynamodb.update_time_to_live(
                TableName=args["TableName"], TimeToLiveSpecification=ttl
            )


def create_buckets(template: Template, endpoint: str) -> None:
    s3 = client("s3", endpoint)
    for logical_id, resource in template.of_type("AWS::S3::Bucket").items():
        name = template.physical_name(logical_id)
        try:
            s3.create_bucket(Bucket=name)
        except ClientError as err:
            if not _exists(err, "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        versioning = resource.get("Properties", {}).get("VersioningConfiguration")
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=versioning)


def _placeholder_zip() -> bytes:
    # moto wants a deployment package; the code that runs is cargo lambda watch's.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("bootstrap", "#!/bin/sh\necho served by cargo lambda watch\n")
    return buffer.getvalue()


def register_functions(template: Template, endpoint: str, role_arn: str) -> None:
    lam = client("lambda", endpoint)
    package = _placeholder_zip()
    for function in template.functions():
        timeout = max(function.timeout, MIN_LOCAL_TIMEOUT)
        try:
            lam.create_function(
                FunctionName=function.binary,
                Runtime="provided.al2023",
                Role=role_arn,
                Handler="bootstrap",
                Code={"ZipFile": package},
                Timeout=timeout,
                Architectures=["x86_64"],
            )
        except ClientError as err:
            if not _exists(err, "ResourceConflictException"):
                raise
            lam.update_function_configuration(FunctionName=function.binary, Timeout=timeout)


def create_state_machines(template: Template, endpoint: str, role_arn: str) -> None:
    sfn = client("stepfunctions", endpoint)
    for logical_id in template.of_type("AWS::Serverless::StateMachine"):
        name = template.physical_name(logical_id)
        definition = template.definition(logical_id)
        arn = template.arn(logical_id)
        try:
            sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn)
        except ClientError as err:
            if not _exists(err, "StateMachineAlreadyExists"):
                raise
            sfn.update_state_machine(stateMachineArn=arn, definition=definition)


def connect_bucket_notifications(template: Template, endpoint: str) -> None:
    """SAM `S3` events: the bucket notifies the function directly."""
    by_bucket: dict[str, list[dict[str, Any]]] = {}
    for logical_id, resource in template.of_type("AWS::Serverless::Function").items():
        for event_id, event in resource.get("Properties", {}).get("Events", {}).items():
            if event.get("Type") != "S3":
                continue
            props = event["Properties"]
            bucket = template.resolve(props["Bucket"])
            events = props["Events"] if isinstance(props["Events"], list) else [props["Events"]]
            config: dict[str, Any] = {
                "Id": f"{logical_id}-{event_id}",
                "LambdaFunctionArn": template.arn(logical_id),
                "Events": events,
            }
            if "Filter" in props:
                config["Filter"] = {"Key": {"FilterRules": props["Filter"]["S3Key"]["Rules"]}}
            by_bucket.setdefault(bucket, []).append(config)
    s3 = client("s3", endpoint)
    for bucket, configs in by_bucket.items():
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"LambdaFunctionConfigurations": configs},
        )


def function_environment(template: Template) -> dict[str, str]:
    """Every function's variables, merged: cargo lambda watch runs them all with one set."""
    merged: dict[str, str] = {}
    for function in template.functions():
        for name, value in function.environment.items():
            if merged.get(name, value) != value:
                raise TemplateError(
                    f"{name} differs between functions ({merged[name]!r} and {value!r}); "
                    "the local stack runs every function with one environment"
                )
            merged[name] = value
    return merged


def bootstrap(template: Template, endpoint: str, executions: bool = True) -> None:
    """`executions=False` leaves moto's ASL interpreter off: StartExecution
    records an execution and runs nothing (for measuring the API alone)."""
    if executions:
        enable_step_functions_interpreter(endpoint)
    role_arn = create_role(endpoint)
    create_tables(template, endpoint)
    create_buckets(template, endpoint)
    register_functions(template, endpoint, role_arn)
    create_state_machines(template, endpoint, role_arn)
    connect_bucket_notifications(template, endpoint)


# What the platform team's account holds outside PAO's template, and the
# example catalog's eks-app-stack reads as env.NAME.
EKS_SECRETS_KEY_ALIAS = "alias/platform/eks-secrets"
# The office's egress range (a documentation range locally): who may reach
# a cluster's public API endpoint.
EKS_API_ALLOWED_CIDR = "192.0.2.0/24"


def platform_settings(endpoint: str) -> dict[str, str]:
    """The platform's KMS key for envelope encryption of Kubernetes secrets
    (made once, found by its alias after) and the CIDR allowed to reach
    clusters' API endpoints, as the template variables the items name."""
    kms = client("kms", endpoint)
    try:
        key_id = kms.describe_key(KeyId=EKS_SECRETS_KEY_ALIAS)["KeyMetadata"]["Arn"]
    except ClientError as err:
        if not _exists(err, "NotFoundException"):
            raise
        key_id = kms.create_key(
            Description="Envelope encryption of EKS clusters' Kubernetes secrets",
            KeyUsage="ENCRYPT_DECRYPT",
            Tags=[{"TagKey": "owner", "TagValue": "cloud-platform"}],
        )["KeyMetadata"]["Arn"]
        kms.create_alias(AliasName=EKS_SECRETS_KEY_ALIAS, TargetKeyId=key_id)
    return {"EKS_SECRETS_KMS_KEY_ARN": key_id, "EKS_API_ALLOWED_CIDR": EKS_API_ALLOWED_CIDR}
