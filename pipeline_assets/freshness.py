"""How fresh each tenant's data is, against its tier: a tenant is stale once its tier's allowance (its
period plus grace, resources/tiers.py: 1 h 15 min hourly, 26 h daily) has passed since its `tasks`
were last known complete: a sync that completed, or a probe that found nothing changed (a check is
a sync that found nothing).

Two kinds of checks show it in the UI, both evaluated between syncs by the `tenant_freshness`
sensor from dripfeed's control store, never by a sync run:
- `tasks_fresh`, per tenant: recorded when the tenant's state changes, and once a day;
- `<tier>_tenants_fresh`, one per tier for the whole asset: how many of the tier's tenants are
  fresh, stale or failing, naming the stale and failing ones.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from resources.control.deferrals import Deferral
from resources.control.stream_checks import StreamCheck
from resources.control.tenant_checks import TenantCheck
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry
from resources.tiers import TIERS, Tier
from resources.utc import utc_text

from .assets import tasks
from .partitions import partitioned_checks, tenant_partitions

FRESH_CHECK = "tasks_fresh"
NAMED_IN_SUMMARY = 20  # stale or failing tenants a tier's summary names; its metadata counts them all


def tier_check_name(tier: str) -> str:
    return f"{tier}_tenants_fresh"


@dataclass(frozen=True)
class TenantStatus:
    """What the UI says of one tenant: `state` is fresh, stale or failing (fresh but its last probe
    or sync failed)."""

    tenant: str
    tier: str
    fresh: bool
    state: str
    explanation: str
    last_synced_at: float | None
    last_checked_at: float | None

    def metadata(self) -> dict[str, object]:
        return {
            "tier": self.tier,
            "state": self.state,
            "last_synced_at": utc_text(self.last_synced_at),
            "last_checked_current_at": utc_text(self.last_checked_at),
        }


def freshness(tier: Tier, complete_at: float | None, known_since: float, now: float) -> tuple[bool, str]:
    """(fresh, why): the tenant's `tasks` last known complete at `complete_at`. A tenant that never
    synced is given its tier's allowance from `known_since` (when dripfeed first saw it), so a new
    tenant's first sync has time to run before anyone is alerted."""
    allowed = tier.allowance
    if complete_at is None:
        waited = timedelta(seconds=int(now - known_since))
        verdict = "within" if waited <= allowed else "more than"
        return (
            waited <= allowed,
            f"has not synced yet, {waited} after onboarding, {verdict} its {tier.name} tier's {allowed}",
        )
    age = timedelta(seconds=int(now - complete_at))
    verdict = "within" if age <= allowed else "older than"
    return age <= allowed, f"last synced or checked current {age} ago, {verdict} its {tier.name} tier's {allowed}"


def tenant_status(
    tenant: str,
    tier: Tier,
    tasks_check: StreamCheck | None,
    check: TenantCheck,
    deferral: Deferral | None,
    now: float,
) -> TenantStatus:
    """The tenant's state from the control store: its `tasks` stream check, its last probe, and its
    deferral if it is waiting."""
    complete_at = tasks_check.complete_at if tasks_check else None
    fresh, why = freshness(tier, complete_at, check.known_since, now)
    explanation = f"{tenant!r} {why}"
    state = "fresh" if fresh else "stale"
    if check.failing_since is not None:
        explanation += f"; failing since {utc_text(check.failing_since)} ({check.error_class}): {check.detail}"
        state = "failing" if fresh else state
    if deferral is not None and not fresh:
        explanation += f"; its sync is deferred until {utc_text(deferral.resume_at)} ({deferral.reason})"
    return TenantStatus(
        tenant,
        tier.name,
        fresh,
        state,
        explanation,
        tasks_check.synced_at if tasks_check else None,
        tasks_check.checked_at if tasks_check else None,
    )


def tenant_evaluation(
    status: TenantStatus, target: AssetCheckEvaluationTargetMaterializationData | None = None
) -> dg.AssetCheckEvaluation:
    """`tasks_fresh` for one tenant; `target`: the tenant's latest `tasks` materialization, which the
    UI shows the partition's check status for."""
    return dg.AssetCheckEvaluation(
        asset_key=tasks.key,
        check_name=FRESH_CHECK,
        passed=status.fresh,
        partition=status.tenant,
        description=status.explanation,
        metadata=status.metadata(),
        target_materialization_data=target,
    )


