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
