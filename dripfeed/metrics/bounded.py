"""A collector that answers within a deadline: a slow or unreachable store makes the scrape report
`dripfeed_metrics_collect_success 0` quickly instead of holding Prometheus (or piling up threads)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as CollectTimeout

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("dripfeed.metrics")


class BoundedCollector(Collector):
    def __init__(self, inner: Collector, timeout_seconds: float) -> None:
        self.inner, self.timeout = inner, timeout_seconds
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collect")
        self.busy = threading.Lock()  # one collection at a time: a stuck one is not joined by more

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        found: list[Metric] | None = None
        if self.busy.acquire(blocking=False):
            future = self.pool.submit(lambda: list(self.inner.collect()))
            future.add_done_callback(lambda _: self.busy.release())
            try:
                found = future.result(timeout=self.timeout)
            except CollectTimeout:
                log.error("metrics: the control store did not answer within %.0f s; this scrape is empty", self.timeout)
            except Exception as failure:  # the endpoint reports its failure; it never stops serving
                log.error("metrics: collecting failed: %s: %s", type(failure).__name__, failure)
        else:
            log.error("metrics: the previous collection is still running; this scrape is empty")
        yield from found or []
        success = int(found is not None)
        yield GaugeMetricFamily(
            "dripfeed_metrics_collect_success", "1 when this scrape read the control store in time, else 0.", success
        )
        yield GaugeMetricFamily(
            "dripfeed_metrics_collect_seconds", "How long this scrape took to compute.", time.perf_counter() - started
        )
