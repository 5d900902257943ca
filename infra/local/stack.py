"""The local PAO stack: moto (with Lambda forwarded to cargo lambda watch),
cargo lambda watch serving every function binary, the local gateway, the
fake outside services, and the Kubernetes API stand-in that moto's EKS
clusters point at.

    stack.py up   [--name NAME] [--auto-ports] [--parameter NAME=VALUE ...]
                                                 build, start, bootstrap, wait until healthy
    stack.py down [--name NAME]                  stop everything `up` started
    stack.py dev  [--name NAME]                  up, follow the logs until Ctrl-C, then down
    stack.py status [--name NAME]

Every process is started in its own session, recorded by PID under
.local/NAME/pids, and stopped by that PID (its process group). Logs are in
.local/NAME/logs. Ports come from PAO_AWS_PORT, PAO_LAMBDA_PORT,
PAO_API_PORT, PAO_FAKE_PORT and PAO_KUBE_PORT, or are picked free with
--auto-ports (as `make test` does, so a test run never meets a developer's
stack). The stack is made from template.yaml's parameter defaults; `--parameter`
overrides one, as `sam deploy --parameter-overrides` would, for the functions'
settings and the gateway's throttling alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# The cargo feature the local binaries are built with (see shared/Cargo.toml).
TEST_BUILD = "pao/test-build"
VENV_BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(HERE))

from bootstrap import bootstrap, function_environment, platform_settings  # noqa: E402
from fake_github import make_app_key  # noqa: E402
from sam_template import REGION, Template, TemplateError, parameter_override  # noqa: E402

EMULATOR_START_SECONDS = 60
# The GitHub App the local stack's github-workflow actions run as.
LOCAL_GITHUB_APP_ID = "424242"
HEALTHY_SECONDS = 240
STOP_SECONDS = 10


class StackError(Exception):
    """A reason the stack cannot start, said in one line."""


@dataclass
class Ports:
    aws: int
    lambda_: int
    api: int
    fake: int
    kube: int

    @classmethod
    def configured(cls) -> "Ports":
        def port(name: str, default: int) -> int:
            value = os.environ.get(name, str(default))
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise StackError(f"{name}={value!r} is not a port number")
            return int(value)

        return cls(port("PAO_AWS_PORT", 4566), port("PAO_LAMBDA_PORT", 9070), port("PAO_API_PORT", 3070),
                   port("PAO_FAKE_PORT", 3071), port("PAO_KUBE_PORT", 3072))

    @classmethod
    def free(cls) -> "Ports":
        sockets = [socket.socket() for _ in range(5)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            aws, lambda_, api, fake, kube = (sock.getsockname()[1] for sock in sockets)
        finally:
            for sock in sockets:
                sock.close()
        return cls(aws, lambda_, api, fake, kube)

    def check_free(self) -> None:
        for name, port in (("PAO_AWS_PORT", self.aws), ("PAO_LAMBDA_PORT", self.lambda_), ("PAO_API_PORT", self.api),
                           ("PAO_FAKE_PORT", self.fake), ("PAO_KUBE_PORT", self.kube)):
            with socket.socket() as sock:
                # Connections of a stopped stack linger in TIME_WAIT; only a
                # listener means the port is taken (the servers reuse it too).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    raise StackError(
                        f"port {port} ({name}) is already in use: stop what holds it, or set {name} to a free port"
                    ) from None


class Stack:
    def __init__(self, name: str):
        self.name = name
        self.dir = ROOT / ".local" / name
        self.pids = self.dir / "pids"
        self.logs = self.dir / "logs"
        self.env_file = self.dir / "stack.env"

    # ------------------------------------------------------------ processes
    def start(self, label: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.pids.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        # Each `up` starts its logs afresh: what they hold is this stack's.
        log = (self.logs / f"{label}.log").open("wb")
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        (self.pids / f"{label}.pid").write_text(json.dumps({"pid": process.pid, "command": command}))

    def running(self) -> dict[str, int]:
        alive = {}
        for pid_file in sorted(self.pids.glob("*.pid")) if self.pids.exists() else []:
            pid = json.loads(pid_file.read_text())["pid"]
            if _alive(pid):
                alive[pid_file.stem] = pid
        return alive

    def stop(self) -> None:
        if not self.pids.exists():
            return
        for pid_file in sorted(self.pids.glob("*.pid"), reverse=True):
            pid = json.loads(pid_file.read_text())["pid"]
            _stop_group(pid)
            pid_file.unlink()

    # ------------------------------------------------------------ up
    def up(self, ports: Ports, overrides: dict[str, str], executions: bool = True,
           parameters: dict[str, str] | None = None) -> dict[str, str]:
        if self.running():
            raise StackError(f"the {self.name} stack is already up (see {self.env_file}); `make down` stops it")
        check_prerequisites()
        ports.check_free()
        # The local stack runs one EKS cluster creation at a time, so every
        # test that makes a cluster goes through the concurrency cap, and a
        # slot whose holder died (a test stopped mid-way) is free again in
        # a minute rather than fifteen. `--parameter` still overrides both.
        # The submission limit is 600 a minute per caller, not the template's
        # 30: the integration tests act as a fresh user each (and the 100
        # concurrent retries of one key count once), but schemathesis's three
        # identities submit as many valid bodies as its cases happen to
        # produce, a number nobody chose. 600 keeps runs clear of refusals
        # while every submission still makes the limit's write.
        parameters = {"ConcurrencyCaps": "aws-eks-cluster=1", "SlotLeaseSeconds": "60",
                      "SubmissionsPerMinute": "600", **(parameters or {})}
        template = Template(ROOT / "template.yaml", parameters)
        aws_url = f"http://127.0.0.1:{ports.aws}"
        lambda_url = f"http://127.0.0.1:{ports.lambda_}"
        api_url = f"http://127.0.0.1:{ports.api}"
        python = str(VENV_BIN / "python")

        say("building the function binaries")
        # With the test builds' features (pao's `test-build`): the binaries
        # share every dependency `make test` compiled for its tests.
        build = subprocess.run(["cargo", "build", "--bins", "--features", TEST_BUILD], cwd=ROOT)
        if build.returncode != 0:
            raise StackError("cargo build failed (its errors are above)")

        kube_url = f"https://127.0.0.1:{ports.kube}"
        kube_ca = self.dir / "kube" / "ca.crt"
        say(f"starting the Kubernetes API stand-in on {kube_url}")
        # Tokens are checked against the credentials the functions sign with.
        self.start("kube", [python, str(HERE / "kube_standin.py"), "--port", str(ports.kube),
                            "--state-dir", str(kube_ca.parent)],
                   env={**os.environ, "PAO_KUBE_ACCESS_KEY_ID": "test", "PAO_KUBE_SECRET_ACCESS_KEY": "test"})
        wait_for(f"{kube_url}/_health", EMULATOR_START_SECONDS,
                 f"the Kubernetes API stand-in did not answer within {EMULATOR_START_SECONDS} s "
                 f"(see {self.logs}/kube.log)", ca_file=kube_ca)

        say(f"starting the AWS emulator on {aws_url}")
        self.start("moto", [python, str(HERE / "moto_launcher.py"), "--port", str(ports.aws),
                            "--lambda-url", lambda_url, "--kube-url", kube_url, "--kube-ca-file", str(kube_ca)])
        wait_for(f"{aws_url}/moto-api/", EMULATOR_START_SECONDS,
                 f"the AWS emulator did not answer within {EMULATOR_START_SECONDS} s (see {self.logs}/moto.log)")

        say("creating what template.yaml declares")
        bootstrap(template, aws_url, executions)
        env = function_environment(template)
        aws_env = {
            "AWS_ENDPOINT_URL": aws_url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        fake_url = f"http://127.0.0.1:{ports.fake}"
        github_key = make_app_key(self.dir / "github-app.pem")
        services = local_services(fake_url, platform_settings(aws_url), github_key)
        say(f"starting the fake JIRA, DBaaS and team webhook on {fake_url}")
        self.start("fake-services", [python, str(HERE / "fake_services.py"), "--port", str(ports.fake)],
                   env={**os.environ, **services})
        wait_for(f"{fake_url}/_health", EMULATOR_START_SECONDS,
                 f"the fake services did not answer within {EMULATOR_START_SECONDS} s (see {self.logs}/fake-services.log)")
        # The local services the actions call (test servers, the fakes) live
        # on loopback, which the egress guard refuses unless allowed.
        # RDS and EKS poll every minute in AWS; moto makes them at once, so
        # the local stack waits at most a second between polls.
        local = {"PAO_AUTH_MODE": "dev", "PAO_EGRESS_ALLOW": "127.0.0.1/32",
                 "PAO_MAX_WAIT_SECONDS": "1", **services}
        function_env = {**env, **aws_env, **local, **overrides}
        functions_file = self.dir / "functions.env"
        functions_file.write_text("".join(env_line(k, v) for k, v in function_env.items()))

        say(f"starting cargo lambda watch on {lambda_url}")
        concurrency = os.environ.get("PAO_LAMBDA_CONCURRENCY", "8")
        watch_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        watch_env.update(function_env)
        # cargo lambda watch's process supervisor (watchexec) logs every
        # command it spawns at info, with the whole environment: the
        # functions' secrets among it. Its own log stays at warn; the
        # functions still get RUST_LOG from the env file.
        watch_env["RUST_LOG"] = f"{function_env.get('RUST_LOG', 'info')},watchexec=warn,watchexec_supervisor=warn"
        self.start("functions", [
            str(VENV_BIN / "cargo-lambda"), "lambda", "watch", "--ignore-changes",
            "--invoke-address", "127.0.0.1", "--invoke-port", str(ports.lambda_),
            # An idle instance's wait for its next event is bounded by this
            # too; at 120 s idle instances died mid-run with "missing
            # lambda-runtime-aws-request-id header" and were not restarted.
            "--env-file", str(functions_file), "--timeout", "86400",
            "--concurrency", concurrency, "--features", TEST_BUILD,
        ], env=watch_env)

        say(f"starting the gateway on {api_url}")
        self.start("gateway", [python, str(HERE / "gateway.py"), "--port", str(ports.api),
                               "--lambda-url", lambda_url, "--template", str(ROOT / "template.yaml"),
                               "--concurrency", concurrency,
                               *(f"--parameter={name}={value}" for name, value in parameters.items())])

        say("waiting until GET /api/v1/health answers 200")
        wait_for(f"{api_url}/api/v1/health", HEALTHY_SECONDS,
                 f"the API was not healthy within {HEALTHY_SECONDS} s (see {self.logs}/)")

        say("starting an instance of every function")
        warm_up(template, lambda_url)

        say("uploading the example catalog, as a platform team's CI would")
        published = load_example_catalog(template, aws_url, api_url)
        say(f"catalog: {len(published)} items published ({', '.join(published)})")

        stack_env = {"PAO_API_URL": api_url, "PAO_FAKE_URL": fake_url, "PAO_KUBE_URL": kube_url,
                     "PAO_KUBE_CA_FILE": str(kube_ca), "PAO_LOG_DIR": str(self.logs), **aws_env, **env, **services}
        # A shell sources this file: the key (with spaces) stays in its own file.
        stack_env.pop("PAO_GITHUB_APP_PRIVATE_KEY", None)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in stack_env.items()))
        return stack_env


def local_services(fake_url: str, platform: dict[str, str], github_key: Path) -> dict[str, str]:
    """What the functions need to reach the fake services: their URLs, the
    env names templates may read (the platform's settings among them), and
    local-only credentials (the fakes check them, as the real services
    would): the fake GitHub reads its app's key from the file, PAO's
    function from its setting, one line with `\\n` for the line breaks."""
    return {
        **platform,
        "PAO_TFC_URL": f"{fake_url}/terraform",
        "PAO_TFC_TOKEN": "local-tfc-team-token",
        "PAO_TFC_OAUTH_TOKEN_ID": "ot-local-github",
        "PAO_GITHUB_API_URL": f"{fake_url}/github",
        "PAO_GITHUB_APP_ID": LOCAL_GITHUB_APP_ID,
        "PAO_GITHUB_APP_KEY_FILE": str(github_key),
        "PAO_GITHUB_APP_PRIVATE_KEY": github_key.read_text().strip().replace("\n", "\\n"),
        "PAO_JIRA_URL": f"{fake_url}/jira",
        "PAO_JIRA_USER": "pao-bot",
        "PAO_JIRA_API_TOKEN": "local-jira-token",
        "PAO_JIRA_WEBHOOK_SECRET": "local-jira-webhook-secret",
        "DBAAS_URL": f"{fake_url}/dbaas",
        "DBAAS_TOKEN": "local-dbaas-token",
        "TEAM_WEBHOOK_URL": f"{fake_url}/hooks/team",
        "PAO_TEMPLATE_ENV": ",".join(["DBAAS_URL", "TEAM_WEBHOOK_URL", *platform]),
        "PAO_TEMPLATE_SECRETS": "DBAAS_TOKEN",
    }


def env_line(name: str, value: str) -> str:
    """`NAME=value` for cargo lambda's env file (dotenv): a value with
    spaces (the PEM's armour) or an `=` (`aws-eks-cluster=1`, which its
    parser refuses bare) single-quoted, which dotenv takes literally."""
    if any(c.isspace() or c == "=" for c in value):
        if "'" in value:
            raise StackError(f"{name}: a value with spaces cannot hold a single quote")
        return f"{name}='{value}'\n"
    return f"{name}={value}\n"


def warm_up(template: Template, lambda_url: str) -> None:
    """Invokes every function once, so its first instance is running before
    anyone calls: a burst of first calls would otherwise all wait for
    `cargo run` at once. An empty event is enough; its error is expected."""
    from concurrent.futures import ThreadPoolExecutor

    def invoke(binary: str) -> None:
        request = urllib.request.Request(
            f"{lambda_url}/2015-03-31/functions/{binary}/invocations", data=b"{}", method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=HEALTHY_SECONDS) as response:
                response.read()
        except urllib.error.HTTPError:
            pass  # the function ran and refused the empty event
        except (urllib.error.URLError, OSError) as err:
            raise StackError(f"function {binary} did not start: {err}") from None

    binaries = [function.binary for function in template.functions()]
    with ThreadPoolExecutor(max_workers=len(binaries)) as pool:
        list(pool.map(invoke, binaries))


def load_example_catalog(template: Template, aws_url: str, api_url: str) -> list[str]:
    """Uploads catalog/items/ to the catalog bucket; the bucket's notification
    runs the real ingest function, and the catalog API must then list them."""
    from bootstrap import client

    bucket = template.physical_name("CatalogBucket")
    s3 = client("s3", aws_url)
    files = sorted((ROOT / "catalog" / "items").glob("*.yaml"))
    for path in files:
        s3.put_object(Bucket=bucket, Key=f"examples/{path.name}", Body=path.read_bytes(),
                      ContentType="application/yaml")
    request = urllib.request.Request(
        f"{api_url}/api/v1/catalog",
        headers={"X-Pao-Dev-User": "make-up@pao.local", "X-Pao-Dev-Groups": "pao-admins"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        ids = [item["id"] for item in json.load(response)["items"]]
    if len(ids) < len(files):
        raise StackError(
            f"only {len(ids)} of {len(files)} example items were published; "
            "GET /api/v1/catalog/validation/<id> and .local/*/logs/functions.log say why"
        )
    return ids


def check_prerequisites() -> None:
    if shutil.which("cargo") is None:
        raise StackError("cargo is not on PATH: install Rust (rustup) first")
    if not (VENV_BIN / "cargo-lambda").exists():
        raise StackError("cargo-lambda is missing from .venv: run infra/local/install.sh")


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def wait_for(url: str, seconds: float, failure: str, ca_file: Path | None = None) -> None:
    """Waits for `url` to answer 200; an https URL is trusted through
    `ca_file`, which the server may not have written yet when this starts."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            context = ssl.create_default_context(cafile=ca_file) if ca_file else None
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise StackError(failure)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its entry is left.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _stop_group(pid: int) -> None:
    """Stops the process group led by `pid` (started with its own session)."""
    if not _group_alive(pid):
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.1)
    if _group_alive(pid):
        os.killpg(pid, signal.SIGKILL)


