"""Contract: Webhooks (signed, retried, at-least-once deliveries of lean events)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tasklane_sim import SimServer, verify_signature
from tasklane_sim.webhooks import sign
from tests.support.simulator import workspace_config
from tests.support.tasklane_client import TasklaneClient


class Receiver:
    """A local webhook endpoint that records what it gets and can fail the first N deliveries."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first, self.fail_status = fail_first, fail_status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                failing = len(receiver.received) <= receiver.fail_first
                self.send_response(receiver.fail_status if failing else 204)
                if failing and 300 <= receiver.fail_status < 400:
                    self.send_header("Location", receiver.url)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"got {len(self.received)} deliveries, wanted {count}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.server.shutdown()


@pytest.fixture
def hooked(make_sim) -> SimServer:
    return make_sim(workspace_config("acme", webhook_retry_base_seconds=0.2))


def register(client: TasklaneClient, url: str, events: list[str]) -> dict[str, Any]:
    response = client.post("webhooks", json={"url": url, "events": events})
    assert response.status_code == 201, response.text
    return response.json()


def test_mutations_are_delivered_as_lean_signed_events(hooked: SimServer, receiver: Receiver) -> None:
    client = TasklaneClient(hooked.base_url, "acme", "token-acme")
    hook = register(client, receiver.url, ["task.*"])
    hooked.admin.mutate("acme", creates=2, updates=1, resource="tasks")
    hooked.admin.mutate("acme", creates=1, resource="users")  # not subscribed
    receiver.wait(3)
    time.sleep(0.3)
    assert len(receiver.received) == 3
    for headers, body in receiver.received:
        event = json.loads(body)
        assert set(event) == {"id", "type", "workspace", "resource_id", "occurred_at"}
        assert event["type"] in ("task.created", "task.updated") and event["workspace"] == "acme"
        assert verify_signature(hook["secret"], headers["Tasklane-Signature"], body)
        assert not verify_signature("another-secret", headers["Tasklane-Signature"], body)


def test_a_signature_older_than_five_minutes_or_over_another_body_is_rejected() -> None:
    body = b'{"id":"evt_1"}'
    old = sign("s3cret", body, int(time.time()) - 301)
    assert not verify_signature("s3cret", old, body)
    fresh = sign("s3cret", body, int(time.time()))
    assert verify_signature("s3cret", fresh, body)
    assert not verify_signature("s3cret", fresh, body + b" ")
    assert not verify_signature("s3cret", "garbage", body)


@pytest.mark.parametrize("failure", [500, 302, 307], ids=["server-error", "redirect", "temporary-redirect"])
def test_failed_deliveries_are_retried_with_backoff_until_accepted(hooked: SimServer, failure: int) -> None:
    flaky = Receiver(fail_first=2, fail_status=failure)  # any answer that is not a 2xx is a failed delivery
    try:
        client = TasklaneClient(hooked.base_url, "acme", "token-acme")
        register(client, flaky.url, ["*.*"])
        hooked.admin.fire_webhook_event("acme", "project.updated", "prj_1")
        flaky.wait(3)
        bodies = {body for _, body in flaky.received}
        assert len(bodies) == 1, "the same event is redelivered"
        stats = hooked.admin.counters("acme")["webhooks"]
        assert stats["delivered"] == 1 and stats["failed_attempts"] == 2
    finally:
        flaky.server.shutdown()


def test_a_deleted_webhook_gets_no_more_events(hooked: SimServer, receiver: Receiver) -> None:
    client = TasklaneClient(hooked.base_url, "acme", "token-acme")
    hook = register(client, receiver.url, ["user.created"])
    assert client.session.delete(client.url(f"webhooks/{hook['id']}")).status_code == 204
    assert client.session.delete(client.url(f"webhooks/{hook['id']}")).status_code == 404
    hooked.admin.fire_webhook_event("acme", "user.created", "usr_1")
    time.sleep(0.5)
    assert receiver.received == []


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://x", "events": ["task.*"]},
        {"url": "http://x", "events": []},
        {"url": "http://x", "events": ["comment.*"]},
        {"events": ["task.*"]},
    ],
)
def test_bad_webhook_registrations_are_400(hooked: SimServer, body: dict[str, Any]) -> None:
    client = TasklaneClient(hooked.base_url, "acme", "token-acme")
    assert client.post("webhooks", json=body).status_code == 400
