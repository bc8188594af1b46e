"""The UI test's shared names: a running `dagster dev`, where screenshots go, the alert webhook's secret."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from tests.support.dagster_daemon import ROOT

SCREENSHOTS = ROOT / "test-output" / "ui"
WEBHOOK_SECRET = "T00000000-secret-hook-path"


@dataclass(frozen=True)
class DagsterUI:
    """A running `dagster dev`: where its UI is, and the instance it writes to."""

    url: str
    instance: dg.DagsterInstance
