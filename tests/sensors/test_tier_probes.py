"""Ask before you run: at their slot, tenants with nothing new cost no run and no counted call; a
changed stream, or one that must sync whatever a probe says, gets its run. Real simulator, real
control store, real Dagster instance; the tier schedule evaluated as the daemon evaluates it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from pipeline_assets.assets import projects, tasks, users
from resources.control.call_ledger import ledger_rows
from resources.control.deferrals import Deferral
from resources.control.store import call_leases, stream_checks
from resources.control.tenant_checks import Outcome
from resources.streams import STREAMS
from resources.tiers import TIERS
from resources.warehouse import Warehouse
from sensors.tenant_freshness import tenant_freshness
from sensors.tenant_probes import plan, probe_all
from sensors.tier_schedules import WHY_TAG
from tasklane_sim import SimServer
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.rate_windows import clear_of_the_hours_end
from tests.support.resources import Resources, make_api, resources_for
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants
from tests.support.ticks import Tick, schedule_tick, sensor_tick

SMALL = {"users": 8, "projects": 4, "tasks": 60}  # one page per stream: a first sync leaves every listing


@dataclass
class Tenants:
    sim: SimServer
    api: Resources
    warehouse: Warehouse
    instance: dg.DagsterInstance

    def tick(self, minutes_into_period: int = 55, period: int = 1) -> Tick:
        """The hourly tier's tick that many minutes into a period (55: every slot is due); period 1 is
        the next one, as the syncs that set the tenants up were their runs of this one."""
        start = TIERS["hourly"].period_start(datetime.now(UTC)) + timedelta(hours=period)
        return schedule_tick(
            "hourly_tenants", self.instance, resources_for(self.api), start + timedelta(minutes=minutes_into_period)
        )

    def counted(self, tenant: str) -> int:
        return self.sim.admin.counters(tenant)["totals"]["counted"]

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """What the daemon would launch for `request`: its assets (and their checks) for its tenant."""
        selection = request.asset_selection or [users.key, projects.key, tasks.key]
        return dg.materialize(
            [users, projects, tasks],
            selection=selection,
            partition_key=request.partition_key,
            tags=request.tags,
            instance=self.instance,
            resources=resources_for(self.api, warehouse=self.warehouse),
        )


@pytest.fixture
def synced(
    make_sim: Callable[..., SimServer], instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Tenants]:
    """Tenants (each with its entry's overrides) synced once, then their counters reset."""

    def make(*tenants: str, workspaces: dict[str, dict] | None = None, **entry: object) -> Tenants:
        # The sync and the ticks in one clock hour: one period of the hourly tier, one budget window.
        clear_of_the_hours_end()
        workspaces = workspaces or {}
        sim = make_sim(*(workspace_config(t, records=SMALL, **workspaces.get(t, {})) for t in tenants))
        for tenant in tenants:
            monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
        path = write_tenants(tmp_path / "tenants.yaml", *(tenant_entry(t, **entry) for t in tenants))
        found = Tenants(
            sim,
            make_api(sim.base_url, path, str(tmp_path / "control.sqlite3")),
            Warehouse(url=str(tmp_path / "warehouse.duckdb")),
            instance,
        )
        for tenant in tenants:
            assert materialize_tenant(instance, tenant, found.api, found.warehouse).success
            sim.admin.reset_counters(tenant)
        return found

    return make


def test_quiet_tenants_are_checked_current_with_no_run_and_no_counted_call(synced) -> None:
    tenants = synced("acme", "globex")
    before = time.time()
    tick = tenants.tick()
    assert tick.run_requests == [] and "2 tenants checked (2 current, 0 changed" in tick.text, tick.text
    for tenant in ("acme", "globex"):
        totals = tenants.sim.admin.counters(tenant)["totals"]
        assert totals["not_modified"] == 3 and totals["counted"] == 0, "three 304s, which Tasklane does not count"
        check = tenants.api.state.tenant_checks.get(tenant)
        assert check is not None and check.outcome is Outcome.CURRENT and check.checked_at >= before
        for stream in STREAMS:
            assert tenants.api.state.stream_checks.get(tenant, stream).checked_at >= before, "a check is a sync"
    again = tenants.tick(56)
    assert again.run_requests == [] and "0 tenants checked" in again.text, "once per period"


def test_a_ticks_probes_book_every_call_and_leave_the_budget_as_tasklane_counted_it(synced) -> None:
    tenants = synced("acme", "globex")
    spent = {tenant: tenants.api.state.budget.window(tenant)["spent"] for tenant in ("acme", "globex")}
    booked = {tenant: ledger_totals(tenants.api, tenant) for tenant in ("acme", "globex")}
    tenants.sim.admin.mutate("acme", updates=1, resource="tasks")
    tenants.tick()
    for tenant, counted in (("acme", 1), ("globex", 0)):
        assert tenants.counted(tenant) == counted
        calls = ledger_totals(tenants.api, tenant) - booked[tenant]
        assert (calls["counted"], calls["not_modified"]) == (counted, 3 - counted), "the ledger books every call"
        assert tenants.api.state.budget.window(tenant)["spent"] == spent[tenant] + counted, "304s are refunded"
    with tenants.api.state.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(call_leases)).scalar_one() == 0


