"""What dripfeed knows of each tenant's stream between syncs: the listing it can ask about again, and
when the stream was last known complete.

A *listing* is the first request of a stream's next incremental sync (its `updated_since`) with the
ETag of the one-page answer the last sync committed. Sent back as `If-None-Match`, a `304` then means
that nothing was written upstream since: the stream is complete without a counted call. So a probe
(sensors/tenant_probes.py) can tell a quiet tenant from a changed one, and the sync itself starts
with the same conditional request.

Two rules keep a `304` truthful:
- A listing is recorded only after the sync that listed it committed everything it fetched, and a
  sync forgets the stream's listing when it begins (`begin_sync`): a sync that dies, fails or is
  deferred leaves no listing, and the next probe requests a run instead of trusting an ETag of
  pages the warehouse may not hold.
- A listing may start earlier than the watermark's overlap (it is kept while its answer fits on one
  page, so that a quiet stream keeps one query): it reads a superset, never less.

The control store and the warehouse go together: restoring one alone from a backup makes these
ETags speak of rows the warehouse may not hold (docs/operations.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from .store import ControlStore, chunks, stream_checks


@dataclass(frozen=True)
class Listing:
    """A stream's listing from `since` (None: from the start), answered on one page with `etag`."""

    since: str | None
    etag: str

    def covers(self, needed_since: str | None) -> bool:
        """Whether this listing reads everything a listing from `needed_since` would."""
        return self.since is None or (needed_since is not None and self.since <= needed_since)


@dataclass(frozen=True)
class StreamCheck:
    tenant: str
    stream: str
    listing: Listing | None = None
    synced_at: float | None = None  # Unix seconds the last complete sync of a run began
    checked_at: float | None = None  # Unix seconds of the last probe that found the stream unchanged
    reconciled_at: float | None = None

    @property
    def complete_at(self) -> float | None:
        """The last moment the stream was known complete: a sync that completed, or a check."""
        return max((t for t in (self.synced_at, self.checked_at) if t is not None), default=None)


def _check(row: sa.RowMapping) -> StreamCheck:
    etag = row["listing_etag"]
    return StreamCheck(
        tenant=row["tenant"],
        stream=row["resource"],
        listing=Listing(row["listing_since"], etag) if etag else None,
        synced_at=row["synced_at"],
        checked_at=row["checked_at"],
        reconciled_at=row["reconciled_at"],
    )


class StreamChecks:
    """Reads and writes stream checks in the control store."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store

    def get(self, tenant: str, stream: str) -> StreamCheck:
        c = stream_checks.c
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(stream_checks).where(c.tenant == tenant, c.resource == stream)).mappings()
            found = row.one_or_none()
        return _check(found) if found else StreamCheck(tenant, stream)

    def of_tenants(
        self, tenants: Iterable[str] | None = None, stream: str | None = None
    ) -> dict[tuple[str, str], StreamCheck]:
        """Every stream check of `tenants` (default: all), of one `stream` or all, by (tenant, stream);
        one query per 500 tenants."""
        query = sa.select(stream_checks)
        if stream is not None:
            query = query.where(stream_checks.c.resource == stream)
        with self.store.engine.connect() as conn:
            if tenants is None:
                rows = list(conn.execute(query).mappings())
            else:
                rows = [
                    row
                    for chunk in chunks(tenants)
                    for row in conn.execute(query.where(stream_checks.c.tenant.in_(chunk))).mappings()
                ]
        return {(row["tenant"], row["resource"]): _check(row) for row in rows}

    def begin_sync(self, tenant: str, stream: str) -> StreamCheck:
        """What was known before a sync of the stream begins; its listing is forgotten until the sync
        completes (`record_sync`), so that no probe trusts it meanwhile."""
        before = self.get(tenant, stream)
        if before.listing is not None:
            self._upsert(tenant, stream, listing_since=None, listing_etag=None)
        return before

    def record_sync(
        self, tenant: str, stream: str, listing: Listing | None, synced_at: float, reconciled_at: float | None
    ) -> None:
        """A sync of the stream completed, everything it fetched committed: the listing its next sync
        (or a probe) may ask about, when it began, and when the stream was last reconciled."""
        values: dict[str, object] = {
            "listing_since": listing.since if listing else None,
            "listing_etag": listing.etag if listing else None,
            "synced_at": synced_at,
        }
        if reconciled_at is not None:
            values["reconciled_at"] = reconciled_at
        self._upsert(tenant, stream, **values)

    def forget_listing(self, tenant: str, stream: str) -> None:
        """The stream's rows changed outside a listing (a history load): its next sync lists."""
        self._upsert(tenant, stream, listing_since=None, listing_etag=None)

    def record_checked(self, checked: Iterable[tuple[str, str]], at: float) -> None:
        """Probes found these (tenant, stream)s unchanged at `at`: each counts as a complete sync."""
        by_stream: dict[str, list[str]] = defaultdict(list)
        for tenant, stream in checked:
            by_stream[stream].append(tenant)
        if not by_stream:
            return
        c = stream_checks.c
        with self.store.transaction() as conn:  # a statement per stream and 500 tenants: psycopg2 sends an
            for stream, tenants in by_stream.items():  # executemany UPDATE row by row
                for chunk in chunks(tenants):
                    conn.execute(
                        sa.update(stream_checks).where(c.resource == stream, c.tenant.in_(chunk)).values(checked_at=at)
                    )

    def _upsert(self, tenant: str, stream: str, **values: object) -> None:
        insert = self.store.insert(stream_checks).values(tenant=tenant, resource=stream, **values)
        with self.store.transaction() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["tenant", "resource"], set_=values))
