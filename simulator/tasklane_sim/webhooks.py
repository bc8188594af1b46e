"""Webhook subscriptions and signed, retried, at-least-once deliveries of lean events."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import requests

EVENT_PATTERN = re.compile(r"^(task|project|user|\*)\.(\*|created|updated|deleted)$")
MAX_BACKOFF_SECONDS = 3600
SIGNATURE_TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Tasklane-Signature` header value for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """What a receiver must do: check the HMAC and reject a `t` older than five minutes."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    except (KeyError, ValueError):
        return False
    fresh = abs((now if now is not None else time.time()) - timestamp) <= SIGNATURE_TOLERANCE_SECONDS
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True)
class Subscription:
    id: str
    workspace: str
    url: str
    events: tuple[str, ...]
    secret: str

    def wants(self, event_type: str) -> bool:
        noun, verb = event_type.split(".")
        return any(
            pattern_noun in ("*", noun) and pattern_verb in ("*", verb)
            for pattern_noun, pattern_verb in (p.split(".") for p in self.events)
        )


@dataclass
class _Delivery:
    subscription: Subscription
    body: bytes
    first_attempt: float
    retry_base: float
    retry_for: float
    attempt: int = 0


@dataclass
class WebhookDispatcher:
    """One delivery thread; failed deliveries come back with exponential backoff until they expire."""

    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    stats: defaultdict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    _queue: list[tuple[float, int, _Delivery]] = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _stopping: bool = False
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhook-deliveries", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread:
            self._thread.join(timeout=5)

    def subscribe(self, workspace: str, url: str, events: list[str]) -> Subscription:
        sub = Subscription(
            id=f"whk_{secrets.token_hex(8)}",
            workspace=workspace,
            url=url,
            events=tuple(events),
            secret=secrets.token_hex(24),
        )
        self.subscriptions[sub.id] = sub
        return sub

    def unsubscribe(self, workspace: str, subscription_id: str) -> bool:
        sub = self.subscriptions.get(subscription_id)
        if sub is None or sub.workspace != workspace:
            return False
        del self.subscriptions[subscription_id]
        return True

    def emit(
        self, workspace: str, event_type: str, resource_id: str, occurred_at: str, retry_base: float, retry_for: float
    ) -> int:
        """Queue the event for every matching subscription; returns how many deliveries were queued."""
        queued = 0
        for sub in list(self.subscriptions.values()):
            if sub.workspace != workspace or not sub.wants(event_type):
                continue
            body = json.dumps(
                {
                    "id": f"evt_{secrets.token_hex(10)}",
                    "type": event_type,
                    "workspace": workspace,
                    "resource_id": resource_id,
                    "occurred_at": occurred_at,
                },
                separators=(",", ":"),
            ).encode()
            self._enqueue(time.time(), _Delivery(sub, body, time.time(), retry_base, retry_for))
            self.stats[workspace]["queued"] += 1
            queued += 1
        return queued

    def _enqueue(self, due: float, delivery: _Delivery) -> None:
        with self._wake:
            heapq.heappush(self._queue, (due, next(self._seq), delivery))
            self._wake.notify()

    def pending(self, workspace: str) -> int:
        with self._wake:
            return sum(1 for _, _, d in self._queue if d.subscription.workspace == workspace)

    def _run(self) -> None:
        session = requests.Session()
        while True:
            with self._wake:
                while not self._stopping and (not self._queue or self._queue[0][0] > time.time()):
                    timeout = self._queue[0][0] - time.time() if self._queue else None
                    self._wake.wait(timeout)
                if self._stopping:
                    return
                _, _, delivery = heapq.heappop(self._queue)
            self._attempt(session, delivery)

    def _attempt(self, session: requests.Session, delivery: _Delivery) -> None:
        sub, stats = delivery.subscription, self.stats[delivery.subscription.workspace]
        if sub.id not in self.subscriptions:
            return
        delivery.attempt += 1
        stats["attempts"] += 1
        headers = {
            "Content-Type": "application/json",
            "Tasklane-Signature": sign(sub.secret, delivery.body, int(time.time())),
        }
        try:
            # Only a 2xx is a delivery: a redirect is not followed, and is retried like any other answer.
            status = session.post(sub.url, data=delivery.body, headers=headers, timeout=5, allow_redirects=False)
            ok = 200 <= status.status_code < 300
        except requests.RequestException:
            ok = False
        if ok:
            stats["delivered"] += 1
            return
        stats["failed_attempts"] += 1
        backoff = min(delivery.retry_base * 2 ** (delivery.attempt - 1), MAX_BACKOFF_SECONDS)
        if time.time() + backoff - delivery.first_attempt > delivery.retry_for:
            stats["gave_up"] += 1
            return
        self._enqueue(time.time() + backoff, delivery)
