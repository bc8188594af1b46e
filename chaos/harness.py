"""What every segment of the campaign shares: a simulator in its own process, a scratch Dagster
instance with its code location's settings, runs launched through the real `dagster` CLI (each in
a session of its own, so that its whole process tree can be killed), and the comparison with the
simulator's ground truth.

Every token is random and registered in SECRETS, so that the secrets segment can look for each
of them in everything the campaign left behind.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef  # the instance the CLI uses, from its DAGSTER_HOME

from resources.streams import STREAMS
from resources.warehouse import Warehouse
from tasklane_sim import SimServer
from tasklane_sim.admin_client import SimAdminClient
from tests.support.json_logs import documented_python_logs

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running the campaign, whose dagster CLI it uses
ADMIN_TOKEN = "chaos-admin-" + secrets.token_hex(8)
WORKSPACE = "load_from:\n  - python_module:\n      module_name: dripfeed.definitions\n      location_name: dripfeed\n"
ASSETS = "users,projects,tasks"
AS_OF = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))

SECRETS: set[str] = set()  # every token and webhook secret the campaign used
TOKENS: dict[str, str] = {}  # each workspace's first token, by workspace id (ids are unique over the campaign)
LOCATIONS: list[Location] = []  # every scratch location, for the secrets scan


def new_secret(prefix: str) -> str:
    """A random secret, remembered for the scan."""
    value = f"{prefix}-{secrets.token_hex(12)}"
    SECRETS.add(value)
    return value


def workspace(tenant: str, token: str, records: dict[str, int] | None = None, **knobs: Any) -> dict[str, Any]:
    """A simulator workspace with one token: quiet (no lag, no faults) unless `knobs` say otherwise."""
    TOKENS[tenant] = token
    spec: dict[str, Any] = {
        "id": tenant,
        "tokens": [token],
        "records": records or {"users": 20, "projects": 8, "tasks": 400},
        "deleted_fraction": 0.05,
        "visibility_lag_seconds": 0,
    }
    return {**spec, **knobs}


def simulator(workspaces: list[dict[str, Any]]) -> SimServer:
    """The simulator in a process of its own (its own core), with history up to a day ago."""
    config = {"admin_token": ADMIN_TOKEN, "seed": 14, "as_of": AS_OF, "workspaces": workspaces}
    return SimServer(config, subprocess_mode=True)


ADMIN_LOCK = threading.Lock()


class SerializedAdminClient(SimAdminClient):
    """The simulator's admin client, one call at a time across the campaign's threads: the simulator's
    truth endpoint streams from a SQLite connection that fails when two admin calls overlap (its
    generator moves between worker threads; RELIABILITY.md, defects found)."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        with ADMIN_LOCK:
            return super()._call(method, path, **kwargs)

    def truth(self, workspace: str, resource: str) -> list[dict[str, Any]]:
        with ADMIN_LOCK:
            return super().truth(workspace, resource)


def admin_client(sim: SimServer) -> SimAdminClient:
    """An admin client of its own (a requests session is not shared between threads)."""
    return SerializedAdminClient(sim.base_url, ADMIN_TOKEN)


