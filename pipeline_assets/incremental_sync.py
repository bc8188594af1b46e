"""One tenant's incremental sync of one stream: watermark, overlap, checkpoints, tombstones."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from resources.streams import VISIBILITY_OVERLAP
from resources.tasklane.client import TenantClient
from resources.warehouse import SyncState, Warehouse
from resources.warehouse.schema import Drift


def rfc3339(moment: datetime) -> str:
    """The contract's timestamp form: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def minus_overlap(stamp: str) -> str:
    return rfc3339(datetime.fromisoformat(stamp) - VISIBILITY_OVERLAP)


@dataclass
class SyncReport:
    stream: str
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


def sync_stream(
    client: TenantClient,
    warehouse: Warehouse,
    stream: str,
    *,
    full_resync: bool = False,
    pages_per_checkpoint: int = 10,
) -> SyncReport:
    """Bring the warehouse in line with Tasklane for one tenant and stream.

    Rows and the position they reach commit together every `pages_per_checkpoint` pages; a run
    that dies or is throttled resumes from its last checkpoint (minus the visibility overlap)."""
    tenant = client.tenant.id
    state = warehouse.state(tenant, stream)
    # A full re-sync resumes only its own checkpoint: an incremental run's would skip the records
    # before it. An incremental run may resume either kind.
    resume_from = state.resume_from if state.resume_full or not full_resync else None
    report = SyncReport(stream, state.watermark, resumed_from=resume_from, full_resync=full_resync)
    start = resume_from if full_resync else (resume_from or state.watermark)
    since = minus_overlap(start) if start else None
    calls_before = Counter(client.stats)
    pages: list[str] = []
    reached: str | None = resume_from  # what a killed run already committed counts as reached
    pending: Future[None] | None = None

    def write(batch: list[str], position: SyncState) -> None:
        report.drift.extend(batches.write(tenant, stream, batch, position).drift)

    def position(final: bool) -> SyncState:
        if final:
            return SyncState(watermark=max(filter(None, (state.watermark, reached)), default=None))
        return SyncState(state.watermark, reached, resume_full=full_resync)

    # Checkpoints are written by one background thread while the next pages are fetched: the
    # database shapes rows outside the GIL, so fetching and writing overlap. Waiting for the
    # previous write before handing over the next keeps commits in order and stops on a failure.
    with (
        warehouse.writer() as batches,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dripfeed-{tenant}-{stream}") as writer,
    ):
        try:
            for page in client.list_pages(stream, since):
                if page.not_modified:
                    break
                pages.append(page.body)
                report.pages += 1
                report.records += len(page.records)
                report.tombstones += sum(record.get("deleted_at") is not None for record in page.records)
                if page.records:
                    reached = max(reached or "", page.records[-1]["updated_at"])
                if report.pages % pages_per_checkpoint == 0:
                    if pending:
                        pending.result()
                    pending, pages = writer.submit(write, pages, position(final=False)), []
                    report.checkpoints += 1
        except BaseException:
            if pending:
                pending.result()
            if pages:  # keep what was fetched: a retry starts from here, not from the beginning
                write(pages, position(final=False))
                report.checkpoints += 1
            raise
        if pending:
            pending.result()
        write(pages, position(final=True))
    report.watermark_after = warehouse.state(tenant, stream).watermark
    report.calls = Counter(client.stats) - calls_before
    return report
