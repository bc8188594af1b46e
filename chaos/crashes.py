"""Crashes: SIGKILL a `dagster asset materialize` run's whole process tree at a random moment, then
resume it with another run: the warehouse must equal the ground truth every time, and the resumed
run may fetch again at most one checkpoint's pages beyond what was missing. Also: the Postgres
server crashes under a running sync (the run must fail, not hang; the next one resumes).

The moments are aimed by watching the simulator's listing counter while the run pages through a
tenant whose every answer is slowed a little (so a run lasts seconds):
- between pages: after a random number of `tasks` pages, at a random instant of the next answer;
- at a checkpoint's write: just after the page that completes a checkpoint, while its batch's
  transaction is being written by the sync's writer thread;
- between the last checkpoint and the run's end: after the last page, during the final write,
  the checks and the run's events;
- during a reconciliation (a full re-sync that soft-deletes what the listing no longer shows);
- during an export load (full campaign): the real `dagster-daemon` launches a new tenant's history
  loads, and the tasks load's process is SIGKILLed while it reads the file or writes its batches;
  the instance's run_retries retries it, and the retry must load the same file to the ground truth.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from pipeline_assets.history_exports import EXPORT_TAG
from pipeline_assets.run_worker import WORKER_TAG, Worker
from resources.streams import STREAMS
from tasklane_sim import SimServer
from tasklane_sim.admin_client import SimAdminClient
from tasklane_sim.server import free_port
from tests.support.dagster_daemon import running_daemon, stop_schedules
from tests.support.postgres_server import fresh_database

from .harness import (
    BIN,
    Location,
    admin_client,
    compare_with_truth,
    listing_requests,
    new_secret,
    pages_per_checkpoint,
    simulator,
    wait_for,
    workspace,
)
from .postgres import running_server
from .secrets_scan import record_warehouse

CHECKPOINT_PAGES = 4
TASKS = 2400  # 24 pages of tasks
SLOW = {"slow_rate": 1.0, "slow_seconds": 0.08}  # every answer 80 ms late: a run's listing lasts seconds
RECONCILING = "during a reconciliation"
KINDS = ("between pages", "at a checkpoint's write", "after the last checkpoint", RECONCILING)
LOADING = "during an export load"
LOAD_TASKS = 60000  # twelve 5,000-record batches: a load lasts seconds
DELETED_UPSTREAM = 40  # tasks deleted, their tombstones purged, before a reconciliation is killed


@dataclass
class Trial:
    kind: str
    backend: str
    killed_with_rows: int = 0
    equal_to_truth: bool = False
    mismatches: int = 0
    fetched_twice: int = 0
    resumed_from_checkpoint: bool = False
    resume_failed: bool = False
    left_started: bool = False  # a killed load that nobody failed (its tenant's queue slot held)
    files_read_again: int = 0  # export files downloaded beyond one per stream
    missed: bool = False  # the load ended before it could be killed


def committed_rows(location: Location, tenant: str) -> dict[str, int]:
    counts = {}
    for stream in STREAMS:
        try:
            rows = location.warehouse.query(f"SELECT count(*) FROM {stream} WHERE tenant_id = ?", (tenant,))
        except Exception:  # the table is created by the first write: none yet
            rows = [(0,)]
        counts[stream] = rows[0][0]
    return counts


def deletes_the_listing_cannot_show(location: Location, admin: SimAdminClient, tenant: str) -> None:
    """Sync the tenant, then delete tasks upstream and purge every tombstone: only a reconciliation
    (a full re-sync lists every id) can learn of those deletes."""
    location.launch(tenant, pages_per_checkpoint(CHECKPOINT_PAGES)).wait()
    admin.mutate(tenant, creates=0, updates=0, deletes=DELETED_UPSTREAM, resource="tasks")
    admin.settle(tenant)
    admin.set_knobs(tenant, tombstone_retention_days=1e-5)  # a second: every tombstone is past it
    time.sleep(1.5)
    admin.purge_tombstones(tenant)
    admin.reset_counters(tenant)


def kill_at_random_moment(
    location: Location, admin: SimAdminClient, tenant: str, kind: str, rng: random.Random
) -> None:
    """Launch the tenant's run and SIGKILL its process tree at a moment of the given kind."""
    config = pages_per_checkpoint(CHECKPOINT_PAGES)
    if kind == RECONCILING:  # a full re-sync reconciles
        for stream in STREAMS:
            config["ops"][stream]["config"]["full_resync"] = True
    run = location.launch(tenant, config)
    pages = math.ceil(TASKS / 100)

    def tasks_pages() -> int:
        if run.process.poll() is not None:
            raise RuntimeError(f"{tenant}'s run ended before it was killed:\n{run.output()[-2000:]}")
        return listing_requests(admin, tenant)["tasks"]

    if kind in ("between pages", RECONCILING):
        target = rng.randint(1, pages - 2)
        wait_for(lambda: tasks_pages() >= target, 300, f"{target} pages of {tenant}", every=0.01)
        time.sleep(rng.uniform(0, SLOW["slow_seconds"] * 1.5))
    elif kind == "at a checkpoint's write":
        target = CHECKPOINT_PAGES * rng.randint(1, pages // CHECKPOINT_PAGES - 1)
        wait_for(lambda: tasks_pages() >= target, 300, f"{target} pages of {tenant}", every=0.005)
        time.sleep(rng.uniform(0.01, 0.06))  # the answer's body is read, the batch handed to the writer
    else:
        wait_for(lambda: tasks_pages() >= pages, 300, f"the last page of {tenant}", every=0.01)
        time.sleep(rng.uniform(0, 2.0))
    run.kill()


def trial(location: Location, sim: SimServer, backend: str, tenant: str, kind: str, seed: int) -> Trial:
    result = Trial(kind, backend)
    admin = admin_client(sim)
    if kind == RECONCILING:
        deletes_the_listing_cannot_show(location, admin, tenant)
    kill_at_random_moment(location, admin, tenant, kind, random.Random(seed))
    before = committed_rows(location, tenant)
    killed_pages = listing_requests(admin, tenant)
    result.killed_with_rows = sum(before.values())
    truth = {stream: len(admin.truth(tenant, stream)) for stream in STREAMS}
    admin.reset_counters(tenant)
    resumed = location.launch(tenant, pages_per_checkpoint(CHECKPOINT_PAGES))
    if resumed.wait() != 0:
        result.resume_failed = True
        print(f"    resume of {tenant} failed:\n{resumed.output()[-1500:]}", flush=True)
    fetched = listing_requests(admin, tenant)
    # Pages both runs fetched, beyond the one page of overlap a finished stream reads again.
    one_pass = {s: max(1, math.ceil(truth[s] / 100)) for s in STREAMS}
    result.fetched_twice = sum(max(0, killed_pages[s] + fetched[s] - one_pass[s] - 1) for s in STREAMS)
    comparison = compare_with_truth(admin, location.warehouse, tenant)
    result.mismatches, result.equal_to_truth = comparison.mismatches, comparison.mismatches == 0
    metadata = location.last_materializations(tenant).get("tasks", {})
    result.resumed_from_checkpoint = metadata.get("resumed_from_checkpoint", "none") != "none"
    return result


def kill_campaign(scratch: Path, backend: str, warehouse_url: str | None, kills: int, seed: int) -> list[Trial]:
    tenants = [f"crash-{backend[:2]}-{n:03d}" for n in range(kills)]
    specs = [
        workspace(t, new_secret(f"tok-{t}"), records={"users": 20, "projects": 10, "tasks": TASKS}, faults=SLOW)
        for t in tenants
    ]
    with simulator(specs) as sim:
        location = Location(scratch / f"crashes-{backend}", sim, {t: {} for t in tenants}, warehouse_url)
        rng = random.Random(seed)
        plan = [(t, KINDS[n % len(KINDS)], rng.randrange(1 << 30)) for n, t in enumerate(tenants)]
        with ThreadPoolExecutor(max_workers=2) as pool:  # two tenants at a time: the machine has two cores
            trials = list(pool.map(lambda p: trial(location, sim, backend, *p), plan))
        if warehouse_url:  # its server stops after the campaign
            record_warehouse(location)
        return trials


def load_runs(location: Location, tenant: str) -> list[dg.DagsterRun]:
    """The tenant's history load runs (the export sensor's, and their retries), oldest first."""
    with location.instance() as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": tenant}))
    return [run for run in reversed(runs) if EXPORT_TAG in run.tags]


def load_status(location: Location, run_id: str) -> dg.DagsterRunStatus:
    with location.instance() as instance:
        run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def tasks_load_begun(location: Location, tenant: str) -> dg.DagsterRun | None:
    """The tenant's tasks load, once its step has begun (its process is recorded on it)."""
    for run in load_runs(location, tenant):
        if run.asset_selection == {dg.AssetKey("tasks")} and WORKER_TAG in run.tags:
            return run
    return None


def load_trial(location: Location, sim: SimServer, backend: str, tenant: str, seed: int) -> Trial:
    """The tenant's first sync submits its exports; the daemon's export sensor launches the loads; the
    tasks load's process is SIGKILLed at a random moment of it; the retry must reach the ground truth."""
    result, admin, rng = Trial(LOADING, backend), admin_client(sim), random.Random(seed)
    if location.launch(tenant).wait() != 0:
        result.resume_failed = True
        return result
    load: dg.DagsterRun | None = None

    def started() -> bool:
        nonlocal load
        load = tasks_load_begun(location, tenant)
        return load is not None

    wait_for(started, 300, f"{tenant}'s tasks load", every=0.02)
    assert load is not None
    if load.is_finished:  # it ended between two looks: this trial killed nothing
        result.missed = True
        return result
    time.sleep(rng.uniform(0, 1.6))  # a 60,000-task load's step lasts about 2 s on two cores
    worker = Worker.from_tag(load.tags[WORKER_TAG])
    assert worker is not None
    try:
        os.kill(worker.pid, signal.SIGKILL)
    except ProcessLookupError:  # it had ended
        result.missed = True
        return result
    killed_id = load.run_id
    time.sleep(1)
    if load_status(location, killed_id) == dg.DagsterRunStatus.SUCCESS:  # it ended well before the kill landed
        result.missed = True
        return result
    result.killed_with_rows = committed_rows(location, tenant)["tasks"]

    def retried() -> bool:
        runs = load_runs(location, tenant)
        retries = [run for run in runs if run.parent_run_id == killed_id]
        return len(runs) >= 4 and all(run.is_finished for run in runs) and bool(retries)

    try:
        wait_for(retried, 300, f"{tenant}'s killed load failed and retried", every=1)
    except TimeoutError:
        result.resume_failed = True
    runs = load_runs(location, tenant)
    killed = next(run for run in runs if run.run_id == killed_id)
    retry = next((run for run in runs if run.parent_run_id == killed_id), None)
    result.resume_failed = result.resume_failed or retry is None or retry.status != dg.DagsterRunStatus.SUCCESS
    result.left_started = killed.status == dg.DagsterRunStatus.STARTED
    downloads = admin.counters(tenant)["endpoints"].get("exports.download", {}).get("requests", 0)
    result.files_read_again = downloads - len(STREAMS)
    comparison = compare_with_truth(admin, location.warehouse, tenant)
    result.mismatches, result.equal_to_truth = comparison.mismatches, comparison.mismatches == 0
    return result


def export_load_kills(scratch: Path, backend: str, warehouse_url: str | None, kills: int, seed: int) -> list[Trial]:
    """`kills` new tenants with history, their loads launched by the real daemon, one load killed each."""
    tenants = [f"load-{backend[:2]}-{n:03d}" for n in range(kills)]
    records = {"users": 20, "projects": 10, "tasks": LOAD_TASKS}
    specs = [workspace(t, new_secret(f"tok-{t}"), records=records, exports={"duration_seconds": 1}) for t in tenants]
    fast = {"DRIPFEED_EXPORT_POLL_SECONDS": "2", "DRIPFEED_DEAD_RUN_CHECK_SECONDS": "5"}
    with simulator(specs) as sim:
        entries = {t: {"history_since": "2000-01-01"} for t in tenants}
        location = Location(scratch / f"loads-{backend}", sim, entries, warehouse_url, extra_env=fast)
        stop_schedules(location.directory, location.env)
        rng = random.Random(seed)
        plan = [(t, rng.randrange(1 << 30)) for t in tenants]
        with running_daemon(location.directory, location.env), ThreadPoolExecutor(max_workers=kills) as pool:
            trials = list(pool.map(lambda p: load_trial(location, sim, backend, *p), plan))
        if warehouse_url:
            record_warehouse(location)
        return trials


def postgres_crash(scratch: Path) -> dict[str, int]:
    """The Postgres server dies under a running sync: the run must fail within a bound, the server
    restarts (recovering from its WAL) and the next run resumes to the ground truth."""
    tenant = "crash-pg-server"
    spec = workspace(
        tenant, new_secret(f"tok-{tenant}"), records={"users": 20, "projects": 10, "tasks": TASKS}, faults=SLOW
    )
    with simulator([spec]) as sim, running_server("crashed") as server:
        location = Location(scratch / "crash-pg-server", sim, {tenant: {}}, fresh_database(server.url, "warehouse"))
        run = location.launch(tenant, pages_per_checkpoint(CHECKPOINT_PAGES))
        wait_for(lambda: listing_requests(sim.admin, tenant)["tasks"] >= 10, 300, "10 pages")
        server.crash()
        started = time.monotonic()
        try:
            code = run.wait(timeout=180)
        except Exception:
            run.kill()
            code = None
        failed_within = time.monotonic() - started
        server.start()
        resumed = location.launch(tenant, pages_per_checkpoint(CHECKPOINT_PAGES))
        resumed_ok = resumed.wait() == 0
        comparison = compare_with_truth(sim.admin, location.warehouse, tenant)
        record_warehouse(location)
    return {
        "run failed (not hung) when Postgres died": int(code not in (None, 0)),
        "seconds until it failed": round(failed_within),
        "next run succeeded": int(resumed_ok),
        "mismatches after the Postgres crash": comparison.mismatches,
    }


def run(scratch: Path, quick: bool) -> list[tuple[str, str, str, bool]]:
    trials: list[Trial] = []
    if quick:
        trials += kill_campaign(scratch, "duckdb", None, kills=4, seed=14)
    else:
        trials += kill_campaign(scratch, "duckdb", None, kills=25, seed=14)
        trials += export_load_kills(scratch, "duckdb", None, kills=3, seed=16)
        with running_server("crashes") as server:
            trials += kill_campaign(scratch, "postgres", fresh_database(server.url, "warehouse"), kills=25, seed=15)
            trials += export_load_kills(scratch, "postgres", fresh_database(server.url, "warehouse"), kills=3, seed=17)
    missed = sum(t.missed for t in trials)
    trials = [t for t in trials if not t.missed]
    rows: list[tuple[str, str, str, bool]] = [
        ("kills (SIGKILL of a run's processes)", str(len(trials)), "≥ 50" if not quick else "≥ 4", True),
        ("back ends", ", ".join(sorted({t.backend for t in trials})), "both" if not quick else "", True),
    ]
    for kind in KINDS:
        of_kind = [t for t in trials if t.kind == kind]
        worst = max((t.fetched_twice for t in of_kind), default=0)
        rows.append(
            (
                f"{kind}: kills, most pages both runs fetched (beyond the overlap page)",
                f"{len(of_kind)}, {worst}",
                f"≤ {CHECKPOINT_PAGES} pages (one checkpoint)",
                worst <= CHECKPOINT_PAGES,
            )
        )
    if not quick:
        loads = [t for t in trials if t.kind == LOADING]
        left_started = sum(t.left_started for t in loads)
        reread = max((t.files_read_again for t in loads), default=0)
        rows += [
            (f"{LOADING}: kills (loads that ended before their kill)", f"{len(loads)} ({missed})", "", True),
            (f"{LOADING}: killed with batches committed", str(sum(bool(t.killed_with_rows) for t in loads)), "", True),
            (f"{LOADING}: killed loads left STARTED", str(left_started), "0", not left_started),
            (f"{LOADING}: most export files read again per kill", str(reread), "≤ 1 (the killed load's)", reread <= 1),
        ]
    failed = sum(t.resume_failed for t in trials)
    rows.append(("resumed runs that failed", str(failed), "0", failed == 0))
    unequal = sum(not t.equal_to_truth for t in trials)
    rows.append(("resumed runs not equal to the ground truth", str(unequal), "0", unequal == 0))
    with_rows = [t for t in trials if t.killed_with_rows and t.kind != LOADING]
    said = sum(t.resumed_from_checkpoint for t in with_rows)
    rows.append(("resumes that said they resumed from a checkpoint", f"{said} of {len(with_rows)}", "", True))
    if not quick:
        goals = {
            "the killed run, once the daemon restarted (dead_run_workers)": "FAILURE",
            "the tenant's next run (queued behind it)": "SUCCESS",
            "mismatches after the daemon's crash": "0",
        }
        for name, value in daemon_and_webserver_killed(scratch).items():
            goal = goals.get(name, "")
            rows.append((name, value, goal, not goal or value.startswith(goal)))
        for name, value in postgres_crash(scratch).items():
            goal = {"run failed (not hung) when Postgres died": "1", "next run succeeded": "1"}.get(name, "")
            goal = "0" if name.startswith("mismatches") else goal
            rows.append((name, str(value), goal, not goal or str(value) == goal))
    return rows


RUN_MONITORING = """
# As deploy/dagster.yaml (with the demo's run_retries).
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  max_resume_run_attempts: 0
  poll_interval_seconds: 5
"""


def runs_of(location: Location, tenant: str) -> list[dg.DagsterRun]:
    with location.instance() as instance:
        return [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": tenant}))]


def backfill(location: Location, tenant: str) -> None:
    subprocess.run(
        [
            str(BIN / "dagster"),
            "job",
            "backfill",
            "-w",
            "workspace.yaml",
            "-j",
            "sync_tenant",
            "--partitions",
            tenant,
            "--noprompt",
        ],
        cwd=location.directory,
        env=location.env,
        check=True,
        capture_output=True,
        timeout=300,
    )


def daemon_and_webserver_killed(scratch: Path) -> dict[str, str]:
    """The webserver, then the daemon (with its code server and the run it launched), SIGKILLed while
    a backfill's run pages; the daemon restarts. Nothing of Dagster's fails that run under the
    default launcher (its code server died with it): the dead_run_workers sensor must, which frees
    the tenant's queue slot; the next run of the tenant must resume to the ground truth."""
    tenant = "crash-daemon"
    spec = workspace(
        tenant, new_secret(f"tok-{tenant}"), records={"users": 20, "projects": 10, "tasks": TASKS}, faults=SLOW
    )
    with simulator([spec]) as sim:
        fast = {"DRIPFEED_DEAD_RUN_CHECK_SECONDS": "5"}
        location = Location(scratch / "crash-daemon", sim, {tenant: {}}, extra_env=fast)
        with (location.home / "dagster.yaml").open("a") as config:
            config.write(RUN_MONITORING)
        stop_schedules(location.directory, location.env)
        port = free_port()
        webserver = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-p", str(port)],
            cwd=location.directory,
            env=location.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        with running_daemon(location.directory, location.env) as daemon:
            backfill(location, tenant)
            wait_for(
                lambda: listing_requests(sim.admin, tenant)["tasks"] >= 6, 300, "the daemon's run paging", every=0.2
            )
            os.killpg(webserver.pid, signal.SIGKILL)
            webserver.wait()
            wait_for(lambda: listing_requests(sim.admin, tenant)["tasks"] >= 12, 300, "the run paging on", every=0.2)
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        killed = runs_of(location, tenant)[0]
        with running_daemon(location.directory, location.env):
            backfill(location, tenant)  # the tenant's next run, queued behind the killed one's slot
            started = time.monotonic()
            try:
                wait_for(lambda: run_by_id(location, killed.run_id).is_finished, 60, "the killed run", every=1)
                marked = f"{run_by_id(location, killed.run_id).status.value} after {time.monotonic() - started:.0f} s"
            except TimeoutError:  # what an operator would do: mark it failed, which frees its slot
                marked = f"still {run_by_id(location, killed.run_id).status.value} after 60 s"
                with location.instance() as instance:
                    instance.report_run_failed(killed)
            with suppress(TimeoutError):
                wait_for(lambda: all(r.is_finished for r in runs_of(location, tenant)), 300, "the runs", every=1)
            runs = runs_of(location, tenant)
        next_run = next(r for r in runs if r.run_id != killed.run_id and r.parent_run_id is None).status.value
        retry = next((r.status.value for r in runs if r.parent_run_id == killed.run_id), "none")
        if next_run != "SUCCESS":
            location.launch(tenant).wait()
        comparison = compare_with_truth(sim.admin, location.warehouse, tenant)
    return {
        "killed run (daemon and webserver SIGKILLed)": killed.run_id[:8],
        "the killed run, once the daemon restarted (dead_run_workers)": marked,
        "the tenant's next run (queued behind it)": next_run,
        "the killed run's automatic retry (none once its backfill ended)": retry,
        "mismatches after the daemon's crash": str(comparison.mismatches),
    }


def run_by_id(location: Location, run_id: str) -> dg.DagsterRun:
    with location.instance() as instance:
        run = instance.get_run_by_id(run_id)
    assert run is not None
    return run
