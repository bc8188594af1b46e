"""Asynchronous bulk exports: idempotent submission, a time-driven lifecycle, gzip NDJSON results."""

from __future__ import annotations

import gzip
import math
import random
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ExportSettings
from .timestamps import format_ms

IDEMPOTENCY_MEMORY_SECONDS = 86_400
QUEUED_SHARE = 0.1  # the first tenth of a job's duration it waits in the queue
FAIL_AT_SHARE = 0.5  # a failing job fails half-way


class IdempotencyConflict(ValueError):
    """The key was used within 24 hours with a different body (a 409)."""


@dataclass
class ExportJob:
    id: str
    resource: str
    updated_before_ms: int
    created_at: float
    duration: float
    fails: bool
    result_ttl: float
    path: Path
    record_count: int | None = None
    built_at: float | None = None
    build_error: str | None = None
    release_at: float | None = 0.0  # it completes no sooner; None while held (ExportService.hold)
    _built: threading.Event = field(default_factory=threading.Event, repr=False)

    def completed_at(self) -> float | None:
        if self.release_at is None:
            return None
        if self.fails:
            return max(self.created_at + self.duration * FAIL_AT_SHARE, self.release_at)
        if self.built_at is None:
            return None
        return max(self.created_at + self.duration, self.built_at, self.release_at)

    def status(self, now: float) -> str:
        done = self.completed_at()
        if done is not None and now >= done:
            if self.fails or self.build_error:
                return "failed"
            return "expired" if now >= done + self.result_ttl else "succeeded"
        return "queued" if now < self.created_at + self.duration * QUEUED_SHARE else "running"

    def describe(self, now: float, result_url: str) -> dict[str, Any]:
        status = self.status(now)
        elapsed = now - self.created_at
        if status == "succeeded":
            progress = 1.0
        elif status in ("failed", "expired"):
            progress = 1.0 if status == "expired" else min(elapsed / max(self.duration, 1e-9), 1.0)
        else:
            progress = min(elapsed / max(self.duration, 1e-9), 0.99) if status == "running" else 0.0
        done = self.completed_at()
        remaining = max(self.created_at + self.duration - now, 0.0)
        return {
            "id": self.id,
            "resource": self.resource,
            "status": status,
            "progress": round(progress, 3),
            "record_count": self.record_count if status == "succeeded" else None,
            "poll_after_seconds": 0
            if status in ("succeeded", "failed", "expired")
            else max(1, min(60, math.ceil(remaining / 2))),
            "result_url": result_url if status == "succeeded" else None,
            "error": self._error() if status == "failed" else None,
            "created_at": format_ms(int(self.created_at * 1000)),
            "completed_at": format_ms(int(done * 1000)) if done is not None and now >= done else None,
        }

    def _error(self) -> str:
        return self.build_error or "export worker failed while reading records; submit the export again"


@dataclass
class ExportService:
    """The export jobs of one workspace; results are written by a thread from a read snapshot."""

    workspace: str
    db_path: Path
    out_dir: Path
    rng: random.Random
    jobs: dict[str, ExportJob] = field(default_factory=dict)
    by_key: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    held: bool = False  # (sim) jobs do not complete until released: tests decide when, not a timer

    def hold(self, now: float) -> None:
        """Keep every job that has not completed, and every new one, open until `release()`."""
        self.held = True
        for job in self.jobs.values():
            if job.status(now) in ("queued", "running"):
                job.release_at = None

    def release(self, now: float) -> None:
        """Let held jobs complete: now, or when their duration is up if that is later."""
        self.held = False
        for job in self.jobs.values():
            if job.release_at is None:
                job.release_at = now

    def submit(
        self, key: str, resource: str, updated_before_ms: int, now: float, settings: ExportSettings
    ) -> tuple[ExportJob, bool]:
        """Return (job, created). The same key and body within 24 h returns the same job."""
        fingerprint = f"{resource}|{updated_before_ms}"
        known = self.by_key.get(key)
        if known and now - known[2] < IDEMPOTENCY_MEMORY_SECONDS:
            if known[0] != fingerprint:
                raise IdempotencyConflict(
                    "this Idempotency-Key was used with a different body in the last 24 hours; "
                    "use a new key for a different export"
                )
            return self.jobs[known[1]], False
        job_id = f"exp_{self.rng.getrandbits(64):016x}"
        job = ExportJob(
            id=job_id,
            resource=resource,
            updated_before_ms=updated_before_ms,
            created_at=now,
            duration=settings.duration_seconds,
            fails=self.rng.random() < settings.failure_rate,
            result_ttl=settings.result_ttl_seconds,
            path=self.out_dir / f"{self.workspace}-{job_id}.ndjson.gz",
            release_at=None if self.held else 0.0,
        )
        self.jobs[job_id] = job
        self.by_key[key] = (fingerprint, job_id, now)
        if not job.fails:
            threading.Thread(target=self._build, args=(job,), name=f"export-{job_id}", daemon=True).start()
        return job, True

    def _build(self, job: ExportJob) -> None:
        """Write the snapshot of records with updated_at < updated_before, tombstones included."""
        import time

        try:
            db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
            count = 0
            with gzip.open(job.path, "wb", compresslevel=5) as out:
                db.execute("BEGIN")
                rows = db.execute(
                    f"SELECT body FROM {job.resource} WHERE updated_ms < ? ORDER BY updated_ms, id",
                    (job.updated_before_ms,),
                )
                for (body,) in rows:
                    out.write(body)
                    out.write(b"\n")
                    count += 1
                db.execute("COMMIT")
            db.close()
            job.record_count = count
        except Exception as exc:  # the job fails visibly instead of the simulator crashing
            job.build_error = f"export failed: {type(exc).__name__}"
        job.built_at = time.time()
        job._built.set()

    def wait_built(self, job: ExportJob, timeout: float) -> bool:
        return job._built.wait(timeout)

    def expire_results(self, now: float) -> None:
        for job in self.jobs.values():
            if job.status(now) == "expired" and job.path.exists():
                job.path.unlink(missing_ok=True)
