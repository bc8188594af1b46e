"""A replay of Tasklane's listings, for tests of the sync's logic without the wire: `RecordedPages` is a
`PageSource` (pipeline_assets/incremental_sync.py) over records recorded from the simulator
(tests/fixtures/recorded_listings), answered by the contract's listing rules (docs/tasklane-api.md):
`updated_at >= updated_since` in (updated_at, id) order, 100 a page, tombstones included, an ETag on a
listing that fits on one page and `304` when it is asked again unchanged. A test changes the records
(`write`, `delete`, `forget_tombstones`) and can make the listing stop after some pages as a
throttled or failing vendor would. The simulator over sockets stays for the tests of the wire.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from resources.tasklane import Page
from resources.tasklane.listing import PAGE_SIZE
from resources.tenants import Tenant
from resources.utc import rfc3339

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded_listings" / "acme.json.gz"


def recorded_acme() -> dict[str, list[dict[str, Any]]]:
    """acme's records by stream, as the simulator listed them (as of 2026-12-01)."""
    with gzip.open(RECORDED, "rt", encoding="utf-8") as recorded:
        return json.load(recorded)["streams"]


@dataclass
class Listed:
    """One listing call the replay answered: what the sync asked."""

    stream: str
    since: str | None
    etag: str | None
    pages: int = 0
    not_modified: bool = False


@dataclass
class RecordedPages:
    tenant: Tenant
    records: dict[str, dict[str, dict[str, Any]]]  # stream -> id -> record
    page_size: int = PAGE_SIZE
    stats: Counter = field(default_factory=Counter)
    listed: list[Listed] = field(default_factory=list)
    stop_after_pages: int | None = None  # the next listing raises `stop_with` after this many pages
    stop_with: Exception | None = None

    @classmethod
    def of(cls, tenant_id: str, streams: dict[str, list[dict[str, Any]]], **options: Any) -> RecordedPages:
        records = {stream: {r["id"]: copy.deepcopy(r) for r in listed} for stream, listed in streams.items()}
        return cls(Tenant(id=tenant_id, tier="hourly", token_env="UNUSED"), records, **options)

    # --- the vendor's side: what a test does to the workspace ---------------------------------
    def write(self, stream: str, record_id: str, at: datetime, **fields: Any) -> dict[str, Any]:
        """Create or update a record, written at `at` (its updated_at)."""
        record = self.records[stream].get(record_id) or self._new(stream, record_id, at)
        record.update(fields, updated_at=rfc3339(at))
        self.records[stream][record_id] = record
        return record

    def delete(self, stream: str, record_id: str, at: datetime) -> None:
        """Replace the record by its tombstone."""
        self.write(stream, record_id, at, deleted_at=rfc3339(at))

    def forget_tombstones(self, stream: str) -> list[str]:
        """Drop every tombstone, as Tasklane does 30 days after a delete: returns their ids."""
        gone = [i for i, r in self.records[stream].items() if r.get("deleted_at")]
        for record_id in gone:
            del self.records[stream][record_id]
        return gone

    def truth(self, stream: str) -> list[dict[str, Any]]:
        return [self.records[stream][i] for i in sorted(self.records[stream])]

    # --- the sync's side: PageSource ----------------------------------------------------------
    def list_pages(
        self, stream: str, updated_since: str | None, *, etag: str | None = None
    ) -> Generator[Page, None, None]:
        listed = Listed(stream, updated_since, etag)
        self.listed.append(listed)
        matching = sorted(
            (r for r in self.records[stream].values() if updated_since is None or r["updated_at"] >= updated_since),
            key=lambda r: (r["updated_at"], r["id"]),
        )
        chunks = [matching[i : i + self.page_size] for i in range(0, len(matching), self.page_size)] or [[]]
        whole = _etag(chunks[0]) if len(chunks) == 1 else None
        self.stats["calls"] += 1
        if etag is not None and etag == whole:
            self.stats["not_modified"] += 1
            listed.not_modified = True
            yield Page([], None, not_modified=True)
            return
        for number, chunk in enumerate(chunks):
            if number:
                self.stats["calls"] += 1
            if self.stop_after_pages is not None and listed.pages >= self.stop_after_pages:
                stop, self.stop_after_pages, self.stop_with = self.stop_with, None, None
                raise stop or RuntimeError("the replay was told to stop")
            self.stats["counted"] += 1
            listed.pages += 1
            next_cursor = f"page-{number + 1}" if number + 1 < len(chunks) else None
            body = json.dumps({"data": chunk, "next_cursor": next_cursor}, ensure_ascii=False)
            yield Page(copy.deepcopy(chunk), next_cursor, body=body, etag=whole if number == 0 else None)

    def _new(self, stream: str, record_id: str, at: datetime) -> dict[str, Any]:
        template = copy.deepcopy(next(iter(self.records[stream].values())))
        template.update(id=record_id, created_at=rfc3339(at), deleted_at=None)
        return template


def _etag(records: list[dict[str, Any]]) -> str:
    return '"' + hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()[:16] + '"'


def moment(days_ago: float = 0, seconds_ago: float = 0) -> datetime:
    return datetime.now(UTC) - timedelta(days=days_ago, seconds=seconds_ago)
