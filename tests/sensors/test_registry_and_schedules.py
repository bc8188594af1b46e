"""The tenant registry sensor and the tier schedules, evaluated against a real Dagster instance."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from pipeline_assets.run_tags import TENANT_TAG, TIER_TAG
from resources.warehouse import Warehouse
from sensors.tenant_registry import tenant_registry
from tasklane_sim import SimServer
from tests.support.rate_windows import clear_of_the_hours_end
from tests.support.resources import Resources, make_api, resources_for
from tests.support.runs import materialize_tenant
from tests.support.schedule_ticks import evaluate_period, period_start
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

# One page each: a first sync costs 6 counted calls (a page, and the listing its next sync asks about)
SMALL = {"users": 5, "projects": 3, "tasks": 50}
TENANTS = {"acme": "hourly", "globex": "hourly", "initech": "daily", "umbrella": "daily"}


def tasklane(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_url: str, *entries: dict[str, Any]) -> Resources:
    for entry in entries:
        monkeypatch.setenv(entry["token_env"], f"token-{entry['id']}")
    path = write_tenants(tmp_path / "tenants.yaml", *entries)
    return make_api(base_url=base_url, tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))


def registry_tick(instance: dg.DagsterInstance, api: Resources, cursor: str | None = None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, resources=resources_for(api), cursor=cursor) as context:
        result = tenant_registry(context)
    if isinstance(result, dg.SensorResult):  # what the daemon does with a tick's result
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            else:
                for key in request.partition_keys:
                    instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def test_the_registry_adds_new_tenants_and_starts_their_first_sync(instance, tmp_path, monkeypatch) -> None:
    api = tasklane(tmp_path, monkeypatch, "http://unused", *(tenant_entry(t) for t in ("acme", "globex")))
    result = registry_tick(instance, api)
    assert sorted(instance.get_dynamic_partitions("tenants")) == ["acme", "globex"]
    assert sorted(r.partition_key for r in result.run_requests) == ["acme", "globex"]
    assert {(r.tags[TIER_TAG], r.tags["dagster/priority"]) for r in result.run_requests} == {("onboarding", "-1")}
    first_sync_ahead = evaluate_period(instance, api, "hourly")  # the daemon creates the runs a moment later
    assert first_sync_ahead.tenants == [], "a tier leaves a new tenant to the first sync the registry requested"
    again = registry_tick(instance, api, cursor=result.cursor)
    assert isinstance(again, dg.SkipReason) and "match tenants.yaml" in again.skip_message


@pytest.mark.parametrize("change", ["removed", "disabled"])
def test_a_removed_or_disabled_tenant_loses_its_partition(instance, tmp_path, monkeypatch, change: str) -> None:
    both = [tenant_entry("acme"), tenant_entry("globex")]
    registry_tick(instance, tasklane(tmp_path, monkeypatch, "http://unused", *both))
    remaining = [both[0]] if change == "removed" else [both[0], {**both[1], "enabled": False}]
    result = registry_tick(instance, tasklane(tmp_path, monkeypatch, "http://unused", *remaining), cursor="1")
    assert instance.get_dynamic_partitions("tenants") == ["acme"]
    assert not result.run_requests, "nothing new to sync"


@pytest.mark.e2e  # whole periods tick by tick: the daily tier's 96 ticks
def test_each_tier_schedule_targets_exactly_its_tenants_once_per_period(instance, tmp_path, monkeypatch) -> None:
    entries = [tenant_entry(t, tier=tier) for t, tier in TENANTS.items()]
    api = tasklane(tmp_path, monkeypatch, "http://unused", *entries)
    instance.add_dynamic_partitions("tenants", list(TENANTS))  # onboarded long ago, never synced since
    for tier in ("hourly", "daily"):
        requests = evaluate_period(instance, api, tier).requests
        wanted = sorted(t for t, t_tier in TENANTS.items() if t_tier == tier)
        assert sorted(r.partition_key for r in requests) == wanted
        assert all(r.tags[TIER_TAG] == tier and r.tags[TENANT_TAG] == r.partition_key for r in requests)
        assert len({r.run_key for r in requests}) == len(wanted), "one run key per tenant and period"


@pytest.mark.e2e  # whole periods tick by tick: the daily tier's 96 ticks
def test_moving_a_tenant_between_tiers_is_one_line_in_tenants_yaml(instance, tmp_path, monkeypatch) -> None:
    entries = [tenant_entry(t, tier=tier) for t, tier in TENANTS.items()]
    instance.add_dynamic_partitions("tenants", list(TENANTS))  # onboarded long ago, never synced since
    entries[2]["tier"] = "hourly"  # initech
    api = tasklane(tmp_path, monkeypatch, "http://unused", *entries)
    assert evaluate_period(instance, api, "hourly").tenants == ["acme", "globex", "initech"]
    assert evaluate_period(instance, api, "daily").tenants == ["umbrella"]


def test_a_tenant_without_budget_is_skipped_with_a_reason(make_sim, instance, tmp_path, monkeypatch) -> None:
    clear_of_the_hours_end(60)  # its runs and its budget's window both in this hour
    start = period_start("hourly")
    sim: SimServer = make_sim(workspace_config("acme", records=SMALL), workspace_config("globex", records=SMALL))
    entries = [tenant_entry("acme", budget_per_hour=8), tenant_entry("globex")]
    api = tasklane(tmp_path, monkeypatch, sim.base_url, *entries)
    warehouse = Warehouse(url=str(tmp_path / "warehouse.duckdb"))
    for tenant in ("acme", "globex"):
        assert materialize_tenant(instance, tenant, api, warehouse).success  # acme spends 6 of its 8 calls
    next_period = start + timedelta(hours=1)  # both synced in this one
    ticks = evaluate_period(instance, api, "hourly", next_period)
    assert ticks.tenants == [], "globex, quiet, is checked without a run; acme is not even asked"
    assert any("Left out: acme: 2 calls left in its rate window" in reason for reason in ticks.skipped), ticks.skipped
    assert api.state.tenant_checks.get("globex").outcome.value == "current"
    assert sim.admin.counters("acme")["totals"]["requests"] == 6, "only its sync's calls"


def test_a_tier_with_no_runnable_tenant_says_why(make_sim, instance, tmp_path, monkeypatch) -> None:
    clear_of_the_hours_end(60)  # its run and its budget's window both in this hour
    start = period_start("hourly")
    sim: SimServer = make_sim(workspace_config("acme", records=SMALL))
    api = tasklane(tmp_path, monkeypatch, sim.base_url, tenant_entry("acme", budget_per_hour=8))
    assert materialize_tenant(instance, "acme", api, Warehouse(url=str(tmp_path / "w.duckdb"))).success
    skipped = evaluate_period(instance, api, "hourly", start + timedelta(hours=1)).skipped
    assert any("Left out: acme: 2 calls left in its rate window until " in reason for reason in skipped), skipped


def test_many_new_tenants_are_onboarded_in_waves_of_first_syncs(instance, tmp_path, monkeypatch) -> None:
    ids = [f"new{n:03d}" for n in range(120)]
    api = tasklane(tmp_path, monkeypatch, "http://unused", *(tenant_entry(t) for t in ids))

    def launch(result: dg.SensorResult, status: dg.DagsterRunStatus) -> list[str]:
        """What the daemon does with the tick's requests: runs, here left in `status`."""
        run_ids = []
        for request in result.run_requests:
            run_id = str(uuid.uuid4())
            tags = {**request.tags, "dagster/partition": request.partition_key}
            instance.add_run(dg.DagsterRun(job_name="sync_tenant", run_id=run_id, tags=tags, status=status))
            run_ids.append(run_id)
        return run_ids

    first = registry_tick(instance, api)
    assert len(first.run_requests) == 50 and len(instance.get_dynamic_partitions("tenants")) == 50, "one wave"
    queued = launch(first, dg.DagsterRunStatus.STARTED)
    full = registry_tick(instance, api, cursor=first.cursor)
    assert isinstance(full, dg.SkipReason) and "70 new tenants wait for room" in full.skip_message
    for run_id in queued[:30]:  # thirty first syncs ended
        instance.report_run_failed(instance.get_run_by_id(run_id))
    second = registry_tick(instance, api, cursor=first.cursor)
    assert [r.partition_key for r in second.run_requests] == ids[50:80], "the next thirty, in the order of their ids"
