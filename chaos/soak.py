"""Soak: 50 tenants under live mutations, the real `dagster-daemon` launching every run (the registry's
first syncs, then the hourly tier), with the vendor's window shortened to 60 s (its limit scaled to
60 calls) and the hourly tier's period to 5 minutes, so that many windows and schedule periods pass
in minutes. Every window must stay within dripfeed's share of the limit, nobody may be locked out,
and the resident memory of the long-lived processes (the daemon and its code server) must stay flat."""

from __future__ import annotations

import os
import statistics
import time
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psutil

from tests.support.dagster_daemon import running_daemon
from tests.support.periodic import every

from .harness import Location, new_secret, simulator, workspace

TENANTS = 50
WINDOW_SECONDS = 60
LIMIT = 60  # calls a window: 3,600 an hour, scaled to a minute
SHARE = 0.8  # dripfeed's default budget_share of the vendor's limit
SOAK_SECONDS = int(os.environ.get("CHAOS_SOAK_SECONDS", "480"))  # 8 windows; shorter for a trial
MUTATIONS = {"creates_per_second": 0.05, "updates_per_second": 0.2, "deletes_per_second": 0.02}


@dataclass
class Memory:
    """Resident memory (MB) of the long-lived processes. The daemon lives the whole soak; its code
    server does not: the daemon reloads its workspace every minute (Dagster's
    RELOAD_WORKSPACE_INTERVAL) and starts a new one, so each code server is judged by its peak."""

    daemon: list[float] = field(default_factory=list)
    code_servers: dict[int, float] = field(default_factory=dict)  # pid → peak, in the order they started


def code_servers(daemon: psutil.Process) -> list[psutil.Process]:
    """The daemon's code servers (runs come and go below them and are left out)."""
    found = []
    for child in daemon.children(recursive=True):
        with suppress(psutil.Error):
            if "grpc" in " ".join(child.cmdline()):
                found.append(child)
    return found


def sampling_memory(daemon_pid: int, memory: Memory, seconds: float = 5) -> AbstractContextManager[None]:
    """Sample the daemon's and its code servers' resident memory every `seconds`."""

    def sample() -> None:
        with suppress(psutil.Error):
            daemon = psutil.Process(daemon_pid)
            memory.daemon.append(daemon.memory_info().rss / 2**20)
            for server in code_servers(daemon):
                with suppress(psutil.Error):
                    rss = server.memory_info().rss / 2**20
                    memory.code_servers[server.pid] = max(rss, memory.code_servers.get(server.pid, 0.0))

    return every(seconds, sample)


def growth(values: list[float]) -> tuple[float, float, float]:
    """The mean of the last third of `values` against the first, once the first third (loading, and
    the 50 first syncs' burst, which are not a leak) is left out."""
    warm = values[len(values) // 3 :]
    third = max(1, len(warm) // 3)
    first, last = statistics.mean(warm[:third]), statistics.mean(warm[-third:])
    return first, last, last / first - 1


def run(scratch: Path, quick: bool) -> list[tuple[str, str, str, bool]]:
    if quick:
        return [("soak", "full campaign only", "", True)]
    tenants = [f"soak-{n:02d}" for n in range(TENANTS)]
    specs = [
        workspace(
            t,
            new_secret(f"tok-{t}"),
            records={"users": 10, "projects": 5, "tasks": 2500},
            mutations=MUTATIONS,
            visibility_lag_seconds=10,
            window_seconds=WINDOW_SECONDS,
            rate_limit=LIMIT,
        )
        for t in tenants
    ]
    memory = Memory()
    with simulator(specs) as sim:
        location = Location(scratch / "soak", sim, {}, extra_env={"DRIPFEED_HOURLY_PERIOD_MINUTES": "5"})
        for tenant in tenants:
            location.add_tenant(tenant)
        location.write_tenants()  # the registry sensor adds their partitions and launches first syncs
        with running_daemon(location.directory, location.env) as daemon, sampling_memory(daemon.pid, memory):
            time.sleep(SOAK_SECONDS)
        counters = {t: sim.admin.counters(t) for t in tenants}
        with location.instance() as instance:
            runs = [r.dagster_run for r in instance.get_run_records()]
            for run in [r for r in runs if r.status == dg.DagsterRunStatus.FAILURE][:3]:
                failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
                error = failures[0].dagster_event.step_failure_data.error if failures else None
                ended = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
                why = (error.cause or error).message if error else (ended[0].message if ended else "?")
                print(f"    failed run {run.run_id[:8]} ({run.tags.get('dagster/partition')}): {why[:400]}", flush=True)
    share = int(LIMIT * SHARE)
    windows = [count for c in counters.values() for count in c["counted_by_window"].values()]
    over_share = sum(count > share for count in windows)
    over_limit = sum(count > LIMIT for count in windows)
    lockouts = sum(c["lockouts"] for c in counters.values())
    calls = sum(c["totals"]["requests"] for c in counters.values())
    succeeded = sum(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    failed = sum(r.status == dg.DagsterRunStatus.FAILURE for r in runs)
    daemon_first, daemon_last, daemon_growth = growth(memory.daemon)
    server_first, server_last, server_growth = growth(list(memory.code_servers.values()))
    return [
        (
            "tenants, soak length",
            f"{TENANTS}, {SOAK_SECONDS // 60} min ({SOAK_SECONDS // WINDOW_SECONDS} windows)",
            "",
            True,
        ),
        ("runs the daemon launched (succeeded, failed)", f"{len(runs)} ({succeeded}, {failed})", "", True),
        ("calls answered", f"{calls:,}", "thousands", calls >= 1000),
        ("tenant-windows with calls", str(len(windows)), "", True),
        (f"windows over dripfeed's share ({share} of {LIMIT})", str(over_share), "0", over_share == 0),
        ("windows over the vendor's limit", str(over_limit), "0", over_limit == 0),
        ("lockouts", str(lockouts), "0", lockouts == 0),
        (
            "daemon RSS, first → last third",
            f"{daemon_first:.0f} → {daemon_last:.0f} MB ({daemon_growth:+.1%})",
            "≤ +10%",
            daemon_growth <= 0.10,
        ),
        ("code servers the daemon started (a new one each minute)", str(len(memory.code_servers)), "", True),
        (
            "a code server's peak RSS, first → last third of them",
            f"{server_first:.0f} → {server_last:.0f} MB ({server_growth:+.1%})",
            "≤ +10%",
            server_growth <= 0.10,
        ),
    ]
