"""One SQLite file per workspace: keyset pages on (updated_at, id) are index seeks, never scans."""

from __future__ import annotations

import math
import resource as rlimit
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

from .config import RESOURCES

Row = tuple[str, int, int, bytes]  # id, updated_ms, deleted (0/1), JSON body
FILES_PER_STORE = 3  # the database, its write-ahead log and its shared-memory index
FILES_KEPT_FREE = 2000  # sockets, export files, the truth endpoint's readers
MIN_OPEN_STORES = 64  # below this, requests spread over workspaces would reopen one at nearly every call


class OpenStores:
    """The workspaces' connections kept open, the most recently used last. A simulator of thousands of
    workspaces would otherwise run out of file descriptors (three per workspace in WAL mode): past
    `limit`, the least recently used workspace's connection is closed, and reopened when next used."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._open: OrderedDict[int, WorkspaceStore] = OrderedDict()
        self._lock = threading.Lock()

    def touch(self, store: WorkspaceStore) -> None:
        with self._lock:
            self._open[id(store)] = store
            self._open.move_to_end(id(store))
            while len(self._open) > self.limit:
                _, oldest = self._open.popitem(last=False)
                oldest.release()

    def forget(self, store: WorkspaceStore) -> None:
        with self._lock:
            self._open.pop(id(store), None)


def _store_limit() -> int:
    """How many workspaces stay open: the process's file limit (raised to what the system allows, as
    servers do; a shell's default soft limit is often 1,024) less what the rest of the simulator uses."""
    soft, hard = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)
    if soft != rlimit.RLIM_INFINITY and (hard == rlimit.RLIM_INFINITY or hard > soft):
        wanted = 1_048_576 if hard == rlimit.RLIM_INFINITY else hard
        try:
            rlimit.setrlimit(rlimit.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass  # the system refuses: work within the soft limit
    if soft == rlimit.RLIM_INFINITY:
        return 1_000_000
    return max(MIN_OPEN_STORES, (soft - min(FILES_KEPT_FREE, soft // 2)) // FILES_PER_STORE)


OPEN_STORES = OpenStores(_store_limit())


class WorkspaceStore:
    """Visible records of one workspace. Only the simulator's event loop writes to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        # The oldest tombstone's updated_ms (inf: none; None: not known yet, as for a file kept from
        # an earlier run), so that the minute's purge of a workspace with nothing to drop neither
        # opens its file nor queries it.
        self._oldest_tombstone_ms: float | None = None
        for resource in RESOURCES:
            # A rowid table: history is appended in generation order, and the id index is built
            # once afterwards. (Keyed on the random-looking ids, 1M inserts thrash the page cache.)
            self.db.execute(
                f"CREATE TABLE IF NOT EXISTS {resource} ("
                "id TEXT NOT NULL, updated_ms INTEGER NOT NULL, deleted INTEGER NOT NULL, body BLOB NOT NULL)"
            )

    @property
    def db(self) -> sqlite3.Connection:
        """The workspace's connection, opened again if it was closed to keep file descriptors free."""
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA cache_size=-65536")
            db.execute("PRAGMA mmap_size=4294967296")  # page reads straight from the OS page cache
            self._db = db
        OPEN_STORES.touch(self)
        return self._db

    def release(self) -> None:
        """Close the connection until the workspace is used again (its data stays in its file)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def bulk_load(self, resource: str, rows: Iterable[Row]) -> None:
        """Insert generated history in one transaction; indexes are built afterwards, which is faster."""
        self.db.execute("BEGIN")
        self.db.executemany(f"INSERT INTO {resource} VALUES (?, ?, ?, ?)", rows)
        self.db.execute("COMMIT")
        self._oldest_tombstone_ms = None

    def build_indexes(self) -> None:
        for resource in RESOURCES:
            self.db.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {resource}_id ON {resource} (id)")
            self.db.execute(f"CREATE INDEX IF NOT EXISTS {resource}_position ON {resource} (updated_ms, id)")
            self.db.execute(
                f"CREATE INDEX IF NOT EXISTS {resource}_live_position ON {resource} (updated_ms, id) WHERE deleted = 0"
            )
            self.db.execute(
                f"CREATE INDEX IF NOT EXISTS {resource}_tombstones ON {resource} (updated_ms) WHERE deleted = 1"
            )
        self.db.execute("ANALYZE")

    def page(
        self,
        resource: str,
        since_ms: int,
        after: tuple[int, str] | None,
        include_deleted: bool,
        limit: int,
    ) -> list[tuple[str, int, bytes]]:
        """Up to `limit` records ordered by (updated_ms, id), starting after the cursor position.

        A cursor's position already satisfies `since` (cursors are bound to their query), so with a
        cursor the row-value comparison alone bounds the index seek; adding `updated_ms >= since`
        makes SQLite seek from `since` and filter forward, which is a scan on deep pages.
        """
        live = "AND deleted = 0 " if not include_deleted else ""
        order = f"{live}ORDER BY updated_ms, id LIMIT ?"
        if after is None:
            sql = f"SELECT id, updated_ms, body FROM {resource} WHERE updated_ms >= ? {order}"
            return self.db.execute(sql, (since_ms, limit)).fetchall()
        sql = f"SELECT id, updated_ms, body FROM {resource} WHERE (updated_ms, id) > (?, ?) {order}"
        return self.db.execute(sql, (after[0], after[1], limit)).fetchall()

    def get(self, resource: str, record_id: str) -> tuple[int, int, bytes] | None:
        return self.db.execute(
            f"SELECT updated_ms, deleted, body FROM {resource} WHERE id = ?", (record_id,)
        ).fetchone()

    def put(self, resource: str, row: Row) -> bool:
        """Upsert where the newer write wins: a late-visible older write never replaces a newer one."""
        cursor = self.db.execute(
            f"INSERT INTO {resource} VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "updated_ms = excluded.updated_ms, deleted = excluded.deleted, body = excluded.body "
            f"WHERE excluded.updated_ms >= {resource}.updated_ms",
            row,
        )
        if row[2] and self._oldest_tombstone_ms is not None:
            self._oldest_tombstone_ms = min(self._oldest_tombstone_ms, row[1])
        return cursor.rowcount > 0

    def rewrite(self, resource: str, rows: Iterable[tuple[bytes, str]]) -> None:
        """Replace bodies in place (a schema change); positions do not move."""
        self.db.execute("BEGIN")
        self.db.executemany(f"UPDATE {resource} SET body = ? WHERE id = ?", rows)
        self.db.execute("COMMIT")

    def scan(self, resource: str, *, order: str = "id") -> Iterator[tuple[str, int, int, bytes]]:
        yield from self.db.execute(f"SELECT id, updated_ms, deleted, body FROM {resource} ORDER BY {order}")

    def count(self, resource: str) -> int:
        return self.db.execute(f"SELECT count(*) FROM {resource}").fetchone()[0]

    def purge_tombstones(self, before_ms: int) -> int:
        if self._oldest_tombstone_ms is not None and self._oldest_tombstone_ms >= before_ms:
            return 0
        purged = 0
        oldest = math.inf
        for resource in RESOURCES:
            purged += self.db.execute(
                f"DELETE FROM {resource} WHERE deleted = 1 AND updated_ms < ?", (before_ms,)
            ).rowcount
            (left,) = self.db.execute(f"SELECT min(updated_ms) FROM {resource} WHERE deleted = 1").fetchone()
            oldest = min(oldest, math.inf if left is None else left)
        self._oldest_tombstone_ms = oldest
        return purged

    def close(self) -> None:
        OPEN_STORES.forget(self)
        self.release()
