"""What a warehouse back end is: a database driver behind the SQL both dialects share.

A back end's driver is imported only by its own module (`duckdb_backend.py`, `postgres_backend.py`),
and only when a warehouse URL names it: a sync or a tick loads one driver, never both.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from .migrations import DRIFT_TABLE, LISTED_TABLE, STATE_TABLE, USAGE_TABLE, migrate
from .record_sql import TYPED, RecordSQL
from .schema import Drift, column_for, quote

__all__ = ["DRIFT_TABLE", "LISTED_TABLE", "STATE_TABLE", "TYPES", "USAGE_TABLE", "Backend", "SyncState", "Written"]

# Threads of a process opening a database for the first time migrate one at a time: DuckDB's
# connections in one process share the database and would conflict on the catalog. Processes take
# turns by the database's locks (migrations.py).
MIGRATING = threading.Lock()
TYPES = {
    "duckdb": {
        "text": "VARCHAR",
        "boolean": "BOOLEAN",
        "integer": "BIGINT",
        "double": "DOUBLE",
        "json": "JSON",
        "date": "DATE",
        "timestamp": "TIMESTAMPTZ",
    },
    # json, not jsonb: jsonb reorders keys, and the raw record must read back byte for byte.
    "postgres": {
        "text": "TEXT",
        "boolean": "BOOLEAN",
        "integer": "BIGINT",
        "double": "DOUBLE PRECISION",
        "json": "JSON",
        "date": "DATE",
        "timestamp": "TIMESTAMPTZ",
    },
}


@dataclass(frozen=True)
class SyncState:
    """Where a tenant's sync of one stream stands: its high-watermark and, mid-run, its checkpoint.

    The moments are dripfeed's clock (RFC 3339), not the vendor's. A write that leaves
    `completed_sync_at` or `reconciled_at` unset keeps the stored value."""

    watermark: str | None = None
    resume_from: str | None = None
    reconciling_since: str | None = None  # a reconciliation (full listing) in progress, begun then
    completed_sync_at: str | None = None  # when the last sync that completed began
    reconciled_at: str | None = None  # when the last reconciliation that completed began


@dataclass(frozen=True)
class Written:
    """What one write stored: rows upserted (one per record id) and contract fields whose type drifted."""

    rows: int
    drift: list[Drift]
    soft_deleted: int = 0  # rows a reconciliation found missing upstream


def page_of(records: Sequence[dict[str, Any]]) -> str:
    """A page body holding `records`, for writers that have records rather than the vendor's text."""
    return json.dumps({"data": list(records)}, ensure_ascii=False)


