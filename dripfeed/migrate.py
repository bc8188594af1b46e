"""`python -m dripfeed.migrate`: bring the warehouse and the control store that the environment names
(DRIPFEED_WAREHOUSE, DRIPFEED_STATE, or the embedded defaults) to this release's schemas, and say
where each stood. Any dripfeed process would do it when it first opens them; this is the upgrade
step to run before a new release's processes start (docs/operations.md). A database that a newer
release upgraded is refused, naming both versions, with exit status 1."""

from __future__ import annotations

import os

from resources.control.store import DEFAULT_STATE, SCHEMA_REVISION, ControlStore, ControlStoreTooNew
from resources.warehouse.migrations import LATEST, WarehouseTooNew, migrate, recorded_version
from resources.warehouse.resource import DEFAULT_WAREHOUSE, backend_for


def migrate_warehouse(url: str) -> str:
    backend = backend_for(url)
    conn = backend.connect()
    try:
        with backend.transaction(conn):
            before, _ = recorded_version(backend, conn)
        applied = migrate(backend, conn)
    finally:
        backend.close(conn)
    if not applied:
        return f"warehouse {backend.location}: at version {LATEST}, nothing to do"
    steps = "; ".join(f"{migration.version}: {migration.summary}" for migration in applied)
    return f"warehouse {backend.location}: version {before} -> {LATEST} ({steps})"


def migrate_control_store(url: str) -> str:
    store = ControlStore(url)  # opening it upgrades it
    store.dispose()
    if store.upgraded_from is None:
        return f"control store {store.location}: at revision {SCHEMA_REVISION}, nothing to do"
    return f"control store {store.location}: revision {store.upgraded_from} -> {SCHEMA_REVISION}"


def main() -> None:
    try:
        print(migrate_warehouse(os.environ.get("DRIPFEED_WAREHOUSE") or DEFAULT_WAREHOUSE))
        print(migrate_control_store(os.environ.get("DRIPFEED_STATE") or DEFAULT_STATE))
    except (WarehouseTooNew, ControlStoreTooNew) as refused:
        raise SystemExit(str(refused)) from None


if __name__ == "__main__":
    main()
