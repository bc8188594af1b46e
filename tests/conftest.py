"""Shared fixtures: a real simulator over a real socket, and a thin Tasklane client for assertions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
import yaml

from tasklane_sim import SimServer
from tasklane_sim.config import deep_merge
from tests.postgres_server import fresh_database, running_postgres

ADMIN_TOKEN = "test-admin-token"
# The code location refuses to load without these (dripfeed/definitions.py). Tests that import it
# give each stream their own values; tests that start dagster processes set their own variables.
os.environ.setdefault("TASKLANE_BASE_URL", "http://127.0.0.1:9")
os.environ.setdefault("DRIPFEED_TENANTS_FILE", str(Path(__file__).resolve().parents[1] / "demo" / "tenants.yaml"))


def workspace_config(workspace_id: str, **overrides: Any) -> dict[str, Any]:
    """A small, quiet workspace: no lag, no mutations, no faults unless a test asks for them."""
    base: dict[str, Any] = {
        "id": workspace_id,
        "tokens": [f"token-{workspace_id}"],
        "records": {"users": 20, "projects": 8, "tasks": 430},
        "deleted_fraction": 0.05,
        "visibility_lag_seconds": 0,
    }
    return deep_merge(base, overrides)


class TasklaneClient:
    """What a test needs to speak the public API as a tenant would, with no retries or cleverness."""

    def __init__(self, base_url: str, workspace: str, token: str | None) -> None:
        self.base_url, self.workspace = base_url, workspace
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/v1/workspaces/{self.workspace}/{path}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.url(path), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.post(self.url(path), **kwargs)

    def list_all(self, stream: str, **params: Any) -> list[dict[str, Any]]:
        """Page through a listing with the maximum page size; returns every record in order."""
        params = {"limit": 100, **params}
        records: list[dict[str, Any]] = []
        while True:
            response = self.get(stream, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            records.extend(body["data"])
            if body["next_cursor"] is None:
                return records
            params["cursor"] = body["next_cursor"]


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


def write_tenants(path: Path, *tenants: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"tenants": list(tenants)}))
    return path


def tenant_entry(tenant_id: str, **overrides: Any) -> dict[str, Any]:
    return {"id": tenant_id, "tier": "hourly", "token_env": f"TASKLANE_TOKEN_{tenant_id.upper()}", **overrides}


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
