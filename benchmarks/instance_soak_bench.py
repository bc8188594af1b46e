"""The instance over a soak: does what the Dagster instance holds stay flat once the retention runs?

Two deployments of this commit side by side (deploy/run.sh each: code server, daemon, webserver; the
instance on Postgres), the same tenants and the same simulator, one with the run_retention sensor on
(RETENTION_PERIODS periods' worth, ticking every 2 minutes) and one with it off. The hourly period is
PERIOD_MINUTES long; a fixed CHANGING share of the tenants changes upstream before every period (the
busy workspaces that keep changing), the rest are quiet and only checked. At every period's end the
suite reads what each instance holds: runs, event rows and the live bytes of its tables, those of
the tick rows (Dagster's own `retention:` purges them after days, beyond a soak) apart.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from tasklane_sim import SimServer
from tests.support.postgres_server import running_postgres

from .report import Section, run_parts
from .scale_bench import ROOT, Deployment, simulator_config, sleep_until, tenant_id

TENANTS = int(os.environ.get("DRIPFEED_BENCH_SOAK_TENANTS", "300"))
PERIODS = int(os.environ.get("DRIPFEED_BENCH_SOAK_PERIODS", "8"))
PERIOD_MINUTES = int(os.environ.get("DRIPFEED_BENCH_SOAK_PERIOD_MINUTES", "6"))
CHANGING = 0.2
RETENTION_PERIODS = 2


@dataclass
class Holdings:
    """What one instance holds at a period's end."""

    runs: int
    events: int
    live_bytes: int
    tick_bytes: int


@dataclass
class Soak:
    label: str
    deployment: Deployment
    held: list[Holdings] = field(default_factory=list)

    def read(self) -> None:
        d = self.deployment
        self.held.append(
            Holdings(
                runs=int(d.sql(d.dagster_db, "SELECT count(*) FROM runs")),
                events=int(d.sql(d.dagster_db, "SELECT count(*) FROM event_logs")),
                live_bytes=d.live_bytes(),
                tick_bytes=int(d.sql(d.dagster_db, "SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM job_ticks t")),
            )
        )


def soak(section: Section, scratch: Path) -> None:
    tenants = [tenant_id(n) for n in range(TENANTS)]
    config = simulator_config(tenants, seed=11)
    busy = random.Random(3).sample(tenants, int(TENANTS * CHANGING))
    retention_days = RETENTION_PERIODS * PERIOD_MINUTES / 1440
    with running_postgres() as pg:
        sim = SimServer(config, subprocess_mode=True).start(timeout=900)
        try:
            soaks = [
                Soak(label, Deployment(ROOT, scratch / name, pg, sim, tenants, PERIOD_MINUTES, tenants, days))
                for label, name, days in (
                    (f"retention on ({RETENTION_PERIODS} periods)", "on", retention_days),
                    ("retention off", "off", 0.0),
                )
            ]
            for s in soaks:
                print(f"  {s.label}: {TENANTS:,} tenants prepared in {s.deployment.prepare():.0f} s", flush=True)
            with soaks[0].deployment.running(), soaks[1].deployment.running():
                length = PERIOD_MINUTES * 60
                start = (time.time() // length + 1) * length + length  # a period to warm up
                for n in range(PERIODS + 1):
                    sleep_until(start + n * length - 20)
                    if n < PERIODS:
                        for tenant in busy:
                            sim.admin.mutate(tenant, updates=2, resource="tasks")
                    sleep_until(start + n * length - 5)
                    for s in soaks:
                        s.read()
                    if n:
                        on, off = (s.held[-1] for s in soaks)
                        print(f"  period {n}: runs {on.runs} / {off.runs}, {on.live_bytes:,} / {off.live_bytes:,} B")
        finally:
            sim.stop()
    write_up(section, soaks)


def write_up(section: Section, soaks: list[Soak]) -> None:
    on, off = soaks
    rows = []
    for n, (a, b) in enumerate(zip(on.held, off.held, strict=True)):
        rows.append(
            [
                str(n),
                f"{a.runs:,} / {b.runs:,}",
                f"{a.events:,} / {b.events:,}",
                f"{(a.live_bytes - a.tick_bytes) / 1e6:.2f} MB / {(b.live_bytes - b.tick_bytes) / 1e6:.2f} MB",
                f"{a.tick_bytes / 1e6:.2f} MB / {b.tick_bytes / 1e6:.2f} MB",
            ]
        )
    section.table(
        [
            f"period ({PERIOD_MINUTES} min) ended",
            "runs held: on / off",
            "event rows: on / off",
            "live bytes but tick rows: on / off",
            "tick rows: on / off",
        ],
        rows,
    )
    half = len(on.held) // 2
    growth = [
        (s.held[-1].live_bytes - s.held[-1].tick_bytes) - (s.held[half].live_bytes - s.held[half].tick_bytes)
        for s in soaks
    ]
    section.row(
        f"the instance's growth but tick rows over the soak's second half ({len(on.held) - 1 - half} periods)",
        f"{growth[0] / 1e6:+.2f} MB with the retention, {growth[1] / 1e6:+.2f} MB without",
        "flat once the retention runs",
    )
    section.note(
        f"deploy/run.sh twice on one Postgres and one simulator, {TENANTS:,} hourly tenants each, a period of "
        f"{PERIOD_MINUTES} minutes (ticks a minute apart); the same {CHANGING:.0%} of the tenants change before every "
        "period, the rest are checked and cost no run. Period 0 is the end of a warm-up period (the tenants were "
        "synced before, outside the instance). The retention keeps each tenant's latest materializations (the run that "
        "holds them, stripped to its asset events), so with it the instance tends to a size set by the tenants, not "
        "by the time. Tick rows are Dagster's to purge (`retention:` in deploy/dagster.yaml: 7 days, skipped sensor "
        "ticks 1 day), so they grow through a soak shorter than that and are shown apart."
    )


def run() -> Section:
    return run_parts("The instance over a soak", soak)
