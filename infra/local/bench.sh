#!/usr/bin/env bash
# Submission and catalog-read latency in process against a local stack of its own (free
# ports, .local/bench), stopped again however the benchmark ends.
set -euo pipefail
cd "$(dirname "$0")/../.."

stack() { .venv/bin/python infra/local/stack.py "$@" --name bench; }

stack down >/dev/null
trap 'stack down >/dev/null' EXIT
# The handler's own latency: its DynamoDB, Secrets Manager and StartExecution
# calls on loopback. With the interpreter on, moto would also run every
# started execution in the same Python process, competing with the calls.
stack up --auto-ports --no-executions >/dev/null
set -a
# shellcheck disable=SC1091
. .local/bench/stack.env
set +a
# The bench submits 320 requests as one user within a minute: a limit above
# that, so each submission makes the limit's write and none is refused.
PAO_AUTH_MODE=dev PAO_SUBMISSIONS_PER_MINUTE=1000 cargo bench -p pao --bench submit
