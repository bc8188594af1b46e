"""Contract: Resources; Listing, ordering, pagination; tombstones."""

from __future__ import annotations

import re
import time

import pytest

from tasklane_sim import SimServer
from tasklane_sim.records import BASE_FIELDS, COMMON_FIELDS
from tests.support.simulator import workspace_config
from tests.support.tasklane_client import TasklaneClient

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_default_page_is_25_and_maximum_is_100(acme: TasklaneClient) -> None:
    assert len(acme.get("tasks").json()["data"]) == 25
    assert len(acme.get("tasks", params={"limit": 100}).json()["data"]) == 100


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5", ""])
def test_limit_outside_1_to_100_is_400(acme: TasklaneClient, limit: str) -> None:
    response = acme.get("tasks", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize("resource", ["users", "projects", "tasks"])
def test_full_listing_with_tombstones_equals_ground_truth(sim: SimServer, acme: TasklaneClient, resource: str) -> None:
    listed = acme.list_all(resource, include_deleted="true")
    truth = sim.admin.truth("acme", resource)
    assert sorted(listed, key=lambda r: r["id"]) == truth
    positions = [(r["updated_at"], r["id"]) for r in listed]
    assert positions == sorted(positions), "records must be ordered by (updated_at, id)"


@pytest.mark.parametrize("resource", ["users", "projects", "tasks"])
def test_records_carry_the_contract_fields(acme: TasklaneClient, resource: str) -> None:
    prefix = {"users": "usr_", "projects": "prj_", "tasks": "tsk_"}[resource]
    for record in acme.list_all(resource):
        assert list(record) == list(COMMON_FIELDS) + list(BASE_FIELDS[resource])
        assert record["id"].startswith(prefix)
        assert RFC3339_MS.match(record["created_at"]) and RFC3339_MS.match(record["updated_at"])
        assert record["deleted_at"] is None
    if resource == "tasks":
        task = acme.list_all("tasks")[0]
        assert task["status"] in ("todo", "in_progress", "done") and 1 <= task["priority"] <= 4
        assert isinstance(task["tags"], list) and isinstance(task["custom_fields"], dict)


def test_tombstones_only_with_include_deleted_and_have_only_id_and_timestamps(
    sim: SimServer, acme: TasklaneClient
) -> None:
    live = acme.list_all("tasks")
    everything = acme.list_all("tasks", include_deleted="true")
    tombstones = [r for r in everything if r["deleted_at"]]
    assert tombstones, "the fixture workspace has deleted records"
    assert len(live) + len(tombstones) == len(everything)
    assert not any(r["deleted_at"] for r in live)
    for tombstone in tombstones:
        assert tombstone["updated_at"] == tombstone["deleted_at"]
        assert {k for k, v in tombstone.items() if v is not None} == {"id", "updated_at", "deleted_at"}


def test_updated_since_is_inclusive(acme: TasklaneClient) -> None:
    everything = acme.list_all("tasks")
    pivot = everything[len(everything) // 2]["updated_at"]
    since = acme.list_all("tasks", updated_since=pivot)
    assert since == [r for r in everything if r["updated_at"] >= pivot]
    assert since[0]["updated_at"] == pivot


@pytest.mark.parametrize("value", ["yesterday", "2026-11-21T10:00:00", "2026-13-40T00:00:00Z"])
def test_bad_updated_since_is_400(acme: TasklaneClient, value: str) -> None:
    assert acme.get("tasks", params={"updated_since": value}).status_code == 400


def test_records_updated_while_paging_reappear_later_and_none_is_skipped(sim: SimServer, acme: TasklaneClient) -> None:
    before = {r["id"] for r in sim.admin.truth("acme", "tasks") if not r["deleted_at"]}
    seen: list[str] = []
    params = {"limit": 100}
    first = True
    while True:
        body = acme.get("tasks", params=params).json()
        seen.extend(r["id"] for r in body["data"])
        if first:  # while the client pages, users edit records it has already read
            sim.admin.mutate("acme", updates=40, resource="tasks")
            first = False
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert before <= set(seen), "a record alive at the start was skipped"
    assert len(seen) > len(set(seen)), "records updated during paging come back at the end"


def test_cursor_with_other_parameters_is_400(acme: TasklaneClient) -> None:
    cursor = acme.get("tasks", params={"limit": 10}).json()["next_cursor"]
    for params in (
        {"limit": 20},
        {"limit": 10, "include_deleted": "true"},
        {"limit": 10, "updated_since": "2020-01-01T00:00:00Z"},
    ):
        response = acme.get("tasks", params={**params, "cursor": cursor})
        assert response.status_code == 400, params


@pytest.mark.parametrize("cursor", ["garbage", "eyJ4IjoxfQ.abc", "", "a.b.c"])
def test_forged_or_garbage_cursor_is_400(acme: TasklaneClient, cursor: str) -> None:
    assert acme.get("tasks", params={"limit": 10, "cursor": cursor}).status_code == 400


def test_another_workspaces_cursor_is_rejected(sim: SimServer, acme: TasklaneClient) -> None:
    globex = TasklaneClient(sim.base_url, "globex", "token-globex")
    cursor = globex.get("tasks", params={"limit": 10}).json()["next_cursor"]
    assert acme.get("tasks", params={"limit": 10, "cursor": cursor}).status_code == 400


def test_cursor_expires_after_its_ttl_with_410(make_sim) -> None:
    sim = make_sim(workspace_config("acme", cursor_ttl_seconds=1))
    client = TasklaneClient(sim.base_url, "acme", "token-acme")
    cursor = client.get("tasks", params={"limit": 10}).json()["next_cursor"]
    assert client.get("tasks", params={"limit": 10, "cursor": cursor}).status_code == 200
    time.sleep(1.2)
    response = client.get("tasks", params={"limit": 10, "cursor": cursor})
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "cursor_expired"


def test_admin_can_expire_every_cursor(sim: SimServer, acme: TasklaneClient) -> None:
    cursor = acme.get("tasks", params={"limit": 10}).json()["next_cursor"]
    sim.admin.expire_cursors("acme")
    assert acme.get("tasks", params={"limit": 10, "cursor": cursor}).status_code == 410


def test_strings_with_quotes_newlines_and_emoji_survive_the_wire(sim: SimServer, acme: TasklaneClient) -> None:
    listed = {r["id"]: r for r in acme.list_all("tasks")}
    tricky = [r for r in sim.admin.truth("acme", "tasks") if r["title"] and any(c in r["title"] for c in '"\n🚀\\')]
    assert {c for r in tricky for c in r["title"]} >= {'"', "\n", "🚀", "\\"}
    for record in tricky:
        assert listed[record["id"]] == record
