"""A tenant's records, page by page: conditional first pages, cursors that expire, hostile pages.

Every page is checked before anything is yielded: its size, its encoding, its format, and that the
listing moves on (a `next_cursor` already followed, or a page repeating the previous one, would
otherwise page forever). A page that fails gets a `TasklaneFailure` naming the tenant, the stream
and what to do, and is never yielded; the pages before it were.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .caller import Caller
from .errors import CursorExpired, TasklaneFailure

PAGE_SIZE = 100
MAX_CURSOR_RESTARTS = 5
# The contract's timestamp, exactly: the watermark is the greatest updated_at compared as text,
# which orders time only when every stamp has this one form.
CONTRACT_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
# An updated_at further ahead of dripfeed's clock than this is no clock skew: it would become the
# watermark, and every incremental sync after it would ask for records newer than it, i.e. none.
FUTURE_TOLERANCE = timedelta(days=1)
# Escapes Python's JSON parser decodes but neither warehouse can store: a NUL character (Postgres
# text has none, DuckDB's JSON cast refuses it) and a surrogate that may be unpaired.
SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Page:
    """One listing page: its records, and its body as the vendor sent it (what the warehouse loads)."""

    records: list[dict[str, Any]]
    next_cursor: str | None
    not_modified: bool = False
    body: str = ""
    etag: str | None = None  # on the first page of a listing that fits on it: its ETag, to ask again later


def list_pages(
    client: Caller,
    stream: str,
    updated_since: str | None,
    *,
    etag: str | None = None,
    include_deleted: bool = True,
) -> Generator[Page, None, None]:
    """Pages of 100 records with `updated_at >= updated_since`, tombstones included.

    With `etag` (of an earlier one-page answer to the same listing), an unchanged listing answers
    304 and yields one empty `not_modified` page. A first page that is the whole listing carries its
    ETag, which the caller records once it has committed the page (control/stream_checks.py). A
    cursor that expires mid-listing restarts the listing from the last `updated_at` already yielded;
    five restarts in a row that bring nothing newer give up. A listing that does not move on fails."""
    tenant = client.tenant.id
    since, cursor, restarts = updated_since, None, 0
    resume_from = since  # where a restart begins: the last updated_at already yielded
    followed: set[str] = set()  # the cursors of this pass of the listing
    previous: list[tuple[str, str]] | None = None  # the previous page's (id, updated_at)
    first = True
    while True:
        params: dict[str, Any] = {"limit": PAGE_SIZE, "include_deleted": str(include_deleted).lower()}
        if since:
            params["updated_since"] = since
        headers = {}
        if cursor is not None:
            params["cursor"] = cursor
        elif first and etag:
            headers["If-None-Match"] = etag
        try:
            reply = client.request("GET", stream, endpoint=f"{stream}.list", params=params, headers=headers)
        except CursorExpired:
            restarts += 1
            if restarts > MAX_CURSOR_RESTARTS:
                raise TasklaneFailure(
                    tenant, "vendor_outage", f"cursors kept expiring while listing {stream}", retryable=True
                ) from None
            since, cursor, followed, previous, first = resume_from, None, set(), None, False
            continue
        except RecursionError:  # the transport's JSON parser, on a body nested deeper than Python recurses
            raise _malformed(tenant, stream, "nested deeper than dripfeed can parse") from None
        if reply.status == 304:
            yield Page([], None, not_modified=True)
            return
        text = _page_text(tenant, stream, reply.response.content)
        records, next_cursor = _page_body(tenant, stream, reply.body)
        unstorable = _unstorable(text, reply.body)
        if unstorable:
            raise _malformed(tenant, stream, f"carrying {unstorable}, which the warehouse cannot store")
        keys = [(record["id"], record["updated_at"]) for record in records]
        newest = max((updated_at for _, updated_at in keys), default="")
        if newest > _contract_timestamp(datetime.now(UTC) + FUTURE_TOLERANCE):
            raise _from_the_future(tenant, stream, newest)
        if keys == previous:
            raise _stuck(tenant, stream, "a page repeated the previous page's records exactly")
        if next_cursor is not None and next_cursor in followed:
            raise _stuck(tenant, stream, "a page's next_cursor pointed back at a page already read")
        whole = first and cursor is None and next_cursor is None
        yield Page(records, next_cursor, body=text, etag=reply.headers.get("ETag") if whole else None)
        first = False
        if records and records[-1]["updated_at"] > (resume_from or ""):
            resume_from = records[-1]["updated_at"]
            restarts = 0  # only restarts that bring something newer start the count again
        if next_cursor is None:
            return
        cursor, previous = next_cursor, keys
        followed.add(cursor)


def _page_text(tenant: str, stream: str, content: bytes) -> str:
    """The body as text for the warehouse (at most transport.MAX_ANSWER_BYTES): UTF-8 as the contract
    says (a byte order mark, which JSON parsers may ignore, is dropped: the databases would not parse it)."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _malformed(tenant, stream, "not UTF-8") from None


