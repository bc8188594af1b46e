"""The warehouse: DuckDB (a file, the default) or Postgres, behind one resource that behaves the same.

Every write is one transaction holding a batch of pages, the sync position they reach, and any
schema drift seen in them, so a crash can never leave the position ahead of the data. A row is
never replaced by an older version of itself. The database shapes the rows (`record_sql.py`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import psycopg2
import psycopg2.extras
import tenacity
from pydantic import Field, PrivateAttr

from .record_sql import DuckDBRecords, PostgresRecords, RecordSQL
from .warehouse_schema import Drift, column_for, quote, table_columns

DEFAULT_WAREHOUSE = ".dev/warehouse.duckdb"
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
STATE_TABLE = "_dripfeed_sync_state"
COLUMNS_SQL = (
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position"
)
DRIFT_TABLE = "_dripfeed_schema_drift"
USAGE_TABLE = "api_usage"


@dataclass(frozen=True)
class SyncState:
    """Where a tenant's sync of one resource stands: its high-watermark and, mid-run, its checkpoint."""

    watermark: str | None = None
    resume_from: str | None = None
    resume_full: bool = False  # the checkpoint belongs to a full re-sync (one that started from nothing)


@dataclass(frozen=True)
class Written:
    """What one write stored: rows upserted (one per record id) and contract fields whose type drifted."""

    rows: int
    drift: list[Drift]


def page_of(records: Sequence[dict[str, Any]]) -> str:
    """A page body holding `records`, for writers that have records rather than the vendor's text."""
    return json.dumps({"data": list(records)}, ensure_ascii=False)


