"""JSON logs as an operator enables them (docs/operations.md, "JSON logs"): a run with dagster.yaml's
`python_logs` handler writes one JSON object per line, the per-call and per-sync lines with their
fields, and no token anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from resources.warehouse import Warehouse
from tests.support.json_logs import documented_python_logs
from tests.support.runs import materialize_tenant
from tests.support.simulator import workspace_config

CALL_FIELDS = {"tenant", "endpoint", "status", "duration_ms", "attempt", "budget_left", "vendor_remaining"}
SYNC_FIELDS = {"tenant", "stream", "records", "tombstones", "counted_calls", "not_modified", "duration_s"}


def test_a_run_writes_its_call_and_sync_lines_as_json_objects_without_a_token(
    make_sim, tasklane_for, tmp_path: Path
) -> None:
    sim = make_sim(workspace_config("acme", records={"users": 5, "projects": 3, "tasks": 250}))
    tasklane = tasklane_for(sim, "acme")
    log_file = tmp_path / "dripfeed.jsonl"
    with dg.instance_for_test(overrides={"python_logs": documented_python_logs(log_file)}) as instance:
        result = materialize_tenant(instance, "acme", tasklane, Warehouse(url=str(tmp_path / "warehouse.duckdb")))
    assert result.success
    text = log_file.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # one object per line, each parses
    calls = [line for line in lines if line["logger"] == "dripfeed.tasklane"]
    syncs = [line for line in lines if line["logger"] == "dripfeed.sync"]
    counted = sim.admin.counters("acme")["totals"]["requests"]
    assert len(calls) == counted and all(set(call) >= CALL_FIELDS for call in calls), calls[:2]
    assert {(s["tenant"], s["stream"]) for s in syncs} == {("acme", "users"), ("acme", "projects"), ("acme", "tasks")}
    assert all(set(sync) >= SYNC_FIELDS for sync in syncs)
    assert next(s for s in syncs if s["stream"] == "tasks")["records"] == 250
    assert all(line["run_id"] == result.run_id for line in calls + syncs)
    assert "token-acme" not in text
