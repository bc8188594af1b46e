"""What the warehouse tables hold: the contract's typed columns, vendor-added fields, raw JSON.

A vendor field name is untrusted input: it becomes a column only through `column_for()`, every
identifier is quoted and every name in a JSON path is a literal; the raw JSON keeps the exact name
and value.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..streams import STREAMS

# The contract's fields and the type each is stored as.
CONTRACT_FIELDS: dict[str, dict[str, str]] = {name: dict(stream.fields) for name, stream in STREAMS.items()}
COMMON_FIELDS = {"id": "text", "created_at": "timestamp", "updated_at": "timestamp", "deleted_at": "timestamp"}
BOOKKEEPING = {"tenant_id": "text", "_raw": "json", "_synced_at": "timestamp", "_deleted_at": "timestamp"}
SAFE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def table_columns(stream: str) -> dict[str, str]:
    """The columns every table starts with, in order; vendor-added fields are appended as text."""
    return {
        "tenant_id": "text",
        **COMMON_FIELDS,
        **CONTRACT_FIELDS[stream],
        **{k: v for k, v in BOOKKEEPING.items() if k != "tenant_id"},
    }


def quote(identifier: str) -> str:
    """A SQL identifier, quoted: works for any name in DuckDB and Postgres."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A SQL string literal: only the quote is special in DuckDB and in Postgres (standard strings)."""
    return "'" + value.replace("'", "''") + "'"


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
