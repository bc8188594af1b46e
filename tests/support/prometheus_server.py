"""A real Prometheus (Debian's package) for tests, scraping dripfeed's metrics endpoint every second,
and the endpoint itself (`python -m dripfeed.metrics`) as `make dev` starts it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tasklane_sim.server import free_port
from tests.support.dagster_daemon import BIN, wait_until

CONFIG = """global:
  scrape_interval: {interval}s
  scrape_timeout: {interval}s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: dripfeed
    static_configs:
      - targets: ["{target}"]
"""


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now, through the HTTP API."""
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def values(self, expr: str, label: str) -> dict[str, float]:
        """`expr`'s value by one of its labels."""
        return {series["metric"].get(label, ""): float(series["value"][1]) for series in self.query(expr)}

    def label_values(self, label: str, match: str) -> list[str]:
        answer = requests.get(f"{self.url}/api/v1/label/{label}/values", params={"match[]": match}, timeout=10).json()
        return answer["data"]


@contextmanager
def running_prometheus(directory: Path, target: str, rules: Path, interval_seconds: int = 1) -> Iterator[Prometheus]:
    """Prometheus scraping `target` (host:port) every `interval_seconds` (its timeout too), with
    `rules` loaded, until the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(CONFIG.format(rules=rules, target=target, interval=interval_seconds))
    port = free_port()
    with (directory / "prometheus.log").open("ab") as log:
        server = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: _answers(f"{prometheus.url}/-/ready"), 60, "Prometheus to be ready")
        yield prometheus
    finally:
        server.terminate()
        server.wait(timeout=30)


@dataclass(frozen=True)
class MetricsEndpoint:
    target: str  # host:port, what Prometheus scrapes
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"


@contextmanager
def running_metrics_endpoint(directory: Path, env: dict[str, str]) -> Iterator[MetricsEndpoint]:
    """`python -m dripfeed.metrics` on a free loopback port with `env`, its log in `directory`,
    once it has answered a first scrape."""
    port = free_port()
    with (directory / "metrics.log").open("ab") as log:
        process = subprocess.Popen(
            [str(BIN / "python"), "-m", "dripfeed.metrics", "--port", str(port)],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = MetricsEndpoint(f"127.0.0.1:{port}", process.pid)
    try:  # a first scrape of many tenants (an upgraded store, a cold cache) can take a while
        wait_until(lambda: _answers(endpoint.url, timeout=60), 120, "the metrics endpoint to serve")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str, timeout: float = 2) -> bool:
    try:
        return requests.get(url, timeout=timeout).ok
    except requests.ConnectionError:
        return False
