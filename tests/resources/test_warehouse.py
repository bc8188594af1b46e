"""The warehouse on both back ends: exact round trips, newest wins, atomic batches, schema drift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import psycopg2
import pytest

from resources.warehouse import SyncState, Warehouse, page_of
from resources.warehouse.schema import column_for
from tests.support.postgres_server import fresh_database
from tests.support.simulator import workspace_config

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = 'x"; DROP TABLE tasks; --'
LONG = "f" * 300


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse(url=str(tmp_path / "warehouse.duckdb"))
    return Warehouse(url=fresh_database(request.getfixturevalue("postgres_url"), "warehouse"))


def write(warehouse: Warehouse, stream: str, records: list[dict[str, Any]], tenant: str = "acme") -> None:
    warehouse.write(tenant, stream, [page_of(records)], SyncState(watermark=records[-1]["updated_at"]))


def raw_records(warehouse: Warehouse, stream: str, tenant: str = "acme") -> list[dict[str, Any]]:
    rows = warehouse.query(f"SELECT _raw FROM {stream} WHERE tenant_id = ? ORDER BY id", (tenant,))
    return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


def task(record_id: str, updated_at: str, **fields: Any) -> dict[str, Any]:
    base = {
        "id": record_id,
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": updated_at,
        "deleted_at": None,
        "project_id": "prj_1",
        "assignee_id": None,
        "title": "t",
        "status": "todo",
        "priority": 1,
        "estimate_hours": 1.5,
        "tags": [],
        "due_date": None,
        "custom_fields": {},
        "completed_at": None,
    }
    return {**base, **fields}


@pytest.mark.parametrize("stream", ["users", "projects", "tasks"])
def test_simulator_records_round_trip_exactly(make_sim, warehouse: Warehouse, stream: str) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 400}))
    truth = sim.admin.truth("acme", stream)
    write(warehouse, stream, truth)
    assert raw_records(warehouse, stream) == truth
    typed = warehouse.frame(f"SELECT * FROM {stream} WHERE tenant_id = ? ORDER BY id", ("acme",))
    assert list(typed["id"]) == [r["id"] for r in truth]
    deleted = typed[typed["_deleted_at"].notna()]
    assert set(deleted["id"]) == {r["id"] for r in truth if r["deleted_at"]}, "tombstones are soft deletes"


def test_an_older_version_never_replaces_a_newer_one(warehouse: Warehouse) -> None:
    write(warehouse, "tasks", [task("tsk_1", "2026-02-01T00:00:00.000Z", title="newer")])
    write(warehouse, "tasks", [task("tsk_1", "2026-01-01T00:00:00.000Z", title="older")])
    assert warehouse.query("SELECT title FROM tasks") == [("newer",)]
    write(
        warehouse,
        "tasks",
        [
            task("tsk_1", "2026-01-01T00:00:00.000Z", title="old"),
            task("tsk_1", "2026-03-01T00:00:00.000Z", title="newest"),
        ],
    )
    assert warehouse.query("SELECT title FROM tasks") == [("newest",)]


def test_a_record_seen_again_in_a_first_sync_is_upserted_newest_wins(warehouse: Warehouse) -> None:
    """A first sync INSERTs plainly; a batch meeting a key already written falls back to the upsert,
    keeping the column a new vendor field added in that batch."""
    batches = [
        [task("tsk_1", "2026-01-02T00:00:00.000Z", title="second"), task("tsk_2", "2026-01-02T00:00:00.000Z")],
        [
            task("tsk_1", "2026-01-01T00:00:00.000Z", title="first", sprint="s1"),
            task("tsk_3", "2026-01-03T00:00:00.000Z"),
        ],
        [task("tsk_1", "2026-01-04T00:00:00.000Z", title="fourth"), task("tsk_4", "2026-01-04T00:00:00.000Z")],
    ]
    with warehouse.writer() as writer:
        for records in batches:
            writer.write("acme", "tasks", [page_of(records)], SyncState(resume_from=records[-1]["updated_at"]))
    rows = warehouse.query("SELECT id, title, sprint FROM tasks WHERE tenant_id = ? ORDER BY id", ("acme",))
    assert rows == [("tsk_1", "fourth", None), ("tsk_2", "t", None), ("tsk_3", "t", None), ("tsk_4", "t", None)]
    assert warehouse.state("acme", "tasks") == SyncState(resume_from="2026-01-04T00:00:00.000Z")


def test_a_failed_batch_leaves_neither_its_rows_nor_its_position(warehouse: Warehouse) -> None:
    write(warehouse, "tasks", [task("tsk_1", "2026-01-01T00:00:00.000Z")])
    good = task("tsk_2", "2026-01-02T00:00:00.000Z")
    broken = {**good, "id": None}  # violates the key: the batch must fail whole
    with pytest.raises((duckdb.Error, psycopg2.Error)):
        warehouse.write("acme", "tasks", [page_of([good, broken])], SyncState(watermark="2026-01-02T00:00:00.000Z"))
    assert warehouse.query("SELECT id FROM tasks ORDER BY id") == [("tsk_1",)]
    assert warehouse.state("acme", "tasks").watermark == "2026-01-01T00:00:00.000Z"


def test_hostile_and_long_field_names_become_columns_and_values_read_back_exactly(warehouse: Warehouse) -> None:
    value = 'quote " newline \n emoji 🚀 backslash \\ '
    write(warehouse, "tasks", [task("tsk_1", "2026-01-01T00:00:00.000Z", title=value, **{HOSTILE: value, LONG: 42})])
    columns = [
        c for (c,) in warehouse.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'tasks'")
    ]
    assert column_for(HOSTILE) in columns and column_for(LONG) in columns
    assert warehouse.query(f'SELECT title, "{column_for(HOSTILE)}", "{column_for(LONG)}" FROM tasks') == [
        (value, value, "42")
    ]
    assert raw_records(warehouse, "tasks")[0][HOSTILE] == value
    assert warehouse.query("SELECT count(*) FROM tasks") == [(1,)], "the table survived the field name"


def test_a_type_change_nulls_the_typed_column_keeps_the_raw_value_and_records_drift(warehouse: Warehouse) -> None:
    write(warehouse, "tasks", [task("tsk_1", "2026-01-01T00:00:00.000Z", estimate_hours=3.0)])
    write(warehouse, "tasks", [task("tsk_2", "2026-01-02T00:00:00.000Z", estimate_hours="3h")], tenant="globex")
    assert warehouse.query("SELECT tenant_id, estimate_hours FROM tasks ORDER BY tenant_id") == [
        ("acme", 3.0),
        ("globex", None),
    ]
    assert raw_records(warehouse, "tasks", "globex")[0]["estimate_hours"] == "3h"
    drift = warehouse.query("SELECT tenant_id, field, expected, seen, example_id FROM _dripfeed_schema_drift")
    assert drift == [("globex", "estimate_hours", "double", "string", "tsk_2")]


@pytest.mark.parametrize(
    ("field", "value", "expected", "seen"),
    [
        ("priority", 2.5, "integer", "number"),
        ("priority", "high", "integer", "string"),
        ("priority", 12345678901234567890123, "integer", "number"),
        ("priority", 2**63 + 5, "integer", "number"),
        ("estimate_hours", True, "double", "boolean"),
        ("title", {"text": "t"}, "text", "object"),
        ("due_date", "2026-02-30", "date", "string"),
        ("due_date", "soon", "date", "string"),
        ("completed_at", "now", "timestamp", "string"),
        ("completed_at", 1767225600, "timestamp", "integer"),
    ],
)
def test_values_that_do_not_fit_the_contract_are_drift_not_errors(
    warehouse: Warehouse, field: str, value: Any, expected: str, seen: str
) -> None:
    write(warehouse, "tasks", [task("tsk_1", "2026-01-01T00:00:00.000Z", **{field: value})])
    assert warehouse.query(f"SELECT {field} FROM tasks") == [(None,)]
    assert raw_records(warehouse, "tasks")[0][field] == value
    drift = warehouse.query("SELECT field, expected, seen, example_id FROM _dripfeed_schema_drift")
    assert drift == [(field, expected, seen, "tsk_1")]


def test_a_dropped_field_stays_a_column_and_fills_with_nulls(warehouse: Warehouse) -> None:
    write(warehouse, "tasks", [task("tsk_1", "2026-01-01T00:00:00.000Z", sprint="S1")])
    write(warehouse, "tasks", [task("tsk_1", "2026-01-02T00:00:00.000Z")])
    assert warehouse.query("SELECT sprint FROM tasks") == [(None,)]


TAKE_TURN = """
import sys
from resources.warehouse.writer_turn import TurnTaken, WriterTurn
try:
    WriterTurn.of(sys.argv[1]).take()
    print("taken")
except TurnTaken:
    print("waits")
"""


def another_process_takes_its_turn(url: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", TAKE_TURN, url], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_another_process_gets_the_duckdb_file_only_once_this_one_has_closed_all_of_its_connections(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "shared.duckdb")
    warehouse = Warehouse(url=url)
    write(warehouse, "tasks", [task("tsk_1", "2026-01-01T00:00:00.000Z")])
    with warehouse.backend.connection():
        assert warehouse.query("SELECT count(*) FROM tasks") == [(1,)], "a second connection of the same process"
        assert another_process_takes_its_turn(url) == "waits", "while the first one is still open"
    assert another_process_takes_its_turn(url) == "taken"


@pytest.mark.e2e  # separate Python worker processes
def test_several_processes_write_one_duckdb_file_at_once(tmp_path: Path) -> None:
    url = str(tmp_path / "shared.duckdb")
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.warehouse_worker", url, tenant, "15"],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tenant in ("acme", "globex", "initech", "umbrella")
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    counts = Warehouse(url=url).query("SELECT tenant_id, count(*) FROM users GROUP BY 1 ORDER BY 1")
    assert counts == [(t, 15 * 50) for t in ("acme", "globex", "initech", "umbrella")]
