"""Writing a tenants.yaml: the file dripfeed reads its tenants, tiers and token variables from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def write_tenants(path: Path, *tenants: dict[str, Any] | str) -> Path:
    path.write_text(yaml.safe_dump({"tenants": list(tenants)}))
    return path


def tenant_entry(tenant_id: str, **overrides: Any) -> dict[str, Any]:
    return {"id": tenant_id, "tier": "hourly", "token_env": f"TASKLANE_TOKEN_{tenant_id.upper()}", **overrides}


HOSTILE_IDS = ["../../etc", "a'; DROP TABLE tasks;--", "a" * 10_000, "ok\n2026-11-30 INFO forged line \x1b[31m", "ácmé"]


def bad_tenants_file(path: Path, valid: dict[str, Any]) -> Path:
    """tenants.yaml with `valid` as entry 1, then acme (valid, its token variable never set) and one
    bad entry of each kind: umbrella's tier is wrong (3), initech is listed twice (4, 5), hostile ids
    (6 to 10), and an entry that is not a mapping (11)."""
    return write_tenants(
        path,
        valid,
        tenant_entry("acme", token_env="TASKLANE_TOKEN_ACME"),
        tenant_entry("umbrella", tier="weekly"),
        tenant_entry("initech"),
        tenant_entry("initech", tier="daily"),
        *(tenant_entry(hostile, token_env="TASKLANE_TOKEN_ANY") for hostile in HOSTILE_IDS),
        "just a string",
    )
