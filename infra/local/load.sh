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
# and the test would measure that instead. The submission limit is off: the
# test is one user submitting 1,000 requests at once, which is exactly what
# the limit exists to refuse.
stack up --auto-ports --no-executions --set PAO_SUBMISSIONS_PER_MINUTE=0 >/dev/null
.venv/bin/python infra/local/load.py --name load --requests 1000 --concurrency 1000
