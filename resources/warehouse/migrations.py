"""The warehouse's schema, versioned: an ordered list of migrations, each applied once and recorded.

A back end migrates the first time a process opens it (`Backend.open`), in one transaction taken
under the lock writers take (Postgres: an advisory lock; DuckDB: the process's turn at the file,
writer_turn.py), so processes that start together apply each migration once. A database whose
recorded version is newer than this code's is refused: an older release could not read what a newer
one wrote. `python -m dripfeed.migrate` applies them ahead of a deploy, and reports where each
database stands.

Versions 1 and 2 are the schema that releases before versioning made with CREATE ... IF NOT EXISTS
on every connection: they are written to find it there, in any of its past shapes. Version 1 builds
the stream tables from the contract as the code knows it (`table_columns`): a release that changes a
contract field adds a migration that alters existing tables with IF NOT EXISTS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from ..streams import STREAMS
from .schema import quote, table_columns

if TYPE_CHECKING:
    from .backend import Backend

VERSION_TABLE = "_dripfeed_schema_version"
STATE_TABLE = "_dripfeed_sync_state"
LISTED_TABLE = "_dripfeed_listed_ids"  # the ids a reconciliation in progress has listed, per tenant and stream
DRIFT_TABLE = "_dripfeed_schema_drift"
USAGE_TABLE = "api_usage"

Types = dict[str, str]  # dripfeed's type names -> the dialect's (Backend.types)


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: Callable[[Types], list[str]]  # the SQL, in the dialect's types


class WarehouseTooNew(RuntimeError):
    """The warehouse was migrated by a newer dripfeed than this one."""


def _first_release(types: Types) -> list[str]:
    streams = []
    for stream in STREAMS:
        columns = ", ".join(f"{quote(c)} {types[t]}" for c, t in table_columns(stream).items())
        streams.append(f"CREATE TABLE IF NOT EXISTS {quote(stream)} ({columns}, PRIMARY KEY (tenant_id, id))")
    text, timestamp = types["text"], types["timestamp"]
    return [
        *streams,
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (tenant_id {text}, resource {text}, watermark {text}, "
        f"resume_from {text}, updated_at {timestamp}, PRIMARY KEY (tenant_id, resource))",
        f"CREATE TABLE IF NOT EXISTS {LISTED_TABLE} (tenant_id {text}, resource {text}, id {text}, "
        "PRIMARY KEY (tenant_id, resource, id))",
        f"CREATE TABLE IF NOT EXISTS {DRIFT_TABLE} (tenant_id {text}, resource {text}, field {text}, "
        f"expected {text}, seen {text}, example_id {text}, seen_at {timestamp}, "
        "PRIMARY KEY (tenant_id, resource, field))",
        f"CREATE TABLE IF NOT EXISTS {USAGE_TABLE} (tenant_id {text}, hour {text}, calls {types['integer']}, "
        f"counted {types['integer']}, not_modified {types['integer']}, rate_limited {types['integer']}, "
        f"retries {types['integer']}, errors {types['integer']}, wait_seconds {types['double']}, "
        f"hourly_budget {types['integer']}, budget_used {types['double']}, PRIMARY KEY (tenant_id, hour))",
    ]


def _completions(types: Types) -> list[str]:
    return [
        f"ALTER TABLE {STATE_TABLE} ADD COLUMN IF NOT EXISTS {column} {types['text']}"
        for column in ("reconciling_since", "completed_sync_at", "reconciled_at")
    ]


MIGRATIONS = (
    Migration(1, "the stream tables, sync state, listed ids, schema drift and api_usage", _first_release),
    Migration(2, "sync state: reconciling since, last complete sync, last reconciliation", _completions),
)
LATEST = MIGRATIONS[-1].version


def dripfeed_version() -> str:
    try:
        return metadata.version("dripfeed")
    except metadata.PackageNotFoundError:  # the code run from a checkout that was never installed
        return "unknown"


def recorded_version(backend: Backend, conn: Any) -> tuple[int, str | None]:
    """The newest version applied to the database (0 before any) and the dripfeed that applied it."""
    if not backend.table_exists(conn, VERSION_TABLE):
        return 0, None
    found = backend.execute(
        conn, f"SELECT version, dripfeed_version FROM {VERSION_TABLE} ORDER BY version DESC LIMIT 1"
    )
    return (int(found[0][0]), found[0][1]) if found else (0, None)


def migrate(backend: Backend, conn: Any) -> list[Migration]:
    """Bring the database to LATEST in one transaction on `conn`; return the migrations applied."""
    with backend.transaction(conn):
        version, written_by = recorded_version(backend, conn)
        if version > LATEST:
            raise WarehouseTooNew(
                f"the warehouse ({backend.location}) is at schema version {version}, written by dripfeed "
                f"{written_by or 'unknown'}; this dripfeed ({dripfeed_version()}) knows versions up to {LATEST}. "
                "Run the newer release against it (a warehouse is never migrated backwards), or point "
                "this one at another warehouse."
            )
        pending = [migration for migration in MIGRATIONS if migration.version > version]
        if not pending:
            return []
        types = backend.types
        backend.execute(
            conn,
            f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version {types['integer']} PRIMARY KEY, "
            f"summary {types['text']}, dripfeed_version {types['text']}, applied_at {types['timestamp']})",
        )
        for migration in pending:
            for statement in migration.statements(types):
                backend.execute(conn, statement)
            backend.execute(
                conn,
                backend.sql(f"INSERT INTO {VERSION_TABLE} VALUES (?, ?, ?, now())"),
                (migration.version, migration.summary, dripfeed_version()),
            )
        return pending
