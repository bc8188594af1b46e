"""The dead run workers sensor: a run whose process was SIGKILLed is failed (freeing its tenant's
slot of the run queue), a run whose process still works is never touched, and a run recorded on
another host is left to that host."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from pipeline_assets.run_worker import WORKER_TAG, Liveness, Worker, liveness, this_process
from sensors.dead_run_workers import GONE_RUNS, dead_run_workers_sensor
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.simulator import workspace_config
from tests.support.sync_worker import start_sync_worker
from tests.support.ticks import sensor_tick
from tests.support.worker_probe_jobs import in_process_job, multiprocess_job


def exited_child() -> Worker:
    """A process that ran and was reaped: its pid names nothing now."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    worker = replace(_this(), pid=child.pid, started=_start_ticks(child.pid))
    child.kill()
    child.wait()
    return worker


def zombie_child() -> tuple[Worker, subprocess.Popen]:
    """A process that died and that its parent (this test) has not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    worker = replace(_this(), pid=child.pid, started=_start_ticks(child.pid))
    child.send_signal(signal.SIGKILL)
    time.sleep(0.5)
    return worker, child


def _this() -> Worker:
    worker = this_process()
    assert worker is not None, "this test needs Linux's /proc"
    return worker


def _start_ticks(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()[19]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("this process", Liveness.ALIVE),
        ("a process that exited", Liveness.GONE),
        ("its pid reused by a later process", Liveness.GONE),
        ("this host restarted since", Liveness.GONE),
        ("another host", Liveness.ELSEWHERE),
    ],
)
def test_liveness_tells_a_dead_worker_from_a_live_one(case: str, expected: Liveness) -> None:
    worker = {
        "this process": _this,
        "a process that exited": exited_child,
        "its pid reused by a later process": lambda: replace(_this(), started="1"),
        "this host restarted since": lambda: replace(_this(), boot="00000000"),
        "another host": lambda: replace(_this(), host=f"not-{socket.gethostname()}"),
    }[case]()
    assert Worker.from_tag(worker.tag()) == worker
    assert liveness(worker) == expected


def test_a_zombie_worker_is_gone() -> None:
    worker, child = zombie_child()
    try:
        assert liveness(worker) == Liveness.GONE
    finally:
        child.wait()


@pytest.mark.parametrize("tag", ["", "host/boot", "host/boot/not-a-pid/1", "a/b/c/d/e"])
def test_a_malformed_worker_tag_names_no_process(tag: str) -> None:
    assert Worker.from_tag(tag) is None


@pytest.mark.parametrize(("job", "records"), [(in_process_job, True), (multiprocess_job, False)])
def test_only_a_run_whose_steps_run_in_its_process_records_a_worker(
    job: Callable[[], dg.JobDefinition], records: bool
) -> None:
    """A multiprocess executor's step process ends with its step while the run goes on: recording
    it would get a healthy run failed as dead."""
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(job), instance=instance)
        assert result.success
        assert (WORKER_TAG in instance.get_run_by_id(result.run_id).tags) is records


def started_runs(instance: dg.DagsterInstance) -> dict[str, dg.DagsterRun]:
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    return {run.tags["dagster/partition"]: run for run in runs if WORKER_TAG in run.tags}


def tasks_pages(sim, tenant: str) -> int:
    return sim.admin.counters(tenant)["endpoints"].get("tasks.list", {}).get("requests", 0)


@pytest.mark.e2e  # separate Python worker processes, one killed
def test_a_killed_run_is_failed_and_the_other_tenants_run_is_not(
    make_sim, instance, tasklane_for, duckdb_warehouse, tmp_path
) -> None:
    # Both runs page for 15 s, even on a loaded machine where the second worker takes seconds to start.
    slow = {"slow_rate": 1.0, "slow_seconds": 0.5}
    sim = make_sim(*(workspace_config(t, records={"tasks": 3000}, faults=slow) for t in ("acme", "globex")))
    tasklane_for(sim, "acme", "globex")
    home = str(instance.root_directory)
    workers = {
        t: start_sync_worker(sim, tmp_path, duckdb_warehouse.url, t, pages_per_checkpoint=4, dagster_home=home)
        for t in ("acme", "globex")
    }
    sensor = dead_run_workers_sensor()
    deadline = time.monotonic() + 120
    while len(started_runs(instance)) < 2 or tasks_pages(sim, "acme") < 6:
        assert all(w.poll() is None for w in workers.values()), [w.communicate() for w in workers.values()]
        assert time.monotonic() < deadline, "both runs started and paging"
        time.sleep(0.05)

    alive = sensor_tick(sensor, instance, {})
    assert alive.skip_reason and alive.skip_reason.startswith(GONE_RUNS + "0"), alive.text
    assert set(started_runs(instance)) == {"acme", "globex"}, "a working run was left alone"

    workers["acme"].send_signal(signal.SIGKILL)
    workers["acme"].wait()
    killed = started_runs(instance)["acme"]
    tick = sensor_tick(sensor, instance, {})

    assert tick.skip_reason and tick.skip_reason.startswith(GONE_RUNS + "1"), tick.text
    failed = instance.get_run_by_id(killed.run_id)
    assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE
    failure = instance.get_records_for_run(killed.run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    worker = Worker.from_tag(killed.tags[WORKER_TAG])
    assert worker is not None and f"pid {worker.pid}" in (failure[0].event_log_entry.dagster_event.message or "")
    assert workers["globex"].wait(timeout=120) == 0, workers["globex"].communicate()
    assert instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "globex"}))[0].is_success
    assert_equals_ground_truth(sim, duckdb_warehouse, "globex")

    resumed = start_sync_worker(sim, tmp_path, duckdb_warehouse.url, "acme", pages_per_checkpoint=4, dagster_home=home)
    assert resumed.wait(timeout=120) == 0, resumed.communicate()
    assert_equals_ground_truth(sim, duckdb_warehouse, "acme")
