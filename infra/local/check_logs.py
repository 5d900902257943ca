"""Checks that no secret value reached a log of a local stack.

The secrets are the values of the functions' secret settings (every name in
PAO_TEMPLATE_SECRETS and every name that says TOKEN, SECRET or PASSWORD; the
emulator's dummy AWS keys and ARNs are configuration, not secrets) plus any value given
with --secret (a password a test or the demo typed). Every file under the
stack's logs/ is read; the first finding of each secret in each file is
reported by the secret's name and the file, never by its value.

Usage: check_logs.py --name NAME [--secret NAME=VALUE ...]
Exit status 1 when a secret was found.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PRIVATE_KEY")
# Shorter values would match ordinary text by chance; real secrets are longer.
MIN_SECRET_CHARS = 8


def key_material(value: str) -> str:
    """A PEM held on one line (`\\n` for its line breaks) is searched for by
    its first line of key material: a leak would show the lines, not the
    escaped whole."""
    if "-----BEGIN" not in value:
        return value
    lines = [line for line in value.replace("\\n", "\n").splitlines() if line and "-----" not in line]
    return lines[0] if lines else value


def secret_settings(functions_env: Path) -> dict[str, str]:
    settings = {}
    for line in functions_env.read_text().splitlines():
        name, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        settings[name] = key_material(value)
    listed = set(filter(None, settings.get("PAO_TEMPLATE_SECRETS", "").split(",")))
    return {
        name: value
        for name, value in settings.items()
        # The list of secret names is not a secret.
        if not name.startswith("AWS_") and name != "PAO_TEMPLATE_SECRETS"
        and (name in listed or any(word in name for word in SECRET_WORDS))
        and len(value) >= MIN_SECRET_CHARS
        # An ARN names a resource (PAO_ACTION_FUNCTION_AWS_SECRET is the
        # aws-secret function's); it is never a secret value.
        and not value.startswith("arn:")
    }


def findings(logs: Path, secrets: dict[str, str]) -> list[str]:
    found = []
    for path in sorted(p for p in logs.rglob("*") if p.is_file()):
        text = path.read_bytes()
        for name, value in secrets.items():
            if value.encode() in text:
                found.append(f"{name} is in {path.relative_to(ROOT)}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the stack's name (dev, test, ...)")
    parser.add_argument("--secret", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    stack = ROOT / ".local" / args.name
    secrets = secret_settings(stack / "functions.env")
    for pair in args.secret:
        name, _, value = pair.partition("=")
        secrets[name] = value
    found = findings(stack / "logs", secrets)
    for finding in found:
        print(f"check_logs: {finding}", file=sys.stderr)
    if found:
        return 1
    print(f"check_logs: none of {len(secrets)} secrets is in {stack / 'logs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
