"""JSON lines for log shippers: `JsonLinesFormatter` writes each record as one JSON object on one
line, with the structured fields dripfeed's per-call (`dripfeed.tasklane`) and per-sync
(`dripfeed.sync`) lines carry. An operator enables it in dagster.yaml's `python_logs`
(docs/operations.md, "JSON logs"). The fields hold no token: the lines never carry a request's
headers, only the tenant, the endpoint and what the call or sync did.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

FIELDS_ATTRIBUTE = "dripfeed"  # logger.info(..., extra={"dripfeed": {...}}): the line's fields


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        dagster = getattr(record, "dagster_meta", None) or {}  # set by Dagster's log manager in a run
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": dagster.get("orig_message", record.getMessage()),
        }
        for key in ("run_id", "job_name", "step_key"):
            if dagster.get(key):
                line[key] = dagster[key]
        line.update(getattr(record, FIELDS_ATTRIBUTE, None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)
