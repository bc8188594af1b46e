"""The real `dagster-daemon` (and a check that a real webserver answers), run against the code
location in a scratch directory.

It runs from that directory, not the repository root: the dagster CLI loads `./.env`, which in
the root holds `make dev`'s demo tokens."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psutil
import requests
from dagster._core.instance.ref import InstanceRef  # an instance from its DAGSTER_HOME, without the env

from tests.support.periodic import every

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
WORKSPACE = "load_from:\n  - python_module:\n      module_name: dripfeed.definitions\n      location_name: dripfeed\n"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition` every second until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def wait_for_webserver(url: str, process: subprocess.Popen, output: Callable[[], str], timeout: float = 120) -> None:
    """Poll /server_info: the webserver answers a few seconds after start, the code location loads after.
    Fails at once, with the end of `output()`, if the process that serves it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the webserver's process exited with {process.returncode}:\n{output()[-4000:]}")
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the webserver at {url} did not answer within {timeout} s:\n{output()[-4000:]}")


def dripfeed_env(directory: Path, home: Path, tenants_file: Path, base_url: str, *tenants: str) -> dict[str, str]:
    """The environment of a dripfeed process in `directory`: its instance, its files, the simulator
    at `base_url`, and each tenant's token under the variable tenant_entry() names."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DRIPFEED_TENANTS_FILE": str(tenants_file),
        "DRIPFEED_STATE": str(directory / "control.sqlite3"),
        "DRIPFEED_WAREHOUSE": str(directory / "warehouse.duckdb"),
        "TASKLANE_BASE_URL": base_url,
        **{f"TASKLANE_TOKEN_{tenant.upper()}": f"token-{tenant}" for tenant in tenants},
    }


def scratch_instance(directory: Path, instance_file: Path | None = None) -> Path:
    """A DAGSTER_HOME (with `instance_file` as its dagster.yaml, default a bare one) and a
    workspace.yaml in `directory`; returns the DAGSTER_HOME.

    The instance's storage is created here, once: two processes opening a new SQLite instance at the
    same moment (a daemon starting and the test watching it) can both stamp its schedule storage's
    Alembic version, each with a different revision, and every later opening then fails with
    "Version table 'alembic_version' has more than one head present" (dagster-io/dagster#27390, open;
    `dg dev` creates its instance before it starts the daemon and the webserver, so `make dev` is spared)."""
    home = directory / "dagster_home"
    home.mkdir()
    config = instance_file.read_text() if instance_file else "telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(config)
    (directory / "workspace.yaml").write_text(WORKSPACE)
    dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))).dispose()
    return home


def stop_schedules(directory: Path, env: dict[str, str]) -> None:
    """Stop the tier schedules in the instance of `env`, before a daemon starts: a test whose tenants
    have not synced yet would otherwise see them requested at the next tick (they are due)."""
    for schedule in ("hourly_tenants", "daily_tenants"):
        subprocess.run(
            [str(BIN / "dagster"), "schedule", "stop", schedule, "-w", "workspace.yaml"],
            cwd=directory,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )


SITECUSTOMIZE = """
import os, sys, time
if os.environ.get("DRIPFEED_TEST_PROCESS_LOG"):
    with open(os.environ["DRIPFEED_TEST_PROCESS_LOG"], "a") as log:
        log.write(f"{os.getpid()} {os.getppid()} {time.time():.3f} {' '.join(sys.argv)[:300].replace(chr(10), ' ')}\\n")
"""


@dataclass(frozen=True)
class StartedProcess:
    pid: int
    ppid: int
    started: float
    command: str


class ProcessLog:
    """Every Python process started below a dagster process, as it starts (a sitecustomize on
    PYTHONPATH), and every process of any kind seen in its tree (polled), to count what a run starts."""

    def __init__(self, directory: Path) -> None:
        self.site = directory / "process-log-site"
        self.site.mkdir()
        (self.site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.path = directory / "processes.log"
        self.path.touch()
        self.seen: dict[int, tuple[int, str]] = {}  # pid -> (ppid, name), from polling

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "PYTHONPATH": str(self.site), "DRIPFEED_TEST_PROCESS_LOG": str(self.path)}

    def started(self) -> list[StartedProcess]:
        rows = [line.split(" ", 3) for line in self.path.read_text().splitlines()]
        return [StartedProcess(int(pid), int(ppid), float(at), command) for pid, ppid, at, command in rows]

    def polling(self, root: int, seconds: float = 0.05) -> AbstractContextManager[None]:
        """Record every process in `root`'s tree, every `seconds`, while the block runs."""

        def poll() -> bool:
            try:
                tree = psutil.Process(root).children(recursive=True)
            except psutil.NoSuchProcess:
                return False
            for process in tree:
                with suppress(psutil.NoSuchProcess):
                    self.seen.setdefault(process.pid, (process.ppid(), process.name()))
            return True

        return every(seconds, poll)

    def descendants(self, pid: int) -> list[tuple[int, str]]:
        """Processes seen below `pid`, by either record."""
        parents = {p.pid: (p.ppid, p.command) for p in self.started()} | self.seen
        found, frontier = [], {pid}
        while frontier:
            children = [(child, what) for child, (parent, what) in parents.items() if parent in frontier]
            found.extend(children)
            frontier = {child for child, _ in children} - {pid}
        return found


@contextmanager
def running_daemon(directory: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` in `directory` with `env`, stopped (with its children) on exit. What it
    prints goes to `directory`/daemon.log, kept with the test's files for when a test fails."""
    with (directory / "daemon.log").open("ab") as log:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield daemon
    finally:
        if daemon.poll() is None:  # a test may have killed it already
            os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)


def session_processes(session: int) -> list[psutil.Process]:
    """The processes still running in a session (make dev's, started with start_new_session)."""
    alive = []
    for candidate in psutil.process_iter():
        with suppress(psutil.Error, ProcessLookupError):
            if os.getsid(candidate.pid) == session and candidate.status() != psutil.STATUS_ZOMBIE:
                alive.append(candidate)
    return alive
