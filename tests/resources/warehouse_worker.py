"""A separate process writing batches for one tenant into a shared warehouse (concurrency tests)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from resources.warehouse import SyncState, Warehouse
from resources.warehouse_schema import shape_row


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
        rows = [shape_row("users", r, tenant, datetime.now(UTC))[0] for r in records]
        warehouse.write(tenant, "users", rows, SyncState(watermark=records[-1]["updated_at"]))


if __name__ == "__main__":
    main()
