"""Freshness per tier and tenant: stale tenants show in their check and alert once, not every tick."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import pytest

from pipeline_assets.freshness import freshness, last_synced
from resources.control.deferrals import Deferral
from resources.warehouse import Warehouse
from sensors.tenant_freshness import tenant_freshness
from tests.support.resources import make_api, resources_for
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

MINUTE = 60


@pytest.mark.parametrize(
    ("tier", "minutes_since_sync", "fresh"),
    [("hourly", 74, True), ("hourly", 76, False), ("daily", 25 * 60, True), ("daily", 26 * 60 + 1, False)],
)
def test_a_tenant_is_stale_after_its_tier_plus_grace(
    make_sim, instance, tmp_path: Path, monkeypatch, tier: str, minutes_since_sync: int, fresh: bool
) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 20}))
    monkeypatch.setenv("TASKLANE_TOKEN_ACME", "token-acme")
    path = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme", tier=tier))
    api = make_api(base_url=sim.base_url, tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))
    assert materialize_tenant(instance, "acme", api, Warehouse(url=str(tmp_path / "w.duckdb"))).success
    synced = last_synced(instance, "acme")
    assert freshness(instance, "acme", tier, synced + minutes_since_sync * MINUTE)[0] is fresh


def test_a_stale_tenant_shows_in_its_check_and_alerts_once(
    make_sim, instance, tmp_path: Path, monkeypatch, webhook, alerts
) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 20}), workspace_config("globex"))
    for tenant in ("acme", "globex"):
        monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
    path = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme"), tenant_entry("globex"))
    api = make_api(base_url=sim.base_url, tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))
    assert materialize_tenant(instance, "acme", api, Warehouse(url=str(tmp_path / "w.duckdb"))).success
    instance.add_dynamic_partitions("tenants", ["globex"])  # registered, never synced

    def tick(cursor: str | None) -> dg.SensorResult:
        resources = resources_for(api, alerts=alerts)
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
            return tenant_freshness(context)

    first = tick(None)
    assert {e.partition: e.passed for e in first.asset_events} == {"acme": True, "globex": True}
    assert webhook == [], "a tenant just onboarded has its tier's allowance for its first sync"
    long_ago = json.loads(first.cursor)
    long_ago["globex"]["known_since"] -= 2 * 3600  # as if onboarded two hours ago and never synced
    second = tick(json.dumps(long_ago))
    assert {e.partition: e.passed for e in second.asset_events} == {"globex": False}
    assert [a["tenant"] for a in webhook] == ["globex"] and webhook[0]["error_class"] == "stale"
    third = tick(second.cursor)
    assert third.asset_events == [] and len(webhook) == 1, "a tenant that stays stale alerts once"
    assert {t: v["fresh"] for t, v in json.loads(third.cursor).items()} == {"acme": True, "globex": False}


def test_a_tenant_stale_because_it_waits_says_until_when_and_why(
    instance, tmp_path: Path, monkeypatch, webhook, alerts
) -> None:
    monkeypatch.setenv("TASKLANE_TOKEN_GLOBEX", "token-globex")
    path = write_tenants(tmp_path / "tenants.yaml", tenant_entry("globex"))
    api = make_api(base_url="http://unused", tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))
    instance.add_dynamic_partitions("tenants", ["globex"])
    api.state.deferrals.defer(
        Deferral("globex", time.time() + 1800, "Tasklane answered 429 with Retry-After 1800s", 0.0)
    )
    onboarded_long_ago = json.dumps({"globex": {"fresh": True, "known_since": time.time() - 3 * 3600}})
    resources = resources_for(api, alerts=alerts)
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=onboarded_long_ago) as context:
        result = tenant_freshness(context)
    (stale,) = result.asset_events
    assert not stale.passed and "its sync is deferred until " in stale.description
    assert stale.description.endswith("(Tasklane answered 429 with Retry-After 1800s)")
    assert webhook[0]["reason"] == stale.description