class _Backend:
    dialect: str
    records: type[RecordSQL]
    hold_seconds: float | None = None  # how long a writer may keep its connection; None: as long as it likes
    exclusive = False  # whether a writer's connection shuts out every other writer while it is held
    duplicate_key: type[Exception]  # what a plain INSERT raises on a key already stored

    def connect(self) -> Any: ...

    def close(self, conn: Any) -> None:
        conn.close()

    def transaction(self, conn: Any) -> Any:
        """A context in which `conn` runs one transaction: committed on exit, rolled back on an exception."""

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection of its own, for one transaction."""
        conn = self.connect()
        try:
            with self.transaction(conn):
                yield conn
        finally:
            self.close(conn)

    def columns(self, conn: Any, table: str) -> dict[str, str]: ...

    def load_pages(self, conn: Any, pages: Sequence[str]) -> Any:
        """Make the page bodies readable as dripfeed_pages(seq, body) to `shape()`: return its parameters."""

    def insert_many(self, conn: Any, sql: str, rows: Sequence[tuple]) -> None: ...

    def fetch(self, conn: Any, sql: str, params: Any = ()) -> tuple[list[tuple], list[str]]: ...

    def execute(self, conn: Any, sql: str, params: Any = ()) -> list[tuple]:
        return self.fetch(conn, sql, params)[0]

    # shared SQL ---------------------------------------------------------------------------------
    def ensure_tables(self, conn: Any, resource: str) -> None:
        """Create the resource's table and the bookkeeping tables if they are missing."""
        types = TYPES[self.dialect]
        base = table_columns(resource)
        defs = ", ".join(f"{quote(c)} {types[t]}" for c, t in base.items())
        self.execute(conn, f"CREATE TABLE IF NOT EXISTS {quote(resource)} ({defs}, PRIMARY KEY (tenant_id, id))")
        self.execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (tenant_id {types['text']}, resource {types['text']}, "
            f"watermark {types['text']}, resume_from {types['text']}, updated_at {types['timestamp']}, "
            f"resume_full {types['boolean']}, PRIMARY KEY (tenant_id, resource))",
        )
        self.execute(conn, f"ALTER TABLE {STATE_TABLE} ADD COLUMN IF NOT EXISTS resume_full {types['boolean']}")
        self.execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {DRIFT_TABLE} (tenant_id {types['text']}, resource {types['text']}, "
            f"field {types['text']}, expected {types['text']}, seen {types['text']}, example_id {types['text']}, "
            f"seen_at {types['timestamp']}, PRIMARY KEY (tenant_id, resource, field))",
        )

    def add_columns(self, conn: Any, resource: str, present: list[str], vendor_columns: Sequence[str]) -> None:
        """Add a text column per new vendor field to the table and to `present`, its columns in order."""
        for column in vendor_columns:
            if column not in present:
                self.execute(
                    conn, f"ALTER TABLE {quote(resource)} ADD COLUMN {quote(column)} {TYPES[self.dialect]['text']}"
                )
                present.append(column)

    def write_state(self, conn: Any, tenant: str, resource: str, state: SyncState) -> None:
        self.execute(
            conn,
            self.sql(
                f"INSERT INTO {STATE_TABLE} (tenant_id, resource, watermark, resume_from, resume_full, updated_at) "
                "VALUES (?, ?, ?, ?, ?, now()) ON CONFLICT (tenant_id, resource) "
                "DO UPDATE SET watermark = excluded.watermark, resume_from = excluded.resume_from, "
                "resume_full = excluded.resume_full, updated_at = excluded.updated_at"
            ),
            (tenant, resource, state.watermark, state.resume_from, state.resume_full),
        )

    def write_drift(self, conn: Any, tenant: str, resource: str, drift: Sequence[Drift]) -> None:
        for seen in {d.field: d for d in drift}.values():
            self.execute(
                conn,
                self.sql(
                    f"INSERT INTO {DRIFT_TABLE} VALUES (?, ?, ?, ?, ?, ?, now()) "
                    "ON CONFLICT (tenant_id, resource, field) DO UPDATE SET expected = excluded.expected, "
                    "seen = excluded.seen, example_id = excluded.example_id, seen_at = excluded.seen_at"
                ),
                (tenant, resource, seen.field, seen.expected, seen.seen, seen.example_id),
            )

    def sql(self, text: str) -> str:
        return text

    def has_rows(self, conn: Any, tenant: str, resource: str) -> bool:
        found = self.execute(conn, self.sql(f"SELECT 1 FROM {quote(resource)} WHERE tenant_id = ? LIMIT 1"), (tenant,))
        return bool(found)

    def upsert_pages(
        self, conn: Any, tenant: str, resource: str, pages: Sequence[str], present: list[str], *, new_keys: bool
    ) -> Written:
        """Stage the pages' records, add columns for new vendor fields, record drift, upsert.
        `present` is the table's columns, in order; columns added here are appended to it. With
        `new_keys`, the rows go in by plain INSERT, which raises `duplicate_key` on a stored key."""
        records = self.records(resource)
        self.execute(conn, records.shape(tenant), self.load_pages(conn, pages))
        staged, ids, *examples = self.execute(conn, records.batch_facts())[0]
        if staged > ids:  # a listing returned a record twice: keep its newest version, then look again
            self.execute(conn, records.dedupe())
            _, _, *examples = self.execute(conn, records.batch_facts())[0]
        vendor_fields = {column_for(f): f for (f,) in self.execute(conn, records.keys()) if f not in records.kinds}
        self.add_columns(conn, resource, present, sorted(vendor_fields))
        drift = [
            Drift(field, records.kinds[field], self.execute(conn, records.seen_type(field, example))[0][0], example)
            for field, example in zip(records.checked_fields(), examples, strict=True)
            if example is not None
        ]
        self.execute(conn, self.upsert_sql(resource, present, records.rows(present, vendor_fields), new_keys=new_keys))
        self.write_drift(conn, tenant, resource, drift)
        return Written(ids, drift)

    def upsert_sql(self, resource: str, columns: list[str], source: str, *, new_keys: bool = False) -> str:
        names = ", ".join(quote(c) for c in columns)
        insert = f"INSERT INTO {quote(resource)} ({names}) {source}"
        if new_keys:
            return insert
        updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in columns if c not in ("tenant_id", "id"))
        return (
            f"{insert} ON CONFLICT (tenant_id, id) DO UPDATE SET {updates} "
            f"WHERE excluded.updated_at >= {quote(resource)}.updated_at"
        )


