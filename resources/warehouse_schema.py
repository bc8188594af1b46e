"""What the warehouse tables hold: the contract's typed columns, vendor-added fields, raw JSON.

A vendor field name is untrusted input: it becomes a column only through `column_for()`, and
every identifier is quoted; the raw JSON keeps the exact name and value.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

# The contract's fields and the type each is stored as.
CONTRACT_FIELDS: dict[str, dict[str, str]] = {
    "users": {"email": "text", "name": "text", "role": "text", "active": "boolean"},
    "projects": {"name": "text", "status": "text", "owner_id": "text"},
    "tasks": {
        "project_id": "text",
        "assignee_id": "text",
        "title": "text",
        "status": "text",
        "priority": "integer",
        "estimate_hours": "double",
        "tags": "json",
        "due_date": "date",
        "custom_fields": "json",
        "completed_at": "timestamp",
    },
}
COMMON_FIELDS = {"id": "text", "created_at": "timestamp", "updated_at": "timestamp", "deleted_at": "timestamp"}
BOOKKEEPING = {"tenant_id": "text", "_raw": "json", "_synced_at": "timestamp", "_deleted_at": "timestamp"}
SAFE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # reused: the C fast path


def table_columns(resource: str) -> dict[str, str]:
    """The columns every table starts with, in order; vendor-added fields are appended as text."""
    return {
        "tenant_id": "text",
        **COMMON_FIELDS,
        **CONTRACT_FIELDS[resource],
        **{k: v for k, v in BOOKKEEPING.items() if k != "tenant_id"},
    }


def quote(identifier: str) -> str:
    """A SQL identifier, quoted: works for any name in DuckDB and Postgres."""
    return '"' + identifier.replace('"', '""') + '"'


def column_for(field: str) -> str:
    """The column a vendor field lands in: itself when plain, otherwise a readable, unique slug."""
    reserved = set(COMMON_FIELDS) | set(BOOKKEEPING)
    if SAFE_NAME.match(field) and field not in reserved:
        return field
    slug = re.sub(r"[^a-z0-9]+", "_", field.lower()).strip("_")[:32] or "field"
    return f"x_{slug}_{hashlib.sha1(field.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Drift:
    """A contract field arrived with another type than the contract says."""

    field: str
    expected: str
    seen: str
    example_id: str


def _json_type(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _typed(value: Any, kind: str) -> tuple[Any, bool]:
    """(value for the typed column, whether it fits the contract's type). Null always fits."""
    if value is None:
        return None, True
    if kind == "text":
        return (value, True) if isinstance(value, str) else (None, False)
    if kind == "boolean":
        return (value, True) if isinstance(value, bool) else (None, False)
    if kind == "integer":
        return (value, True) if isinstance(value, int) and not isinstance(value, bool) else (None, False)
    if kind == "double":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (float(value), True) if ok else (None, False)
    if kind == "json":
        return _JSON(value), True
    try:  # validated here, stored as the vendor's text: the database casts it (cheaper than Python objects)
        (date if kind == "date" else datetime).fromisoformat(value)
    except (TypeError, ValueError):
        return None, False
    return value, True


def shape_row(
    resource: str, record: dict[str, Any], tenant: str, synced_at: datetime | str
) -> tuple[dict[str, Any], list[Drift]]:
    """One warehouse row from one vendor record, and any contract fields whose type drifted."""
    row: dict[str, Any] = {"tenant_id": tenant}
    drift: list[Drift] = []
    expected = {**COMMON_FIELDS, **CONTRACT_FIELDS[resource]}
    for field, kind in expected.items():
        value, fits = _typed(record.get(field), kind)
        row[field] = value
        if not fits:
            drift.append(Drift(field, kind, _json_type(record.get(field)), str(record.get("id"))))
    for field, value in record.items():
        if field not in expected:
            row[column_for(field)] = value if value is None or isinstance(value, str) else _JSON(value)
    row["_raw"] = _JSON(record)
    row["_synced_at"] = synced_at
    row["_deleted_at"] = row["deleted_at"]
    return row, drift
