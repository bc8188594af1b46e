"""The warehouse: DuckDB (a file, the default) or Postgres, behind one resource that behaves the same.

Every write is one transaction holding a batch of pages, the sync position they reach, and any
schema drift seen in them, so a crash can never leave the position ahead of the data. A row is
never replaced by an older version of itself. The database shapes the rows (`record_sql.py`).

Modules: `backend.py` (what a back end is, and the SQL both dialects share), `duckdb_backend.py`
and `postgres_backend.py` (each imports its driver, and only the one in use is imported),
`writer_turn.py` (a process's turn at a DuckDB file), `batch_writer.py` (a sync's transactions),
`record_sql.py` and `schema.py` (records into rows), `resource.py` (the Dagster resource),
`migrations.py` (the schema, versioned: applied by a process's first connection, `Backend.open`).
"""

from .backend import DRIFT_TABLE, STATE_TABLE, SyncState, Written, page_of
from .batch_writer import BatchWriter, Sweep
from .resource import USAGE_COLUMNS, TableFacts, Warehouse

__all__ = [
    "DRIFT_TABLE",
    "STATE_TABLE",
    "USAGE_COLUMNS",
    "BatchWriter",
    "Sweep",
    "SyncState",
    "TableFacts",
    "Warehouse",
    "Written",
    "page_of",
]
