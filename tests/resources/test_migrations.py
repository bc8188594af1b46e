"""The schemas are versioned: a new database is built by the migrations alone and recorded at the
code's version, processes opening it together migrate it once, and a database a newer dripfeed
upgraded is refused, naming both versions. (tests/test_upgrades.py upgrades the previous release's.)"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
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
from resources.warehouse import USAGE_COLUMNS, SyncState, Warehouse
from resources.warehouse.migrations import LATEST, WarehouseTooNew
from resources.warehouse.migrations import MIGRATIONS as WAREHOUSE_MIGRATIONS
from tests.support.postgres_server import fresh_database
from tests.support.upgrade_command import run_upgrade

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "warehouse.duckdb")
    return fresh_database(request.getfixturevalue("postgres_url"), "warehouse")


def test_the_warehouse_versions_are_numbered_one_after_the_other() -> None:
    assert [migration.version for migration in WAREHOUSE_MIGRATIONS] == list(range(1, LATEST + 1))


def first_open_of_a_warehouse(url: str) -> bool:
    """What a new process does first: open the warehouse (in a process of its own)."""
    return Warehouse(url=url).state("acme", "tasks") == SyncState()


def first_open_of_a_control_store(url: str) -> bool:
    store = ControlStore(url)
    store.dispose()
    return store.upgraded_from is not None


def opened_by_processes_at_once(opener: Callable[[str], bool], url: str, processes: int = 3) -> list[bool]:
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(opener, [url] * processes))


@pytest.mark.e2e  # separate Python processes
def test_processes_opening_a_new_postgres_warehouse_together_migrate_it_once(postgres_url: str) -> None:
    url = fresh_database(postgres_url, "warehouse")
    assert all(opened_by_processes_at_once(first_open_of_a_warehouse, url))  # a second apply would fail
    assert Warehouse(url=url).query("SELECT version FROM _dripfeed_schema_version ORDER BY version") == [
        (version,) for version in range(1, LATEST + 1)
    ]


def test_a_new_warehouse_is_built_by_the_migrations_and_recorded_at_the_codes_version(warehouse_url: str) -> None:
    with ThreadPoolExecutor(4) as pool:  # threads of one process, each with its own resource
        list(pool.map(first_open_of_a_warehouse, [warehouse_url] * 4))
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


@pytest.mark.e2e  # separate Python processes
def test_processes_opening_a_new_control_store_together_upgrade_it_once(control_state: str) -> None:
    assert sum(opened_by_processes_at_once(first_open_of_a_control_store, control_state)) == 1


def test_a_control_store_newer_than_the_code_is_refused_naming_both_revisions(control_state: str) -> None:
    ControlStore(control_state).dispose()
    with ControlStore(control_state).transaction() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(ControlStoreTooNew) as refused:
        ControlStore(control_state)
    assert "schema revision 9999" in str(refused.value) and f"its newest is {SCHEMA_REVISION}" in str(refused.value)


def test_the_upgrade_command_names_an_empty_postgres_database_as_such(postgres_url: str) -> None:
    warehouse, state = fresh_database(postgres_url, "warehouse"), fresh_database(postgres_url, "control")
    upgrade = run_upgrade(warehouse, state)
    assert upgrade.returncode == 0, upgrade.stderr
    assert f"(DRIPFEED_WAREHOUSE): was empty; created at version {LATEST}" in upgrade.stdout
    assert f"(DRIPFEED_STATE): was empty; created at revision {SCHEMA_REVISION}" in upgrade.stdout


def test_the_upgrade_command_creates_nothing_where_a_setting_names_no_database(tmp_path: Path) -> None:
    missing = tmp_path / "mistyped" / "warehouse.duckdb"
    upgrade = run_upgrade(str(missing), str(tmp_path / "c.sqlite3"))
    assert upgrade.returncode == 1
    assert f"no warehouse at {missing} (DRIPFEED_WAREHOUSE): nothing was created" in upgrade.stderr
    assert not missing.exists() and not missing.parent.exists()


def test_the_upgrade_command_refuses_a_newer_database_with_status_1(tmp_path: Path) -> None:
    warehouse = str(tmp_path / "warehouse.duckdb")
    Warehouse(url=warehouse).query(
        "INSERT INTO _dripfeed_schema_version VALUES (?, 'from the future', '9.0.0', now())", (LATEST + 1,)
    )
    upgrade = run_upgrade(warehouse, str(tmp_path / "c.sqlite3"))
    assert upgrade.returncode == 1
    assert f"schema version {LATEST + 1}" in upgrade.stderr and "Traceback" not in upgrade.stderr
