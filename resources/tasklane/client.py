"""One tenant's Tasklane client: each call metered, sent, understood, and retried where that helps.

    request() ─► metering.acquire() ─► transport.send() ─► metering.record() ─► transport.meaning()
        └─ TransientError: again after Retry-After or a backoff, up to max_attempts
           (a Retry-After longer than long_wait_seconds: TenantThrottled, at once)

The listing (`listing.py`) and the export endpoints (`exports.py`) are calls through `request()`.
The client raises its own errors (`errors.py`) and knows no orchestrator: the same client serves
a run's asset and a sensor's tick, and each decides what an error means to it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
import tenacity

from ..control.block_batch import BlockBatch
from ..control.rate_budget import MAX_BLOCK, RateBudget
from ..control.store import ControlStore
from ..control.stream_checks import Listing
from ..tenants import MissingToken, Tenant
from . import exports, listing
from .errors import TasklaneFailure, TransientError
from .exports import VendorExport
from .listing import Page
from .metering import Meter
from .transport import Reply, Transport, meaning

# One DEBUG line per call, on a plain Python logger: kept out of a run's event log (an event per call
# was most of a sync's events, and the ledger has the same counts). dagster.yaml's `python_logs`
# (managed_python_loggers: [dripfeed.tasklane], python_log_level: DEBUG) records them there.
CALL_LOG = logging.getLogger("dripfeed.tasklane")


@dataclass(frozen=True)
class ClientSettings:
    base_url: str
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 6
    long_wait_seconds: float = 60.0
    max_concurrent: int = 8
    calls_per_block: int = MAX_BLOCK  # calls reserved from the shared budget at a time


class TenantClient:
    """Every call of one tenant goes through `request()`; `stats` says what this client spent."""

    def __init__(
        self,
        tenant: Tenant,
        settings: ClientSettings,
        store: ControlStore,
        budget: RateBudget,
        log: logging.Logger = CALL_LOG,
        session: requests.Session | None = None,
        blocks: BlockBatch | None = None,
    ) -> None:
        """`log` gets one DEBUG line per call: the resource passes `CALL_LOG`, a plain Python logger
        kept out of the run's event log (dagster.yaml's `python_logs` can bring it in). `session`: an
        HTTP session shared with other tenants' clients.
        `blocks`: a tick's batch of budget blocks (control/block_batch.py)."""
        self.tenant, self.settings = tenant, settings
        timeouts = (settings.connect_timeout, settings.read_timeout)
        self.transport = Transport(tenant, settings.base_url, timeouts, settings.max_concurrent, session)
        self.meter = Meter(tenant, store, budget, settings.long_wait_seconds, log, settings.calls_per_block, blocks)
        self._backoff = tenacity.wait_random_exponential(multiplier=0.2, max=20)

    @property
    def stats(self) -> Counter:
        return self.meter.stats

    @property
    def base(self) -> str:
        return self.transport.base

    @property
    def session(self) -> requests.Session:
        return self.transport.session

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
        """One logical call, retried with backoff only where a retry can help. A call rejected with
        401 while the tenant's secret was rotated is made again, once, with the new token."""
        request = {"params": params, "json_body": json_body, "headers": headers, "stream": stream}
        token = self._token()
        try:
            return self._retried(method, path, token, endpoint, request)
        except TasklaneFailure as failure:
            if failure.status != 401 or (rotated := self._token()) == token:
                raise
        return self._retried(method, path, rotated, endpoint, request)

    def _retried(self, method: str, path: str, token: str, endpoint: str, request: dict) -> Reply:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.max_attempts),
            wait=self._wait_before_retry,
            retry=tenacity.retry_if_exception_type(TransientError),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(method, path, token, endpoint, attempt.retry_state.attempt_number, request)
        except TransientError as exc:
            raise TasklaneFailure(
                self.tenant.id,
                "vendor_outage",
                f"Tasklane kept failing on {endpoint} after {self.settings.max_attempts} attempts (last: {exc}). "
                "Nothing already synced is lost; the step can be retried once Tasklane recovers.",
                retryable=True,
            ) from None
        raise AssertionError("unreachable")

    def _attempt(self, method: str, path: str, token: str, endpoint: str, attempt: int, request: dict) -> Reply:
        grant, waited = self.meter.acquire()
        started = time.perf_counter()
        try:
            response = self.transport.send(method, path, token, endpoint=endpoint, **request)
        except TransientError:
            self.meter.record(grant, endpoint, None, None, attempt, waited, started)
            raise
        self.meter.record(grant, endpoint, response.status_code, response.headers, attempt, waited, started)
        try:
            return meaning(response, self.tenant, endpoint, stream=request["stream"])
        except TransientError as exc:
            if exc.retry_after is not None and exc.retry_after > self.settings.long_wait_seconds:
                why = f"Tasklane answered {response.status_code} with Retry-After {exc.retry_after:.0f}s"
                self.meter.throttled(exc.retry_after, why, vendor=True)
            raise

    def _token(self) -> str:
        try:
            return self.tenant.read_token()
        except MissingToken as exc:
            raise TasklaneFailure(self.tenant.id, "config", exc.detail) from None

    def _wait_before_retry(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(state)

    @contextmanager
    def _operation(self) -> Iterator[None]:
        """Every public call ends by settling: reserved calls must not sit idle in one process."""
        try:
            yield
        finally:
            self.meter.flush()

    def flush(self) -> None:
        """Give back reserved calls not used and write the ledger."""
        self.meter.flush()

    def close(self) -> None:
        self.meter.flush()
        self.transport.close()

    # --- what the product calls -------------------------------------------------------------
    def list_pages(
        self, stream: str, updated_since: str | None, *, etag: str | None = None
    ) -> Generator[Page, None, None]:
        """See listing.list_pages: with `etag`, an unchanged listing yields one `not_modified` page."""
        with self._operation():
            yield from listing.list_pages(self, stream, updated_since, etag=etag)

    def changed_streams(self, listings: Mapping[str, Listing]) -> set[str]:
        """Which of the streams' listings changed since their ETag: one conditional request each (a
        `304` costs no budget). An answer that is not the contract's format fails like a sync's."""
        changed = set()
        with self._operation():
            for stream, known in listings.items():
                pages = listing.list_pages(self, stream, known.since, etag=known.etag)
                try:
                    if not next(pages).not_modified:
                        changed.add(stream)
                finally:
                    pages.close()
        return changed

    def submit_export(self, stream: str, updated_before: str, key: str) -> VendorExport:
        with self._operation():
            return exports.submit_export(self, stream, updated_before, key)

    def get_export(self, export_id: str) -> VendorExport:
        with self._operation():
            return exports.get_export(self, export_id)

    def list_open_exports(self) -> list[VendorExport]:
        with self._operation():
            return exports.list_open_exports(self)

    def open_export_result(self, result_url: str) -> requests.Response:
        """The gzip NDJSON result as a stream; the caller closes it."""
        with self._operation():
            return exports.open_export_result(self, result_url)
