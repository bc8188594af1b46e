"""Writing a tenants.yaml: the file dripfeed reads its tenants, tiers and token variables from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def write_tenants(path: Path, *tenants: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"tenants": list(tenants)}))
    return path


def tenant_entry(tenant_id: str, **overrides: Any) -> dict[str, Any]:
    return {"id": tenant_id, "tier": "hourly", "token_env": f"TASKLANE_TOKEN_{tenant_id.upper()}", **overrides}
