"""Fixtures for the API resource: a tenants file, tokens in the environment, a resource per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tasklane_sim import SimServer
from tests.support import resources
from tests.support.tenants_files import tenant_entry, write_tenants


@pytest.fixture
def make_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., resources.Resources]:
    """A Resources for `sim`, with tenants (default: acme) whose tokens sit in the environment."""

    def make(
        sim: SimServer, *tenants: dict[str, Any], state: str | None = None, **settings: Any
    ) -> resources.Resources:
        tenants = tenants or (tenant_entry("acme"),)
        for tenant in tenants:
            if "token_env" in tenant:
                monkeypatch.setenv(tenant["token_env"], f"token-{tenant['id']}")
        path = write_tenants(tmp_path / f"tenants-{len(list(tmp_path.iterdir()))}.yaml", *tenants)
        return resources.make_api(
            base_url=sim.base_url,
            tenants_file=str(path),
            state=state or str(tmp_path / "control.sqlite3"),
            **settings,
        )

    return make
