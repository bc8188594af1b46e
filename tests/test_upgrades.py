"""An upgrade keeps the user's data: a warehouse and a control store that the previous release built
(tests/fixtures/previous_release, made by running that release's code) are upgraded by the documented
step, lose nothing, and the new code syncs on from where the old one stopped to the exact ground
truth; on DuckDB with SQLite, and on Postgres."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from resources.control.store import SCHEMA_REVISION
from resources.streams import STREAMS
from resources.warehouse import SyncState, Warehouse
from resources.warehouse.migrations import LATEST
from tasklane_sim import SimServer
from tests.support.ground_truth import assert_equals_ground_truth, warehouse_records
from tests.support.postgres_server import fresh_database, postgres_bin
from tests.support.resources import make_api
from tests.support.runs import materialize_tenant
from tests.support.tenants_files import tenant_entry, write_tenants
from tests.support.upgrade_command import run_upgrade

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = ROOT / "tests" / "fixtures" / "previous_release"
RELEASE = json.loads((PREVIOUS / "release.json").read_text())
TENANTS = [workspace["id"] for workspace in RELEASE["spec"]["workspaces"]]
TABLES = [*STREAMS, "_dripfeed_sync_state", "_dripfeed_schema_drift", "_dripfeed_listed_ids"]


def unpacked(name: str, into: Path) -> Path:
    with gzip.open(PREVIOUS / f"{name}.gz", "rb") as source, (into / name).open("wb") as target:
        shutil.copyfileobj(source, target)
    return into / name


def restored_postgres(cluster: str, name: str, into: Path) -> str:
    """A new database on the cluster holding what pg_dump wrote of the previous release's."""
    url = fresh_database(cluster, name)
    dump = unpacked(f"{name}.sql", into)
    # pg_dump 15.14 and later fence a dump with \restrict, which an older psql does not know.
    lines = dump.read_text().splitlines(keepends=True)
    dump.write_text("".join(line for line in lines if not line.startswith(("\\restrict", "\\unrestrict"))))
    subprocess.run(
        [str(postgres_bin() / "psql"), "--quiet", "--set", "ON_ERROR_STOP=1", "-f", str(dump), url],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return url


def previous_release(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str]:
    """(warehouse URL, control store URL) as the previous release left them."""
    if backend == "duckdb":
        return str(unpacked("warehouse.duckdb", tmp_path)), str(unpacked("control.sqlite3", tmp_path))
    cluster = request.getfixturevalue("postgres_url")
    return restored_postgres(cluster, "warehouse", tmp_path), restored_postgres(cluster, "control", tmp_path)


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables the previous release made, read with the driver (not dripfeed)."""
    if url.startswith("postgresql://"):
        with psycopg2.connect(url) as conn, conn.cursor() as cursor:
            found = {}
            for table in TABLES:
                cursor.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
                found[table] = cursor.fetchall()
        conn.close()
        return found
    with duckdb.connect(url, read_only=True) as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall() for table in TABLES}


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_an_upgraded_warehouse_keeps_its_data_and_syncs_on_to_the_ground_truth(
    backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    make_sim: Callable[..., SimServer],
    instance: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warehouse_url, state = previous_release(backend, tmp_path, request)
    before = table_rows(warehouse_url)
    assert all(before[stream] for stream in STREAMS), "the fixture holds no rows: rebuild it (build.py)"

    upgraded = run_upgrade(warehouse_url, state)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"version 0 -> {LATEST}" in upgraded.stdout and f"revision none -> {SCHEMA_REVISION}" in upgraded.stdout, (
        upgraded.stdout
    )
    assert table_rows(warehouse_url) == before, "the upgrade changed rows the previous release wrote"
    again = run_upgrade(warehouse_url, state)
    assert again.stdout.count("nothing to do") == 2, again.stdout

    # The simulator, started again from the fixture's spec, holds what the previous release synced:
    # the new code reads that release's rows and sync state as they are.
    sim = make_sim(*RELEASE["spec"]["workspaces"], seed=RELEASE["spec"]["seed"], as_of=RELEASE["spec"]["as_of"])
    warehouse = Warehouse(url=warehouse_url)
    for tenant in TENANTS:
        assert_equals_ground_truth(sim, warehouse, tenant)
        assert warehouse.state(tenant, "tasks").watermark is not None
        assert warehouse.state(tenant, "tasks") != SyncState()

    for tenant in TENANTS:
        sim.admin.mutate(tenant, creates=12, updates=30, deletes=4, resource="tasks")
        sim.admin.mutate(tenant, creates=2, updates=3, resource="projects")
        sim.admin.settle(tenant)
    for tenant in TENANTS:
        monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
    tenants_file = write_tenants(tmp_path / "tenants.yaml", *(tenant_entry(t) for t in TENANTS))
    api = make_api(base_url=sim.base_url, tenants_file=tenants_file, state=state)
    for tenant in TENANTS:
        assert materialize_tenant(instance, tenant, api, warehouse).success, tenant
    for tenant in TENANTS:
        assert_equals_ground_truth(sim, warehouse, tenant)
        assert len(warehouse_records(warehouse, tenant, "tasks")) == len(sim.admin.truth(tenant, "tasks"))
