"""One tenant's Tasklane client: budgeted, retried where retrying helps, counted, and logged."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlencode, urlsplit

import dagster as dg
import requests
import sqlalchemy as sa
import tenacity
from requests.adapters import HTTPAdapter

from .call_ledger import CallOutcome, PendingLedger
from .control_store import ControlStore, etags
from .rate_budget import MAX_BLOCK, Grant, RateBudget, Settlement
from .tasklane_errors import (
    CursorExpired,
    TasklaneFailure,
    TenantThrottled,
    TransientError,
    failure_for_status,
    parse_retry_after,
)
from .tenants import MissingToken, Tenant

API_VERSION = "2026-11-01"  # the Tasklane-Version this client was written against
PAGE_SIZE = 100
MAX_CURSOR_RESTARTS = 5
TRANSPORT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True)
class ClientSettings:
    base_url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 6
    long_wait_seconds: float = 60.0
    max_concurrent: int = 8


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Any
    body: Any
    response: requests.Response


@dataclass(frozen=True)
class Page:
    """One listing page: its records, and its body as the vendor sent it (what the warehouse loads)."""

    records: list[dict[str, Any]]
    next_cursor: str | None
    not_modified: bool = False
    body: str = ""


class TenantClient:
    """Every call of one tenant goes through `request()`; `stats` says what this client spent."""

    def __init__(self, tenant: Tenant, settings: ClientSettings, store: ControlStore, budget: RateBudget) -> None:
        self.tenant, self.settings, self.store, self.budget = tenant, settings, store, budget
        self.base = f"{settings.base_url.rstrip('/')}/v1/workspaces/{tenant.id}"
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=settings.max_concurrent, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update(
            {"Tasklane-Version": API_VERSION, "Accept": "application/json", "User-Agent": "dripfeed"}
        )
        # Proxy and CA settings come from the environment once per session, not on every request:
        # requests' per-call environment scan cost a tenth of a page's time.
        self.session.proxies.update(requests.utils.get_environ_proxies(self.base))
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.session.trust_env = False
        self.stats: Counter = Counter()
        self.log = dg.get_dagster_logger("dripfeed.tasklane")
        self.ledger = PendingLedger(store, tenant.id)
        self._grant: Grant | None = None  # calls reserved for this client; one call at a time
        self._grant_counted = 0
        self._grant_uncounted = 0
        self._last_headers: Any = None
        self._backoff = tenacity.wait_random_exponential(multiplier=0.2, max=20)

    # --- the one request loop ---------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> Reply:
        """One logical call, retried with backoff only where a retry can help."""
        token = self._token()
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.max_attempts),
            wait=self._wait_before_retry,
            retry=tenacity.retry_if_exception_type(TransientError),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    return self._attempt(method, path, endpoint, number, token, params, json_body, headers, stream)
        except TransientError as exc:
            raise TasklaneFailure(
                self.tenant.id,
                "vendor_outage",
                f"Tasklane kept failing on {endpoint} after {self.settings.max_attempts} attempts (last: {exc}). "
                "Nothing already synced is lost; the step can be retried once Tasklane recovers.",
                allow_retries=True,
            ) from None
        raise AssertionError("unreachable")

    def _token(self) -> str:
        try:
            return self.tenant.read_token()
        except MissingToken as exc:
            raise TasklaneFailure(self.tenant.id, "config", exc.detail) from None

    def _url(self, path: str) -> str:
        if not path.startswith("http"):
            return f"{self.base}/{path}"
        if urlsplit(path).netloc != urlsplit(self.base).netloc:  # never send the token to another host
            raise TasklaneFailure(
                self.tenant.id, "bug", f"refusing to call {urlsplit(path).netloc}, which is not the Tasklane API host"
            )
        return path

    def _attempt(
        self,
        method: str,
        path: str,
        endpoint: str,
        attempt: int,
        token: str,
        params: Any,
        json_body: Any,
        headers: Any,
        stream: bool,
    ) -> Reply:
        grant, waited = self._acquire(endpoint)
        started = time.perf_counter()
        try:
            response = self.session.request(
                method,
                self._url(path),
                params=params,
                json=json_body,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                stream=stream,
            )
            if not stream:
                response.content  # noqa: B018 - read the body now: a cut body fails here, inside the retry
        except TRANSPORT_ERRORS as exc:
            self._settle(grant, endpoint, None, None, attempt, waited, started)
            raise TransientError(f"{type(exc).__name__} on {endpoint}") from None
        status = response.status_code
        self._settle(grant, endpoint, status, response.headers, attempt, waited, started)
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.settings.long_wait_seconds:
                self._throttled(
                    retry_after, f"Tasklane answered {status} with Retry-After {retry_after:.0f}s", vendor=True
                )
            raise TransientError(f"HTTP {status} on {endpoint}", retry_after)
        if status == 410 and self._error_code(response) == "cursor_expired":
            raise CursorExpired()
        if 400 <= status < 500:  # 400, 401, 403, 404, 409 ...: a retry cannot fix these
            raise failure_for_status(
                self.tenant.id, self.tenant.token_source, endpoint, status, self._error_message(response)
            )
        body = None
        if not stream and status not in (204, 304):
            try:
                body = json.loads(response.content)
            except ValueError:
                raise TransientError(f"undecodable body on {endpoint}") from None
        return Reply(status, response.headers, body, response)

    @staticmethod
    def _error_code(response: requests.Response) -> str:
        try:
            return str(response.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return ""

    @staticmethod
    def _error_message(response: requests.Response) -> str:
        try:
            return str(response.json()["error"]["message"])[:300]
        except (ValueError, KeyError, TypeError):
            return ""

    # --- budget, ledger, log ----------------------------------------------------------------
    def _acquire(self, endpoint: str) -> tuple[Grant, float]:
        """Take the next call from this client's block, exchanging the block when it is spent."""
        waited = 0.0
        while True:
            if self._block_has_room():
                return self._grant, waited
            decision = self.budget.exchange(
                self.tenant, self._settlement(), want=MAX_BLOCK, write_ledger=self.ledger.write
            )
            self._grant, self._grant_counted, self._grant_uncounted = None, 0, 0
            if isinstance(decision, Grant):
                self._grant = decision
                continue
            if decision.seconds > self.settings.long_wait_seconds:
                why = decision.reason if decision.vendor else f"dripfeed's budget for this tenant: {decision.reason}"
                self._throttled(decision.seconds, why, vendor=decision.vendor)
            time.sleep(decision.seconds)
            waited += decision.seconds

    def _block_has_room(self) -> bool:
        """A reserved call is used only while the vendor's last answer still showed room."""
        grant = self._grant
        if (
            grant is None
            or self._grant_counted + self._grant_uncounted >= grant.calls
            or time.time() >= grant.window_reset
        ):
            return False
        headers = self._last_headers or {}
        same_window = headers.get("X-RateLimit-Reset") == str(grant.window_reset)
        return not (same_window and int(headers.get("X-RateLimit-Remaining", 1)) <= 0)

    @contextmanager
    def _operation(self) -> Iterator[None]:
        """Every public call ends by settling: reserved calls must not sit idle in one process."""
        try:
            yield
        finally:
            self.flush()

    def _settlement(self) -> Settlement | None:
        if self._grant is None:
            return None
        return Settlement(self._grant, self._grant_counted, self._grant_uncounted, self._last_headers)

    def flush(self) -> None:
        """Give back reserved calls not used and write the ledger: the end of every operation."""
        settlement = self._settlement()
        if settlement is not None:
            self.budget.settle(self.tenant, settlement, self.ledger.write)
        elif self.ledger.rows:
            with self.store.transaction() as conn:
                self.ledger.write(conn)
        self._grant, self._grant_counted, self._grant_uncounted = None, 0, 0

    def _throttled(self, seconds: float, why: str, *, vendor: bool) -> NoReturn:
        """A wait longer than `long_wait_seconds` is not made here: the caller decides (a run defers
        itself, a sensor looks again later)."""
        self.stats["throttled"] += 1
        raise TenantThrottled(self.tenant.id, time.time() + seconds, why, vendor=vendor)

    def _settle(
        self, grant: Grant, endpoint: str, status: int | None, headers: Any, attempt: int, waited: float, started: float
    ) -> None:
        """Book the call here; the shared budget and the ledger hear of it at the next exchange."""
        now = time.time()
        counted = status not in (304, 429)
        outcome = CallOutcome(
            counted=counted,
            not_modified=status == 304,
            rate_limited=status == 429,
            retry=attempt > 1,
            error=status is None or (status >= 400 and status != 429),
            wait_seconds=waited,
        )
        if counted:
            self._grant_counted += 1
        else:
            self._grant_uncounted += 1
        if headers is not None and "X-RateLimit-Remaining" in headers:
            self._last_headers = {
                k: headers.get(k) for k in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
            }
        self.ledger.add(endpoint, outcome, now)
        self.stats.update(
            calls=1,
            counted=int(counted),
            not_modified=int(outcome.not_modified),
            rate_limited=int(outcome.rate_limited),
            retries=int(outcome.retry),
            errors=int(outcome.error),
        )
        self.stats["wait_seconds"] += waited
        if self.log.isEnabledFor(logging.DEBUG):
            used = self._grant_counted + self._grant_uncounted
            record = {
                "tenant": self.tenant.id,
                "endpoint": endpoint,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "attempt": attempt,
                "budget_left": None if grant.left_after is None else grant.left_after + grant.calls - used,
                "vendor_remaining": (headers or {}).get("X-RateLimit-Remaining"),
                "wait_s": round(waited, 3),
            }
            self.log.debug("tasklane_call " + json.dumps(record))

    def _wait_before_retry(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(state)

    # --- listings ---------------------------------------------------------------------------
    def list_pages(self, resource: str, updated_since: str | None, *, include_deleted: bool = True) -> Iterator[Page]:
        """Pages of 100 records with `updated_at >= updated_since`, tombstones included.

        An unchanged listing answers 304 and yields one empty `not_modified` page. A cursor that
        expires mid-listing restarts the listing from the last `updated_at` already yielded; five
        restarts in a row without a new page give up."""
        with self._operation():
            since, cursor, restarts = updated_since, None, 0
            resume_from = since  # where a restart begins: the last updated_at already yielded
            while True:
                params: dict[str, Any] = {"limit": PAGE_SIZE, "include_deleted": str(include_deleted).lower()}
                if since:
                    params["updated_since"] = since
                query = f"{resource}?{urlencode(sorted(params.items()))}"
                headers = {}
                if cursor is None:
                    remembered = self._remembered_etag(query)
                    if remembered:
                        headers["If-None-Match"] = remembered
                else:
                    params["cursor"] = cursor
                try:
                    reply = self.request("GET", resource, endpoint=f"{resource}.list", params=params, headers=headers)
                except CursorExpired:
                    restarts += 1
                    if restarts > MAX_CURSOR_RESTARTS:
                        raise TasklaneFailure(
                            self.tenant.id,
                            "vendor_outage",
                            f"cursors kept expiring while listing {resource}",
                            allow_retries=True,
                        ) from None
                    since, cursor = resume_from, None
                    continue
                if reply.status == 304:
                    yield Page([], None, not_modified=True)
                    return
                records, next_cursor = self._page_body(resource, reply.body)
                if cursor is None:
                    self._remember_etag(query, reply.headers.get("ETag") if next_cursor is None else None)
                yield Page(records, next_cursor, body=reply.response.content.decode())
                if records:
                    resume_from = max(resume_from or "", records[-1]["updated_at"])
                    restarts = 0  # only restarts that make no progress count towards giving up
                if next_cursor is None:
                    return
                cursor = next_cursor

    def _page_body(self, resource: str, body: Any) -> tuple[list[dict[str, Any]], str | None]:
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
                self.tenant.id,
                "schema_drift",
                f"Tasklane answered a {resource} listing with a page that is not in the contract's format "
                "(`data`: records with id and updated_at, `next_cursor`). Nothing from it was written; "
                "check the Tasklane-Version and the API changelog.",
            )
        return body["data"], body["next_cursor"]

    def _remembered_etag(self, query: str) -> str | None:
        with self.store.engine.connect() as conn:
            return conn.execute(
                sa.select(etags.c.etag).where(etags.c.tenant == self.tenant.id, etags.c.query == query)
            ).scalar_one_or_none()

    def _remember_etag(self, query: str, etag: str | None) -> None:
        """Only a complete, single-page result is remembered: a 304 must mean the whole listing is
        unchanged, and page one of a longer listing says nothing about the pages after it."""
        with self.store.transaction() as conn:
            conn.execute(sa.delete(etags).where(etags.c.tenant == self.tenant.id, etags.c.query == query))
            if etag:
                conn.execute(sa.insert(etags).values(tenant=self.tenant.id, query=query, etag=etag))

    # --- exports ----------------------------------------------------------------------------
    def submit_export(self, resource: str, updated_before: str, key: str) -> dict[str, Any]:
        """Submit (or, with the same key and arguments, find again) the export of `resource` before
        `updated_before`."""
        body = {"resource": resource, "updated_before": updated_before}
        with self._operation():
            return self.request(
                "POST", "exports", endpoint="exports.create", json_body=body, headers={"Idempotency-Key": key}
            ).body

    def get_export(self, export_id: str) -> dict[str, Any]:
        with self._operation():
            return self.request("GET", f"exports/{export_id}", endpoint="exports.get").body

    def list_open_exports(self) -> list[dict[str, Any]]:
        with self._operation():
            return self.request("GET", "exports", endpoint="exports.list", params={"status": "queued,running"}).body[
                "data"
            ]

    def open_export_result(self, result_url: str) -> requests.Response:
        """The gzip NDJSON result as a stream; the caller closes it."""
        with self._operation():
            return self.request("GET", result_url, endpoint="exports.download", stream=True).response
