"""tenants.yaml: which Tasklane workspaces dripfeed syncs, their tier, budget and token reference.

The bottom layer: every other module may use it, it uses none of them. The file is parsed again
only when its content changed, so a tick that asks for the tenants a thousand times parses it
once.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SYNC_AT = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
DEFAULT_BUDGET_SHARE = 0.8


class TenantConfigError(ValueError):
    """tenants.yaml or a tenant's secret is wrong; the message names the tenant and the fix."""


class MissingToken(TenantConfigError):
    """A tenant's token variable or file is unset or empty; `detail` is the message without the tenant."""

    def __init__(self, tenant: str, detail: str) -> None:
        super().__init__(f"tenant {tenant!r}: {detail}")
        self.detail = detail


class Tenant(BaseModel):
    """One customer workspace. Its token is referenced by name and read only when a call is made."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=TENANT_ID.pattern)
    tier: Literal["hourly", "daily"]
    budget_per_hour: int | None = Field(None, ge=1)
    budget_share: float | None = Field(None, gt=0, le=1)
    token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    token_file: Path | None = None
    history_since: date | None = None
    sync_at: str | None = None  # HH:MM UTC: pins the tenant's slot in its tier's period (sensors/tier_slots.py)
    enabled: bool = True

    @field_validator("sync_at", mode="before")
    @classmethod
    def _time_of_day(cls, value: object) -> object:
        """YAML reads an unquoted 03:17 as the base-60 number 197: take it back as the time it was."""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
            value = f"{value // 60:02d}:{value % 60:02d}"
        if value is not None and not (isinstance(value, str) and SYNC_AT.match(value)):
            raise ValueError(f"{value!r} is not a time of day: give HH:MM in UTC, e.g. '03:17'")
        return value

    @model_validator(mode="after")
    def _one_token_and_one_budget(self) -> Tenant:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_env (a variable name) or token_file (a path)")
        if self.budget_per_hour is not None and self.budget_share is not None:
            raise ValueError("give budget_per_hour or budget_share, not both")
        return self

    @property
    def token_source(self) -> str:
        return f"environment variable {self.token_env}" if self.token_env else f"secret file {self.token_file}"

    def read_token(self) -> str:
        """The tenant's token, read now so a rotated secret is picked up without a restart."""
        if self.token_env:
            token = os.environ.get(self.token_env, "").strip()
        else:
            try:
                token = Path(self.token_file).read_text(encoding="utf-8").strip()
            except OSError:
                token = ""
        if not token:
            raise MissingToken(
                self.id,
                f"its Tasklane token is missing or empty; set the {self.token_source} "
                "(tenants.yaml names it) to the workspace's API token",
            )
        return token

    def calls_per_window(self, vendor_limit: int | None, window_seconds: int) -> int | None:
        """What dripfeed may spend in one vendor window: a per-hour budget scaled to the window, or a
        share of the vendor's limit (default 80%). None until the vendor's limit has been seen."""
        if self.budget_per_hour is not None:
            scaled = max(1, int(self.budget_per_hour * window_seconds / 3600))
            return min(scaled, vendor_limit) if vendor_limit else scaled
        if vendor_limit is None:
            return None
        return max(1, int(vendor_limit * (self.budget_share or DEFAULT_BUDGET_SHARE)))


def parse_tenants(raw: object, source: str = "tenants.yaml") -> dict[str, Tenant]:
    """Validate every entry; each problem names the entry (by id where it has one) and the fix."""
    if not isinstance(raw, dict) or not isinstance(raw.get("tenants"), list):
        raise TenantConfigError(f"{source}: expected a top-level `tenants:` list")
    unknown_top = set(raw) - {"tenants"}
    if unknown_top:
        raise TenantConfigError(f"{source}: unknown top-level key(s) {sorted(unknown_top)}; only `tenants:` is read")
    tenants: dict[str, Tenant] = {}
    for index, entry in enumerate(raw["tenants"], start=1):
        label = f"entry {index}" + (f" ({entry.get('id')!r})" if isinstance(entry, dict) and entry.get("id") else "")
        if not isinstance(entry, dict):
            raise TenantConfigError(f"{source}: {label} must be a mapping of keys like id, tier, token_env")
        try:
            tenant = Tenant.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}" for err in exc.errors()
            )
            raise TenantConfigError(f"{source}: {label}: {problems}") from None
        if tenant.id in tenants:
            raise TenantConfigError(f"{source}: {label}: tenant id {tenant.id!r} is listed twice; ids must be unique")
        tenants[tenant.id] = tenant
    return tenants


def load_tenants(path: str | Path) -> dict[str, Tenant]:
    """The tenants of `path`, validated; parsed again only when its content changed."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise TenantConfigError(
            f"cannot read the tenants file {path}: {exc.strerror}; set DRIPFEED_TENANTS_FILE to tenants.yaml's path"
        ) from None
    digest = hashlib.sha256(content).digest()
    cached = _parsed.get(str(path))
    if cached is None or cached[0] != digest:
        cached = _parsed[str(path)] = (digest, _parse(content, path))
    return dict(cached[1])


_parsed: dict[str, tuple[bytes, dict[str, Tenant]]] = {}  # path -> (its content's digest, its tenants)


def _parse(content: bytes, path: Path) -> dict[str, Tenant]:
    try:
        raw = yaml.safe_load(content.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TenantConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_tenants(raw, str(path))
