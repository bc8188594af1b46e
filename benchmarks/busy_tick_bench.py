"""A tier's tick on a machine its runs fill: does it still end in time and reach its tenants?

At 10,000 hourly tenants a tick probes 833 of them and requests a run for each that changed; the
daemon then submits the runs and the queue starts them eight at a time, beside the next ticks. This
suite runs deploy/run.sh with TENANTS hourly tenants all due at every tick (a period of one 2-minute
tick) and, a minute before each tick, changes CHANGED of them upstream: a burst of runs as large as
the queue can start in two minutes, several times what 10,000 tenants changing 5% an hour request.
It measures the ticks twice, side by side, on the same simulator and Postgres:
- the design before: the daemon submits a tick's runs one after the other and ticks its sensors one
  at a time (Dagster's defaults), and runs share the CPU with the ticks on equal terms;
- now: deploy/dagster.yaml's `schedules:` and `sensors:` threads, and runs at niceness 10
  (DRIPFEED_RUN_NICENESS's default, pipeline_assets/run_priority.py).
Both probe with this commit's code (sensors/tenant_probes.py: no probe starts after 10 s).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from tasklane_sim import SimServer
from tests.support.postgres_server import running_postgres
from tests.support.tick_logs import log_lines

from .report import Section, run_parts
from .scale_bench import ROOT, Deployment, TreeCPU, cpu_during, sampling, simulator_config, sleep_until, tenant_id

TENANTS = int(os.environ.get("DRIPFEED_BENCH_BUSY_TENANTS", "1000"))
CHANGED = int(os.environ.get("DRIPFEED_BENCH_BUSY_CHANGED", "200"))
TICKS = int(os.environ.get("DRIPFEED_BENCH_BUSY_TICKS", "5"))
TICK_SECONDS = 120
CORES = psutil.cpu_count() or 1
SUMMARY = re.compile(r"tick \d+ of the period: (\d+) tenants checked")
NOT_REACHED = re.compile(r"(\d+) tenants not reached before the tick's time was up")
BEFORE, NOW = "before: serial submission, runs at the ticks' priority", "now: threaded daemon, runs at niceness 10"


@dataclass
class BusyTicks:
    durations: list[float]
    checked: list[int]
    not_reached: list[int]
    runs: list[int]
    servers_cpu: float  # every process's own CPU but the runs', during the ticks
    runs_niceness: set[int]
    deployment_share: float  # of the machine's CPU over the measured ticks: deploy/run.sh's whole tree
    machine_share: float  # every process's: the deployment, Postgres, the simulator


def before_deploy(scratch: Path) -> Path:
    """deploy/ as it was before: the daemon's `schedules:` and `sensors:` threads left out."""
    directory = scratch / "deploy-before"
    shutil.copytree(ROOT / "deploy", directory)
    instance = yaml.safe_load((directory / "dagster.yaml").read_text())
    del instance["schedules"], instance["sensors"]
    (directory / "dagster.yaml").write_text(yaml.safe_dump(instance))
    return directory


