"""Fixtures for the sync assets: a real Dagster instance, the simulator, and a warehouse per back end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from pipeline_assets.assets import projects, tasks, users
from resources.streams import STREAMS
from resources.tasklane import TasklaneAPI
from resources.warehouse import Warehouse
from tasklane_sim import SimServer
from tests.conftest import tenant_entry, write_tenants
from tests.postgres_server import fresh_database


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse(url=str(tmp_path / "warehouse.duckdb"))
    return Warehouse(url=fresh_database(request.getfixturevalue("postgres_url"), "warehouse"))


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(url=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture
def tasklane_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., TasklaneAPI]:
    def make(sim: SimServer, *tenant_ids: str, **tenant: Any) -> TasklaneAPI:
        for tenant_id in tenant_ids:
            monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant_id.upper()}", f"token-{tenant_id}")
        path = write_tenants(tmp_path / "tenants.yaml", *(tenant_entry(t, **tenant) for t in tenant_ids))
        return TasklaneAPI(base_url=sim.base_url, tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))

    return make


def materialize_tenant(
    instance: dg.DagsterInstance, tenant: str, tasklane: TasklaneAPI, warehouse: Warehouse, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    if not instance.has_dynamic_partition("tenants", tenant):
        instance.add_dynamic_partitions("tenants", [tenant])
    return dg.materialize(
        [users, projects, tasks],  # with the checks their steps evaluate
        partition_key=tenant,
        instance=instance,
        resources={"tasklane": tasklane, "warehouse": warehouse},
        **kwargs,
    )


def warehouse_records(warehouse: Warehouse, tenant: str, stream: str) -> list[dict[str, Any]]:
    rows = warehouse.query(f"SELECT _raw FROM {stream} WHERE tenant_id = ? ORDER BY id", (tenant,))
    return [json.loads(raw) if isinstance(raw, str) else raw for (raw,) in rows]


def assert_equals_ground_truth(sim: SimServer, warehouse: Warehouse, tenant: str) -> None:
    for stream in STREAMS:
        truth = sim.admin.truth(tenant, stream)
        assert warehouse_records(warehouse, tenant, stream) == truth, f"{tenant} {stream} differs from the simulator"
        soft_deleted = warehouse.query(
            f"SELECT id FROM {stream} WHERE tenant_id = ? AND _deleted_at IS NOT NULL ORDER BY id", (tenant,)
        )
        assert [r for (r,) in soft_deleted] == [r["id"] for r in truth if r["deleted_at"]]


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}
