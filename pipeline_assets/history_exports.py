"""A tenant's history through the vendor's bulk exports, so that no run waits for one.

A tenant with `history_since` has its first sync of each resource submit an export of everything
updated before now and end. The export status sensor (`sensors/export_status.py`) polls the job
and, once it has succeeded, launches a run of the same asset tagged with the export's id; that
run streams the gzip NDJSON result into the same tables and sets the watermark to the export's
`updated_before` minus the overlap, from where the incremental syncs take over.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

from resources.export_jobs import ExportJob, ExportJobs
from resources.tasklane_client import TenantClient, export_idempotency_key
from resources.tasklane_errors import TasklaneFailure
from resources.warehouse import SyncState, Warehouse

from .incremental_sync import SyncReport, minus_overlap, rfc3339

EXPORT_TAG = "dripfeed/export_id"  # on a run that loads an export's result
RECORDS_PER_BATCH = 5000  # records per warehouse transaction while loading


def start_history_export(client: TenantClient, jobs: ExportJobs, resource: str) -> ExportJob:
    """The tenant's history export of `resource`: recorded, then submitted, unless it already is.
    A retry after a crash between the two submits the recorded job again, with the same key."""
    job = jobs.get(client.tenant.id, resource)
    if job is None:
        now = time.time()
        updated_before = rfc3339(datetime.fromtimestamp(now, UTC))
        job = ExportJob(
            tenant=client.tenant.id,
            resource=resource,
            idempotency_key=export_idempotency_key(client.tenant.id, resource, updated_before),
            updated_before=updated_before,
            attempt=1,
            status="submitting",
            submitted_at=now,
            next_poll_at=now,
        )
        jobs.save(job)
    return submit(client, jobs, job) if job.status == "submitting" else job


def submit(client: TenantClient, jobs: ExportJobs, job: ExportJob) -> ExportJob:
    """POST a recorded job (again, after a crash: the vendor answers with the job it has) and record the answer."""
    answer = client.submit_export(job.resource, job.updated_before, job.attempt)
    job = job.but(
        export_id=answer["id"],
        # A job found again may have finished already: the sensor's next look handles every outcome.
        status=answer["status"] if answer["status"] in ("queued", "running") else "queued",
        next_poll_at=time.time() + max(1, int(answer.get("poll_after_seconds") or 1)),
    )
    jobs.save(job)
    return job


def resubmit(client: TenantClient, jobs: ExportJobs, job: ExportJob, reason: str) -> ExportJob:
    """A new export of the same history, under a new key (the old one names the failed job)."""
    attempt = job.attempt + 1
    job = job.but(
        attempt=attempt,
        idempotency_key=export_idempotency_key(job.tenant, job.resource, job.updated_before, attempt),
        status="submitting",
        export_id=None,
        completed_at=None,
        result_url=None,
        record_count=None,
        error=reason,
    )
    jobs.save(job)
    return submit(client, jobs, job)


def load_export(
    client: TenantClient, warehouse: Warehouse, jobs: ExportJobs, job: ExportJob, history_since: date | None
) -> SyncReport:
    """Stream the job's result into the warehouse, RECORDS_PER_BATCH records per transaction.
    Records updated before `history_since` are left out. Loading again is harmless (upserts)."""
    tenant, resource = job.tenant, job.resource
    state = warehouse.state(tenant, resource)
    report = SyncReport(resource, state.watermark)
    calls_before = Counter(client.stats)
    since = history_since.isoformat() if history_since else ""
    watermark = max(filter(None, (state.watermark, minus_overlap(job.updated_before))))
    response = client.open_export_result(job.result_url or "")
    with response, warehouse.writer() as batches:
        batch: list[str] = []
        for line_number, line in enumerate(_lines(response.raw), start=1):
            record = _record(tenant, resource, line, line_number)
            if record["updated_at"] < since:
                continue
            batch.append(line)
            report.records += 1
            report.tombstones += record.get("deleted_at") is not None
            if len(batch) == RECORDS_PER_BATCH:
                report.drift.extend(batches.write(tenant, resource, [_page(batch)], state).drift)
                report.checkpoints += 1
                batch = []
        report.drift.extend(batches.write(tenant, resource, [_page(batch)], SyncState(watermark)).drift)
        report.checkpoints += 1
    jobs.save(job.but(status="loaded"))
    report.watermark_after = watermark
    report.calls = Counter(client.stats) - calls_before
    return report


def _lines(raw: object) -> Iterator[str]:
    with gzip.GzipFile(fileobj=raw) as unzipped:  # type: ignore[arg-type]
        for line in unzipped:
            text = line.decode().strip()
            if text:
                yield text


def _record(tenant: str, resource: str, line: str, line_number: int) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("updated_at"), str) or "id" not in record:
        raise TasklaneFailure(
            tenant,
            "vendor_outage",
            f"line {line_number} of the {resource} export is not a record with id and updated_at. "
            "Nothing from this load was lost; the rows before it are kept. Re-run the load, and report it to "
            "Tasklane if it fails again.",
        )
    return record


def _page(lines: list[str]) -> str:
    """NDJSON lines as a listing page body, which is what the warehouse loads."""
    return '{"data": [' + ",".join(lines) + "]}"