def measure(scratch: Path, pg: str, sim: SimServer, tenants: list[str], label: str) -> BusyTicks:
    before = label == BEFORE
    deploy = before_deploy(scratch) if before else None
    name = "before" if before else "now"
    deployment = Deployment(ROOT, scratch / name, pg, sim, tenants, 2, tenants, deploy=deploy)
    deployment.env["DRIPFEED_HOURLY_TICK_MINUTES"] = "2"
    if before:
        deployment.env["DRIPFEED_RUN_NICENESS"] = "0"
    print(f"  {name}: {len(tenants):,} tenants prepared in {deployment.prepare():.0f} s", flush=True)
    rng = random.Random(7)  # the same tenants change in both
    with deployment.running() as script:
        cpu = TreeCPU(script.pid)
        start = (time.time() // TICK_SECONDS + 2) * TICK_SECONDS  # a tick to warm up, then the measured ones
        with sampling(cpu) as samples:
            sleep_until(start - 60)
            tree_before, machine_before, began = cpu.total(), psutil.cpu_times(), time.monotonic()
            for n in range(TICKS):
                sleep_until(start + n * TICK_SECONDS - 60)  # the tick before has requested its runs
                for tenant in rng.sample(tenants, CHANGED):
                    sim.admin.mutate(tenant, updates=2, resource="tasks")
            sleep_until(start + TICKS * TICK_SECONDS - 5)
            tree, machine, elapsed = cpu.total() - tree_before, psutil.cpu_times(), time.monotonic() - began
        with deployment.instance() as instance:
            state = next(s for s in instance.all_instigator_state() if s.name == "hourly_tenants")
            ticks = [
                t
                for t in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=50)
                if start - 5 <= t.timestamp < start + TICKS * TICK_SECONDS - 5 and t.end_timestamp
            ]
            logs = [log_lines(instance, t.tick_data.log_key) for t in ticks]
    windows = [(t.timestamp, t.end_timestamp) for t in ticks]
    summaries = [next((m for line in lines if (m := SUMMARY.search(line))), None) for lines in logs]
    return BusyTicks(
        durations=[end - begin for begin, end in windows],
        checked=[int(m.group(1)) if m else 0 for m in summaries],
        not_reached=[sum(int(m.group(1)) for line in lines if (m := NOT_REACHED.search(line))) for lines in logs],
        runs=[len(t.run_ids) for t in ticks],
        servers_cpu=cpu_during(samples, windows),
        runs_niceness=cpu.runs_niceness,
        deployment_share=tree / (elapsed * CORES),
        machine_share=(_busy(machine) - _busy(machine_before)) / (elapsed * CORES),
    )


def _busy(times: Any) -> float:
    """CPU-seconds the machine's cores were busy (guest time is already in user time)."""
    unbusy = ("idle", "iowait", "guest", "guest_nice")
    return sum(times) - sum(getattr(times, name, 0.0) for name in unbusy)


def _p50_max(durations: list[float]) -> str:
    return f"{statistics.median(durations):.1f} s / {max(durations):.1f} s" if durations else "no tick"


def busy_ticks(section: Section, scratch: Path) -> None:
    tenants = [tenant_id(n) for n in range(TENANTS)]
    config = simulator_config(tenants, seed=9)
    with running_postgres() as pg:
        sim = SimServer(config, subprocess_mode=True).start(timeout=900)
        try:
            found = [(label, measure(scratch, pg, sim, tenants, label)) for label in (BEFORE, NOW)]
        finally:
            sim.stop()
    rows = []
    for label, ticks in found:
        checked = sum(ticks.checked)
        rows.append(
            [
                label,
                _p50_max(ticks.durations),
                f"{statistics.mean(ticks.checked):,.0f}" if ticks.checked else "-",
                f"{statistics.mean(ticks.not_reached):,.0f}" if ticks.not_reached else "-",
                f"{statistics.mean(ticks.runs):.0f}" if ticks.runs else "-",
                f"{1000 * ticks.servers_cpu / max(1, checked):.1f} ms",
                ", ".join(map(str, sorted(ticks.runs_niceness))) or "-",
                f"{ticks.deployment_share:.0%} / {ticks.machine_share:.0%}",
            ]
        )
    section.table(
        [
            "design",
            "tick p50 / max (goal < 20 s)",
            "tenants checked a tick",
            "not reached a tick",
            "runs requested a tick",
            "CPU of all but the runs during ticks ÷ tenants checked (goal < 10 ms)",
            "niceness seen on run processes",
            "CPU used: deploy/run.sh's tree / the whole machine",
        ],
        rows,
    )
    section.note(
        f"deploy/run.sh (code server, daemon, webserver) on Postgres, {CORES} cores; {TENANTS:,} hourly tenants due "
        f"at every 2-minute tick ({TICKS} ticks measured after one to warm up), {CHANGED} of them changed upstream "
        "a minute before each tick, the same tenants in both designs. A tick starts no probe after 10 s and waits "
        "for none after 15 s (sensors/tenant_probes.py): what it did not reach, it names, and the next tick takes "
        "first. A tick's duration is Dagster's: from its start until every run it requested is submitted."
    )


def run() -> Section:
    return run_parts("A tier's tick while runs fill the machine", busy_ticks)
