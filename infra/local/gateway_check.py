"""Checks the local gateway's throttling (gateway.py), with no Rust: the token
bucket against a clock the check moves, and from many threads at once; the
throttle each route gets from the real template.yaml (submission 10/s with a
burst of 20, every other route 50/s with 100, as the parameters' defaults
say), parameter overrides, and the template mistakes the stack must refuse.
Then for real over HTTP: gateway.py started on a free port in front of a
stand-in for the Lambda Invoke API, a burst of submissions beyond the
bucket, API Gateway's exact 429 for the rest and no function invoked for
them, the bucket refilled after a second, other routes untouched.

Each check prints `ok` or `FAIL` and what it checked; the run exits 1 if
any failed. The gateway runs in a session of its own and is stopped by PID
whatever happens; the whole run is bounded by DEADLINE_SECONDS. It takes
about 3 s.

Usage: gateway_check.py
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TEMPLATE = ROOT / "template.yaml"
sys.path.insert(0, str(HERE))

from check_harness import Checks, free_port, run_checks, start, stop, wait_for  # noqa: E402
from gateway import TokenBucket, route_buckets  # noqa: E402
from sam_template import Template, TemplateError, Throttle  # noqa: E402

DEADLINE_SECONDS = 30
START_SECONDS = 15
SUBMIT = "POST /api/v1/requests"
THROTTLED = b'{"message":"Too Many Requests"}'


class Clock:
    """A monotonic clock the check moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def check_bucket(check: Checks) -> None:
    clock = Clock()
    bucket = TokenBucket(Throttle(rate=10, burst=20), clock)
    taken = sum(bucket.take() for _ in range(25))
    check("a full bucket lets the burst through at once (20 of 25), then refuses", taken == 20, taken)
    clock.now += 0.1
    check("... 0.1 s at 10/s refills one request, and only one", [bucket.take(), bucket.take()] == [True, False])
    clock.now += 3600
    taken = sum(bucket.take() for _ in range(25))
    check("an hour idle refills no more than the burst", taken == 20, taken)

    slow = TokenBucket(Throttle(rate=0.5, burst=1), clock)
    first = slow.take()
    clock.now += 1.0
    early = slow.take()
    clock.now += 1.0
    check("a rate below one per second refills a request every 2 s", (first, early, slow.take()) == (True, False, True))

    # A clock that never moves: exactly the burst may pass, however the
    # threads interleave.
    shared = TokenBucket(Throttle(rate=10, burst=100), Clock())
    with ThreadPoolExecutor(max_workers=16) as pool:
        taken = sum(pool.map(lambda _: shared.take(), range(800)))
    check("800 takes from 16 threads at once: exactly the burst of 100 pass", taken == 100, taken)


def check_template(check: Checks, work: Path) -> None:
    template = Template(TEMPLATE)
    default, per_route = template.throttling()
    check("template.yaml: every route 50/s with a burst of 100 (ApiRateLimit, ApiBurstLimit)",
          default == Throttle(rate=50, burst=100), default)
    check("template.yaml: submission 10/s with a burst of 20 (SubmitRateLimit, SubmitBurstLimit)",
          per_route == {SUBMIT: Throttle(rate=10, burst=20)}, per_route)

    routes = template.routes()
    buckets = route_buckets(routes, default, per_route)
    check("a bucket for every route of the template", set(buckets) == {route.key for route in routes},
          {route.key for route in routes} - set(buckets))
    submit = buckets[SUBMIT]
    status = buckets["GET /api/v1/requests/{id}/status"]
    service = buckets["POST /api/v1/service/requests"]
    check("the submission route's bucket is 10/20; the status route's and the service submission's 50/100",
          (submit.rate, submit.burst, status.rate, status.burst, service.rate, service.burst)
          == (10, 20, 50, 100, 50, 100),
          [(b.rate, b.burst) for b in (submit, status, service)])
    check("each route has a bucket of its own (the default is per route, not shared)",
          len({id(bucket) for bucket in buckets.values()}) == len(buckets))

    overridden = Template(TEMPLATE, {"SubmitBurstLimit": "200", "ApiRateLimit": "5"}).throttling()
    check("parameter overrides reach the throttles, the rest keep their defaults",
          overridden == (Throttle(rate=5, burst=100), {SUBMIT: Throttle(rate=10, burst=200)}), overridden)
    try:
        Template(TEMPLATE, {"SubmitBurstLimt": "200"})
        refused = None
    except TemplateError as err:
        refused = err
    check("an override of a parameter the template lacks is refused", refused is not None)

    text = TEMPLATE.read_text()
    wrong_key = work / "wrong-key.yaml"
    wrong_key.write_text(text.replace(f'"{SUBMIT}":', '"POST /api/v1/request":', 1))
    partial = work / "partial.yaml"
    partial.write_text(text.replace("          ThrottlingRateLimit: !Ref SubmitRateLimit\n", "", 1))
    for what, path in (("a RouteSettings key that is no route", wrong_key),
                       ("route settings with a burst but no rate", partial)):
        try:
            Template(path).throttling()
            refused = None
        except TemplateError as err:
            refused = err
        check(f"{what} is refused", refused is not None and path.read_text() != text, refused)


