"""A separate process writing batches for one tenant into a shared warehouse (concurrency tests)."""

from __future__ import annotations

import sys

from resources.warehouse import SyncState, Warehouse, page_of


def main() -> None:
    url, tenant, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
    warehouse = Warehouse(url=url)
    for batch in range(batches):
        records = [
            {
                "id": f"usr_{batch}_{n}",
                "created_at": "2026-01-01T00:00:00.000Z",
                "updated_at": f"2026-01-01T00:00:{batch:02d}.000Z",
                "deleted_at": None,
                "email": f"{n}@{tenant}.example",
                "name": "n",
                "role": "member",
                "active": True,
            }
            for n in range(50)
        ]
        warehouse.write(tenant, "users", [page_of(records)], SyncState(watermark=records[-1]["updated_at"]))


if __name__ == "__main__":
    main()