@dataclass
class Run:
    """One `dagster asset materialize` process, in a session of its own."""

    tenant: str
    process: subprocess.Popen
    log: Path
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    def kill(self) -> None:
        """SIGKILL the run's whole process tree, as an OOM killer or a lost machine would."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 900) -> int:
        code = self.process.wait(timeout=timeout)
        self.ended = self.ended or time.monotonic()
        return code

    @property
    def wall(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Location:
    """A scratch DAGSTER_HOME (the demo's instance settings), workspace, tenants.yaml, control store and
    warehouse, with the environment the code location needs; runs go through the `dagster` CLI."""

    def __init__(
        self,
        directory: Path,
        sim: SimServer,
        tenants: dict[str, dict[str, Any]],
        warehouse_url: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """`tenants` maps each tenant id to its tenants.yaml entry beyond id/tier/token (e.g. a budget)."""
        self.directory, self.sim = directory, sim
        directory.mkdir(parents=True)
        (directory / "logs").mkdir()
        self.home = directory / "dagster_home"
        self.home.mkdir()
        self.json_log = directory / "logs" / "dripfeed.jsonl"
        # The demo's instance with the documented JSON logs on: the secrets scan reads every line.
        settings = yaml.safe_load((ROOT / "demo" / "dagster.yaml").read_text())
        settings["python_logs"] = documented_python_logs(self.json_log)
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(settings))
        (directory / "workspace.yaml").write_text(WORKSPACE)
        self.warehouse_url = warehouse_url or str(directory / "warehouse.duckdb")
        self.tokens: dict[str, str] = {}
        self.entries: dict[str, dict[str, Any]] = {}
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "DRIPFEED_TENANTS_FILE": str(directory / "tenants.yaml"),
            "DRIPFEED_STATE": str(directory / "control.sqlite3"),
            "DRIPFEED_WAREHOUSE": self.warehouse_url,
            "TASKLANE_BASE_URL": sim.base_url,
            **(extra_env or {}),
        }
        for tenant, entry in tenants.items():
            self.add_tenant(tenant, **entry)
        self.write_tenants()
        with self.instance() as instance:
            instance.add_dynamic_partitions("tenants", list(tenants))
        LOCATIONS.append(self)

    def add_tenant(self, tenant: str, **entry: Any) -> None:
        """Register the tenant's token (a variable) and its tenants.yaml entry."""
        variable = f"TASKLANE_TOKEN_{len(self.entries)}"
        self.env[variable] = self.tokens[tenant] = TOKENS[tenant]
        self.entries[tenant] = {"id": tenant, "tier": "hourly", "token_env": variable, **entry}

    def write_tenants(self) -> None:
        (self.directory / "tenants.yaml").write_text(yaml.safe_dump({"tenants": list(self.entries.values())}))

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(url=self.warehouse_url)

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home))) as instance:
            yield instance

    def launch(self, tenant: str, config: dict[str, Any] | None = None) -> Run:
        """`dagster asset materialize` of the tenant's three assets: what the README's `dg launch --assets` runs."""
        command = ["asset", "materialize", "-m", "dripfeed.definitions", "--select", ASSETS, "--partition", tenant]
        return self._start(tenant, command, config)

    def launch_job(self, tenant: str, tags: dict[str, str], config: dict[str, Any] | None = None) -> Run:
        """`dagster job execute` of sync_tenant for the tenant, with run tags (the asset CLI takes none)."""
        command = ["job", "execute", "-m", "dripfeed.definitions", "-j", "sync_tenant"]
        command += ["--tags", json.dumps({"dagster/partition": tenant, **tags})]
        return self._start(tenant, command, config)

    def _start(self, tenant: str, arguments: list[str], config: dict[str, Any] | None) -> Run:
        """The dagster CLI in a session of its own, its output captured in the location's logs/."""
        command = [str(BIN / "dagster"), *arguments]
        if config:
            command += ["--config-json", json.dumps(config)]
        log = self.directory / "logs" / f"{tenant}-{time.time_ns()}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                command, cwd=self.directory, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        return Run(tenant, process, log)

    def sync_all(self, tenants: list[str], config: dict[str, Any] | None = None) -> dict[str, Run]:
        """One run per tenant, launched together; returns them finished."""
        runs = {tenant: self.launch(tenant, config) for tenant in tenants}
        for run in runs.values():
            run.wait()
        return runs

    def last_materializations(self, tenant: str) -> dict[str, dict[str, Any]]:
        """Each stream's metadata from the tenant's latest materialization, as plain values."""
        found: dict[str, dict[str, Any]] = {}
        with self.instance() as instance:
            for stream in STREAMS:
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(stream), asset_partitions=[tenant]), limit=1
                ).records
                materialization = records[0].event_log_entry.asset_materialization if records else None
                if materialization:
                    found[stream] = {key: value.value for key, value in materialization.metadata.items()}
        return found


def pages_per_checkpoint(pages: int) -> dict[str, Any]:
    """Run config that checkpoints every `pages` pages, for all three assets."""
    return {"ops": {stream: {"config": {"pages_per_checkpoint": pages}} for stream in STREAMS}}


@dataclass
class Comparison:
    records: int = 0
    mismatches: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, other: Comparison) -> None:
        self.records += other.records
        self.mismatches += other.mismatches
        self.examples += other.examples[: 5 - len(self.examples)]


def compare_with_truth(admin: SimAdminClient, warehouse: Warehouse, tenant: str) -> Comparison:
    """Every record of the tenant, warehouse against the simulator's truth: a mismatch is an id missing
    on either side (but a soft-deleted row whose tombstone the vendor purged), a record whose JSON
    differs, or a soft delete that differs from the truth."""
    result = Comparison()
    for stream in STREAMS:
        truth = {record["id"]: record for record in admin.truth(tenant, stream)}
        rows = warehouse.query(f"SELECT id, _raw, _deleted_at FROM {stream} WHERE tenant_id = ?", (tenant,))
        stored = {id_: (json.loads(raw) if isinstance(raw, str) else raw, deleted) for id_, raw, deleted in rows}
        result.records += len(truth)
        for id_ in truth.keys() | stored.keys():
            record, deleted = stored.get(id_, (None, None))
            expected = truth.get(id_)
            if expected is None and record is not None and deleted is not None:
                continue  # deleted upstream and its tombstone purged: soft-deleted by a reconciliation
            if record != expected or (expected is not None and (deleted is None) != (expected["deleted_at"] is None)):
                result.mismatches += 1
                if len(result.examples) < 5:
                    result.examples.append(f"{tenant}/{stream}/{id_}")
    return result


def listing_requests(admin: SimAdminClient, tenant: str) -> dict[str, int]:
    """Listing calls the simulator answered for the tenant, by stream."""
    endpoints = admin.counters(tenant)["endpoints"]
    return {stream: endpoints.get(f"{stream}.list", {}).get("requests", 0) for stream in STREAMS}


def faults_injected(counters: dict[str, Any]) -> int:
    """How many faults the simulator injected, over every endpoint (its `fault_*` counters)."""
    return sum(value for name, value in counters["totals"].items() if name.startswith("fault_"))


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll `condition` every `every` seconds until it holds; TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout} s")