class StandIn(BaseHTTPRequestHandler):
    """The Lambda Invoke API of cargo lambda watch: every function answers 202."""

    invocations: dict[str, int] = {}
    lock = threading.Lock()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (base class name)
        pass

    def do_POST(self) -> None:  # noqa: N802 (the base class's name)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        function = self.path.split("/")[3]
        with self.lock:
            self.invocations[function] = self.invocations.get(function, 0) + 1
        body = json.dumps({"statusCode": 202, "headers": {"content-type": "application/json"}, "body": "{}"})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def call(api: str, method: str, path: str) -> tuple[int, bytes, str]:
    data = b"{}" if method == "POST" else None
    request = urllib.request.Request(api + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("content-type", "")


def check_http(check: Checks, work: Path) -> None:
    functions = ThreadingHTTPServer(("127.0.0.1", free_port()), StandIn)
    threading.Thread(target=functions.serve_forever, daemon=True).start()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    log = work / "gateway.log"
    # A small bucket for submission, so the check does not hang on the
    # clock: 5 at once, then one a second.
    gateway = start([sys.executable, str(HERE / "gateway.py"), "--port", str(port),
                     "--lambda-url", f"http://127.0.0.1:{functions.server_port}", "--template", str(TEMPLATE),
                     "--parameter", "SubmitRateLimit=1", "--parameter", "SubmitBurstLimit=5"], log)
    try:
        wait_for(f"{api}/api/v1/health", START_SECONDS, process=gateway, log=log)
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(lambda _: call(api, "POST", "/api/v1/requests"), range(12)))
        refilled = math.floor(time.monotonic() - began)  # the rate is 1/s
        accepted = sum(1 for status, _, _ in answers if status == 202)
        check("12 submissions at once with a burst of 5: 5 reach the function, the rest are 429",
              5 <= accepted <= 5 + refilled and all(status in (202, 429) for status, _, _ in answers),
              [status for status, _, _ in answers])
        refused = [(body, kind) for status, body, kind in answers if status == 429]
        check('every 429 is API Gateway\'s: {"message":"Too Many Requests"}, application/json',
              refused and all(body == THROTTLED and kind == "application/json" for body, kind in refused), refused[:2])
        check("no function ran for a refused submission",
              StandIn.invocations.get("requests-api") == accepted, (StandIn.invocations, accepted))

        status, _, _ = call(api, "GET", "/api/v1/requests")
        check("another route of the same function is not throttled by submission's bucket", status == 202, status)
        time.sleep(1.1)
        status, _, _ = call(api, "POST", "/api/v1/requests")
        check("a second later the bucket has refilled a submission", status == 202, status)
        status, _, _ = call(api, "GET", "/api/v1/nowhere")
        check("an unknown route is still 404, not 429", status == 404, status)
    finally:
        stop([gateway])
        functions.shutdown()


def run(check: Checks, work: Path) -> None:
    check_bucket(check)
    check_template(check, work)
    check_http(check, work)


def main() -> int:
    return run_checks(run, "gateway-check-", DEADLINE_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
