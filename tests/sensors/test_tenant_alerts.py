"""A failed tenant run posts one alert to a local webhook receiver; healthy tenants keep running."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from resources.tasklane_api import TasklaneAPI
from resources.warehouse import Warehouse
from sensors.tenant_alerts import WEBHOOK_ENV, tenant_failure_alerts
from tasklane_sim import SimServer
from tests.conftest import tenant_entry, workspace_config, write_tenants
from tests.pipeline_assets.conftest import materialize_tenant


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A Slack-compatible receiver on a real socket; yields the JSON bodies it received."""
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:{server.server_port}/hooks/dripfeed")
    yield received
    server.shutdown()


def alert_for(instance: dg.DagsterInstance, run: dg.DagsterRun) -> None:
    """Evaluate the failure sensor on `run` the way the daemon does."""
    (failure,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name=tenant_failure_alerts.name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
    ).for_run_failure()
    tenant_failure_alerts(context)


def test_a_revoked_token_fails_only_that_tenant_and_posts_one_alert(
    make_sim, instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook
) -> None:
    sim: SimServer = make_sim(workspace_config("acme"), workspace_config("globex"))
    for tenant in ("acme", "globex"):
        monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
    path = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme"), tenant_entry("globex"))
    api = TasklaneAPI(base_url=sim.base_url, tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))
    warehouse = Warehouse(url=str(tmp_path / "warehouse.duckdb"))
    sim.admin.revoke_token("acme", "token-acme")

    failed = materialize_tenant(instance, "acme", api, warehouse, raise_on_error=False)
    healthy = materialize_tenant(instance, "globex", api, warehouse)
    assert not failed.success and healthy.success
    assert sim.admin.counters("acme")["endpoints"]["users.list"]["requests"] == 1, "no retries on a revoked token"

    alert_for(instance, instance.get_run_by_id(failed.run_id))
    assert len(webhook) == 1
    alert = webhook[0]
    assert alert["tenant"] == "acme" and alert["error_class"] == "auth"
    assert alert["asset"] in ("users", "projects", "tasks")
    assert alert["run_url"].endswith(f"/runs/{failed.run_id}")
    assert "acme" in alert["text"] and "token-acme" not in json.dumps(alert)
