"""Kubernetes `Status` objects: every error the stand-in answers has the
shape, reason and wording the API server gives it, because kube-rs turns
that body into its `ErrorResponse` and the product decides on its `reason`
and `code`."""

from __future__ import annotations

from typing import Any

from kube.resources import Resource


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def details(resource: Resource, name: str, kind: str | None = None, **more: Any) -> dict[str, Any]:
    """`details` as the API server fills it: the group is left out for the
    core group, and `kind` is the resource's plural unless said otherwise."""
    found = {"name": name, "group": resource.group, "kind": kind or resource.plural, **more}
    return {key: value for key, value in found.items() if value}


def success(resource: Resource, name: str, uid: str) -> dict[str, Any]:
    """What DELETE answers for an object that is gone at once."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details(resource, name, uid=uid)}


def unauthorized() -> ApiError:
    # The API server never says why a credential was refused; the log does.
    return ApiError(401, "Unauthorized", "Unauthorized")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource.qualified_plural} "{name}" not found', details(resource, name))


def no_route() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


def invalid(resource: Resource, name: str, causes: list[dict[str, str]]) -> ApiError:
    said = [f"{cause['field']}: {cause['message']}" for cause in causes]
    listed = said[0] if len(said) == 1 else f"[{', '.join(said)}]"
    return ApiError(422, "Invalid", f'{resource.qualified_kind} "{name}" is invalid: {listed}',
                    details(resource, name, kind=resource.kind, causes=causes))


def forbidden(resource: Resource, name: str, why: str, causes: list[dict[str, str]] | None = None) -> ApiError:
    return ApiError(403, "Forbidden", f'{resource.qualified_plural} "{name}" is forbidden: {why}',
                    details(resource, name, causes=causes))


def conflict(resource: Resource, name: str, message: str, causes: list[dict[str, str]] | None = None) -> ApiError:
    return ApiError(409, "Conflict", message, details(resource, name, causes=causes))
