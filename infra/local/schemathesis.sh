#!/usr/bin/env bash
# Fuzzes the API of a running local stack against its OpenAPI document with
# schemathesis (settings and the reasons for them in schemathesis.toml): every
# route, generated valid and invalid inputs, as a developer, an admin and an
# IAM service. Fails on any 5xx and on any answer the document does not allow.
#
#   PAO_API_URL=http://127.0.0.1:3070 infra/local/schemathesis.sh
#
# `make test` runs it from infra/local/integration.sh, on the integration
# stack, after the cargo integration tests (the requests it submits are never
# seen by them). Reports go to $PAO_SCHEMATHESIS_REPORTS (default
# .local/schemathesis).
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${PAO_API_URL:?PAO_API_URL is not set: start a stack (make up) and source its .local/<name>/stack.env}"
reports=${PAO_SCHEMATHESIS_REPORTS:-.local/schemathesis}
# A hard stop for each identity's run, far above what one takes (about a minute).
budget=${PAO_SCHEMATHESIS_SECONDS:-900}

# fuzz NAME IDENTITY-HEADERS... -- [st run options]
fuzz() {
  local who=$1
  shift
  local headers=()
  while [ "$1" != -- ]; do headers+=(-H "$1"); shift; done
  shift
  echo "==> schemathesis as $who"
  timeout --foreground "$budget" .venv/bin/st --config-file infra/local/schemathesis.toml --no-color \
    run "$PAO_API_URL/api/v1/openapi.json" --url "$PAO_API_URL" "${headers[@]}" \
    --report junit --report-dir "$reports/$who" "$@"
}

# Every route as a developer; again as an admin (who sees every request,
# those of the integration tests too, and may refresh the catalog), without
# the coverage phase, whose boundary and invalid inputs do not depend on who
# sends them; the service routes as an IAM caller, whose identity opens no
# other route.
fuzz developer "X-Pao-Dev-User: fuzz-developer@example.com" "X-Pao-Dev-Groups: developers" --
fuzz admin "X-Pao-Dev-User: fuzz-admin@example.com" "X-Pao-Dev-Groups: pao-admins" -- \
  --phases examples,fuzzing,stateful
fuzz service "X-Pao-Dev-Service: arn:aws:iam::123456789012:role/pao-fuzz" -- --include-tag service
