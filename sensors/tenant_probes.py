"""Ask before you run: what a tenant's slot in its tier needs, learned with conditional requests.

Polling mostly finds nothing new, and a run costs a process and seconds of CPU to learn it. So at a
tenant's slot its tier's tick first asks Tasklane, for each stream, the first request of that
stream's next incremental sync: its last listing with the ETag of the answer the last sync committed
(control/stream_checks.py). A `304` costs no budget and means the stream is current: that check
counts as a complete sync (freshness, the last complete sync before tombstones are dropped, the
safety-net cadence). A stream whose answer changed gets a run, and so does one that must sync
whatever a probe could say: its first sync, a reconciliation that is due, a deferred sync whose wait
is over, a stream whose last sync left no listing to ask about (it was interrupted, took more than
one page, or a history export was loaded). A stream whose history export is still on its way is
left to the export_status sensor.

The run does not reuse the `200` the probe paid for: its listing asks again (one counted call more
per changed stream than a run without a probe), which keeps the run's own listing, checkpoints and
ETag rules the only way data reaches the warehouse.

Each tenant is probed on its own, many at once: a throttled, locked-out, revoked or failing tenant
gets its own verdict, and the others theirs. A tick starts no probe after START_WITHIN_SECONDS and
waits for none after FINISH_WITHIN_SECONDS: what it did not reach is tried first by the next tick.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipeline_assets.incremental_sync import reconcile_due
from resources.control.block_batch import BlockBatch
from resources.control.deferrals import Deferral
from resources.control.export_jobs import ExportJob
from resources.control.stream_checks import Listing, StreamCheck
from resources.control.tenant_checks import Outcome
from resources.shared_state import SharedState
from resources.streams import STREAMS
from resources.tasklane import TasklaneAPI, TasklaneFailure, TenantThrottled
from resources.tenants import Tenant, printable
from resources.utc import utc_text

PROBE_THREADS = 32
# A tick's probing ends well inside 20 s even on a machine whose cores the runs fill: a tenant it
# did not reach waits minutes for the next tick, while a slow tick delays every tenant after it.
START_WITHIN_SECONDS = 10.0
FINISH_WITHIN_SECONDS = 15.0

# Why a stream runs, short, as the run's `dripfeed/why` tag says it; the tick's log says it in full.
CHANGED, FIRST_SYNC, RECONCILE, RESUME, NO_LISTING = "changed", "first_sync", "reconcile", "resume", "no_listing"


@dataclass(frozen=True)
class Plan:
    """What a tenant's slot needs before any call: streams that must run (and why), streams to ask about."""

    tenant: Tenant
    must_run: dict[str, tuple[str, str]] = field(default_factory=dict)  # stream -> (code, why)
    to_probe: dict[str, Listing] = field(default_factory=dict)
    left_to_exports: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    """What a tenant's probe found: the streams to sync now, the streams found current, the outcome."""

    tenant: str
    outcome: Outcome
    detail: str
    run: dict[str, tuple[str, str]] = field(default_factory=dict)  # stream -> (code, why)
    current: tuple[str, ...] = ()
    error_class: str | None = None
    throttled: TenantThrottled | None = None


def plan(
    tenant: Tenant,
    checks: Mapping[tuple[str, str], StreamCheck],
    exports: Mapping[tuple[str, str], ExportJob],
    ended_deferral: Deferral | None,
    now: float,
) -> Plan:
    """Decide, from the control store alone, what must run and what to ask about."""
    moment = datetime.fromtimestamp(now, UTC)
    every = timedelta(days=tenant.reconcile_every_days) if tenant.reconcile_every_days else None
    must_run: dict[str, tuple[str, str]] = {}
    to_probe: dict[str, Listing] = {}
    exporting: list[str] = []
    for stream in STREAMS:
        job = exports.get((tenant.id, stream))
        check = checks.get((tenant.id, stream))
        if job is not None and job.pending:
            exporting.append(stream)
        elif ended_deferral is not None:
            since = utc_text(ended_deferral.resume_at)
            must_run[stream] = (RESUME, f"its deferred sync, free to resume since {since}, has not resumed yet")
        elif check is None or check.synced_at is None:
            must_run[stream] = (FIRST_SYNC, "no sync of it has completed yet")
        elif why := reconcile_due(_moment(check.complete_at), _moment(check.reconciled_at), moment, every):
            must_run[stream] = (RECONCILE, f"a reconciliation is due: {why}")
        elif check.listing is None:
            must_run[stream] = (
                NO_LISTING,
                "its last sync left no listing to ask about (interrupted, longer than a page, or a history load)",
            )
        else:
            to_probe[stream] = check.listing
    return Plan(tenant, must_run, to_probe, tuple(exporting))


