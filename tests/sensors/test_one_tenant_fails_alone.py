"""A tick never fails for all tenants because of one. Tenant `acme` meets one failure per case, on a
real simulator, while `globex` is healthy; every tick that calls Tasklane or reads a tenant's state
serves globex as usual and names acme, in the tick's log or skip reason, without its token.

The simulator's crafted replies reshape record listings only, which no tick calls; an export answer
cannot be crafted. So "malformed" is covered by cut bodies (`truncate_rate: 1.0`), which the client
cannot decode and retries until it gives up; an answer of an unexpected shape would reach the
tick's handler of an unexpected error, which a corrupt control-store row of the tenant proves."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from pipeline_assets.history_exports import start_history_export
from pipeline_assets.jobs import sync_tenant
from resources.alerts import Alerts
from resources.control.export_jobs import ExportJobs
from resources.shared_state import SharedState
from resources.streams import STREAMS
from resources.tasklane import TasklaneAPI
from resources.tenant_registry import TenantRegistry
from resources.tiers import TIERS
from sensors.export_status import export_status_sensor, poll_exports
from sensors.tenant_freshness import tenant_freshness
from tasklane_sim import SimServer
from tests.support.resources import Resources, make_api, resources_for
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants
from tests.support.ticks import schedule_tick, sensor_tick

SMALL = {"users": 5, "projects": 3, "tasks": 40}
EXPORTS = {"duration_seconds": 0.2}  # done before the vendor's shortest poll_after_seconds (1 s)


@dataclass(frozen=True)
class Failure:
    """How acme fails, what the export sensor's tick says of it, and whether its schedule skips it."""

    name: str
    inflict: Callable[[SimServer, Resources, pytest.MonkeyPatch], Any]
    export_tick_says: str
    schedule_skips_it: bool  # a vendor block or a missing token is known before any call; a bad token is not
    workspace: dict[str, Any] = field(default_factory=dict)


FAILURES = [
    Failure(
        "throttled: the customer's scripts spent the window",
        lambda sim, _, __: sim.admin.spend("acme", 100),
        "Tasklane answered 429 with Retry-After",
        schedule_skips_it=True,
        workspace={"rate_limit": 100},
    ),
    Failure(
        "locked out by the vendor",
        lambda sim, _, __: sim.admin.spend("acme", 100),
        "Tasklane answered 429 with Retry-After 300s",
        schedule_skips_it=True,
        workspace={"rate_limit": 100, "lockout_threshold": 0},
    ),
    Failure(
        "token revoked",
        lambda sim, _, __: sim.admin.revoke_token("acme", "token-acme"),
        "Tasklane rejected the token from the environment variable TASKLANE_TOKEN_ACME",
        schedule_skips_it=False,
    ),
    Failure(
        "vendor 5xx storm on its workspace",
        lambda sim, _, __: sim.admin.set_knobs("acme", faults={"error_rate": 1.0}),
        "Tasklane kept failing on exports.list",
        schedule_skips_it=False,
    ),
    Failure(
        "malformed answers: every body cut short",
        lambda sim, _, __: sim.admin.set_knobs("acme", faults={"truncate_rate": 1.0}),
        "Tasklane kept failing on exports.list",
        schedule_skips_it=False,
    ),
    Failure(
        "token variable unset",
        lambda _, __, env: env.delenv("TASKLANE_TOKEN_ACME"),
        "set the environment variable TASKLANE_TOKEN_ACME",
        schedule_skips_it=True,
    ),
    Failure(
        "a corrupt row of its own in the control store",
        lambda _, api, __: corrupt_rate_window(api, "acme"),
        "TypeError",
        schedule_skips_it=True,
    ),
]


def corrupt_rate_window(api: Resources, tenant: str) -> None:
    """A hand-edited row: the calls spent in the tenant's rate window as text (SQLite keeps it)."""
    with api.state.store.transaction() as conn:
        conn.exec_driver_sql(
            "UPDATE dripfeed_rate_windows SET spent = 'many', vendor_limit = 100, window_reset = ? WHERE tenant = ?",
            (int(time.time()) + 3600, tenant),
        )


