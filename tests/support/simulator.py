"""Specs for the Tasklane simulator the tests start: its admin token and a small, quiet workspace."""

from __future__ import annotations

from typing import Any

from tasklane_sim.config import deep_merge

ADMIN_TOKEN = "test-admin-token"


def workspace_config(workspace_id: str, **overrides: Any) -> dict[str, Any]:
    """A small, quiet workspace: no lag, no mutations, no faults unless a test asks for them."""
    base: dict[str, Any] = {
        "id": workspace_id,
        "tokens": [f"token-{workspace_id}"],
        "records": {"users": 20, "projects": 8, "tasks": 430},
        "deleted_fraction": 0.05,
        "visibility_lag_seconds": 0,
    }
    return deep_merge(base, overrides)
