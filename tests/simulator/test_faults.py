"""Contract: transient faults (5xx, slow responses, dropped connections, truncated bodies)."""

from __future__ import annotations

import json

import pytest
import requests

from tests.support.simulator import workspace_config
from tests.support.tasklane_client import TasklaneClient


def faulty(make_sim, **faults: float) -> TasklaneClient:
    sim = make_sim(workspace_config("acme", faults=faults))
    return TasklaneClient(sim.base_url, "acme", "token-acme")


def test_injected_server_errors_are_5xx_with_an_error_body(make_sim) -> None:
    client = faulty(make_sim, error_rate=1.0)
    statuses = set()
    for _ in range(30):
        response = client.get("tasks")
        statuses.add(response.status_code)
        assert response.json()["error"]["code"] == "server_error"
        if response.status_code == 503:
            assert response.headers["Retry-After"] == "1"
    assert statuses <= {500, 502, 503} and len(statuses) >= 2


def test_a_dropped_connection_reaches_the_client_as_a_connection_error(make_sim) -> None:
    client = faulty(make_sim, drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        client.get("tasks")


def test_truncated_bodies_arrive_as_short_reads_or_undecodable_json(make_sim) -> None:
    client = faulty(make_sim, truncate_rate=1.0)
    kinds = set()
    for _ in range(20):
        try:
            response = client.get("tasks", params={"limit": 100})
            json.loads(response.content)
        except requests.exceptions.ChunkedEncodingError:
            kinds.add("short read")
        except json.JSONDecodeError:
            kinds.add("undecodable")
        else:
            raise AssertionError("a truncated body decoded")
    assert kinds == {"short read", "undecodable"}


def test_a_slow_response_trips_the_clients_read_timeout(make_sim) -> None:
    client = faulty(make_sim, slow_rate=1.0, slow_seconds=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.get("tasks", timeout=(2, 0.3))


def test_without_faults_nothing_is_injected(acme: TasklaneClient) -> None:
    for _ in range(20):
        assert acme.get("tasks").status_code == 200
