"""The history exports of every tenant, one per resource, as the control store records them.

A job is recorded before it is submitted (its idempotency key and `updated_before` fixed), so a
run or tick that dies between the POST and the record submits the same job again, which the
vendor answers with the job it already has. Polling resumes from here after any restart.

Statuses: `submitting` (recorded, no answer yet), `queued` / `running` (the vendor's),
`succeeded` (its load run launched), `loaded`, `failed` / `expired` (about to be resubmitted),
`abandoned` (out of attempts or time; alerted, and the tenant's syncs fall back to the listing).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import sqlalchemy as sa

from .control_store import ControlStore, export_jobs

WAITING = ("submitting", "queued", "running", "failed", "expired")  # the sensor polls these
RESULT_TTL_SECONDS = 3600  # the contract: a result expires one hour after completion


@dataclass(frozen=True)
class ExportJob:
    tenant: str
    resource: str
    idempotency_key: str
    updated_before: str
    attempt: int
    status: str
    submitted_at: float
    next_poll_at: float
    export_id: str | None = None
    completed_at: float | None = None
    result_url: str | None = None
    record_count: int | None = None
    error: str | None = None

    @property
    def pending(self) -> bool:
        """Whether the tenant's history for this resource is still on its way through the export."""
        return self.status in (*WAITING, "succeeded")

    def but(self, **changes: object) -> ExportJob:
        return replace(self, **changes)


class ExportJobs:
    """Reads and writes export jobs in the control store."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store

    def get(self, tenant: str, resource: str) -> ExportJob | None:
        query = sa.select(export_jobs).where(export_jobs.c.tenant == tenant, export_jobs.c.resource == resource)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).mappings().one_or_none()
        return ExportJob(**row) if row else None

    def save(self, job: ExportJob) -> None:
        values = {f.name: getattr(job, f.name) for f in fields(job)}
        insert = self.store.insert(export_jobs).values(**values)
        with self.store.transaction() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["tenant", "resource"], set_=values))

    def due(self, now: float, timeout: float) -> list[ExportJob]:
        """Jobs to look at now: those waiting whose poll time has come or whose `timeout` (seconds
        since submission) has passed, and succeeded ones whose result expired unloaded (their
        load run failed)."""
        c = export_jobs.c
        query = sa.select(export_jobs).where(
            sa.or_(
                sa.and_(c.status.in_(WAITING), sa.or_(c.next_poll_at <= now, c.submitted_at < now - timeout)),
                sa.and_(c.status == "succeeded", c.completed_at <= now - RESULT_TTL_SECONDS),
            )
        )
        with self.store.engine.connect() as conn:
            return [ExportJob(**row) for row in conn.execute(query).mappings()]

    def open_count(self) -> int:
        query = sa.select(sa.func.count()).select_from(export_jobs).where(export_jobs.c.status.in_(WAITING))
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
