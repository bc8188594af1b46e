"""Hostile listing answers a test queues for a workspace: what a broken or malicious vendor could send.

Each queued reply answers one listing request of its resource, after the gate (so it is counted
like any answer of its status) and in queue order; an empty queue means the real page. A reply
is either raw (status, headers, body) or a named mode, most of which reshape the real page.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response, StreamingResponse

from .config import RESOURCES

Mode = Literal[
    "raw",  # status, headers and body exactly as given
    "as_is",  # the real page, untouched: lets the next replies land on later pages
    "malformed_json",  # a body that is not JSON
    "wrong_types",  # the real page, every known field but id, updated_at and deleted_at of another JSON type
    "huge_page",  # the real page, its records padded to about size_bytes
    "unbounded_page",  # a page's opening, then size_bytes of padding sent chunked, with no Content-Length
    "nested_custom_fields",  # the real page, each record's custom_fields nested depth objects deep
    "hostile_field_names",  # the real page, each record with the fields of HOSTILE_FIELD_NAMES
    "unicode_ids",  # the real page, then copies of its last record whose ids differ only in unicode
    "repeat_previous_page",  # the page this workspace served last for the resource, byte for byte
    "cursor_loop",  # the real page, its next_cursor the one the latest first page gave
]

# Field names made to break SQL, file paths, identifiers' length limits and case-insensitive stores.
HOSTILE_FIELD_NAMES = (
    '"; DROP TABLE tasks; --',
    "'); DROP TABLE users; --",
    "../../etc/passwd",
    "..\\..\\windows\\system32",
    "x" * 300,
    "",
    "Mixed_Case",
    "mixed_case",
    "MIXED_CASE",
    "tenant_id",
    "_raw",
    "?",
    "$1",
    "%s",
    "a.b",
    "a/b~c",
    "名前 🙂",
)
# Appended to copies of a page's last record: ids equal but for normalization (NFC, NFD), case,
# invisible characters and characters outside the basic plane.
UNICODE_ID_SUFFIXES = ("-\u00e9", "-e\u0301", "-\u00c9", "-日本語", "-🙂", "-\u200b", "-\U0001d400")
MALFORMED_JSON = '{"data": [{"id": "tsk_x", "updated_at": 2026-11-30T00:00:00.000Z}], "next_cursor": '
NESTED_PLACEHOLDER = "\x00nested\x00"


class CraftedReply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Mode = "raw"
    status: int = Field(200, ge=200, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str = ""
    body_base64: str | None = None  # raw: a body that need not be UTF-8
    depth: int = Field(2000, ge=1, le=1_000_000)
    size_bytes: int = Field(10_000_000, ge=0, le=2_000_000_000)
    times: int = Field(1, ge=1, le=100_000)  # answer this many requests in a row

    @model_validator(mode="after")
    def _one_body(self) -> CraftedReply:
        if self.body and self.body_base64 is not None:
            raise ValueError("give `body` or `body_base64`, not both")
        return self

    def raw_body(self) -> bytes:
        return base64.b64decode(self.body_base64) if self.body_base64 is not None else self.body.encode()


class CraftedReplies:
    """One workspace's queues of crafted replies, and the pages it served last (for the modes that repeat)."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[CraftedReply]] = {resource: deque() for resource in RESOURCES}
        self.first_page: dict[str, bytes] = {}
        self.previous_page: dict[str, bytes] = {}
        self.streamed_bytes = 0  # what unbounded pages sent before their client stopped reading

    def add(self, resource: str, replies: list[CraftedReply]) -> int:
        self.queues[resource].extend(replies)
        return sum(reply.times for reply in self.queues[resource])

    def clear(self) -> dict[str, int]:
        """Forget every queued reply; says how many answers each resource had left."""
        unused = {resource: sum(reply.times for reply in queue) for resource, queue in self.queues.items()}
        for queue in self.queues.values():
            queue.clear()
        return unused

    def answer(self, resource: str, first: bool, real_page: Callable[[bool], Response]) -> Response:
        """The next crafted reply for this listing request, or the real page when none is queued.
        `real_page(conditional)`: the page as the API answers it; a crafted reply reshapes the page
        even where the request's If-None-Match would have got a 304."""
        queue = self.queues[resource]
        if not queue:
            return self._served(resource, first, real_page(True))
        reply = queue[0]
        if reply.times > 1:
            queue[0] = reply.model_copy(update={"times": reply.times - 1})
        else:
            queue.popleft()
        return self._served(resource, first, self._craft(reply, resource, real_page))

    def _served(self, resource: str, first: bool, response: Response) -> Response:
        if response.status_code == 200 and not isinstance(response, StreamingResponse):
            self.previous_page[resource] = response.body
            if first:
                self.first_page[resource] = response.body
        return response

    def _craft(self, reply: CraftedReply, resource: str, real_page: Callable[[bool], Response]) -> Response:
        if reply.mode == "raw":
            return Response(reply.raw_body(), reply.status, reply.headers, media_type="application/json")
        if reply.mode == "unbounded_page":
            return StreamingResponse(self._unbounded(reply.size_bytes), reply.status, reply.headers, "application/json")
        if reply.mode == "malformed_json":
            body = MALFORMED_JSON.encode()
        elif reply.mode == "repeat_previous_page" and resource in self.previous_page:
            body = self.previous_page[resource]
        else:
            real = real_page(False)
            if real.status_code != 200 or reply.mode in ("as_is", "repeat_previous_page"):
                return real
            body = self._reshaped(reply, resource, json.loads(real.body))
        return Response(body, reply.status, reply.headers, media_type="application/json")

    async def _unbounded(self, size: int) -> AsyncIterator[bytes]:
        """A record whose one field never seems to end, counted as it is sent: a client that bounds
        what it reads hangs up early, and the count shows how early."""
        chunk = b"x" * 65536
        yield b'{"data": [{"id": "t_1", "updated_at": "2026-11-01T00:00:00.000Z", "padding": "'
        sent = 0
        while sent < size:
            part = chunk[: size - sent]
            sent += len(part)
            self.streamed_bytes += len(part)
            yield part
            await asyncio.sleep(0)  # lets the server stop the stream when the client hangs up
        yield b'"}], "next_cursor": null}'

    def _reshaped(self, reply: CraftedReply, resource: str, page: dict[str, Any]) -> bytes:
        records: list[dict[str, Any]] = page["data"]
        if reply.mode == "wrong_types":
            page["data"] = [_wrong_types(record) for record in records]
        elif reply.mode == "huge_page":
            padding = "x" * (reply.size_bytes // max(len(records), 1))
            page["data"] = [{**record, "padding": padding} for record in records]
        elif reply.mode == "nested_custom_fields":
            page["data"] = [{**record, "custom_fields": NESTED_PLACEHOLDER} for record in records]
        elif reply.mode == "hostile_field_names":
            hostile = {name: f"value of {name!r}" for name in HOSTILE_FIELD_NAMES}
            page["data"] = [{**record, **hostile} for record in records]
        elif reply.mode == "unicode_ids" and records:
            last = records[-1]
            page["data"] = records + [{**last, "id": last["id"] + suffix} for suffix in UNICODE_ID_SUFFIXES]
        elif reply.mode == "cursor_loop":
            page["next_cursor"] = json.loads(self.first_page.get(resource, b"{}")).get("next_cursor")
        text = json.dumps(page, ensure_ascii=False)
        if reply.mode == "nested_custom_fields":  # built as text: json.dumps would recurse as deep
            nested = '{"a":' * reply.depth + "{}" + "}" * reply.depth
            text = text.replace(json.dumps(NESTED_PLACEHOLDER), nested)
        return text.encode()


def _wrong_types(record: dict[str, Any]) -> dict[str, Any]:
    """The record with each known field but its identity, place and deletion of another JSON type."""
    kept = ("id", "updated_at", "deleted_at")
    return {field: value if field in kept else _other_type(value) for field, value in record.items()}


def _other_type(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return ",".join(map(str, value))
    return [value]  # an object
