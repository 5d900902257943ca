#!/usr/bin/env bash
# The load test on a local stack of its own (free ports, .local/load),
# stopped again however the test ends: 1,000 submissions at once through the
# API, then a count of requests and executions.
set -euo pipefail
cd "$(dirname "$0")/../.."

stack() { .venv/bin/python infra/local/stack.py "$@" --name load; }

stack down >/dev/null
trap 'stack down >/dev/null' EXIT
# Executions are recorded, not run: with the interpreter on, moto would run
# a thousand executions in its one Python process beside the submissions,
# and the test would measure that instead.
# The submission route's throttle is lifted and the per-caller submission
# limit is off: the test measures what the stack sustains, where the
# deployed limits (10/s, 20 at once; 30 new requests a minute per caller)
# would measure API Gateway and the limit instead, refusing exactly what
# this one user sends.
stack up --auto-ports --no-executions --parameter SubmitRateLimit=1000 --parameter SubmitBurstLimit=1000 --parameter SubmissionsPerMinute=0 >/dev/null
.venv/bin/python infra/local/load.py --name load --requests 1000 --concurrency 1000
