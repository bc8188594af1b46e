"""Fuzzing the tenants.yaml loader: whatever the file holds, it gives valid tenants and named
skipped entries, or one TenantConfigError naming the file; never another exception, and never a
tenant whose id breaks the contract's pattern."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resources.tenants import SAFE_LOADER, TenantConfigError, TenantsFile, load_tenants, parse_tenants

CONTRACT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # tasklane-api.md, matched whole
KEYS = [
    "id",
    "tier",
    "token_env",
    "token_file",
    "budget_per_hour",
    "budget_share",
    "history_since",
    "sync_at",
    "enabled",
]
HOSTILE_TEXT = ["../../etc", "a'; DROP TABLE tasks;--", "a" * 10_000, "acme\nINFO forged", "\x1b[31m", "ácmé", "\u202e"]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=80),
    st.sampled_from([*HOSTILE_TEXT, "acme", "globex", "hourly", "daily", "03:17", "2024-01-01", "TASKLANE_TOKEN_A"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
entries = st.one_of(
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=12), values, max_size=8),
    st.fixed_dictionaries(  # mostly valid: the loader must keep these when nothing else is wrong
        {
            "id": st.from_regex(CONTRACT_ID, fullmatch=True) | st.sampled_from(HOSTILE_TEXT),
            "tier": st.sampled_from(["hourly", "daily", "weekly"]),
        },
        optional={
            "token_env": st.sampled_from(["TASKLANE_TOKEN_A", "1BAD"]),
            "sync_at": scalars,
            "budget_share": scalars,
        },
    ),
    values,
)
YAML_PIECES = [
    *"tenants:- id{}[],'\"\n#&*!|>%@`?\\\t",
    "tenants:\n  - ",
    "id: acme",
    "tier: hourly",
    "\x1b",
    "é",
    "2024-13-45",
]
yaml_like = st.lists(st.sampled_from(YAML_PIECES), max_size=40).map("".join)


def assert_sound(loaded: TenantsFile, entry_count: int) -> None:
    """Every entry is a tenant or a named skipped entry; every tenant's id keeps the contract."""
    assert len(loaded.tenants) + len(loaded.skipped) == entry_count
    for tenant_id, tenant in loaded.tenants.items():
        assert tenant.id == tenant_id and CONTRACT_ID.fullmatch(tenant_id), tenant_id
    for entry in loaded.skipped:
        shown = str(entry)
        assert shown.startswith(f"entry {entry.position}") and shown.isprintable() and len(shown) < 2000


def load_text(path: Path, text: str | bytes) -> TenantsFile | None:
    """What load_tenants makes of `text`; None when it refused the whole file, naming it."""
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    try:
        return load_tenants(path)
    except TenantConfigError as error:
        assert str(path) in str(error)
        return None


@pytest.fixture(scope="module")
def tenants_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "tenants.yaml"


@FUZZ
@given(st.lists(entries, max_size=6))
def test_any_list_of_entries_gives_tenants_and_named_skipped_entries(listed: list[Any]) -> None:
    assert_sound(parse_tenants({"tenants": listed}), len(listed))


@FUZZ
@given(st.lists(entries, max_size=6))
def test_any_list_of_entries_written_as_yaml_loads_soundly(tenants_path: Path, listed: list[Any]) -> None:
    loaded = load_text(tenants_path, yaml.safe_dump({"tenants": listed}, allow_unicode=True))
    assert loaded is not None, "a list of mappings is never a whole-file problem"
    assert_sound(loaded, len(listed))


@FUZZ
@given(yaml_like | st.text(max_size=200) | st.binary(max_size=200))
@example(text="tenants:\n  - |#")  # libyaml reads it, PyYAML's own parser does not (found by a CI run)
def test_any_file_content_gives_tenants_or_one_error_naming_the_file(tenants_path: Path, text: str | bytes) -> None:
    loaded = load_text(tenants_path, text)
    if loaded is not None:  # counted by the loader dripfeed uses (libyaml's reads `- |#` where PyYAML's raises)
        assert_sound(loaded, len(yaml.load(text, Loader=SAFE_LOADER)["tenants"]))
