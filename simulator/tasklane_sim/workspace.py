"""One simulated workspace: its records, late-visible writes, budget, cursors, exports and counters."""

from __future__ import annotations

import heapq
import itertools
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .config import RESOURCES, Knobs, WorkspaceSpec
from .crafted_replies import CraftedReplies
from .cursors import CursorCodec
from .exports import ExportService
from .rate_limit import FixedWindowLimiter
from .records import DAY_MS, EVENT_NOUN, RecordFactory, SchemaChange
from .store import WorkspaceStore
from .timestamps import format_ms, now_ms

MUTATION_SHARE = {"tasks": 0.8, "projects": 0.1, "users": 0.1}
FAULT_KINDS = ("error", "slow", "drop", "truncate")
REPORTED_TOTALS = ("requests", "counted", "not_modified", "rate_limited")  # present even when zero

VisibleHook = Callable[["Workspace", str, str, str], None]


@dataclass(order=True)
class _PendingWrite:
    visible_ms: int
    seq: int
    resource: str
    record_id: str
    updated_ms: int
    deleted: int
    record: dict
    verb: str


class Workspace:
    """All of a workspace's state. Only the simulator's event loop calls into it."""

    def __init__(self, spec: WorkspaceSpec, seed: int, data_dir: Path, tokens: dict[str, int | None]) -> None:
        self.id = spec.id
        self.spec = spec
        self.knobs: Knobs = spec.knobs()
        self.seed = seed
        db_path = data_dir / f"{spec.id}.sqlite3"
        for stale in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
            stale.unlink(missing_ok=True)
        self.store = WorkspaceStore(db_path)
        self.next_ordinal = spec.records.model_dump()
        self.factory = RecordFactory(spec.id, seed, self.next_ordinal)
        self.rng = random.Random(f"{seed}:{spec.id}:runtime")
        self.tokens = tokens
        self.revoked: set[str] = set()
        self.limiter = FixedWindowLimiter()
        self.cursors = CursorCodec(random.Random(f"{seed}:{spec.id}:cursor").randbytes(32))
        self.crafted = CraftedReplies()
        self.exports = ExportService(spec.id, db_path, data_dir, random.Random(f"{seed}:{spec.id}:exports"))
        self.counters: defaultdict[str, Counter] = defaultdict(Counter)
        self.in_flight = 0
        self.max_in_flight = 0
        self.on_visible: VisibleHook | None = None
        self._pending: list[_PendingWrite] = []
        self._pending_ids: set[tuple[str, str]] = set()
        self._seq = itertools.count()
        self._mutation_debt: Counter = Counter()

    # --- history ------------------------------------------------------------------------------
    def generate(self, as_of_ms: int) -> None:
        """Deterministic history for (seed, workspace, as_of): the same config gives the same records."""
        rng = random.Random(f"{self.seed}:{self.id}:history")
        span = int(self.spec.history_days * DAY_MS)
        retention = int(self.knobs.tombstone_retention_days * DAY_MS)
        factory, deleted_share = self.factory, self.spec.deleted_fraction

        def rows(resource: str) -> Iterator[tuple[str, int, int, bytes]]:
            # Draw every record's timestamps first, then write in (updated_at) order: rows that sit
            # together on a page sit together on disk, so a keyset page reads contiguous rows.
            stamps = []
            for ordinal in range(self.next_ordinal[resource]):
                created = as_of_ms - int(rng.random() * span)
                updated = created + int(rng.random() * (as_of_ms - created))
                deleted = max(updated, as_of_ms - int(rng.random() * retention)) if rng.random() < deleted_share else 0
                stamps.append((deleted or updated, ordinal, created, deleted))
            stamps.sort()
            for position, ordinal, created, deleted in stamps:
                if deleted:
                    record = factory.tombstone(resource, factory.id(resource, ordinal), deleted)
                else:
                    record = factory.new(resource, ordinal, created, position, rng)
                yield record["id"], position, int(bool(deleted)), factory.encode(resource, record)

        for resource in RESOURCES:
            self.store.bulk_load(resource, rows(resource))
        self.store.build_indexes()

    # --- writes and their visibility ----------------------------------------------------------
    def write(self, resource: str, record: dict, verb: str, now: int) -> None:
        """A write starts now (its updated_at) and becomes visible after a random lag."""
        lag_ms = int(self.rng.random() * self.knobs.visibility_lag_seconds * 1000)
        updated_ms = now
        pending = _PendingWrite(
            now + lag_ms, next(self._seq), resource, record["id"], updated_ms, int(verb == "deleted"), record, verb
        )
        heapq.heappush(self._pending, pending)
        self._pending_ids.add((resource, record["id"]))
        if lag_ms == 0:
            self.apply_due_writes(now)

    def apply_due_writes(self, now: int | None = None) -> int:
        now = now_ms() if now is None else now
        applied = 0
        while self._pending and self._pending[0].visible_ms <= now:
            write = heapq.heappop(self._pending)
            self._pending_ids.discard((write.resource, write.record_id))
            body = self.factory.encode(write.resource, write.record)
            if self.store.put(write.resource, (write.record_id, write.updated_ms, write.deleted, body)):
                applied += 1
                if self.on_visible:
                    event_type = f"{EVENT_NOUN[write.resource]}.{write.verb}"
                    self.on_visible(self, event_type, write.record_id, format_ms(write.updated_ms))
        return applied

    def settle(self) -> int:
        """Make every pending write visible now (tests that do not want to wait for the lag)."""
        for write in self._pending:
            write.visible_ms = 0
        return self.apply_due_writes()

    @property
    def pending_writes(self) -> int:
        return len(self._pending)

    @property
    def writes_in_background(self) -> bool:
        """Whether the ticker has writes to make here: background mutations, or writes not yet visible."""
        rates = self.knobs.mutations
        return bool(self._pending) or bool(
            rates.creates_per_second or rates.updates_per_second or rates.deletes_per_second
        )

    # --- mutations ----------------------------------------------------------------------------
    def _pick_live(self, resource: str) -> dict | None:
        for _ in range(16):
            record_id = self.factory.id(resource, self.rng.randrange(self.next_ordinal[resource]))
            if (resource, record_id) in self._pending_ids:
                continue
            row = self.store.get(resource, record_id)
            if row is not None and not row[1]:
                return json.loads(row[2])
        return None

    def _pick_resource(self) -> str:
        return self.rng.choices(RESOURCES, [MUTATION_SHARE[r] for r in RESOURCES])[0]

    def mutate(self, creates: int = 0, updates: int = 0, deletes: int = 0, resource: str | None = None) -> Counter:
        """Apply a burst of writes like the workspace's users would make; returns what was done."""
        now, done = now_ms(), Counter()
        for verb, count in (("created", creates), ("updated", updates), ("deleted", deletes)):
            for _ in range(count):
                target = resource or self._pick_resource()
                if verb == "created":
                    ordinal = self.next_ordinal[target]
                    self.next_ordinal[target] += 1
                    record = self.factory.new(target, ordinal, now, now, self.rng)
                else:
                    current = self._pick_live(target)
                    if current is None:
                        continue
                    if verb == "updated":
                        record = self.factory.updated(target, current, now, self.rng)
                    else:
                        record = self.factory.tombstone(target, current["id"], now)
                self.write(target, record, verb, now)
                done[verb] += 1
        return done

    def run_background_mutations(self, elapsed_seconds: float) -> None:
        rates = self.knobs.mutations
        debt = self._mutation_debt
        debt["created"] += rates.creates_per_second * elapsed_seconds
        debt["updated"] += rates.updates_per_second * elapsed_seconds
        debt["deleted"] += rates.deletes_per_second * elapsed_seconds
        burst = {verb: int(debt[verb]) for verb in ("created", "updated", "deleted")}
        for verb, count in burst.items():
            debt[verb] -= count
        if any(burst.values()):
            self.mutate(burst["created"], burst["updated"], burst["deleted"])

    # --- schema changes -----------------------------------------------------------------------
    def apply_schema_change(self, change: SchemaChange) -> int:
        """Reshape every stored record of the resource; a breaking change bumps the API version."""
        self.factory.schema_changes.append(change)
        rows = [
            (self.factory.encode(change.resource, json.loads(body)), record_id)
            for record_id, _, _, body in self.store.scan(change.resource)
        ]
        self.store.rewrite(change.resource, rows)
        if change.kind != "add_field":
            self.knobs.api_version = date.today().isoformat()
        return len(rows)

    # --- faults, auth, counters ---------------------------------------------------------------
    def draw_fault(self) -> str | None:
        faults = self.knobs.faults
        rates = (faults.error_rate, faults.slow_rate, faults.drop_rate, faults.truncate_rate)
        for kind, rate in zip(FAULT_KINDS, rates, strict=True):
            if rate and self.rng.random() < rate:
                return kind
        return None

    def count(self, endpoint: str, *keys: str) -> None:
        for key in keys:
            self.counters[endpoint][key] += 1

    def counters_report(self) -> dict:
        totals: Counter = Counter()
        for per_endpoint in self.counters.values():
            totals.update(per_endpoint)
        return {
            "workspace": self.id,
            "totals": dict.fromkeys(REPORTED_TOTALS, 0) | dict(totals),
            "endpoints": {name: dict(c) for name, c in self.counters.items()},
            "lockouts": self.limiter.lockouts,
            "counted_by_window": {str(k): v for k, v in self.limiter.counted_by_window.items()},
            "max_in_flight": self.max_in_flight,
            "pending_writes": self.pending_writes,
        }

    def reset_counters(self) -> None:
        self.counters.clear()
        self.max_in_flight = 0

    def purge_tombstones(self, now: int) -> int:
        return self.store.purge_tombstones(now - int(self.knobs.tombstone_retention_days * DAY_MS))