class Backend(ABC):
    """One database: its driver, its dialect's SQL for records, and how it takes turns between writers."""

    dialect: str
    records: type[RecordSQL]
    hold_seconds: float | None = None  # how long a writer may keep its connection; None: as long as it likes
    exclusive = False  # whether a writer's connection shuts out every other writer while it is held
    _migrated = False  # whether this process has brought the database to the code's schema (migrations.py)

    @property
    def types(self) -> dict[str, str]:
        """dripfeed's type names (text, integer, timestamp, ...) in this dialect."""
        return TYPES[self.dialect]

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the database is, for messages: never a password."""

    @property
    @abstractmethod
    def duplicate_key(self) -> type[Exception]:
        """What a plain INSERT raises on a key already stored."""

    @abstractmethod
    def connect(self) -> Any:
        """A new connection to the database, as it is: `open()` is what dripfeed's code calls."""

    def open(self) -> Any:
        """A new connection, to a database at the code's schema: the process's first one applies
        the migrations it lacks (migrations.py)."""
        conn = self.connect()
        if not self._migrated:
            try:
                with MIGRATING:
                    migrate(self, conn)
            except BaseException:
                self.close(conn)
                raise
            self._migrated = True
        return conn

    @abstractmethod
    def table_exists(self, conn: Any, table: str) -> bool: ...

    def close(self, conn: Any) -> None:
        conn.close()

    @abstractmethod
    def transaction(self, conn: Any) -> AbstractContextManager[None]:
        """A context in which `conn` runs one transaction: committed on exit, rolled back on an exception."""

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection of its own, for one transaction."""
        conn = self.open()
        try:
            with self.transaction(conn):
                yield conn
        finally:
            self.close(conn)

    @abstractmethod
    def columns(self, conn: Any, table: str) -> dict[str, str]: ...

    @abstractmethod
    def load_pages(self, conn: Any, pages: Sequence[str]) -> Any:
        """Make the page bodies readable as dripfeed_pages(seq, body) to `shape()`: return its parameters."""

    @abstractmethod
    def insert_many(self, conn: Any, sql: str, rows: Sequence[tuple]) -> None: ...

    @abstractmethod
    def fetch(self, conn: Any, sql: str, params: Any = ()) -> tuple[list[tuple], list[str]]: ...

    def execute(self, conn: Any, sql: str, params: Any = ()) -> list[tuple]:
        return self.fetch(conn, sql, params)[0]

    def sql(self, text: str) -> str:
        """`text` with `?` placeholders, in the driver's placeholder style."""
        return text

    # shared SQL ---------------------------------------------------------------------------------
    def add_columns(self, conn: Any, stream: str, present: list[str], vendor_columns: Sequence[str]) -> None:
        """Add a text column per new vendor field to the table and to `present`, its columns in order."""
        for column in vendor_columns:
            if column not in present:
                self.execute(conn, f"ALTER TABLE {quote(stream)} ADD COLUMN {quote(column)} {self.types['text']}")
                present.append(column)

    def write_state(self, conn: Any, tenant: str, stream: str, state: SyncState) -> None:
        self.execute(
            conn,
            self.sql(
                f"INSERT INTO {STATE_TABLE} (tenant_id, resource, watermark, resume_from, reconciling_since, "
                "completed_sync_at, reconciled_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, now()) "
                "ON CONFLICT (tenant_id, resource) DO UPDATE SET watermark = excluded.watermark, "
                "resume_from = excluded.resume_from, reconciling_since = excluded.reconciling_since, "
                f"completed_sync_at = coalesce(excluded.completed_sync_at, {STATE_TABLE}.completed_sync_at), "
                f"reconciled_at = coalesce(excluded.reconciled_at, {STATE_TABLE}.reconciled_at), "
                "updated_at = excluded.updated_at"
            ),
            (
                tenant,
                stream,
                state.watermark,
                state.resume_from,
                state.reconciling_since,
                state.completed_sync_at,
                state.reconciled_at,
            ),
        )

    def forget_listed(self, conn: Any, tenant: str, stream: str) -> None:
        """Drop the ids an earlier, unfinished reconciliation listed: a new one starts from none."""
        self.execute(
            conn, self.sql(f"DELETE FROM {LISTED_TABLE} WHERE tenant_id = ? AND resource = ?"), (tenant, stream)
        )

    def soft_delete_unlisted(self, conn: Any, tenant: str, stream: str, older_than: str, deleted_at: str) -> int:
        """Mark deleted (`_deleted_at`) the tenant's live rows the reconciliation did not list, then
        forget the listed ids. Rows updated since `older_than` are left alone: a record the listing
        passed before it was written is not missing, and a delete after that has a tombstone."""
        table, timestamp = quote(stream), self.types["timestamp"]
        swept = self.execute(
            conn,
            self.sql(
                f"UPDATE {table} SET _deleted_at = CAST(? AS {timestamp}), _synced_at = now() "
                f"WHERE tenant_id = ? AND _deleted_at IS NULL AND updated_at < CAST(? AS {timestamp}) "
                f"AND NOT EXISTS (SELECT 1 FROM {LISTED_TABLE} l "
                f"WHERE l.tenant_id = {table}.tenant_id AND l.resource = ? AND l.id = {table}.id) RETURNING id"
            ),
            (deleted_at, tenant, older_than, stream),
        )
        self.forget_listed(conn, tenant, stream)
        return len(swept)

    def write_drift(self, conn: Any, tenant: str, stream: str, drift: Sequence[Drift]) -> None:
        for seen in {d.field: d for d in drift}.values():
            self.execute(
                conn,
                self.sql(
                    f"INSERT INTO {DRIFT_TABLE} VALUES (?, ?, ?, ?, ?, ?, now()) "
                    "ON CONFLICT (tenant_id, resource, field) DO UPDATE SET expected = excluded.expected, "
                    "seen = excluded.seen, example_id = excluded.example_id, seen_at = excluded.seen_at"
                ),
                (tenant, stream, seen.field, seen.expected, seen.seen, seen.example_id),
            )

    def has_rows(self, conn: Any, tenant: str, stream: str) -> bool:
        found = self.execute(conn, self.sql(f"SELECT 1 FROM {quote(stream)} WHERE tenant_id = ? LIMIT 1"), (tenant,))
        return bool(found)

    def upsert_pages(
        self,
        conn: Any,
        tenant: str,
        stream: str,
        pages: Sequence[str],
        present: list[str],
        *,
        new_keys: bool,
        record_listed: bool = False,
    ) -> Written:
        """Stage the pages' records, add columns for new vendor fields, record drift, upsert.
        `present` is the table's columns, in order; columns added here are appended to it. With
        `new_keys`, the rows go in by plain INSERT, which raises `duplicate_key` on a stored key.
        With `record_listed`, the records' ids are kept for the reconciliation in progress."""
        records = self.records(stream)
        self.execute(conn, records.shape(tenant), self.load_pages(conn, pages))
        staged, ids, *examples = self.execute(conn, records.batch_facts())[0]
        if staged > ids:  # a listing returned a record twice: keep its newest version, then look again
            self.execute(conn, records.dedupe())
            _, _, *examples = self.execute(conn, records.batch_facts())[0]
        vendor_fields = {column_for(f): f for (f,) in self.execute(conn, records.keys()) if f not in records.kinds}
        self.add_columns(conn, stream, present, sorted(vendor_fields))
        drift = [
            Drift(field, records.kinds[field], self.execute(conn, records.seen_type(field, example))[0][0], example)
            for field, example in zip(records.checked_fields(), examples, strict=True)
            if example is not None
        ]
        self.execute(conn, self.upsert_sql(stream, present, records.rows(present, vendor_fields), new_keys=new_keys))
        if record_listed:
            self.execute(
                conn,
                self.sql(
                    f"INSERT INTO {LISTED_TABLE} (tenant_id, resource, id) SELECT ?, ?, id FROM {TYPED} "
                    "ON CONFLICT DO NOTHING"
                ),
                (tenant, stream),
            )
        self.write_drift(conn, tenant, stream, drift)
        return Written(ids, drift)

    def upsert_sql(self, stream: str, columns: list[str], source: str, *, new_keys: bool = False) -> str:
        names = ", ".join(quote(c) for c in columns)
        insert = f"INSERT INTO {quote(stream)} ({names}) {source}"
        if new_keys:
            return insert
        updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in columns if c not in ("tenant_id", "id"))
        return (
            f"{insert} ON CONFLICT (tenant_id, id) DO UPDATE SET {updates} "
            f"WHERE excluded.updated_at >= {quote(stream)}.updated_at"
        )