def tier_evaluation(
    tier: str, statuses: list[TenantStatus], target: AssetCheckEvaluationTargetMaterializationData | None = None
) -> dg.AssetCheckEvaluation:
    """One evaluation for the whole tier: passes when none of its tenants is stale or failing."""
    by_state = {state: sorted(s.tenant for s in statuses if s.state == state) for state in ("stale", "failing")}
    fresh = sum(s.state == "fresh" for s in statuses)
    parts = [f"{len(statuses)} {tier} tenants: {fresh} fresh, {len(by_state['stale'])} stale, "]
    parts.append(f"{len(by_state['failing'])} failing")
    for state, names in by_state.items():
        if names:
            shown = ", ".join(names[:NAMED_IN_SUMMARY])
            parts.append(
                f"; {state}: {shown}"
                + (f" and {len(names) - NAMED_IN_SUMMARY} more" if len(names) > NAMED_IN_SUMMARY else "")
            )
    return dg.AssetCheckEvaluation(
        asset_key=tasks.key,
        check_name=tier_check_name(tier),
        passed=not by_state["stale"] and not by_state["failing"],
        target_materialization_data=target,
        severity=dg.AssetCheckSeverity.ERROR if by_state["stale"] else dg.AssetCheckSeverity.WARN,
        description="".join(parts),
        metadata={
            "tenants": dg.MetadataValue.int(len(statuses)),
            "fresh": dg.MetadataValue.int(fresh),
            "stale": dg.MetadataValue.int(len(by_state["stale"])),
            "failing": dg.MetadataValue.int(len(by_state["failing"])),
        },
    )


def statuses(
    registry: TenantRegistry,
    state: SharedState,
    tenant_ids: set[str],
    now: float,
    tiers: Mapping[str, Tier] = TIERS,
) -> list[TenantStatus]:
    """Every enabled tenant of `tenant_ids`, as the control store sees it now (a few queries)."""
    tenants = [t for t in registry.tenants().values() if t.enabled and t.id in tenant_ids]
    streams = state.stream_checks.of_tenants(t.id for t in tenants)
    checks = state.tenant_checks.of_tenants(t.id for t in tenants)
    waiting = state.deferrals.waiting(now)
    return [
        tenant_status(
            t.id,
            tiers[t.tier],
            streams.get((t.id, tasks.key.path[-1])),
            checks.get(t.id) or TenantCheck(t.id, known_since=now),
            waiting.get(t.id),
            now,
        )
        for t in sorted(tenants, key=lambda t: t.id)
    ]


def freshness_checks(tiers: Mapping[str, Tier] = TIERS) -> list[dg.AssetChecksDefinition]:
    """`tasks_fresh`, per tenant, and one `<tier>_tenants_fresh` per tier, judged by `tiers` (the
    code location's, which may be shortened): evaluated by the tenant_freshness sensor, and by a
    run when someone executes one in the UI."""

    def _tasks_fresh(
        context: dg.AssetCheckExecutionContext, registry: TenantRegistry, state: SharedState
    ) -> dg.AssetCheckResult:
        """The check evaluated on demand (the UI's "execute"): the same answer the sensor records."""
        tenant = context.partition_key
        found = statuses(registry, state, {tenant}, time.time(), tiers)
        if not found:
            return dg.AssetCheckResult(passed=False, description=f"{tenant!r} is not an enabled tenant of tenants.yaml")
        return dg.AssetCheckResult(
            passed=found[0].fresh, description=found[0].explanation, metadata=found[0].metadata()
        )

    allowances = " or ".join(f"{tier.allowance} ({name})" for name, tier in tiers.items())
    with partitioned_checks():
        tasks_fresh = dg.asset_check(
            asset=tasks,
            name=FRESH_CHECK,
            partitions_def=tenant_partitions,
            description="Fails when the tenant's tasks were last known complete (synced, or checked unchanged) "
            f"longer ago than its tier allows: {allowances}. Evaluated by the tenant_freshness sensor.",
        )(_tasks_fresh)
    return [tasks_fresh, *(_tier_check(tier, tiers) for tier in tiers)]


def _tier_check(tier: str, tiers: Mapping[str, Tier]) -> dg.AssetChecksDefinition:
    def _tier_fresh(
        context: dg.AssetCheckExecutionContext, registry: TenantRegistry, state: SharedState
    ) -> dg.AssetCheckResult:
        registered = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
        tier_statuses = [s for s in statuses(registry, state, registered, time.time(), tiers) if s.tier == tier]
        evaluation = tier_evaluation(tier, tier_statuses)
        return dg.AssetCheckResult(
            passed=evaluation.passed,
            severity=evaluation.severity,
            description=evaluation.description,
            metadata=evaluation.metadata,
        )

    return dg.asset_check(
        asset=tasks,
        name=tier_check_name(tier),
        description=f"Passes when none of the {tier} tier's tenants is stale or failing; names those that are. "
        "Evaluated by the tenant_freshness sensor every tick.",
    )(_tier_fresh)


# The checks' keys, for what selects or leaves them out (the sync job evaluates none of them).
FRESHNESS_CHECK_KEYS = [dg.AssetCheckKey(tasks.key, name) for name in (FRESH_CHECK, *map(tier_check_name, TIERS))]