def ledger_totals(api: Resources, tenant: str) -> Counter:
    return sum(
        (Counter({k: row[k] for k in ("counted", "not_modified")}) for row in ledger_rows(api.state.store, tenant)),
        Counter(),
    )


def test_a_changed_stream_gets_a_run_of_that_stream_that_brings_it_to_the_ground_truth(synced) -> None:
    tenants = synced("acme", "globex")
    tenants.sim.admin.mutate("acme", updates=5, creates=2, deletes=1, resource="tasks")
    tick = tenants.tick()
    (request,) = tick.run_requests
    assert request.partition_key == "acme" and request.asset_selection == [tasks.key]
    assert request.tags[WHY_TAG] == "tasks: changed" and request.tags["dripfeed/tier"] == "hourly"
    assert {key.name for key in request.asset_check_keys or []} == {
        "tasks_schema_drift",
        "tasks_unique_keys",
        "tasks_references_resolve",
    }
    assert tenants.counted("acme") == 1, "the probe paid for the one listing that changed"
    assert tenants.counted("globex") == 0
    assert tenants.run(request).success
    assert_equals_ground_truth(tenants.sim, tenants.warehouse, "acme")
    assert tenants.counted("acme") == 2, "the run asked again: one counted call more than a run alone"
    assert tenants.tick(period=2).run_requests == [], "after its run, acme is quiet again: 304 on every stream"


def _deferral_over(tenants: Tenants) -> None:
    past = time.time() - 60
    tenants.api.state.deferrals.defer(Deferral("acme", past, "Tasklane answered 429", past - 600, run_id="r1"))


def _interrupted(tenants: Tenants) -> None:
    tenants.api.state.stream_checks.begin_sync("acme", "tasks")  # a sync began and never completed


def _reconciliation_due(tenants: Tenants) -> None:
    with tenants.api.state.store.transaction() as conn:  # reconciled eight days ago, the cadence is seven
        conn.execute(
            stream_checks.update().where(stream_checks.c.tenant == "acme").values(reconciled_at=time.time() - 8 * 86400)
        )


MUST_SYNC = [
    ("its deferred sync is free to resume", _deferral_over, {"users", "projects", "tasks"}, "resume"),
    ("its last sync was interrupted", _interrupted, {"tasks"}, "no_listing"),
    ("its safety-net reconciliation is due", _reconciliation_due, {"users", "projects", "tasks"}, "reconcile"),
]


@pytest.mark.parametrize(("why", "make_it_so", "streams", "code"), MUST_SYNC, ids=[m[0] for m in MUST_SYNC])
def test_a_quiet_tenant_that_must_sync_gets_its_run_whatever_the_probe_says(
    synced, why: str, make_it_so: Callable[[Tenants], None], streams: set[str], code: str
) -> None:
    tenants = synced("acme", "globex")
    make_it_so(tenants)
    (request,) = tenants.tick().run_requests
    assert request.partition_key == "acme"
    selected = {key.path[-1] for key in request.asset_selection} if request.asset_selection else set(STREAMS)
    assert selected == streams
    assert all(f"{stream}: {code}" in request.tags[WHY_TAG] for stream in streams), request.tags[WHY_TAG]
    assert tenants.counted("acme") == 0, "nothing changed upstream: what must run is known without a counted call"
    assert tenants.run(request).success
    assert_equals_ground_truth(tenants.sim, tenants.warehouse, "acme")


def test_a_new_tenant_and_a_stream_without_a_listing_get_their_run(synced, monkeypatch) -> None:
    """(A real history load, then its run at the tenant's slot: test_export_status.py.)"""
    tenants = synced("acme", "globex")
    tenants.api.state.stream_checks.forget_listing("globex", "users")  # as a history load leaves it
    monkeypatch.setenv("TASKLANE_TOKEN_HOOLI", "token-hooli")
    # A tenant registered without a sync yet (onboarding requests its first sync; a tier would too).
    path = Path(tenants.api.registry.tenants_file)
    entries = [tenant_entry(t) for t in ("acme", "globex", "hooli")]
    write_tenants(path, *entries)
    tenants.instance.add_dynamic_partitions("tenants", ["hooli"])
    requests = {r.partition_key: r for r in tenants.tick().run_requests}
    assert set(requests) == {"globex", "hooli"}
    assert requests["globex"].asset_selection == [users.key] and requests["globex"].tags[WHY_TAG] == "users: no_listing"
    assert requests["hooli"].asset_selection is None, "a first sync syncs every stream"
    assert "first_sync" in requests["hooli"].tags[WHY_TAG]


