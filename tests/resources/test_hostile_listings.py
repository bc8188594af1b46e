"""Hostile listings, one tenant's client against crafted simulator answers: each ends, with its pages
or with a TasklaneFailure that names the tenant, the stream and what went wrong; none pages forever."""

from __future__ import annotations

import json
from typing import Any

import pytest

from resources.tasklane.errors import TasklaneFailure
from resources.tasklane.transport import MAX_ANSWER_BYTES
from tests.support.simulator import workspace_config

EXPIRED = {"status": 410, "body": json.dumps({"error": {"code": "cursor_expired", "message": "expired"}})}
BAD_STAMP = {"id": "tsk_1", "updated_at": "2026-02-30T10:00:00.000Z"}
FAR_FUTURE = {"id": "tsk_1", "updated_at": "9999-12-31T23:59:59.999Z"}
FOREVER = 10_000  # more answers than any listing that ends would ask for


@pytest.mark.parametrize(
    ("replies", "failure", "most_requests"),
    [
        ([{"mode": "as_is"}, {"mode": "repeat_previous_page", "times": FOREVER}], "repeated the previous page", 2),
        ([{"mode": "as_is"}, {"mode": "cursor_loop", "times": FOREVER}], "pointed back at a page already read", 2),
        ([{"body": json.dumps({"data": [], "next_cursor": "same"}), "times": FOREVER}], "repeated the previous", 2),
        (  # every restart answers the same records again: the give-up count must not start over
            [{"mode": "as_is"}, EXPIRED] + [{"mode": "repeat_previous_page"}, EXPIRED] * 50,
            "cursors kept expiring",
            12,
        ),
        ([{"mode": "huge_page", "size_bytes": MAX_ANSWER_BYTES + 1}], "over dripfeed's limit", 1),
        ([{"mode": "unbounded_page", "size_bytes": MAX_ANSWER_BYTES + 1}], "over dripfeed's limit", 1),
        ([{"mode": "nested_custom_fields", "depth": 5000}], "nested deeper than dripfeed can parse", 1),
        ([{"body": json.dumps({"data": [BAD_STAMP], "next_cursor": None})}], "not in the contract's format", 1),
        ([{"body": json.dumps({"data": [FAR_FUTURE], "next_cursor": None})}], "ahead of dripfeed's clock", 1),
        ([{"mode": "malformed_json", "times": 2}], "undecodable body", 2),
    ],
    ids=[
        "repeated page",
        "cursor loop",
        "empty pages",
        "restart loop",
        "huge page",
        "huge page without a length",
        "deep nesting",
        "bad updated_at",
        "updated_at far ahead",
        "malformed json",
    ],
)
def test_a_hostile_listing_ends_with_a_clear_failure_for_its_tenant(
    make_sim, make_api, replies: list[dict[str, Any]], failure: str, most_requests: int
) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 430}))
    sim.admin.craft_replies("acme", "tasks", *replies)
    client = make_api(sim, max_attempts=2).client("acme")

    with pytest.raises(TasklaneFailure) as raised:
        for _ in client.list_pages("tasks", None):
            pass

    assert failure in raised.value.description
    assert raised.value.tenant == "acme" and raised.value.description.startswith("tenant 'acme': ")
    assert "tasks" in raised.value.description
    assert sim.admin.counters("acme")["endpoints"]["tasks.list"]["requests"] <= most_requests


def test_an_answer_past_the_limit_is_refused_before_it_is_read_whole(make_sim, make_api) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 430}))
    sim.admin.craft_replies("acme", "tasks", {"mode": "unbounded_page", "size_bytes": 2_000_000_000})
    client = make_api(sim, max_attempts=2).client("acme")

    with pytest.raises(TasklaneFailure, match="over dripfeed's limit"):
        for _ in client.list_pages("tasks", None):
            pass

    sent = sim.admin.crafted_replies("acme")["streamed_bytes"]
    assert sent < 4 * MAX_ANSWER_BYTES, f"{sent:,} bytes of a 2 GB answer sent: the client read on past the limit"


@pytest.mark.parametrize(
    ("title", "failure"),
    [
        ('"a\\u0000b"', "a NUL character"),
        ('"\\ud800"', "a lone surrogate"),
        ('"\\udc00\\ud800"', "a lone surrogate"),
        ("NaN", "NaN or Infinity"),
        ("-Infinity", "NaN or Infinity"),
        ('"\\ud83d\\ude00"', ""),  # an escaped surrogate pair: one emoji
        ('"\\\\u0000"', ""),  # an escaped backslash, then the text u0000
        ('"NaN and Infinity"', ""),
    ],
)
def test_what_the_parser_takes_but_no_warehouse_stores_is_refused_and_nothing_else(
    make_sim, make_api, title: str, failure: str
) -> None:
    sim = make_sim(workspace_config("acme"))
    record = f'{{"id": "tsk_1", "updated_at": "2026-11-21T10:00:00.123Z", "title": {title}}}'
    sim.admin.craft_replies("acme", "tasks", {"body": f'{{"data": [{record}], "next_cursor": null}}'})
    pages = make_api(sim).client("acme").list_pages("tasks", None)
    if not failure:
        assert [len(page.records) for page in pages] == [1]
        return
    with pytest.raises(TasklaneFailure) as raised:
        list(pages)
    assert failure in raised.value.description and "warehouse cannot store" in raised.value.description


def test_a_page_with_a_byte_order_mark_is_listed_without_it(make_sim, make_api) -> None:
    sim = make_sim(workspace_config("acme"))
    sim.admin.craft_replies("acme", "tasks", {"body": "\ufeff" + json.dumps({"data": [], "next_cursor": None})})
    pages = list(make_api(sim).client("acme").list_pages("tasks", None))
    assert [page.body for page in pages] == [json.dumps({"data": [], "next_cursor": None})]


def test_a_ten_megabyte_page_is_listed(make_sim, make_api) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 150}))
    sim.admin.craft_replies("acme", "tasks", {"mode": "huge_page", "size_bytes": 10_000_000})
    pages = list(make_api(sim).client("acme").list_pages("tasks", None))
    assert len(pages[0].body) > 10_000_000 and sum(len(p.records) for p in pages) == 150
