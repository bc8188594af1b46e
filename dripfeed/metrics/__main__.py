"""`python -m dripfeed.metrics`: serve /metrics for Prometheus (or a Datadog agent's OpenMetrics
check) on DRIPFEED_METRICS_HOST:DRIPFEED_METRICS_PORT, loopback unless configured otherwise.

It reads the settings the code location reads (DRIPFEED_STATE, DRIPFEED_TENANTS_FILE, the tiers'
periods) and, when DAGSTER_HOME is set, the daemon's heartbeats from the Dagster instance. It never
reads a token: tenants.yaml names only the variables that hold them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable

import dagster as dg
from prometheus_client import CollectorRegistry, start_http_server

from resources.control.store import DEFAULT_STATE
from resources.shared_state import SharedState
from resources.tenant_registry import TenantRegistry

from ..settings import configured_tiers, number
from .bounded import BoundedCollector
from .collector import StoreCollector

DEFAULT_PORT = 9464  # the port Prometheus' list of exporter ports gives OpenTelemetry's Prometheus exporter
DEFAULT_TIMEOUT_SECONDS = 10.0


def daemon_heartbeats(instance: dg.DagsterInstance) -> Callable[[], dict[str, float]]:
    """The last heartbeat of each daemon loop this instance needs (not of loops turned off since)."""
    required = set(instance.get_required_daemon_types())
    return lambda: {
        daemon: beat.timestamp for daemon, beat in instance.get_daemon_heartbeats().items() if daemon in required
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m dripfeed.metrics", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("DRIPFEED_METRICS_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(number("DRIPFEED_METRICS_PORT", DEFAULT_PORT)))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # a control store upgraded on open, quietly
    tenants_file = os.environ.get("DRIPFEED_TENANTS_FILE")
    if not tenants_file:
        parser.error("set DRIPFEED_TENANTS_FILE (the path of tenants.yaml), as for the code location")
    state = SharedState(url=os.environ.get("DRIPFEED_STATE", DEFAULT_STATE), reads_only=True)
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else None
    collector = StoreCollector(
        state,
        TenantRegistry(tenants_file=tenants_file),
        configured_tiers(),
        heartbeats=daemon_heartbeats(instance) if instance is not None else None,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoundedCollector(collector, number("DRIPFEED_METRICS_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS)))
    server, _ = start_http_server(args.port, addr=args.host, registry=registry)
    logging.info("dripfeed metrics on http://%s:%d/metrics", args.host, server.server_port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    if instance is not None:
        instance.dispose()


if __name__ == "__main__":
    main()
