"""The `Warehouse` resource: DuckDB (a file, the default) or Postgres, behind one interface."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from ..streams import STREAMS
from .backend import DRIFT_TABLE, STATE_TABLE, TYPES, USAGE_TABLE, Backend, SyncState, Written
from .batch_writer import BatchWriter
from .schema import quote

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_WAREHOUSE = ".dev/warehouse.duckdb"
USAGE_COLUMNS = {
    "tenant_id": "text",
    "hour": "text",
    **dict.fromkeys(("calls", "counted", "not_modified", "rate_limited", "retries", "errors"), "integer"),
    "wait_seconds": "double",
    "hourly_budget": "integer",
    "budget_used": "double",
}
DANGLING_EXAMPLES = 20


@dataclass(frozen=True)
class TableFacts:
    """What a tenant's table holds right after a sync: for the materialization's metadata and its checks."""

    rows: int
    columns: list[tuple[str, str]]
    duplicates: int
    drift: list[dict[str, str]] = field(default_factory=list)  # field, expected_type, seen_type, example_record_id
    dangling: list[dict[str, str | None]] = field(default_factory=list)  # tasks whose parent is missing


def backend_for(url: str) -> Backend:
    """The back end a URL names; only its driver is imported."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres_backend import PostgresBackend

        return PostgresBackend(url)
    from .duckdb_backend import DuckDBBackend

    return DuckDBBackend(url)


class Warehouse(dg.ConfigurableResource):
    """Tables `users`, `projects`, `tasks` keyed by (tenant_id, id), plus sync state and drift."""

    url: str = Field(DEFAULT_WAREHOUSE, description="a DuckDB file path, or a postgresql:// URL")

    _backend: Backend | None = PrivateAttr(default=None)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = backend_for(self.url)
        return self._backend

    @contextmanager
    def writer(self) -> Iterator[BatchWriter]:
        """A writer for a run of batches (a sync), which keeps its connection between them."""
        writer = BatchWriter(self.backend)
        try:
            yield writer
        finally:
            writer.close()

    def write(self, tenant: str, stream: str, pages: Sequence[str], state: SyncState) -> Written:
        """Write one batch over a connection of its own (see BatchWriter.write)."""
        with self.writer() as writer:
            return writer.write(tenant, stream, pages, state)

    def state(self, tenant: str, stream: str) -> SyncState:
        try:
            found = self.query(
                f"SELECT watermark, resume_from, coalesce(resume_full, false) FROM {STATE_TABLE} "
                "WHERE tenant_id = ? AND resource = ?",
                (tenant, stream),
            )
        except self.backend.missing_table:
            return SyncState()
        return SyncState(*found[0]) if found else SyncState()

    def facts(self, tenant: str, stream: str) -> TableFacts:
        """Row count, columns, duplicate ids, drifted fields and (for tasks) dangling references of a
        tenant's table, read over one connection."""
        backend = self.backend
        with backend.connection() as conn:
            backend.ensure_tables(conn, stream)
            rows, ids = backend.execute(
                conn,
                backend.sql(f"SELECT count(*), count(DISTINCT id) FROM {quote(stream)} WHERE tenant_id = ?"),
                (tenant,),
            )[0]
            drifted = backend.execute(
                conn,
                backend.sql(
                    f"SELECT field, expected, seen, example_id FROM {DRIFT_TABLE} "
                    "WHERE tenant_id = ? AND resource = ? ORDER BY field"
                ),
                (tenant, stream),
            )
            return TableFacts(
                rows=int(rows),
                columns=list(backend.columns(conn, stream).items()),
                duplicates=int(rows - ids),
                drift=[
                    {"field": f, "expected_type": e, "seen_type": s, "example_record_id": i} for f, e, s, i in drifted
                ],
                dangling=self._dangling_references(conn, tenant, stream) if STREAMS[stream].references else [],
            )

    def _dangling_references(self, conn: Any, tenant: str, stream: str) -> list[dict[str, str | None]]:
        """Live records whose references name no record of the tenant's parent stream (tombstones count)."""
        backend = self.backend
        references = STREAMS[stream].references
        for parent in STREAMS[stream].parents:
            backend.ensure_tables(conn, parent)
        joins = " ".join(
            f"LEFT JOIN {quote(parent)} p{n} ON p{n}.tenant_id = r.tenant_id AND p{n}.id = r.{quote(field)}"
            for n, (field, parent) in enumerate(references.items())
        )
        unresolved = " OR ".join(
            f"(r.{quote(field)} IS NOT NULL AND p{n}.id IS NULL)" for n, field in enumerate(references)
        )
        fields = ", ".join(f"r.{quote(field)}" for field in references)
        found = backend.execute(
            conn,
            backend.sql(
                f"SELECT r.id, {fields} FROM {quote(stream)} r {joins} "
                f"WHERE r.tenant_id = ? AND r._deleted_at IS NULL AND ({unresolved}) "
                f"ORDER BY r.id LIMIT {DANGLING_EXAMPLES}"
            ),
            (tenant,),
        )
        return [{"id": row[0], **dict(zip(references, row[1:], strict=True))} for row in found]

    def replace_api_usage(self, rows: Sequence[tuple], since_hour: str) -> None:
        """Replace table api_usage's hours from `since_hour` on with `rows` (USAGE_COLUMNS, in order),
        in one transaction."""
        types = TYPES[self.backend.dialect]
        defs = ", ".join(f"{quote(c)} {types[t]}" for c, t in USAGE_COLUMNS.items())
        placeholders = ", ".join("?" for _ in USAGE_COLUMNS)
        backend = self.backend
        with backend.connection() as conn:
            backend.execute(conn, f"CREATE TABLE IF NOT EXISTS {USAGE_TABLE} ({defs}, PRIMARY KEY (tenant_id, hour))")
            backend.execute(conn, backend.sql(f"DELETE FROM {USAGE_TABLE} WHERE hour >= ?"), (since_hour,))
            backend.insert_many(conn, backend.sql(f"INSERT INTO {USAGE_TABLE} VALUES ({placeholders})"), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self.backend.connection() as conn:
            return self.backend.execute(conn, self.backend.sql(sql), params)

    def frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        import pandas as pd  # for notebooks and tests: never on the path of a sync

        with self.backend.connection() as conn:
            rows, names = self.backend.fetch(conn, self.backend.sql(sql), params)
        return pd.DataFrame(rows, columns=names)
