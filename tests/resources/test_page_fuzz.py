"""The page parser, fuzzed: any JSON value, and any body the vendor could send, gives records and a
cursor or a TasklaneFailure naming the tenant; never another exception, never a listing that hangs."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resources.tasklane.errors import TasklaneFailure
from resources.tasklane.listing import _page_body, _page_text
from tasklane_sim import SimServer
from tests.support.simulator import ADMIN_TOKEN, workspace_config

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
TIMESTAMPS = st.sampled_from(["2026-11-21T10:00:00.123Z", "2026-02-30T10:00:00.123Z", "2026-11-21", ""]) | st.text()
RECORDS = st.fixed_dictionaries(
    {"id": st.text() | JSON_VALUES, "updated_at": TIMESTAMPS | JSON_VALUES},
    optional={"deleted_at": JSON_VALUES, "custom_fields": JSON_VALUES},
)
PAGES = st.fixed_dictionaries(
    {"data": st.lists(RECORDS, max_size=4) | JSON_VALUES, "next_cursor": st.none() | st.text() | JSON_VALUES}
)


@settings(max_examples=500, deadline=None)
@given(body=JSON_VALUES | PAGES)
@example(body={"data": []})  # no next_cursor at all: a KeyError until it was found here
def test_any_parsed_page_gives_records_and_a_cursor_or_a_tasklane_failure(body: Any) -> None:
    try:
        records, next_cursor = _page_body("acme", "tasks", body)
    except TasklaneFailure as failure:
        assert failure.tenant == "acme" and "tasks listing" in failure.description
        return
    assert all(isinstance(r["id"], str) and isinstance(r["updated_at"], str) for r in records)
    assert next_cursor is None or isinstance(next_cursor, str)


@settings(max_examples=500, deadline=None)
@given(content=st.binary() | st.text().map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_bytes_give_the_text_or_a_tasklane_failure(content: bytes) -> None:
    try:
        text = _page_text("acme", "tasks", content)
    except TasklaneFailure as failure:
        assert failure.tenant == "acme" and "not UTF-8" in failure.description
        return
    assert text.encode() == content.removeprefix(b"\xef\xbb\xbf")


def raw_bodies() -> st.SearchStrategy[bytes]:
    """What could arrive as a page: any bytes, any text, any JSON value, page-like JSON."""
    as_json = (JSON_VALUES | PAGES).map(lambda value: json.dumps(value).encode())
    return st.binary(max_size=200) | st.text(max_size=200).map(str.encode) | as_json


@pytest.fixture(scope="module")
def fuzz_sim() -> Iterator[SimServer]:
    """One simulator for every example: starting one per example would cost more than the example."""
    with SimServer({"admin_token": ADMIN_TOKEN, "seed": 7, "workspaces": [workspace_config("acme")]}) as sim:
        yield sim


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=raw_bodies())
@example(body=json.dumps({"data": [], "next_cursor": None}).encode("utf-16"))
@example(body=b'{"data": [], "next_cursor": null, "x": "\xff"}')
@example(body=b'{"data": [], "next_cursor": NaN}')
@example(body=b"[" * 5000 + b"]" * 5000)
@example(body=b'{"data": [{"id": "t", "updated_at": "2026-11-21T10:00:00.123Z", "n": ' + b"1" * 5000 + b"}]}")
def test_any_body_through_list_pages_gives_pages_or_a_tasklane_failure(
    fuzz_sim: SimServer, make_api, body: bytes
) -> None:
    fuzz_sim.admin.craft_replies("acme", "tasks", {"body_base64": base64.b64encode(body).decode()})
    client = make_api(fuzz_sim, max_attempts=1).client("acme")
    try:
        for _ in client.list_pages("tasks", None):
            pass
    except TasklaneFailure as failure:
        assert failure.tenant == "acme"
    finally:
        fuzz_sim.admin.clear_crafted_replies("acme")
