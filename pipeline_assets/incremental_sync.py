"""One tenant's sync of one stream: watermark, overlap, checkpoints, tombstones, reconciliation.

A sync lists what changed since the watermark. A *reconciliation* lists every record instead and
soft-deletes the rows Tasklane no longer has: the only way to learn of deletes whose tombstones the
vendor dropped (after 30 days) before dripfeed saw them. A sync reconciles when asked to (a full
re-sync), when the tenant's last complete sync is nearly as old as the tombstones' retention, and
on the tenant's safety-net cadence; whoever launched it.

The sync reads pages from a `PageSource` and writes batches to a `BatchSink`: a tenant's Tasklane
client and the warehouse in the product, a replay of recorded listings (tests/support/replay.py)
where a test wants the sync's logic without the wire.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from resources.control.stream_checks import Listing, StreamChecks
from resources.streams import TOMBSTONE_RETENTION, minus_overlap
from resources.tasklane import Page
from resources.tasklane.errors import TasklaneFailure, TenantThrottled
from resources.tenants import Tenant
from resources.utc import rfc3339
from resources.warehouse import Sweep, SyncState, Written
from resources.warehouse.schema import Drift

# A last complete sync older than the retention minus this margin reconciles: the margin covers a
# sync that is deferred or fails for a few days once it is due.
RECONCILE_MARGIN = timedelta(days=3)
DEFAULT_RECONCILE_EVERY = timedelta(days=7)
# A listing that reaches back further than this before the watermark's overlap is not kept for the
# next sync to ask: Tasklane drops a tombstone 30 days after it was written, which changes the
# answer of a listing that reaches back to it though nothing new was written (a run for nothing).
LISTING_KEPT = timedelta(days=7)


class PageSource(Protocol):
    """Where a sync's pages come from, for one tenant (`TenantClient` is one)."""

    tenant: Tenant

    @property
    def stats(self) -> Counter:
        """The calls made so far, by kind (counted, not_modified, ...)."""

    def list_pages(
        self, stream: str, updated_since: str | None, *, etag: str | None = None
    ) -> Generator[Page, None, None]:
        """The stream's records with `updated_at >= updated_since` in pages, at least one (an empty
        listing is one empty page); with `etag`, one `not_modified` page when the listing is
        unchanged (see resources/tasklane/listing.py)."""


class BatchWrites(Protocol):
    def write(
        self, tenant: str, stream: str, pages: Sequence[str], state: SyncState, sweep: Sweep | None = None
    ) -> Written: ...

    def begin_reconciliation(self, tenant: str, stream: str, state: SyncState) -> None: ...


class BatchSink(Protocol):
    """Where a sync's batches go, each with the position it reaches (`Warehouse` is one)."""

    def state(self, tenant: str, stream: str) -> SyncState: ...

    def writer(self) -> AbstractContextManager[BatchWrites]: ...


@dataclass
class SyncReport:
    stream: str
    watermark_before: str | None
    watermark_after: str | None = None
    resumed_from: str | None = None
    reconcile_reason: str | None = None  # None: an incremental sync
    pages: int = 0
    records: int = 0
    tombstones: int = 0
    soft_deleted: int = 0  # rows a reconciliation marked deleted because Tasklane no longer lists them
    checkpoints: int = 0
    drift: list[Drift] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)

    @property
    def full_resync(self) -> bool:
        """A reconciliation lists everything again: a full re-sync, whatever asked for it."""
        return self.reconcile_reason is not None


def reconcile_due(
    last_complete: datetime | None, reconciled_at: datetime | None, now: datetime, every: timedelta | None
) -> str | None:
    """Why a stream last known complete at `last_complete` (a sync that completed, or a probe that
    found it unchanged) must now list every id, or None. Runs and probes decide alike."""
    due = TOMBSTONE_RETENTION - RECONCILE_MARGIN
    if last_complete is None or now - last_complete > due:
        completed = rfc3339(last_complete) if last_complete else "unknown"
        return (
            f"its last complete sync ({completed}) is more than {due.days} days old, and Tasklane "
            f"drops tombstones after {TOMBSTONE_RETENTION.days} days"
        )
    if every and reconciled_at and now - reconciled_at >= every:
        return f"its safety-net cadence ({every.days} days) has passed since {rfc3339(reconciled_at)}"
    return None


