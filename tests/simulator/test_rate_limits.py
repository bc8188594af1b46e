"""Contract: Rate limits (fixed window, headers, Retry-After formats, lockout, concurrency cap)."""

from __future__ import annotations

import math
import threading
import time
from email.utils import parsedate_to_datetime

import pytest
import requests

from tasklane_sim import SimServer
from tests.support.simulator import workspace_config
from tests.support.tasklane_client import TasklaneClient


def wait_for_fresh_window(window: int, needed: float) -> None:
    """Start a test at the beginning of a window so it cannot straddle a reset."""
    left = window - (time.time() % window)
    if left < needed:
        time.sleep(left + 0.05)


@pytest.mark.parametrize("retry_after_format", ["seconds", "http-date"])
def test_the_61st_call_in_a_window_of_60_is_429_with_a_correct_retry_after(make_sim, retry_after_format: str) -> None:
    window = 6
    sim = make_sim(
        workspace_config("acme", rate_limit=60, window_seconds=window, retry_after_format=retry_after_format)
    )
    client = TasklaneClient(sim.base_url, "acme", "token-acme")
    wait_for_fresh_window(window, 3)
    for n in range(60):
        response = client.get("users", params={"limit": 1})
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Remaining"] == str(59 - n)
    rejected = client.get("users", params={"limit": 1})
    now = time.time()
    reset = int(rejected.headers["X-RateLimit-Reset"])
    assert rejected.status_code == 429
    assert rejected.json()["error"]["code"] == "rate_limited"
    assert rejected.headers["X-RateLimit-Limit"] == "60"
    assert rejected.headers["X-RateLimit-Remaining"] == "0"
    assert reset == (int(now) // window + 1) * window
    retry_after = rejected.headers["Retry-After"]
    if retry_after_format == "seconds":
        assert int(retry_after) == math.ceil(reset - now)
    else:
        assert abs(parsedate_to_datetime(retry_after).timestamp() - reset) <= 1
    assert sim.admin.counters("acme")["totals"]["counted"] == 60, "429s are not counted"


def test_the_window_resets_at_the_clock_boundary(make_sim) -> None:
    sim = make_sim(workspace_config("acme", rate_limit=3, window_seconds=2))
    client = TasklaneClient(sim.base_url, "acme", "token-acme")
    wait_for_fresh_window(2, 1.5)
    statuses = [client.get("users").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    time.sleep(2 - time.time() % 2 + 0.05)
    assert client.get("users").status_code == 200


def test_every_answered_status_counts_and_carries_rate_limit_headers(sim: SimServer, acme: TasklaneClient) -> None:
    responses = [
        acme.get("users"),
        acme.get("users", params={"limit": 500}),
        TasklaneClient(sim.base_url, "acme", "wrong").get("users"),
        acme.get("exports/exp_missing"),
    ]
    assert [r.status_code for r in responses] == [200, 400, 401, 404]
    for response in responses:
        assert all(h in response.headers for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))
    assert sim.admin.counters("acme")["totals"]["counted"] == 4


def test_paths_and_methods_the_api_lacks_count_and_carry_rate_limit_headers(
    sim: SimServer, acme: TasklaneClient
) -> None:
    responses = [acme.get("widgets"), acme.post("tasks", json={}), acme.get("exports/exp_1/result/extra")]
    assert [r.status_code for r in responses] == [404, 405, 404]
    for response in responses:
        assert all(h in response.headers for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))
        assert response.json()["error"]["code"] in ("not_found", "method_not_allowed")
    assert sim.admin.counters("acme")["totals"]["counted"] == 3


def test_more_than_20_429s_in_a_window_lock_the_workspace_out_for_5_minutes(make_sim) -> None:
    sim = make_sim(workspace_config("acme", rate_limit=1, window_seconds=6))
    client = TasklaneClient(sim.base_url, "acme", "token-acme")
    wait_for_fresh_window(6, 3)
    assert client.get("users").status_code == 200
    rejected = [client.get("users") for _ in range(21)]
    assert all(r.status_code == 429 for r in rejected)
    assert all(r.headers["Retry-After"] != "300" for r in rejected[:20])
    assert rejected[20].headers["Retry-After"] == "300"
    sim.admin.set_knobs("acme", rate_limit=1000)  # even with budget, the lockout holds
    locked = client.get("users")
    assert locked.status_code == 429 and locked.headers["Retry-After"] == "300"
    assert sim.admin.counters("acme")["lockouts"] == 1


def test_more_than_8_concurrent_requests_get_429_with_retry_after_1(make_sim) -> None:
    sim = make_sim(workspace_config("acme", faults={"slow_rate": 1.0, "slow_seconds": 1.0}))
    barrier = threading.Barrier(10)
    results: list[requests.Response] = []

    def call() -> None:
        client = TasklaneClient(sim.base_url, "acme", "token-acme")
        barrier.wait()
        results.append(client.get("users"))

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 8 + [429] * 2
    assert all(r.headers["Retry-After"] == "1" for r in results if r.status_code == 429)
    assert sim.admin.counters("acme")["max_in_flight"] >= 9


def test_calls_by_the_customers_other_clients_shrink_the_budget(sim: SimServer, acme: TasklaneClient) -> None:
    before = int(acme.get("users").headers["X-RateLimit-Remaining"])
    sim.admin.spend("acme", 2000)
    after = int(acme.get("users").headers["X-RateLimit-Remaining"])
    assert after == before - 2001


def test_counted_calls_are_reported_per_window(make_sim) -> None:
    sim = make_sim(workspace_config("acme", rate_limit=100, window_seconds=1))
    client = TasklaneClient(sim.base_url, "acme", "token-acme")
    for _ in range(5):
        client.get("users")
    windows = sim.admin.counters("acme")["counted_by_window"]
    assert sum(windows.values()) == 5
