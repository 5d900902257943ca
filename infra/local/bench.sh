#!/usr/bin/env bash
# Submission latency in process against a local stack of its own (free
# ports, .local/bench), stopped again however the benchmark ends.
set -euo pipefail
cd "$(dirname "$0")/../.."

stack() { .venv/bin/python infra/local/stack.py "$@" --name bench; }

stack down >/dev/null
trap 'stack down >/dev/null' EXIT
stack up --auto-ports >/dev/null
set -a
# shellcheck disable=SC1091
. .local/bench/stack.env
set +a
# The handler's own latency: its DynamoDB, Secrets Manager and StartExecution
# calls on loopback. moto's ASL interpreter would otherwise run every started
# execution in the same Python process, competing with the calls measured.
curl -fsS -X POST "$AWS_ENDPOINT_URL/moto-api/config" \
    -d '{"stepfunctions": {"execute_state_machine": false}}' >/dev/null
PAO_AUTH_MODE=dev cargo bench -p pao --bench submit
