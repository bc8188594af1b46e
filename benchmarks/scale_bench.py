"""Ten thousand tenants on one machine: a tenant with nothing new costs no run, and the instance stays small.

Everything goes through the production deployment on one machine, `deploy/run.sh`: its code server,
`dagster-daemon` (scheduler, sensors, run queue, default launcher) and webserver, with the Dagster
instance's storage on Postgres (dagster-postgres, deploy/dagster.yaml), the control store and the
warehouse on the same Postgres, and a simulator with a workspace per tenant. Time is compressed: the hourly period is
PERIOD_MINUTES long, cut into 12 ticks as an hour is, so a tick serves the share of tenants it serves in
production. Each measured period begins with CHANGING of the tenants changed upstream; the rest are quiet.

Beside it, in the same run: the design this replaced (commit BASELINE: a run per tenant at every slot)
at the number of tenants it sustains, from a git worktree; the floor of a quiet check (its three
conditional requests from a bare `http.client` loop); the tier's tick called in this process (a library
figure, labelled so); onboarding as many new tenants at once while the tier goes on; and what the
instance keeps once the retention has run.

To tell a change from the machine's day, measure two commits one after the other from one preparation:
DRIPFEED_BENCH_SCALE_PREPARED names a directory where the first run keeps its prepared tenants and the
next restores them (kept_preparation.py), and DRIPFEED_BENCH_SCALE_CODE names the commit whose product
code runs the suite instead of this checkout's (from a git worktree; this harness measures it).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psutil
import sqlalchemy as sa
import yaml
from dagster._core.instance.ref import InstanceRef  # the instance the daemon uses, from its DAGSTER_HOME
from dagster._core.scheduler.instigation import InstigatorTick

from resources.control.store import state_url
from tasklane_sim import SimServer
from tasklane_sim.server import free_port
from tests.support.dagster_daemon import BIN
from tests.support.periodic import every
from tests.support.postgres_server import fresh_database, running_postgres

from .checkouts import worktree
from .kept_preparation import KeptPreparation, commit_of
from .report import Section, run_parts

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "3ff5247"  # the last commit of the design where every tenant at every slot was a run
TENANTS = int(os.environ.get("DRIPFEED_BENCH_SCALE_TENANTS", "10000"))
PERIODS = int(os.environ.get("DRIPFEED_BENCH_SCALE_PERIODS", "2"))
CHANGING = 0.05  # of the tenants, changed upstream at the start of each measured period
PERIOD_MINUTES = int(
    os.environ.get("DRIPFEED_BENCH_SCALE_PERIOD_MINUTES", "24")
)  # 12 ticks, as an hour of 5-minute ticks
TICKS_PER_PERIOD = 12  # as an hour of 5-minute ticks
BASELINE_TENANTS = int(os.environ.get("DRIPFEED_BENCH_BASELINE_TENANTS", "400"))  # 0: not run
BASELINE_PERIOD_MINUTES = int(os.environ.get("DRIPFEED_BENCH_BASELINE_PERIOD_MINUTES", "12"))  # ~2,000 runs an hour
RECORDS = {"users": 3, "projects": 2, "tasks": 12}  # one page per stream
MACHINE_SHARE = 1 / 3  # the goal: at most a third of this machine
LIBRARY_TICK_TENANTS = 833  # a production tick's share of 10,000 hourly tenants
IDLE_MINUTES = float(os.environ.get("DRIPFEED_BENCH_IDLE_MINUTES", "3"))
CODE = os.environ.get("DRIPFEED_BENCH_SCALE_CODE", "")  # a commit to measure instead of this checkout
PREPARED = os.environ.get("DRIPFEED_BENCH_SCALE_PREPARED", "")  # a directory keeping the prepared tenants
AS_OF = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))


def tenant_id(n: int) -> str:
    return f"t{n:05d}"


def token_variable(tenant: str) -> str:
    return f"TASKLANE_TOKEN_{tenant.upper()}"


def simulator_config(tenants: list[str], seed: int, **settings: object) -> dict[str, object]:
    """A simulator with a workspace of RECORDS per tenant, its token `token-<tenant>`, writes visible at once."""
    workspaces = [{"id": t, "tokens": [f"token-{t}"], "records": RECORDS, "visibility_lag_seconds": 0} for t in tenants]
    return {"admin_token": "bench-admin", "seed": seed, **settings, "workspaces": workspaces}


# Run in a process of a design's own code (its PYTHONPATH): sync each given tenant's streams once.
PREPARE = """
import json, os, sys
from resources.warehouse import Warehouse
from pipeline_assets.incremental_sync import sync_stream
tenants = json.loads(sys.argv[1])
warehouse = Warehouse(url=os.environ["DRIPFEED_WAREHOUSE"])
try:  # this design: the tenant registry and the shared state are resources of their own
    from resources.shared_state import SharedState
    from resources.tasklane import TasklaneAPI
    from resources.tenant_registry import TenantRegistry
    api, state = TasklaneAPI(base_url=os.environ["TASKLANE_BASE_URL"]), SharedState(url=os.environ["DRIPFEED_STATE"])
    known = TenantRegistry(tenants_file=os.environ["DRIPFEED_TENANTS_FILE"]).tenants()
    for tenant in tenants:
        client = api.client(known[tenant], state)
        for stream in ("users", "projects", "tasks"):
            sync_stream(client, warehouse, state.stream_checks, stream)
