"""Hostile input: every hostile listing answer of issue 14, from the simulator's crafted replies, against
tenants synced through the real Dagster path (`dg.materialize` on the stream assets with the real
resources) into a DuckDB warehouse, beside healthy tenants.

Each case gives either a clear error naming its tenant, with what that tenant synced before intact,
or a successful run that stored it; anything else is an unclear outcome. A run that has not ended
after RUN_DEADLINE_SECONDS counts as a listing that never ended (its crafted replies are then
withdrawn, so that it can end). The healthy tenants must then still equal the ground truth.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from pipeline_assets.assets import FULL_RESYNC_TAG, projects, tasks, users
from resources.streams import STREAMS
from resources.tasklane.transport import MAX_ANSWER_BYTES
from resources.warehouse import Warehouse
from tasklane_sim import SimServer
from tests.support.resources import Resources, make_api, resources_for

from .harness import compare_with_truth

RUN_DEADLINE_SECONDS = 120.0
FOREVER = 10_000  # more answers than a listing that ends would ask for
HEALTHY = ("healthy-a", "healthy-b")
TIMESTAMPS = '"created_at": "2026-11-01T00:00:00.000Z", "updated_at": "2026-11-01T00:00:00.000Z", "deleted_at": null'


def last_page(fields: str) -> dict[str, Any]:
    """A raw reply ending the listing: one task whose fields are the JSON-like text given, verbatim."""
    return {"body": f'{{"data": [{{"id": "tsk_raw", {TIMESTAMPS}, {fields}}}], "next_cursor": null}}'}


# Each case: the crafted replies of its tasks listing, and whether it should be stored (True) or
# refused with a clear error (False).
CASES: dict[str, tuple[list[dict[str, Any]], bool]] = {
    "malformed JSON": ([{"mode": "malformed_json", "times": 2}], False),
    "wrong types in scalar fields": ([last_page('"title": 5, "priority": "high", "due_date": 20261130')], True),
    "wrong types in every known field": ([{"mode": "wrong_types"}], True),
    "a 10 MB page": ([{"mode": "huge_page", "size_bytes": 10_000_000}], True),
    "a page over the limit": ([{"mode": "huge_page", "size_bytes": MAX_ANSWER_BYTES}], False),
    "custom_fields 200 deep": ([{"mode": "nested_custom_fields", "depth": 200}], True),
    "custom_fields 5000 deep": ([{"mode": "nested_custom_fields", "depth": 5000}], False),
    "field names made to break SQL and paths": ([{"mode": "hostile_field_names"}], True),
    "unicode ids": ([{"mode": "unicode_ids"}], True),
    "a next_cursor looping back": ([{"mode": "as_is"}, {"mode": "cursor_loop", "times": FOREVER}], False),
    "a page repeating the previous one": (
        [{"mode": "as_is"}, {"mode": "repeat_previous_page", "times": FOREVER}],
        False,
    ),
    "an updated_at far in the future": (
        [{"body": '{"data": [{"id": "tsk_x", "updated_at": "9999-12-31T23:59:59.999Z"}], "next_cursor": null}'}],
        False,
    ),
    "NaN": ([last_page('"custom_fields": {"score": NaN}')], False),
    "a NUL character": ([last_page('"title": "a\\u0000b"')], False),
    "a lone surrogate": ([last_page('"title": "\\ud800"')], False),
}


@dataclass
class Figures:
    cases: int = 0
    clear_errors: int = 0
    stored: int = 0
    unclear: int = 0
    corrupted: int = 0
    harmed: int = 0
    never_ended: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "hostile cases": self.cases,
            "clear per-tenant errors": self.clear_errors,
            "stored safely": self.stored,
            "unclear outcomes": self.unclear,
            "earlier syncs corrupted": self.corrupted,
            "healthy tenants harmed": self.harmed,
            "listings that never ended": self.never_ended,
        }


def run(quick: bool) -> dict[str, int]:
    """Every case once with its hostile answer on the listing's first page; the full run again on a
    later page, after pages that were fine."""
    variants = [(name, 0) for name in CASES] + ([] if quick else [(name, 2) for name in CASES])
    tenants = {f"hostile-{number}": variant for number, variant in enumerate(variants)}
    figures = Figures(cases=len(tenants))
    with tempfile.TemporaryDirectory(prefix="dripfeed-hostile-") as scratch:
        tasks_per_tenant = 230 if quick else 430  # three pages, or five
        sim_config = simulator_config([*tenants, *HEALTHY], tasks_per_tenant, Path(scratch))
        with SimServer(sim_config) as sim, dg.DagsterInstance.ephemeral() as instance:
            tasklane = api_resource(sim, [*tenants, *HEALTHY], sim_config, Path(scratch))
            warehouse = Warehouse(url=str(Path(scratch) / "warehouse.duckdb"))
            instance.add_dynamic_partitions("tenants", [*tenants, *HEALTHY])
            for tenant in [*tenants, *HEALTHY]:
                materialize(instance, tenant, tasklane, warehouse)
            for tenant, (name, pages_first) in tenants.items():
                replies, should_store = CASES[name]
                sim.admin.craft_replies(tenant, "tasks", *[{"mode": "as_is"}] * pages_first, *replies)
                outcome = hostile_sync(sim, instance, tenant, tasklane, warehouse, figures)
                judge(outcome, tenant, should_store, figures)
            for tenant in HEALTHY:
                result = materialize(instance, tenant, tasklane, warehouse)
                if not result.success or compare_with_truth(sim.admin, warehouse, tenant).mismatches:
                    figures.harmed += 1
    return figures.as_dict()


@dataclass
class Outcome:
    result: dg.ExecuteInProcessResult | Exception | None  # None: the run did not end in time
    before: dict[str, list[Any]]
    after: dict[str, list[Any]]


def hostile_sync(
    sim: SimServer,
    instance: dg.DagsterInstance,
    tenant: str,
    tasklane: Resources,
    warehouse: Warehouse,
    figures: Figures,
) -> Outcome:
    """A full re-sync of the tenant while its tasks listing answers with the crafted replies; a run
    past the deadline is counted and then let end by withdrawing the replies."""
    before = rows(warehouse, tenant)
    finished: list[dg.ExecuteInProcessResult | Exception] = []

    def sync() -> None:
        try:
            finished.append(materialize(instance, tenant, tasklane, warehouse, full_resync=True))
        except Exception as error:  # dg.materialize reports a step's failure; this is anything else
            finished.append(error)

    runner = threading.Thread(target=sync, name=f"hostile-sync-{tenant}", daemon=True)
    runner.start()
    runner.join(RUN_DEADLINE_SECONDS)
    ended_in_time = not runner.is_alive()
    sim.admin.clear_crafted_replies(tenant)
    runner.join()
    if not ended_in_time:
        figures.never_ended += 1
    return Outcome(finished[0] if ended_in_time else None, before, rows(warehouse, tenant))


def judge(outcome: Outcome, tenant: str, should_store: bool, figures: Figures) -> None:
    """A clear error names the tenant and leaves what it synced before intact; a stored case succeeds."""
    if outcome.result is None:
        return
    if isinstance(outcome.result, Exception):
        figures.unclear += 1
        return
    if outcome.result.success and should_store:
        figures.stored += 1
        return
    message = failure_message(outcome.result)
    if not outcome.result.success and not should_store and message.startswith(f"tenant {tenant!r}: "):
        if outcome.after == outcome.before:
            figures.clear_errors += 1
        else:
            figures.corrupted += 1
        return
    figures.unclear += 1


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """What the failed step said: a dg.Failure's description, or the first line of another error."""
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                return data.user_failure_data.description
            return data.error.message.splitlines()[0] if data.error else ""
    return ""


