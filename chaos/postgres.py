"""A throwaway Postgres server the campaign can also crash: initdb and pg_ctl from /usr/lib/postgresql
(as the `postgres` user when run as root), like tests/support/postgres_server.py, with a stop that
is a crash (`pg_ctl stop -m immediate`: no shutdown checkpoint, recovery from the WAL on start)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasklane_sim.server import free_port
from tests.support.postgres_server import fresh_database, postgres_bin


class PostgresServer:
    def __init__(self, name: str) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("Postgres is not installed: run tests/system-packages.sh (make test does)")
        # Its own directory under /tmp: the `postgres` user cannot enter the campaign's scratch directory.
        root = Path(tempfile.mkdtemp(prefix=f"dripfeed-chaos-pg-{name}-"))
        self.bindir, self.root, self.port = bindir, root, free_port()
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(root, "postgres", "postgres")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self.data = root / "data"
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "dripfeed", "--no-sync")
        self.url = f"postgresql://dripfeed@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_postgres, str(self.bindir / tool), *args], check=True, capture_output=True, timeout=120
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def crash(self) -> None:
        """Stop the server the way a lost machine would: no checkpoint, connections cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")


@contextmanager
def running_server(name: str) -> Iterator[PostgresServer]:
    server = PostgresServer(name)
    server.start()
    try:
        yield server
    finally:
        subprocess.run(
            [*server.as_postgres, str(server.bindir / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(server.root, ignore_errors=True)


@contextmanager
def postgres_database(backend: str) -> Iterator[str | None]:
    """A fresh warehouse database on a server of its own for `postgres`; None (the DuckDB default) else."""
    if backend != "postgres":
        yield None
        return
    with running_server("warehouse") as server:
        yield fresh_database(server.url, "warehouse")
