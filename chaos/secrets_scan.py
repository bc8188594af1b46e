"""Secrets: rotate a token while its tenant's run is in flight (nothing may be lost), then look for
every token and webhook secret the campaign used in everything it left behind: every file under
each scratch location (the instance's run and event storage, compute logs, the control store, the
DuckDB warehouse, the runs' captured stdout and stderr, the runs' JSON log lines), every run's config
and tags and every event through the Dagster instance, every warehouse cell and control-store row
through SQL, every alert payload, and what the metrics endpoint serves. None may be found.

Warehouses on a Postgres server that a segment stops are read by `record_warehouse` before it stops."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import requests
from dagster._serdes import serialize_value

from tests.support.prometheus_server import running_metrics_endpoint

from .harness import (
    LOCATIONS,
    SECRETS,
    Location,
    compare_with_truth,
    listing_requests,
    new_secret,
    pages_per_checkpoint,
    simulator,
    wait_for,
    workspace,
)
from .ticks import ALERT_PAYLOADS


@dataclass
class Findings:
    scanned: Counter = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)

    def look(self, kind: str, where: str, text: str | bytes) -> None:
        self.scanned[kind] += 1
        for secret in SECRETS:
            if (secret.encode() if isinstance(text, bytes) else secret) in text:
                self.leaks.append(f"{kind} {where}: {secret[:10]}…")


FINDINGS = Findings()
TOKEN_FILES: set[Path] = set()  # where tokens are kept on purpose: not a leak


def record_warehouse(location: Location) -> None:
    """Every cell of the location's warehouse tables, as text."""
    warehouse = location.warehouse
    tables = warehouse.query(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_schema NOT IN ('information_schema', 'pg_catalog')"
    )
    for schema, table in tables:
        for row in warehouse.query(f'SELECT * FROM "{schema}"."{table}"'):
            for cell in row:
                FINDINGS.look("warehouse cell", f"{location.directory.name}/{table}", str(cell))


def scan_files(location: Location) -> None:
    for path in location.directory.rglob("*"):
        if path.is_file() and path not in TOKEN_FILES:
            FINDINGS.look("file", str(path.relative_to(location.directory.parent)), path.read_bytes())


def scan_instance(location: Location) -> None:
    with location.instance() as instance:
        for record in instance.get_run_records():
            run = record.dagster_run
            FINDINGS.look("run config and tags of a run", run.run_id, serialize_value(run.run_config) + str(run.tags))
            for entry in instance.all_logs(run.run_id):
                FINDINGS.look("event", run.run_id, serialize_value(entry))
        for key in instance.get_asset_keys():
            for record in instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1000).records:
                metadata = record.event_log_entry.asset_materialization.metadata
                for value in metadata.values():
                    FINDINGS.look("asset metadata value", key.to_user_string(), str(value.value))


def scan_json_logs(location: Location) -> None:
    """Every line the runs' JSON-lines handler wrote (docs/operations.md's "JSON logs"), one object each."""
    if location.json_log.exists():
        for number, line in enumerate(location.json_log.read_text().splitlines(), 1):
            json.loads(line)  # one object per line, or the campaign fails here
            FINDINGS.look("JSON log line", f"{location.json_log.name}:{number}", line)


def scan_metrics_endpoint(location: Location) -> None:
    """What `python -m dripfeed.metrics` serves over the location's control store and instance."""
    with running_metrics_endpoint(location.directory, location.env) as endpoint:
        FINDINGS.look("metrics endpoint answer", location.directory.name, requests.get(endpoint.url, timeout=60).text)


def scan_control_store(location: Location) -> None:
    path = Path(location.env["DRIPFEED_STATE"])
    if not path.exists():
        return
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                FINDINGS.look("control-store row", table, str(row))


def rotation(scratch: Path) -> dict[str, int]:
    """A tenant's token (a file) is rotated while its run pages: the new token is issued, written
    to the file, and the old one revoked. The run must succeed and hold the ground truth."""
    tenant = "rotated"
    old = new_secret(f"tok-{tenant}")
    spec = workspace(
        tenant,
        old,
        records={"users": 20, "projects": 10, "tasks": 3000},
        faults={"slow_rate": 1.0, "slow_seconds": 0.08},
    )
    with simulator([spec]) as sim:
        location = Location(scratch / "rotation", sim, {})
        token_file = location.directory / "rotated.token"
        token_file.write_text(old)
        TOKEN_FILES.add(token_file)
        location.entries[tenant] = {"id": tenant, "tier": "hourly", "token_file": str(token_file)}
        location.write_tenants()
        with location.instance() as instance:
            instance.add_dynamic_partitions("tenants", [tenant])
        run = location.launch(tenant, pages_per_checkpoint(5))
        wait_for(lambda: listing_requests(sim.admin, tenant)["tasks"] >= 8, 300, "8 pages")
        new = new_secret(f"tok-{tenant}")
        sim.admin.add_token(tenant, new)
        token_file.write_text(new)
        sim.admin.revoke_token(tenant, old)
        succeeded = run.wait() == 0
        unauthorized = sim.admin.counters(tenant)["totals"].get("status_401", 0)
        if not succeeded:  # what it committed must still be there: the next run resumes
            location.launch(tenant, pages_per_checkpoint(5)).wait()
        comparison = compare_with_truth(sim.admin, location.warehouse, tenant)
    return {"run succeeded": int(succeeded), "401s": unauthorized, "mismatches": comparison.mismatches}


def run(scratch: Path, quick: bool) -> list[tuple[str, str, str, bool]]:
    rotated = rotation(scratch)
    for location in LOCATIONS:
        scan_metrics_endpoint(location)  # first: its own log is one of the files below
        scan_files(location)
        scan_instance(location)
        scan_control_store(location)
        scan_json_logs(location)
        if not location.warehouse_url.startswith("postgresql://"):
            record_warehouse(location)
    for payload in ALERT_PAYLOADS:
        FINDINGS.look("alert payload", payload.get("tenant", "?"), str(payload))
    if FINDINGS.leaks:
        print("    leaks:\n      " + "\n      ".join(FINDINGS.leaks[:20]), flush=True)
    rows: list[tuple[str, str, str, bool]] = [
        ("token rotated mid-run: the run succeeded", str(rotated["run succeeded"]), "1", rotated["run succeeded"] == 1),
        ("token rotated mid-run: 401s the run met", str(rotated["401s"]), "", True),
        (
            "token rotated mid-run: mismatches (after the next run, if it failed)",
            str(rotated["mismatches"]),
            "0",
            rotated["mismatches"] == 0,
        ),
        ("secrets looked for (tokens, webhook secrets)", str(len(SECRETS)), "", True),
    ]
    for kind, count in sorted(FINDINGS.scanned.items()):
        rows.append((f"scanned: {kind}", f"{count:,}", "", True))
    rows.append(("leaked secrets", str(len(FINDINGS.leaks)), "0", not FINDINGS.leaks))
    return rows
