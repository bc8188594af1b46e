"""Contract: API versions and schema changes, applied to one workspace at a time."""

from __future__ import annotations

from tasklane_sim import SimServer
from tests.support.tasklane_client import TasklaneClient

HOSTILE = 'x"; DROP TABLE tasks; --' + "y" * 300


def test_an_added_field_appears_on_every_record_of_that_workspace_only(sim: SimServer, acme: TasklaneClient) -> None:
    sim.admin.schema_change("acme", kind="add_field", resource="tasks", field="sprint")
    for record in acme.list_all("tasks", include_deleted="true"):
        assert "sprint" in record
        assert record["sprint"] == (None if record["deleted_at"] else f"sprint:{record['id']}")
    globex = TasklaneClient(sim.base_url, "globex", "token-globex")
    assert all("sprint" not in r for r in globex.list_all("tasks"))


def test_a_hostile_field_name_is_served_verbatim(sim: SimServer, acme: TasklaneClient) -> None:
    sim.admin.schema_change("acme", kind="add_field", resource="users", field=HOSTILE, value="ok 🚀")
    users = acme.list_all("users")
    assert all(u[HOSTILE] == "ok 🚀" for u in users)
    sim.admin.mutate("acme", creates=3, resource="users")
    assert all(u[HOSTILE] == "ok 🚀" for u in acme.list_all("users"))


def test_a_dropped_field_disappears_and_the_api_version_moves(sim: SimServer, acme: TasklaneClient) -> None:
    version = acme.get("projects").headers["Tasklane-Version"]
    sim.admin.schema_change("acme", kind="drop_field", resource="projects", field="owner_id")
    response = acme.get("projects")
    assert all("owner_id" not in p for p in response.json()["data"])
    assert response.headers["Tasklane-Version"] != version


def test_a_type_change_turns_numbers_into_strings_for_old_and_new_records(sim: SimServer, acme: TasklaneClient) -> None:
    sim.admin.schema_change(
        "acme", kind="change_type", resource="tasks", field="estimate_hours", to="string", format="{}h"
    )
    sim.admin.mutate("acme", creates=20, updates=20, resource="tasks")
    estimates = [t["estimate_hours"] for t in acme.list_all("tasks") if t["estimate_hours"] is not None]
    assert estimates and all(isinstance(e, str) and e.endswith("h") for e in estimates)
    globex = TasklaneClient(sim.base_url, "globex", "token-globex")
    assert all(
        isinstance(t["estimate_hours"], float) for t in globex.list_all("tasks") if t["estimate_hours"] is not None
    )


def test_a_schema_change_changes_etags(sim: SimServer, acme: TasklaneClient) -> None:
    etag = acme.get("users").headers["ETag"]
    sim.admin.schema_change("acme", kind="add_field", resource="users", field="timezone", value="UTC")
    assert acme.get("users", headers={"If-None-Match": etag}).status_code == 200
