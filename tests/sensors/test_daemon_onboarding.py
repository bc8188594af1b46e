"""Onboarding through the real daemon, following docs/operations.md: the tenant entry the docs
show is added to tenants.yaml, it gets its partition and its first sync, and the warehouse then
equals the simulator's ground truth."""

from __future__ import annotations

import re
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from resources.warehouse import Warehouse
from tests.support.dagster_daemon import ROOT, dripfeed_env, running_daemon, scratch_instance
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

pytestmark = pytest.mark.e2e  # the real dagster-daemon


def wait_for_successful_first_sync(instance: dg.DagsterInstance, tenant: str, timeout: float) -> dg.DagsterRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": tenant}))
        if runs and runs[0].is_finished:
            return runs[0]
        time.sleep(1)
    raise AssertionError(f"no finished run for {tenant} within {timeout} s")


def documented_onboarding() -> tuple[dict, str]:
    """The tenant entry and the check query of docs/operations.md's "Onboard a tenant"."""
    section = (ROOT / "docs" / "operations.md").read_text().split("## Onboard a tenant")[1].split("\n## ")[0]
    entry = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1))[0]
    query = re.search(r"`(SELECT count\(\*\) FROM tasks WHERE tenant_id = '\w+')`", section).group(1)
    return entry, query


@pytest.mark.timeout(600)  # generous: a loaded CI machine starts runs slowly
def test_a_tenant_added_to_tenants_yaml_is_onboarded_by_the_daemon(make_sim, tmp_path: Path, monkeypatch) -> None:
    documented, check = documented_onboarding()
    new = documented["id"]
    sim = make_sim(workspace_config("acme"), workspace_config(new))
    home = scratch_instance(tmp_path)
    tenants = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme"))
    env = dripfeed_env(tmp_path, home, tenants, sim.base_url, "acme")
    env[documented["token_env"]] = f"token-{new}"  # step 1: the token where the entry points
    env["DRIPFEED_REGISTRY_CHECK_SECONDS"] = "10"  # the tick the docs wait up to a minute for
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with running_daemon(tmp_path, env), dg.DagsterInstance.get() as instance:
        acme = wait_for_successful_first_sync(instance, "acme", timeout=240)
        assert acme.status == dg.DagsterRunStatus.SUCCESS and acme.tags["dripfeed/tier"] == "onboarding"
        assert acme.tags["dagster/priority"] == "-1"  # the run queue starts a tier's run before it
        write_tenants(tenants, tenant_entry("acme"), documented)  # step 2: the entry the docs show
        onboarded = wait_for_successful_first_sync(instance, new, timeout=240)  # step 3: the sensor's next tick
        assert onboarded.status == dg.DagsterRunStatus.SUCCESS
        assert sorted(instance.get_dynamic_partitions("tenants")) == sorted(["acme", new])
        assert len(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "acme"}))) == 1
    warehouse = Warehouse(url=env["DRIPFEED_WAREHOUSE"])
    for tenant in ("acme", new):
        assert_equals_ground_truth(sim, warehouse, tenant)
    assert warehouse.query(check)[0][0] == len(sim.admin.truth(new, "tasks"))  # step 4: the docs' check
