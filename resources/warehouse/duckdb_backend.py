"""The embedded warehouse: a DuckDB file.

DuckDB lets one process open a file for writing: others wait (polling with jitter) while one
holds it, and dripfeed's processes also take turns on `<file>.lock` (writer_turn.py says why). A
writer hands its connection back every `hold_seconds` (see BatchWriter).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import tenacity

from .backend import Backend
from .record_sql import DuckDBRecords
from .writer_turn import TurnTaken, WriterTurn


def _locked_by_another_process(exc: BaseException) -> bool:
    return isinstance(exc, TurnTaken) or (isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower())


class DuckDBBackend(Backend):
    dialect = "duckdb"
    records = DuckDBRecords
    hold_seconds = 3.0
    exclusive = True
    duplicate_key = duckdb.ConstraintException

    def __init__(self, path: str) -> None:
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._turn = WriterTurn.of(path)  # this process's, shared by every backend of the same file
        self._turn_holders: dict[int, duckdb.DuckDBPyConnection] = {}  # open connections, each holding the turn

    @property
    def location(self) -> str:
        return self.path

    @tenacity.retry(
        retry=tenacity.retry_if_exception(_locked_by_another_process),
        wait=tenacity.wait_random(0.01, 0.05),  # short: a writer pauses only RELEASE_PAUSE between holds
        stop=tenacity.stop_after_delay(600),
        reraise=True,
    )
    def connect(self) -> duckdb.DuckDBPyConnection:
        self._turn.take()
        try:
            conn = duckdb.connect(self.path)
        except BaseException:
            self._turn.give_back()
            raise
        self._turn_holders[id(conn)] = conn
        try:
            # One thread: a batch is small, and the sync's fetching thread and the vendor need the other core.
            conn.execute("SET threads = 1")
            # A writer checkpoints when it hands the file back (BatchWriter); not also every 16 MB of log.
            conn.execute("SET checkpoint_threshold = '256MB'")
        except BaseException:
            self.close(conn)
            raise
        return conn

    def close(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Close the connection and give its turn back (once, however often it is closed)."""
        try:
            conn.close()  # when it is this process's last connection, DuckDB checkpoints and closes the file
        finally:
            if self._turn_holders.pop(id(conn), None) is not None:
                self._turn.give_back()

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

    def table_exists(self, conn: duckdb.DuckDBPyConnection, table: str) -> bool:
        found = conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary "
            "AND database_name = current_database() AND schema_name = current_schema()",
            [table],
        ).fetchone()
        return bool(found[0])

    def insert_many(self, conn: duckdb.DuckDBPyConnection, sql: str, rows: Sequence[tuple]) -> None:
        if rows:
            conn.executemany(sql, rows)

    def load_pages(self, conn: duckdb.DuckDBPyConnection, pages: Sequence[str]) -> dict[str, list[str]]:
        # A VARCHAR[] parameter of shape() itself (see DuckDBRecords.records): one call into DuckDB
        # instead of two, and no DataFrame that DuckDB would have to read under the GIL.
        return {"pages": list(pages)}
