"""Crafted replies: hostile listing answers queued through the admin API, one per listing request."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tasklane_sim import SimServer
from tasklane_sim.crafted_replies import HOSTILE_FIELD_NAMES, UNICODE_ID_SUFFIXES
from tests.support.tasklane_client import TasklaneClient

FIRST_PAGE = {"limit": 100, "include_deleted": "true"}


def first_two_pages(acme: TasklaneClient) -> tuple[bytes, bytes]:
    """The raw bodies of the tasks listing's first two pages."""
    first = acme.get("tasks", params=FIRST_PAGE)
    cursor = first.json()["next_cursor"]
    second = acme.get("tasks", params={**FIRST_PAGE, "cursor": cursor})
    return first.content, second.content


def test_a_raw_reply_answers_one_listing_request_and_is_counted_like_a_real_answer(
    sim: SimServer, acme: TasklaneClient
) -> None:
    assert sim.admin.craft_replies("acme", "tasks", {"status": 200, "headers": {"X-Crafted": "1"}, "body": "nope"}) == 1
    sim.admin.reset_counters("acme")

    crafted = acme.get("tasks", params=FIRST_PAGE)
    real = acme.get("tasks", params=FIRST_PAGE)

    assert (crafted.status_code, crafted.text, crafted.headers["X-Crafted"]) == (200, "nope", "1")
    assert "X-RateLimit-Remaining" in crafted.headers and "Tasklane-Version" in crafted.headers
    assert real.json()["data"], "the queue is empty again: the real page"
    assert sim.admin.counters("acme")["endpoints"]["tasks.list"]["counted"] == 2


def test_replies_wait_for_their_own_resource_and_times_repeats_one(sim: SimServer, acme: TasklaneClient) -> None:
    sim.admin.craft_replies("acme", "tasks", {"status": 503, "body": "{}", "times": 3})

    assert acme.get("users", params=FIRST_PAGE).status_code == 200
    assert [acme.get("tasks").status_code for _ in range(2)] == [503, 503]
    assert sim.admin.clear_crafted_replies("acme") == {"users": 0, "projects": 0, "tasks": 1}
    assert acme.get("tasks").status_code == 200


def test_a_raw_body_may_be_any_bytes(sim: SimServer, acme: TasklaneClient) -> None:
    utf16 = json.dumps({"data": [], "next_cursor": None}).encode("utf-16")
    sim.admin.craft_replies("acme", "tasks", {"body_base64": base64.b64encode(utf16).decode()})
    assert acme.get("tasks").content == utf16


def test_a_crafted_reply_reshapes_a_page_a_conditional_request_would_not_get(
    sim: SimServer, acme: TasklaneClient
) -> None:
    etag = acme.get("users", params=FIRST_PAGE).headers["ETag"]
    sim.admin.craft_replies("acme", "users", {"mode": "wrong_types"})
    reshaped = acme.get("users", params=FIRST_PAGE, headers={"If-None-Match": etag})
    assert reshaped.status_code == 200 and isinstance(reshaped.json()["data"][0]["name"], int)


def nesting_depth(text: str) -> int:
    return text.count('{"a":')


def crafted_first_page(sim: SimServer, acme: TasklaneClient, reply: dict[str, Any]) -> tuple[list[dict], Any]:
    """The tasks listing's real first page, then the same request answered by `reply`."""
    real = acme.get("tasks", params=FIRST_PAGE).json()["data"]
    sim.admin.craft_replies("acme", "tasks", reply)
    crafted = acme.get("tasks", params=FIRST_PAGE)
    assert crafted.status_code == 200
    return real, crafted


def test_wrong_types_changes_the_json_type_of_every_known_field_but_identity_and_place(
    sim: SimServer, acme: TasklaneClient
) -> None:
    real, crafted = crafted_first_page(sim, acme, {"mode": "wrong_types"})
    for before, after in zip(real, crafted.json()["data"], strict=True):
        for field, value in before.items():
            if field in ("id", "updated_at", "deleted_at") or value is None:
                assert after[field] == value
            else:
                assert type(after[field]) is not type(value), field


