"""The life of a history export, decided in one place, from what is known and what the vendor said.

    submitting ──POST answered──► queued/running ──poll──► succeeded ──load run──► loaded
        ▲                             │                        │
        └─ the vendor says failed ◄───┴── or expired (result ◄──┘
           (attempt < 3: a new key)        not loaded in time)
    an open job past the timeout, or failed on its last attempt ──► abandoned

Every function here is pure: it takes a job, the vendor's answer and the time, and returns the
job as it must be recorded and what to do next. The asset (`assets.py`, `history_exports.py`)
and the sensor (`sensors/export_status.py`) only do the I/O around it: read the job, call
Tasklane, save what this module decided, launch the load run, send the alert.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from resources.control.export_jobs import ExportJob, ExportStatus
from resources.tasklane.exports import VendorExport

MAX_ATTEMPTS = 3
MIN_POLL_SECONDS = 1


class Action(StrEnum):
    """What the caller does after a decision."""

    WAIT = "wait"  # nothing more now: save the job and look again at `next_poll_at`
    SUBMIT = "submit"  # POST the recorded job (its key is fixed: a repeat finds the same job)
    LOAD = "load"  # launch the run that loads the result
    ABANDON = "abandon"  # alert; the tenant's next sync reads the history through the listing


@dataclass(frozen=True)
class Decision:
    job: ExportJob  # as it must be recorded
    action: Action
    reason: str = ""


def idempotency_key(tenant: str, stream: str, updated_before: str, attempt: int = 1) -> str:
    """Derived from what is exported and the attempt: a retry, even from another run, names the
    same job; a resubmission after a failed job names a new one."""
    digest = hashlib.sha256(f"{tenant}|{stream}|{updated_before}|{attempt}".encode()).hexdigest()[:32]
    return f"dripfeed-export-{stream}-{digest}"


def new_job(tenant: str, stream: str, updated_before: str, now: float) -> ExportJob:
    """A job recorded before its first submission: its key and `updated_before` are fixed from now on."""
    return ExportJob(
        tenant=tenant,
        stream=stream,
        idempotency_key=idempotency_key(tenant, stream, updated_before),
        updated_before=updated_before,
        attempt=1,
        status=ExportStatus.SUBMITTING,
        submitted_at=now,
        next_poll_at=now,
    )


def after_submission(job: ExportJob, answer: VendorExport, now: float) -> ExportJob:
    """The job once the vendor answered its POST (the job it created, or the one it has for the key).
    A job found again may be done already: the next look decides what follows."""
    status = ExportStatus(answer.status) if answer.open else ExportStatus.QUEUED
    return job.but(export_id=answer.id, status=status, next_poll_at=now + _poll_after(answer))


def decide(
    job: ExportJob,
    answer: VendorExport | None,
    now: float,
    *,
    timeout_seconds: float,
    max_attempts: int = MAX_ATTEMPTS,
) -> Decision:
    """What becomes of a due job, given the vendor's latest answer about it (None when not asked:
    a job never submitted, or past its timeout)."""
    if now - job.submitted_at > timeout_seconds:
        return _abandon(job, f"not finished {timeout_seconds / 3600:g} h after it was submitted")
    if job.status == ExportStatus.SUBMITTING or answer is None:
        return Decision(job, Action.SUBMIT)
    status = answer.status
    if answer.open:
        return Decision(job.but(status=ExportStatus(status), next_poll_at=now + _poll_after(answer)), Action.WAIT)
    if status == "succeeded":
        done = job.but(
            status=ExportStatus.SUCCEEDED,
            completed_at=_seconds(answer.completed_at, now),
            result_url=answer.result_url,
            record_count=answer.record_count,
        )
        return Decision(done, Action.LOAD)
    reason = f"export {job.export_id} {status}: {answer.error or 'no reason given'}"
    if job.attempt < max_attempts:
        return Decision(resubmission(job, reason), Action.SUBMIT, reason)
    return _abandon(job, f"export {job.export_id} {status} on attempt {job.attempt} of {max_attempts}")


def resubmission(job: ExportJob, reason: str) -> ExportJob:
    """A new export of the same history under a new key (the old key names the failed job)."""
    attempt = job.attempt + 1
    return job.but(
        attempt=attempt,
        idempotency_key=idempotency_key(job.tenant, job.stream, job.updated_before, attempt),
        status=ExportStatus.SUBMITTING,
        export_id=None,
        completed_at=None,
        result_url=None,
        record_count=None,
        error=reason,
    )


def loaded(job: ExportJob) -> ExportJob:
    return job.but(status=ExportStatus.LOADED)


def _abandon(job: ExportJob, reason: str) -> Decision:
    return Decision(job.but(status=ExportStatus.ABANDONED, error=reason), Action.ABANDON, reason)


def _poll_after(answer: VendorExport) -> int:
    return max(MIN_POLL_SECONDS, answer.poll_after_seconds or MIN_POLL_SECONDS)


def _seconds(stamp: str | None, default: float) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else default
