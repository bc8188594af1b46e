"""Tenant runs through the real daemon with the demo's instance (run queue, compute logs): which
tenants get a run at all, what a run costs, where its checks land, and what a throttled tenant
occupies while it waits.

One daemon session serves every test here (about two minutes), the hourly period shortened to a
minute so that the schedule fires while the test watches: twenty quiet hourly tenants and two that
change (both synced before the daemon starts, as if onboarded earlier), and two daily tenants whose
vendor window another client has nearly spent, one with the reset about 15 minutes away and one with
a window shortened so that it resets 100 to 115 s after the daemon starts (its first sync comes
within seconds and is deferred; the two periods end before). Two periods are watched: in the first only
acme changes upstream; in the second acme's vendor changes a field's type and both acme and globex
change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef  # the instance the daemon uses, from its DAGSTER_HOME
from dagster._core.scheduler.instigation import InstigatorTick  # the daemon's record of a schedule's tick

from pipeline_assets.deferral import DEFERRED_UNTIL_TAG, RESUMES_TAG
from pipeline_assets.freshness import statuses
from resources.warehouse import Warehouse
from tasklane_sim import SimServer
from tests.support.dagster_daemon import ROOT, ProcessLog, dripfeed_env, running_daemon, scratch_instance, wait_until
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.rate_windows import window_resetting_in
from tests.support.resources import Resources, make_api
from tests.support.runs import materialize_tenant
from tests.support.simulator import ADMIN_TOKEN, workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

pytestmark = pytest.mark.e2e  # the real dagster-daemon, its sensors and schedules

HEALTHY = ("acme", "globex")  # hourly; they change during the session
QUIET = tuple(f"quiet{n:02d}" for n in range(20))  # hourly; nothing changes upstream
QUIET_RECORDS = {"users": 4, "projects": 2, "tasks": 30}  # one page each: their first sync leaves every listing
LOCKED, BRIEF = "locked", "brief"  # reset ~15 minutes away; reset within the session
RATE_LIMIT = 200
# users and projects (each with the listing its next sync asks about) and three pages of tasks, then
# the window is spent
LEFT_FOR_DRIPFEED = 7
# No record changes upstream unless a test makes it; a day back, so that once the tombstones already
# past the vendor's 30-day retention are purged (at the start), none is purged during the session.
AS_OF = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))


CHECKS = {
    "users_schema_drift",
    "users_unique_keys",
    "projects_schema_drift",
    "projects_unique_keys",
    "tasks_schema_drift",
    "tasks_unique_keys",
    "tasks_references_resolve",
}


@dataclass
class Session:
    sim: SimServer
    instance: dg.DagsterInstance
    warehouse: Warehouse
    api: Resources
    processes: ProcessLog
    throttled_at: float  # when the other client spent the locked tenant's window
    locked_reset_at: float  # when that window resets (the simulator's windows are clock-aligned)
    quiet_from: float = 0.0  # the daemon's first period, in which only acme changed, and the next
    drifted_at: float = 0.0  # when acme's vendor changed a field's type, and acme and globex changed
    globex_changed_at: float = 0.0  # (the same moment: globex's first change)
    quiet_until: float = 0.0
    quiet_not_modified: dict[str, int] = field(default_factory=dict)  # 304s each quiet tenant got then
    quiet_counted: dict[str, int] = field(default_factory=dict)  # and the calls Tasklane counted
    ended_at: float = 0.0  # when the daemon was stopped (a run it had in flight then is cut short)

    def runs(self, tenant: str, **tags: str) -> list[dg.DagsterRun]:
        """The tenant's runs, oldest first."""
        records = self.instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": tenant, **tags}))
        return [record.dagster_run for record in sorted(records, key=lambda r: r.create_timestamp)]

    def hourly_runs(self, tenant: str, created_after: float = 0.0, created_before: float = 0.0) -> list[dg.DagsterRun]:
        """The tenant's finished runs from the hourly schedule, oldest first."""
        records = self.instance.get_run_records(
            dg.RunsFilter(tags={"dagster/partition": tenant, "dagster/schedule_name": "hourly_tenants"})
        )
        chosen = [
            r
            for r in records
            if created_after < r.create_timestamp.timestamp() < (created_before or float("inf"))
            and r.dagster_run.is_finished
        ]
        return [record.dagster_run for record in sorted(chosen, key=lambda r: r.create_timestamp)]

    def check_evaluations(self, run: dg.DagsterRun) -> dict[str, dg.AssetCheckEvaluation]:
        entries = self.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        return {e.asset_check_evaluation.check_name: e.asset_check_evaluation for e in entries}

    def hourly_ticks_within(self, start: float, end: float) -> list[InstigatorTick]:
        """The hourly schedule's ticks that the daemon began after `start` and ended before `end`."""
        (state,) = (s for s in self.instance.all_instigator_state() if s.instigator_name == "hourly_tenants")
        ticks = self.instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=100)
        return [t for t in ticks if start < t.timestamp and t.end_timestamp and t.end_timestamp < end]

    def resumption(self) -> dg.DagsterRun | None:
        return next((run for run in self.runs(BRIEF) if RESUMES_TAG in run.tags and run.is_finished), None)