def test_hostile_field_names_are_added_to_every_record(sim: SimServer, acme: TasklaneClient) -> None:
    _, crafted = crafted_first_page(sim, acme, {"mode": "hostile_field_names"})
    assert all(set(HOSTILE_FIELD_NAMES) <= set(record) for record in crafted.json()["data"])


def test_unicode_ids_differ_only_in_unicode(sim: SimServer, acme: TasklaneClient) -> None:
    real, crafted = crafted_first_page(sim, acme, {"mode": "unicode_ids"})
    records = crafted.json()["data"]
    last = real[-1]["id"]
    assert records[: len(real)] == real
    assert [r["id"] for r in records[len(real) :]] == [last + suffix for suffix in UNICODE_ID_SUFFIXES]
    assert len({r["id"] for r in records}) == len(records), "NFC and NFD spellings are two ids"


def test_huge_page_pads_the_page_to_the_size_asked(sim: SimServer, acme: TasklaneClient) -> None:
    real, crafted = crafted_first_page(sim, acme, {"mode": "huge_page", "size_bytes": 3_000_000})
    assert 3_000_000 <= len(crafted.content) < 3_000_000 + 100_000
    assert [r["id"] for r in crafted.json()["data"]] == [r["id"] for r in real]


def test_nested_custom_fields_nests_each_records_custom_fields(sim: SimServer, acme: TasklaneClient) -> None:
    real, crafted = crafted_first_page(sim, acme, {"mode": "nested_custom_fields", "depth": 50})
    assert nesting_depth(crafted.text) == 50 * len(real)
    assert json.loads(crafted.text)["data"][0]["custom_fields"]["a"]["a"]["a"]


def test_nested_custom_fields_can_be_nested_deeper_than_a_json_parser_recurses(
    sim: SimServer, acme: TasklaneClient
) -> None:
    sim.admin.craft_replies("acme", "tasks", {"mode": "nested_custom_fields", "depth": 5000})
    text = acme.get("tasks", params={"limit": 1}).text
    assert nesting_depth(text) == 5000
    with pytest.raises(RecursionError):
        json.loads(text)


def test_malformed_json_is_not_json(sim: SimServer, acme: TasklaneClient) -> None:
    sim.admin.craft_replies("acme", "tasks", {"mode": "malformed_json"})
    reply = acme.get("tasks")
    assert reply.status_code == 200
    with pytest.raises(ValueError):
        reply.json()


def test_repeat_previous_page_serves_the_last_page_again_byte_for_byte(sim: SimServer, acme: TasklaneClient) -> None:
    _, second = first_two_pages(acme)
    sim.admin.craft_replies("acme", "tasks", {"mode": "repeat_previous_page"})
    cursor = json.loads(second)["next_cursor"]
    assert acme.get("tasks", params={**FIRST_PAGE, "cursor": cursor}).content == second


def test_cursor_loop_points_the_next_cursor_back_at_the_first_pages(sim: SimServer, acme: TasklaneClient) -> None:
    sim.admin.craft_replies("acme", "tasks", {"mode": "as_is"}, {"mode": "cursor_loop"})
    first, second = first_two_pages(acme)
    first_cursor = json.loads(first)["next_cursor"]
    assert json.loads(second)["next_cursor"] == first_cursor
    assert json.loads(second)["data"] != json.loads(first)["data"], "the records are the second page's"


@pytest.mark.parametrize(
    "payload",
    [
        {"resource": "comments", "replies": [{"mode": "as_is"}]},
        {"resource": "tasks", "replies": []},
        {"resource": "tasks", "replies": [{"mode": "explode"}]},
        {"resource": "tasks", "replies": [{"body": "x", "body_base64": "eA=="}]},
        {"resource": "tasks", "replies": [{"status": 99}]},
    ],
)
def test_a_bad_crafted_reply_is_refused(sim: SimServer, payload: dict[str, Any]) -> None:
    answer = sim.admin.session.post(f"{sim.base_url}/_sim/workspaces/acme/crafted-replies", json=payload, timeout=10)
    assert answer.status_code == 400, answer.text
