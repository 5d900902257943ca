"""The HTTP side: TLS, routing of `/clusters/<name>/...` paths, the EKS
token check, and turning every failure into a `Status` answer.

    GET    .../version, .../api, .../apis, .../api/v1, .../apis/<group>/<version>
    GET    a resource's list (labelSelector, fieldSelector), an object, its /status
    PATCH  an object, server-side apply only (Content-Type application/apply-patch+yaml,
           fieldManager required, force honoured); 201 when it was created, else 200
    DELETE an object: a Status when it is gone, a namespace itself while it terminates
    GET    /_health, /_objects[?cluster=NAME]   no token: the stack's own reads

Anything else on a served path is 405, any other path 404. Watches,
create (POST), replace (PUT), other patch types and dry runs are not
served: each is refused saying so, not misread.
"""

from __future__ import annotations

import datetime
import json
import re
import socket
import ssl
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from kube import apply, resources, selectors, token
from kube.controllers import Controllers
from kube.resources import NAMESPACES, Resource
from kube.status import ApiError, bad_request, method_not_allowed, no_route, success, unauthorized
from kube.store import Store
from kube.tls import Certificates

# The API server's own limit on a request body.
MAX_BODY = 3 * 1024 * 1024
APPLY_PATCH = "application/apply-patch+yaml"
CLUSTER_PATH = re.compile(r"^/clusters/([0-9A-Za-z][0-9A-Za-z_-]*)(/.*)?$")
HANDSHAKE_SECONDS = 30


class JsonValuesLoader(yaml.SafeLoader):
    """YAML as the API server reads it: through JSON, so an unquoted date stays a string."""


JsonValuesLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An idle kept-alive connection is closed after this: longer than the
    # 90 s hyper's pool (kube-rs) keeps one by default, so the client lets
    # go first and never sends a request on a connection being closed.
    timeout = 120
    store: Store
    controllers: Controllers
    credentials: token.Credentials

    def log_message(self, fmt: str, *args: Any) -> None:  # one JSON line per request instead
        pass

    def do_GET(self) -> None:
        self.serve("GET")

    def do_PATCH(self) -> None:
        self.serve("PATCH")

    def do_DELETE(self) -> None:
        self.serve("DELETE")

    def do_POST(self) -> None:
        self.serve("POST")

    def do_PUT(self) -> None:
        self.serve("PUT")

    def serve(self, method: str) -> None:
        self.refused = ""
        body = self.read_body()
        url = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        try:
            status, answer = self.respond(method, url.path, query, body)
        except ApiError as err:
            status, answer = err.code, err.status()
        except Exception as err:  # noqa: BLE001 (a bug of the stand-in: answered as the API server would, and logged)
            traceback.print_exc()
            status, answer = 500, ApiError(500, "InternalError", f"{type(err).__name__}: {err}").status()
        self.answer(status, answer)

    def respond(self, method: str, path: str, query: dict[str, str], body: bytes | None) -> tuple[int, dict[str, Any]]:
        if body is None:
            raise ApiError(413, "RequestEntityTooLarge", "the request body is too large")
        if path in ("/_health", "/_objects"):
            return 200, self.own_read(path, method, query)
        matched = CLUSTER_PATH.match(path)
        if matched is None:
            raise no_route()
        cluster, rest = matched.group(1), matched.group(2) or "/"
        self.authenticate(cluster)
        return self.route(method, cluster, rest, query, body)

    # ------------------------------------------------------------ routes
    def own_read(self, path: str, method: str, query: dict[str, str]) -> dict[str, Any]:
        if method != "GET":
            raise method_not_allowed()
        if path == "/_health":
            return {"ok": True}
        return {"clusters": self.store.snapshot(query.get("cluster"))}

    def route(self, method: str, cluster: str, rest: str, query: dict[str, str],
              body: bytes) -> tuple[int, dict[str, Any]]:
        discovery = _discovery(rest)
        if discovery is not None:
            if method != "GET":
                raise method_not_allowed()
            return 200, discovery
        resource, namespace, name, subresource = _address(rest)
        if method == "GET":
            if name is None:
                return 200, self.list(cluster, resource, namespace, query)
            return 200, self.store.get(cluster, resource, namespace or "", name)
        if name is None or subresource is not None or not resource.applicable or method not in ("PATCH", "DELETE"):
            raise method_not_allowed()
        if query.get("dryRun"):
            raise bad_request("dryRun is not served by the local stand-in")
        if method == "PATCH":
            return self.apply(cluster, resource, namespace or "", name, query, body)
        return self.delete(cluster, resource, namespace or "", name)

    def list(self, cluster: str, resource: Resource, namespace: str | None, query: dict[str, str]) -> dict[str, Any]:
        if query.get("watch") in ("true", "1"):
            raise bad_request("watch is not served by the local stand-in: poll with GET")
        matches = selectors.matcher(query.get("labelSelector", ""), query.get("fieldSelector", ""))
        items, version = self.store.list(cluster, resource, namespace, matches)
        return {"kind": f"{resource.kind}List", "apiVersion": resource.api_version,
                "metadata": {"resourceVersion": version}, "items": items}

    def apply(self, cluster: str, resource: Resource, namespace: str, name: str, query: dict[str, str],
              body: bytes) -> tuple[int, dict[str, Any]]:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != APPLY_PATCH:
            raise ApiError(415, "UnsupportedMediaType", f"the content type {content_type!r} is not served by the "
                           f"local stand-in: it serves server-side apply ({APPLY_PATCH}) only")
        manager = query.get("fieldManager", "")
        if not manager:
            required = "Required value: is required for apply patch"
            raise ApiError(422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: fieldManager: {required}',
                           {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
                               {"reason": "FieldValueRequired", "message": required, "field": "fieldManager"}]})
        try:
            # YAML reads JSON too, which is what kube-rs sends under this content type.
            config = yaml.load(body.decode("utf-8"), Loader=JsonValuesLoader)
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise bad_request(f"error decoding YAML: {err}") from None
        config = apply.checked(resource, namespace, name, config)
        obj, created, spec_changed = self.store.apply(cluster, resource, namespace, name, config, manager,
                                                      query.get("force") == "true")
        self.controllers.applied(cluster, resource, obj, spec_changed)
        return (201 if created else 200), obj

    def delete(self, cluster: str, resource: Resource, namespace: str, name: str) -> tuple[int, dict[str, Any]]:
        obj = self.store.delete(cluster, resource, namespace, name)
        self.controllers.deleted(cluster, resource, obj)
        if resource is NAMESPACES:
            return 200, obj
        return 200, success(resource, name, obj["metadata"]["uid"])

    # ------------------------------------------------------------ plumbing
    def authenticate(self, cluster: str) -> None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            self.refused = "no bearer token"
            raise unauthorized()
        try:
            token.verify(header[len("Bearer "):].strip(), cluster, self.credentials,
                         datetime.datetime.now(datetime.timezone.utc))
        except token.TokenRefused as err:
            self.refused = str(err)
            raise unauthorized() from None

    def read_body(self) -> bytes | None:
        """The whole body, read even when the request will be refused, so the
        connection stays usable; None when it is too large (then the
        connection is closed)."""
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        line = {"at": time.strftime("%H:%M:%S"), "method": self.command, "path": self.path, "status": status}
        if self.refused:
            line["refused"] = self.refused
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


class TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, context: ssl.SSLContext):
        self.context = context
        super().__init__(("127.0.0.1", port), Handler)

    def finish_request(self, request: socket.socket, client_address: Any) -> None:
        # The handshake runs in the request's own thread: a slow or silent
        # client holds up no one else.
        request.settimeout(HANDSHAKE_SECONDS)
        with self.context.wrap_socket(request, server_side=True) as tls:
            self.RequestHandlerClass(tls, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        print(json.dumps({"at": time.strftime("%H:%M:%S"), "connection": f"{type(error).__name__}: {error}"}),
              file=sys.stderr, flush=True)


def build(port: int, certificates: Certificates, store: Store, controllers: Controllers,
          credentials: token.Credentials) -> TLSServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificates.cert, certificates.key)
    context.set_alpn_protocols(["http/1.1"])
    Handler.store, Handler.controllers, Handler.credentials = store, controllers, credentials
    return TLSServer(port, context)


def _discovery(rest: str) -> dict[str, Any] | None:
    if rest == "/version":
        return resources.version_info()
    if rest == "/api":
        return resources.api_versions()
    if rest == "/apis":
        return resources.api_groups()
    parts = rest.strip("/").split("/")
    if parts == ["api", "v1"]:
        return resources.api_resources("", "v1")
    if len(parts) == 3 and parts[0] == "apis":
        found = resources.api_resources(parts[1], parts[2])
        if found is None:
            raise no_route()
        return found
    return None


def _address(rest: str) -> tuple[Resource, str | None, str | None, str | None]:
    """The resource, namespace, name and subresource a path names (404 when it names none):

        /api/v1/<plural>[/<name>[/status]]                         cluster-scoped, or every namespace's list
        /api/v1/namespaces/<ns>/<plural>[/<name>[/status]]         namespaced
        /apis/<group>/<version>/...                                the same under a group
    """
    parts = rest.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        group, version, parts = "", "v1", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, parts = parts[1], parts[2], parts[3:]
    else:
        raise no_route()
    namespace = None
    if len(parts) >= 3 and parts[0] == "namespaces" and resources.find(group, version, parts[2]) is not None:
        namespace, parts = parts[1], parts[2:]
    if not 1 <= len(parts) <= 3 or (len(parts) == 3 and parts[2] != "status"):
        raise no_route()
    resource = resources.find(group, version, parts[0])
    if resource is None or (namespace is not None and not resource.namespaced):
        raise no_route()
    name = parts[1] if len(parts) > 1 else None
    if name is not None and resource.namespaced and namespace is None:
        raise no_route()
    return resource, namespace, name, parts[2] if len(parts) == 3 else None
