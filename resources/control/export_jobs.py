"""The history exports of every tenant, one per stream, as the control store records them.

A job is recorded before it is submitted (its idempotency key and `updated_before` fixed), so a
run or tick that dies between the POST and the record submits the same job again, which the
vendor answers with the job it already has. Polling resumes from here after any restart. What
happens to a job is decided in `pipeline_assets/export_lifecycle.py`; this module only keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from enum import StrEnum

import sqlalchemy as sa

from .store import ControlStore, chunks, export_jobs

RESULT_TTL_SECONDS = 3600  # the contract: a result expires one hour after completion


class ExportStatus(StrEnum):
    SUBMITTING = "submitting"  # recorded; the vendor has not answered its submission yet
    QUEUED = "queued"  # the vendor's
    RUNNING = "running"  # the vendor's
    SUCCEEDED = "succeeded"  # done at the vendor; its load run was requested
    LOADED = "loaded"  # its records are in the warehouse
    ABANDONED = "abandoned"  # out of attempts or time; alerted, the listing reads the history instead

    @property
    def is_terminal(self) -> bool:
        return self in (ExportStatus.LOADED, ExportStatus.ABANDONED)

    @property
    def is_open(self) -> bool:
        """The export status sensor looks at it when it is due."""
        return self in (ExportStatus.SUBMITTING, ExportStatus.QUEUED, ExportStatus.RUNNING)


@dataclass(frozen=True)
class ExportJob:
    tenant: str
    stream: str
    idempotency_key: str
    updated_before: str
    attempt: int
    status: ExportStatus
    submitted_at: float  # Unix seconds of the first submission: the timeout counts from it
    next_poll_at: float
    export_id: str | None = None
    completed_at: float | None = None
    result_url: str | None = None
    record_count: int | None = None
    error: str | None = None

    @property
    def pending(self) -> bool:
        """Whether the tenant's history for this stream is still on its way through the export."""
        return not self.status.is_terminal

    def but(self, **changes: object) -> ExportJob:
        return replace(self, **changes)


class ExportJobs:
    """Reads and writes export jobs in the control store."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store

    def get(self, tenant: str, stream: str) -> ExportJob | None:
        query = sa.select(export_jobs).where(export_jobs.c.tenant == tenant, export_jobs.c.resource == stream)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).mappings().one_or_none()
        return _job(row) if row else None

    def of_tenants(self, tenants: Iterable[str]) -> dict[tuple[str, str], ExportJob]:
        """The jobs of `tenants`, by (tenant, stream)."""
        query = sa.select(export_jobs)
        with self.store.engine.connect() as conn:
            return {
                (job.tenant, job.stream): job
                for chunk in chunks(tenants)
                for job in map(_job, conn.execute(query.where(export_jobs.c.tenant.in_(chunk))).mappings())
            }

    def save(self, job: ExportJob) -> None:
        values = {f.name: getattr(job, f.name) for f in fields(job) if f.name != "stream"}
        values |= {"resource": job.stream, "status": str(job.status)}
        insert = self.store.insert(export_jobs).values(**values)
        with self.store.transaction() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["tenant", "resource"], set_=values))

    def due(self, now: float, timeout: float) -> list[ExportJob]:
        """Jobs to look at now: open ones whose poll time has come or whose `timeout` (seconds since
        submission) has passed, and succeeded ones whose result expired unloaded (their load run
        failed)."""
        c = export_jobs.c
        query = sa.select(export_jobs).where(
            sa.or_(
                sa.and_(c.status.in_(OPEN), sa.or_(c.next_poll_at <= now, c.submitted_at < now - timeout)),
                sa.and_(c.status == ExportStatus.SUCCEEDED, c.completed_at <= now - RESULT_TTL_SECONDS),
            )
        )
        with self.store.engine.connect() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    def open_count(self) -> int:
        query = sa.select(sa.func.count()).select_from(export_jobs).where(export_jobs.c.status.in_(OPEN))
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())


OPEN = [str(status) for status in ExportStatus if status.is_open]


def _job(row: sa.RowMapping) -> ExportJob:
    values = {name: value for name, value in row.items() if name not in ("resource", "status")}
    return ExportJob(**values, stream=row["resource"], status=ExportStatus(row["status"]))