def two_tenants_with_open_exports(
    make_sim: Callable[..., SimServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Failure
) -> Resources:
    """acme and globex, registered, each with a history export of every stream that is done now."""
    sim = make_sim(
        workspace_config("acme", records=SMALL, exports=EXPORTS, **failure.workspace),
        workspace_config("globex", records=SMALL, exports=EXPORTS),
    )
    for tenant in ("acme", "globex"):
        monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
    entries = [tenant_entry(t, history_since="2000-01-01") for t in ("acme", "globex")]
    api = make_api(  # a tick's calls are tried twice whatever max_attempts says (Resources.client)
        base_url=sim.base_url,
        tenants_file=str(write_tenants(tmp_path / "tenants.yaml", *entries)),
        state=str(tmp_path / "control.sqlite3"),
    )
    jobs = ExportJobs(api.state.store)
    for tenant in ("acme", "globex"):
        for stream in STREAMS:
            start_history_export(api.client(tenant), jobs, stream)
    time.sleep(1.1)  # the exports are done, and due
    failure.inflict(sim, api, monkeypatch)
    return api


@pytest.mark.parametrize("failure", FAILURES, ids=[f.name for f in FAILURES])
def test_one_failing_tenant_is_named_in_each_tick_and_the_others_are_served(
    make_sim, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: Failure
) -> None:
    api = two_tenants_with_open_exports(make_sim, tmp_path, monkeypatch, failure)
    instance.add_dynamic_partitions("tenants", ["acme", "globex"])
    resources = resources_for(api, alerts=Alerts())

    exports = sensor_tick(export_status_sensor(), instance, resources)
    assert exports.tenants == ["globex"] * 3, "globex's three finished exports are loaded in the same tick"
    assert "tenant 'acme'" in exports.text and failure.export_tick_says in exports.text, exports.text

    last_tick = TIERS["hourly"].period_start(datetime.now(UTC)) + timedelta(minutes=55)  # every slot is due
    hourly = schedule_tick("hourly_tenants", instance, resources, last_tick)
    assert hourly.tenants == [], "their history is on its way through exports: the tier leaves it to them"
    if failure.schedule_skips_it:
        assert "acme" in hourly.text, "the tick says why acme was left out"

    freshness = sensor_tick(tenant_freshness, instance, resources)
    assert "2 hourly tenants" in freshness.text, freshness.text

    for tick in (exports, hourly, freshness):
        assert "token-acme" not in tick.text and "token-globex" not in tick.text


def test_a_slow_tenant_does_not_hold_up_the_export_tick_and_a_spent_tick_leaves_tenants_for_the_next(
    make_sim, instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = Failure(
        "slow answers",
        lambda sim, _, __: sim.admin.set_knobs("acme", faults={"slow_rate": 1.0, "slow_seconds": 0.3}),
        "",
        False,
    )
    api = two_tenants_with_open_exports(make_sim, tmp_path, monkeypatch, slow)
    instance.add_dynamic_partitions("tenants", ["acme", "globex"])

    def ticks_of(seconds: float) -> dg.SensorDefinition:
        @dg.sensor(name="export_status", job=sync_tenant)
        def export_status(
            context: dg.SensorEvaluationContext,
            tasklane: TasklaneAPI,
            registry: TenantRegistry,
            state: SharedState,
            alerts: Alerts,
        ) -> Any:
            return poll_exports(context, tasklane, registry, state, alerts, timeout=3600, tick_seconds=seconds)

        return export_status

    resources = resources_for(api, alerts=Alerts())
    spent = sensor_tick(ticks_of(0.0), instance, resources)
    assert spent.tenants == [] and "2 tenants' exports wait for the next tick" in spent.text, spent.text
    started = time.monotonic()
    both = sensor_tick(ticks_of(25.0), instance, resources)
    assert sorted(both.tenants) == ["acme"] * 3 + ["globex"] * 3, "polled side by side"
    assert time.monotonic() - started < 5
