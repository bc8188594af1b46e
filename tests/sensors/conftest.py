"""Fixtures for sensors: a local webhook receiver that alerts are posted to, and the alerts resource
that posts to it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from resources.alerts import Alerts


class Webhook(list):
    """The JSON bodies a receiver got, and where it listens."""

    url: str


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A Slack-compatible receiver on a real socket; yields the JSON bodies it received."""
    received = Webhook()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    received.url = f"http://127.0.0.1:{server.server_port}/hooks/dripfeed"
    yield received
    server.shutdown()


@pytest.fixture
def alerts(webhook: Webhook) -> Alerts:
    return Alerts(webhook_url=webhook.url, webserver_url="http://dagster.example")
