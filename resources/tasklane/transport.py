"""One HTTP exchange with Tasklane for one tenant, and what its answer means.

Knows the contract's answers (tasklane-api.md), not budgets or retries: a transport error or a
`5xx`/`429` is a `TransientError` (with its `Retry-After`), an expired cursor is `CursorExpired`,
another `4xx` a `TasklaneFailure` that says what to do. `client.py` retries, `metering.py` counts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from ..tenants import Tenant
from .errors import CursorExpired, TasklaneFailure, TransientError, failure_for_status, parse_retry_after

API_VERSION = "2026-11-01"  # the Tasklane-Version this client was written against
# The most one answer may weigh (a listing page, an export's status; export files are streamed and
# not bound by it). A contract page holds at most 100 records; a simulated tasks page is about 40 KB,
# so 16 MiB allows 160 KB a record, far beyond any record the contract describes, while bounding
# what a sync holds: a batch keeps up to half pages_per_checkpoint bodies (default 5) and hands them
# to the database as one parameter, while the next batch is fetched: about 10 pages, here 160 MiB at
# worst, well under Postgres' 1 GB limit on a value. An answer is refused as soon as it passes the
# limit (by its Content-Length, or while it is read, after decompression), before it fills the
# run's memory.
MAX_ANSWER_BYTES = 16 * 2**20
READ_CHUNK_BYTES = 64 * 1024
TRANSPORT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Any
    body: Any
    response: requests.Response


def new_session(base: str, pool_size: int) -> requests.Session:
    """A keep-alive session to the Tasklane host: its version header, and proxy and CA settings read
    from the environment once, not on every request (requests' per-call environment scan cost a
    tenth of a page's time). Tokens are sent per request, so tenants may share a session."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Tasklane-Version": API_VERSION, "Accept": "application/json", "User-Agent": "dripfeed"})
    session.proxies.update(requests.utils.get_environ_proxies(base))
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    return session


class Transport:
    """Requests to the tenant's workspace over a keep-alive session, which sends the token only to the
    API host. A tick's probes of many tenants share one session (`session`), which its owner closes."""

    def __init__(
        self,
        tenant: Tenant,
        base_url: str,
        timeouts: tuple[float, float],
        max_concurrent: int,
        session: requests.Session | None = None,
    ) -> None:
        self.tenant, self.timeouts = tenant, timeouts
        self.base = f"{base_url.rstrip('/')}/v1/workspaces/{tenant.id}"
        self.owns_session = session is None
        self.session = new_session(self.base, max_concurrent) if session is None else session

    def send(
        self,
        method: str,
        path: str,
        token: str,
        *,
        endpoint: str,
        params: Any = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """The raw answer, its body read unless streamed (a cut body fails here, where it can be retried)."""
        try:
            response = self.session.request(
                method,
                self.url(path),
                params=params,
                json=json_body,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                timeout=self.timeouts,
                stream=True,
            )
            if not stream:
                self._read_bounded(response, endpoint)
        except TRANSPORT_ERRORS as exc:
            raise TransientError(f"{type(exc).__name__} on {endpoint}") from None
        return response

    def _read_bounded(self, response: requests.Response, endpoint: str) -> None:
        """Read the body now, as `response.content` would, but never past MAX_ANSWER_BYTES."""
        declared = response.headers.get("Content-Length", "")
        chunks: list[bytes] = []
        size = int(declared) if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES else 0
        if not size:
            for chunk in response.iter_content(READ_CHUNK_BYTES):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    break
        if size > MAX_ANSWER_BYTES:
            response.close()  # the rest is never read
            raise TasklaneFailure(
                self.tenant.id,
                "schema_drift",
                f"Tasklane answered {endpoint} with more than {MAX_ANSWER_BYTES:,} bytes, over dripfeed's limit "
                "for one answer. Nothing from that answer was written; check the Tasklane-Version and the API "
                "changelog, and report the answer to Tasklane if it persists.",
            )
        response._content = b"".join(chunks)  # what `response.content` and `.json()` return from now on

    def url(self, path: str) -> str:
        if not path.startswith("http"):
            return f"{self.base}/{path}"
        if urlsplit(path).netloc != urlsplit(self.base).netloc:  # never send the token to another host
            raise TasklaneFailure(
                self.tenant.id, "bug", f"refusing to call {urlsplit(path).netloc}, which is not the Tasklane API host"
            )
        return path

    def close(self) -> None:
        if self.owns_session:
            self.session.close()


def meaning(response: requests.Response, tenant: Tenant, endpoint: str, *, stream: bool) -> Reply:
    """The answer as the contract defines it, or the error it stands for."""
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientError(f"HTTP {status} on {endpoint}", parse_retry_after(response.headers.get("Retry-After")))
    if status == 410 and _error_code(response) == "cursor_expired":
        raise CursorExpired()
    if 400 <= status < 500:  # 400, 401, 403, 404, 409 ...: a retry cannot fix these
        raise failure_for_status(tenant.id, tenant.token_source, endpoint, status, _error_message(response))
    body = None
    if not stream and status not in (204, 304):
        try:
            body = json.loads(response.content)
        except ValueError:
            raise TransientError(f"undecodable body on {endpoint}") from None
    return Reply(status, response.headers, body, response)


def _error_code(response: requests.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _error_message(response: requests.Response) -> str:
    try:
        return str(response.json()["error"]["message"])[:300]
    except (ValueError, KeyError, TypeError):
        return ""
