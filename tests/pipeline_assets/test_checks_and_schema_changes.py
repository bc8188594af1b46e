"""Vendor schema changes through the sync, the per-tenant asset checks, and headless materialization."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline_assets.assets import FULL_RESYNC_TAG
from tests.support.ground_truth import assert_equals_ground_truth, warehouse_records
from tests.support.runs import check_results, materialize_tenant
from tests.support.simulator import workspace_config

ROOT = Path(__file__).resolve().parents[2]
RESYNC = {FULL_RESYNC_TAG: "true"}
HOSTILE = 'x"; DROP TABLE tasks; --'
LONG = "f" * 300


def test_checks_pass_for_a_healthy_tenant(make_sim, instance, tasklane_for, warehouse) -> None:
    sim = make_sim(workspace_config("acme"))
    result = materialize_tenant(instance, "acme", tasklane_for(sim, "acme"), warehouse)
    checks = check_results(result)
    assert set(checks) == {
        "users_schema_drift",
        "projects_schema_drift",
        "tasks_schema_drift",
        "users_unique_keys",
        "projects_unique_keys",
        "tasks_unique_keys",
        "tasks_references_resolve",
    }
    assert all(c.passed for c in checks.values()), {n: c.metadata for n, c in checks.items() if not c.passed}


def test_an_added_field_becomes_a_new_column_with_values(make_sim, instance, tasklane_for, duckdb_warehouse) -> None:
    sim = make_sim(workspace_config("acme"))
    tasklane = tasklane_for(sim, "acme")
    materialize_tenant(instance, "acme", tasklane, duckdb_warehouse)
    sim.admin.schema_change("acme", kind="add_field", resource="tasks", field="sprint")
    assert materialize_tenant(instance, "acme", tasklane, duckdb_warehouse, tags=RESYNC).success
    assert_equals_ground_truth(sim, duckdb_warehouse, "acme")
    live, filled = duckdb_warehouse.query(
        "SELECT count(*), count(sprint) FROM tasks WHERE tenant_id = 'acme' AND _deleted_at IS NULL"
    )[0]
    assert live > 0 and filled == live


def test_a_type_change_fails_only_that_tenants_drift_check_and_keeps_its_data(
    make_sim, instance, tasklane_for, warehouse
) -> None:
    sim = make_sim(workspace_config("acme"), workspace_config("globex"))
    tasklane = tasklane_for(sim, "acme", "globex")
    for tenant in ("acme", "globex"):
        materialize_tenant(instance, tenant, tasklane, warehouse)
    sim.admin.schema_change(
        "acme", kind="change_type", resource="tasks", field="estimate_hours", to="string", format="{}h"
    )
    changed_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sim.admin.mutate("acme", updates=30, resource="tasks")
    sim.admin.mutate("globex", updates=30, resource="tasks")
    acme = check_results(materialize_tenant(instance, "acme", tasklane, warehouse))
    globex = check_results(materialize_tenant(instance, "globex", tasklane, warehouse))
    assert not acme["tasks_schema_drift"].passed
    diff = acme["tasks_schema_drift"].metadata["drift"].value
    assert [(d["field"], d["expected_type"], d["seen_type"]) for d in diff] == [("estimate_hours", "double", "string")]
    assert diff[0]["example_record_id"].startswith("tsk_")
    assert globex["tasks_schema_drift"].passed and acme["users_schema_drift"].passed
    raw, typed = warehouse.query(
        "SELECT _raw, estimate_hours FROM tasks WHERE tenant_id = 'acme' AND id = ?", (diff[0]["example_record_id"],)
    )[0]
    assert (json.loads(raw) if isinstance(raw, str) else raw)["estimate_hours"].endswith("h") and typed is None
    # Intact: every record is still there, and every record synced since the change is exact. (The
    # vendor reshaped old records without moving updated_at; a full re-sync brings those too.)
    truth = {r["id"]: r for r in sim.admin.truth("acme", "tasks")}
    stored = {r["id"]: r for r in warehouse_records(warehouse, "acme", "tasks")}
    assert set(stored) == set(truth)
    synced_since = [i for i, r in truth.items() if r["updated_at"] >= changed_at]
    assert synced_since and all(stored[i] == truth[i] for i in synced_since)


def test_hostile_and_long_vendor_field_names_survive_a_sync(make_sim, instance, tasklane_for, warehouse) -> None:
    sim = make_sim(workspace_config("acme"))
    tasklane = tasklane_for(sim, "acme")
    materialize_tenant(instance, "acme", tasklane, warehouse)
    sim.admin.schema_change("acme", kind="add_field", resource="users", field=HOSTILE, value='a "quoted"\nvalue 🚀')
    sim.admin.schema_change("acme", kind="add_field", resource="users", field=LONG, value="long")
    assert materialize_tenant(instance, "acme", tasklane, warehouse, tags=RESYNC).success
    assert_equals_ground_truth(sim, warehouse, "acme")
    assert warehouse.query("SELECT count(*) FROM tasks WHERE tenant_id = 'acme'")[0][0] > 0, "tasks survived"


@pytest.mark.e2e  # the dagster CLI, end to end
def test_registered_tenants_materialize_headless_from_the_cli(make_sim, tasklane_for, tmp_path) -> None:
    sim = make_sim(workspace_config("acme"))
    tasklane = tasklane_for(sim, "acme")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DRIPFEED_TENANTS_FILE": tasklane.registry.tenants_file,
        "DRIPFEED_STATE": tasklane.state.url,
        "DRIPFEED_WAREHOUSE": str(tmp_path / "cli.duckdb"),
        "TASKLANE_BASE_URL": sim.base_url,
    }
    Path(env["DAGSTER_HOME"]).mkdir()
    registered = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "dripfeed.register_tenants"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert registered.returncode == 0 and "acme" in registered.stdout, registered.stderr
    materialize = [
        str(ROOT / ".venv/bin/dagster"),
        "asset",
        "materialize",
        "-m",
        "dripfeed.definitions",
        "--select",
        "users",
        "--partition",
        "acme",
    ]
    # Not from the repo root: the dagster CLI loads ./.env, where `make dev` keeps the demo's tokens.
    result = subprocess.run(materialize, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    from resources.warehouse import Warehouse

    users = Warehouse(url=env["DRIPFEED_WAREHOUSE"]).query("SELECT count(*) FROM users WHERE tenant_id = 'acme'")[0][0]
    assert users == len(sim.admin.truth("acme", "users"))
