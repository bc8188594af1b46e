"""Fixtures for sensors: a local webhook receiver that alerts are posted to, and the alerts resource
that posts to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resources.alerts import Alerts
from tests.support.webhook_receiver import Webhook, receiving_webhooks


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A Slack-compatible receiver on a real socket; yields the JSON bodies it received."""
    with receiving_webhooks() as received:
        yield received


@pytest.fixture
def alerts(webhook: Webhook) -> Alerts:
    return Alerts(webhook_url=webhook.url, webserver_url="http://dagster.example")
