"""The harness the local self-check scripts share (kube_standin_check.py,
fake_github_check.py, fake_terraform_check.py): a recorder of their checks
and its summary, and the processes they run. A check script hands its
`run(check, work)` to `run_checks`, which gives it a temporary folder,
bounds it by a deadline, counts a failure of the run itself as one more
failed check, prints `<n> passed, <m> failed, in <s> s` and returns the exit
code (1 if any check failed). The processes a run needs are started with
`start` (in a session of their own, their output to a log file), waited for
with `wait_for` and stopped, whatever happens, with `stop`, by PID: their
process group, never by name.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable


class Checks:
    """Prints each check as `ok` or `FAIL` and what it checked, and counts them."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0

    def __call__(self, what: str, ok: bool, detail: Any = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok    {what}", flush=True)
        else:
            self.failed.append(what)
            print(f"FAIL  {what}: {detail}", flush=True)
        return ok


def run_checks(run: Callable[[Checks, Path], None], prefix: str, deadline_seconds: int) -> int:
    """Runs `run(check, work)` in a temporary folder named after `prefix`,
    bounded by `deadline_seconds`; prints the summary line and returns the
    exit code."""

    def out_of_time(*_: Any) -> None:
        raise TimeoutError(f"the checks did not finish within {deadline_seconds} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(deadline_seconds)
    started = time.monotonic()
    check = Checks()
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        try:
            run(check, Path(work))
        except Exception as err:  # noqa: BLE001 (a failure to report, with the processes already stopped)
            check(f"the run itself ({type(err).__name__})", False, err)
    signal.alarm(0)
    print(f"{check.passed} passed, {len(check.failed)} failed, in {time.monotonic() - started:.1f} s")
    return 1 if check.failed else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts `command` in a session of its own (so `stop` can end its whole
    process group), stdout and stderr to `log`, no stdin."""
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)


def stop(processes: list[subprocess.Popen]) -> None:
    """Stops the process groups the processes lead (each started by `start`),
    the last started first: SIGTERM to every one, then SIGKILL to any still
    there 10 s later. A group already gone is fine."""
    for process in reversed(processes):
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for process in reversed(processes):
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def wait_for(url: str, seconds: float, ca_file: Path | None = None, process: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    """Waits up to `seconds` for `url` to answer (2xx); an https one trusted
    through `ca_file`, which may not exist yet. Gives up at once, with the end
    of `log`, if `process` (what should answer) has exited."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{url}: its process exited with {process.returncode}: {tail}")
        try:
            context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
            with urllib.request.urlopen(url, timeout=5, context=context):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {seconds} s")
