"""Fixtures for the sync assets: a warehouse per back end. The Dagster instance, the simulator, the API
resource (tasklane_for) and the DuckDB warehouse alone are tests/conftest.py's."""

from __future__ import annotations

from pathlib import Path

import pytest

from resources.warehouse import Warehouse
from tests.support.postgres_server import fresh_database


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse(url=str(tmp_path / "warehouse.duckdb"))
    return Warehouse(url=fresh_database(request.getfixturevalue("postgres_url"), "warehouse"))
