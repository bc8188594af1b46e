"""Comparing what the warehouse holds for a tenant with the simulator's ground truth."""

from __future__ import annotations

import json
from typing import Any

from resources.streams import STREAMS
from resources.warehouse import Warehouse
from tasklane_sim import SimServer


def warehouse_records(warehouse: Warehouse, tenant: str, stream: str) -> list[dict[str, Any]]:
    rows = warehouse.query(f"SELECT _raw FROM {stream} WHERE tenant_id = ? ORDER BY id", (tenant,))
    return [json.loads(raw) if isinstance(raw, str) else raw for (raw,) in rows]


def assert_equals_ground_truth(sim: SimServer, warehouse: Warehouse, tenant: str) -> None:
    for stream in STREAMS:
        truth = sim.admin.truth(tenant, stream)
        assert warehouse_records(warehouse, tenant, stream) == truth, f"{tenant} {stream} differs from the simulator"
        soft_deleted = warehouse.query(
            f"SELECT id FROM {stream} WHERE tenant_id = ? AND _deleted_at IS NOT NULL ORDER BY id", (tenant,)
        )
        assert [r for (r,) in soft_deleted] == [r["id"] for r in truth if r["deleted_at"]]
