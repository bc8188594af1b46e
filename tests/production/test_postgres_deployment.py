"""The production setup on one machine, on a real Postgres: deploy/run.sh starts the code server,
the daemon and the webserver; Dagster keeps its runs and ticks in Postgres; the same sensors and
schedules as the demo launch runs that land the tenants' data in the Postgres warehouse."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import requests
from dagster_postgres import PostgresRunStorage

from resources.warehouse import Warehouse
from tasklane_sim.server import free_port
from tests.support.dagster_daemon import BIN, ROOT, wait_until
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.postgres_server import fresh_database
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

pytestmark = pytest.mark.e2e  # deploy/run.sh's daemon and webserver on a real Postgres

TENANTS = ("acme", "globex")


def succeeded(instance: dg.DagsterInstance, tenant: str, tier: str) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": tenant, "dripfeed/tier": tier}))
    return any(run.status == dg.DagsterRunStatus.SUCCESS for run in runs)


@pytest.mark.timeout(600)  # the hourly tier fires on a minute boundary: up to a minute of waiting
def test_deploy_run_sh_on_postgres_runs_sensors_and_schedules_into_the_postgres_warehouse(
    make_sim, postgres_url: str, tmp_path: Path, monkeypatch
) -> None:
    sim = make_sim(*(workspace_config(t) for t in TENANTS))
    dagster_db = urlsplit(fresh_database(postgres_url, "dagster"))
    webserver_port, metrics_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DAGSTER_PG_HOST": dagster_db.hostname or "",
        "DAGSTER_PG_PORT": str(dagster_db.port),
        "DAGSTER_PG_USER": dagster_db.username or "",
        "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        "DAGSTER_PG_DB": dagster_db.path.lstrip("/"),
        "DRIPFEED_WAREHOUSE": fresh_database(postgres_url, "warehouse"),
        "DRIPFEED_STATE": fresh_database(postgres_url, "control"),
        "DRIPFEED_TENANTS_FILE": str(write_tenants(tmp_path / "tenants.yaml", *map(tenant_entry, TENANTS))),
        "DRIPFEED_HOURLY_PERIOD_MINUTES": "1",  # the hourly tier every minute, so a test sees it fire
        "DRIPFEED_REGISTRY_CHECK_SECONDS": "10",  # the registry onboards within seconds, not a minute
        "DRIPFEED_WEBSERVER_PORT": str(webserver_port),
        "DRIPFEED_CODE_SERVER_PORT": str(free_port("127.0.0.1")),
        "DRIPFEED_WEBSERVER_HOST": "127.0.0.1",
        "DRIPFEED_METRICS_PORT": str(metrics_port),
        "TASKLANE_BASE_URL": sim.base_url,
        **{f"TASKLANE_TOKEN_{t.upper()}": f"token-{t}" for t in TENANTS},
    }
    for name in ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("DAGSTER_PG_DB", env["DAGSTER_PG_DB"])
    with (tmp_path / "deploy.log").open("w") as log:
        deployment = subprocess.Popen(
            [str(ROOT / "deploy" / "run.sh")],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: (tmp_path / "dagster_home" / "dagster.yaml").exists(), 30, "deploy/run.sh's instance")
        with dg.DagsterInstance.get() as instance:
            assert isinstance(instance.run_storage, PostgresRunStorage)
            for tenant in TENANTS:  # the registry sensor onboards them
                wait_until(lambda t=tenant: succeeded(instance, t, "onboarding"), 240, f"{tenant}'s first sync")
            for tenant in TENANTS:  # then the hourly schedule asks each tenant and runs the ones that changed
                sim.admin.mutate(tenant, updates=3, resource="tasks")
            for tenant in TENANTS:
                wait_until(lambda t=tenant: succeeded(instance, t, "hourly"), 180, f"{tenant}'s hourly sync")
        validate = subprocess.run(
            [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert validate.returncode == 0, validate.stdout + validate.stderr
        assert requests.get(f"http://127.0.0.1:{webserver_port}/server_info", timeout=30).ok
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text  # from the Postgres store
        for tenant in TENANTS:
            assert f'dripfeed_tenant_state{{state="fresh",tenant="{tenant}",tier="hourly"}} 1.0' in metrics, metrics
        assert 'dripfeed_tier_runs_requested_total{tier="hourly"}' in metrics
    finally:
        deployment.send_signal(signal.SIGTERM)  # run.sh stops its three processes
        deployment.wait(timeout=120)
    warehouse = Warehouse(url=env["DRIPFEED_WAREHOUSE"])
    for tenant in TENANTS:
        assert_equals_ground_truth(sim, warehouse, tenant)
