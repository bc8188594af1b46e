"""Sensor and schedule ticks with 10,000 tenants: each must finish well under Dagster's 60 s timeout.

Library figures: each tick evaluated in this process on a real instance, control store and (for the
export polls) simulator over real sockets. The tiers' probes of quiet tenants through the daemon are
in scale_bench.py."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import yaml

from pipeline_assets.history_exports import start_history_export
from resources.alerts import Alerts
from resources.control.deferrals import Deferral
from resources.control.export_jobs import ExportJobs
from resources.control.store import ControlStore, export_jobs, rate_windows
from resources.tiers import TIERS
from sensors.dead_run_workers import dead_run_workers_sensor
from sensors.deferred_syncs import deferred_syncs
from sensors.export_status import export_status_sensor
from sensors.tenant_freshness import tenant_freshness
from sensors.tenant_registry import tenant_registry
from tasklane_sim import SimServer
from tests.support.resources import Resources, make_api, resources_for

from .report import Section, run_parts

TENANTS = int(os.environ.get("DRIPFEED_BENCH_TENANTS", "10000"))
TICK_TIMEOUT = 60.0


class Measured(list):
    """The table's rows, each printed as it is measured: a long run that is stopped keeps what it had."""

    def append(self, row: list[object]) -> None:
        super().append(row)
        print("  tick:", " | ".join(map(str, row)), flush=True)


