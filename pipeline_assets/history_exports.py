"""A tenant's history through the vendor's bulk exports, so that no run waits for one.

A tenant with `history_since` has its first sync of each stream submit an export of everything
updated before now and end. The export status sensor (`sensors/export_status.py`) polls the job
and, once it has succeeded, launches a run of the same asset tagged with the export's id; that
run streams the gzip NDJSON result into the same tables and sets the watermark to the export's
`updated_before` minus the overlap, from where the incremental syncs take over. What happens to
a job is decided in `export_lifecycle.py`; this module does the I/O around it.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime

from resources.control.export_jobs import ExportJob, ExportJobs, ExportStatus
from resources.streams import minus_overlap
from resources.tasklane.client import TenantClient
from resources.tasklane.errors import TasklaneFailure
from resources.utc import rfc3339
from resources.warehouse import SyncState, Warehouse

from .export_lifecycle import after_submission, loaded, new_job
from .incremental_sync import SyncReport

EXPORT_TAG = "dripfeed/export_id"  # on a run that loads an export's result
RECORDS_PER_BATCH = 5000  # records per warehouse transaction while loading


def start_history_export(client: TenantClient, jobs: ExportJobs, stream: str) -> ExportJob:
    """The tenant's history export of `stream`: recorded, then submitted, unless it already is.
    A retry after a crash between the two submits the recorded job again, with the same key."""
    job = jobs.get(client.tenant.id, stream)
    if job is None:
        now = time.time()
        job = new_job(client.tenant.id, stream, rfc3339(datetime.fromtimestamp(now, UTC)), now)
        jobs.save(job)
    return submit(client, jobs, job) if job.status == ExportStatus.SUBMITTING else job


def submit(client: TenantClient, jobs: ExportJobs, job: ExportJob) -> ExportJob:
    """POST a recorded job (again, after a crash: the vendor answers with the job it has) and record the answer."""
    answer = client.submit_export(job.stream, job.updated_before, job.idempotency_key)
    job = after_submission(job, answer, time.time())
    jobs.save(job)
    return job


def load_export(
    client: TenantClient, warehouse: Warehouse, jobs: ExportJobs, job: ExportJob, history_since: date | None
) -> SyncReport:
    """Stream the job's result into the warehouse, RECORDS_PER_BATCH records per transaction.
    Records updated before `history_since` are left out. Loading again is harmless (upserts)."""
    tenant, stream = job.tenant, job.stream
    state = warehouse.state(tenant, stream)
    report = SyncReport(stream, state.watermark)
    calls_before = Counter(client.stats)
    since = history_since.isoformat() if history_since else ""
    watermark = max(filter(None, (state.watermark, minus_overlap(job.updated_before))))
    response = client.open_export_result(job.result_url or "")
    with response, warehouse.writer() as batches:
        batch: list[str] = []
        for line_number, line in enumerate(_lines(response.raw), start=1):
            record = _record(tenant, stream, line, line_number)
            if record["updated_at"] < since:
                continue
            batch.append(line)
            report.records += 1
            report.tombstones += record.get("deleted_at") is not None
            if len(batch) == RECORDS_PER_BATCH:
                report.drift.extend(batches.write(tenant, stream, [_page(batch)], state).drift)
                report.checkpoints += 1
                batch = []
        report.drift.extend(batches.write(tenant, stream, [_page(batch)], SyncState(watermark)).drift)
        report.checkpoints += 1
    jobs.save(loaded(job))
    report.watermark_after = watermark
    report.calls = Counter(client.stats) - calls_before
    return report


def _lines(raw: object) -> Iterator[str]:
    with gzip.GzipFile(fileobj=raw) as unzipped:  # type: ignore[arg-type]
        for line in unzipped:
            text = line.decode().strip()
            if text:
                yield text


def _record(tenant: str, stream: str, line: str, line_number: int) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("updated_at"), str) or "id" not in record:
        raise TasklaneFailure(
            tenant,
            "vendor_outage",
            f"line {line_number} of the {stream} export is not a record with id and updated_at. "
            "Nothing from this load was lost; the rows before it are kept. Re-run the load, and report it to "
            "Tasklane if it fails again.",
        )
    return record


def _page(lines: list[str]) -> str:
    """NDJSON lines as a listing page body, which is what the warehouse loads."""
    return '{"data": [' + ",".join(lines) + "]}"
