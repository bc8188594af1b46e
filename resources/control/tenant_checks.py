"""Each tenant's last check, whether it is failing, and what Dagster was last told of it.

A tier tick probes a tenant (sensors/tenant_probes.py) and records what it found here, for every
tenant in one transaction: the instance hears of a tenant only when its state changes, and once a
day (sensors/tenant_freshness.py), so that a check costs the Dagster instance nothing. A failure is
an *episode*: it begins with the first failed probe or sync, is alerted once, and ends with the next
success.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from enum import StrEnum

import sqlalchemy as sa

from .store import ControlStore, chunks, tenant_checks


class Outcome(StrEnum):
    CURRENT = "current"  # every stream probed answered 304, nothing had to run
    CHANGED = "changed"  # a run was requested for what changed (or must run)
    SYNCED = "synced"  # a run's step completed a sync of the tenant
    ONBOARDING = "onboarding"  # tenant_registry requested the tenant's first sync
    FAILED = "failed"  # a failure a retry cannot fix (a revoked token, a malformed answer)
    UNREACHED = "unreached"  # throttled, an outage, or the tick's time was up: the next tick tries again

    @property
    def ends_a_failure(self) -> bool:
        """Whether the tenant is shown to work again: its calls answered (current) or a sync completed.
        A run requested (changed, onboarding) proves nothing yet: a revoked tenant never synced is
        "changed" at every probe, which asks Tasklane nothing, and its run fails again."""
        return self in (Outcome.CURRENT, Outcome.SYNCED)

    @property
    def settles_the_period(self) -> bool:
        """Whether the tenant is done for its tier's period (an unreached one is tried again)."""
        return self is not Outcome.UNREACHED


@dataclass(frozen=True)
class TenantCheck:
    tenant: str
    known_since: float
    checked_at: float | None = None
    period: str | None = None  # the tier's period the last probe served
    outcome: Outcome | None = None
    detail: str | None = None
    error_class: str | None = None
    failing_since: float | None = None
    failure_alerted: bool = False
    reported_state: str | None = None
    reported_at: float | None = None
    reported_target: int | None = None  # the storage id of the materialization the last report targeted

    def after(
        self,
        outcome: Outcome,
        detail: str | None,
        at: float,
        error_class: str | None = None,
        *,
        alerted: bool = False,
        period: str | None = None,
    ) -> TenantCheck:
        """This tenant once a probe (serving its tier's `period`) or a sync found `outcome` at `at`;
        `alerted`: a failure whose alert has already gone out (a failed run's, by the run failure sensor)."""
        changed = replace(self, checked_at=at, outcome=outcome, detail=detail, period=period)
        if outcome is Outcome.FAILED:
            new_episode = self.failing_since is None or error_class != self.error_class
            return replace(
                changed,
                error_class=error_class,
                failing_since=at if new_episode else self.failing_since,
                failure_alerted=alerted or (not new_episode and self.failure_alerted),
            )
        if not outcome.ends_a_failure:
            return changed
        return replace(changed, error_class=None, failing_since=None, failure_alerted=False)


def _row(check: TenantCheck) -> dict[str, object]:
    row = {f.name: getattr(check, f.name) for f in fields(check)}
    row["outcome"] = str(check.outcome) if check.outcome else None
    return row


class TenantChecks:
    """Reads and writes tenant checks in the control store."""

    def __init__(self, store: ControlStore) -> None:
        self.store = store

    def all(self) -> dict[str, TenantCheck]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(tenant_checks)).mappings()
            return {row["tenant"]: _check(row) for row in rows}

    def of_tenants(self, tenants: Iterable[str]) -> dict[str, TenantCheck]:
        query = sa.select(tenant_checks)
        with self.store.engine.connect() as conn:
            return {
                row["tenant"]: _check(row)
                for chunk in chunks(tenants)
                for row in conn.execute(query.where(tenant_checks.c.tenant.in_(chunk))).mappings()
            }

    def get(self, tenant: str) -> TenantCheck | None:
        return self.of_tenants([tenant]).get(tenant)

    def record(
        self,
        outcomes: Iterable[tuple[str, Outcome, str | None, str | None]],
        at: float,
        *,
        alerted: bool = False,
        period: str | None = None,
    ) -> None:
        """(tenant, outcome, detail, error class) found at `at` (by a probe of a tier's `period`), for
        many tenants in one transaction."""
        found = list(outcomes)
        if not found:
            return
        known = self.of_tenants(tenant for tenant, *_ in found)
        self.save(
            (known.get(tenant) or TenantCheck(tenant, known_since=at)).after(
                outcome, detail, at, error_class, alerted=alerted, period=period
            )
            for tenant, outcome, detail, error_class in found
        )

    def settled(self, tenants: Iterable[str], period: str, onboarding_since: float) -> set[str]:
        """Which of `tenants` a probe has served for the tier's `period` (an unreached one is not), or
        whose first sync tenant_registry requested since `onboarding_since` (it is on its way)."""
        return {
            tenant
            for tenant, check in self.of_tenants(tenants).items()
            if (check.period == period and check.outcome is not None and check.outcome.settles_the_period)
            or (check.outcome is Outcome.ONBOARDING and (check.checked_at or 0) >= onboarding_since)
        }

    def save(self, checks: Iterable[TenantCheck]) -> None:
        """Write these checks as they are (one transaction)."""
        rows = [_row(check) for check in checks]
        if not rows:
            return
        columns = [name for name in rows[0] if name != "tenant"]
        with self.store.transaction() as conn:
            self.store.upsert_many(
                conn, tenant_checks, rows, ["tenant"], lambda new: {c: new.excluded[c] for c in columns}
            )


def _check(row: sa.RowMapping) -> TenantCheck:
    values = dict(row)
    values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
    values["failure_alerted"] = bool(values["failure_alerted"])
    return TenantCheck(**values)