def test_a_tenant_the_registry_onboards_is_left_to_its_first_sync_until_the_next_period(synced, monkeypatch) -> None:
    tenants = synced("acme", "globex")
    monkeypatch.setenv("TASKLANE_TOKEN_HOOLI", "token-hooli")
    write_tenants(Path(tenants.api.registry.tenants_file), *(tenant_entry(t) for t in ("acme", "globex", "hooli")))
    tenants.instance.add_dynamic_partitions("tenants", ["hooli"])  # as tenant_registry does, with its run request
    tenants.api.state.tenant_checks.record([("hooli", Outcome.ONBOARDING, "first sync requested", None)], time.time())
    this_period = tenants.tick(period=0)
    assert this_period.run_requests == [], "the registry's first sync is on its way: no second one"
    (request,) = tenants.tick(period=1).run_requests
    assert request.partition_key == "hooli" and "first_sync" in request.tags[WHY_TAG], "it never ran: the tier's"


def test_a_tick_out_of_time_names_the_tenants_it_did_not_reach(synced) -> None:
    tenants = synced("acme", "globex", workspaces={"acme": {"faults": {"slow_rate": 1.0, "slow_seconds": 0.5}}})
    tenant_list = [tenants.api.registry.tenant(t) for t in ("acme", "globex")]
    checks = tenants.api.state.stream_checks.of_tenants(["acme", "globex"])
    plans = [plan(tenant, checks, {}, None, time.time()) for tenant in tenant_list]
    verdicts, unreached = probe_all(tenants.api.tasklane, tenants.api.state, plans, start_within=0.0)
    assert verdicts == [] and unreached == ["acme", "globex"], "no probe starts once the tick's time is up"
    verdicts, unreached = probe_all(
        tenants.api.tasklane, tenants.api.state, plans, start_within=10.0, finish_within=0.2
    )
    assert [v.tenant for v in verdicts] == ["globex"] and unreached == ["acme"], "a slow tenant is left for later"


FAULTY = {
    "throttled": {"rate_limit": 100},  # the customer's own scripts spend the window
    "lockedout": {"rate_limit": 100, "lockout_threshold": 0},  # and the vendor locks it out at its first 429
    "revoked": {},
    "storm": {},
    "malformed": {},
}


def test_probe_faults_are_each_handled_for_their_tenant_alone_in_one_tick(synced, webhook, alerts) -> None:
    tenants = synced("acme", "globex", *FAULTY, workspaces={t: {**w} for t, w in FAULTY.items()})
    sim, state = tenants.sim, tenants.api.state
    sim.admin.spend("throttled", 100)
    sim.admin.spend("lockedout", 100)
    sim.admin.revoke_token("revoked", "token-revoked")
    sim.admin.set_knobs("storm", faults={"error_rate": 1.0})
    sim.admin.craft_replies("malformed", "users", {"status": 200, "body": '{"data": 1}', "times": 2})
    before = time.time()
    tick = tenants.tick()
    checks = state.tenant_checks.of_tenants([*FAULTY, "acme", "globex"])
    outcomes = {tenant: check.outcome for tenant, check in checks.items()}
    assert outcomes == {
        "acme": Outcome.CURRENT,
        "globex": Outcome.CURRENT,
        "throttled": Outcome.UNREACHED,
        "lockedout": Outcome.UNREACHED,
        "revoked": Outcome.FAILED,
        "storm": Outcome.UNREACHED,
        "malformed": Outcome.FAILED,
    }
    assert tick.run_requests == []
    assert (checks["revoked"].error_class, checks["malformed"].error_class) == ("auth", "schema_drift")
    waiting = state.deferrals.waiting(time.time())
    assert set(waiting) == {"throttled", "lockedout"} and all(d.vendor_block for d in waiting.values())
    assert waiting["lockedout"].resume_at - before >= 290, "locked out: the vendor's 300 s are honoured"
    for tenant in FAULTY:
        assert all(state.stream_checks.get(tenant, s).checked_at is None for s in STREAMS), f"{tenant} counted fresh"
        assert tenant in tick.text, f"the tick names {tenant}"
    for tenant in ("acme", "globex"):
        assert all(state.stream_checks.get(tenant, s).checked_at >= before for s in STREAMS)
    assert not any(f"token-{tenant}" in tick.text for tenant in (*FAULTY, "acme", "globex"))

    later = tenants.tick(56)
    assert "throttled: deferred until" in later.text and "lockedout: deferred until" in later.text
    assert "storm: not checked" in later.text, "an outage is tried again at the next tick"
    assert "revoked" not in later.text, "a failure settles the tenant's period: no 401 at every tick"

    freshness = sensor_tick(tenant_freshness, tenants.instance, resources_for(tenants.api, alerts=alerts))
    assert sorted((a["tenant"], a["error_class"]) for a in webhook) == [
        ("malformed", "schema_drift"),
        ("revoked", "auth"),
    ]
    assert "2 failing" in freshness.text and "revoked" in freshness.text
    sensor_tick(tenant_freshness, tenants.instance, resources_for(tenants.api, alerts=alerts))
    assert len(webhook) == 2, "a failure episode is alerted once"
