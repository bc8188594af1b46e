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


def differences(held: list[dict[str, Any]], truth: list[dict[str, Any]]) -> str:
    """Which records differ, by id: what a failing comparison needs to be diagnosed."""
    mine, theirs = {r.get("id"): r for r in held}, {r.get("id"): r for r in truth}
    missing = sorted(theirs.keys() - mine.keys())
    extra = sorted(mine.keys() - theirs.keys())
    changed = [i for i in sorted(mine.keys() & theirs.keys()) if mine[i] != theirs[i]]
    shown = [f"{i}: held {mine[i]} vs {theirs[i]}" for i in changed[:3]]
    return f"missing {missing[:10]} ({len(missing)}), extra {extra[:10]} ({len(extra)}), changed {len(changed)} {shown}"


def assert_equals_ground_truth(sim: SimServer, warehouse: Warehouse, tenant: str) -> None:
    for stream in STREAMS:
        truth = sim.admin.truth(tenant, stream)
        held = warehouse_records(warehouse, tenant, stream)
        assert held == truth, f"{tenant} {stream} differs from the simulator: {differences(held, truth)}"
        soft_deleted = warehouse.query(
            f"SELECT id FROM {stream} WHERE tenant_id = ? AND _deleted_at IS NOT NULL ORDER BY id", (tenant,)
        )
        assert [r for (r,) in soft_deleted] == [r["id"] for r in truth if r["deleted_at"]]


def assert_live_rows_equal_ground_truth(sim: SimServer, warehouse: Warehouse, tenant: str, stream: str) -> None:
    """The rows the warehouse holds as live are exactly the records Tasklane lists as live. (After
    Tasklane dropped tombstones, the warehouse rightly keeps soft-deleted rows the vendor forgot.)"""
    live = [record for record in sim.admin.truth(tenant, stream) if not record["deleted_at"]]
    rows = warehouse.query(
        f"SELECT _raw FROM {stream} WHERE tenant_id = ? AND _deleted_at IS NULL ORDER BY id", (tenant,)
    )
    held = [json.loads(raw) if isinstance(raw, str) else raw for (raw,) in rows]
    assert held == live, f"{tenant} {stream}: the live rows differ from the records Tasklane lists as live"
