"""History through bulk exports: the first sync submits, the export status sensor polls and
launches the loads, failed jobs are resubmitted a bounded number of times, late ones abandoned."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from pipeline_assets.assets import projects, tasks, users
from pipeline_assets.export_lifecycle import MAX_ATTEMPTS
from pipeline_assets.history_exports import EXPORT_TAG
from resources.alerts import Alerts
from resources.control.export_jobs import ExportJobs
from resources.streams import STREAMS, minus_overlap
from resources.tiers import TIERS
from resources.warehouse import Warehouse
from sensors.export_status import export_status_sensor
from tasklane_sim import SimServer
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.resources import Resources, resources_for
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config
from tests.support.ticks import Tick, schedule_tick

pytestmark = pytest.mark.e2e  # sensor ticks waiting on export jobs that finish on the real clock

HISTORY = {"history_since": "2000-01-01"}  # before every simulated record: the export is the whole history


def tick(
    instance: dg.DagsterInstance, api: Resources, alerts: Alerts | None = None, timeout_hours: float = 6.0
) -> dg.SensorResult | dg.SkipReason:
    resources = resources_for(api, alerts=alerts or Alerts())
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        return export_status_sensor(timeout_hours=timeout_hours)(context)


def load(instance: dg.DagsterInstance, api: Resources, warehouse: Warehouse, request: dg.RunRequest) -> None:
    """Run what the sensor asked for, as the daemon would launch it."""
    result = dg.materialize(
        [users, projects, tasks],
        selection=dg.AssetSelection.assets(*request.asset_selection).without_checks()
        | dg.AssetSelection.checks(*request.asset_check_keys),
        partition_key=request.partition_key,
        tags=request.tags,
        instance=instance,
        resources=resources_for(api, warehouse=warehouse),
    )
    assert result.success


def first_sync_with_history(
    make_sim, tasklane_for, warehouse: Warehouse, instance: dg.DagsterInstance, **exports: float
) -> tuple[SimServer, Resources]:
    """Tenant acme with `history_since`, its exports behaving as `exports` says, after its first sync."""
    sim = make_sim(workspace_config("acme", exports=exports))
    api = tasklane_for(sim, "acme", **HISTORY)
    assert materialize_tenant(instance, "acme", api, warehouse).success
    return sim, api


def endpoint_calls(sim: SimServer, endpoint: str) -> int:
    return sim.admin.counters("acme")["endpoints"].get(endpoint, {}).get("counted", 0)


def test_history_arrives_through_exports_and_the_sensor_loads_it(
    make_sim, tasklane_for, duckdb_warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    sim, api = first_sync_with_history(make_sim, tasklane_for, duckdb_warehouse, instance, duration_seconds=0.5)
    jobs = {job["resource"]: job for job in sim.admin.exports("acme")}
    assert sorted(jobs) == sorted(STREAMS)  # one export per stream, and no rows yet: no run waited
    assert duckdb_warehouse.query("SELECT count(*) FROM _dripfeed_sync_state WHERE watermark IS NOT NULL")[0][0] == 0

    time.sleep(1.5)  # the jobs finish, and the vendor's poll_after_seconds passes
    sim.admin.reset_counters("acme")
    result = tick(instance, api)
    assert isinstance(result, dg.SensorResult)
    assert sorted(r.run_key for r in result.run_requests) == sorted(f"export:{j['id']}" for j in jobs.values())
    assert endpoint_calls(sim, "exports.list") == 1  # one listing for the tenant, one look at each finished job
    assert endpoint_calls(sim, "exports.get") == 3
    assert isinstance(tick(instance, api), dg.SkipReason)  # nothing is due until the loads have run

    order = {stream: n for n, stream in enumerate(STREAMS)}
    for request in sorted(result.run_requests, key=lambda r: order[r.asset_selection[0].path[-1]]):
        assert request.tags[EXPORT_TAG] == jobs[request.asset_selection[0].path[-1]]["id"]
        assert request.tags["dagster/priority"] == "-1"  # after the tiers' runs, like a first sync
        load(instance, api, duckdb_warehouse, request)
    assert_equals_ground_truth(sim, duckdb_warehouse, "acme")
    for stream in STREAMS:
        job = ExportJobs(api.state.store).get("acme", stream)
        assert job is not None and job.status == "loaded"
        assert duckdb_warehouse.state("acme", stream).watermark == minus_overlap(job.updated_before)
    assert sim.admin.counters("acme")["exports_created"] == 3

    sim.admin.mutate("acme", updates=150, resource="tasks")  # then the incremental syncs take over
    sim.admin.reset_counters("acme")
    assert materialize_tenant(instance, "acme", api, duckdb_warehouse).success
    assert_equals_ground_truth(sim, duckdb_warehouse, "acme")
    assert endpoint_calls(sim, "tasks.list") <= math.ceil(150 / 100) + 2  # the changes, plus the overlaps
    assert sim.admin.counters("acme")["exports_created"] == 3


def test_failed_exports_are_resubmitted_then_abandoned_with_one_alert_each(
    make_sim, tasklane_for, duckdb_warehouse: Warehouse, instance: dg.DagsterInstance, webhook, alerts
) -> None:
    sim, api = first_sync_with_history(
        make_sim, tasklane_for, duckdb_warehouse, instance, duration_seconds=0.2, failure_rate=1.0
    )
    for _ in range(MAX_ATTEMPTS):
        time.sleep(1.2)
        assert isinstance(tick(instance, api, alerts), dg.SkipReason)  # nothing to load
    assert sim.admin.counters("acme")["exports_created"] == 3 * MAX_ATTEMPTS
    assert {job.status for job in (ExportJobs(api.state.store).get("acme", r) for r in STREAMS)} == {"abandoned"}
    assert sorted(alert["asset"] for alert in webhook) == sorted(STREAMS)
    assert {alert["tenant"] for alert in webhook} == {"acme"}
    assert "token-acme" not in str(webhook)

    sim.admin.set_knobs("acme", exports={"failure_rate": 0.0})
    assert materialize_tenant(instance, "acme", api, duckdb_warehouse).success  # the listing takes over
    assert_equals_ground_truth(sim, duckdb_warehouse, "acme")


def test_an_export_not_done_in_time_is_abandoned_without_polling(
    make_sim,
    tasklane_for,
    duckdb_warehouse: Warehouse,
    instance: dg.DagsterInstance,
    webhook,
    alerts,
) -> None:
    sim, api = first_sync_with_history(make_sim, tasklane_for, duckdb_warehouse, instance, duration_seconds=3600)
    time.sleep(1)
    sim.admin.reset_counters("acme")
    assert isinstance(tick(instance, api, alerts, timeout_hours=0.5 / 3600), dg.SkipReason)
    assert endpoint_calls(sim, "exports.list") + endpoint_calls(sim, "exports.get") == 0
    assert len(webhook) == 3 and all("h after it was submitted" in alert["reason"] for alert in webhook)
    assert ExportJobs(api.state.store).open_count() == 0


def test_a_restart_between_recording_and_submitting_submits_the_same_job(
    make_sim, tasklane_for, duckdb_warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    sim, api = first_sync_with_history(make_sim, tasklane_for, duckdb_warehouse, instance, duration_seconds=0.5)
    jobs = ExportJobs(api.state.store)
    for stream in STREAMS:  # as if every POST had been answered but the answers were lost
        job = jobs.get("acme", stream)
        assert job is not None
        jobs.save(job.but(status="submitting", export_id=None))
    time.sleep(1.5)
    tick(instance, api)  # submits the recorded jobs again, under their keys
    assert sim.admin.counters("acme")["exports_created"] == 3
    time.sleep(1.5)
    result = tick(instance, api)
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 3


def test_a_tenant_locked_out_during_the_tick_does_not_stop_the_others(
    make_sim, tasklane_for, duckdb_warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    exports = {"duration_seconds": 0.5}
    sim = make_sim(
        workspace_config("acme", exports=exports, rate_limit=100, lockout_threshold=0),
        workspace_config("globex", exports=exports),
    )
    api = tasklane_for(sim, "acme", "globex", **HISTORY)
    for tenant in ("acme", "globex"):
        assert materialize_tenant(instance, tenant, api, duckdb_warehouse).success
    time.sleep(1.5)  # every job is done, and due
    sim.admin.spend("acme", 100)  # acme's own scripts spent its window: its first call locks it out
    result = tick(instance, api)
    assert isinstance(result, dg.SensorResult)
    assert sorted(r.partition_key for r in result.run_requests) == ["globex"] * 3, "globex loads in the same tick"
    locked = api.state.deferrals.waiting(time.time())["acme"]
    assert locked.vendor_block and 290 <= locked.resume_at - time.time() <= 300
    assert {job.next_poll_at for job in (ExportJobs(api.state.store).get("acme", r) for r in STREAMS)} == {
        locked.resume_at
    }, "acme's jobs are looked at again when the lockout ends"


def test_a_tenant_whose_history_was_loaded_gets_its_run_at_its_slot_and_is_quiet_after(
    make_sim, tasklane_for, duckdb_warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    sim, api = first_sync_with_history(make_sim, tasklane_for, duckdb_warehouse, instance, duration_seconds=0.5)

    def tier_tick(periods_ahead: int) -> Tick:
        when = TIERS["hourly"].period_start(datetime.now(UTC)) + timedelta(hours=periods_ahead, minutes=55)
        return schedule_tick("hourly_tenants", instance, resources_for(api), when)

    waiting = tier_tick(1)
    assert waiting.run_requests == [] and "1 current" in waiting.text, "its history is on its way: no run"
    time.sleep(1.5)
    for request in tick(instance, api).run_requests:
        load(instance, api, duckdb_warehouse, request)
    (after_load,) = tier_tick(2).run_requests
    assert after_load.partition_key == "acme" and after_load.asset_selection is None, "every stream was loaded"
    assert after_load.tags["dripfeed/why"] == "projects: no_listing, tasks: no_listing, users: no_listing"
    assert materialize_tenant(instance, "acme", api, duckdb_warehouse, tags=after_load.tags).success
    assert_equals_ground_truth(sim, duckdb_warehouse, "acme")
    assert tier_tick(3).run_requests == [], "then quiet: its listings answer 304"
