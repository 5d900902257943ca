"""The local stand-in for API Gateway's HTTP API.

One base URL; each method and path is routed to its function the way the HTTP
API routes it, with the routes read from template.yaml. A request becomes an
HTTP API payload 2.0 event (route key and path parameters filled in) sent to
the Lambda Invoke API of `cargo lambda watch`; the function's answer becomes
the HTTP response.

Routes are throttled as the HTTP API's route settings in the template say: a
token bucket per route (its RouteSettings, else DefaultRouteSettings), and a
request that finds its bucket empty gets API Gateway's 429 before any function
runs. `--parameter NAME=VALUE` overrides a template parameter, as
`sam deploy --parameter-overrides` would (stack.py passes its own on).

Locally there is no JWT authorizer: the functions run with PAO_AUTH_MODE=dev
and read the development identity headers themselves.

Usage: gateway.py --port PORT --lambda-url URL --template template.yaml [--concurrency N]
                  [--parameter NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sam_template import ACCOUNT_ID, Route, Template, Throttle, parameter_override

# API Gateway's own limit on a request body.
MAX_BODY_BYTES = 10 * 1024 * 1024
# API Gateway's integration timeout.
INTEGRATION_TIMEOUT_SECONDS = 30


@dataclass
class CompiledRoute:
    route: Route
    pattern: re.Pattern[str]
    literal_segments: int
    greedy: bool

    @classmethod
    def of(cls, route: Route) -> "CompiledRoute":
        parts, literals, greedy = [], 0, False
        for segment in route.path.strip("/").split("/"):
            if segment.startswith("{") and segment.endswith("+}"):
                parts.append(f"(?P<{segment[1:-2]}>.+)")
                greedy = True
            elif segment.startswith("{") and segment.endswith("}"):
                parts.append(f"(?P<{segment[1:-1]}>[^/]+)")
            else:
                parts.append(re.escape(segment))
                literals += 1
        pattern = re.compile("^/" + "/".join(parts) + "$")
        return cls(route, pattern, literals, greedy)


class Router:
    def __init__(self, routes: list[Route]):
        self.routes = [CompiledRoute.of(route) for route in routes]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The most specific route wins: exact before parameters before greedy,
        a named method before ANY."""
        candidates = []
        for compiled in self.routes:
            if compiled.route.method not in (method, "ANY"):
                continue
            found = compiled.pattern.match(path)
            if found:
                rank = (
                    not compiled.greedy,
                    compiled.literal_segments,
                    compiled.route.method != "ANY",
                )
                params = {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
                candidates.append((rank, compiled.route, params))
        if not candidates:
            return None
        _, route, params = max(candidates, key=lambda candidate: candidate[0])
        return route, params


class TokenBucket:
    """API Gateway's throttle of one route: at most `burst` requests at once,
    refilled at `rate` per second; each request takes a token or is refused."""

    def __init__(self, throttle: Throttle, clock=time.monotonic):
        self.rate = throttle.rate
        self.burst = throttle.burst
        self.clock = clock
        self.tokens = float(throttle.burst)
        self.updated = clock()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


def route_buckets(routes: list[Route], default: Throttle | None,
                  per_route: dict[str, Throttle]) -> dict[str, TokenBucket]:
    """A bucket for each route key: its own route settings, else the API's
    default. A route with neither is not throttled (has no bucket)."""
    buckets = {}
    for route in routes:
        throttle = per_route.get(route.key, default)
        if throttle is not None:
            buckets[route.key] = TokenBucket(throttle)
    return buckets


def build_event(handler: BaseHTTPRequestHandler, route: Route, params: dict[str, str], body: bytes) -> dict:
    url = urllib.parse.urlsplit(handler.path)
    headers: dict[str, str] = {}
    for name, value in handler.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = time.time()
    try:
        text, is_base64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_base64 = base64.b64encode(body).decode("ascii"), True
    event = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": handler.command,
                "path": url.path,
                "protocol": handler.request_version,
                "sourceIp": handler.client_address[0],
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route.key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if "cookie" in headers:
        event["cookies"] = [c.strip() for c in headers["cookie"].split(";")]
    if query:
        event["queryStringParameters"] = query
    if params:
        event["pathParameters"] = params
    if body:
        event["body"] = text
    return event


class GatewayHandler(BaseHTTPRequestHandler):
    server_version = "pao-local-gateway"
    router: Router
    lambda_url: str
    # By route key; built once at start, then only read.
    buckets: dict[str, TokenBucket] = {}
    # Invocations in flight per function: cargo lambda watch's --concurrency.
    concurrency: int
    slots: dict[str, threading.BoundedSemaphore] = {}
    lock = threading.Lock()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (base class name)
        sys.stderr.write(json.dumps({"gateway": format % args}) + "\n")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, cookies=()) -> None:
        self.send_response(status)
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        headers.setdefault("content-type", "application/json")
        headers["content-length"] = str(len(body))
        for name, value in headers.items():
            if name not in ("transfer-encoding", "connection"):
                self.send_header(name, value)
        for cookie in cookies:
            self.send_header("set-cookie", cookie)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _message(self, status: int, message: str) -> None:
        # API Gateway's own answers have this shape, without spaces.
        self._send(status, json.dumps({"message": message}, separators=(",", ":")).encode())

    def __getattr__(self, name: str):
        # BaseHTTPRequestHandler looks up `do_<METHOD>` and answers 501 with
        # an HTML page when there is none; the HTTP API takes every method to
        # its routes, and answers one no route has with its JSON 404.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # A request the server could not parse (a bad request line, an HTTP
        # version it does not speak, a header too long) is the client's
        # mistake: a 4xx in JSON, never BaseHTTPRequestHandler's HTML page.
        # Before the request line is understood the server takes it for
        # HTTP/0.9 and would send no status line at all.
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        code = 400 if code >= 500 else code
        self._message(code, HTTPStatus(code).phrase)

    def _handle(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        matched = self.router.match(self.command, path)
        if matched is None:
            return self._message(404, "Not Found")
        route, params = matched
        length = self.headers.get("content-length") or "0"
        if not (length.isascii() and length.isdigit()):
            return self._message(400, "Bad Request")
        length = int(length)
        if length > MAX_BODY_BYTES:
            return self._message(413, "Request Entity Too Large")
        body = self.rfile.read(length) if length else b""
        # Read first so the connection stays usable; refused before any
        # instance is waited for, as API Gateway throttles on arrival.
        bucket = self.buckets.get(route.key)
        if bucket is not None and not bucket.take():
            return self._message(429, "Too Many Requests")
        event = build_event(self, route, params, body)
        # Lambda scales out where cargo lambda watch runs a fixed number of
        # instances: invocations beyond them wait here, and the integration
        # timeout counts from when an instance takes the event, as in AWS.
        with self.instances(route.function):
            self._invoke(route, event)

    @classmethod
    def instances(cls, function: str) -> threading.BoundedSemaphore:
        with cls.lock:
            return cls.slots.setdefault(function, threading.BoundedSemaphore(cls.concurrency))

    def _invoke(self, route: Route, event: dict) -> None:
        request = urllib.request.Request(
            f"{self.lambda_url}/2015-03-31/functions/{route.function}/invocations",
            data=json.dumps(event).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=INTEGRATION_TIMEOUT_SECONDS) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", errors="replace")[:500]
            sys.stderr.write(json.dumps({"gateway": "function error", "function": route.function, "detail": detail}) + "\n")
            return self._message(500, "Internal Server Error")
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            sys.stderr.write(json.dumps({"gateway": "integration failed", "function": route.function, "detail": str(err)}) + "\n")
            return self._message(503, "Service Unavailable")
        self._reply(payload)

    def _reply(self, payload: bytes) -> None:
        try:
            result = json.loads(payload)
        except json.JSONDecodeError:
            return self._message(500, "Internal Server Error")
        if not isinstance(result, dict) or "statusCode" not in result:
            # Payload 2.0: a result without statusCode is a 200 JSON body.
            return self._send(200, payload)
        body = result.get("body") or ""
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode("utf-8")
        headers = dict(result.get("headers") or {})
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers[name] = ",".join(values)
        self._send(int(result["statusCode"]), raw, headers, result.get("cookies") or ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lambda-url", required=True)
    parser.add_argument("--template", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=8,
                        help="instances per function cargo lambda watch runs")
    parser.add_argument("--parameter", action="append", default=[], type=parameter_override, metavar="NAME=VALUE",
                        help="a template parameter to override (repeatable)")
    args = parser.parse_args()
    template = Template(args.template, dict(args.parameter))
    routes = template.routes()
    GatewayHandler.concurrency = args.concurrency
    GatewayHandler.router = Router(routes)
    GatewayHandler.buckets = route_buckets(routes, *template.throttling())
    GatewayHandler.lambda_url = args.lambda_url.rstrip("/")
    # Bursts of connections (a load test's thousand at once) queue rather
    # than being reset, as they would be behind API Gateway.
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer(("127.0.0.1", args.port), GatewayHandler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
