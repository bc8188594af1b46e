"""The API call ledger: every call counted per tenant, hour and endpoint, queryable with SQL.

SELECT tenant, hour, sum(counted) FROM dripfeed_api_calls GROUP BY 1, 2 ORDER BY 2;
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from .control_store import ControlStore, call_ledger

COUNTERS = ("calls", "counted", "not_modified", "rate_limited", "retries", "errors")


@dataclass(frozen=True)
class CallOutcome:
    counted: bool
    not_modified: bool = False
    rate_limited: bool = False
    retry: bool = False
    error: bool = False
    wait_seconds: float = 0.0


def hour_of(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(at))


def record_call(
    store: ControlStore, conn: sa.Connection, tenant: str, endpoint: str, outcome: CallOutcome, at: float
) -> None:
    """Add one call to its (tenant, hour, endpoint) row: an upsert of increments, safe from any process."""
    row = {
        "calls": 1,
        "counted": int(outcome.counted),
        "not_modified": int(outcome.not_modified),
        "rate_limited": int(outcome.rate_limited),
        "retries": int(outcome.retry),
        "errors": int(outcome.error),
        "wait_seconds": outcome.wait_seconds,
    }
    insert = store.insert(call_ledger).values(tenant=tenant, hour=hour_of(at), endpoint=endpoint, **row)
    increments = {name: call_ledger.c[name] + insert.excluded[name] for name in row}
    conn.execute(insert.on_conflict_do_update(index_elements=["tenant", "hour", "endpoint"], set_=increments))


def ledger_rows(store: ControlStore, tenant: str | None = None) -> list[dict]:
    query = sa.select(call_ledger).order_by(call_ledger.c.hour, call_ledger.c.endpoint)
    if tenant:
        query = query.where(call_ledger.c.tenant == tenant)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
