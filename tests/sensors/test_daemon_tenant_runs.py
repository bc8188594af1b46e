"""Tenant runs through the real daemon with the demo's instance (run queue, compute logs): what a run
costs, where its checks land, and what a throttled tenant occupies while it waits.

One daemon session serves every test here (about three minutes): two healthy hourly tenants (the
hourly period shortened to a minute, so the schedule fires while the test watches) and two daily
tenants whose vendor window another client has nearly spent, one with the reset about 15 minutes
away and one with a window shortened so that it resets within the session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef  # the instance the daemon uses, from its DAGSTER_HOME

from pipeline_assets.deferral import DEFERRED_UNTIL_TAG, RESUMES_TAG
from resources.warehouse import Warehouse
from tasklane_sim import SimServer
from tests.support.dagster_daemon import ROOT, ProcessLog, dripfeed_env, running_daemon, scratch_instance, wait_until
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.resources import Resources, make_api
from tests.support.simulator import ADMIN_TOKEN, workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

pytestmark = pytest.mark.e2e  # the real dagster-daemon, its sensors and schedules

HEALTHY = ("acme", "globex")
LOCKED, BRIEF = "locked", "brief"  # reset ~15 minutes away; reset within the session
RATE_LIMIT = 200
LEFT_FOR_DRIPFEED = 5  # users, projects and three pages of tasks, then the window is spent
# No record changes upstream unless a test makes it; a day back, so that no tombstone reaches the
# vendor's 30-day retention (and is purged) during the session.
AS_OF = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))


def window_resetting_in(low: float, high: float) -> int:
    """A window length (the simulator's windows are clock-aligned) whose reset is low..high s away."""
    now = time.time()
    return next(w for w in range(int(low) + 1, 7200) if low <= w - now % w <= high)


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
    throttled_at: float  # when the other client spent the throttled tenants' windows
    drifted_at: float = 0.0  # when acme's vendor changed a field's type
    ended_at: float = 0.0  # when the daemon was stopped (a run it had in flight then is cut short)

    def runs(self, tenant: str, **tags: str) -> list[dg.DagsterRun]:
        """The tenant's runs, oldest first."""
        records = self.instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": tenant, **tags}))
        return [record.dagster_run for record in sorted(records, key=lambda r: r.create_timestamp)]

    def hourly_runs(self, tenant: str, created_after: float = 0.0) -> list[dg.DagsterRun]:
        """The tenant's finished runs from the hourly schedule, oldest first."""
        records = self.instance.get_run_records(
            dg.RunsFilter(tags={"dagster/partition": tenant, "dagster/schedule_name": "hourly_tenants"})
        )
        chosen = [r for r in records if r.create_timestamp.timestamp() > created_after and r.dagster_run.is_finished]
        return [record.dagster_run for record in sorted(chosen, key=lambda r: r.create_timestamp)]

    def check_evaluations(self, run: dg.DagsterRun) -> dict[str, dg.AssetCheckEvaluation]:
        entries = self.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        return {e.asset_check_evaluation.check_name: e.asset_check_evaluation for e in entries}

    def resumption(self) -> dg.DagsterRun | None:
        return next((run for run in self.runs(BRIEF) if RESUMES_TAG in run.tags and run.is_finished), None)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    directory = tmp_path_factory.mktemp("daemon-tenant-runs")
    records = {"users": 20, "projects": 8, "tasks": 1000}
    workspaces = [workspace_config(t, records={"tasks": 300}) for t in HEALTHY]
    locked_window = window_resetting_in(900, 960)
    brief_window = window_resetting_in(150, 170)
    for tenant, window in ((LOCKED, locked_window), (BRIEF, brief_window)):
        workspaces.append(workspace_config(tenant, records=records, rate_limit=RATE_LIMIT, window_seconds=window))
    with SimServer({"admin_token": ADMIN_TOKEN, "seed": 7, "as_of": AS_OF, "workspaces": workspaces}) as sim:
        entries = [tenant_entry(t) for t in HEALTHY]
        entries += [tenant_entry(t, tier="daily", budget_share=1.0) for t in (LOCKED, BRIEF)]
        tenants = write_tenants(directory / "tenants.yaml", *entries)
        home = scratch_instance(directory, ROOT / "demo" / "dagster.yaml")
        processes = ProcessLog(directory)
        env = processes.env(dripfeed_env(directory, home, tenants, sim.base_url, *HEALTHY, LOCKED, BRIEF))
        env["DRIPFEED_HOURLY_PERIOD_MINUTES"] = "1"
        for tenant in (LOCKED, BRIEF):
            sim.admin.spend(tenant, RATE_LIMIT - LEFT_FOR_DRIPFEED)  # the customer's own scripts
        session = Session(
            sim=sim,
            instance=dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))),
            warehouse=Warehouse(url=env["DRIPFEED_WAREHOUSE"]),
            api=make_api(base_url=sim.base_url, tenants_file=str(tenants), state=env["DRIPFEED_STATE"]),
            processes=processes,
            throttled_at=time.time(),
        )
        with running_daemon(directory, env) as daemon, processes.polling(daemon.pid):
            wait_until(lambda: all(session.hourly_runs(t) for t in HEALTHY), 240, "an hourly run of each")
            session.drifted_at = time.time()
            sim.admin.schema_change(
                "acme", kind="change_type", resource="tasks", field="estimate_hours", to="string", format="{}h"
            )
            for tenant in HEALTHY:
                sim.admin.mutate(tenant, updates=30, resource="tasks")
            wait_until(
                lambda: all(session.hourly_runs(t, session.drifted_at) for t in HEALTHY), 240, "the runs after it"
            )
            wait_until(session.resumption, 300, f"{BRIEF}'s resumption")
            session.ended_at = time.time()
        yield session
        session.instance.dispose()


