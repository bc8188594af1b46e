"""tenants.yaml: which Tasklane workspaces dripfeed syncs, their tier, budget and token reference.

Near the bottom layer: every other module may use it; it uses only `tiers.py` (the tier names
tenants.yaml may give). The file is parsed again only when its content changed, so a tick that
asks for the tenants a thousand times parses it once.

One bad entry stops no other tenant: `load_tenants` keeps the valid tenants and names each
skipped entry (its position, its id escaped and cut, what to fix), and the sensors say so in
every tick. An id listed twice skips every entry with it: dripfeed never syncs a workspace with
a token that may be the wrong one. Only a file with nothing to read is an error.

Every run is a new process, and parsing the YAML of 20,000 tenants added 0.86 CPU-s to a run of an
unchanged tenant that otherwise costs 2.3 (BENCHMARKS.md). So the first process on a machine to
parse a version of the file leaves what it found as JSON in a directory only its user can write,
and the others read that instead: 0.12 CPU-s. The cache is keyed by the file's content, this
module's code and its parser's and validator's versions: a changed file or an upgraded dripfeed
is parsed again. A run in a container of its own starts with no cache and parses the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType

import yaml
from pydantic import VERSION, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import tiers
from .tiers import TierName

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SYNC_AT = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
DEFAULT_BUDGET_SHARE = 0.8
# libyaml's safe loader when PyYAML has it (its wheels do): a file of 10,000 tenants parses in 0.3 s
# of CPU instead of 1.4 s, which every run's and every code server's process pays once.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    tier: TierName
    budget_per_hour: int | None = Field(None, ge=1)
    budget_share: float | None = Field(None, gt=0, le=1)
    token_env: str | None = None
    token_file: Path | None = None
    history_since: date | None = None
    sync_at: str | None = None  # HH:MM UTC: pins the tenant's slot in its tier's period (sensors/tier_slots.py)
    # Days between reconciliations that list every id (a safety net for vendor bugs); 0: only when
    # the last complete sync nears the tombstones' retention (pipeline_assets/incremental_sync.py).
    reconcile_every_days: float = Field(7, ge=0)
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

    @field_validator("token_env")
    @classmethod
    def _a_variable_name(cls, value: str | None) -> str | None:
        """A name in capitals, as environment variables are: a token pasted here by mistake (mixed
        case, dashes) is refused without being repeated in any message, log or tick."""
        if value is not None and not ENV_NAME.match(value):
            raise ValueError(
                "must be the NAME of the environment variable that holds the token, in capitals like "
                "TASKLANE_TOKEN_ACME, not the token itself (if a token was pasted here, rotate it)"
            )
        return value

    @field_validator("token_file")
    @classmethod
    def _an_absolute_path(cls, value: Path | None) -> Path | None:
        """Absolute, so that every process reads the same file whatever its working directory (and a
        token pasted here by mistake is refused without being repeated)."""
        if value is not None and not value.is_absolute():
            raise ValueError(
                "must be the absolute path of the file that holds the token, like /run/secrets/tasklane-acme "
                "(if a token was pasted here, rotate it)"
            )
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

    def missing_token(self) -> str | None:
        """Why the tenant has no token now, naming the variable or file (never a value); None when
        it has one. Sensors ask before they request a run that could only fail."""
        try:
            self.read_token()
        except MissingToken as missing:
            return missing.detail
        return None

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


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of tenants.yaml that is not synced, and why. `tenant_id` is the id as written (when
    it is a string), for matching partitions only: messages show it through `shown_id`."""

    position: int  # 1 for the first entry of the `tenants:` list
    tenant_id: str | None
    reason: str

    @property
    def name(self) -> str:
        """How every message names the entry: `entry 3 (id 'acme')`."""
        return f"entry {self.position}" + (f" (id {shown_id(self.tenant_id)})" if self.tenant_id is not None else "")

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


@dataclass(frozen=True)
class TenantsFile:
    """What tenants.yaml holds: the valid tenants by id, and the entries skipped."""

    path: str
    tenants: Mapping[str, Tenant]  # read-only: one parse serves every caller until the file changes
    skipped: tuple[SkippedEntry, ...] = ()

    @property
    def skipped_ids(self) -> set[str]:
        """The ids written on skipped entries: a tenant whose entry broke keeps its partition."""
        return {entry.tenant_id for entry in self.skipped if entry.tenant_id is not None}


def parse_tenants(raw: object, source: str = "tenants.yaml") -> TenantsFile:
    """Validate every entry: a bad entry is skipped and named, the others are kept. Only a file with
    no `tenants:` list is an error, and one with a top-level key dripfeed does not know: it may be
    a setting its author expects every tenant to follow."""
    if not isinstance(raw, dict) or not isinstance(raw.get("tenants"), list):
        raise TenantConfigError(f"{source}: expected a top-level `tenants:` list")
    unknown_top = sorted(printable(str(key), 60) for key in raw if key != "tenants")
    if unknown_top:
        raise TenantConfigError(f"{source}: unknown top-level key(s) {unknown_top}; only `tenants:` is read")
    entries: list[object] = raw["tenants"]
    written_ids = Counter(_written_id(entry) for entry in entries)
    tenants: dict[str, Tenant] = {}
    skipped: list[SkippedEntry] = []
    for position, entry in enumerate(entries, start=1):
        outcome = _tenant_or_problem(entry, written_ids)
        if isinstance(outcome, Tenant):
            tenants[outcome.id] = outcome
        else:
            skipped.append(SkippedEntry(position, _written_id(entry), outcome))
    return TenantsFile(source, MappingProxyType(tenants), tuple(skipped))


