"""The sync's logic in milliseconds: watermark and overlap, conditional listings, checkpoints and
restarts, tombstones and reconciliation, through `sync_stream` itself with a replay of recorded
listings as its page source (tests/support/replay.py), into a real DuckDB warehouse and a real
control store. The wire (HTTP, the budget, faults) is the simulator's tests' (test_sync.py and
tests/resources/)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline_assets.incremental_sync import BatchWrites, sync_stream
from resources.control.store import ControlStore
from resources.control.stream_checks import StreamChecks
from resources.streams import STREAMS, minus_overlap
from resources.tasklane.errors import TasklaneFailure, TenantThrottled
from resources.warehouse import Sweep, SyncState, Warehouse, Written
from tests.support.replay import RecordedPages, moment, recorded_acme

TENANT = "acme"


@pytest.fixture
def vendor() -> RecordedPages:
    return RecordedPages.of(TENANT, recorded_acme())


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(url=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture
def checks(tmp_path: Path) -> Iterator[StreamChecks]:
    store = ControlStore(str(tmp_path / "control.sqlite3"))
    yield StreamChecks(store)
    store.dispose()


def held(warehouse: Warehouse, stream: str, *, live_only: bool = False) -> list[dict[str, Any]]:
    where = " AND _deleted_at IS NULL" if live_only else ""
    rows = warehouse.query(f"SELECT _raw FROM {stream} WHERE tenant_id = ?{where} ORDER BY id", (TENANT,))
    return [json.loads(raw) if isinstance(raw, str) else raw for (raw,) in rows]


def soft_deleted(warehouse: Warehouse, stream: str) -> set[str]:
    rows = warehouse.query(f"SELECT id FROM {stream} WHERE tenant_id = ? AND _deleted_at IS NOT NULL", (TENANT,))
    return {row[0] for row in rows}


def test_a_first_sync_writes_every_record_as_listed(vendor, warehouse, checks) -> None:
    for stream in STREAMS:
        report = sync_stream(vendor, warehouse, checks, stream)
        assert held(warehouse, stream) == vendor.truth(stream)
        assert report.records == len(vendor.truth(stream)) and report.reconcile_reason is None
    tasks = [listed for listed in vendor.listed if listed.stream == "tasks"]
    assert tasks[0].since is None and tasks[0].pages == 5, "430 tasks: five pages from the start"
    watermark = warehouse.state(TENANT, "tasks").watermark
    assert watermark == max(r["updated_at"] for r in vendor.truth("tasks"))
    assert soft_deleted(warehouse, "tasks") == {r["id"] for r in vendor.truth("tasks") if r["deleted_at"]}


def test_an_incremental_sync_lists_from_the_watermark_minus_the_overlap(vendor, warehouse, checks) -> None:
    sync_stream(vendor, warehouse, checks, "tasks")
    watermark = warehouse.state(TENANT, "tasks").watermark
    overlap = [r for r in vendor.truth("tasks") if r["updated_at"] >= minus_overlap(watermark)]
    vendor.write("tasks", "tsk_new_one", moment(seconds_ago=5), title="new")
    vendor.write("tasks", vendor.truth("tasks")[3]["id"], moment(seconds_ago=4), status="done")
    vendor.listed.clear()
    report = sync_stream(vendor, warehouse, checks, "tasks")
    assert vendor.listed[0].since == minus_overlap(watermark)
    assert report.records == 2 + len(overlap) and report.pages == 1, "what changed, and the overlap again"
    assert held(warehouse, "tasks") == vendor.truth("tasks")


def test_a_successors_listing_longer_than_a_page_is_asked_for_its_first_page_only(vendor, warehouse, checks) -> None:
    """A sync ends by asking the listing its successor will make, for an ETag. 250 records changed
    within the overlap make that listing three pages long, which has no ETag to keep: its first page
    is read, and the rest is left to the next sync instead of being fetched twice."""
    sync_stream(vendor, warehouse, checks, "tasks")
    for n in range(250):
        vendor.write("tasks", f"tsk_burst_{n:03d}", moment(seconds_ago=5), title="burst")
    vendor.listed.clear()
    report = sync_stream(vendor, warehouse, checks, "tasks")
    listing, successor = vendor.listed
    assert listing.pages == 3 and report.calls["counted"] == 3 + 1
    assert successor.since == minus_overlap(warehouse.state(TENANT, "tasks").watermark) and successor.pages == 1
    assert checks.get(TENANT, "tasks").listing is None, "no ETag to ask about: the next check runs a sync"
    vendor.listed.clear()
    sync_stream(vendor, warehouse, checks, "tasks")
    assert vendor.listed[0].since == successor.since and vendor.listed[0].pages == 3
    assert held(warehouse, "tasks") == vendor.truth("tasks")


def test_a_write_visible_late_but_within_the_overlap_is_read_by_the_next_sync(vendor, warehouse, checks) -> None:
    sync_stream(vendor, warehouse, checks, "users")
    watermark = warehouse.state(TENANT, "users").watermark
    late = vendor.write("users", "usr_late", moment(), name="late")
    late["updated_at"] = minus_overlap(watermark).replace(".000Z", ".500Z")  # written 59.5 s before the watermark
    sync_stream(vendor, warehouse, checks, "users")
    assert "usr_late" in {r["id"] for r in held(warehouse, "users")}


def test_an_unchanged_stream_costs_one_not_modified_answer(vendor, warehouse, checks) -> None:
    sync_stream(vendor, warehouse, checks, "users")
    before = warehouse.state(TENANT, "users")
    vendor.listed.clear()
    report = sync_stream(vendor, warehouse, checks, "users")
    assert [listed.not_modified for listed in vendor.listed] == [True]
    assert report.calls["not_modified"] == 1 and report.calls["counted"] == 0 and report.pages == 0
    assert warehouse.state(TENANT, "users").watermark == before.watermark


@pytest.mark.parametrize(
    "stop",
    [
        TenantThrottled(TENANT, 0.0, "its rate window is spent", vendor=True),
        TasklaneFailure(TENANT, "vendor_outage", "Tasklane kept failing", retryable=True),
    ],
    ids=["throttled", "vendor-outage"],
)
def test_a_sync_stopped_midway_keeps_its_checkpoint_and_the_next_resumes_from_it(
    vendor, warehouse, checks, stop: Exception
) -> None:
    vendor.stop_after_pages, vendor.stop_with = 3, stop
    with pytest.raises(type(stop)):
        sync_stream(vendor, warehouse, checks, "tasks", pages_per_checkpoint=2)
    stopped = warehouse.state(TENANT, "tasks")
    assert stopped.resume_from is not None and stopped.watermark is None
    assert len(held(warehouse, "tasks")) == 300, "the three pages fetched were written before it stopped"
    vendor.listed.clear()
    sync_stream(vendor, warehouse, checks, "tasks", pages_per_checkpoint=2)
    assert vendor.listed[0].since == minus_overlap(stopped.resume_from)
    assert vendor.listed[0].pages <= 3, "it did not list from the start again"
    assert held(warehouse, "tasks") == vendor.truth("tasks")


def test_a_tombstone_soft_deletes_its_row_and_keeps_the_record(vendor, warehouse, checks) -> None:
    sync_stream(vendor, warehouse, checks, "projects")
    doomed = next(r["id"] for r in vendor.truth("projects") if not r["deleted_at"])
    vendor.delete("projects", doomed, moment(seconds_ago=2))
    sync_stream(vendor, warehouse, checks, "projects")
    assert doomed in soft_deleted(warehouse, "projects")
    assert held(warehouse, "projects") == vendor.truth("projects")


def test_a_reconciliation_finds_the_deletes_whose_tombstones_the_vendor_dropped(vendor, warehouse, checks) -> None:
    sync_stream(vendor, warehouse, checks, "tasks")
    live = [r["id"] for r in vendor.truth("tasks") if not r["deleted_at"]][:3]
    for record_id in live:
        vendor.delete("tasks", record_id, moment(seconds_ago=10))
    vendor.forget_tombstones("tasks")  # 30 days later, Tasklane lists neither the records nor their tombstones
    report = sync_stream(vendor, warehouse, checks, "tasks", now=moment() + timedelta(days=28))
    assert report.reconcile_reason and "27 days" in report.reconcile_reason
    assert report.soft_deleted == 3 and set(live) <= soft_deleted(warehouse, "tasks")
    assert held(warehouse, "tasks", live_only=True) == [r for r in vendor.truth("tasks") if not r["deleted_at"]]


def test_an_interrupted_reconciliation_deletes_nothing_and_the_next_sync_finishes_it(vendor, warehouse, checks) -> None:
    sync_stream(vendor, warehouse, checks, "tasks")
    vanished = [r["id"] for r in vendor.truth("tasks") if not r["deleted_at"]][:2]
    for record_id in vanished:
        del vendor.records["tasks"][record_id]
    vendor.stop_after_pages, vendor.stop_with = 2, TenantThrottled(TENANT, 0.0, "spent", vendor=False)
    with pytest.raises(TenantThrottled):
        sync_stream(vendor, warehouse, checks, "tasks", full_resync=True, pages_per_checkpoint=2)
    assert not set(vanished) & soft_deleted(warehouse, "tasks"), "nothing deleted before the listing ends"
    assert warehouse.state(TENANT, "tasks").reconciling_since is not None
    report = sync_stream(vendor, warehouse, checks, "tasks", pages_per_checkpoint=2)
    assert report.reconcile_reason and "resumes the reconciliation" in report.reconcile_reason
    assert set(vanished) <= soft_deleted(warehouse, "tasks")
    assert warehouse.state(TENANT, "tasks").reconciling_since is None


class FailingWrites:
    """The warehouse's writer, failing on the `fail_at`-th batch as a full disk or a lost connection would."""

    def __init__(self, writes: BatchWrites, fail_at: int) -> None:
        self.writes, self.fail_at, self.count = writes, fail_at, 0

    def write(
        self, tenant: str, stream: str, pages: Sequence[str], state: SyncState, sweep: Sweep | None = None
    ) -> Written:
        self.count += 1
        if self.count == self.fail_at:
            raise OSError("the disk is full")
        return self.writes.write(tenant, stream, pages, state, sweep)

    def begin_reconciliation(self, tenant: str, stream: str, state: SyncState) -> None:
        self.writes.begin_reconciliation(tenant, stream, state)


class FailingSink:
    """A `BatchSink`: the real warehouse, whose `fail_at`-th write fails."""

    def __init__(self, warehouse: Warehouse, fail_at: int) -> None:
        self.warehouse, self.fail_at = warehouse, fail_at

    def state(self, tenant: str, stream: str) -> SyncState:
        return self.warehouse.state(tenant, stream)

    @contextmanager
    def writer(self) -> Iterator[FailingWrites]:
        with self.warehouse.writer() as writes:
            yield FailingWrites(writes, self.fail_at)


def test_a_failed_write_loses_only_its_batch_and_the_next_sync_converges(vendor, warehouse, checks) -> None:
    with pytest.raises(OSError, match="disk is full"):
        sync_stream(vendor, FailingSink(warehouse, fail_at=2), checks, "tasks", pages_per_checkpoint=2)
    assert len(held(warehouse, "tasks")) == 100, "the first batch (one page) committed, the second not"
    assert warehouse.state(TENANT, "tasks").watermark is None
    sync_stream(vendor, warehouse, checks, "tasks")
    assert held(warehouse, "tasks") == vendor.truth("tasks")
    assert checks.get(TENANT, "tasks").synced_at is not None
