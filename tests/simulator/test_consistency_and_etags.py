"""Contract: Consistency (the 60-second visibility lag) and Conditional requests."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from tasklane_sim import SimServer
from tasklane_sim.timestamps import format_ms, parse_ms
from tests.support.simulator import workspace_config
from tests.support.tasklane_client import TasklaneClient

LAG = 1.5


def test_a_write_becomes_visible_late_with_its_original_updated_at(make_sim) -> None:
    sim = make_sim(workspace_config("acme", visibility_lag_seconds=LAG))
    client = TasklaneClient(sim.base_url, "acme", "token-acme")
    started = format_ms(int(time.time() * 1000) - 5)
    sim.admin.mutate("acme", creates=30, resource="tasks")
    visible_now = len(client.list_all("tasks", updated_since=started))
    assert visible_now < 30, "some writes must still be invisible right after they start"
    time.sleep(LAG + 0.3)
    late = client.list_all("tasks", updated_since=started)
    assert len(late) == 30
    assert all(parse_ms(r["updated_at"]) < parse_ms(started) + 1000 for r in late), (
        "updated_at is when the write started"
    )


def test_a_watermark_without_overlap_misses_late_writes_and_the_overlap_catches_them(make_sim) -> None:
    sim = make_sim(workspace_config("acme", visibility_lag_seconds=LAG))
    client = TasklaneClient(sim.base_url, "acme", "token-acme")
    started = format_ms(int(time.time() * 1000) - 5)
    sim.admin.mutate("acme", creates=20, resource="tasks")
    time.sleep(0.1)
    sim.admin.mutate("acme", creates=20, resource="tasks")  # later writes, some visible before earlier ones
    time.sleep(0.7)
    seen = client.list_all("tasks", updated_since=started)
    watermark = max(r["updated_at"] for r in seen)
    time.sleep(LAG + 0.3)
    truth_new = {r["id"] for r in sim.admin.truth("acme", "tasks") if r["created_at"] and r["created_at"] >= started}
    naive = {r["id"] for r in seen} | {r["id"] for r in client.list_all("tasks", updated_since=watermark)}
    overlap = format_ms(parse_ms(watermark) - 60_000)
    careful = {r["id"] for r in seen} | {r["id"] for r in client.list_all("tasks", updated_since=overlap)}
    assert naive < truth_new, "without the overlap some late writes are missed"
    assert careful == truth_new


def test_settle_makes_every_pending_write_visible(make_sim) -> None:
    sim = make_sim(workspace_config("acme", visibility_lag_seconds=60))
    sim.admin.mutate("acme", updates=20, creates=5)
    assert sim.admin.counters("acme")["pending_writes"] > 0
    sim.admin.settle("acme")
    assert sim.admin.counters("acme")["pending_writes"] == 0


def test_unchanged_listing_answers_304_without_body_headers_or_cost(sim: SimServer, acme: TasklaneClient) -> None:
    first = acme.get("tasks", params={"limit": 100})
    etag = first.headers["ETag"]
    remaining = int(first.headers["X-RateLimit-Remaining"])
    sim.admin.reset_counters("acme")
    again = acme.get("tasks", params={"limit": 100}, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert "X-RateLimit-Remaining" not in again.headers
    assert again.headers["ETag"] == etag
    after = acme.get("users")
    assert int(after.headers["X-RateLimit-Remaining"]) == remaining - 1, "the 304 cost nothing"
    totals = sim.admin.counters("acme")["totals"]
    assert totals["not_modified"] == 1 and totals["counted"] == 1


def test_a_change_in_the_result_changes_the_etag(sim: SimServer, acme: TasklaneClient) -> None:
    since = acme.list_all("tasks")[-1]["updated_at"]
    etag = acme.get("tasks", params={"updated_since": since}).headers["ETag"]
    sim.admin.mutate("acme", updates=3, resource="tasks")
    changed = acme.get("tasks", params={"updated_since": since}, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_etag_differs_between_pages_and_queries(acme: TasklaneClient) -> None:
    first = acme.get("tasks", params={"limit": 10})
    second = acme.get("tasks", params={"limit": 10, "cursor": first.json()["next_cursor"]})
    other = acme.get("tasks", params={"limit": 11})
    assert len({first.headers["ETag"], second.headers["ETag"], other.headers["ETag"]}) == 3


def test_the_ground_truth_can_be_read_by_several_callers_at_once(make_sim) -> None:
    """Found by make chaos: overlapping truth calls broke the stream (a SQLite connection used by
    whichever worker thread iterated it), and the caller saw a body cut short."""
    sim = make_sim(workspace_config("acme", records={"tasks": 2400}))
    expected = sim.admin.truth("acme", "tasks")
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: sim.admin.truth("acme", "tasks"), range(8)))
    assert all(answer == expected for answer in answers)