def _page_body(tenant: str, stream: str, body: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The records and next cursor of a parsed page, if it has the contract's format."""
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("data"), list)
        or not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in body["data"])
        or not all(_is_contract_timestamp(r.get("updated_at")) for r in body["data"])
        or "next_cursor" not in body  # a missing cursor is no last page: it could end a listing early
        or not isinstance(body["next_cursor"], (str, type(None)))
    ):
        raise _malformed(tenant, stream, "not in the contract's format")
    return body["data"], body["next_cursor"]


def _unstorable(text: str, body: Any) -> str | None:
    """What Python's JSON parser accepts in a page but neither DuckDB nor Postgres stores. Rare, so
    the page is searched only when its text holds a suspect: most pages cost two substring scans."""
    if "NaN" in text or "Infinity" in text:
        constant = _constant_in(text)
        if constant:
            return constant
    if not SUSPECT_ESCAPE.search(text):
        return None
    pending = [body]
    while pending:  # iterative: a page may nest as deep as the parser allowed
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str) and "\x00" in value:
            return "a NUL character (\\u0000)"
        elif isinstance(value, str) and SURROGATE.search(value):
            return "a lone surrogate (an unpaired \\ud800-\\udfff escape)"
    return None


def _constant_in(text: str) -> str | None:
    """NaN, Infinity or -Infinity outside strings, which JSON has not (Python's parser takes them)."""

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    try:
        json.loads(text, parse_constant=refuse)
    except RecursionError:
        return "nesting deeper than dripfeed can parse"
    except ValueError:
        return "NaN or Infinity (not JSON)"
    return None


def _contract_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _is_contract_timestamp(value: Any) -> bool:
    if not isinstance(value, str) or not CONTRACT_TIMESTAMP.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:  # 2026-02-30 and the like
        return False
    return True


def _malformed(tenant: str, stream: str, what: str) -> TasklaneFailure:
    return TasklaneFailure(
        tenant,
        "schema_drift",
        f"Tasklane answered a {stream} listing with a page that is {what} (the contract's format: `data`, "
        "records with an id and an updated_at like 2026-11-21T10:00:00.123Z, and `next_cursor`). Nothing from "
        "that page was written; check the Tasklane-Version and the API changelog, and report the answer to "
        "Tasklane if it persists.",
    )


def _from_the_future(tenant: str, stream: str, updated_at: str) -> TasklaneFailure:
    return TasklaneFailure(
        tenant,
        "schema_drift",
        f"Tasklane listed a {stream} record updated at {updated_at}, over a day ahead of dripfeed's clock: as the "
        "watermark it would hide every record written after it. Nothing from that page was written; check this "
        "host's clock, and if it is right, report the record to Tasklane.",
    )


def _stuck(tenant: str, stream: str, what: str) -> TasklaneFailure:
    return TasklaneFailure(
        tenant,
        "vendor_outage",
        f"the {stream} listing stopped moving on: {what}, and following it would page forever. Nothing from "
        "that page was written; the step can be retried later, and if this persists, report it to Tasklane.",
        retryable=True,
    )
