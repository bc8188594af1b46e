"""A sync's writes: one transaction per batch of pages, over one connection kept between batches."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .backend import Backend, SyncState, Written


@dataclass(frozen=True)
class Sweep:
    """A reconciliation's last step: live rows it did not list, updated before `older_than`, are
    marked deleted at `deleted_at` (in the same transaction as its last batch and final state)."""

    older_than: str
    deleted_at: str


class BatchWriter:
    """Writes a sync's batches, each in one transaction, over one connection.

    Opening a DuckDB file and closing it again (which checkpoints it) costs more than writing a
    5,000-record batch, so the connection is kept across batches. DuckDB lets one process write a
    file at a time: the writer hands it back every `hold_seconds` and waits RELEASE_PAUSE before
    taking it again, so that other runs polling for the file get their turn.

    A tenant's first sync brings only keys the table does not hold yet, and an upsert costs DuckDB
    about three times a plain INSERT. So while a tenant had no rows when this writer
    began, its batches go in by plain INSERT; the first one that meets a stored key (a record
    seen again later in the listing, or another run of the tenant) is rolled back and written
    again as an upsert, as is every batch of that tenant after it. Either way the rows end the same."""

    RELEASE_PAUSE = 0.1

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._conn: Any = None
        self._tables: dict[str, list[str]] = {}  # stream -> its table's columns, on this connection
        self._new_keys: dict[tuple[str, str], bool] = {}  # (tenant, stream) -> whether to INSERT plainly
        self._opened = 0.0
        self._released = float("-inf")

    def write(
        self, tenant: str, stream: str, pages: Sequence[str], state: SyncState, sweep: Sweep | None = None
    ) -> Written:
        """Upsert the records of a batch of page bodies (`{"data": [...]}` JSON text) and record the
        position they reach, in one transaction; the last batch of a reconciliation also sweeps."""
        conn = self._connection()
        try:
            try:
                written = self._write(conn, tenant, stream, pages, state, sweep)
            except self.backend.duplicate_key:
                if not self._new_keys.get((tenant, stream)):
                    raise
                self._new_keys[(tenant, stream)] = False
                self._tables.clear()  # columns this transaction added were rolled back with it
                written = self._write(conn, tenant, stream, pages, state, sweep)
        except BaseException:
            self.close()  # a broken connection is not reused, and what it knew of the tables is forgotten
            raise
        hold = self.backend.hold_seconds
        if hold is not None and time.monotonic() - self._opened >= hold:
            self.close()
        return written

    def _write(
        self, conn: Any, tenant: str, stream: str, pages: Sequence[str], state: SyncState, sweep: Sweep | None
    ) -> Written:
        reconciling = state.reconciling_since is not None or sweep is not None
        with self.backend.transaction(conn):
            columns = self._columns(conn, stream)
            written = Written(0, [])
            if pages:
                if (tenant, stream) not in self._new_keys:
                    self._new_keys[(tenant, stream)] = not self.backend.has_rows(conn, tenant, stream)
                new_keys = self._new_keys[(tenant, stream)]
                written = self.backend.upsert_pages(
                    conn, tenant, stream, pages, columns, new_keys=new_keys, record_listed=reconciling
                )
            if sweep is not None:
                swept = self.backend.soft_delete_unlisted(conn, tenant, stream, sweep.older_than, sweep.deleted_at)
                written = replace(written, soft_deleted=swept)
            self.backend.write_state(conn, tenant, stream, state)
        return written

    def begin_reconciliation(self, tenant: str, stream: str, state: SyncState) -> None:
        """Record that a reconciliation began (`state.reconciling_since`), forgetting the ids an
        unfinished earlier one listed."""
        conn = self._connection()
        try:
            with self.backend.transaction(conn):
                self._columns(conn, stream)
                self.backend.forget_listed(conn, tenant, stream)
                self.backend.write_state(conn, tenant, stream, state)
        except BaseException:
            self.close()
            raise

    def _columns(self, conn: Any, stream: str) -> list[str]:
        """The stream table's columns. While a connection that shuts out other writers is held, they
        cannot change, so they are looked up once."""
        if stream not in self._tables or not self.backend.exclusive:
            self._tables[stream] = list(self.backend.columns(conn, stream))
        return self._tables[stream]

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._tables.clear()
            self.backend.close(conn)
            self._released = time.monotonic()

    def _connection(self) -> Any:
        if self._conn is None:
            time.sleep(max(0.0, self._released + self.RELEASE_PAUSE - time.monotonic()))
            self._conn = self.backend.open()
            self._opened = time.monotonic()
        return self._conn
