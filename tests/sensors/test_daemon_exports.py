"""History exports through the real daemon, under the default run launcher as `make dev` and
deploy/run.sh run it. A new tenant's first sync is killed (its process alone, as the OOM killer
would): its code server fails it, the alert says the process died, and the retry submits the
exports. The daemon is killed while they are open, then again (with its code server and the load's
process) during a load; each export is loaded, none submitted twice, and the killed load is failed
by dead_run_workers and retried."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest

from pipeline_assets.history_exports import EXPORT_TAG
from pipeline_assets.run_worker import WORKER_TAG, Liveness, Worker, liveness
from resources.warehouse import Warehouse
from tests.support.dagster_daemon import (
    ROOT,
    dripfeed_env,
    running_daemon,
    scratch_instance,
    stop_schedules,
    wait_until,
)
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.resources import make_api
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

pytestmark = pytest.mark.e2e  # the real dagster-daemon, killed and restarted


def finished_runs(instance: dg.DagsterInstance, **tags: str) -> list[dg.DagsterRun]:
    return [run for run in instance.get_runs(filters=dg.RunsFilter(tags=tags)) if run.is_finished]


def loads_finished(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return [run for run in finished_runs(instance) if EXPORT_TAG in run.tags]


def first_syncs_succeeded(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    runs = finished_runs(instance, **{"dagster/partition": "acme"})
    return [run for run in runs if EXPORT_TAG not in run.tags and run.status == dg.DagsterRunStatus.SUCCESS]


def alert_recorded(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether sensor tenant_failure_alerts' stored cursor is past the run's failure."""
    failures = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=100).records
    failure = next(record for record in failures if record.run_id == run_id)
    (state,) = (s for s in instance.all_instigator_state() if s.instigator_name == "tenant_failure_alerts")
    cursor = state.instigator_data.cursor if state.instigator_data else None
    return cursor is not None and json.loads(cursor)["record_id"] >= failure.storage_id


def tagged_run(instance: dg.DagsterInstance, load: bool) -> dg.DagsterRun | None:
    """A sync (or a history load) whose step has begun (its process is recorded on it)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    return next((run for run in runs if (EXPORT_TAG in run.tags) is load and WORKER_TAG in run.tags), None)


def wait_for_tagged_run(instance: dg.DagsterInstance, load: bool) -> dg.DagsterRun:
    deadline = time.monotonic() + 300
    while (run := tagged_run(instance, load)) is None:
        assert time.monotonic() < deadline, "a run's step started within 300 s"
        time.sleep(0.02)
    return run


@pytest.mark.timeout(600)  # generous: a loaded CI machine starts runs slowly
def test_history_survives_a_killed_first_sync_and_the_daemon_killed_while_open_and_during_a_load(
    make_sim, webhook, tmp_path: Path, monkeypatch
) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 12000}, exports={"duration_seconds": 1}))
    sim.admin.hold_exports("acme")  # open until the daemon has been killed, however slow the machine
    home = scratch_instance(tmp_path, ROOT / "demo" / "dagster.yaml")  # its run_retries
    tenants = write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme", history_since="2000-01-01"))
    env = dripfeed_env(tmp_path, home, tenants, sim.base_url, "acme")
    env |= {
        "DRIPFEED_EXPORT_POLL_SECONDS": "2",
        "DRIPFEED_DEAD_RUN_CHECK_SECONDS": "2",
        "DRIPFEED_ALERT_WEBHOOK_URL": webhook.url,
    }
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        stop_schedules(tmp_path, env)
        # The first session's dead_run_workers ticks once, at its start: the code server alone fails
        # the killed first sync.
        with running_daemon(tmp_path, env | {"DRIPFEED_DEAD_RUN_CHECK_SECONDS": "600"}) as daemon:
            first_sync = wait_for_tagged_run(instance, load=False)
            os.kill(Worker.from_tag(first_sync.tags[WORKER_TAG]).pid, signal.SIGKILL)
            wait_until(lambda: first_syncs_succeeded(instance), 240, "acme's first sync, retried")
            wait_until(lambda: webhook, 180, "the killed first sync's alert")  # a sensor tick on a busy machine
            # The alert is posted mid-tick and recorded at the tick's end: killed in between, the
            # daemon would post it again when it restarts (at least once, docs/operations.md).
            wait_until(lambda: alert_recorded(instance, first_sync.run_id), 60, "the alert's tick recorded")
            assert instance.get_run_by_id(first_sync.run_id).status == dg.DagsterRunStatus.FAILURE
            assert first_syncs_succeeded(instance)[0].parent_run_id == first_sync.run_id
            assert len(sim.admin.exports("acme")) == 3
            assert {job["status"] for job in sim.admin.exports("acme")} <= {"queued", "running"}
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
        sim.admin.hold_exports("acme", hold=False)
        with running_daemon(tmp_path, env) as daemon:  # killed, with the load's process, during a load
            load = wait_for_tagged_run(instance, load=True)
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=30)
        worker = Worker.from_tag(load.tags[WORKER_TAG])
        assert worker is not None
        # SIGKILL is delivered, and the process reaped, a moment later on a busy machine
        wait_until(lambda: liveness(worker) == Liveness.GONE, 30, "the load's process to be gone")
        assert instance.get_run_by_id(load.run_id).status == dg.DagsterRunStatus.STARTED  # nobody failed it
        with running_daemon(tmp_path, env):  # its dead_run_workers fails the load; run_retries retries it
            wait_until(lambda: len(loads_finished(instance)) == 4, 240, "the three loads and the retry")
            wait_until(lambda: len(webhook) == 2, 180, "the killed load's alert")
        killed = instance.get_run_by_id(load.run_id)
        failure = instance.get_records_for_run(load.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
        retries = [run for run in loads_finished(instance) if run.parent_run_id == load.run_id]
        loaded = [run for run in loads_finished(instance) if run.run_id != load.run_id]
    assert killed is not None and killed.status == dg.DagsterRunStatus.FAILURE
    assert f"pid {worker.pid}" in (failure[0].event_log_entry.dagster_event.message or ""), "failed by the sensor"
    assert len(retries) == 1 and retries[0].status == dg.DagsterRunStatus.SUCCESS
    assert retries[0].tags[EXPORT_TAG] == load.tags[EXPORT_TAG]
    assert len(loaded) == 3 and all(run.status == dg.DagsterRunStatus.SUCCESS for run in loaded)
    assert [(a["tenant"], a["error_class"]) for a in webhook] == [("acme", "process_died")] * 2
    assert webhook[0]["reason"].startswith(f"Run execution process for {first_sync.run_id} was terminated by signal 9")
    assert webhook[1]["reason"].startswith(f"dripfeed: this run's process (pid {worker.pid} ")
    assert sim.admin.counters("acme")["exports_created"] == 3  # nothing submitted twice, through both kills
    warehouse = Warehouse(url=env["DRIPFEED_WAREHOUSE"])
    assert_equals_ground_truth(sim, warehouse, "acme")

    monkeypatch.setenv("TASKLANE_TOKEN_ACME", "token-acme")  # then an hourly sync reads only what changed
    api = make_api(base_url=sim.base_url, tenants_file=str(tenants), state=env["DRIPFEED_STATE"])
    sim.admin.mutate("acme", updates=120, resource="tasks")
    sim.admin.reset_counters("acme")
    with dg.instance_for_test() as scratch:
        assert materialize_tenant(scratch, "acme", api, warehouse).success
    assert_equals_ground_truth(sim, warehouse, "acme")
    counted = sim.admin.counters("acme")["endpoints"]["tasks.list"]["counted"]
    assert counted <= math.ceil(120 / 100) + 2
