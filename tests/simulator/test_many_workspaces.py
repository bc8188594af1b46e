"""A simulator of more workspaces than it keeps connections open (three file descriptors each) serves
every one of them, reopening the least recently used on demand, and loses no write."""

from __future__ import annotations

import pytest

from tasklane_sim import store
from tests.support.simulator import workspace_config
from tests.support.tasklane_client import TasklaneClient


def test_workspaces_beyond_the_open_connections_serve_and_keep_their_writes(make_sim, monkeypatch) -> None:
    monkeypatch.setattr(store.OPEN_STORES, "limit", 3)
    ids = [f"ws{n:02d}" for n in range(12)]
    sim = make_sim(*(workspace_config(w, records={"users": 3, "projects": 2, "tasks": 7}) for w in ids))
    assert len(store.OPEN_STORES._open) <= 3
    sim.admin.mutate("ws00", creates=4, resource="tasks")  # long since closed: reopened to write
    for workspace in ids:
        client = TasklaneClient(sim.base_url, workspace, f"token-{workspace}")
        listed = [record["id"] for record in client.list_all("tasks", include_deleted="true")]
        truth = [record["id"] for record in sim.admin.truth(workspace, "tasks")]
        assert sorted(listed) == sorted(truth) and len(truth) == (11 if workspace == "ws00" else 7)
    assert len(store.OPEN_STORES._open) <= 3


@pytest.fixture(autouse=True)
def _restore_open_stores():
    yield
    store.OPEN_STORES._open.clear()


def test_the_minutes_purge_drops_due_tombstones_and_opens_no_workspace_without_one(tmp_path) -> None:
    workspace = store.WorkspaceStore(tmp_path / "workspace.sqlite3")
    workspace.bulk_load("tasks", [("a", 1000, 1, b"{}"), ("b", 2000, 0, b"{}")])
    workspace.build_indexes()
    assert workspace.purge_tombstones(500) == 0, "a's tombstone is not due yet"
    workspace.release()
    assert workspace.purge_tombstones(900) == 0
    assert workspace._db is None, "nothing due: its file stayed closed (at 20,000 workspaces, reopening is the cost)"
    workspace.put("tasks", ("c", 1500, 1, b"{}"))
    assert workspace.purge_tombstones(1600) == 2
    workspace.release()
    assert workspace.purge_tombstones(10**15) == 0 and workspace._db is None
    assert [row[0] for row in workspace.scan("tasks")] == ["b"]
    workspace.close()