def calls(sim: SimServer, tenant: str) -> tuple[int, int]:
    """(304s, counted calls) the simulator counted for the tenant so far."""
    totals = sim.admin.counters(tenant)["totals"]
    return totals["not_modified"], totals["counted"]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    directory = tmp_path_factory.mktemp("daemon-tenant-runs")
    records = {"users": 20, "projects": 8, "tasks": 1000}
    workspaces = [workspace_config(t, records={"tasks": 300}) for t in HEALTHY]
    workspaces += [workspace_config(t, records=QUIET_RECORDS) for t in QUIET]
    locked_window = window_resetting_in(900, 960)
    for tenant in (LOCKED, BRIEF):
        workspaces.append(
            workspace_config(tenant, records=records, rate_limit=RATE_LIMIT, window_seconds=locked_window)
        )
    with SimServer({"admin_token": ADMIN_TOKEN, "seed": 7, "as_of": AS_OF, "workspaces": workspaces}) as sim:
        for tenant in (*HEALTHY, *QUIET):  # not a minute later, after their first syncs
            sim.admin.purge_tombstones(tenant)
        sim.admin.spend(LOCKED, RATE_LIMIT - LEFT_FOR_DRIPFEED)  # the customer's own scripts
        throttled_at = time.time()
        locked_reset_at = (throttled_at // locked_window + 1) * locked_window
        entries = [tenant_entry(t) for t in (*HEALTHY, *QUIET)]
        entries += [tenant_entry(t, tier="daily", budget_share=1.0) for t in (LOCKED, BRIEF)]
        tenants = write_tenants(directory / "tenants.yaml", *entries)
        home = scratch_instance(directory, ROOT / "demo" / "dagster.yaml")
        processes = ProcessLog(directory)
        env = processes.env(dripfeed_env(directory, home, tenants, sim.base_url, *HEALTHY, *QUIET, LOCKED, BRIEF))
        env["DRIPFEED_HOURLY_PERIOD_MINUTES"] = "1"
        session = Session(
            sim=sim,
            instance=dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))),
            warehouse=Warehouse(url=env["DRIPFEED_WAREHOUSE"]),
            api=make_api(base_url=sim.base_url, tenants_file=str(tenants), state=env["DRIPFEED_STATE"]),
            processes=processes,
            throttled_at=throttled_at,
            locked_reset_at=locked_reset_at,
        )
        with pytest.MonkeyPatch.context() as tokens:  # onboarded earlier: their first syncs, in this process
            for tenant in (*HEALTHY, *QUIET):
                tokens.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
                assert materialize_tenant(session.instance, tenant, session.api, session.warehouse).success
        # Timed from the daemon's start: its first sync meets the 429 within seconds, and a Retry-After
        # over the client's long_wait_seconds (60) defers it instead of being slept.
        sim.admin.set_knobs(BRIEF, window_seconds=window_resetting_in(100, 115))
        sim.admin.spend(BRIEF, RATE_LIMIT - LEFT_FOR_DRIPFEED)
        with running_daemon(directory, env) as daemon, processes.polling(daemon.pid):
            session.quiet_from = time.time()  # the quiet tenants are asked every period, never run
            before = {tenant: calls(sim, tenant) for tenant in QUIET}
            sim.admin.mutate("acme", updates=10, resource="tasks")  # only acme, in the first period
            wait_until(lambda: session.hourly_runs("acme"), 240, "acme's hourly run")
            session.drifted_at = session.globex_changed_at = time.time()
            sim.admin.schema_change(
                "acme", kind="change_type", resource="tasks", field="estimate_hours", to="string", format="{}h"
            )
            for tenant in HEALTHY:
                sim.admin.mutate(tenant, updates=30, resource="tasks")
            wait_until(
                lambda: all(session.hourly_runs(t, session.drifted_at) for t in HEALTHY), 240, "the runs after it"
            )
            session.quiet_until = time.time()
            after = {tenant: calls(sim, tenant) for tenant in QUIET}
            session.quiet_not_modified = {tenant: after[tenant][0] - before[tenant][0] for tenant in QUIET}
            session.quiet_counted = {tenant: after[tenant][1] - before[tenant][1] for tenant in QUIET}
            wait_until(session.resumption, 300, f"{BRIEF}'s resumption")
            session.ended_at = time.time()
        yield session
        session.instance.dispose()