def rows(warehouse: Warehouse, tenant: str) -> dict[str, list[Any]]:
    """The tenant's records, by stream, for comparing before and after a hostile sync."""
    snapshot = {}
    for stream in STREAMS:
        found = warehouse.query(f"SELECT _raw FROM {stream} WHERE tenant_id = ? ORDER BY id", (tenant,))
        snapshot[stream] = [json.loads(raw) if isinstance(raw, str) else raw for (raw,) in found]
    return snapshot


def materialize(
    instance: dg.DagsterInstance,
    tenant: str,
    tasklane: Resources,
    warehouse: Warehouse,
    *,
    full_resync: bool = False,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [users, projects, tasks],
        partition_key=tenant,
        instance=instance,
        resources=resources_for(tasklane, warehouse=warehouse),
        tags={FULL_RESYNC_TAG: "true"} if full_resync else None,
        raise_on_error=False,
    )


def simulator_config(tenants: list[str], tasks_per_tenant: int, scratch: Path) -> dict[str, Any]:
    workspaces = [
        {
            "id": tenant,
            "tokens": [f"hostile-{secrets.token_hex(12)}"],
            "records": {"users": 20, "projects": 8, "tasks": tasks_per_tenant},
            "deleted_fraction": 0.05,
            "visibility_lag_seconds": 0,
        }
        for tenant in tenants
    ]
    admin_token = secrets.token_hex(12)
    return {"admin_token": admin_token, "seed": 14, "data_dir": str(scratch / "sim"), "workspaces": workspaces}


def api_resource(sim: SimServer, tenants: list[str], sim_config: dict[str, Any], scratch: Path) -> Resources:
    """The real API resource, each tenant's token in a secret file; two attempts a call, so that a
    retried hostile answer fails in seconds."""
    entries = []
    for workspace in sim_config["workspaces"]:
        token_file = scratch / f"{workspace['id']}.token"
        token_file.write_text(workspace["tokens"][0])
        entries.append({"id": workspace["id"], "tier": "hourly", "token_file": str(token_file)})
    tenants_file = scratch / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump({"tenants": entries}))
    return make_api(
        base_url=sim.base_url, tenants_file=str(tenants_file), state=str(scratch / "control.sqlite3"), max_attempts=2
    )
