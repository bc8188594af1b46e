"""The instance stays small: old sync runs the UI no longer shows are deleted, those it shows keep their
asset events only, and old logs go; the webserver still shows every partition's last materialization
and check results, also after a tenant is added. On SQLite (the embedded default) and Postgres."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef  # the instance the webserver reads, from its DAGSTER_HOME

from resources.alerts import Alerts
from resources.streams import STREAMS
from resources.warehouse import Warehouse
from sensors.run_retention import ASSET_EVENT_TYPES, RETENTION_TAG, apply_retention
from sensors.tenant_freshness import tenant_freshness
from tests.support.dagster_daemon import dripfeed_env, scratch_instance
from tests.support.postgres_server import fresh_database
from tests.support.resources import make_api, resources_for
from tests.support.runs import run_sync_tenant
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants
from tests.support.ticks import sensor_tick
from tests.support.webserver_graphql import running_webserver

pytestmark = pytest.mark.e2e  # a real webserver over each storage

TENANTS = ("acme", "globex")
COMPUTE_LOGS = "compute_logs:\n  module: dripfeed.compute_logs\n  class: ThreadedComputeLogManager\n"
A_SECOND = 1 / 86400  # the retention, in days: every run of the test is older than it when it runs


def instance_yaml(directory: Path, storage: str, postgres_url: str | None) -> Path:
    text = "telemetry:\n  enabled: false\n" + COMPUTE_LOGS
    if storage == "postgres":
        text += f"storage:\n  postgres:\n    postgres_url: {fresh_database(postgres_url, 'dagster')}\n"
    path = directory / "instance.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_retention_keeps_what_the_ui_shows_and_deletes_the_rest(
    storage: str, make_sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    postgres_url = request.getfixturevalue("postgres_url") if storage == "postgres" else None
    sim = make_sim(*(workspace_config(t, records={"tasks": 50}) for t in TENANTS))
    home = scratch_instance(tmp_path, instance_yaml(tmp_path, storage, postgres_url))
    tenants_file = write_tenants(tmp_path / "tenants.yaml", *(tenant_entry(t) for t in TENANTS))
    env = dripfeed_env(tmp_path, home, tenants_file, sim.base_url, *TENANTS)
    for tenant in TENANTS:
        monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # where the compute log manager keeps its files
    api = make_api(sim.base_url, tenants_file, env["DRIPFEED_STATE"])
    warehouse = Warehouse(url=env["DRIPFEED_WAREHOUSE"])
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        runs: dict[str, list[str]] = {tenant: [] for tenant in TENANTS}
        for _ in range(3):  # each tenant's older runs are superseded by its latest
            for tenant in TENANTS:
                sim.admin.mutate(tenant, updates=3, resource="tasks")
                result = run_sync_tenant(instance, tenant, api, warehouse)
                assert result.success
                runs[tenant].append(result.run_id)
        for _ in range(2):  # two runless results of tasks_fresh per partition, and of each tier's summary
            sensor_tick(tenant_freshness, instance, resources_for(api, alerts=Alerts()))
            checks = api.state.tenant_checks.all().values()
            api.state.tenant_checks.save(replace(check, reported_at=0.0) for check in checks)  # a day later
        compute_logs = Path(home) / "storage"
        assert all((compute_logs / run_id).is_dir() for ids in runs.values() for run_id in ids)
        time.sleep(1.1)

        done = apply_retention(instance, days=A_SECOND, instigators=["tenant_freshness"])

        assert (done.runs_deleted, done.runs_stripped) == (4, 2), done.summary()
        kept = {tenant: ids[-1] for tenant, ids in runs.items()}
        left = {record.dagster_run.run_id for record in instance.get_run_records()}
        assert left == set(kept.values()), "the superseded runs are gone, the latest kept"
        for run_id in kept.values():
            assert instance.get_run_by_id(run_id).tags[RETENTION_TAG] == "kept"
            kinds = {e.dagster_event_type.value for e in instance.all_logs(run_id) if e.dagster_event}
            assert kinds and kinds <= set(ASSET_EVENT_TYPES), kinds
            assert not [e for e in instance.all_logs(run_id) if not e.dagster_event], "no log line left"
        assert not [p for p in compute_logs.iterdir() if p.name in {*runs["acme"], *runs["globex"]}], "compute logs"
        assert done.runless_results_pruned >= 2, "the older runless results of each partition and summary"
        instance.add_dynamic_partitions("tenants", ["hooli"])  # a tenant added: Dagster rebuilds partition status

    with running_webserver(tmp_path, env) as webserver:
        views = webserver.assets(list(STREAMS), [*TENANTS, "hooli"])
    for stream, view in views.items():
        assert view.materialized == set(TENANTS) and view.missing == {"hooli"}, (stream, view)
        assert view.latest_run == kept, (stream, view.latest_run)
        for check, passed in view.checks_passed.items():
            if check.startswith(stream) and check != "tasks_fresh":
                assert passed == set(TENANTS), (check, view)
    assert views["tasks"].checks_passed["tasks_fresh"] == set(TENANTS), "the freshness results still show"
