"""The API call ledger: every call counted per tenant, hour and endpoint, queryable with SQL.

    SELECT tenant, hour, sum(counted) FROM dripfeed_api_calls GROUP BY 1, 2 ORDER BY 2;

A client adds its calls up in memory and writes them with its next budget transaction (at most
one block of calls later), as upserts of increments. The same statement adds them to the tenant's
running totals (`dripfeed_call_totals`), which the metrics endpoint reads.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

from .store import CALL_COUNTS, ControlStore, call_ledger, call_totals

ErrorClass = Literal["auth", "client", "server", "network"]  # a failed call's, by its answer
ERROR_FIELDS: dict[ErrorClass, str] = {
    "auth": "auth_errors",  # 401, 403: a token revoked or without access
    "client": "client_errors",  # any other 4xx but 429
    "server": "server_errors",  # 5xx
    "network": "network_errors",  # no answer: refused, reset, timed out
}
FIELDS = (*CALL_COUNTS, "wait_seconds")


def error_class(status: int | None) -> ErrorClass | None:
    """A call's error class by its answer; None for a call that did not fail (2xx, 304, 429)."""
    if status is None:
        return "network"
    if status in (401, 403):
        return "auth"
    if status >= 500:
        return "server"
    if status >= 400 and status != 429:
        return "client"
    return None


@dataclass(frozen=True)
class CallOutcome:
    counted: bool
    not_modified: bool = False
    rate_limited: bool = False
    retry: bool = False
    error: ErrorClass | None = None
    wait_seconds: float = 0.0


def hour_of(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(at))


class PendingLedger:
    """Calls not yet written, summed per (hour, endpoint)."""

    def __init__(self, store: ControlStore, tenant: str) -> None:
        self.store, self.tenant = store, tenant
        self.rows: defaultdict[tuple[str, str], Counter] = defaultdict(Counter)

    def add(self, endpoint: str, outcome: CallOutcome, at: float) -> None:
        self.rows[(hour_of(at), endpoint)].update(
            calls=1,
            counted=int(outcome.counted),
            not_modified=int(outcome.not_modified),
            rate_limited=int(outcome.rate_limited),
            retries=int(outcome.retry),
            errors=int(outcome.error is not None),
            wait_seconds=outcome.wait_seconds,
        )
        if outcome.error is not None:
            self.rows[(hour_of(at), endpoint)][ERROR_FIELDS[outcome.error]] += 1

    def write(self, conn: sa.Connection) -> None:
        """Upsert the sums and forget them (the caller's transaction makes it all or nothing)."""
        write_ledger_rows(conn, self.store, self.take_rows())

    def take_rows(self) -> list[dict[str, object]]:
        """The sums as ledger rows, forgotten here."""
        rows = [
            {"tenant": self.tenant, "hour": hour, "endpoint": endpoint} | {name: sums.get(name, 0) for name in FIELDS}
            for (hour, endpoint), sums in self.rows.items()
        ]
        self.rows.clear()
        return rows


def write_ledger_rows(conn: sa.Connection, store: ControlStore, rows: Sequence[dict[str, object]]) -> None:
    """Upsert ledger rows (`PendingLedger.take_rows`, of any tenants) as increments, and add them to
    each tenant's totals, in the caller's transaction. Rows for the same tenant, hour and endpoint
    (two clients of a tenant) are summed first: one statement may not update a row twice."""
    if not rows:
        return
    ledger: defaultdict[tuple[str, str, str], Counter] = defaultdict(Counter)
    totals: defaultdict[str, Counter] = defaultdict(Counter)
    for row in rows:
        sums = {name: row[name] for name in FIELDS}
        ledger[(str(row["tenant"]), str(row["hour"]), str(row["endpoint"]))].update(sums)  # type: ignore[arg-type]
        totals[str(row["tenant"])].update(sums)  # type: ignore[arg-type]
    store.upsert_many(
        conn,
        call_ledger,
        [
            {"tenant": tenant, "hour": hour, "endpoint": endpoint} | {name: sums.get(name, 0) for name in FIELDS}
            for (tenant, hour, endpoint), sums in ledger.items()
        ],
        ["tenant", "hour", "endpoint"],
        lambda new: {name: call_ledger.c[name] + new.excluded[name] for name in FIELDS},
    )
    store.upsert_many(
        conn,
        call_totals,
        [{"tenant": tenant} | {name: sums.get(name, 0) for name in FIELDS} for tenant, sums in sorted(totals.items())],
        ["tenant"],
        lambda new: {name: call_totals.c[name] + new.excluded[name] for name in FIELDS},
    )


def ledger_rows(store: ControlStore, tenant: str | None = None, since_hour: str | None = None) -> list[dict]:
    query = sa.select(call_ledger).order_by(call_ledger.c.hour, call_ledger.c.endpoint)
    if tenant:
        query = query.where(call_ledger.c.tenant == tenant)
    if since_hour:
        query = query.where(call_ledger.c.hour >= since_hour)
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
