"""Deletes whose tombstones Tasklane dropped are found by a reconciliation, whoever launches the sync."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from pipeline_assets.incremental_sync import reconcile_reason, sync_stream
from resources.control.stream_checks import StreamChecks
from resources.streams import STREAMS
from resources.tasklane.errors import TenantThrottled
from resources.utc import rfc3339
from resources.warehouse import SyncState, Warehouse
from tasklane_sim import SimServer
from tests.support.ground_truth import assert_live_rows_equal_ground_truth
from tests.support.rate_windows import clear_of_the_hours_end
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
WEEK = timedelta(days=7)


def days_ago(days: float) -> str:
    return rfc3339(NOW - timedelta(days=days))


@pytest.mark.parametrize(
    ("state", "requested", "every", "reason"),
    [
        (SyncState(), False, WEEK, None),
        (
            SyncState("2026-11-29T00:00:00Z", completed_sync_at=days_ago(1), reconciled_at=days_ago(1)),
            False,
            WEEK,
            None,
        ),
        (
            SyncState("2026-11-29T00:00:00Z", completed_sync_at=days_ago(1), reconciled_at=days_ago(1)),
            True,
            WEEK,
            "requested",
        ),
        (
            SyncState("2026-10-01T00:00:00Z", completed_sync_at=days_ago(26), reconciled_at=days_ago(1)),
            False,
            WEEK,
            None,
        ),
        (
            SyncState("2026-10-01T00:00:00Z", completed_sync_at=days_ago(28), reconciled_at=days_ago(1)),
            False,
            WEEK,
            "27 days",
        ),
        (SyncState("2026-10-01T00:00:00Z", completed_sync_at=None), False, WEEK, "unknown"),
        (
            SyncState("2026-11-29T00:00:00Z", completed_sync_at=days_ago(1), reconciled_at=days_ago(8)),
            False,
            WEEK,
            "safety-net",
        ),
        (
            SyncState("2026-11-29T00:00:00Z", completed_sync_at=days_ago(1), reconciled_at=days_ago(8)),
            False,
            None,
            None,
        ),
        (
            SyncState("2026-11-29T00:00:00Z", resume_from="2026-11-28T00:00:00Z", reconciling_since=days_ago(2)),
            False,
            WEEK,
            "resumes",
        ),
    ],
    ids=[
        "first-sync",
        "synced-yesterday",
        "full-resync-asked",
        "26-days-away",
        "28-days-away",
        "completion-unknown",
        "cadence-passed",
        "cadence-off",
        "interrupted-reconciliation",
    ],
)
def test_a_sync_reconciles_exactly_when_tombstones_may_have_been_dropped_or_the_cadence_is_due(
    state: SyncState, requested: bool, every: timedelta | None, reason: str | None
) -> None:
    found = reconcile_reason(state, NOW, requested=requested, every=every)
    assert (found is None) if reason is None else (reason in (found or "")), found


def delete_and_purge(sim: SimServer, tenant: str, count: int) -> set[str]:
    """Delete `count` tasks upstream and wait until Tasklane has dropped their tombstones too."""
    before = {r["id"] for r in sim.admin.truth(tenant, "tasks") if not r["deleted_at"]}
    sim.admin.set_knobs(tenant, tombstone_retention_days=1 / 86_400)  # one second
    sim.admin.mutate(tenant, deletes=count, resource="tasks")
    sim.admin.settle(tenant)
    time.sleep(1.1)
    sim.admin.purge_tombstones(tenant)
    assert not any(r["deleted_at"] for r in sim.admin.truth(tenant, "tasks")), "Tasklane dropped every tombstone"
    after = {r["id"] for r in sim.admin.truth(tenant, "tasks")}
    assert len(before - after) == count
    return before - after


def last_synced(warehouse: Warehouse, tenant: str, days: float) -> None:
    """Make every stream's last complete sync `days` old, as if the tenant had been away that long."""
    for stream in STREAMS:
        state = warehouse.state(tenant, stream)
        moment = rfc3339(datetime.now(UTC) - timedelta(days=days))
        warehouse.write(tenant, stream, [], SyncState(state.watermark, completed_sync_at=moment, reconciled_at=moment))


def live_ids(warehouse: Warehouse, tenant: str, ids: set[str]) -> set[str]:
    rows = warehouse.query("SELECT id FROM tasks WHERE tenant_id = ? AND _deleted_at IS NULL", (tenant,))
    return {r for (r,) in rows} & ids


