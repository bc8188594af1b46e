"""The simulator's data: reproducible from a seed, shaped as configured, mutating while it runs."""

from __future__ import annotations

import time

import yaml

from tasklane_sim import SimServer
from tests.support.simulator import ADMIN_TOKEN, workspace_config
from tests.support.tasklane_client import TasklaneClient

AS_OF = "2026-11-01T00:00:00Z"


def truth_of(config: dict) -> dict[str, list]:
    with SimServer(config) as sim:
        return {r: sim.admin.truth("acme", r) for r in ("users", "projects", "tasks")}


def test_the_same_seed_gives_the_same_records_and_another_seed_does_not() -> None:
    config = {"admin_token": ADMIN_TOKEN, "seed": 11, "as_of": AS_OF, "workspaces": [workspace_config("acme")]}
    first, second = truth_of(config), truth_of(config)
    assert first == second
    assert truth_of({**config, "seed": 12}) != first


def test_counts_history_span_and_tombstone_retention_follow_the_config(make_sim) -> None:
    sim = make_sim(
        workspace_config(
            "acme", records={"users": 7, "projects": 3, "tasks": 900}, history_days=10, deleted_fraction=0.1
        ),
        as_of=AS_OF,
    )
    tasks = sim.admin.truth("acme", "tasks")
    assert len(tasks) == 900 and len(sim.admin.truth("acme", "users")) == 7
    live = [t for t in tasks if not t["deleted_at"]]
    assert all("2026-10-22" <= t["created_at"] <= t["updated_at"] <= "2026-11-01" for t in live)
    tombstones = [t for t in tasks if t["deleted_at"]]
    assert 50 < len(tombstones) < 150
    assert all(t["deleted_at"] >= "2026-10-02" for t in tombstones), "tombstones are kept 30 days"
    project_ids = {p["id"] for p in sim.admin.truth("acme", "projects")}
    assert {t["project_id"] for t in live} <= project_ids


def test_background_mutations_run_at_the_configured_rate(make_sim) -> None:
    sim = make_sim(workspace_config("acme", mutations={"creates_per_second": 20, "updates_per_second": 20}))
    client = TasklaneClient(sim.base_url, "acme", "token-acme")
    before = (
        len(sim.admin.truth("acme", "tasks"))
        + len(sim.admin.truth("acme", "users"))
        + len(sim.admin.truth("acme", "projects"))
    )
    time.sleep(1.0)
    sim.admin.set_knobs("acme", mutations={"creates_per_second": 0, "updates_per_second": 0})
    after = (
        len(sim.admin.truth("acme", "tasks"))
        + len(sim.admin.truth("acme", "users"))
        + len(sim.admin.truth("acme", "projects"))
    )
    assert 10 <= after - before <= 30
    assert client.get("tasks").status_code == 200


def test_a_workspace_can_be_added_while_running(sim: SimServer) -> None:
    sim.admin.add_workspace(workspace_config("hooli", records={"tasks": 50}))
    client = TasklaneClient(sim.base_url, "hooli", "token-hooli")
    assert len(client.list_all("tasks", include_deleted="true")) == 50


def test_the_demo_config_parses_and_has_the_promised_tenants() -> None:
    from tasklane_sim import parse_config

    with open("demo/sim.yaml") as handle:
        raw = yaml.safe_load(handle)
    config = parse_config(raw)
    tasks = {ws.id: ws.records.tasks for ws in config.workspaces}
    assert max(tasks.values()) >= 200_000
    assert any(ws.faults.error_rate > 0 for ws in config.workspaces)
    with open("demo/tenants.yaml") as handle:
        tenants = yaml.safe_load(handle)["tenants"]
    tiers = [t["tier"] for t in tenants]
    assert tiers.count("hourly") >= 2 and tiers.count("daily") >= 2
    assert {t["id"] for t in tenants} <= set(tasks)