def test_an_unchanged_tenants_scheduled_run_is_one_process_that_starts_none(session: Session) -> None:
    run = session.hourly_runs("acme")[0]  # nothing changed upstream since the first sync
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dripfeed/tier"] == "hourly"
    step_events = [e for e in session.instance.all_logs(run.run_id) if e.dagster_event and e.step_key]
    workers = {e.dagster_event.pid for e in step_events if e.dagster_event.pid is not None}
    assert len(workers) == 1, f"every step ran in the run's own process: {workers}"
    worker = workers.pop()
    spawned = [p for p in session.processes.started() if p.pid == worker]
    assert len(spawned) == 1 and "multiprocessing" in spawned[0].command, "the code server spawned it"
    assert session.processes.descendants(worker) == [], "no step process, no log tailer, nothing"


def test_every_check_result_of_a_run_is_recorded_for_the_tenants_partition(session: Session) -> None:
    for tenant in HEALTHY:
        evaluations = session.check_evaluations(session.hourly_runs(tenant)[0])
        assert set(evaluations) == CHECKS
        assert {e.partition for e in evaluations.values()} == {tenant}
        assert all(e.passed for e in evaluations.values()), evaluations


def test_a_drift_on_one_tenant_fails_only_that_tenants_check_with_the_diff(session: Session) -> None:
    acme = session.check_evaluations(session.hourly_runs("acme", session.drifted_at)[0])
    globex = session.check_evaluations(session.hourly_runs("globex", session.drifted_at)[0])
    assert not acme["tasks_schema_drift"].passed and acme["tasks_schema_drift"].partition == "acme"
    diff = acme["tasks_schema_drift"].metadata["drift"].value
    assert [(d["field"], d["expected_type"], d["seen_type"]) for d in diff] == [("estimate_hours", "double", "string")]
    assert all(e.passed for e in globex.values()) and acme["users_schema_drift"].passed


def test_a_throttled_tenants_run_ends_within_a_minute_with_its_checkpoint_committed(session: Session) -> None:
    (run,) = session.runs(LOCKED)  # and it was not started again while it waits
    assert run.status == dg.DagsterRunStatus.SUCCESS, "waiting is not failing: nothing alerts"
    record = session.instance.get_run_record_by_id(run.run_id)
    assert (record.end_time or 0) - (record.start_time or 0) < 60
    resume_at = time.mktime(time.strptime(run.tags[DEFERRED_UNTIL_TAG], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 900 <= resume_at - session.throttled_at <= 965, "deferred until the window resets, 15 minutes away"
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


def test_healthy_tenants_run_every_period_while_the_throttled_ones_occupy_nothing(session: Session) -> None:
    for tenant in HEALTHY:
        records = session.instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": tenant}))
        done = [r.dagster_run for r in records if r.end_time and r.end_time < session.ended_at]
        assert len(done) >= 3 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in done)
    assert_equals_ground_truth(session.sim, session.warehouse, "globex")
    for tenant in (LOCKED, BRIEF):
        for run in session.runs(tenant):
            record = session.instance.get_run_record_by_id(run.run_id)
            assert (record.end_time or 0) - (record.start_time or 0) < 60, f"{tenant} held a run slot"
    in_flight = dg.RunsFilter(
        tags={"dagster/partition": LOCKED}, statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED]
    )
    assert not session.instance.get_runs(in_flight), "nothing queued or running for the waiting tenant"
