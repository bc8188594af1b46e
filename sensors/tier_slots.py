"""When in its tier's period each tenant is synced: a slot per tenant, spread evenly over the period.

A tier has a period (an hour, a day) cut into ticks (5 or 15 minutes); its schedule ticks once
per tick. Each tenant gets one tick of the period, its slot, so a thousand hourly tenants are a
twelfth of a thousand runs every five minutes instead of a thousand runs at minute 0 (and a
thousand tenants calling Tasklane at the same second).

Slots come from the tenant ids: the tier's tenants are ordered by a hash of their id and laid out
evenly over the ticks, so every tick holds the same number of tenants, give or take one. Adding
or removing a tenant moves the others by at most a tick; the schedule makes up for a tenant whose
slot moved into a tick already past (tier_schedules.py). A tenant's `sync_at` (HH:MM UTC) in
tenants.yaml pins its slot instead: the tick that holds that time of day, within the period.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from resources.tenants import Tenant
from resources.tiers import Tier


def _rank_key(tenant_id: str) -> str:
    return hashlib.sha256(tenant_id.encode()).hexdigest()


def pinned_tick(tier: Tier, sync_at: str) -> int:
    """The tick that holds `sync_at` (HH:MM UTC) within the tier's period."""
    hours, minutes = (int(part) for part in sync_at.split(":"))
    return ((hours * 60 + minutes) % tier.period_minutes) // tier.tick_minutes


def slots(tier: Tier, tenants: Iterable[Tenant]) -> dict[str, int]:
    """The tick of the period at which each tenant of `tier` is synced, by tenant id."""
    members = [t for t in tenants if t.tier == tier.name and t.enabled]
    placed = {t.id: pinned_tick(tier, t.sync_at) for t in members if t.sync_at}
    spread = sorted((t.id for t in members if not t.sync_at), key=_rank_key)
    for rank, tenant_id in enumerate(spread):
        placed[tenant_id] = rank * tier.ticks // len(spread)
    return placed