except ImportError:  # the design before: TasklaneAPI held them, and the second sync learned the ETags
    from resources.tasklane import TasklaneAPI
    api = TasklaneAPI(base_url=os.environ["TASKLANE_BASE_URL"], tenants_file=os.environ["DRIPFEED_TENANTS_FILE"],
                      state=os.environ["DRIPFEED_STATE"])
    for tenant in tenants:
        for _ in range(2):
            for stream in ("users", "projects", "tasks"):
                sync_stream(api.client(tenant), warehouse, stream)
"""


@dataclass
class Deployment:
    """One design's production setup: its Dagster instance, control store and warehouse on Postgres."""

    root: Path  # where the design's packages are imported from
    directory: Path
    pg: str
    sim: SimServer
    tenants: list[str]
    period_minutes: int
    every_token: list[str]  # tokens in the environment: the tenants this deployment may ever serve
    retention_days: float | None = None
    deploy: Path | None = None  # the deploy/ directory whose run.sh and dagster.yaml run it (the design's own)
    has_checks: bool = True  # False for the design before checks (BASELINE): a run per tenant at every slot
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True)
        self.home = self.directory / "dagster_home"
        self.dagster_db = fresh_database(self.pg, "dagster")
        # deploy/run.sh installs deploy/dagster.yaml in DAGSTER_HOME (storage from DAGSTER_PG_*); this
        # process reads the same storage through an instance of its own, named by URL.
        self.deploy = self.deploy or self.root / "deploy"
        instance = yaml.safe_load((self.deploy / "dagster.yaml").read_text())
        instance["storage"] = {"postgres": {"postgres_url": self.dagster_db}}
        instance["local_artifact_storage"] = {  # the deployment's compute logs (the ticks' logs among them)
            "module": "dagster.core.storage.root",
            "class": "LocalArtifactStorage",
            "config": {"base_dir": str(self.home)},
        }
        self.reader_home = self.directory / "reader_home"
        for home in (self.home, self.reader_home):
            home.mkdir(exist_ok=True)
            (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
        database = urlsplit(self.dagster_db)
        self.code_server_port = free_port()
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_PG_HOST": database.hostname or "",
            "DAGSTER_PG_PORT": str(database.port),
            "DAGSTER_PG_USER": database.username or "",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_DB": database.path.lstrip("/"),
            "DRIPFEED_BIN": str(BIN),
            "DRIPFEED_CODE_SERVER_PORT": str(self.code_server_port),
            "DRIPFEED_WEBSERVER_HOST": "127.0.0.1",
            "DRIPFEED_WEBSERVER_PORT": str(free_port()),
            "DRIPFEED_TENANTS_FILE": str(self.directory / "tenants.yaml"),
            "DRIPFEED_STATE": fresh_database(self.pg, "control"),
            "DRIPFEED_WAREHOUSE": fresh_database(self.pg, "warehouse"),
            "TASKLANE_BASE_URL": self.sim.base_url,
            "DRIPFEED_HOURLY_PERIOD_MINUTES": str(self.period_minutes),
            "DRIPFEED_HOURLY_TICK_MINUTES": str(max(1, self.period_minutes // TICKS_PER_PERIOD)),
            "PYTHONPATH": str(self.root),
            **{token_variable(t): f"token-{t}" for t in self.every_token},
        }
        if self.retention_days is not None:
            self.env["DRIPFEED_RETENTION_DAYS"] = repr(self.retention_days)
            self.env["DRIPFEED_RETENTION_CHECK_SECONDS"] = "120"
        self.write_tenants(self.tenants)

    def write_tenants(self, tenants: list[str]) -> None:
        entries = [{"id": t, "tier": "hourly", "token_env": token_variable(t)} for t in tenants]
        (self.directory / "tenants.yaml").write_text(yaml.safe_dump({"tenants": entries}))

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.reader_home)))

    def dagster(self, *args: str) -> None:
        subprocess.run([str(BIN / "dagster"), *args], cwd=self.directory, env=self.env, check=True, capture_output=True)

    @contextmanager
    def running(self) -> Iterator[subprocess.Popen]:
        """`deploy/run.sh` (code server, daemon, webserver) in this deployment's directory, once its code
        server answers; stopped with everything it started on exit."""
        log = (self.directory / "deploy.log").open("ab")
        script = subprocess.Popen(
            [str(self.deploy / "run.sh")],
            cwd=self.directory,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            health = [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(self.code_server_port)]
            deadline = time.monotonic() + 300
            while subprocess.run(health, env=self.env, capture_output=True).returncode != 0:
                if script.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"deploy/run.sh did not start: {self.directory / 'deploy.log'}")
                time.sleep(2)
            yield script
        finally:
            with suppress(ProcessLookupError):
                os.killpg(script.pid, signal.SIGTERM)
            script.wait(timeout=120)
            log.close()

    def prepare(self, workers: int = 4) -> float:
        """Every tenant synced once, by this design's own code in `workers` processes, and registered:
        the steady state of tenants onboarded earlier. Returns the seconds it took."""
        started = time.monotonic()
        processes = [
            subprocess.Popen(
                [str(BIN / "python"), "-c", PREPARE, json.dumps(self.tenants[n::workers])],
                cwd=self.directory,
                env=self.env,
            )
            for n in range(workers)
        ]
        if any(process.wait() != 0 for process in processes):
            raise RuntimeError("preparing the tenants failed")
        self.python("-m", "dripfeed.register_tenants")
        return time.monotonic() - started

    def restore(self, kept: KeptPreparation) -> float:
        """The tenants as `kept` prepared them, upgraded to this design's schemas, and registered.
        Returns the seconds it took."""
        started = time.monotonic()
        kept.restore(self.env, self.root, len(self.tenants))
        if (self.root / "dripfeed" / "migrate.py").exists():  # designs before issue 24 had no versioned schemas
            self.python("-m", "dripfeed.migrate")
        self.python("-m", "dripfeed.register_tenants")
        return time.monotonic() - started

    def keep(self, kept: KeptPreparation) -> None:
        """Keep this deployment's prepared tenants for later runs (`restore`)."""
        kept.save(self.env, self.root, len(self.tenants), str(self.sim.config.as_of))

    def python(self, *args: str, stdin: str = "", **env: str) -> str:
        """Run this design's own code (its PYTHONPATH, its settings, and `env`); returns what it printed."""
        command = [str(BIN / "python"), "-W", "ignore", *args]
        done = subprocess.run(
            command, cwd=self.directory, env=self.env | env, input=stdin, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed in {self.directory}: {done.stderr[-2000:]}")
        return done.stdout

    def sql(self, url: str, query: str, *params: object) -> object:
        engine = sa.create_engine(state_url(url), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            found = conn.exec_driver_sql(query, params or None).scalar()
        engine.dispose()
        return found

    def instance_bytes(self) -> int:
        """What the Dagster instance's tables take on disk (every table, with indexes and TOAST)."""
        return int(
            self.sql(
                self.dagster_db,
                "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_catalog.pg_statio_user_tables",
            )
        )

    def live_bytes(self) -> int:
        """The size of the instance's live rows, whatever Postgres has yet to reclaim of deleted ones."""
        engine = sa.create_engine(state_url(self.dagster_db))
        total = 0
        with engine.connect() as conn:
            tables = [row[0] for row in conn.exec_driver_sql("SELECT relname FROM pg_catalog.pg_stat_user_tables")]
            for table in tables:
                total += conn.exec_driver_sql(f'SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM "{table}" t').scalar()
        engine.dispose()
        return int(total)

    def check_bytes(self, start: float, end: float) -> int:
        """Bytes the period added to the instance that are no run's: runless events (the freshness
        checks' results), their check rows, and schedule and sensor tick rows."""
        window = (
            datetime.fromtimestamp(start, UTC).replace(tzinfo=None),
            datetime.fromtimestamp(end, UTC).replace(tzinfo=None),
        )
        queries = [
            "SELECT coalesce(sum(pg_column_size(e.*)), 0) FROM event_logs e WHERE run_id = '' "
            "AND timestamp BETWEEN %s AND %s",
            "SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM asset_check_executions c WHERE run_id = '' "
            "AND create_timestamp BETWEEN %s AND %s",
            "SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM job_ticks t WHERE create_timestamp BETWEEN %s AND %s",
        ]
        return sum(int(self.sql(self.dagster_db, query, *window)) for query in queries)

    def events_per_run(self, run_ids: list[str]) -> float:
        if not run_ids:
            return 0.0
        counted = self.sql(self.dagster_db, "SELECT count(*) FROM event_logs WHERE run_id = ANY(%s)", run_ids)
        return int(counted) / len(run_ids)

    def vacuum_full(self) -> None:
        engine = sa.create_engine(state_url(self.dagster_db), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM FULL")
        engine.dispose()


class TreeCPU:
    """CPU-seconds of deploy/run.sh's process tree (the code server, the daemon, the webserver, every
    run): each live process's own time and that of the children it reaped, sampled every second."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, tuple[float, float]] = {}  # pid -> (own CPU, reaped children's CPU)
        self.runs: dict[int, bool] = {}  # pid -> whether it is a run's process
        self.runs_niceness: set[int] = set()  # the CPU priorities run processes were seen at

    def sample(self) -> bool:
        try:
            tree = [psutil.Process(self.root), *psutil.Process(self.root).children(recursive=True)]
        except psutil.NoSuchProcess:
            return False
        now: dict[int, tuple[float, float]] = {}
        for process in tree:
            with suppress(psutil.NoSuchProcess):
                t = process.cpu_times()
                now[process.pid] = (t.user + t.system, t.children_user + t.children_system)
                if process.pid not in self.runs:  # the default launcher starts a run with multiprocessing
                    self.runs[process.pid] = "spawn_main" in " ".join(process.cmdline())
                if self.runs[process.pid]:
                    self.runs_niceness.add(process.nice())
        self.seen = now
        return True

    def total(self) -> float:
        self.sample()
        return sum(own + reaped for own, reaped in self.seen.values())

    def servers_own(self) -> float:
        """The own CPU of every process that is not a run (the code server's ticks, the daemon's loops,
        the webserver), as last sampled."""
        return sum(own for pid, (own, _) in self.seen.items() if not self.runs.get(pid, False))


@contextmanager
def sampling(cpu: TreeCPU) -> Iterator[list[tuple[float, float]]]:
    """(time, own CPU of every process but the runs) every second while the block runs."""
    samples: list[tuple[float, float]] = []

    def sample() -> bool:
        alive = cpu.sample()
        samples.append((time.time(), cpu.servers_own()))
        return alive

    with every(1.0, sample):
        yield samples


def cpu_during(samples: list[tuple[float, float]], windows: list[tuple[float, float]], since: float = 0.0) -> float:
    """The CPU `sampling` saw between samples that both fall within one of `windows` (a second's slack
    either side), from `since` on."""
    return sum(
        c1 - c0
        for (t0, c0), (t1, c1) in itertools.pairwise(samples)
        if since <= t0 and c1 >= c0 and any(start - 1 <= t0 and t1 <= finish + 1 for start, finish in windows)
    )


@dataclass
class Period:
    changed: set[str]
    runs: dict[str, str]  # tenant -> its run's `dripfeed/why`
    failed_runs: int
    cpu: float  # the whole tree's
    tick_cpu: float  # the own CPU of every process but the runs while a tier tick was under way
    ticks: list[float]  # their durations
    short_ticks: int  # ticks that ran out of time with tenants unreached
    checked_current: int
    counted_quiet: int  # calls Tasklane counted for the tenants that did not change
    fresh_quiet: float
    live_bytes: int
    first_syncs: int = 0
    check_bytes: int = 0  # what the checks cost the instance: runless events, their check rows, tick rows
    events_per_run: float = 0.0


def next_boundary(period_minutes: int, lead: float = 120) -> float:
    """The first period boundary at least `lead` seconds from now."""
    return float((int(time.time() + lead) // (period_minutes * 60) + 1) * period_minutes * 60)


def sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 5))


def counted(sim: SimServer, tenants: list[str]) -> dict[str, int]:
    """The calls Tasklane counted for each tenant so far."""
    return {tenant: sim.admin.counters(tenant)["totals"]["counted"] for tenant in tenants}


def measure_periods(
    deployment: Deployment,
    cpu: TreeCPU,
    start: float,
    tier_tenants: list[str],
    periods: int,
    newcomers_at: int | None = None,
    newcomers: list[str] | None = None,
) -> list[Period]:
    """`periods` consecutive periods from `start` (a boundary), CHANGING of `tier_tenants` changed 20 s
    before each begins (after the previous one's last tick, before its own first); at the start of
    period `newcomers_at`, `newcomers` are added to tenants.yaml at once. Each tenant's counted calls
    are read a minute before each period ends, once its last tick is done."""
    length = deployment.period_minutes * 60
    changes = [set(random.sample(tier_tenants, int(len(tier_tenants) * CHANGING))) for _ in range(periods)]
    sleep_until(start - 60)
    counts = counted(deployment.sim, tier_tenants)
    sleep_until(start - 20)
    for tenant in changes[0]:
        deployment.sim.admin.mutate(tenant, updates=2, resource="tasks")
    sleep_until(start)
    found = []
    with sampling(cpu) as samples:
        for n in range(periods):
            begin, end = start + n * length, start + (n + 1) * length
            cpu_before = cpu.total()
            sleep_until(end - 60)
            counts_after = counted(deployment.sim, tier_tenants)
            sleep_until(end - 20)
            if n + 1 < periods:
                for tenant in changes[n + 1]:
                    deployment.sim.admin.mutate(tenant, updates=2, resource="tasks")
                if n + 1 == newcomers_at and newcomers:
                    deployment.write_tenants(deployment.tenants + newcomers)
            sleep_until(end)
            period_cpu = cpu.total() - cpu_before
            quiet = [t for t in tier_tenants if t not in changes[n]]
            found.append(
                _period(deployment, begin, end, changes[n], period_cpu, list(samples), quiet, counts, counts_after)
            )
            counts = counts_after
            print(
                f"  period from {datetime.fromtimestamp(begin, UTC):%H:%M}: {len(found[-1].runs)} runs for "
                f"{len(changes[n])} changed, {found[-1].first_syncs} first syncs",
                flush=True,
            )
            for tenant, why in found[-1].runs.items():
                if tenant not in changes[n]:
                    print(f"    a run for unchanged {tenant}: {why or '(no dripfeed/why tag)'}", flush=True)
    return found


def _period(
    deployment: Deployment,
    begin: float,
    end: float,
    changed: set[str],
    period_cpu: float,
    samples: list[tuple[float, float]],
    quiet: list[str],
    counts_before: dict[str, int],
    counts_after: dict[str, int],
) -> Period:
    created = {"created_after": datetime.fromtimestamp(begin, UTC), "created_before": datetime.fromtimestamp(end, UTC)}
    with deployment.instance() as instance:
        records = list(instance.get_run_records(dg.RunsFilter(tags={"dripfeed/tier": "hourly"}, **created)))
        first_syncs = instance.get_runs_count(
            dg.RunsFilter(tags={"dripfeed/tier": "onboarding"}, statuses=[dg.DagsterRunStatus.SUCCESS], **created)
        )
        ticks = schedule_ticks(instance, "hourly_tenants", begin, end)
    windows = [(t.timestamp, float(t.end_timestamp or t.timestamp)) for t in ticks]
    tick_cpu = cpu_during(samples, windows, since=begin)
    return Period(
        changed=changed,
        runs={r.dagster_run.tags["dagster/partition"]: r.dagster_run.tags.get("dripfeed/why", "") for r in records},
        failed_runs=sum(r.dagster_run.status == dg.DagsterRunStatus.FAILURE for r in records),
        cpu=period_cpu,
        tick_cpu=tick_cpu,
        ticks=[finish - start for start, finish in windows],
        short_ticks=short_of_time(deployment, ticks),
        checked_current=checked_current(deployment, begin, end),
        counted_quiet=sum(counts_after[t] - counts_before[t] for t in quiet),
        fresh_quiet=fresh_share(deployment, quiet),
        live_bytes=deployment.live_bytes(),
        first_syncs=first_syncs,
        check_bytes=deployment.check_bytes(begin, end),
        events_per_run=deployment.events_per_run([r.dagster_run.run_id for r in records if r.dagster_run.is_finished]),
    )


def schedule_ticks(instance: dg.DagsterInstance, name: str, after: float, before: float) -> list[InstigatorTick]:
    """The schedule's finished ticks that started in [after, before)."""
    state = next((s for s in instance.all_instigator_state() if s.name == name), None)
    if state is None:
        return []
    ticks = instance.get_ticks(
        state.instigator_origin_id, state.selector_id, after=float(after), before=float(before), limit=5000
    )
    return [t for t in ticks if t.end_timestamp]


def short_of_time(deployment: Deployment, ticks: list[InstigatorTick]) -> int:
    """How many of `ticks` ran out of time before every due tenant was checked, as their logs say
    (sensors/tier_schedules.py: "... tenants not reached before the tick's time was up ...")."""
    short = 0
    for tick in ticks:
        key = tick.tick_data.log_key
        log = deployment.home / "storage" / Path(*key[:-1]) / f"{key[-1]}.err" if key else None
        short += bool(log and log.exists() and "not reached before the tick's time was up" in log.read_text())
    return short


def checked_current(deployment: Deployment, start: float, end: float) -> int:
    if not deployment.has_checks:
        return 0
    return int(
        deployment.sql(
            deployment.env["DRIPFEED_STATE"],
            "SELECT count(*) FROM dripfeed_tenant_checks WHERE outcome = 'current' AND checked_at BETWEEN %s AND %s",
            start,
            end,
        )
    )


FRESH_SHARE = """
import json, os, sys, time
from pipeline_assets.freshness import statuses
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry
tenants = set(json.loads(sys.stdin.read()))
registry = TenantRegistry(tenants_file=os.environ["DRIPFEED_TENANTS_FILE"])
found = statuses(registry, SharedState(url=os.environ["DRIPFEED_STATE"]), tenants, time.time())
print(sum(s.fresh for s in found) / max(1, len(tenants)))
"""


def fresh_share(deployment: Deployment, tenants: list[str]) -> float:
    """The share of `tenants` the design's freshness check counts as fresh now (the design before: not counted)."""
    if not deployment.has_checks:
        return float("nan")
    return float(deployment.python("-c", FRESH_SHARE, stdin=json.dumps(tenants)))


def idle_rate(deployment: Deployment, cpu: TreeCPU) -> float:
    """CPU-seconds a minute of the deployment with the tier stopped: what runs at the clock's pace
    (the sensors, the daemon's loops, the webserver), whatever the period."""
    time.sleep(60)  # the code server loaded, the sensors' first ticks done
    before, started = cpu.total(), time.monotonic()
    with every(1.0, cpu.sample):
        time.sleep(IDLE_MINUTES * 60)
    return (cpu.total() - before) / ((time.monotonic() - started) / 60)


def kept_after_retention(deployment: Deployment) -> tuple[int, int]:
    """(bytes on disk, live bytes) of the instance once the retention has run over every finished run
    (a retention of zero days) and VACUUM FULL gave the space back: what the instance keeps."""
    from sensors.run_retention import apply_retention

    with deployment.instance() as instance:
        while apply_retention(instance, days=0.0, seconds=600, runs_per_tick=2000).runs_left:
            pass
    deployment.vacuum_full()
    return deployment.instance_bytes(), deployment.live_bytes()


def http_client_floor(deployment: Deployment, tenants: list[str]) -> float:
    """CPU-seconds per tenant of its three conditional requests from a bare `http.client` loop, the
    ETags read from the control store beforehand: the least a quiet check can cost."""
    engine = sa.create_engine(state_url(deployment.env["DRIPFEED_STATE"]))
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT tenant, resource, listing_since, listing_etag FROM dripfeed_stream_checks "
            "WHERE listing_etag IS NOT NULL"
        ).all()
    engine.dispose()
    wanted = set(tenants)
    asks = [row for row in rows if row[0] in wanted]
    base = urlsplit(deployment.sim.base_url)
    connection = HTTPConnection(base.hostname, base.port)
    started, not_modified = time.process_time(), 0
    for tenant, stream, since, etag in asks:
        query = "include_deleted=true&limit=100" + (f"&updated_since={since}" if since else "")
        headers = {"Authorization": f"Bearer token-{tenant}", "If-None-Match": etag, "Tasklane-Version": "2026-11-01"}
        connection.request("GET", f"/v1/workspaces/{tenant}/{stream}?{query}", headers=headers)
        response = connection.getresponse()
        response.read()
        not_modified += response.status == 304
    spent = time.process_time() - started
    connection.close()
    if not_modified < 0.9 * len(asks):
        raise RuntimeError(f"the floor's requests were not answered 304: {not_modified} of {len(asks)}")
    return spent / max(1, len(tenants))


LIBRARY_TICK = """
import os, sys, time
from datetime import UTC, datetime, timedelta
import dagster as dg
from resources.shared_state import SharedState
from resources.tasklane import TasklaneAPI
from resources.tenant_registry import TenantRegistry
try:
    from resources.tiers import TIERS
except ImportError:  # the code before issue 24 kept the tiers with their schedules
    from sensors.tier_schedules import TIERS
from sensors.tier_schedules import tier_run_requests
tier = TIERS["hourly"]
when = tier.period_start(datetime.now(UTC)) + timedelta(hours=3, minutes=55)  # a period no tick served yet
tasklane = TasklaneAPI(base_url=os.environ["TASKLANE_BASE_URL"])
registry = TenantRegistry(tenants_file=sys.argv[1])
state = SharedState(url=os.environ["DRIPFEED_STATE"])
with dg.DagsterInstance.get() as instance, dg.build_schedule_context(instance, scheduled_execution_time=when) as ctx:
    started, cpu = time.perf_counter(), time.process_time()
    result = tier_run_requests(ctx, tasklane, registry, state, tier)
    spent, wall = time.process_time() - cpu, time.perf_counter() - started
print(spent, wall, len(result) if isinstance(result, list) else 0)
"""


def library_tick(deployment: Deployment, tenants: list[str]) -> tuple[float, float, int]:
    """The hourly tier's tick called in a process of the design's code, every one of `tenants` due and
    quiet: (CPU-seconds, wall seconds, runs requested)."""
    subset = deployment.directory / "library_tick_tenants.yaml"
    entries = [{"id": t, "tier": "hourly", "token_env": token_variable(t), "sync_at": "00:00"} for t in tenants]
    subset.write_text(yaml.safe_dump({"tenants": entries}))
    ticked = deployment.python("-c", LIBRARY_TICK, str(subset), DAGSTER_HOME=str(deployment.reader_home))
    spent, wall, runs = ticked.split()[-3:]
    return float(spent), float(wall), int(runs)


@dataclass
class Findings:
    periods: list[Period]
    onboarding: Period
    idle_per_minute: float
    live_before: int
    kept: tuple[int, int]
    floor: float
    library: tuple[float, float, int]


def now_design(
    scratch: Path, pg: str, sim: SimServer, everyone: list[str], root: Path, kept: KeptPreparation | None
) -> Findings:
    tenants, newcomers = everyone[:TENANTS], everyone[TENANTS:]
    deployment = Deployment(
        root, scratch / "now", pg, sim, tenants, PERIOD_MINUTES, everyone, retention_days=PERIOD_MINUTES / 1440
    )
    if kept is not None and kept.facts() is not None:
        print(
            f"  now: {len(tenants):,} tenants restored from {kept.directory} in {deployment.restore(kept):.0f} s",
            flush=True,
        )
    else:
        print(f"  now: {len(tenants):,} tenants prepared in {deployment.prepare():.0f} s", flush=True)
        if kept is not None:
            deployment.keep(kept)
    with deployment.running() as script:
        deployment.dagster("schedule", "stop", "hourly_tenants", "-w", "workspace.yaml")  # started after the idle rate
        cpu = TreeCPU(script.pid)
        idle = idle_rate(deployment, cpu)
        deployment.dagster("schedule", "start", "hourly_tenants", "-w", "workspace.yaml")
        start = next_boundary(PERIOD_MINUTES)
        print(f"  now: warming up until {datetime.fromtimestamp(start, UTC):%H:%M} UTC", flush=True)
        with every(1.0, cpu.sample):
            sleep_until(start - 90)
        live_before = deployment.live_bytes()
        measured = measure_periods(deployment, cpu, start, tenants, PERIODS + 1, PERIODS, newcomers)
        periods, onboarding = measured[:PERIODS], measured[PERIODS]
    floor = http_client_floor(deployment, tenants[:1000])
    library = library_tick(deployment, tenants[1000 : 1000 + LIBRARY_TICK_TENANTS])
    kept = kept_after_retention(deployment)
    return Findings(periods, onboarding, idle, live_before, kept, floor, library)


@dataclass
class Before:
    tenants: int
    period: Period
    live_before: int
    kept: tuple[int, int]


def baseline_design(scratch: Path, pg: str, sim: SimServer, everyone: list[str]) -> Before | None:
    with worktree(BASELINE, scratch / "baseline-code") as path:
        if path is None:
            return None
        tenants = everyone[:BASELINE_TENANTS]
        deployment = Deployment(
            path, scratch / "before", pg, sim, tenants, BASELINE_PERIOD_MINUTES, tenants, has_checks=False
        )
        deployment.prepare()
        with deployment.running() as script:
            cpu = TreeCPU(script.pid)
            start = next_boundary(BASELINE_PERIOD_MINUTES)
            with every(1.0, cpu.sample):
                sleep_until(start - 90)
            live_before = deployment.live_bytes()
            (period,) = measure_periods(deployment, cpu, start, tenants, 1)
        return Before(len(tenants), period, live_before, kept_after_retention(deployment))


def keep_the_preparations_tombstones(sim: SimServer, tenants: list[str], as_of: str) -> None:
    """Make the simulator drop tombstones as on the day a kept preparation began (a day after its
    `as_of`), not as today: it drops those older than its retention, counted from now, so a day later it
    would drop a day's more than the warehouse saw dropped, and their tenants' listings would change."""
    began = datetime.fromisoformat(as_of) + timedelta(days=1)
    late = (datetime.now(UTC) - began) / timedelta(days=1)
    for tenant in tenants:
        retention = sim.admin.knobs(tenant)["tombstone_retention_days"]
        sim.admin.set_knobs(tenant, tombstone_retention_days=retention + max(0.0, late))


@contextmanager
def everyones_simulator(everyone: list[str], restored: dict[str, object] | None) -> Iterator[SimServer]:
    """A simulator with a workspace per tenant, as of a day ago or of the `restored` preparation, its
    tombstones past retention dropped now, not during a measured period."""
    as_of = str(restored["as_of"]) if restored else AS_OF
    print(f"  starting a simulator of {len(everyone):,} workspaces", flush=True)
    sim = SimServer(simulator_config(everyone, seed=5, as_of=as_of), subprocess_mode=True).start(timeout=1200)
    try:
        if restored:
            keep_the_preparations_tombstones(sim, everyone, as_of)
        for tenant in everyone:
            sim.admin.purge_tombstones(tenant)
        yield sim
    finally:
        sim.stop()


@contextmanager
def measured_code(scratch: Path) -> Iterator[Path]:
    """Where the product code measured is imported from: this checkout, or DRIPFEED_BENCH_SCALE_CODE's
    worktree; compiled to bytecode either way, as `make` compiles the venv, so neither pays for it."""
    with worktree(CODE, scratch / "measured-code") if CODE else nullcontext(ROOT) as root:
        if root is None:
            raise RuntimeError(f"DRIPFEED_BENCH_SCALE_CODE={CODE} cannot be checked out")
        packages = ["dripfeed", "pipeline_assets", "resources", "sensors"]
        subprocess.run([str(BIN / "python"), "-m", "compileall", "-q", *packages], cwd=root, capture_output=True)
        yield root


def scale(section: Section, scratch: Path) -> None:
    everyone = [tenant_id(n) for n in range(2 * TENANTS)]  # the second half are onboarded later
    kept = KeptPreparation(Path(PREPARED)) if PREPARED else None
    facts = kept.facts() if kept else None
    with running_postgres() as pg, measured_code(scratch) as root, everyones_simulator(everyone, facts) as sim:
        code = commit_of(root)
        print(f"  measuring the code of {code[:10]} ({root})", flush=True)
        now = now_design(scratch, pg, sim, everyone, root, kept)
        before = baseline_design(scratch, pg, sim, everyone) if BASELINE_TENANTS else None
    write_up(section, now, before, code, facts)


def write_up(
    section: Section, now: Findings, before: Before | None, code: str, restored: dict[str, object] | None
) -> None:
    cores = psutil.cpu_count()
    hour = [p.cpu + now.idle_per_minute * (60 - PERIOD_MINUTES) for p in now.periods]
    ticks = sorted(d for p in now.periods for d in p.ticks)
    checks = sum(p.checked_current for p in now.periods)
    daemon_check = sum(p.tick_cpu for p in now.periods) / max(1, checks)
    library_cpu, library_wall, library_runs = now.library
    library_check = library_cpu / LIBRARY_TICK_TENANTS
    section.row(
        f"runs per period, {TENANTS:,} hourly tenants, {CHANGING:.0%} changing",
        " / ".join(f"{len(p.runs)} for {len(p.changed)} changed" for p in now.periods),
        "the changed tenants only",
    )
    section.row(
        "CPU of the daemon, code servers and runs per hourly period",
        " / ".join(f"{c:,.0f} CPU-s ({c / (cores * 3600):.0%} of the machine)" for c in hour),
        f"≤ {MACHINE_SHARE * cores * 3600:,.0f} CPU-s (a third)",
    )
    section.row(
        "CPU per quiet tenant's check, through the daemon",
        f"{1000 * daemon_check:.1f} ms",
        f"< 10 ms (floor {1000 * now.floor:.2f} ms)",
    )
    section.row("counted calls for quiet tenants", " / ".join(str(p.counted_quiet) for p in now.periods), "0")
    section.row(
        "tier tick duration p50 / max",
        f"{statistics.median(ticks):.1f} s / {max(ticks):.1f} s" if ticks else "no tick",
        "< 20 s",
    )
    section.row(
        "tier ticks that ran out of time with tenants unreached",
        " / ".join(f"{p.short_ticks} of {len(p.ticks)}" for p in now.periods),
        "0",
    )
    section.row("quiet tenants fresh", " / ".join(f"{p.fresh_quiet:.1%}" for p in now.periods), "100%")
    check_bytes = sum(p.check_bytes for p in now.periods)
    section.row(
        "what 1,000 checks cost the instance: bytes (runless results, their check rows, tick rows) / "
        "CPU of every process but the runs during the tier's ticks",
        f"{1000 * check_bytes / max(1, checks) / 1e3:.1f} KB / {1e6 * daemon_check:,.0f} ms",
        "near zero",
    )
    runs_events = [p.events_per_run for p in now.periods if p.runs]
    before_events = f" (before: {before.period.events_per_run:.0f})" if before is not None else ""
    section.row(
        "events per run in the instance (a changed tenant's run, through the daemon)",
        f"{statistics.mean(runs_events):.0f}{before_events}" if runs_events else "no run",
        "fewer, none nobody reads",
    )
    section.table(
        ["period", "changed", "runs", "of them for an unchanged tenant", "failed", "checked current", "CPU-s"],
        [
            [
                str(n + 1),
                str(len(p.changed)),
                str(len(p.runs)),
                str(len(set(p.runs) - p.changed)),
                str(p.failed_runs),
                f"{p.checked_current:,}",
                f"{p.cpu:,.0f}",
            ]
            for n, p in enumerate(now.periods)
        ],
    )
    section.table(
        ["one quiet tenant's check", "CPU", "vs. floor"],
        [
            ["bare `http.client`: its three conditional requests (the floor)", f"{1000 * now.floor:.2f} ms", "1.0×"],
            [
                f"the tier's tick called in this process, {LIBRARY_TICK_TENANTS} quiet tenants (library figure; "
                f"{library_wall:.1f} s wall, {library_runs} runs requested)",
                f"{1000 * library_check:.2f} ms",
                f"{library_check / now.floor:.1f}×",
            ],
            [
                "through deploy/run.sh: every process's CPU but the runs', during the tier's ticks, ÷ tenants checked",
                f"{1000 * daemon_check:.2f} ms",
                f"{daemon_check / now.floor:.1f}×",
            ],
        ],
    )
    tenant_periods = TENANTS / 1000
    growth = []
    previous = now.live_before
    for p in now.periods:
        growth.append((p.live_bytes - previous) / tenant_periods)
        previous = p.live_bytes
    rows = [
        [
            "now: a run only for what changed",
            f"{TENANTS:,} × {PERIOD_MINUTES} min",
            " / ".join(f"{len(p.runs)}" for p in now.periods),
            " / ".join(f"{c:,.0f}" for c in hour),
            " / ".join(f"{c / TENANTS:.3f}" for c in hour),
            " / ".join(f"{g / 1e6:.2f} MB" for g in growth),
            f"{now.kept[1] / TENANTS / 1e3:.1f} KB",
        ]
    ]
    if before is not None:
        written = (before.period.live_bytes - before.live_before) / (before.tenants / 1000)
        scale_to_hour = 60 / BASELINE_PERIOD_MINUTES
        rows.append(
            [
                f"before ({BASELINE}): a run per tenant at every slot",
                f"{before.tenants:,} × {BASELINE_PERIOD_MINUTES} min",
                str(len(before.period.runs)),
                f"{before.period.cpu:,.0f} (an hour of it: {before.period.cpu * scale_to_hour:,.0f})",
                f"{before.period.cpu / before.tenants:.3f}",
                f"{written / 1e6:.2f} MB",
                f"{before.kept[1] / before.tenants / 1e3:.1f} KB",
            ]
        )
    section.table(
        [
            "design",
            "tenants × period",
            "runs per period",
            "CPU-s per period",
            "CPU-s per tenant-period",
            "instance bytes written per 1,000 tenant-periods",
            "kept per tenant once the retention ran",
        ],
        rows,
    )
    onboarding = now.onboarding
    synced = sum(t in onboarding.runs for t in onboarding.changed)
    section.row(
        f"onboarding {TENANTS:,} new tenants at once: first syncs in one {PERIOD_MINUTES}-minute period",
        f"{onboarding.first_syncs:,} ({onboarding.first_syncs * 60 / PERIOD_MINUTES:,.0f} an hour: all in about "
        f"{TENANTS / max(1, onboarding.first_syncs) * PERIOD_MINUTES / 60:.1f} h, extrapolated)",
        "waves that never starve the tier",
    )
    on_ticks = sorted(onboarding.ticks)
    section.row(
        "the hourly tier meanwhile: changed tenants synced in the period; tick p50 / max; ticks short of time",
        f"{synced} of {len(onboarding.changed)}; "
        + (f"{statistics.median(on_ticks):.1f} s / {max(on_ticks):.1f} s" if on_ticks else "no tick")
        + f"; {onboarding.short_ticks} of {len(on_ticks)}",
        "all; < 20 s; 0",
    )
    if CODE:
        section.note(
            f"The product code measured is commit {code[:10]}'s (DRIPFEED_BENCH_SCALE_CODE), not this checkout's."
        )
    if restored is not None:
        saved = datetime.fromtimestamp(float(restored["saved_at"]), UTC)
        upgraded = (
            "" if restored["code"] == code else ", and upgraded by the code measured (python -m dripfeed.migrate)"
        )
        section.note(
            f"The {TENANTS:,} tenants were not synced afresh: they were restored from a preparation by commit "
            f"{str(restored['code'])[:10]}, kept in DRIPFEED_BENCH_SCALE_PREPARED (saved {saved:%Y-%m-%d %H:%M} UTC)"
            f"{upgraded}."
        )
    if before is None:
        section.note(
            "The design before was not run this time (DRIPFEED_BENCH_BASELINE_TENANTS=0, or its checkout failed): "
            "compare with its figures in an earlier section of this file, from the same machine."
        )
    section.note(
        f"Time is compressed: the hourly period is {PERIOD_MINUTES} minutes of {TICKS_PER_PERIOD} ticks "
        f"{PERIOD_MINUTES // TICKS_PER_PERIOD} minutes "
        f"apart, so a tick serves {TENANTS // 12:,} tenants as in production. What runs at the clock's pace "
        f"whatever the period (the sensors, the daemon's loops, the webserver) "
        f"measured {now.idle_per_minute:.1f} CPU-s a minute with the tier stopped; the hourly figures add it for "
        f"the {60 - PERIOD_MINUTES} minutes an hour has beyond the compressed period. Instance bytes are the "
        f"live rows of every table of the Dagster instance on Postgres (pg_column_size); the retention (one "
        f"period's worth, every 2 minutes) ran through the measured periods, and what an instance keeps per "
        f"tenant is measured after a retention of zero days and VACUUM FULL."
    )


def run() -> Section:
    return run_parts(f"Ten thousand tenants on one machine ({TENANTS:,} here)", scale)


def prepare_and_keep() -> None:
    """Only the preparation, kept in DRIPFEED_BENCH_SCALE_PREPARED for the runs that restore it: an hour
    spent once, before a session that measures two designs."""
    if not PREPARED:
        raise SystemExit("set DRIPFEED_BENCH_SCALE_PREPARED to the directory that keeps the preparation")
    kept = KeptPreparation(Path(PREPARED))
    everyone = [tenant_id(n) for n in range(2 * TENANTS)]
    with (
        tempfile.TemporaryDirectory() as scratch,
        running_postgres() as pg,
        measured_code(Path(scratch)) as root,
        everyones_simulator(everyone, None) as sim,
    ):
        deployment = Deployment(root, Path(scratch) / "now", pg, sim, everyone[:TENANTS], PERIOD_MINUTES, everyone)
        print(f"{TENANTS:,} tenants prepared by {commit_of(root)[:10]} in {deployment.prepare():.0f} s", flush=True)
        deployment.keep(kept)
        print(f"kept in {kept.directory}", flush=True)


if __name__ == "__main__":  # python -m benchmarks.scale_bench prepare
    if sys.argv[1:] != ["prepare"]:
        raise SystemExit("usage: python -m benchmarks.scale_bench prepare  (the suite itself runs from make bench)")
    prepare_and_keep()