def reconcile_reason(
    state: SyncState,
    now: datetime,
    *,
    requested: bool,
    every: timedelta | None,
    checked_at: datetime | None = None,
) -> str | None:
    """Why this sync must be a reconciliation, or None for an incremental sync. `checked_at`: the
    last probe that found the stream unchanged, which counts as a complete sync."""
    if requested:
        return "a full re-sync was requested"
    if state.reconciling_since:
        return f"it resumes the reconciliation begun {state.reconciling_since}"
    if state.watermark is None:
        return None  # a first sync lists everything anyway
    completed = [moment for moment in (_moment(state.completed_sync_at), checked_at) if moment is not None]
    return reconcile_due(max(completed, default=None), _moment(state.reconciled_at), now, every)


def _reaches_back(listing: Listing, needed_since: str) -> bool:
    """Whether `listing` reaches back further than LISTING_KEPT before `needed_since`."""
    return listing.since is None or listing.since < rfc3339(datetime.fromisoformat(needed_since) - LISTING_KEPT)


def _moment(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def _unix(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


def sync_stream(
    client: PageSource,
    warehouse: BatchSink,
    checks: StreamChecks,
    stream: str,
    *,
    full_resync: bool = False,
    pages_per_checkpoint: int = 10,
    reconcile_every: timedelta | None = DEFAULT_RECONCILE_EVERY,
    now: datetime | None = None,
) -> SyncReport:
    """Bring the warehouse in line with Tasklane for one tenant and stream.

    Rows and the position they reach commit together in batches of half `pages_per_checkpoint`
    pages, one written while the next is fetched: a run that dies loses at most
    `pages_per_checkpoint` pages, and it or a throttled one resumes from its last checkpoint (minus
    the visibility overlap). A reconciliation soft-deletes nothing before its last transaction,
    so it can stop anywhere. An incremental sync first asks the stream's last listing again with its
    ETag (control/stream_checks.py): a `304` ends it at no cost. Once everything is committed the
    sync records the listing its successor (or a probe) may ask about: the one it made if that fit on
    a page and reaches back less than LISTING_KEPT before the new watermark's overlap, else the
    listing from that overlap, asked for now (one counted call), so that the next check can answer
    `304` without a run."""
    batch_pages = max(1, pages_per_checkpoint // 2)
    tenant = client.tenant.id
    started = rfc3339(now or datetime.now(UTC))
    state = warehouse.state(tenant, stream)
    known = checks.begin_sync(tenant, stream)
    checked_at = datetime.fromtimestamp(known.checked_at, UTC) if known.checked_at else None
    reason = reconcile_reason(
        state, datetime.fromisoformat(started), requested=full_resync, every=reconcile_every, checked_at=checked_at
    )
    reconciling = reason is not None
    # A reconciliation resumes only its own checkpoint: an incremental run's would skip the records
    # before it. An incremental run resumes its own (a reconciliation's makes the run reconcile).
    resume_from = state.resume_from if not reconciling or state.reconciling_since else None
    report = SyncReport(stream, state.watermark, resumed_from=resume_from, reconcile_reason=reason)
    began = (state.reconciling_since or started) if reconciling else None
    start = resume_from if reconciling else (resume_from or state.watermark)
    since = minus_overlap(start) if start else None
    # The last listing is asked again while it reads all this sync needs: a quiet stream keeps one query.
    asked = known.listing if not reconciling and not resume_from and start and known.listing else None
    if asked and asked.covers(since):
        since = asked.since
    else:
        asked = None
    listed: Listing | None = None  # what the next sync may ask about, once this one has committed
    calls_before = Counter(client.stats)
    pages: list[str] = []
    reached: str | None = resume_from  # what a killed run already committed counts as reached
    pending: Future[None] | None = None
    listed_to_the_end = True

    def write(batch: list[str], position: SyncState, sweep: Sweep | None = None) -> None:
        written = batches.write(tenant, stream, batch, position, sweep)
        report.drift.extend(written.drift)
        report.soft_deleted += written.soft_deleted

    def settled() -> str | None:
        """How far the listing reached, but never past the sync's start. A write the listing passed
        before it became visible (up to 60 s late) was written after start - 60 s, so the next
        sync's overlap reads it, however long this listing went on following newer writes."""
        return min(reached, started) if reached else None

    def checkpoint() -> SyncState:
        return SyncState(state.watermark, settled(), reconciling_since=began)

    def final(swept: bool) -> SyncState:
        return SyncState(
            watermark=max(filter(None, (state.watermark, settled())), default=None),
            completed_sync_at=began or started,
            # A first sync listed everything; a state from before reconciliations starts its cadence now.
            reconciled_at=began if swept else (started if state.reconciled_at is None else None),
        )

    def _listing_from(new_since: str) -> Listing | None:
        """The listing the next sync will make, asked now for its first page: written too (the
        overlap, mostly rows already written), its ETag kept if the listing fits on it. A listing
        longer than a page has no ETag, so the rest is left to the next sync, which lists it anyway.
        The sync is complete already: a throttle or a failure here only leaves no listing (the next
        check runs a sync)."""
        successor = client.list_pages(stream, new_since)
        try:
            first = next(successor)
        except (TasklaneFailure, TenantThrottled):
            return None
        finally:
            successor.close()  # the client settles its reserved calls as the listing ends
        write([first.body], SyncState(done.watermark))
        return Listing(new_since, first.etag) if first.etag else None

    # Checkpoints are written by one background thread while the next pages are fetched: the
    # database shapes rows outside the GIL, so fetching and writing overlap. Waiting for the
    # previous write before handing over the next keeps commits in order and stops on a failure.
    with (
        warehouse.writer() as batches,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dripfeed-{tenant}-{stream}") as writer,
    ):
        if reconciling and not state.reconciling_since:
            batches.begin_reconciliation(tenant, stream, checkpoint())
        try:
            for page in client.list_pages(stream, since, etag=asked.etag if asked else None):
                if page.not_modified:
                    listed, listed_to_the_end = asked, False
                    break
                if page.etag:
                    listed = Listing(since, page.etag)
                pages.append(page.body)
                report.pages += 1
                report.records += len(page.records)
                report.tombstones += sum(record.get("deleted_at") is not None for record in page.records)
                if page.records:
                    reached = max(reached or "", page.records[-1]["updated_at"])
                if len(pages) == batch_pages:
                    if pending:
                        pending.result()
                    pending, pages = writer.submit(write, pages, checkpoint()), []
                    report.checkpoints += 1
                    if 2 * batch_pages > pages_per_checkpoint:  # no room to fetch while it is written
                        pending.result()
        except BaseException:
            if pending:
                pending.result()
            if pages:  # keep what was fetched: a retry starts from here, not from the beginning
                write(pages, checkpoint())
                report.checkpoints += 1
            raise
        if pending:
            pending.result()
        sweep = Sweep(minus_overlap(began), began) if began and listed_to_the_end else None
        done = final(swept=sweep is not None)
        write(pages, done, sweep)
        if done.watermark and (listed is None or _reaches_back(listed, minus_overlap(done.watermark))):
            listed = _listing_from(minus_overlap(done.watermark))
    after = warehouse.state(tenant, stream)
    report.watermark_after = after.watermark
    checks.record_sync(
        tenant,
        stream,
        listed,
        synced_at=_unix(began or started),
        reconciled_at=_unix(after.reconciled_at) if after.reconciled_at else None,
    )
    report.calls = Counter(client.stats) - calls_before
    return report
