"""The tiers spread over their period: each tenant once per period, at its slot, evenly over the ticks,
through every change a real tenant list goes through. Evaluated tick by tick on a real instance."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from dripfeed.settings import tier_setting
from pipeline_assets.run_tags import TIER_TAG
from resources.control.deferrals import Deferral
from resources.tiers import TIERS, Tier, make_tier
from sensors.tier_slots import pinned_tick, slots
from tests.support.rate_windows import clear_of_the_hours_end
from tests.support.resources import Resources, make_api
from tests.support.schedule_ticks import evaluate_period, evaluate_ticks, launch, period_start
from tests.support.tenants_files import tenant_entry, write_tenants

HOURLY = TIERS["hourly"]
GRACE = timedelta(minutes=15)


def tenants_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: list[dict]) -> Resources:
    monkeypatch.setenv("TASKLANE_TOKEN_ANY", "unused")
    path = write_tenants(tmp_path / "tenants.yaml", *entries)
    return make_api(base_url="http://unused", tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))


def entry(tenant: str, **overrides: object) -> dict:
    return tenant_entry(tenant, token_env="TASKLANE_TOKEN_ANY", **overrides)


def registered(instance: dg.DagsterInstance, tenants: list[str]) -> None:
    instance.add_dynamic_partitions("tenants", tenants)


@pytest.mark.e2e  # whole periods, tick by tick, a thousand tenants
def test_a_thousand_hourly_tenants_are_requested_once_per_period_evenly_over_its_ticks(
    instance, tmp_path, monkeypatch
) -> None:
    clear_of_the_hours_end(180)  # it reads the next period: none of its runs may be created there
    start = period_start("hourly")
    ids = [f"tenant-{n:04d}" for n in range(1000)]
    api = tenants_api(tmp_path, monkeypatch, [entry(t) for t in ids])
    registered(instance, ids)
    seen = evaluate_period(instance, api, "hourly", start)
    assert seen.tenants == ids, "every tenant exactly once"
    assert len(seen.per_tick) == HOURLY.ticks == 12
    assert max(seen.per_tick) <= math.ceil(1000 / 12) and min(seen.per_tick) >= 1000 // 12, seen.per_tick
    again = evaluate_ticks(instance, api, "hourly", start, HOURLY.ticks)
    assert again.requests == [], "a repeated tick launches nothing twice"
    next_period = evaluate_period(instance, api, "hourly", start + timedelta(hours=1))
    assert next_period.tenants == ids, "and once more in the next period"


@pytest.mark.e2e  # a whole period, tick by tick, 240 tenants
def test_tenants_added_and_removed_mid_period_still_get_one_run_each(instance, tmp_path, monkeypatch) -> None:
    clear_of_the_hours_end(120)  # it reads the next period: none of its runs may be created there
    start = period_start("hourly")
    ids = [f"tenant-{n:03d}" for n in range(240)]
    api = tenants_api(tmp_path, monkeypatch, [entry(t) for t in ids])
    registered(instance, ids)
    first_half = evaluate_ticks(instance, api, "hourly", start, 6)
    # Onboarding: 40 tenants appear, each with its first sync (the registry sensor's); 30 leave.
    joined = [f"joined-{n:02d}" for n in range(40)]
    registered(instance, joined)
    for tenant in joined:
        first_sync = dg.RunRequest(
            run_key=f"first-sync:{tenant}:1", partition_key=tenant, tags={TIER_TAG: "onboarding"}
        )
        launch(instance, first_sync, "tenant_registry")
    remaining = ids[30:]
    api = tenants_api(tmp_path, monkeypatch, [entry(t) for t in remaining + joined])
    second_half = evaluate_ticks(instance, api, "hourly", start, 6, first=6)
    requested = first_half.tenants + second_half.tenants
    assert sorted(set(requested)) == sorted(requested), "nobody twice in a period"
    assert set(remaining) <= set(requested), "nobody whose slot moved into a tick already past is forgotten"
    assert not set(joined) & set(requested), "a new tenant's first sync counts for its first period"
    assert max(second_half.per_tick) <= math.ceil(250 / 12) + 5, second_half.per_tick
    assert evaluate_period(instance, api, "hourly", start + timedelta(hours=1)).tenants == sorted(remaining + joined)


# The daily tier with its day shortened to three hours (DRIPFEED_DAILY_PERIOD_MINUTES=180): 12 ticks a
# period instead of 96, the same rules.
SHORT_DAY = make_tier("daily", 180, 15, grace=TIERS["daily"].grace)


@pytest.mark.e2e  # whole periods tick by tick
def test_a_tenant_moved_between_tiers_follows_its_new_tier_from_the_next_period(
    instance, tmp_path, monkeypatch
) -> None:
    day_start = SHORT_DAY.period_start(datetime.now(UTC))
    hourly = [entry(f"hourly-{n}", tier="hourly") for n in range(12)]
    daily = [entry(f"daily-{n}", tier="daily") for n in range(12)]
    api = tenants_api(tmp_path, monkeypatch, hourly + daily)
    registered(instance, [e["id"] for e in hourly + daily])
    synced_hourly = evaluate_period(instance, api, "hourly", day_start).tenants
    assert "hourly-0" in synced_hourly
    moved = [{**e, "tier": "daily"} if e["id"] == "hourly-0" else e for e in hourly + daily]
    api = tenants_api(tmp_path, monkeypatch, moved)
    later = evaluate_period(instance, api, "hourly", day_start + timedelta(hours=1)).tenants
    assert "hourly-0" not in later, "the hourly tier lets it go"
    today = evaluate_period(instance, api, SHORT_DAY, day_start)
    assert len(today.per_tick) == 12 and "hourly-0" not in today.tenants, (
        "it synced this day already: the daily tier takes it from the next day"
    )
    assert today.tenants == sorted(e["id"] for e in daily), "the daily tenants, at their slots"
    tomorrow = evaluate_period(instance, api, SHORT_DAY, day_start + timedelta(minutes=180)).tenants
    assert tomorrow.count("hourly-0") == 1


def test_a_waiting_tenant_is_skipped_with_its_reason_then_caught_up_in_the_same_period(
    instance, tmp_path, monkeypatch
) -> None:
    api = tenants_api(tmp_path, monkeypatch, [entry("acme", sync_at="00:00"), entry("globex", sync_at="00:30")])
    registered(instance, ["acme", "globex"])
    api.state.deferrals.defer(Deferral("acme", time.time() + 3600, "Tasklane answered 429 with Retry-After 900s", 0.0))
    start = period_start("hourly")
    slot_tick = evaluate_ticks(instance, api, "hourly", start, 1)
    assert slot_tick.tenants == []
    assert "Left out: acme: deferred until " in slot_tick.skipped[0]
    assert slot_tick.skipped[0].endswith("(Tasklane answered 429 with Retry-After 900s)")
    with api.state.store.transaction() as conn:
        conn.exec_driver_sql("DELETE FROM dripfeed_deferrals")  # its wait is over
    assert evaluate_ticks(instance, api, "hourly", start, 1, first=1).tenants == ["acme"]


def test_thousands_of_tenants_awaiting_their_partitions_are_one_line_of_a_tick(instance, tmp_path, monkeypatch) -> None:
    newcomers = [f"new-{n:04d}" for n in range(2000)]
    api = tenants_api(tmp_path, monkeypatch, [entry("acme", sync_at="00:55")] + [entry(t) for t in newcomers])
    registered(instance, ["acme"])
    start = period_start("hourly")
    (skipped,) = evaluate_ticks(instance, api, "hourly", start, 1, first=HOURLY.ticks - 2).skipped
    assert skipped.endswith("; 1834 not partitions yet, left to their first syncs"), skipped
    assert "Left out" not in skipped, "none of them is a tenant left out"
    registered(instance, newcomers[:50])  # tenant_registry's first wave, here without its first syncs
    assert evaluate_ticks(instance, api, "hourly", start, 1, first=HOURLY.ticks - 1).tenants == sorted(
        ["acme", *newcomers[:50]]
    ), "a partition is the tier's again"


@pytest.mark.parametrize(
    ("tier", "sync_at", "tick"),
    [
        (Tier("hourly", 60, 5, GRACE), "00:17", 3),
        (Tier("hourly", 60, 5, GRACE), "13:17", 3),  # an hourly tenant keeps the minutes
        (Tier("hourly", 60, 5, GRACE), "00:59", 11),
        (Tier("daily", 1440, 15, GRACE), "03:17", 13),
        (Tier("daily", 1440, 15, GRACE), "23:59", 95),
        (Tier("half-hourly", 30, 5, GRACE), "10:47", 3),
    ],
)
def test_sync_at_pins_the_tick_that_holds_that_time(tier: Tier, sync_at: str, tick: int) -> None:
    assert pinned_tick(tier, sync_at) == tick


def test_slots_are_stable_and_pinned_tenants_keep_theirs(tmp_path, monkeypatch) -> None:
    api = tenants_api(tmp_path, monkeypatch, [entry(f"t{n}") for n in range(50)] + [entry("pinned", sync_at="00:55")])
    tenants = api.registry.tenants().values()
    placed = slots(HOURLY, tenants)
    assert placed == slots(HOURLY, list(reversed(list(tenants)))), "the order of tenants.yaml does not matter"
    assert placed["pinned"] == 11
    per_tick = [list(placed.values()).count(t) for t in range(HOURLY.ticks)]
    assert max(per_tick) - min(per_tick) <= 2, per_tick


@pytest.mark.parametrize(
    ("minutes", "ok"), [("60", True), ("2", True), ("7", False), ("0", False), ("x", False), ("2.5", False)]
)
def test_a_tier_period_must_divide_the_day(monkeypatch, minutes: str, ok: bool) -> None:
    monkeypatch.setenv("DRIPFEED_HOURLY_PERIOD_MINUTES", minutes)
    if ok:
        tier = tier_setting(HOURLY)
        assert tier.period_minutes % tier.tick_minutes == 0 and tier.ticks >= 1
        assert tier.period_start(datetime(2026, 11, 30, 10, 47, tzinfo=UTC)).minute % tier.period_minutes == 0
    else:
        with pytest.raises(RuntimeError, match="DRIPFEED_HOURLY_PERIOD_MINUTES"):
            tier_setting(HOURLY)
