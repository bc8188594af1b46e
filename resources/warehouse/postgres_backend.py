"""The production warehouse: Postgres, through psycopg2."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from ..urls import without_secrets
from .backend import Backend
from .record_sql import PostgresRecords

COLUMNS_SQL = (
    "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position"
)


class PostgresBackend(Backend):
    dialect = "postgres"
    records = PostgresRecords
    duplicate_key = psycopg2.errors.UniqueViolation

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def location(self) -> str:
        return without_secrets(self.url)

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
        return dict(self.execute(conn, COLUMNS_SQL, (table,)))

    def table_exists(self, conn: Any, table: str) -> bool:
        return self.execute(conn, "SELECT to_regclass(%s) IS NOT NULL", (table,))[0][0]

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
