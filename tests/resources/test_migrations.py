"""The schemas are versioned: a new database is built by the migrations alone and recorded at the
code's version, processes opening it together migrate it once, and a database a newer dripfeed
upgraded is refused, naming both versions. (tests/test_upgrades.py upgrades the previous release's.)"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from resources.control.store import (
    MIGRATIONS,
    SCHEMA_REVISION,
    VERSION_TABLE,
    ControlStore,
    ControlStoreTooNew,
    metadata,
)
from resources.warehouse import USAGE_COLUMNS, Warehouse
from resources.warehouse.migrations import LATEST, WarehouseTooNew
from resources.warehouse.migrations import MIGRATIONS as WAREHOUSE_MIGRATIONS
from tests.support.postgres_server import fresh_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "warehouse.duckdb")
    return fresh_database(request.getfixturevalue("postgres_url"), "warehouse")


def test_the_warehouse_versions_are_numbered_one_after_the_other() -> None:
    assert [migration.version for migration in WAREHOUSE_MIGRATIONS] == list(range(1, LATEST + 1))


def test_a_new_warehouse_is_built_by_the_migrations_and_recorded_at_the_codes_version(warehouse_url: str) -> None:
    opened_together = [Warehouse(url=warehouse_url) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:  # four processes' first connections, at once
        list(pool.map(lambda warehouse: warehouse.state("acme", "tasks"), opened_together))
    warehouse = Warehouse(url=warehouse_url)
    assert warehouse.query("SELECT version FROM _dripfeed_schema_version ORDER BY version") == [
        (version,) for version in range(1, LATEST + 1)
    ]
    with warehouse.backend.connection() as conn:
        assert list(warehouse.backend.columns(conn, "api_usage")) == list(USAGE_COLUMNS)
        assert {"reconciling_since", "completed_sync_at", "reconciled_at"} <= set(
            warehouse.backend.columns(conn, "_dripfeed_sync_state")
        )


def test_a_warehouse_newer_than_the_code_is_refused_naming_both_versions(warehouse_url: str) -> None:
    Warehouse(url=warehouse_url).query(
        "INSERT INTO _dripfeed_schema_version VALUES (?, 'from the future', '9.0.0', now())", (LATEST + 1,)
    )
    with pytest.raises(WarehouseTooNew) as refused:
        Warehouse(url=warehouse_url).state("acme", "tasks")
    message = str(refused.value)
    assert f"schema version {LATEST + 1}, written by dripfeed 9.0.0" in message
    assert f"knows versions up to {LATEST}" in message


def test_a_refusal_names_a_postgres_warehouse_without_its_password() -> None:
    from resources.warehouse.postgres_backend import PostgresBackend

    location = PostgresBackend("postgresql://dripfeed:s3cret@db.internal:5432/warehouse").location
    assert location == "postgresql://dripfeed:***@db.internal:5432/warehouse"


def test_the_control_store_migrations_build_exactly_the_models_tables(control_state: str) -> None:
    store = ControlStore(control_state)
    with store.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}), metadata
        )
        assert differences == []
        assert connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all() == [(SCHEMA_REVISION,)]
    store.dispose()


def test_the_schema_revision_the_store_opens_with_is_the_migrations_head() -> None:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [SCHEMA_REVISION]


def test_processes_opening_a_new_control_store_together_upgrade_it_once(control_state: str) -> None:
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(ControlStore, [control_state] * 4))
    assert sum(store.upgraded_from is not None for store in stores) == 1
    for store in stores:
        store.dispose()


def test_a_control_store_newer_than_the_code_is_refused_naming_both_revisions(control_state: str) -> None:
    ControlStore(control_state).dispose()
    with ControlStore(control_state).transaction() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(ControlStoreTooNew) as refused:
        ControlStore(control_state)
    assert "schema revision 9999" in str(refused.value) and f"its newest is {SCHEMA_REVISION}" in str(refused.value)


def test_the_upgrade_command_refuses_a_newer_database_with_status_1(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "warehouse.duckdb")
    Warehouse(url=warehouse).query(
        "INSERT INTO _dripfeed_schema_version VALUES (?, 'from the future', '9.0.0', now())", (LATEST + 1,)
    )
    upgrade = subprocess.run(
        [sys.executable, "-m", "dripfeed.migrate"],
        env={**os.environ, "DRIPFEED_WAREHOUSE": warehouse, "DRIPFEED_STATE": str(tmp_path / "c.sqlite3")},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert upgrade.returncode == 1
    assert f"schema version {LATEST + 1}" in upgrade.stderr and "Traceback" not in upgrade.stderr