def _moment(unix: float | None) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix is not None else None


def probe(tasklane: TasklaneAPI, state: SharedState, slot: Plan, blocks: BlockBatch | None = None) -> Verdict:
    """Ask Tasklane about the plan's streams (one conditional request each) and give the verdict. A
    failure is this tenant's alone, handled as a sync would: a throttle waits, an outage is tried
    again by the next tick, a failure a retry cannot fix (a revoked token, a malformed answer) fails."""
    tenant = slot.tenant.id
    changed: set[str] = set()
    if slot.to_probe:
        client = tasklane.tick_client(slot.tenant, state, blocks)
        try:
            changed = client.changed_streams(slot.to_probe)
        except TenantThrottled as throttled:
            return Verdict(tenant, Outcome.UNREACHED, str(throttled), throttled=throttled)
        except TasklaneFailure as failure:
            if failure.retryable:
                return Verdict(tenant, Outcome.UNREACHED, failure.description)
            return Verdict(tenant, Outcome.FAILED, failure.description, error_class=failure.error_class)
        finally:
            client.close()
    run = dict(slot.must_run) | {s: (CHANGED, "Tasklane answered its listing with changes") for s in changed}
    current = tuple(s for s in slot.to_probe if s not in changed)
    if run:
        detail = "; ".join(f"{stream}: {why}" for stream, (_, why) in sorted(run.items()))
        return Verdict(tenant, Outcome.CHANGED, detail, run, current)
    waiting = f"; left to its history export: {', '.join(slot.left_to_exports)}" if slot.left_to_exports else ""
    return Verdict(
        tenant, Outcome.CURRENT, f"unchanged: {', '.join(current) or 'nothing to ask'}{waiting}", {}, current
    )


def probe_all(
    tasklane: TasklaneAPI,
    state: SharedState,
    plans: Iterable[Plan],
    started: float | None = None,
    start_within: float = START_WITHIN_SECONDS,
    finish_within: float = FINISH_WITHIN_SECONDS,
) -> tuple[list[Verdict], list[str]]:
    """Probe every plan's tenant, PROBE_THREADS at once, in the order given (the most overdue first),
    starting none `start_within` seconds after `started` (time.monotonic(); default: now) and waiting
    for none after `finish_within`: (the verdicts, the tenants not reached in time). Their budget
    blocks are reserved together before and settled together after (control/block_batch.py)."""
    started = time.monotonic() if started is None else started
    ordered = list(plans)
    blocks = tasklane.tick_blocks([slot.tenant for slot in ordered if slot.to_probe], state)

    def one(slot: Plan) -> Verdict | None:
        if time.monotonic() - started >= start_within:
            return None  # too late to start: the next tick takes it first
        try:
            return probe(tasklane, state, slot, blocks)
        except Exception as error:  # a bug or a malformed answer: this tenant's failure, not the tick's
            detail = f"{type(error).__name__}: {printable(str(error), 300)} (a dripfeed bug: report it if it repeats)"
            return Verdict(slot.tenant.id, Outcome.FAILED, detail, error_class="bug")

    pool = ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="dripfeed-probe")
    try:
        futures: dict[Future[Verdict | None], str] = {pool.submit(one, slot): slot.tenant.id for slot in ordered}
        wait(futures, timeout=max(0.0, finish_within - (time.monotonic() - started)))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a probe still waiting on Tasklane ends on its own
        blocks.settle()
    verdicts = [f.result() for f in futures if f.done() and not f.cancelled() and f.result() is not None]
    reached = {v.tenant for v in verdicts}
    return verdicts, [slot.tenant.id for slot in ordered if slot.tenant.id not in reached]
