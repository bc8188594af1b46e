"""The documented upgrade step (docs/operations.md), as an operator runs it: `python -m dripfeed.migrate`
with DRIPFEED_WAREHOUSE and DRIPFEED_STATE set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_upgrade(warehouse: str, state: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dripfeed.migrate"],
        env={**os.environ, "DRIPFEED_WAREHOUSE": warehouse, "DRIPFEED_STATE": state},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
