"""Running totals of what dripfeed did, kept for the metrics endpoint (dripfeed/metrics/): per
tenant the calls by outcome (written with the call ledger, call_ledger.py), per tenant and stream
the records and tombstones synced, the rows and drifted fields its last sync left, and per tier the
ticks, probes and run requests of its schedule.

They are counters since the store began, so they survive any restart of the endpoint, and a scrape
reads one row per tenant, stream or tier. Adding to them never fails the sync or tick that reports:
a store that refuses the write costs a figure, logged, not a tenant's sync or a period's runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa

from .call_ledger import FIELDS
from .store import ControlStore, call_totals, stream_totals, tier_totals

log = logging.getLogger("dripfeed.sync_totals")


@dataclass(frozen=True)
class StreamTotals:
    tenant: str
    stream: str
    records: int
    tombstones: int
    rows: int | None
    drift_fields: int


@dataclass(frozen=True)
class TierTotals:
    tier: str
    ticks: int
    probes: int
    runs_requested: int


class SyncTotals:
    def __init__(self, store: ControlStore) -> None:
        self.store = store

    def add_sync(self, tenant: str, stream: str, records: int, tombstones: int, rows: int, drift_fields: int) -> None:
        """A sync of the stream committed: add what it fetched, and keep what it left."""
        insert = self.store.insert(stream_totals).values(
            tenant=tenant, resource=stream, records=records, tombstones=tombstones, rows=rows, drift_fields=drift_fields
        )
        upsert = insert.on_conflict_do_update(
            index_elements=["tenant", "resource"],
            set_={
                "records": stream_totals.c.records + insert.excluded.records,
                "tombstones": stream_totals.c.tombstones + insert.excluded.tombstones,
                "rows": insert.excluded.rows,
                "drift_fields": insert.excluded.drift_fields,
            },
        )
        self._write(upsert, f"tenant {tenant!r} {stream}'s sync")

    def add_tick(self, tier: str, probes: int, runs_requested: int) -> None:
        insert = self.store.insert(tier_totals).values(tier=tier, ticks=1, probes=probes, runs_requested=runs_requested)
        upsert = insert.on_conflict_do_update(
            index_elements=["tier"],
            set_={name: tier_totals.c[name] + insert.excluded[name] for name in ("ticks", "probes", "runs_requested")},
        )
        self._write(upsert, f"the {tier} tier's tick")

    def _write(self, statement: sa.Executable, what: str) -> None:
        try:
            with self.store.transaction() as conn:
                conn.execute(statement)
        except sa.exc.SQLAlchemyError as failure:  # a figure lost, never the sync or the tick
            log.warning("the metrics' totals missed %s: %s", what, type(failure).__name__)

    def calls(self) -> dict[str, dict[str, float]]:
        """Each tenant's call sums (call_ledger.FIELDS) since the store began."""
        return {row["tenant"]: {name: row[name] for name in FIELDS} for row in self._rows(call_totals)}

    def stream_sums(self) -> dict[str, tuple[int, int, int]]:
        """Per stream, all tenants: (records, tombstones, rows)."""
        c = stream_totals.c
        query = sa.select(c.resource, sa.func.sum(c.records), sa.func.sum(c.tombstones), sa.func.sum(c.rows))
        with self.store.engine.connect() as conn:
            rows = conn.execute(query.group_by(c.resource)).all()
        return {
            stream: (int(records or 0), int(tombstones or 0), int(rows or 0))
            for stream, records, tombstones, rows in rows
        }

    def drifted(self) -> list[StreamTotals]:
        """The tenants' streams whose last sync saw drift."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(stream_totals).where(stream_totals.c.drift_fields > 0)).mappings()
            return [_stream_totals(r) for r in rows]

    def tiers(self) -> list[TierTotals]:
        return [TierTotals(r["tier"], r["ticks"], r["probes"], r["runs_requested"]) for r in self._rows(tier_totals)]

    def _rows(self, table: sa.Table) -> list[sa.RowMapping]:
        with self.store.engine.connect() as conn:
            return list(conn.execute(sa.select(table)).mappings())


def _stream_totals(row: sa.RowMapping) -> StreamTotals:
    return StreamTotals(
        row["tenant"], row["resource"], row["records"], row["tombstones"], row["rows"], row["drift_fields"]
    )
