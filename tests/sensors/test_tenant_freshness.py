"""Freshness per tier and tenant, from the control store: a check is a sync that found nothing; stale
tenants show in their check and alert once; the instance hears of a tenant only when its state
changes, when a run has materialized it, or once a day."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from dripfeed.settings import tier_setting
from pipeline_assets.freshness import freshness
from resources.control.deferrals import Deferral
from resources.control.tenant_checks import TenantCheck
from resources.tiers import TIERS
from resources.warehouse import Warehouse
from sensors.tenant_freshness import HEARTBEAT_SECONDS, tenant_freshness
from tests.support.resources import Resources, make_api, resources_for
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants
from tests.support.ticks import Tick, sensor_tick

MINUTE = 60


@pytest.mark.parametrize(
    ("tier", "minutes_since_sync", "fresh"),
    [("hourly", 74, True), ("hourly", 76, False), ("daily", 25 * 60, True), ("daily", 26 * 60 + 1, False)],
)
def test_a_tenant_is_stale_after_its_tier_plus_grace(tier: str, minutes_since_sync: int, fresh: bool) -> None:
    now = time.time()
    assert freshness(TIERS[tier], now - minutes_since_sync * MINUTE, known_since=now - 86400 * 3, now=now)[0] is fresh


def test_a_shortened_tier_period_shortens_the_freshness_allowance_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRIPFEED_HOURLY_PERIOD_MINUTES shortens the schedule's period and the allowance alike: both
    read the one Tier the code location made of it."""
    monkeypatch.setenv("DRIPFEED_HOURLY_PERIOD_MINUTES", "10")
    tier = tier_setting(TIERS["hourly"])
    assert tier.allowance == timedelta(minutes=10) + TIERS["hourly"].grace
    now = time.time()
    assert not freshness(tier, now - 30 * MINUTE, known_since=now - 86400, now=now)[0]
    assert freshness(TIERS["hourly"], now - 30 * MINUTE, known_since=now - 86400, now=now)[0]


@pytest.fixture
def two_tenants(make_sim, instance, tmp_path: Path, monkeypatch) -> Resources:
    """acme synced by a run; globex registered, never synced."""
    sim = make_sim(workspace_config("acme", records={"tasks": 20}), workspace_config("globex"))
    for tenant in ("acme", "globex"):
        monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
    path = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme"), tenant_entry("globex"))
    api = make_api(sim.base_url, path, str(tmp_path / "control.sqlite3"))
    assert materialize_tenant(instance, "acme", api, Warehouse(url=str(tmp_path / "w.duckdb"))).success
    instance.add_dynamic_partitions("tenants", ["globex"])
    return api


def freshness_tick(instance: dg.DagsterInstance, api: Resources, alerts) -> Tick:
    return sensor_tick(tenant_freshness, instance, resources_for(api, alerts=alerts))


def recorded(instance: dg.DagsterInstance) -> dict[str, bool]:
    """The latest tasks_fresh result of each partition, as the instance holds it."""
    records = instance.event_log_storage.get_asset_check_partition_info(
        [dg.AssetCheckKey(dg.AssetKey("tasks"), "tasks_fresh")]
    )
    return {info.partition_key: info.latest_execution_status.value == "SUCCEEDED" for info in records}


def backdate(api: Resources, tenant: str, seconds: float) -> None:
    """As if the freshness sensor had first seen the tenant `seconds` earlier."""
    check = api.state.tenant_checks.get(tenant)
    api.state.tenant_checks.save([replace(check, known_since=check.known_since - seconds)])


def test_a_stale_tenant_shows_in_its_check_and_alerts_once(instance, two_tenants, webhook, alerts) -> None:
    api = two_tenants
    first = freshness_tick(instance, api, alerts)
    assert recorded(instance) == {"acme": True, "globex": True}, first.text
    assert webhook == [], "a tenant just onboarded has its tier's allowance for its first sync"
    assert "2 hourly tenants: 2 fresh, 0 stale, 0 failing" in first.text
    backdate(api, "globex", 2 * 3600)  # onboarded two hours ago and never synced
    second = freshness_tick(instance, api, alerts)
    assert recorded(instance) == {"acme": True, "globex": False}, "a second result of a partition is stored too"
    assert [a["tenant"] for a in webhook] == ["globex"] and webhook[0]["error_class"] == "stale"
    assert "1 stale" in second.text and "stale: globex" in second.text
    freshness_tick(instance, api, alerts)
    assert len(webhook) == 1, "a tenant that stays stale alerts once"


def test_a_quiet_tenant_costs_the_instance_one_event_a_day(instance, two_tenants, webhook, alerts) -> None:
    api = two_tenants
    freshness_tick(instance, api, alerts)
    key = dg.AssetCheckKey(dg.AssetKey("tasks"), "tasks_fresh")

    def evaluations() -> int:
        return len(instance.event_log_storage.get_asset_check_execution_history(key, limit=100))

    after_first = evaluations()
    for _ in range(3):  # acme checked current every hour: nothing to tell the instance
        api.state.stream_checks.record_checked([("acme", s) for s in ("users", "projects", "tasks")], time.time())
        freshness_tick(instance, api, alerts)
    assert evaluations() == after_first, "no event per check"
    check = api.state.tenant_checks.get("acme")
    api.state.tenant_checks.save([replace(check, reported_at=time.time() - HEARTBEAT_SECONDS - 1)])
    heartbeat = freshness_tick(instance, api, alerts)
    assert "1 tenants' freshness recorded" in heartbeat.text, "a day later: the heartbeat"


def test_a_checked_tenant_is_fresh_though_its_last_run_is_old(instance, two_tenants, alerts) -> None:
    api = two_tenants
    with api.state.store.transaction() as conn:  # its last run was a day ago
        conn.exec_driver_sql("UPDATE dripfeed_stream_checks SET synced_at = synced_at - 86400 WHERE tenant = 'acme'")
    freshness_tick(instance, api, alerts)
    assert recorded(instance)["acme"] is False
    api.state.stream_checks.record_checked([("acme", "tasks")], time.time())  # a probe found it unchanged
    tick = freshness_tick(instance, api, alerts)
    assert recorded(instance)["acme"] is True, tick.text


def test_a_tenant_stale_because_it_waits_says_until_when_and_why(instance, two_tenants, webhook, alerts) -> None:
    api = two_tenants
    api.state.deferrals.defer(
        Deferral("globex", time.time() + 1800, "Tasklane answered 429 with Retry-After 1800s", 0.0)
    )
    api.state.tenant_checks.save([TenantCheck("globex", known_since=time.time() - 3 * 3600)])
    freshness_tick(instance, api, alerts)
    (alert,) = webhook
    assert alert["tenant"] == "globex" and "its sync is deferred until " in alert["reason"]
    assert alert["reason"].endswith("(Tasklane answered 429 with Retry-After 1800s)")
