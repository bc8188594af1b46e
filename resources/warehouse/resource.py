"""The `Warehouse` resource: DuckDB (a file, the default) or Postgres, behind one interface."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from ..streams import STREAMS, minus_overlap
from .backend import DRIFT_TABLE, STATE_TABLE, USAGE_TABLE, Backend, SyncState, Written
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
    dangling: list[dict[str, str | None]] = field(default_factory=list)  # records whose parent should be here, is not
    waiting_references: int = 0  # records naming a parent too new for the parent's last sync to have listed


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
        """The stream's sync state for the tenant. A state written before dripfeed recorded
        completions takes the time of its last write as its last complete sync, if it was one."""
        found = self.query(
            "SELECT watermark, resume_from, reconciling_since, completed_sync_at, reconciled_at, updated_at "
            f"FROM {STATE_TABLE} WHERE tenant_id = ? AND resource = ?",
            (tenant, stream),
        )
        if not found:
            return SyncState()
        watermark, resume_from, reconciling_since, completed, reconciled, written_at = found[0]
        if completed is None and resume_from is None and watermark is not None and written_at is not None:
            completed = written_at.astimezone(UTC).isoformat()
        return SyncState(watermark, resume_from, reconciling_since, completed, reconciled)

    def facts(self, tenant: str, stream: str) -> TableFacts:
        """Row count, columns, duplicate ids, drifted fields and (for tasks) dangling references of a
        tenant's table, read over one connection."""
        backend = self.backend
        with backend.connection() as conn:
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
            dangling, waiting = (
                self._dangling_references(conn, tenant, stream) if STREAMS[stream].references else ([], 0)
            )
            return TableFacts(
                rows=int(rows),
                columns=list(backend.columns(conn, stream).items()),
                duplicates=int(rows - ids),
                drift=[
                    {"field": f, "expected_type": e, "seen_type": s, "example_record_id": i} for f, e, s, i in drifted
                ],
                dangling=dangling,
                waiting_references=waiting,
            )

    def _dangling_references(self, conn: Any, tenant: str, stream: str) -> tuple[list[dict[str, str | None]], int]:
        """Live records whose references name no record of the tenant's parent stream (tombstones
        count): the ones that are errors, as examples, and how many wait for the parent's next sync.

        A reference is an error only when its parent should already be here: the record is older
        than the parent stream's watermark minus the contract's visibility lag, so the parent's
        last sync would have listed a parent that existed when the record was written. A task
        created after the `projects` step ran may name a project that step could not see yet.
        """
        backend = self.backend
        references = STREAMS[stream].references
        timestamp = backend.types["timestamp"]
        joins, due, unresolved, cutoffs = [], [], [], []
        for n, (column, parent) in enumerate(references.items()):
            joins.append(
                f"LEFT JOIN {quote(parent)} p{n} ON p{n}.tenant_id = r.tenant_id AND p{n}.id = r.{quote(column)}"
            )
            unresolved.append(f"(r.{quote(column)} IS NOT NULL AND p{n}.id IS NULL)")
            due.append(
                f"(r.{quote(column)} IS NOT NULL AND p{n}.id IS NULL AND r.updated_at <= CAST(? AS {timestamp}))"
            )
            cutoffs.append(self._settled_before(conn, tenant, parent))
        base = f"FROM {quote(stream)} r {' '.join(joins)} WHERE r.tenant_id = ? AND r._deleted_at IS NULL"
        fields = ", ".join(f"r.{quote(column)}" for column in references)
        found = backend.execute(
            conn,
            backend.sql(
                f"SELECT r.id, {fields} {base} AND ({' OR '.join(due)}) ORDER BY r.id LIMIT {DANGLING_EXAMPLES}"
            ),
            (tenant, *cutoffs),
        )
        waiting = backend.execute(
            conn,
            backend.sql(f"SELECT count(*) {base} AND ({' OR '.join(unresolved)}) AND NOT ({' OR '.join(due)})"),
            (tenant, *cutoffs),
        )[0][0]
        examples = [{"id": row[0], **dict(zip(references, row[1:], strict=True))} for row in found]
        return examples, int(waiting)

    def _settled_before(self, conn: Any, tenant: str, parent: str) -> str:
        """The moment before which every record of `parent` has been synced: its watermark minus the
        visibility lag (the epoch when the parent was never synced, so nothing is due yet)."""
        found = self.backend.execute(
            conn,
            self.backend.sql(f"SELECT watermark FROM {STATE_TABLE} WHERE tenant_id = ? AND resource = ?"),
            (tenant, parent),
        )
        if not found or found[0][0] is None:
            return "1970-01-01T00:00:00.000Z"
        return minus_overlap(found[0][0])

    def replace_api_usage(self, rows: Sequence[tuple], since_hour: str) -> None:
        """Replace table api_usage's hours from `since_hour` on with `rows` (USAGE_COLUMNS, in order),
        in one transaction."""
        placeholders = ", ".join("?" for _ in USAGE_COLUMNS)
        backend = self.backend
        with backend.connection() as conn:
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