def _timed(run: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def ticks(section: Section, scratch: Path) -> None:
    ids = [f"tenant-{n:05d}" for n in range(TENANTS)]
    entries = [
        {"id": t, "tier": "hourly" if n % 2 else "daily", "token_env": "TASKLANE_TOKEN_BENCH"}
        for n, t in enumerate(ids)
    ]
    (scratch / "tenants.yaml").write_text(yaml.safe_dump({"tenants": entries}))
    os.environ["TASKLANE_TOKEN_BENCH"] = "bench-token"
    state = str(scratch / "control.sqlite3")
    with ControlStore(state).transaction() as conn:  # every tenant mid-window, some nearly spent
        reset = int(time.time()) + 1800
        conn.execute(
            rate_windows.insert(),
            [{"tenant": t, "window_reset": reset, "spent": n % 100, "vendor_limit": 100} for n, t in enumerate(ids)],
        )
    api = make_api(base_url="http://unused", tenants_file=str(scratch / "tenants.yaml"), state=state)
    # The code location refuses to load without these; the ticks get the resources above.
    os.environ.update({"TASKLANE_BASE_URL": "http://unused", "DRIPFEED_TENANTS_FILE": str(scratch / "tenants.yaml")})
    from dripfeed.definitions import defs

    rows = Measured()
    (scratch / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(scratch / "dagster_home")) as instance:

        def registry() -> dg.SensorResult | dg.SkipReason:
            with dg.build_sensor_context(instance=instance, resources=resources_for(api, alerts=Alerts())) as context:
                result = tenant_registry(context)
            if isinstance(result, dg.SensorResult):  # applied as the daemon would
                for request in result.dynamic_partitions_requests or []:
                    instance.add_dynamic_partitions("tenants", list(request.partition_keys))
            return result

        def schedule(tier: str, tick: int) -> Callable[[], object]:
            def evaluate() -> object:
                start = TIERS[tier].period_start(datetime.now(UTC))
                with dg.build_schedule_context(
                    instance=instance,
                    resources=resources_for(api, alerts=Alerts()),
                    scheduled_execution_time=start + timedelta(minutes=tick * TIERS[tier].tick_minutes),
                    repository_def=defs.get_repository_def(),
                ) as context:
                    return defs.resolve_schedule_def(f"{tier}_tenants").evaluate_tick(context)

            return evaluate

        seconds, first = _timed(registry)
        rows.append(
            [
                f"`tenant_registry`, {TENANTS:,} new tenants at once: the first wave",
                f"{seconds:.2f} s",
                len(first.run_requests),
            ]
        )
        seconds, _ = _timed(registry)
        rows.append(["`tenant_registry`, the next tick: the wave's first syncs still queued", f"{seconds:.2f} s", 0])
        instance.add_dynamic_partitions("tenants", ids)  # every tenant onboarded
        seconds, _ = _timed(registry)
        rows.append(["`tenant_registry`, a tick with nothing to change", f"{seconds:.2f} s", 0])

        def fresh() -> dg.SkipReason:
            with dg.build_sensor_context(instance=instance, resources=resources_for(api, alerts=Alerts())) as context:
                return tenant_freshness(context)

        seconds, _ = _timed(fresh)
        rows.append([f"`tenant_freshness`, first tick: {TENANTS:,} tenants seen, 500 recorded", f"{seconds:.2f} s", 0])
        seconds, _ = _timed(fresh)
        rows.append(["`tenant_freshness`, the next tick: the next 500 recorded", f"{seconds:.2f} s", 0])
        for _ in range(TENANTS // 500):  # every tenant's state told once
            fresh()
        seconds, _ = _timed(fresh)
        rows.append(["`tenant_freshness`, a tick with no tenant changing state", f"{seconds:.2f} s", 0])
        with dg.build_sensor_context(instance=instance) as context:
            seconds, _ = _timed(lambda: dead_run_workers_sensor()(context))
        rows.append(["`dead_run_workers`", f"{seconds:.2f} s", 0])
        half = TENANTS // 2
        for tier, ticks in (("hourly", TIERS["hourly"].ticks), ("daily", TIERS["daily"].ticks)):
            seconds, result = _timed(schedule(tier, 0))
            rows.append(
                [f"`{tier}_tenants`, {half} tenants: one tick of {ticks}", f"{seconds:.2f} s", len(result.run_requests)]
            )
        seconds, result = _timed(schedule("hourly", TIERS["hourly"].ticks // 2))
        rows.append(
            [
                "`hourly_tenants`, half a period's slots due at once (after an outage)",
                f"{seconds:.2f} s",
                len(result.run_requests),
            ]
        )
        rows.append(_deferred_tick(instance, api, ids))
        for row in _export_ticks(instance, scratch, ids):
            rows.append(row)
    section.table([f"tick with {TENANTS} tenants", "duration", "runs requested"], [[a, b, str(c)] for a, b, c in rows])
    slowest = max(float(r[1].split()[0]) for r in rows)
    section.row("slowest tick", f"{slowest:.2f} s", f"well under {TICK_TIMEOUT:.0f} s")
    section.note(
        "Half the tenants are hourly, half daily, none synced yet: a tier's tick requests a first sync of every "
        "tenant whose slot it is (no probe: nothing to ask about), and skips those whose window has fewer than 3 "
        "calls left, so fewer runs than tenants are requested. The probes of quiet tenants are measured through "
        "the daemon in the next section. `tenant_freshness` records its evaluations itself (on SQLite here), "
        "at most 500 a tick. `deferred_syncs` requests at most 200 resumptions a tick. "
        f"The export ticks poll a simulator with {TENANTS:,} workspaces over real sockets, one open export "
        "each: one listing call per tenant with a job due, 16 tenants at once; a tick starts none after 25 s."
    )


def _deferred_tick(instance: dg.DagsterInstance, api: Resources, ids: list[str]) -> list[object]:
    """`deferred_syncs` with every tenant deferred, a tenth of them due."""
    now = time.time()
    for n, tenant in enumerate(ids):
        resume_at = now - 1 if n % 10 == 0 else now + 3600
        api.state.deferrals.defer(Deferral(tenant, resume_at, "bench", now - 60, run_id=f"run-{n}"))
    with dg.build_sensor_context(
        instance=instance, resources=resources_for(api, alerts=Alerts()), cursor=str(now - 30)
    ) as context:
        seconds, result = _timed(lambda: deferred_syncs(context))
    return [f"`deferred_syncs`, {len(ids)} tenants waiting, a tenth due", f"{seconds:.2f} s", len(result.run_requests)]


def _export_ticks(instance: dg.DagsterInstance, scratch: Path, ids: list[str]) -> list[list[object]]:
    """An open export job per tenant, on a simulator with a workspace per tenant."""
    tokens = {t: f"TASKLANE_TOKEN_EXPORT_{n}" for n, t in enumerate(ids)}  # the vendor's tokens are unique
    for tenant, variable in tokens.items():
        os.environ[variable] = f"token-{tenant}"
    entries = [{"id": t, "tier": "daily", "token_env": variable} for t, variable in tokens.items()]
    (scratch / "export_tenants.yaml").write_text(yaml.safe_dump({"tenants": entries}))
    workspaces = [
        {
            "id": t,
            "tokens": [f"token-{t}"],
            "records": {"users": 1, "projects": 1, "tasks": 1},
            "exports": {"duration_seconds": 3600},
            "visibility_lag_seconds": 0,
        }
        for t in ids
    ]
    sim = SimServer({"admin_token": "bench-admin", "seed": 1, "workspaces": workspaces}, subprocess_mode=True)
    sim.start(timeout=1200)  # 10,000 workspaces take minutes to start on a busy machine
    try:
        api = make_api(
            base_url=sim.base_url,
            tenants_file=str(scratch / "export_tenants.yaml"),
            state=str(scratch / "exports.sqlite3"),
        )
        jobs = ExportJobs(api.state.store)
        for tenant in ids:  # over one HTTP session: a session per tenant would hold 10,000 sockets open
            client = api.tasklane.tick_client(api.registry.tenant(tenant), api.state)
            start_history_export(client, jobs, "tasks")
            client.close()
        with api.state.store.transaction() as conn:  # every job due now
            conn.execute(export_jobs.update().values(next_poll_at=0))

        def poll() -> dg.SensorResult | dg.SkipReason:
            with dg.build_sensor_context(instance=instance, resources=resources_for(api, alerts=Alerts())) as context:
                return export_status_sensor()(context)

        all_due, _ = _timed(poll)
        none_due, _ = _timed(poll)
    finally:
        sim.stop()
    return [
        [f"`export_status`, {jobs.open_count()} open jobs all due: a listing call per tenant", f"{all_due:.2f} s", 0],
        [
            f"`export_status`, the next tick: {len(ids)} open jobs, due only those the first did not reach",
            f"{none_due:.2f} s",
            0,
        ],
    ]


def run() -> Section:
    return run_parts(f"Ticks: sensors and schedules with {TENANTS:,} tenants", ticks)
