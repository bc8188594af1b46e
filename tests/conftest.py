"""Shared fixtures: a real simulator over a real socket, a thin Tasklane client for assertions, a Dagster
instance, Postgres, and the API resource and DuckDB warehouse the sync and sensor tests share."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from resources.warehouse import Warehouse
from tasklane_sim import SimServer
from tests.support.postgres_server import fresh_database, running_postgres
from tests.support.resources import Resources, make_api
from tests.support.simulator import ADMIN_TOKEN, workspace_config
from tests.support.tasklane_client import TasklaneClient
from tests.support.tenants_files import tenant_entry, write_tenants

# The code location refuses to load without these (dripfeed/definitions.py). Tests that import it
# give each stream their own values; tests that start dagster processes set their own variables.
os.environ.setdefault("TASKLANE_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("DRIPFEED_TENANTS_FILE", str(Path(__file__).resolve().parents[1] / "demo" / "tenants.yaml"))

# A test run started in the background by a non-interactive shell (`make test &`, nohup) inherits
# SIGINT ignored. Dagster, running a job in this process, gives SIGTERM SIGINT's handler
# (dagster/_utils/interrupts.py), so SIGTERM would be ignored too, and every service a test starts
# (`make dev`, deploy/run.sh) would inherit that and ignore the SIGTERM it is stopped with.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


# A test that takes a Dagster instance and a simulator materializes assets through Dagster over the
# wire: a second or more each. `make test-fast` leaves these (marked `runs`) and the e2e tests out.
RUN_FIXTURES = {"instance"}
WIRE_FIXTURES = {"make_sim", "sim", "tasklane_for"}


# `make test`'s workers (pytest-xdist, a file at a time) take the files in collection order (the
# Makefile keeps it: --no-loadscope-reorder). The longest go first, so that the workers end together
# on short files instead of one running a three-minute file alone at the end. Longest first, with
# the seconds each took in a fresh-clone `make test` on two cores (2026-12-06: 10:21 in all, the
# three workers ending within 10 s of each other). A file not named here follows them.
TESTS = Path(__file__).resolve().parent
LONGEST_FILES = (
    "test_chaos_quick.py",  # 191
    "sensors/test_daemon_tenant_runs.py",  # 190
    "pipeline_assets/test_hostile_pages.py",  # 113
    "pipeline_assets/test_sync.py",  # 105
    "sensors/test_daemon_exports.py",  # 95
    "test_documented_commands.py",  # 76
    "sensors/test_tier_schedules.py",  # 71
    "production/test_postgres_deployment.py",  # 68
    "pipeline_assets/test_reconciliation.py",  # 59
    "pipeline_assets/test_reference_checks.py",  # 59
    "sensors/test_tier_probes.py",  # 58
    "resources/test_tasklane_api.py",  # 57
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & RUN_FIXTURES and fixtures & WIRE_FIXTURES:
            item.add_marker(pytest.mark.runs)
    e2e_files = {item.path for item in items if item.get_closest_marker("e2e")}
    items.sort(key=lambda item: _dispatch_rank(item.path, e2e_files))


def _dispatch_rank(path: Path, e2e_files: set[Path]) -> tuple[int, int]:
    """LONGEST_FILES in their order, then the other files with e2e tests, then the rest."""
    resolved = path.resolve()  # as TESTS is: a checkout reached through a link keeps its order
    relative = resolved.relative_to(TESTS).as_posix() if resolved.is_relative_to(TESTS) else ""
    if relative in LONGEST_FILES:
        return (0, LONGEST_FILES.index(relative))
    return (1 if path in e2e_files else 2, 0)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A real Dagster instance in a temporary directory."""
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One real Postgres cluster for the whole session."""
    with running_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def control_state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The control store on each back end: a SQLite file, and a fresh database on a real Postgres."""
    if request.param == "sqlite":
        return str(tmp_path / "control.sqlite3")
    return fresh_database(request.getfixturevalue("postgres_url"), "control")


@pytest.fixture
def make_sim() -> Iterator[Callable[..., SimServer]]:
    """Start a simulator with the given workspaces (default: one called `acme`)."""
    started: list[SimServer] = []

    def start(*workspaces: dict[str, Any], **config: Any) -> SimServer:
        spec = {"admin_token": ADMIN_TOKEN, "seed": 7, **config}
        spec["workspaces"] = list(workspaces) or [workspace_config("acme")]
        server = SimServer(spec).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimServer]) -> SimServer:
    return make_sim(workspace_config("acme"), workspace_config("globex"))


@pytest.fixture
def acme(sim: SimServer) -> TasklaneClient:
    return TasklaneClient(sim.base_url, "acme", "token-acme")


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(url=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture
def tasklane_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Resources]:
    def make(sim: SimServer, *tenant_ids: str, **tenant: Any) -> Resources:
        for tenant_id in tenant_ids:
            monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant_id.upper()}", f"token-{tenant_id}")
        path = write_tenants(tmp_path / "tenants.yaml", *(tenant_entry(t, **tenant) for t in tenant_ids))
        return make_api(base_url=sim.base_url, tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))

    return make