@pytest.mark.parametrize(
    ("away_days", "reconciles"), [(40, True), (1, False)], ids=["away-40-days", "synced-yesterday"]
)
def test_a_tenant_away_longer_than_the_tombstone_retention_soft_deletes_what_was_deleted_meanwhile(
    make_sim, instance, tasklane_for, warehouse, away_days: int, reconciles: bool
) -> None:
    sim = make_sim(workspace_config("acme"), workspace_config("globex"))
    tasklane = tasklane_for(sim, "acme", "globex")
    for tenant in ("acme", "globex"):
        assert materialize_tenant(instance, tenant, tasklane, warehouse).success
    deleted = delete_and_purge(sim, "acme", 25)
    last_synced(warehouse, "acme", away_days)

    result = materialize_tenant(instance, "acme", tasklane, warehouse)  # a plain run: no tag, no config

    tasks = next(iter(result.asset_materializations_for_node("tasks"))).metadata
    if reconciles:
        assert "more than 27 days old" in tasks["reconciled_because"].value
        assert tasks["soft_deleted_missing_upstream"].value == 25
        assert live_ids(warehouse, "acme", deleted) == set()
        for stream in STREAMS:
            assert_live_rows_equal_ground_truth(sim, warehouse, "acme", stream)
        inferred = warehouse.query(
            "SELECT count(*) FROM tasks WHERE tenant_id = 'acme' AND _deleted_at IS NOT NULL AND deleted_at IS NULL"
        )[0][0]
        assert inferred == 25, "a delete found by reconciliation has _deleted_at but no vendor deleted_at"
    else:  # the gap a reconciliation closes: an incremental sync cannot see a purged tombstone
        assert tasks["reconciled_because"].value == "not reconciled"
        assert live_ids(warehouse, "acme", deleted) == deleted
    assert warehouse.query("SELECT count(*) FROM tasks WHERE tenant_id = 'acme'")[0][0] >= 430, "rows are kept"
    for stream in STREAMS:  # the other tenant is untouched
        assert_live_rows_equal_ground_truth(sim, warehouse, "globex", stream)


def test_an_interrupted_reconciliation_deletes_nothing_and_the_next_sync_of_any_launcher_finishes_it(
    make_sim, instance, tasklane_for, warehouse
) -> None:
    clear_of_the_hours_end()
    sim = make_sim(workspace_config("acme"))
    assert materialize_tenant(instance, "acme", tasklane_for(sim, "acme"), warehouse).success
    deleted = delete_and_purge(sim, "acme", 25)
    last_synced(warehouse, "acme", 40)
    live_before = warehouse.query("SELECT count(*) FROM tasks WHERE tenant_id = 'acme' AND _deleted_at IS NULL")

    spent = sim.admin.counters("acme")["totals"]["counted"]
    throttled = tasklane_for(sim, "acme", budget_per_hour=spent + 3).client("acme")  # three pages, then a far reset
    with pytest.raises(TenantThrottled):
        sync_stream(throttled, warehouse, StreamChecks(throttled.meter.store), "tasks", pages_per_checkpoint=1)
    state = warehouse.state("acme", "tasks")
    assert state.reconciling_since is not None and state.resume_from is not None
    assert (
        warehouse.query("SELECT count(*) FROM tasks WHERE tenant_id = 'acme' AND _deleted_at IS NULL") == live_before
    ), "nothing is soft-deleted before the reconciliation has listed every id"

    sim.admin.reset_counters("acme")
    result = materialize_tenant(instance, "acme", tasklane_for(sim, "acme", budget_per_hour=10_000), warehouse)
    tasks = next(iter(result.asset_materializations_for_node("tasks"))).metadata
    assert "resumes the reconciliation" in tasks["reconciled_because"].value
    assert tasks["resumed_from_checkpoint"].value != "none"
    assert tasks["soft_deleted_missing_upstream"].value == 25
    assert live_ids(warehouse, "acme", deleted) == set()
    assert_live_rows_equal_ground_truth(sim, warehouse, "acme", "tasks")
    assert sim.admin.counters("acme")["endpoints"]["tasks.list"]["requests"] <= 3, "only the rest was listed"
    assert warehouse.state("acme", "tasks").reconciling_since is None


def test_a_reconciliation_leaves_alone_records_written_while_it_lists(
    make_sim, instance, tasklane_for, warehouse
) -> None:
    sim = make_sim(workspace_config("acme", mutations={"creates_per_second": 20, "updates_per_second": 20}))
    tasklane = tasklane_for(sim, "acme")
    assert materialize_tenant(instance, "acme", tasklane, warehouse).success
    last_synced(warehouse, "acme", 40)
    result = materialize_tenant(instance, "acme", tasklane, warehouse)
    tasks = next(iter(result.asset_materializations_for_node("tasks"))).metadata
    assert "more than 27 days old" in tasks["reconciled_because"].value
    assert tasks["soft_deleted_missing_upstream"].value == 0, "nothing was deleted upstream"


@pytest.mark.parametrize(("every_days", "reconciles"), [(7, True), (0, False)], ids=["weekly", "safety-net-off"])
def test_the_safety_net_cadence_comes_from_the_tenant_entry(
    make_sim, instance, tasklane_for, duckdb_warehouse, every_days: int, reconciles: bool
) -> None:
    sim = make_sim(workspace_config("acme"))
    tasklane = tasklane_for(sim, "acme", reconcile_every_days=every_days)
    assert materialize_tenant(instance, "acme", tasklane, duckdb_warehouse).success
    now = datetime.now(UTC)
    for stream in STREAMS:  # synced yesterday, reconciled eight days ago
        state = duckdb_warehouse.state("acme", stream)
        yesterday, eight_days_ago = rfc3339(now - timedelta(days=1)), rfc3339(now - timedelta(days=8))
        duckdb_warehouse.write(
            "acme", stream, [], SyncState(state.watermark, completed_sync_at=yesterday, reconciled_at=eight_days_ago)
        )
    result = materialize_tenant(instance, "acme", tasklane, duckdb_warehouse)
    tasks = next(iter(result.asset_materializations_for_node("tasks"))).metadata
    assert ("safety-net cadence" in tasks["reconciled_because"].value) is reconciles
