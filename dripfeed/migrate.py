"""`python -m dripfeed.migrate`: bring the warehouse and the control store that DRIPFEED_WAREHOUSE and
DRIPFEED_STATE name (or the embedded defaults) to this release's schemas, and say where each stood.
Any dripfeed process would do it when it first opens them; this is the upgrade step to run before a
new release's processes start (docs/operations.md, "Upgrade to a new release").

It upgrades; it does not create: a DuckDB or SQLite file that does not exist is refused (a mistyped
path, a setting missing from the deploy job), and an empty Postgres database is named as such. A
database that a newer release upgraded is refused, naming both versions. Refusals exit with status 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from resources.control.store import (
    DEFAULT_STATE,
    SCHEMA_REVISION,
    ControlStore,
    ControlStoreTooNew,
    rate_windows,
    state_url,
)
from resources.urls import without_secrets
from resources.warehouse.migrations import LATEST, STATE_TABLE, WarehouseTooNew, migrate, recorded_version
from resources.warehouse.resource import DEFAULT_WAREHOUSE, backend_for


class NothingToUpgrade(RuntimeError):
    """The setting names no existing database."""


def setting(name: str, default: str) -> tuple[str, str]:
    """(the value, how it was chosen)."""
    value = os.environ.get(name)
    return (value, name) if value else (default, f"{name} is not set: the embedded default")


def existing_file(url: str, what: str, how: str) -> None:
    if not url.startswith("postgresql") and not Path(url).exists():
        raise NothingToUpgrade(
            f"no {what} at {url} ({how}): nothing was created. Set it to the deployment's {what} and run this again."
        )


def migrate_warehouse(url: str, how: str) -> str:
    existing_file(url, "warehouse", how)
    backend = backend_for(url)
    conn = backend.connect()
    try:
        with backend.transaction(conn):
            before, _ = recorded_version(backend, conn)
            had_tables = backend.table_exists(conn, STATE_TABLE)
        applied = migrate(backend, conn)
    finally:
        backend.close(conn)
    where = f"warehouse {backend.location} ({how})"
    if not applied:
        return f"{where}: at version {LATEST}, nothing to do"
    if before == 0 and not had_tables:
        return f"{where}: was empty; created at version {LATEST}"
    steps = "; ".join(f"{migration.version}: {migration.summary}" for migration in applied)
    return f"{where}: version {before} -> {LATEST} ({steps})"


def migrate_control_store(url: str, how: str) -> str:
    existing_file(url, "control store", how)
    engine = sa.create_engine(state_url(url))
    with engine.connect() as connection:
        had_tables = sa.inspect(connection).has_table(rate_windows.name)
    engine.dispose()
    store = ControlStore(url)  # opening it upgrades it
    store.dispose()
    where = f"control store {without_secrets(url)} ({how})"
    if store.upgraded_from is None:
        return f"{where}: at revision {SCHEMA_REVISION}, nothing to do"
    if not had_tables:
        return f"{where}: was empty; created at revision {SCHEMA_REVISION}"
    return f"{where}: revision {store.upgraded_from} -> {SCHEMA_REVISION}"


def main() -> None:
    try:
        print(migrate_warehouse(*setting("DRIPFEED_WAREHOUSE", DEFAULT_WAREHOUSE)))
        print(migrate_control_store(*setting("DRIPFEED_STATE", DEFAULT_STATE)))
    except (WarehouseTooNew, ControlStoreTooNew, NothingToUpgrade) as refused:
        raise SystemExit(str(refused)) from None


if __name__ == "__main__":
    main()
