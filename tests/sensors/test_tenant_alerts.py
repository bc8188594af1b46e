"""A failed tenant run posts one alert to a local webhook receiver; healthy tenants keep running."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from resources.alerts import Alerts
from resources.warehouse import Warehouse
from sensors.tenant_alerts import tenant_failure_alerts
from tasklane_sim import SimServer
from tests.support.resources import make_api
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants


def alert_for(instance: dg.DagsterInstance, run: dg.DagsterRun, alerts: Alerts) -> None:
    """Evaluate the failure sensor on `run` the way the daemon does."""
    (failure,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name=tenant_failure_alerts.name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        resources={"alerts": alerts},
    ).for_run_failure()
    tenant_failure_alerts(context)


def test_a_revoked_token_fails_only_that_tenant_and_posts_one_alert(
    make_sim, instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook, alerts
) -> None:
    sim: SimServer = make_sim(workspace_config("acme"), workspace_config("globex"))
    for tenant in ("acme", "globex"):
        monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
    path = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme"), tenant_entry("globex"))
    api = make_api(base_url=sim.base_url, tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))
    warehouse = Warehouse(url=str(tmp_path / "warehouse.duckdb"))
    sim.admin.revoke_token("acme", "token-acme")

    failed = materialize_tenant(instance, "acme", api, warehouse, raise_on_error=False)
    healthy = materialize_tenant(instance, "globex", api, warehouse)
    assert not failed.success and healthy.success
    assert sim.admin.counters("acme")["endpoints"]["users.list"]["requests"] == 1, "no retries on a revoked token"

    alert_for(instance, instance.get_run_by_id(failed.run_id), alerts)
    assert len(webhook) == 1
    alert = webhook[0]
    assert alert["tenant"] == "acme" and alert["error_class"] == "auth"
    assert alert["asset"] in ("users", "projects", "tasks")
    assert alert["run_url"] == f"http://dagster.example/runs/{failed.run_id}"
    assert "acme" in alert["text"] and "token-acme" not in json.dumps(alert)
