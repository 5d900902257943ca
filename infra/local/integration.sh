#!/usr/bin/env bash
# Checks the Kubernetes stand-in, the fake GitHub and HCP Terraform and the
# gateway's throttling (their *_check.py), then
# runs the integration tests on a stack of their own: free ports, state under
# .local/test, stopped again however the tests end. A developer's `make up`
# stack is never touched. Then, on the same stack, the schemathesis run of
# the API against its OpenAPI document (infra/local/schemathesis.sh): after
# the cargo tests, so nothing it submits is there while they run. Last, no
# secret setting of the functions may be in any of the stack's logs.
set -euo pipefail
cd "$(dirname "$0")/../.."

stack() { .venv/bin/python infra/local/stack.py "$@" --name test; }

# The Kubernetes stand-in and the fakes of GitHub and HCP Terraform on
# their own first (their
# processes, their ports): the tokens they must refuse, the objects and
# calls they must reject, without Rust. Then the gateway's throttling.
.venv/bin/python infra/local/kube_standin_check.py
.venv/bin/python infra/local/fake_github_check.py
.venv/bin/python infra/local/fake_terraform_check.py
.venv/bin/python infra/local/gateway_check.py

# Build the tests first, so the stack's functions do not sit idle meanwhile.
cargo test -p pao-integration --features pao/test-build --no-run
stack down >/dev/null
trap 'stack down >/dev/null' EXIT
# The template's throttling as deployed, but for submission's burst:
# tests/requests.rs sends 100 identical submissions at once to show they
# make one request, where API Gateway would let 20 through (the rate stays
# 10/s; schemathesis paces its submissions to it, see schemathesis.toml).
stack up --auto-ports --parameter SubmitBurstLimit=200
set -a
# shellcheck disable=SC1091
. .local/test/stack.env
set +a
cargo test -p pao-integration --features pao/test-build "$@"
PAO_SCHEMATHESIS_REPORTS=.local/test/schemathesis infra/local/schemathesis.sh
.venv/bin/python infra/local/check_logs.py --name test
