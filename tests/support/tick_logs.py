"""A tick's logs as the UI's tick history shows them, read from the instance that captured them.
Apart from ticks.py so that a process that does not load the code location (a benchmark) can read them."""

from __future__ import annotations

import json

import dagster as dg


def log_lines(instance: dg.DagsterInstance, log_key: list[str] | None) -> list[str]:
    """The messages of a tick's captured log, as the tick's "logs" view lists them."""
    if not log_key:
        return []
    stderr = instance.compute_log_manager.get_log_data(log_key).stderr or b""
    return [json.loads(line, strict=False)["msg"] for line in stderr.decode().splitlines() if line.strip()]