def test_a_tenants_scheduled_run_is_one_process_that_starts_none(session: Session) -> None:
    run = session.hourly_runs("acme")[0]  # ten tasks changed upstream since the first sync
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dripfeed/tier"] == "hourly"
    step_events = [e for e in session.instance.all_logs(run.run_id) if e.dagster_event and e.step_key]
    workers = {e.dagster_event.pid for e in step_events if e.dagster_event.pid is not None}
    assert len(workers) == 1, f"every step ran in the run's own process: {workers}"
    worker = workers.pop()
    spawned = [p for p in session.processes.started() if p.pid == worker]
    assert len(spawned) == 1 and "multiprocessing" in spawned[0].command, "the code server spawned it"
    # `import dagster` runs `file -b <python>` once (its vendored croniter asks platform.architecture()):
    # a few milliseconds at start, which the poll below sees only when it happens to look then.
    started = [(pid, what) for pid, what in session.processes.descendants(worker) if what != "file"]
    assert started == [], "no step process, no log tailer, nothing"


def test_every_check_result_of_a_run_is_recorded_for_the_tenants_partition(session: Session) -> None:
    for tenant in HEALTHY:
        run = session.hourly_runs(tenant)[0]
        assert run.tags["dripfeed/why"] == "tasks: changed", "only its tasks changed"
        evaluations = session.check_evaluations(run)
        assert set(evaluations) == {check for check in CHECKS if check.startswith("tasks_")}
        assert {e.partition for e in evaluations.values()} == {tenant}
        assert all(e.passed for e in evaluations.values()), evaluations


def test_a_drift_on_one_tenant_fails_only_that_tenants_check_with_the_diff(session: Session) -> None:
    acme = session.check_evaluations(session.hourly_runs("acme", session.drifted_at)[0])
    globex = session.check_evaluations(session.hourly_runs("globex", session.drifted_at)[0])
    assert not acme["tasks_schema_drift"].passed and acme["tasks_schema_drift"].partition == "acme"
    diff = acme["tasks_schema_drift"].metadata["drift"].value
    assert [(d["field"], d["expected_type"], d["seen_type"]) for d in diff] == [("estimate_hours", "double", "string")]
    assert all(e.passed for e in globex.values()) and "users_schema_drift" not in acme, "only tasks changed"


