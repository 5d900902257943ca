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
moto_faults.py.

Usage: moto_launcher.py --port PORT --lambda-url http://127.0.0.1:LAMBDA_PORT
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

from moto import server
from moto.awslambda.models import LambdaFunction
from moto.dynamodb.models import DynamoDBBackend
from moto.s3 import notifications
from moto.core.responses import ActionResult, EmptyResult
from moto.s3.models import S3Backend
from moto.stepfunctions.responses import StepFunctionResponse

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lambda-url", required=True)
    args = parser.parse_args()
    # moto's Step Functions interpreter calls back into this server on MOTO_PORT.
    os.environ["MOTO_PORT"] = str(args.port)
    LambdaFunction._invoke_lambda = forwarding_invoke(args.lambda_url.rstrip("/"))
    notify_delete_markers()
    serialise_dynamodb_writes()
    pass_task_failure_cause()
    moto_faults.install()
    server.main(["--host", "127.0.0.1", "--port", str(args.port)])


if __name__ == "__main__":
    main()
