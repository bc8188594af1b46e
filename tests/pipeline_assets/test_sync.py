"""The per-tenant assets against the real simulator and a real Dagster instance."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest

from pipeline_assets.assets import FULL_RESYNC_TAG
from pipeline_assets.incremental_sync import sync_stream
from resources.control.stream_checks import StreamChecks
from resources.streams import STREAMS
from resources.tasklane.errors import TenantThrottled
from resources.utc import rfc3339
from resources.warehouse import SyncState, Warehouse
from tasklane_sim import SimServer
from tests.support.ground_truth import assert_equals_ground_truth, warehouse_records
from tests.support.postgres_server import fresh_database
from tests.support.rate_windows import clear_of_the_hours_end
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config
from tests.support.sync_worker import start_sync_worker

ROOT = Path(__file__).resolve().parents[2]
PAST = "2026-11-01T00:00:00Z"  # history ends well before now, outside the visibility overlap


def test_a_first_sync_equals_the_ground_truth(make_sim, instance, tasklane_for, warehouse) -> None:
    sim = make_sim(workspace_config("acme", records={"users": 40, "projects": 15, "tasks": 1250}))
    result = materialize_tenant(instance, "acme", tasklane_for(sim, "acme"), warehouse)
    assert result.success
    assert_equals_ground_truth(sim, warehouse, "acme")
    tasks = next(iter(result.asset_materializations_for_node("tasks"))).metadata
    assert tasks["dagster/row_count"].value == 1250
    assert tasks["records_upserted"].value == 1250 and tasks["pages"].value == 13
    assert tasks["counted_calls"].value == 14, "13 pages, and the listing its next sync asks about (see below)"
    assert {c.name for c in tasks["dagster/column_schema"].value.columns} >= {
        "tenant_id",
        "id",
        "estimate_hours",
        "_raw",
    }


@pytest.mark.e2e  # paced by the real clock: a mutation stream, writes visible 2 s late
def test_incremental_syncs_while_the_simulator_mutates_converge_to_the_ground_truth(
    make_sim, instance, tasklane_for, warehouse
) -> None:
    mutations = {"creates_per_second": 15, "updates_per_second": 40, "deletes_per_second": 3}
    sim = make_sim(workspace_config("acme", records={"tasks": 2000}, visibility_lag_seconds=2, mutations=mutations))
    tasklane = tasklane_for(sim, "acme")
    for _ in range(3):  # syncs race with writes, some of which become visible up to 2 s late
        assert materialize_tenant(instance, "acme", tasklane, warehouse).success
        time.sleep(0.5)
    sim.admin.set_knobs("acme", mutations={"creates_per_second": 0, "updates_per_second": 0, "deletes_per_second": 0})
    time.sleep(2.5)  # every write is visible now
    assert materialize_tenant(instance, "acme", tasklane, warehouse).success
    assert_equals_ground_truth(sim, warehouse, "acme")


def test_an_unchanged_tenant_costs_zero_counted_calls(make_sim, instance, tasklane_for, duckdb_warehouse) -> None:
    sim = make_sim(workspace_config("acme"), as_of=PAST)
    tasklane = tasklane_for(sim, "acme")
    materialize_tenant(instance, "acme", tasklane, duckdb_warehouse)
    materialize_tenant(instance, "acme", tasklane, duckdb_warehouse)  # reads the overlap once, remembers its ETag
    sim.admin.reset_counters("acme")
    assert materialize_tenant(instance, "acme", tasklane, duckdb_warehouse).success
    totals = sim.admin.counters("acme")["totals"]
    assert totals["counted"] == 0 and totals["not_modified"] == len(STREAMS)


def test_cursors_expiring_during_a_sync_are_survived(make_sim, instance, tasklane_for, warehouse) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 3000}))
    stop = threading.Event()

    def expire_cursors() -> None:
        while not stop.wait(0.05):
            sim.admin.expire_cursors("acme")

    expirer = threading.Thread(target=expire_cursors)
    expirer.start()
    try:
        assert materialize_tenant(instance, "acme", tasklane_for(sim, "acme"), warehouse).success
    finally:
        stop.set()
        expirer.join()
    assert sim.admin.counters("acme")["totals"].get("status_410", 0) > 0
    assert_equals_ground_truth(sim, warehouse, "acme")


def test_a_full_resync_from_a_run_tag_rereads_everything_by_upsert(
    make_sim, instance, tasklane_for, duckdb_warehouse
) -> None:
    sim = make_sim(workspace_config("acme"), as_of=PAST)
    tasklane = tasklane_for(sim, "acme")
    materialize_tenant(instance, "acme", tasklane, duckdb_warehouse)
    sim.admin.reset_counters("acme")
    result = materialize_tenant(instance, "acme", tasklane, duckdb_warehouse, tags={FULL_RESYNC_TAG: "true"})
    tasks = next(iter(result.asset_materializations_for_node("tasks"))).metadata
    assert tasks["full_resync"].value is True and tasks["records_upserted"].value == 430
    assert_equals_ground_truth(sim, duckdb_warehouse, "acme")


def test_a_full_resync_ignores_an_incremental_checkpoint(make_sim, instance, tasklane_for, duckdb_warehouse) -> None:
    """(A reconciliation's own checkpoint is resumed: tests/pipeline_assets/test_reconciliation.py.)"""
    sim = make_sim(workspace_config("acme"), as_of=PAST)
    tasklane = tasklane_for(sim, "acme")
    materialize_tenant(instance, "acme", tasklane, duckdb_warehouse)
    watermark = duckdb_warehouse.state("acme", "tasks").watermark
    duckdb_warehouse.write("acme", "tasks", [], SyncState(watermark, resume_from=watermark))  # as if killed
    result = materialize_tenant(instance, "acme", tasklane, duckdb_warehouse, tags={FULL_RESYNC_TAG: "true"})
    tasks = next(iter(result.asset_materializations_for_node("tasks"))).metadata
    assert tasks["records_upserted"].value == 430
    assert tasks["resumed_from_checkpoint"].value == "none"
    assert_equals_ground_truth(sim, duckdb_warehouse, "acme")


@pytest.mark.e2e  # separate Python worker processes, one killed
def test_killed_mid_sync_then_rerun_equals_the_ground_truth_and_refetches_little(
    make_sim, instance, tasklane_for, warehouse, tmp_path
) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 6000}, faults={"slow_rate": 1.0, "slow_seconds": 0.05}))
    tasklane = tasklane_for(sim, "acme")
    process = start_sync_worker(sim, tmp_path, warehouse.url, "acme", pages_per_checkpoint=5)
    while sim.admin.counters("acme")["endpoints"].get("tasks.list", {}).get("requests", 0) < 23:
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = warehouse.query("SELECT count(*) FROM tasks WHERE tenant_id = 'acme'")[0][0]
    assert 0 < committed < 6000
    sim.admin.reset_counters("acme")
    rerun = materialize_tenant(instance, "acme", tasklane, warehouse)
    assert rerun.success
    resumed = next(iter(rerun.asset_materializations_for_node("tasks"))).metadata["resumed_from_checkpoint"]
    assert resumed.value != "none", "the re-run says it resumed from the killed run's checkpoint"
    assert_equals_ground_truth(sim, warehouse, "acme")
    refetched = sim.admin.counters("acme")["endpoints"]["tasks.list"]["requests"]
    needed = -(-(6000 - committed) // 100)
    assert refetched <= needed + 5, (
        f"{refetched} pages for {6000 - committed} missing records: more than one checkpoint again"
    )


@pytest.mark.e2e  # separate Python worker processes
def test_four_tenants_materialized_in_parallel_into_the_duckdb_default_all_succeed(
    make_sim, tasklane_for, duckdb_warehouse, tmp_path
) -> None:
    tenants = ("acme", "globex", "initech", "umbrella")
    sim = make_sim(*(workspace_config(t, records={"tasks": 800}) for t in tenants))
    tasklane_for(sim, *tenants)
    processes = [start_sync_worker(sim, tmp_path, duckdb_warehouse.url, t, pages_per_checkpoint=2) for t in tenants]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    for tenant in tenants:
        assert_equals_ground_truth(sim, duckdb_warehouse, tenant)


def test_a_throttled_sync_checkpoints_before_it_stops(make_sim, tasklane_for, duckdb_warehouse) -> None:
    clear_of_the_hours_end()
    sim = make_sim(workspace_config("acme", records={"tasks": 1000}))
    client = tasklane_for(sim, "acme", budget_per_hour=4).client("acme")  # 4 calls, then a far reset
    with pytest.raises(TenantThrottled) as throttled:
        sync_stream(client, duckdb_warehouse, StreamChecks(client.meter.store), "tasks", pages_per_checkpoint=50)
    assert throttled.value.resume_at > time.time() + 60
    kept = duckdb_warehouse.query("SELECT count(*) FROM tasks WHERE tenant_id = 'acme'")[0][0]
    assert kept == 400, "the four pages fetched before the throttle were committed"
    state = duckdb_warehouse.state("acme", "tasks")
    assert state.watermark is None and state.resume_from is not None
    sim.admin.reset_counters("acme")
    # The operator raises the budget in tenants.yaml; the next run (same control store) resumes.
    resumed = tasklane_for(sim, "acme", budget_per_hour=10_000).client("acme")
    sync_stream(resumed, duckdb_warehouse, StreamChecks(resumed.meter.store), "tasks")
    assert_equals_ground_truth_for(sim, duckdb_warehouse, "tasks")
    # Only the rest was fetched, and the listing its next sync asks about (one call).
    assert sim.admin.counters("acme")["endpoints"]["tasks.list"]["requests"] <= 6 + 1 + 1


def assert_equals_ground_truth_for(sim: SimServer, warehouse, stream: str) -> None:
    assert warehouse_records(warehouse, "acme", stream) == sim.admin.truth("acme", stream)


def test_a_watermark_never_passes_the_moment_its_sync_began(make_sim, tasklane_for, duckdb_warehouse) -> None:
    """A write the listing passed before it became visible is younger than the sync's start minus
    the overlap; it is read again only if the watermark stopped at that start: by the listing from
    the watermark's overlap the sync asks at its end (its first page, for its successor's ETag), and
    by every later sync until that listing changes. (The vendor's clock runs an hour ahead here, as a listing that
    followed new writes for an hour would see.)"""
    ahead = datetime.now(UTC) + timedelta(hours=1)
    sim = make_sim(workspace_config("acme"), as_of=ahead.isoformat())
    client = tasklane_for(sim, "acme").client("acme")
    began = datetime.now(UTC).replace(microsecond=0)  # the watermark keeps milliseconds
    report = sync_stream(client, duckdb_warehouse, StreamChecks(client.meter.store), "tasks")
    assert report.records == 430
    watermark = datetime.fromisoformat(duckdb_warehouse.state("acme", "tasks").watermark)
    assert began <= watermark <= datetime.now(UTC), "the watermark stops at the sync's start"
    newer = sum(
        record["updated_at"] >= rfc3339(watermark - timedelta(seconds=60))
        for record in sim.admin.truth("acme", "tasks")
    )
    assert report.calls["counted"] == 5 + 1 and newer > 0, "5 pages, then the listing from the overlap"
    assert warehouse_records(duckdb_warehouse, "acme", "tasks") == sim.admin.truth("acme", "tasks")
    checks = StreamChecks(client.meter.store)
    listing = checks.get("acme", "tasks").listing
    assert listing is not None and listing.since == rfc3339(watermark - timedelta(seconds=60))
    sim.admin.reset_counters("acme")
    again = sync_stream(client, duckdb_warehouse, checks, "tasks")
    assert again.calls["not_modified"] == 1 and again.watermark_after == again.watermark_before


def test_a_sync_whose_write_failed_leaves_no_etag_and_the_next_sync_lists_what_it_lost(
    make_sim, tasklane_for, postgres_url
) -> None:
    """The ETag of a one-page listing is recorded only once its page is committed: a sync that failed
    to write must not leave the next sync (or a probe) a 304 for rows the warehouse never got."""
    sim = make_sim(workspace_config("acme", records={"tasks": 30}))
    api = tasklane_for(sim, "acme")
    client, checks = api.client("acme"), api.state.stream_checks
    warehouse = Warehouse(url=fresh_database(postgres_url, "warehouse"))
    sync_stream(client, warehouse, checks, "tasks")
    sim.admin.mutate("acme", creates=3, resource="tasks")
    with psycopg2.connect(warehouse.url) as conn, conn.cursor() as cursor:  # a DBA's constraint refuses new rows
        cursor.execute("ALTER TABLE tasks ADD CONSTRAINT no_new_rows CHECK (false) NOT VALID")
    with pytest.raises(psycopg2.Error):
        sync_stream(client, warehouse, checks, "tasks")
    assert checks.get("acme", "tasks").listing is None, "no listing to ask about: the failed sync wrote nothing"
    with psycopg2.connect(warehouse.url) as conn, conn.cursor() as cursor:
        cursor.execute("ALTER TABLE tasks DROP CONSTRAINT no_new_rows")
    report = sync_stream(client, warehouse, checks, "tasks")
    assert report.records >= 3 and report.calls["not_modified"] == 0
    assert warehouse_records(warehouse, "acme", "tasks") == sim.admin.truth("acme", "tasks")