def follow_logs(stack: Stack) -> None:
    handles = {path.name: path.open() for path in sorted(stack.logs.glob("*.log"))}
    for handle in handles.values():
        handle.seek(0, os.SEEK_END)
    while True:
        quiet = True
        for name, handle in handles.items():
            for line in handle.readlines():
                quiet = False
                print(f"{name[:-4]:>9} | {line}", end="", flush=True)
        if quiet:
            time.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description="The local PAO stack.")
    parser.add_argument("command", choices=["up", "down", "dev", "status"])
    parser.add_argument("--name", default="dev", help="state under .local/NAME (default: dev)")
    parser.add_argument("--auto-ports", action="store_true", help="pick free ports")
    parser.add_argument("--no-executions", action="store_true",
                        help="leave the Step Functions interpreter off: executions are recorded, not run")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a function environment variable to override (repeatable)")
    parser.add_argument("--parameter", action="append", default=[], type=parameter_override, metavar="NAME=VALUE",
                        help="a template.yaml parameter to override, as sam deploy would (repeatable)")
    args = parser.parse_args()
    stack = Stack(args.name)

    if args.command == "down":
        stack.stop()
        print(f"the {args.name} stack is down")
        return 0
    if args.command == "status":
        running = stack.running()
        print(json.dumps(running) if running else f"the {args.name} stack is down")
        return 0 if running else 1

    try:
        ports = Ports.free() if args.auto_ports else Ports.configured()
        overrides = dict(item.split("=", 1) for item in args.set if "=" in item)
        env = stack.up(ports, overrides, executions=not args.no_executions, parameters=dict(args.parameter))
    except (StackError, TemplateError) as err:
        stack.stop()
        print(f"make up: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 (the one-line reason, not a trace)
        stack.stop()
        print(f"make up: {type(err).__name__}: {err} (logs in {stack.logs})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stack.stop()
        return 130

    print(f"API: {env['PAO_API_URL']}")
    print(f"AWS: {env['AWS_ENDPOINT_URL']}")
    print(f"Kubernetes: {env['PAO_KUBE_URL']}/clusters/<EKS cluster name> (CA {env['PAO_KUBE_CA_FILE']})")
    print(f"  curl {env['PAO_API_URL']}/api/v1/health")
    print(f"  curl -H 'X-Pao-Dev-User: dev@example.com' -H 'X-Pao-Dev-Groups: developers' {env['PAO_API_URL']}/api/v1/catalog")
    print(f"  AWS_ENDPOINT_URL={env['AWS_ENDPOINT_URL']} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "
          f"aws --region {REGION} stepfunctions list-state-machines")
    print(f"  environment for tools and tests: {stack.env_file}; logs: {stack.logs}/")
    if args.command == "dev":
        try:
            follow_logs(stack)
        except KeyboardInterrupt:
            pass
        finally:
            stack.stop()
            print(f"\nthe {args.name} stack is down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
