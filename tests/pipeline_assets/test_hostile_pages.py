"""Hostile pages through the real asset path: a tenant whose vendor answers badly either fails with a
clear error naming it or has its records stored safely; what it synced before stays intact; a healthy
tenant synced beside it equals the ground truth; no listing runs forever."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from pipeline_assets.assets import FULL_RESYNC_TAG
from resources.streams import STREAMS
from resources.tasklane.transport import MAX_ANSWER_BYTES
from resources.warehouse import Warehouse
from resources.warehouse.schema import column_for, quote
from tasklane_sim import SimServer
from tasklane_sim.crafted_replies import HOSTILE_FIELD_NAMES, UNICODE_ID_SUFFIXES
from tests.support.ground_truth import assert_equals_ground_truth, warehouse_records
from tests.support.postgres_server import fresh_database
from tests.support.resources import Resources, make_api
from tests.support.runs import check_results, materialize_tenant
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

FOREVER = 10_000  # more answers than a listing that ends would ask for
TASKS = 430  # five pages
WRONG_SCALARS = (
    '"project_id": 12, "assignee_id": [], "title": 5, "status": 7, "priority": "high", "estimate_hours": "3h", '
    '"tags": ["ok"], "due_date": 20261130, "custom_fields": {}, "completed_at": true'
)


def raw_page(fields: str) -> dict[str, Any]:
    """A raw reply, the listing's last page: one task whose other fields are the JSON-like text given."""
    record = (
        '{"id": "tsk_raw", "created_at": "2026-11-01T00:00:00.000Z", "updated_at": "2026-11-01T00:00:00.000Z", '
        f'"deleted_at": null, {fields}}}'
    )
    return {"body": '{"data": [' + record + '], "next_cursor": null}'}


def hostile_tasks(warehouse: Warehouse, columns: str, where: str = "TRUE", *params: Any) -> list[tuple]:
    return warehouse.query(f"SELECT {columns} FROM tasks WHERE tenant_id = ? AND {where}", ("hostile", *params))


def drift_found(warehouse: Warehouse, result: dg.ExecuteInProcessResult) -> None:
    """Wrong types are the drift check's: it fails naming the fields, the typed columns hold NULL."""
    drift = check_results(result)["tasks_schema_drift"]
    assert not drift.passed
    assert {d["field"] for d in drift.metadata["drift"].value} >= {"title", "priority", "status", "due_date"}
    assert hostile_tasks(warehouse, "title, priority, due_date", "id = ?", "tsk_raw") == [(None, None, None)]
    assert hostile_tasks(warehouse, "count(*)") == [(TASKS + 1,)]


def every_type_drifted(warehouse: Warehouse, result: dg.ExecuteInProcessResult) -> None:
    """A page whose every field has another JSON type: drift named, typed columns NULL, JSON fields
    (tags and custom_fields take any JSON) stored as the JSON they arrived as."""
    drift = check_results(result)["tasks_schema_drift"]
    assert not drift.passed
    assert {d["field"] for d in drift.metadata["drift"].value} >= {"title", "priority", "status", "created_at"}
    assert hostile_tasks(warehouse, "count(*)") == [(TASKS,)]
    assert hostile_tasks(warehouse, "count(*)", "title IS NULL AND _deleted_at IS NULL")[0][0] >= 90
    assert hostile_tasks(warehouse, "count(*)", "left(CAST(tags AS TEXT), 1) = '\"'")[0][0] >= 90, (
        "tags as JSON strings"
    )


