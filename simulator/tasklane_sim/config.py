"""The simulator's configuration (`sim.yaml`), validated; per-workspace knobs can change at runtime."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

RESOURCES: tuple[str, ...] = ("users", "projects", "tasks")
WORKSPACE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ConfigError(ValueError):
    """The simulator configuration is invalid; the message names the entry and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Faults(_Strict):
    """Per-request fault injection rates (each 0..1, drawn independently per request)."""

    error_rate: float = Field(0.0, ge=0, le=1)
    slow_rate: float = Field(0.0, ge=0, le=1)
    slow_seconds: float = Field(5.0, ge=0)
    drop_rate: float = Field(0.0, ge=0, le=1)
    truncate_rate: float = Field(0.0, ge=0, le=1)


class Mutations(_Strict):
    """Background writes while the simulator runs, spread over the three resources."""

    creates_per_second: float = Field(0.0, ge=0)
    updates_per_second: float = Field(0.0, ge=0)
    deletes_per_second: float = Field(0.0, ge=0)


class ExportSettings(_Strict):
    duration_seconds: float = Field(30.0, ge=0)
    failure_rate: float = Field(0.0, ge=0, le=1)
    result_ttl_seconds: float = Field(3600.0, gt=0)


class Knobs(_Strict):
    """Everything about a workspace that the admin API may change while the simulator runs."""

    rate_limit: int = Field(5000, ge=0)
    window_seconds: int = Field(3600, ge=1)
    retry_after_format: Literal["seconds", "http-date"] = "seconds"
    lockout_threshold: int = Field(20, ge=0)
    lockout_seconds: int = Field(300, ge=1)
    max_concurrent: int = Field(8, ge=1)
    cursor_ttl_seconds: float = Field(600.0, gt=0)
    visibility_lag_seconds: float = Field(60.0, ge=0)
    tombstone_retention_days: float = Field(30.0, gt=0)
    api_version: str = "2026-11-01"
    webhook_retry_base_seconds: float = Field(1.0, gt=0)
    webhook_retry_for_seconds: float = Field(86400.0, ge=0)
    mutations: Mutations = Field(default_factory=Mutations)
    faults: Faults = Field(default_factory=Faults)
    exports: ExportSettings = Field(default_factory=ExportSettings)


class TokenRef(_Strict):
    """A token given literally (tests) or by the name of the environment variable holding it."""

    value: str | None = None
    env: str | None = None
    expires_at: str | None = None

    def resolve(self, workspace: str) -> str:
        if self.value:
            return self.value
        if self.env:
            token = os.environ.get(self.env, "")
            if not token:
                raise ConfigError(
                    f"workspace {workspace!r}: token variable {self.env} is not set or empty; "
                    f"export it (make dev writes .env for the demo)"
                )
            return token
        raise ConfigError(f"workspace {workspace!r}: a token entry needs `value` or `env`")


class RecordCounts(_Strict):
    users: int = Field(20, ge=1)
    projects: int = Field(10, ge=1)
    tasks: int = Field(1000, ge=0)


class WorkspaceSpec(Knobs):
    """One simulated Tasklane workspace: its data, its tokens and its knobs."""

    id: str
    tokens: list[TokenRef | str] = Field(min_length=1)
    records: RecordCounts = Field(default_factory=RecordCounts)
    history_days: float = Field(365.0, gt=0)
    deleted_fraction: float = Field(0.01, ge=0, le=1)
    seed: int | None = None

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not WORKSPACE_ID.match(value):
            raise ValueError(f"{value!r} is not a workspace id ([a-z0-9][a-z0-9_-]{{0,62}})")
        return value

    def knobs(self) -> Knobs:
        return Knobs.model_validate(self.model_dump(include=set(Knobs.model_fields)))

    def token_refs(self) -> list[TokenRef]:
        return [TokenRef(value=t) if isinstance(t, str) else t for t in self.tokens]


class SimConfig(_Strict):
    seed: int = 0
    as_of: str | None = None
    admin_token: str | None = None
    admin_token_env: str | None = None
    data_dir: Path | None = None
    workspaces: list[WorkspaceSpec] = Field(default_factory=list)

    def resolve_admin_token(self) -> str:
        if self.admin_token:
            return self.admin_token
        if self.admin_token_env and os.environ.get(self.admin_token_env):
            return os.environ[self.admin_token_env]
        raise ConfigError(
            "the simulator needs an admin token: set `admin_token` or name a set variable in `admin_token_env`"
        )


def deep_merge(defaults: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in entry.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_config(raw: dict[str, Any]) -> SimConfig:
    """Validate a config mapping; `defaults:` is merged under every workspace entry."""
    raw = dict(raw or {})
    defaults = raw.pop("defaults", {}) or {}
    raw["workspaces"] = [deep_merge(defaults, ws) for ws in raw.get("workspaces", []) or []]
    try:
        config = SimConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid simulator config: {problems}") from None
    seen: set[str] = set()
    for ws in config.workspaces:
        if ws.id in seen:
            raise ConfigError(f"workspace {ws.id!r} is listed twice; ids must be unique")
        seen.add(ws.id)
    return config


def load_config(path: str | Path) -> SimConfig:
    with open(path, encoding="utf-8") as handle:
        return parse_config(yaml.safe_load(handle))
