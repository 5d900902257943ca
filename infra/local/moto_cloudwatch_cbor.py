"""CloudWatch over Smithy RPC v2 CBOR, which moto 5.2 does not speak.

The AWS SDKs (the Rust one included) now call CloudWatch with the RPC v2
CBOR protocol: `POST /service/GraniteServiceVersion20100801/operation/<Op>`,
header `smithy-protocol: rpc-v2-cbor`, a CBOR map in and out, errors as a
CBOR map with `__type`. moto answers that path with 404. This module routes
it to moto's own CloudWatch backend for the operations PAO calls, so alarms
are kept, listed and tagged by moto as if they came over the query protocol:
PutMetricAlarm, DescribeAlarms, DeleteAlarms, ListTagsForResource.

One difference of moto's is mended on the way: a new alarm starts in
INSUFFICIENT_DATA in AWS (moto says OK) until its metric has data.
"""

from __future__ import annotations

import re
from datetime import timezone
from typing import Any, Callable

import cbor2
from moto.cloudwatch import urls as cloudwatch_urls
from moto.cloudwatch.models import cloudwatch_backends
from moto.core import DEFAULT_ACCOUNT_ID

PATH = "{0}/service/GraniteServiceVersion20100801/operation/(?P<operation>[A-Za-z]+)$"
CREDENTIAL = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/")
HEADERS = {"smithy-protocol": "rpc-v2-cbor", "content-type": "application/cbor"}


def put_metric_alarm(backend: Any, given: dict[str, Any]) -> dict[str, Any]:
    alarm = backend.put_metric_alarm(
        name=given["AlarmName"],
        namespace=given.get("Namespace"),
        metric_name=given.get("MetricName"),
        comparison_operator=given.get("ComparisonOperator"),
        evaluation_periods=given.get("EvaluationPeriods"),
        datapoints_to_alarm=given.get("DatapointsToAlarm"),
        period=given.get("Period"),
        threshold=given.get("Threshold"),
        statistic=given.get("Statistic"),
        extended_statistic=given.get("ExtendedStatistic"),
        description=given.get("AlarmDescription"),
        dimensions=given.get("Dimensions", []),
        alarm_actions=given.get("AlarmActions", []),
        ok_actions=given.get("OKActions", []),
        insufficient_data_actions=given.get("InsufficientDataActions", []),
        unit=given.get("Unit"),
        actions_enabled=given.get("ActionsEnabled"),
        treat_missing_data=given.get("TreatMissingData"),
        tags=given.get("Tags", []),
    )
    if not alarm.history:
        alarm.state_value = "INSUFFICIENT_DATA"
        alarm.state_reason = "Unchecked: Initial alarm creation"
    return {}


def describe_alarms(backend: Any, given: dict[str, Any]) -> dict[str, Any]:
    if given.get("AlarmNames"):
        alarms = backend.get_alarms_by_alarm_names(given["AlarmNames"])
    elif given.get("AlarmNamePrefix"):
        alarms = backend.get_alarms_by_alarm_name_prefix(given["AlarmNamePrefix"])
    else:
        alarms = backend.describe_alarms()
    return {"MetricAlarms": [described(alarm) for alarm in alarms if not alarm.rule], "CompositeAlarms": []}


def described(alarm: Any) -> dict[str, Any]:
    fields = {
        "AlarmName": alarm.name,
        "AlarmArn": alarm.alarm_arn,
        "AlarmDescription": alarm.description,
        "Namespace": alarm.namespace,
        "MetricName": alarm.metric_name,
        "Dimensions": [{"Name": d.name, "Value": d.value} for d in alarm.dimensions],
        "Statistic": alarm.statistic,
        "ExtendedStatistic": alarm.extended_statistic,
        "Period": alarm.period,
        "EvaluationPeriods": alarm.evaluation_periods,
        "DatapointsToAlarm": alarm.datapoints_to_alarm,
        "Threshold": float(alarm.threshold) if alarm.threshold is not None else None,
        "ComparisonOperator": alarm.comparison_operator,
        "TreatMissingData": alarm.treat_missing_data,
        "ActionsEnabled": alarm.actions_enabled,
        "AlarmActions": alarm.alarm_actions,
        "OKActions": alarm.ok_actions,
        "InsufficientDataActions": alarm.insufficient_data_actions,
        "StateValue": alarm.state_value,
        "StateReason": alarm.state_reason,
        "StateUpdatedTimestamp": alarm.state_updated_timestamp,
        "AlarmConfigurationUpdatedTimestamp": alarm.configuration_updated_timestamp,
    }
    return {name: value for name, value in fields.items() if value is not None}


def delete_alarms(backend: Any, given: dict[str, Any]) -> dict[str, Any]:
    backend.delete_alarms(given.get("AlarmNames", []))
    return {}


def list_tags_for_resource(backend: Any, given: dict[str, Any]) -> dict[str, Any]:
    tags = backend.list_tags_for_resource(given["ResourceARN"])
    return {"Tags": [{"Key": key, "Value": value} for key, value in tags.items()]}


OPERATIONS: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    "PutMetricAlarm": put_metric_alarm,
    "DescribeAlarms": describe_alarms,
    "DeleteAlarms": delete_alarms,
    "ListTagsForResource": list_tags_for_resource,
}


class CloudWatchCbor:
    """moto's server names its routes after the handler's class."""

    @classmethod
    def dispatch(cls, request: Any, full_url: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        return dispatch(request, full_url)


def dispatch(request: Any, full_url: str) -> tuple[int, dict[str, str], bytes]:
    operation = full_url.rstrip("/").rsplit("/", 1)[-1]
    handler = OPERATIONS.get(operation)
    if handler is None:
        return error(400, "UnknownOperationException", f"{operation} is not served by the local stack")
    found = CREDENTIAL.search(request.headers.get("Authorization", ""))
    region = found.group(1) if found else "us-east-1"
    backend = cloudwatch_backends[DEFAULT_ACCOUNT_ID][region]
    body = request.data or b""
    given = cbor2.loads(body) if body else {}
    try:
        answer = handler(backend, given)
    except Exception as err:  # moto's own validation errors carry a code
        code = getattr(err, "error_type", None) or getattr(err, "code", None) or "InvalidParameterValue"
        return error(400, str(code), str(getattr(err, "message", err)))
    return 200, dict(HEADERS), cbor2.dumps(answer, datetime_as_timestamp=True, timezone=timezone.utc)


def error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, dict(HEADERS), cbor2.dumps({"__type": f"com.amazonaws.cloudwatch#{code}", "message": message})


def install() -> None:
    cloudwatch_urls.url_paths[PATH] = CloudWatchCbor.dispatch