def padding_stored(warehouse: Warehouse, result: dg.ExecuteInProcessResult) -> None:
    assert hostile_tasks(warehouse, "max(length(padding))") == [(10_000_000 // 100,)]


def nesting_stored(warehouse: Warehouse, result: dg.ExecuteInProcessResult) -> None:
    fields = [r["custom_fields"] for r in warehouse_records(warehouse, "hostile", "tasks")]
    nested = [f for f in fields if f and "a" in f]
    assert len(nested) == 100, "the first page's records"
    depth, value = 0, nested[0]
    while value:
        depth, value = depth + 1, value["a"]
    assert depth == 200


def hostile_names_stored(warehouse: Warehouse, result: dg.ExecuteInProcessResult) -> None:
    raws = warehouse_records(warehouse, "hostile", "tasks")
    assert sum(set(HOSTILE_FIELD_NAMES) <= set(raw) for raw in raws) == 100, "the first page's records, exactly"
    for name in HOSTILE_FIELD_NAMES:  # each in a column of its own, with its own value
        column = quote(column_for(name))
        assert hostile_tasks(warehouse, "count(*)", f"{column} = ?", f"value of {name!r}") == [(100,)], name
    assert hostile_tasks(warehouse, "DISTINCT tenant_id") == [("hostile",)], "a vendor field named tenant_id"
    assert hostile_tasks(warehouse, "count(*)") == [(TASKS,)]


def unicode_ids_stored(warehouse: Warehouse, result: dg.ExecuteInProcessResult) -> None:
    ids = [i for (i,) in hostile_tasks(warehouse, "id")]
    suffixed = {i for i in ids if any(i.endswith(suffix) for suffix in UNICODE_ID_SUFFIXES)}
    assert len(suffixed) == len(UNICODE_ID_SUFFIXES), "NFC, NFD, case and invisible differences are distinct ids"
    assert len(ids) == TASKS + len(UNICODE_ID_SUFFIXES)
    for suffixed_id in suffixed:  # compared exactly, byte for byte
        assert hostile_tasks(warehouse, "id", "id = ?", suffixed_id) == [(suffixed_id,)]


@dataclass(frozen=True)
class Case:
    replies: list[dict[str, Any]]
    fails_with: str = ""  # in the failed step's message; empty: the run succeeds and `stored` holds
    stored: Callable[[Warehouse, dg.ExecuteInProcessResult], None] | None = None
    quick: tuple[str, ...] = ()  # the back ends it runs on (none named: DuckDB)


CASES = {
    "malformed json": Case([{"mode": "malformed_json", "times": 2}], fails_with="undecodable body on tasks.list"),
    "wrong scalar types": Case([{"mode": "as_is"}, raw_page(WRONG_SCALARS)], stored=drift_found, quick=("duckdb",)),
    # A regression: tags or custom_fields as a JSON string failed the batch (its text was cast to JSON).
    "wrong types everywhere": Case([{"mode": "wrong_types"}], stored=every_type_drifted, quick=("duckdb", "postgres")),
    "10 MB page": Case([{"mode": "huge_page", "size_bytes": 10_000_000}], stored=padding_stored),
    "page over the limit": Case([{"mode": "huge_page", "size_bytes": MAX_ANSWER_BYTES}], fails_with="over dripfeed's"),
    "nested 200 deep": Case([{"mode": "nested_custom_fields", "depth": 200}], stored=nesting_stored),
    "nested 5000 deep": Case(
        [{"mode": "nested_custom_fields", "depth": 5000}], fails_with="nested deeper", quick=("duckdb",)
    ),
    "hostile field names": Case(
        [{"mode": "hostile_field_names"}], stored=hostile_names_stored, quick=("duckdb", "postgres")
    ),
    "unicode ids": Case([{"mode": "as_is"}, {"mode": "unicode_ids"}], stored=unicode_ids_stored, quick=("duckdb",)),
    "cursor loop": Case(
        [{"mode": "as_is"}, {"mode": "cursor_loop", "times": FOREVER}], fails_with="pointed back", quick=("duckdb",)
    ),
    "repeated page": Case(
        [{"mode": "as_is"}, {"mode": "repeat_previous_page", "times": FOREVER}],
        fails_with="repeated the previous",
        quick=("duckdb",),
    ),
    "updated_at far ahead": Case(
        [{"body": '{"data": [{"id": "tsk_x", "updated_at": "9999-12-31T23:59:59.999Z"}], "next_cursor": null}'}],
        fails_with="ahead of dripfeed's clock",
    ),
    "NaN": Case([{"mode": "as_is"}, raw_page('"custom_fields": {"score": NaN}')], fails_with="NaN"),
    "NUL character": Case(
        [{"mode": "as_is"}, raw_page('"title": "a\\u0000b"')], fails_with="NUL", quick=("duckdb", "postgres")
    ),
    "lone surrogate": Case([{"mode": "as_is"}, raw_page('"title": "\\ud800"')], fails_with="surrogate"),
}


def cases() -> list[Any]:
    """Each case on the back ends it names, DuckDB when it names none: Postgres only where its
    write path differs (keeping make test under 20 minutes; make chaos runs every case again)."""
    return [
        pytest.param(case, backend, id=f"{backend}-{name}")
        for name, case in CASES.items()
        for backend in case.quick or ("duckdb",)
    ]


@pytest.fixture
def hostile_and_healthy(
    make_sim: Callable[..., SimServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[SimServer, Resources]:
    """Two tenants of one simulator; two attempts a call, so a retried hostile answer fails fast."""
    sim = make_sim(workspace_config("hostile", records={"tasks": TASKS}), workspace_config("healthy"))
    for tenant in ("hostile", "healthy"):
        monkeypatch.setenv(f"TASKLANE_TOKEN_{tenant.upper()}", f"token-{tenant}")
    tenants = write_tenants(tmp_path / "tenants.yaml", tenant_entry("hostile"), tenant_entry("healthy"))
    state = str(tmp_path / "control.sqlite3")
    return sim, make_api(base_url=sim.base_url, tenants_file=str(tenants), state=state, max_attempts=2)


def warehouse_on(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if backend == "duckdb":
        return Warehouse(url=str(tmp_path / "warehouse.duckdb"))
    return Warehouse(url=fresh_database(request.getfixturevalue("postgres_url"), "warehouse"))


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.is_step_failure]
    assert len(failures) == 1, "one step fails: the one whose pages were hostile"
    return failures[0].step_failure_data.user_failure_data.description


@pytest.mark.parametrize(("case", "backend"), cases())
def test_a_hostile_page_fails_its_tenant_clearly_or_is_stored_safely(
    hostile_and_healthy: tuple[SimServer, Resources],
    instance: dg.DagsterInstance,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    case: Case,
    backend: str,
) -> None:
    sim, tasklane = hostile_and_healthy
    warehouse = warehouse_on(backend, request, tmp_path)
    assert materialize_tenant(instance, "hostile", tasklane, warehouse).success
    before = {stream: warehouse_records(warehouse, "hostile", stream) for stream in STREAMS}

    sim.admin.craft_replies("hostile", "tasks", *case.replies)
    hostile = materialize_tenant(
        instance, "hostile", tasklane, warehouse, tags={FULL_RESYNC_TAG: "true"}, raise_on_error=False
    )
    sim.admin.clear_crafted_replies("hostile")
    healthy = materialize_tenant(instance, "healthy", tasklane, warehouse)

    assert healthy.success
    assert_equals_ground_truth(sim, warehouse, "healthy")
    for stream in ("users", "projects"):
        assert warehouse_records(warehouse, "hostile", stream) == before[stream]
    if case.fails_with:
        assert not hostile.success
        message = failure_message(hostile)
        assert message.startswith("tenant 'hostile': ") and case.fails_with in message and "tasks" in message
        assert warehouse_records(warehouse, "hostile", "tasks") == before["tasks"], "what it synced before is intact"
    else:
        assert hostile.success
        assert case.stored is not None
        case.stored(warehouse, hostile)