def _written_id(entry: object) -> str | None:
    tenant_id = entry.get("id") if isinstance(entry, dict) else None
    return tenant_id if isinstance(tenant_id, str) else None


def _tenant_or_problem(entry: object, written_ids: Counter) -> Tenant | str:
    """The entry's tenant, or what is wrong with the entry and how to fix it."""
    if not isinstance(entry, dict):
        return "must be a mapping of keys like id, tier, token_env"
    tenant_id = _written_id(entry)
    if tenant_id is not None and written_ids[tenant_id] > 1:
        return (
            f"id {shown_id(tenant_id)} is listed {written_ids[tenant_id]} times; none of them is synced "
            "until it is listed once (each could hold another token)"
        )
    try:
        return Tenant.model_validate(entry)
    except ValidationError as exc:
        return "; ".join(
            f"{printable('.'.join(str(p) for p in err['loc']), 80) or 'entry'}: {printable(err['msg'], 200)}"
            for err in exc.errors()[:5]
        )


def load_tenants(path: str | Path) -> TenantsFile:
    """The tenants of `path` and its skipped entries; parsed again only when its content changed.
    Raises TenantConfigError, naming the file, only when the file as a whole cannot be read."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise TenantConfigError(
            f"cannot read the tenants file {path}: {exc.strerror}; set DRIPFEED_TENANTS_FILE to tenants.yaml's path"
        ) from None
    digest = hashlib.sha256(CODE + content).hexdigest()
    cached = _parsed.get(str(path))
    if cached is None or cached[0] != digest:
        directory = cache_dir()
        parsed = _read_cache(directory, digest, path) if directory else None
        if parsed is None:
            parsed = _parse(content, path)
            if directory:
                _write_cache(directory, digest, parsed)
        cached = _parsed[str(path)] = (digest, parsed)
    return cached[1]


# Part of the cache's key: what makes the tenants of a file (this code and the tier names it accepts,
# the parser, the validator).
CODE = b"|".join(
    [
        Path(__file__).read_bytes(),
        Path(tiers.__file__).read_bytes(),
        SAFE_LOADER.__name__.encode(),
        yaml.__version__.encode(),
        VERSION.encode(),
    ]
)
_parsed: dict[str, tuple[str, TenantsFile]] = {}  # path -> (its cache key, what it holds)
CACHE_KEPT_SECONDS = 86400  # a version cached longer ago is deleted by the next write (and cached again when read)


def cache_dir() -> Path | None:
    """This user's cache of parsed tenants files on this machine, or None when it cannot be one that
    only this user can write (a directory someone else made, or one open to others)."""
    directory = Path(tempfile.gettempdir()) / f"dripfeed-tenants-{os.getuid()}"
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        mode = directory.lstat()
    except OSError:
        return None
    if not directory.is_dir() or directory.is_symlink() or mode.st_uid != os.getuid() or mode.st_mode & 0o077:
        return None
    return directory


def _read_cache(directory: Path, digest: str, path: Path) -> TenantsFile | None:
    try:
        cached = json.loads((directory / f"{digest}.json").read_bytes())
        tenants = {entry["id"]: Tenant.model_validate(entry) for entry in cached["tenants"]}
        skipped = tuple(SkippedEntry(position, tenant_id, reason) for position, tenant_id, reason in cached["skipped"])
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or not one this code wrote: parse the file
        return None
    return TenantsFile(str(path), MappingProxyType(tenants), skipped)


def _write_cache(directory: Path, digest: str, parsed: TenantsFile) -> None:
    cached = {
        "tenants": [tenant.model_dump(mode="json") for tenant in parsed.tenants.values()],
        "skipped": [[entry.position, entry.tenant_id, entry.reason] for entry in parsed.skipped],
    }
    try:  # a file of its own (the threads of a tick write at once), renamed whole for the readers
        handle, name = tempfile.mkstemp(dir=directory, suffix=".tmp")
    except OSError:
        return
    written = Path(name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(cached, file)
        written.replace(directory / f"{digest}.json")
    except OSError:  # a full disk: the next process parses the file itself
        written.unlink(missing_ok=True)
        return
    for old in directory.iterdir():
        with suppress(OSError):  # another process deleted it first
            if time.time() - old.stat().st_mtime > CACHE_KEPT_SECONDS:
                old.unlink()


def _parse(content: bytes, path: Path) -> TenantsFile:
    try:
        raw = yaml.load(content.decode("utf-8"), Loader=SAFE_LOADER)
    except UnicodeDecodeError:
        raise TenantConfigError(f"{path} is not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:  # the problem and where, not the snippet of the file PyYAML quotes
        where = (
            f" at line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}" if exc.problem_mark else ""
        )
        problem = printable(exc.problem or "a syntax error", 200)
        raise TenantConfigError(f"{path} is not valid YAML: {problem}{where}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # PyYAML raises ValueError for a date like 2024-13-45
        raise TenantConfigError(f"{path} is not valid YAML: {printable(str(exc), 200)}") from None
    return parse_tenants(raw, str(path))


def printable(text: str, limit: int) -> str:
    """`text` safe to show in a log line or a terminal: control characters (newlines, ANSI escapes,
    bidirectional overrides) escaped, and cut to `limit` characters with the length said."""
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    if len(text) <= limit and len(escaped) <= limit:
        return escaped
    return f"{escaped[:limit]}… ({len(text)} characters)"


def shown_id(tenant_id: str) -> str:
    """A tenant id as messages quote it: escaped and cut, so a hostile id forges no log line."""
    return f"'{printable(tenant_id, 70)}'"
