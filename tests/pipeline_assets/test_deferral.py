"""A throttled tenant's run ends at once with its checkpoint committed, records when the tenant may
resume, and is resumed by the deferred_syncs sensor: against the real simulator and a real instance."""

from __future__ import annotations

import time

import dagster as dg

from pipeline_assets.deferral import DEFERRED_UNTIL_TAG, RESUMES_TAG
from resources.control.deferrals import Deferral
from resources.control.store import deferrals
from resources.tasklane.errors import TenantThrottled
from sensors.deferred_syncs import MOST_RUNS_PER_TICK, deferred_syncs
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.rate_windows import clear_of_the_hours_end
from tests.support.resources import make_api, resources_for
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

SMALL_PARENTS = {"users": 20, "projects": 8, "tasks": 1000}  # one page each, then ten pages of tasks


def deferred_tick(instance: dg.DagsterInstance, api, cursor: str | None = None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, resources=resources_for(api), cursor=cursor) as context:
        return deferred_syncs(context)


def test_a_tenant_out_of_budget_defers_its_run_instead_of_waiting(
    make_sim, instance, tasklane_for, duckdb_warehouse
) -> None:
    clear_of_the_hours_end()  # the budget's window must not renew mid-test: its reset is meant to be far
    sim = make_sim(workspace_config("acme", records=SMALL_PARENTS))
    # users and projects, each with the listing its next sync asks about, and 3 pages of tasks; the reset is far
    api = tasklane_for(sim, "acme", budget_per_hour=7)
    started = time.monotonic()
    result = materialize_tenant(instance, "acme", api, duckdb_warehouse, raise_on_error=False)
    assert time.monotonic() - started < 30, "the run did not wait for the window's reset"
    assert result.success, "a deferred run is not a failed run"
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"users", "projects"}, "the deferred asset is not materialized, so not fresh"
    kept = duckdb_warehouse.query("SELECT count(*) FROM tasks WHERE tenant_id = 'acme'")[0][0]
    assert kept == 300 and duckdb_warehouse.state("acme", "tasks").resume_from is not None, "checkpoint committed"
    deferral = api.state.deferrals.waiting(time.time())["acme"]
    assert deferral.run_id == result.run_id and not deferral.vendor_block
    assert deferral.resume_at > time.time() + 60 and "budget" in deferral.reason
    run = instance.get_run_by_id(result.run_id)
    assert run.tags[DEFERRED_UNTIL_TAG] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(deferral.resume_at))
    observed = instance.fetch_observations(dg.AssetKey("tasks"), limit=1).records[0].asset_observation
    assert observed.partition == "acme" and observed.metadata["deferred_until"].value == run.tags[DEFERRED_UNTIL_TAG]
    assert sim.admin.counters("acme")["totals"]["counted"] == 7, "no call beyond the budget"


def test_a_vendor_lockout_defers_the_run_and_every_other_caller_waits_without_a_call(
    make_sim, instance, tasklane_for, duckdb_warehouse
) -> None:
    sim = make_sim(workspace_config("acme", records=SMALL_PARENTS, rate_limit=100, lockout_threshold=0))
    api = tasklane_for(sim, "acme")
    sim.admin.spend("acme", 100)  # the customer's own scripts spent the window: the first 429 locks acme out
    result = materialize_tenant(instance, "acme", api, duckdb_warehouse)
    assert result.success and not result.get_asset_materialization_events()
    deferral = api.state.deferrals.waiting(time.time())["acme"]
    assert deferral.vendor_block and 290 <= deferral.resume_at - time.time() <= 300
    calls = sim.admin.counters("acme")["totals"]["requests"]
    other = tasklane_for(sim, "acme").client("acme")  # another process of dripfeed, e.g. a sensor
    try:
        list(other.list_pages("users", None))
    except TenantThrottled as throttled:
        assert throttled.vendor and abs(throttled.resume_at - deferral.resume_at) < 1
    else:
        raise AssertionError("a caller ignored the vendor's Retry-After")
    assert sim.admin.counters("acme")["totals"]["requests"] == calls, "it waited without calling"


def test_the_resumption_is_requested_once_when_the_wait_is_over_and_resumes_the_checkpoint(
    make_sim, instance, tasklane_for, duckdb_warehouse
) -> None:
    clear_of_the_hours_end()  # the budget's window must not renew mid-test: its reset is meant to be far
    sim = make_sim(workspace_config("acme", records=SMALL_PARENTS), as_of="2026-11-01T00:00:00Z")
    api = tasklane_for(sim, "acme", budget_per_hour=7)
    deferred = materialize_tenant(instance, "acme", api, duckdb_warehouse)
    assert isinstance(deferred_tick(instance, api), dg.SensorResult)
    waiting = deferred_tick(instance, api)
    assert not waiting.run_requests and "1 tenants waiting" in str(waiting.skip_reason)

    with api.state.store.transaction() as conn:  # as if the window had reset: its time came after that tick
        conn.execute(deferrals.update().values(resume_at=float(waiting.cursor) + 0.001))
    due = deferred_tick(instance, api, cursor=waiting.cursor)
    assert len(due.run_requests) == 1
    request = due.run_requests[0]
    assert request.partition_key == "acme" and request.tags[RESUMES_TAG] == deferred.run_id
    assert request.run_key.startswith("resume:acme:")
    assert not deferred_tick(instance, api, cursor=due.cursor).run_requests, "a later tick requests it again"
    assert deferred_tick(instance, api).run_requests[0].run_key == request.run_key, "same key: launched once"

    sim.admin.reset_counters("acme")
    resumed = materialize_tenant(
        instance, "acme", tasklane_for(sim, "acme", budget_per_hour=100), duckdb_warehouse, tags=request.tags
    )
    tasks = next(iter(resumed.asset_materializations_for_node("tasks"))).metadata
    assert tasks["resumed_from_checkpoint"].value != "none"
    # Only the rest was fetched (7 pages, the overlap's), and the listing its next sync asks about.
    assert sim.admin.counters("acme")["endpoints"]["tasks.list"]["requests"] <= 7 + 1 + 1
    assert_equals_ground_truth(sim, duckdb_warehouse, "acme")
    assert not api.state.deferrals.due(time.time()), "a completed sync ends the deferral"


def test_thousands_deferred_until_one_reset_are_resumed_a_batch_a_tick(instance, tmp_path, monkeypatch) -> None:
    """Every tenant of a customer's account deferred until the same reset: a tick requests at most
    MOST_RUNS_PER_TICK resumptions, and the next goes on from the last it took, skipping none."""
    ids = [f"t{n:03d}" for n in range(MOST_RUNS_PER_TICK + 50)]
    monkeypatch.setenv("TASKLANE_TOKEN_ANY", "unused")
    path = write_tenants(tmp_path / "tenants.yaml", *(tenant_entry(t, token_env="TASKLANE_TOKEN_ANY") for t in ids))
    api = make_api("http://unused", path, str(tmp_path / "control.sqlite3"))
    instance.add_dynamic_partitions("tenants", ids)
    reset = time.time() - 1
    for tenant in ids:
        api.state.deferrals.defer(Deferral(tenant, reset, "the window's budget", reset - 600, run_id=f"run-{tenant}"))
    first = deferred_tick(instance, api, cursor=str(reset - 60))
    second = deferred_tick(instance, api, cursor=first.cursor)
    assert len(first.run_requests) == MOST_RUNS_PER_TICK and len(second.run_requests) == 50
    assert sorted(r.partition_key for r in first.run_requests + second.run_requests) == ids
    assert deferred_tick(instance, api, cursor=second.cursor).run_requests == []
