#!/usr/bin/env bash
# Installs every tool the project needs beyond Rust, inside the project:
#   .venv/               moto server, cargo-lambda and the SAM CLI (infra/local/requirements.txt)
#   infra/node_modules/  asl-validator (infra/package-lock.json)
# Re-running it is cheap: each part is redone only when its lock file changed.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "install: $*" >&2; exit 1; }

command -v cargo >/dev/null || fail "cargo is missing: install Rust with rustup (https://rustup.rs)"
command -v python3 >/dev/null || fail "python3 is missing: install Python 3.10 or later"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || fail "python3 is $(python3 -V 2>&1 | cut -d' ' -f2); PAO's local stack needs 3.10 or later"
command -v node >/dev/null || fail "node is missing: install Node.js 18 or later (for asl-validator)"
command -v npm >/dev/null || fail "npm is missing: install it with Node.js"

requirements=infra/local/requirements.txt
stamp=".venv/.installed-$(sha256sum "$requirements" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing the Python tools into .venv"
  python3 -m venv .venv || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements" \
    || fail "pip could not install $requirements"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

lock=infra/package-lock.json
npm_stamp="infra/node_modules/.installed-$(sha256sum "$lock" | cut -c1-16)"
if [ ! -f "$npm_stamp" ]; then
  echo "==> installing the Node tools into infra/node_modules"
  npm ci --prefix infra --no-audit --no-fund --loglevel=error || fail "npm ci could not install $lock"
  touch "$npm_stamp"
fi
