"""Where dripfeed's alerts go: a Slack-compatible webhook, with links into the Dagster UI.

Alerts carry the tenant, the asset, an error class, a one-line reason and a link; their texts
come from `TasklaneFailure`s and sensors, which never hold a token. The webhook's URL is a secret:
`definitions.py` sets it from an environment variable, so the UI shows the variable's name only.
"""

from __future__ import annotations

import logging

import dagster as dg
import requests
from pydantic import Field

DEFAULT_WEBSERVER = "http://localhost:3000"


class Alerts(dg.ConfigurableResource):
    """One message per event worth a person's attention, POSTed as Slack-compatible JSON."""

    webhook_url: str | None = Field(
        None, description="a Slack-compatible incoming webhook; without it, alerts go to the sensor's log"
    )
    webserver_url: str = Field(DEFAULT_WEBSERVER, description="where people open Dagster; alerts link into it")

    def link(self, path: str) -> str:
        """A link into the Dagster UI, e.g. link('/runs/<id>')."""
        return self.webserver_url.rstrip("/") + path

    def post(self, log: logging.Logger | dg.DagsterLogManager, text: str, fields: dict[str, str]) -> None:
        """POST `{"text": ..., **fields}` to the webhook, or log it when none is configured."""
        if not self.webhook_url:
            log.info(f"no alert sent (no webhook configured): {text}")
            return
        response = requests.post(self.webhook_url, json={"text": text, **fields}, timeout=10)
        response.raise_for_status()  # a failed post fails the tick, and the tick shows why
