"""One tenant's incremental sync of one resource: watermark, overlap, checkpoints, tombstones."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from resources.tasklane_client import TenantClient
from resources.warehouse import SyncState, Warehouse
from resources.warehouse_schema import Drift, shape_row

VISIBILITY_OVERLAP = timedelta(seconds=60)  # the contract: writes become visible up to 60 s late


def minus_overlap(stamp: str) -> str:
    moved = datetime.fromisoformat(stamp) - VISIBILITY_OVERLAP
    return moved.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SyncReport:
    resource: str
    watermark_before: str | None
    watermark_after: str | None = None
    resumed_from: str | None = None
    full_resync: bool = False
    pages: int = 0
    records: int = 0
    tombstones: int = 0
    checkpoints: int = 0
    drift: list[Drift] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)


def sync_resource(
    client: TenantClient,
    warehouse: Warehouse,
    resource: str,
    *,
    full_resync: bool = False,
    pages_per_checkpoint: int = 10,
) -> SyncReport:
    """Bring the warehouse in line with Tasklane for one tenant and resource.

    Rows and the position they reach commit together every `pages_per_checkpoint` pages; a run
    that dies or is throttled resumes from its last checkpoint (minus the visibility overlap)."""
    tenant = client.tenant.id
    state = warehouse.state(tenant, resource)
    report = SyncReport(resource, state.watermark, resumed_from=state.resume_from, full_resync=full_resync)
    start = state.resume_from if full_resync else (state.resume_from or state.watermark)
    since = minus_overlap(start) if start else None
    calls_before = Counter(client.stats)
    batch: list[dict[str, Any]] = []
    drift: list[Drift] = []
    reached: str | None = state.resume_from  # what a killed run already committed counts as reached

    def commit(final: bool) -> None:
        nonlocal batch, drift
        watermark = max(filter(None, (state.watermark, reached)), default=None)
        position = SyncState(watermark=watermark, resume_from=None) if final else SyncState(state.watermark, reached)
        warehouse.write(tenant, resource, batch, position, drift)
        report.checkpoints += 0 if final else 1
        report.drift.extend(drift)
        batch, drift = [], []

    try:
        for page in client.list_pages(resource, since):
            if page.not_modified:
                break
            synced_at = datetime.now(UTC).isoformat()
            for record in page.records:
                row, found = shape_row(resource, record, tenant, synced_at)
                batch.append(row)
                drift.extend(found)
                report.tombstones += record.get("deleted_at") is not None
            report.pages += 1
            report.records += len(page.records)
            if page.records:
                reached = max(reached or "", page.records[-1]["updated_at"])
            if report.pages % pages_per_checkpoint == 0:
                commit(final=False)
    except BaseException:
        if batch:  # keep what was fetched: a retry starts from here, not from the beginning
            commit(final=False)
        raise
    commit(final=True)
    report.watermark_after = warehouse.state(tenant, resource).watermark
    report.calls = Counter(client.stats) - calls_before
    return report