def test_only_tenants_that_changed_get_runs_and_the_quiet_ones_are_checked_every_period(session: Session) -> None:
    during = (session.quiet_from, session.quiet_until)
    runs = session.instance.get_run_records(dg.RunsFilter(tags={"dagster/schedule_name": "hourly_tenants"}))
    ran = sorted(
        (r.dagster_run.tags["dagster/partition"], r.dagster_run.tags["dripfeed/why"])
        for r in runs
        if during[0] < r.create_timestamp.timestamp() < during[1]
    )
    assert ran == [("acme", "tasks: changed"), ("acme", "tasks: changed"), ("globex", "tasks: changed")], ran
    acme = session.hourly_runs("acme", *during)
    (globex,) = session.hourly_runs("globex", *during)
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in (*acme, globex))
    assert session.instance.get_run_record_by_id(globex.run_id).create_timestamp.timestamp() > session.globex_changed_at
    ticks = session.hourly_ticks_within(*during)  # a tick a period: the period is a minute, as is the tick
    assert len(ticks) >= 2, "two periods at least"
    for tenant in QUIET:
        assert not session.runs(tenant, **{"dagster/schedule_name": "hourly_tenants"}), f"{tenant} was run"
        assert session.quiet_not_modified[tenant] >= 3 * len(ticks), f"{tenant} was not asked every period"
        assert session.quiet_counted[tenant] == 0, f"{tenant}: a 304 costs nothing"
    found = statuses(session.api.registry, session.api.state, set(QUIET), time.time())
    assert {s.tenant for s in found if s.fresh} == set(QUIET), "every quiet tenant is fresh"
    for tenant in ("globex", *QUIET):  # (acme's schema change rewrote records without a new updated_at)
        assert_equals_ground_truth(session.sim, session.warehouse, tenant)


def test_a_throttled_tenants_run_ends_within_a_minute_with_its_checkpoint_committed(session: Session) -> None:
    (run,) = session.runs(LOCKED)  # and it was not started again while it waits
    assert run.status == dg.DagsterRunStatus.SUCCESS, "waiting is not failing: nothing alerts"
    record = session.instance.get_run_record_by_id(run.run_id)
    assert (record.end_time or 0) - (record.start_time or 0) < 60
    resume_at = time.mktime(time.strptime(run.tags[DEFERRED_UNTIL_TAG], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    # the Retry-After's whole seconds, the tag's too
    assert abs(resume_at - session.locked_reset_at) <= 2, "deferred until the window resets"
    assert 880 <= session.locked_reset_at - session.throttled_at <= 960, "15 minutes away"
    assert session.warehouse.query("SELECT count(*) FROM tasks WHERE tenant_id = ?", (LOCKED,))[0][0] == 300
    assert session.warehouse.state(LOCKED, "tasks").resume_from is not None
    assert session.api.state.deferrals.waiting(time.time())[LOCKED].run_id == run.run_id
    assert not session.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("tasks"), asset_partitions=[LOCKED]), limit=1
    ).records, "not counted as fresh"


def test_a_deferred_tenant_is_resumed_without_anyone_acting_once_its_window_resets(session: Session) -> None:
    deferred, resumed = session.runs(BRIEF)[0], session.resumption()
    assert resumed is not None and resumed.tags[RESUMES_TAG] == deferred.run_id
    assert resumed.status == dg.DagsterRunStatus.SUCCESS
    assert DEFERRED_UNTIL_TAG in deferred.tags and DEFERRED_UNTIL_TAG not in resumed.tags
    materialized = session.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("tasks"), asset_partitions=[BRIEF]), limit=1
    ).records[0]
    assert materialized.run_id == resumed.run_id
    metadata = materialized.event_log_entry.asset_materialization.metadata
    assert metadata["resumed_from_checkpoint"].value != "none"
    assert_equals_ground_truth(session.sim, session.warehouse, BRIEF)


def test_throttled_tenants_occupy_nothing_while_they_wait(session: Session) -> None:
    for tenant in (LOCKED, BRIEF):
        for run in session.runs(tenant):
            record = session.instance.get_run_record_by_id(run.run_id)
            assert (record.end_time or 0) - (record.start_time or 0) < 60, f"{tenant} held a run slot"
    in_flight = dg.RunsFilter(
        tags={"dagster/partition": LOCKED}, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED]
    )
    assert not session.instance.get_runs(in_flight), "nothing queued or running for the waiting tenant"
