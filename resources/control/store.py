"""The control store every dripfeed process shares: rate windows, call leases, the call ledger, stream
and tenant checks, export jobs, deferred tenants.

A SQLite file in the embedded setup, Postgres in production (a `postgresql://` URL): the
`SharedState` resource's `url` field. One schema through SQLAlchemy Core; the two dialects
differ only in how a transaction takes its lock. The schema is versioned by Alembic (`migrations/`):
the first process to open a store older than the code upgrades it, one process at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import tenacity
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ..urls import without_secrets

T = TypeVar("T")
DEFAULT_STATE = ".dev/control.sqlite3"
MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "dripfeed_control_version"
# The newest revision in migrations/versions (tests/resources/test_migrations.py checks it): a store
# already there opens with two quick queries (is there a version table, which revision), without
# importing Alembic.
SCHEMA_REVISION = "0002"
IN_CHUNK = 500  # values per IN (...) list of a query about many tenants

metadata = sa.MetaData()

rate_windows = sa.Table(
    "dripfeed_rate_windows",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    sa.Column("window_reset", sa.BigInteger),  # Unix seconds the current window ends (the vendor's X-RateLimit-Reset)
    sa.Column("spent", sa.Integer, nullable=False, default=0),  # calls dripfeed made in this window, all processes
    sa.Column("vendor_cap", sa.Integer),  # `spent` at which the vendor's remaining runs out, from its headers
    sa.Column("vendor_limit", sa.Integer),  # X-RateLimit-Limit last seen
    sa.Column("window_seconds", sa.Integer),  # learned from consecutive resets
    sa.Column("last_reset_seen", sa.BigInteger),
)

call_leases = sa.Table(
    "dripfeed_call_leases",
    metadata,
    sa.Column("lease_id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(63), nullable=False, index=True),
    sa.Column("calls", sa.Integer, nullable=False),  # calls reserved for this holder, made one at a time
    sa.Column("expires_at", sa.Float, nullable=False),  # a killed process's lease lapses on its own
)

call_ledger = sa.Table(
    "dripfeed_api_calls",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    sa.Column("hour", sa.String(20), primary_key=True),  # 2026-11-21T10:00:00Z
    sa.Column("endpoint", sa.String(40), primary_key=True),
    sa.Column("calls", sa.Integer, nullable=False, default=0),
    sa.Column("counted", sa.Integer, nullable=False, default=0),
    sa.Column("not_modified", sa.Integer, nullable=False, default=0),
    sa.Column("rate_limited", sa.Integer, nullable=False, default=0),
    sa.Column("retries", sa.Integer, nullable=False, default=0),
    sa.Column("errors", sa.Integer, nullable=False, default=0),  # all of the four classes below
    sa.Column("wait_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("auth_errors", sa.Integer, nullable=False, default=0, server_default="0"),  # 401, 403
    sa.Column("client_errors", sa.Integer, nullable=False, default=0, server_default="0"),  # other 4xx but 429
    sa.Column("server_errors", sa.Integer, nullable=False, default=0, server_default="0"),  # 5xx
    sa.Column("network_errors", sa.Integer, nullable=False, default=0, server_default="0"),  # no answer
)

# What the ledger counts of calls (beside the seconds they waited), each a column of both tables.
CALL_COUNTS = (
    "calls",
    "counted",
    "not_modified",
    "rate_limited",
    "retries",
    "errors",  # all of the four classes below
    "auth_errors",
    "client_errors",
    "server_errors",
    "network_errors",
)

# The ledger's sums per tenant since the store began, kept with it (call_ledger.py): what the metrics
# endpoint reads at each scrape, one row per tenant, where the ledger has one per tenant, hour and endpoint.
call_totals = sa.Table(
    "dripfeed_call_totals",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    *(sa.Column(name, sa.BigInteger, nullable=False, default=0, server_default="0") for name in CALL_COUNTS),
    sa.Column("wait_seconds", sa.Float, nullable=False, default=0.0, server_default="0"),
)

# What the syncs of each tenant's stream did, for the metrics endpoint (sync_totals.py).
stream_totals = sa.Table(
    "dripfeed_stream_totals",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    sa.Column("resource", sa.String(20), primary_key=True),
    sa.Column("records", sa.BigInteger, nullable=False, default=0, server_default="0"),  # upserted, since the start
    sa.Column("tombstones", sa.BigInteger, nullable=False, default=0, server_default="0"),
    sa.Column("rows", sa.BigInteger),  # the tenant's rows in the stream's table after its last sync
    sa.Column("drift_fields", sa.Integer, nullable=False, default=0, server_default="0"),  # in its last sync
)

# The tier schedules' ticks, probes and run requests since the store began (sync_totals.py).
tier_totals = sa.Table(
    "dripfeed_tier_totals",
    metadata,
    sa.Column("tier", sa.String(20), primary_key=True),
    sa.Column("ticks", sa.BigInteger, nullable=False, default=0, server_default="0"),
    sa.Column("probes", sa.BigInteger, nullable=False, default=0, server_default="0"),
    sa.Column("runs_requested", sa.BigInteger, nullable=False, default=0, server_default="0"),
)

# What dripfeed knows of each tenant's stream between syncs (stream_checks.py): the listing a probe
# may ask again with If-None-Match, and when the stream was last known complete.
stream_checks = sa.Table(
    "dripfeed_stream_checks",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    sa.Column("resource", sa.String(20), primary_key=True),  # the stream (the vendor calls it a resource)
    sa.Column("listing_since", sa.String(40)),  # the listing's updated_since (NULL: from the start)
    sa.Column("listing_etag", sa.String(200)),  # NULL: no listing to ask about; the next sync lists
    sa.Column("synced_at", sa.Float),  # Unix seconds the last complete sync of a run began
    sa.Column("checked_at", sa.Float),  # Unix seconds of the last probe that found the stream unchanged
    sa.Column("reconciled_at", sa.Float),  # Unix seconds the last reconciliation began
)

# Each tenant's last check and the state last reported to Dagster (tenant_checks.py).
tenant_checks = sa.Table(
    "dripfeed_tenant_checks",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    sa.Column("known_since", sa.Float, nullable=False),  # when dripfeed first saw the tenant
    sa.Column("checked_at", sa.Float),  # the last probe, whatever it found
    sa.Column("period", sa.String(40)),  # the tier's period that probe served, e.g. hourly:2026-12-05T10:00Z
    sa.Column("outcome", sa.String(20)),  # see tenant_checks.Outcome
    sa.Column("detail", sa.String(500)),  # what the probe found, for a failure what to do
    sa.Column("error_class", sa.String(20)),  # of the failure, when the tenant is failing
    sa.Column("failing_since", sa.Float),  # NULL while the tenant's last probe or sync succeeded
    sa.Column("failure_alerted", sa.Boolean, nullable=False, default=False),
    sa.Column("reported_state", sa.String(20)),  # the state last recorded in the Dagster instance
    sa.Column("reported_at", sa.Float),
    sa.Column("reported_target", sa.BigInteger),  # the tasks materialization that evaluation targeted
)

export_jobs = sa.Table(
    "dripfeed_export_jobs",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),
    sa.Column("resource", sa.String(20), primary_key=True),  # the stream (the vendor calls it a resource)
    sa.Column("idempotency_key", sa.String(255), nullable=False),  # recorded before the POST: a retry reuses it
    sa.Column("updated_before", sa.String(40), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),  # 1, then one more per resubmission
    sa.Column("export_id", sa.String(100)),  # NULL until the vendor has answered the submission
    sa.Column("status", sa.String(20), nullable=False),  # see export_jobs.py
    sa.Column("submitted_at", sa.Float, nullable=False),  # Unix seconds of the first submission (the timeout's start)
    sa.Column("next_poll_at", sa.Float, nullable=False),
    sa.Column("completed_at", sa.Float),
    sa.Column("result_url", sa.String(1000)),
    sa.Column("record_count", sa.Integer),
    sa.Column("error", sa.String(500)),
)

deferrals = sa.Table(
    "dripfeed_deferrals",
    metadata,
    sa.Column("tenant", sa.String(63), primary_key=True),  # see deferrals.py
    sa.Column("resume_at", sa.Float, nullable=False),  # Unix seconds the tenant may call Tasklane again
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("deferred_at", sa.Float, nullable=False),
    sa.Column("run_id", sa.String(64)),  # the sync run that ended early; NULL for a wait met outside a sync
    sa.Column("vendor_block", sa.Boolean, nullable=False),  # Tasklane asked for the wait (Retry-After)
)


@tenacity.retry(
    retry=tenacity.retry_if_exception_message(match="database is locked"),
    wait=tenacity.wait_random(0.01, 0.1),
    stop=tenacity.stop_after_delay(60),
    reraise=True,
)
def _use_wal(dbapi_connection: Any) -> None:
    """WAL lets readers and the one writer overlap. Switching to it needs an exclusive lock and
    SQLite answers "locked" at once (no busy wait) when processes open a new store together."""
    if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        dbapi_connection.execute("PRAGMA journal_mode=WAL")


def chunks(values: Iterable[T], size: int = IN_CHUNK) -> Iterator[list[T]]:
    """`values` in lists of at most `size`, for queries about many tenants or rows."""
    chunk: list[T] = []
    for value in values:
        chunk.append(value)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def state_url(value: str) -> str:
    """The control store's location as a SQLAlchemy URL: a `postgresql://` URL as is, anything else a
    SQLite path."""
    if value.startswith("postgresql://"):
        # psycopg2 comes with dagster-postgres; SQLAlchemy 2.1 would otherwise look for psycopg 3.
        return "postgresql+psycopg2://" + value.removeprefix("postgresql://")
    if value.startswith(("postgresql+", "sqlite://")):
        return value
    Path(value).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{value}"


class ControlStoreTooNew(RuntimeError):
    """The control store was upgraded by a newer dripfeed than this one."""


class ControlStore:
    """Short, locked transactions on a shared database; safe across processes and threads."""

    def __init__(self, url: str = DEFAULT_STATE, *, reads_only: bool = False) -> None:
        """`reads_only`: a process that only reads (the metrics endpoint): on SQLite its reads take no
        write lock, so a scrape never makes a run's budget exchange or a tick wait."""
        self.url = state_url(url)
        self.engine: Engine = sa.create_engine(self.url, pool_pre_ping=True, **self._engine_options())
        if self.dialect == "sqlite":
            self._make_sqlite_transactions_immediate(reads_only)
        self.upgraded_from: str | None = None  # the revision this process upgraded the store from ("none": new)
        try:
            with self.engine.begin() as connection:
                if self._revision(connection) != SCHEMA_REVISION:
                    self._bring_to_head(connection)
        except BaseException:
            self.engine.dispose()  # a refused or failed upgrade keeps no pooled connection
            raise

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def location(self) -> str:
        """Where the store is, for messages: never a password."""
        return without_secrets(self.engine.url.render_as_string(hide_password=False))

    @staticmethod
    def _revision(connection: Connection) -> str | None:
        """The store's Alembic revision; None for a new store, or one made before versioning."""
        if not sa.inspect(connection).has_table(VERSION_TABLE):
            return None
        return connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()

    def _bring_to_head(self, connection: Connection) -> None:
        """Apply the revisions the store lacks, in this transaction; refuse a store a newer dripfeed
        upgraded. Processes that open the store together take turns: Postgres by an advisory lock,
        SQLite by its write lock (every transaction here begins IMMEDIATE)."""
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        if self.dialect == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(7343017)"))
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        revision = self._revision(connection)  # again: another process may have upgraded it meanwhile
        known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
        if revision is not None and revision not in known:
            raise ControlStoreTooNew(
                f"the control store ({self.location}) is at schema revision {revision}, which this dripfeed "
                f"does not know (its newest is {SCHEMA_REVISION}): a newer dripfeed upgraded it. Run that "
                "release against it (a store is never migrated backwards), or point this one at another store."
            )
        if revision != SCHEMA_REVISION:
            command.upgrade(config, "head")
            self.upgraded_from = revision or "none"

    def _engine_options(self) -> dict[str, Any]:
        if self.url.startswith("sqlite"):
            return {"connect_args": {"timeout": 60, "check_same_thread": False}}
        # A run needs one or two connections; a tier tick probes many tenants at once (each a thread).
        return {"pool_size": 4, "max_overflow": 28}

    def _make_sqlite_transactions_immediate(self, reads_only: bool) -> None:
        """SQLite's default deferred transactions deadlock when two readers both upgrade to write;
        BEGIN IMMEDIATE takes the write lock first, so every budget transaction is serialised. A
        process that only reads runs each statement on its own (WAL readers never block writers)."""

        @sa.event.listens_for(self.engine, "connect")
        def _connect(dbapi_connection: Any, _: Any) -> None:
            dbapi_connection.isolation_level = None
            _use_wal(dbapi_connection)
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

        if reads_only:
            return

        @sa.event.listens_for(self.engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT, which has on_conflict_do_update / do_nothing."""
        return (postgresql if self.dialect == "postgresql" else sqlite).insert(table)

    def upsert_many(
        self,
        connection: Connection,
        table: sa.Table,
        rows: Sequence[Mapping[str, object]],
        keys: Sequence[str],
        update: Callable[[Any], Mapping[str, Any]] | None = None,
    ) -> None:
        """INSERT `rows` ON CONFLICT (`keys`) DO UPDATE SET `update(insert)`, or DO NOTHING without
        `update`, in as few statements as SQLAlchemy's pages of multi-row VALUES allow.

        SQLAlchemy sends such an upsert row by row, a round trip each, unless it has a RETURNING
        clause (sqlalchemy#13130): a tick's hundreds of tenants cost hundreds of round trips per table.
        So it returns the keys, unread. One statement must not update a row twice (Postgres refuses
        it), so the keys of `rows` must be unique."""
        if not rows:
            return
        if len({tuple(row[key] for key in keys) for row in rows}) != len(rows):
            raise ValueError(f"rows for {table.name} repeat a key ({', '.join(keys)}): merge them first")
        insert = self.insert(table)
        if update is None:
            statement = insert.on_conflict_do_nothing(index_elements=keys)
        else:
            statement = insert.on_conflict_do_update(index_elements=keys, set_=update(insert))
        connection.execute(statement.returning(*(table.c[key] for key in keys)), rows)

    def lock_tenant_rows(self, connection: Connection, tenants: Sequence[str]) -> dict[str, sa.Row]:
        """The tenants' rate-window rows, created if needed and locked for this transaction in the order
        of their ids (two transactions never wait on each other), by tenant id."""
        if not tenants:
            return {}
        self.upsert_many(
            connection, rate_windows, [{"tenant": t, "spent": 0} for t in sorted(set(tenants))], ["tenant"]
        )
        found = {}
        for chunk in chunks(sorted(tenants)):
            query = sa.select(rate_windows).where(rate_windows.c.tenant.in_(chunk)).order_by(rate_windows.c.tenant)
            if self.dialect == "postgresql":
                query = query.with_for_update()
            found.update((row.tenant, row) for row in connection.execute(query))
        return found

    def dispose(self) -> None:
        self.engine.dispose()
