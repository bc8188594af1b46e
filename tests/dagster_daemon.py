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
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
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


def scratch_instance(directory: Path) -> Path:
    """A DAGSTER_HOME and a workspace.yaml in `directory`; returns the DAGSTER_HOME."""
    home = directory / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (directory / "workspace.yaml").write_text(WORKSPACE)
    return home


@contextmanager
def running_daemon(directory: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`dagster-daemon run` in `directory` with `env`, stopped (with its children) on exit."""
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=directory,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield daemon
    finally:
        if daemon.poll() is None:  # a test may have killed it already
            os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
