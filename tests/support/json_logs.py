"""The JSON-lines logging block docs/operations.md shows for dagster.yaml, pointed at a file: what the
JSON-log test and the reliability campaign's instances use, so both run the documented settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def documented_python_logs(log_file: Path) -> dict[str, Any]:
    """The `python_logs` block of docs/operations.md's "JSON logs", writing to `log_file`."""
    section = (ROOT / "docs" / "operations.md").read_text().split("## JSON logs")[1].split("\n## ")[0]
    block = section.split("```yaml\n")[1].split("```")[0]
    settings = yaml.safe_load(block)["python_logs"]
    settings["dagster_handler_config"]["handlers"]["json_lines"]["filename"] = str(log_file)
    return settings
