"""A Slack-compatible webhook receiver on a real socket, for alerts: the tests' fixture and the chaos
campaign's throttling segment post to it, and read back the JSON bodies it got."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Webhook(list):
    """The JSON bodies a receiver got, in order, and where it listens."""

    url: str


@contextmanager
def receiving_webhooks(path: str = "/hooks/dripfeed", into: list[dict[str, Any]] | None = None) -> Iterator[Webhook]:
    """A receiver at `path` (a Slack hook's path is a secret); each body is also appended to `into`."""
    received = Webhook()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            if into is not None:
                into.append(body)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    received.url = f"http://127.0.0.1:{server.server_port}{path}"
    try:
        yield received
    finally:
        server.shutdown()
