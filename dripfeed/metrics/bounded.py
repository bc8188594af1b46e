"""A collector that answers within a deadline: a slow or unreachable store makes the scrape report
`dripfeed_metrics_collect_success 0` in time instead of holding Prometheus. One collection runs at a
time: scrapes that arrive while it runs (two Prometheus servers, a person's curl) share its result,
and a stuck one is not joined by more."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as CollectTimeout

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("dripfeed.metrics")


class BoundedCollector(Collector):
    def __init__(self, inner: Collector, timeout_seconds: float) -> None:
        self.inner, self.timeout = inner, timeout_seconds
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collect")
        self.lock = threading.Lock()
        self.running: Future[list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        with self.lock:
            if self.running is None or self.running.done():
                self.running = self.pool.submit(lambda: list(self.inner.collect()))
            running = self.running
        found: list[Metric] | None = None
        try:
            found = running.result(timeout=self.timeout)
        except CollectTimeout:
            log.error("metrics: the control store did not answer within %.0f s; this scrape is empty", self.timeout)
        except Exception as failure:  # the endpoint reports its failure; it never stops serving
            log.error("metrics: collecting failed: %s: %s", type(failure).__name__, failure)
        yield from found or []
        success = int(found is not None)
        yield GaugeMetricFamily(
            "dripfeed_metrics_collect_success", "1 when this scrape read the control store in time, else 0.", success
        )
        yield GaugeMetricFamily(
            "dripfeed_metrics_collect_seconds", "How long this scrape took to compute.", time.perf_counter() - started
        )
