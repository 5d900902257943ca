"""Reads template.yaml for the local stack: the one description of PAO.

The bootstrap creates the stack's resources from it and the gateway takes its
routes and their throttling from it, so nothing local keeps a second list
that could drift. This module resolves the few intrinsic functions the
template uses (Ref, GetAtt, Sub) the way CloudFormation would for a stack
named STACK_NAME, with the parameters' defaults or the overrides it is given
(as `sam deploy --parameter-overrides` would set them).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STACK_NAME = "pao-local"


class TemplateError(Exception):
    """The template uses something the local stack cannot reproduce."""


def parameter_override(text: str) -> tuple[str, str]:
    """`NAME=VALUE` from a command line, as an argparse type."""
    name, equals, value = text.partition("=")
    if not name or not equals:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


class _CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(loader: yaml.Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@dataclass
class Route:
    method: str  # GET, POST, ... or ANY
    path: str  # /api/v1/catalog/items/{item_id}
    function: str  # the binary that serves it

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Throttle:
    """Route settings' throttling: a bucket of `burst` requests, refilled at
    `rate` requests per second."""

    rate: float
    burst: int


@dataclass
class Function:
    logical_id: str
    binary: str
    timeout: int
    environment: dict[str, str] = field(default_factory=dict)


class Template:
    def __init__(self, path: Path, overrides: dict[str, str] | None = None):
        self.path = path
        self.root = path.parent
        with path.open() as handle:
            self.doc = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 (SafeLoader subclass)
        self.resources: dict[str, dict[str, Any]] = self.doc.get("Resources", {})
        self.globals: dict[str, Any] = self.doc.get("Globals", {}).get("Function", {})
        self.parameters = {
            name: str(spec.get("Default", ""))
            for name, spec in self.doc.get("Parameters", {}).items()
        }
        for name, value in (overrides or {}).items():
            if name not in self.parameters:
                raise TemplateError(f"no parameter {name} to override")
            self.parameters[name] = value

    # ------------------------------------------------------------ resources
    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == resource_type
        }

    def binary_of(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if not binary:
            raise TemplateError(f"{logical_id}: Metadata.BuildProperties.Binary is missing")
        return binary

    def functions(self) -> list[Function]:
        functions = []
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            props = resource.get("Properties", {})
            env = dict(self.globals.get("Environment", {}).get("Variables", {}))
            env.update(props.get("Environment", {}).get("Variables", {}))
            functions.append(
                Function(
                    logical_id=logical_id,
                    binary=self.binary_of(logical_id),
                    timeout=int(props.get("Timeout", self.globals.get("Timeout", 3))),
                    environment={name: str(self.resolve(value)) for name, value in env.items()},
                )
            )
        return functions

    def routes(self) -> list[Route]:
        routes = []
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            for event in resource.get("Properties", {}).get("Events", {}).values():
                if event.get("Type") != "HttpApi":
                    continue
                props = event.get("Properties", {})
                if "RouteSettings" in props:
                    # The gateway reads throttling from the API's own
                    # RouteSettings only; one on an event would go unenforced.
                    raise TemplateError(f"{logical_id}: put RouteSettings on the HttpApi, keyed by route")
                method = str(props.get("Method", "ANY")).upper()
                if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
                    method = "ANY"
                routes.append(Route(method, props["Path"], self.binary_of(logical_id)))
        return routes

    def throttling(self) -> tuple[Throttle | None, dict[str, Throttle]]:
        """The HTTP API's DefaultRouteSettings and its RouteSettings by route
        key, as throttles; None where the API sets no default."""
        apis = self.of_type("AWS::Serverless::HttpApi")
        if len(apis) != 1:
            raise TemplateError(f"the local gateway serves one HttpApi, the template has {len(apis)}")
        props = next(iter(apis.values())).get("Properties", {})
        default = None
        if "DefaultRouteSettings" in props:
            default = self._throttle("DefaultRouteSettings", props["DefaultRouteSettings"])
        keys = {route.key for route in self.routes()}
        per_route = {}
        for key, settings in props.get("RouteSettings", {}).items():
            if key not in keys:
                # CloudFormation refuses such a stage too ("Unable to find Route by key").
                raise TemplateError(f"RouteSettings: no route {key!r}")
            per_route[key] = self._throttle(f"RouteSettings {key}", settings)
        return default, per_route

    def _throttle(self, where: str, settings: dict[str, Any]) -> Throttle:
        if not {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(settings):
            raise TemplateError(f"{where}: the local gateway needs both ThrottlingRateLimit and ThrottlingBurstLimit")
        return Throttle(rate=float(self.resolve(settings["ThrottlingRateLimit"])),
                        burst=int(self.resolve(settings["ThrottlingBurstLimit"])))

    # ------------------------------------------------------------ physical names
    def physical_name(self, logical_id: str) -> str:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"Ref to unknown resource {logical_id}")
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::DynamoDB::Table" and "TableName" in props:
            return str(self.resolve(props["TableName"]))
        if kind == "AWS::S3::Bucket" and "BucketName" in props:
            return str(self.resolve(props["BucketName"]))
        if kind == "AWS::Serverless::StateMachine" and "Name" in props:
            return str(self.resolve(props["Name"]))
        if kind == "AWS::Serverless::Function":
            # Locally a function is named after its binary: that is the name
            # `cargo lambda watch` serves it by.
            return self.binary_of(logical_id)
        return f"{STACK_NAME}-{logical_id}"

    def arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.physical_name(logical_id)
        if kind == "AWS::Serverless::Function":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        if kind == "AWS::Serverless::StateMachine":
            return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
        if kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        if kind == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}"
        raise TemplateError(f"no local ARN for {logical_id} ({kind})")

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::StackName": STACK_NAME,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        kind = self.resources.get(name, {}).get("Type")
        if kind == "AWS::Serverless::StateMachine":
            return self.arn(name)  # Ref of a state machine is its ARN
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute == "Name":
            return self.physical_name(logical_id)
        raise TemplateError(f"GetAtt {logical_id}.{attribute} is not supported locally")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self.ref(value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            logical_id, attribute = value["Fn::GetAtt"]
            return self.get_att(logical_id, attribute)
        if set(value) == {"Fn::Sub"}:
            return self._sub(value["Fn::Sub"])
        if len(value) == 1 and next(iter(value)).startswith("Fn::"):
            raise TemplateError(f"{next(iter(value))} is not supported by the local stack")
        return {key: self.resolve(item) for key, item in value.items()}

    def _sub(self, template: Any) -> str:
        variables: dict[str, Any] = {}
        if isinstance(template, list):
            template, variables = template
        text = str(template)

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^!}][^}]*)\}", replace, text)

    # ------------------------------------------------------------ state machines
    def definition(self, logical_id: str) -> str:
        """The ASL of a state machine with its DefinitionSubstitutions applied."""
        props = self.resources[logical_id].get("Properties", {})
        text = (self.root / props["DefinitionUri"]).read_text()
        for name, value in props.get("DefinitionSubstitutions", {}).items():
            text = text.replace("${" + name + "}", str(self.resolve(value)))
        leftover = re.findall(r"\$\{(\w+)\}", text)
        if leftover:
            raise TemplateError(f"{logical_id}: no substitution for ${{{leftover[0]}}}")
        return text