def _locked_by_another_process(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class _DuckDB(_Backend):
    """DuckDB lets one process open a file for writing: others wait (polling with jitter) while
    one holds it. A writer hands its connection back every `hold_seconds` (see BatchWriter)."""

    dialect = "duckdb"
    records = DuckDBRecords
    hold_seconds = 3.0
    exclusive = True
    duplicate_key = duckdb.ConstraintException

    def __init__(self, path: str) -> None:
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    @tenacity.retry(
        retry=tenacity.retry_if_exception(_locked_by_another_process),
        wait=tenacity.wait_random(0.01, 0.05),  # short: a writer pauses only RELEASE_PAUSE between holds
        stop=tenacity.stop_after_delay(600),
        reraise=True,
    )
    def connect(self) -> duckdb.DuckDBPyConnection:
        conn = duckdb.connect(self.path)
        # One thread: a batch is small, and the sync's fetching thread and the vendor need the other core.
        conn.execute("SET threads = 1")
        # A writer checkpoints when it hands the file back (BatchWriter); not also every 16 MB of log.
        conn.execute("SET checkpoint_threshold = '256MB'")
        return conn

    @contextmanager
    def transaction(self, conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
        conn.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def fetch(
        self, conn: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()
    ) -> tuple[list[tuple], list[str]]:
        result = conn.execute(sql, params if isinstance(params, dict) else list(params))
        if not result.description:
            return [], []
        return result.fetchall(), [d[0] for d in result.description]

    def columns(self, conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        # pragma_table_info: information_schema costs DuckDB ~15 ms to bind on each new connection
        rows = conn.execute("SELECT name, type FROM pragma_table_info(?) ORDER BY cid", [table]).fetchall()
        return dict(rows)

    def insert_many(self, conn: duckdb.DuckDBPyConnection, sql: str, rows: Sequence[tuple]) -> None:
        if rows:
            conn.executemany(sql, rows)

    def load_pages(self, conn: duckdb.DuckDBPyConnection, pages: Sequence[str]) -> dict[str, list[str]]:
        # A VARCHAR[] parameter of shape() itself (see DuckDBRecords.records): one call into DuckDB
        # instead of two, and no DataFrame that DuckDB would have to read under the GIL.
        return {"pages": list(pages)}


class _Postgres(_Backend):
    dialect = "postgres"
    records = PostgresRecords
    duplicate_key = psycopg2.errors.UniqueViolation

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:
        return psycopg2.connect(self.url)

    @contextmanager
    def transaction(self, conn: Any) -> Iterator[None]:
        with conn:  # commits, or rolls back on an exception
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(7343018)")  # DDL from concurrent runs is serialised
            yield

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def fetch(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> tuple[list[tuple], list[str]]:
        with conn.cursor() as cur:
            cur.execute(sql, tuple(params) or None)  # None: a '%' inside a literal is not a placeholder
            if not cur.description:
                return [], []
            return cur.fetchall(), [d[0] for d in cur.description]

    def columns(self, conn: Any, table: str) -> dict[str, str]:
        rows = self.execute(
            conn,
            self.sql(COLUMNS_SQL),
            (table,),
        )
        return dict(rows)

    def insert_many(self, conn: Any, sql: str, rows: Sequence[tuple]) -> None:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)

    def load_pages(self, conn: Any, pages: Sequence[str]) -> tuple:
        with conn.cursor() as cur:
            for function in PostgresRecords.functions():
                cur.execute(function)
            cur.execute("CREATE TEMP TABLE dripfeed_pages (seq integer, body text) ON COMMIT DROP")
            psycopg2.extras.execute_values(cur, "INSERT INTO dripfeed_pages VALUES %s", list(enumerate(pages)))
        return ()


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

    def __init__(self, backend: _Backend) -> None:
        self.backend = backend
        self._conn: Any = None
        self._tables: dict[str, list[str]] = {}  # resource -> its table's columns, on this connection
        self._new_keys: dict[tuple[str, str], bool] = {}  # (tenant, resource) -> whether to INSERT plainly
        self._opened = 0.0
        self._released = float("-inf")

    def write(self, tenant: str, resource: str, pages: Sequence[str], state: SyncState) -> Written:
        """Upsert the records of a batch of page bodies (`{"data": [...]}` JSON text) and record the
        position they reach, in one transaction."""
        conn = self._connection()
        try:
            try:
                written = self._write(conn, tenant, resource, pages, state)
            except self.backend.duplicate_key:
                if not self._new_keys.get((tenant, resource)):
                    raise
                self._new_keys[(tenant, resource)] = False
                self._tables.clear()  # columns this transaction added were rolled back with it
                written = self._write(conn, tenant, resource, pages, state)
        except BaseException:
            self.close()  # a broken connection is not reused, and what it knew of the tables is forgotten
            raise
        hold = self.backend.hold_seconds
        if hold is not None and time.monotonic() - self._opened >= hold:
            self.close()
        return written

    def _write(self, conn: Any, tenant: str, resource: str, pages: Sequence[str], state: SyncState) -> Written:
        with self.backend.transaction(conn):
            columns = self._columns(conn, resource)
            written = Written(0, [])
            if pages:
                if (tenant, resource) not in self._new_keys:
                    self._new_keys[(tenant, resource)] = not self.backend.has_rows(conn, tenant, resource)
                new_keys = self._new_keys[(tenant, resource)]
                written = self.backend.upsert_pages(conn, tenant, resource, pages, columns, new_keys=new_keys)
            self.backend.write_state(conn, tenant, resource, state)
        return written

    def _columns(self, conn: Any, resource: str) -> list[str]:
        """The resource table's columns, creating the tables on first use. While a connection that
        shuts out other writers is held, they cannot change, so they are looked up once."""
        if resource not in self._tables or not self.backend.exclusive:
            self.backend.ensure_tables(conn, resource)
            self._tables[resource] = list(self.backend.columns(conn, resource))
        return self._tables[resource]

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._tables.clear()
            self.backend.close(conn)
            self._released = time.monotonic()

    def _connection(self) -> Any:
        if self._conn is None:
            time.sleep(max(0.0, self._released + self.RELEASE_PAUSE - time.monotonic()))
            self._conn = self.backend.connect()
            self._opened = time.monotonic()
        return self._conn


def warehouse_url(value: str | None = None) -> str:
    return value or os.environ.get("DRIPFEED_WAREHOUSE", DEFAULT_WAREHOUSE)


class Warehouse(dg.ConfigurableResource):
    """Tables `users`, `projects`, `tasks` keyed by (tenant_id, id), plus sync state and drift."""

    url: str | None = Field(None, description="a DuckDB file path or a postgresql:// URL; default $DRIPFEED_WAREHOUSE")

    _backend: _Backend | None = PrivateAttr(default=None)

    @property
    def backend(self) -> _Backend:
        if self._backend is None:
            url = warehouse_url(self.url)
            self._backend = _Postgres(url) if url.startswith(("postgresql://", "postgres://")) else _DuckDB(url)
        return self._backend

    @contextmanager
    def writer(self) -> Iterator[BatchWriter]:
        """A writer for a run of batches (a sync), which keeps its connection between them."""
        writer = BatchWriter(self.backend)
        try:
            yield writer
        finally:
            writer.close()

    def write(self, tenant: str, resource: str, pages: Sequence[str], state: SyncState) -> Written:
        """Write one batch over a connection of its own (see BatchWriter.write)."""
        with self.writer() as writer:
            return writer.write(tenant, resource, pages, state)

    def replace_api_usage(self, usage: pd.DataFrame, since_hour: str) -> None:
        """Replace table api_usage's hours from `since_hour` on with `usage`, in one transaction."""
        types = TYPES[self.backend.dialect]
        columns = {
            "tenant_id": "text",
            "hour": "text",
            **dict.fromkeys(("calls", "counted", "not_modified", "rate_limited", "retries", "errors"), "integer"),
            "wait_seconds": "double",
            "hourly_budget": "integer",
            "budget_used": "double",
        }
        defs = ", ".join(f"{quote(c)} {types[t]}" for c, t in columns.items())
        rows = [
            tuple(None if pd.isna(v) else v.item() if hasattr(v, "item") else v for v in row)
            for row in usage[list(columns)].itertuples(index=False)
        ]
        placeholders = ", ".join("?" for _ in columns)
        with self.backend.connection() as conn:
            self.backend.execute(
                conn, f"CREATE TABLE IF NOT EXISTS {USAGE_TABLE} ({defs}, PRIMARY KEY (tenant_id, hour))"
            )
            self.backend.execute(conn, self.backend.sql(f"DELETE FROM {USAGE_TABLE} WHERE hour >= ?"), (since_hour,))
            self.backend.insert_many(conn, self.backend.sql(f"INSERT INTO {USAGE_TABLE} VALUES ({placeholders})"), rows)

    def state(self, tenant: str, resource: str) -> SyncState:
        try:
            found = self.query(
                f"SELECT watermark, resume_from, coalesce(resume_full, false) FROM {STATE_TABLE} "
                "WHERE tenant_id = ? AND resource = ?",
                (tenant, resource),
            )
        except (duckdb.CatalogException, psycopg2.errors.UndefinedTable):
            return SyncState()
        return SyncState(*found[0]) if found else SyncState()

    def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, type) of each column of a warehouse table, in order."""
        return self.query(COLUMNS_SQL, (table,))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.backend.connection() as conn:
            return self.backend.execute(conn, self.backend.sql(sql), params)

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self.backend.connection() as conn:
            rows, names = self.backend.fetch(conn, self.backend.sql(sql), params)
        return pd.DataFrame(rows, columns=names)
