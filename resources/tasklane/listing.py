"""A tenant's records, page by page: conditional first pages, cursors that expire, malformed pages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..control.etag_store import ETagStore
from .errors import CursorExpired, TasklaneFailure

if TYPE_CHECKING:
    from .client import TenantClient

PAGE_SIZE = 100
MAX_CURSOR_RESTARTS = 5


@dataclass(frozen=True)
class Page:
    """One listing page: its records, and its body as the vendor sent it (what the warehouse loads)."""

    records: list[dict[str, Any]]
    next_cursor: str | None
    not_modified: bool = False
    body: str = ""


def list_pages(
    client: TenantClient, etags: ETagStore, stream: str, updated_since: str | None, *, include_deleted: bool = True
) -> Iterator[Page]:
    """Pages of 100 records with `updated_at >= updated_since`, tombstones included.

    An unchanged listing answers 304 and yields one empty `not_modified` page. A cursor that
    expires mid-listing restarts the listing from the last `updated_at` already yielded; five
    restarts in a row without a new page give up."""
    tenant = client.tenant.id
    since, cursor, restarts = updated_since, None, 0
    resume_from = since  # where a restart begins: the last updated_at already yielded
    while True:
        params: dict[str, Any] = {"limit": PAGE_SIZE, "include_deleted": str(include_deleted).lower()}
        if since:
            params["updated_since"] = since
        query = f"{stream}?{urlencode(sorted(params.items()))}"
        headers = {}
        if cursor is None:
            remembered = etags.get(query)
            if remembered:
                headers["If-None-Match"] = remembered
        else:
            params["cursor"] = cursor
        try:
            reply = client.request("GET", stream, endpoint=f"{stream}.list", params=params, headers=headers)
        except CursorExpired:
            restarts += 1
            if restarts > MAX_CURSOR_RESTARTS:
                raise TasklaneFailure(
                    tenant, "vendor_outage", f"cursors kept expiring while listing {stream}", retryable=True
                ) from None
            since, cursor = resume_from, None
            continue
        if reply.status == 304:
            yield Page([], None, not_modified=True)
            return
        records, next_cursor = _page_body(tenant, stream, reply.body)
        if cursor is None:
            etags.remember(query, reply.headers.get("ETag") if next_cursor is None else None)
        yield Page(records, next_cursor, body=reply.response.content.decode())
        if records:
            resume_from = max(resume_from or "", records[-1]["updated_at"])
            restarts = 0  # only restarts that make no progress count towards giving up
        if next_cursor is None:
            return
        cursor = next_cursor


def _page_body(tenant: str, stream: str, body: Any) -> tuple[list[dict[str, Any]], str | None]:
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("data"), list)
        or not all(
            isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("updated_at"), str)
            for r in body["data"]
        )
        or not isinstance(body.get("next_cursor"), (str, type(None)))
    ):
        raise TasklaneFailure(
            tenant,
            "schema_drift",
            f"Tasklane answered a {stream} listing with a page that is not in the contract's format "
            "(`data`: records with id and updated_at, `next_cursor`). Nothing from it was written; "
            "check the Tasklane-Version and the API changelog.",
        )
    return body["data"], body["next_cursor"]
