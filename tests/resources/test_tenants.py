"""tenants.yaml: a bad entry is skipped and named, the others load; only a file with nothing to read
is an error, and it names the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from resources.tenants import Tenant, TenantConfigError, load_tenants, parse_tenants
from tests.support.resources import make_api
from tests.support.tenant_processes import load_in_a_new_process

GOOD = {"id": "acme", "tier": "hourly", "token_env": "TASKLANE_TOKEN_ACME"}
GLOBEX = {"id": "globex", "tier": "daily", "token_env": "TASKLANE_TOKEN_GLOBEX"}
LONG_ID = "a" * 10_000


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({**GOOD, "colour": "blue"}, "entry 1 (id 'acme'): colour: Extra inputs are not permitted"),
        ({**GOOD, "id": "Acme Corp"}, "entry 1 (id 'Acme Corp'): id: String should match pattern"),
        ({"id": "acme", "tier": "hourly"}, "give exactly one of token_env (a variable name) or token_file"),
        ({**GOOD, "token_file": "/run/secrets/acme"}, "give exactly one of token_env"),
        ({**GOOD, "tier": "weekly"}, "tier: Input should be 'hourly' or 'daily'"),
        ({**GOOD, "budget_per_hour": 100, "budget_share": 0.5}, "budget_per_hour or budget_share, not both"),
        ({**GOOD, "budget_share": 1.5}, "budget_share: Input should be less than or equal to 1"),
        ({**GOOD, "sync_at": "25:00"}, "sync_at: Value error, '25:00' is not a time of day"),
        ({**GOOD, "token_env": "tasklane_token"}, "token_env: Value error, must be the NAME of the environment"),
        ({**GOOD, "token_env": None, "token_file": "secrets/acme"}, "token_file: Value error, must be the absolute"),
        ("acme", "entry 1: must be a mapping"),
        (None, "entry 1: must be a mapping"),
    ],
)
def test_a_bad_entry_is_skipped_and_named_and_the_others_load(entry: object, message: str) -> None:
    loaded = parse_tenants({"tenants": [entry, GLOBEX]})
    assert list(loaded.tenants) == ["globex"]
    assert len(loaded.skipped) == 1 and message in str(loaded.skipped[0])
    assert loaded.skipped[0].position == 1


@pytest.mark.parametrize("key", ["token_env", "token_file"])
def test_a_token_pasted_where_its_name_goes_is_refused_and_never_repeated(key: str) -> None:
    pasted = "tl_live_8f3aB29dKq7ZxW41mNc0"
    entry = {"id": "acme", "tier": "hourly", key: pasted}
    loaded = parse_tenants({"tenants": [entry, GLOBEX]})
    assert list(loaded.tenants) == ["globex"]
    assert "rotate it" in loaded.skipped[0].reason
    assert pasted not in str(loaded.skipped[0]) and pasted not in loaded.skipped[0].reason


def test_an_id_listed_twice_skips_every_entry_with_it(tmp_path: Path) -> None:
    loaded = parse_tenants({"tenants": [GOOD, GLOBEX, {**GOOD, "tier": "daily", "token_env": "OTHER"}]})
    assert list(loaded.tenants) == ["globex"], "never synced with a token that may be the wrong one"
    assert [entry.position for entry in loaded.skipped] == [1, 3]
    assert all("id 'acme' is listed 2 times" in entry.reason for entry in loaded.skipped)
    assert loaded.skipped_ids == {"acme"}, "its partition stays"


@pytest.mark.parametrize(
    "hostile_id",
    [
        "../../etc",
        "a'; DROP TABLE tasks;--",
        LONG_ID,
        "acme\n2026-11-30 INFO all good",
        "\x1b[2J\x1b[31mred",
        "ácmé",
        "acme\u202e",
    ],
)
def test_a_hostile_id_is_skipped_and_shown_escaped_and_cut(hostile_id: str) -> None:
    loaded = parse_tenants({"tenants": [{**GOOD, "id": hostile_id}, GLOBEX]})
    assert list(loaded.tenants) == ["globex"]
    shown = str(loaded.skipped[0])
    assert shown.isprintable(), "no newline, escape or bidirectional override reaches a log line"
    assert len(shown) < 400
    assert loaded.skipped_ids == {hostile_id}, "matched against partitions as written, never shown so"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"tenants: [", "is not valid YAML: did not find expected node content at line 2"),
        (b"tenants:\n  - id: acme\n    history_since: 2024-13-45\n", "is not valid YAML: month must be in 1..12"),
        (b"[" * 5000 + b"]" * 5000, "is not valid YAML"),
        (b"\xff\xfe not utf-8", "is not UTF-8 text"),
        (b"", "expected a top-level `tenants:` list"),
        (b"tenant: []", "expected a top-level `tenants:` list"),
        (b"tenants: {acme: {}}", "expected a top-level `tenants:` list"),
        (b"tenants: []\ndefaults: {tier: daily}", "unknown top-level key(s) ['defaults']"),
    ],
)
def test_a_file_with_nothing_to_read_is_one_error_naming_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_bytes(content)
    with pytest.raises(TenantConfigError) as error:
        load_tenants(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_a_missing_file_names_the_variable_to_set(tmp_path: Path) -> None:
    with pytest.raises(TenantConfigError, match="DRIPFEED_TENANTS_FILE"):
        load_tenants(tmp_path / "nope.yaml")


def test_the_demo_tenants_file_is_valid() -> None:
    loaded = load_tenants("demo/tenants.yaml")
    assert {t.tier for t in loaded.tenants.values()} == {"hourly", "daily"}
    assert loaded.skipped == ()


@pytest.mark.parametrize(
    ("budget", "vendor_limit", "window_seconds", "expected"),
    [
        ({"budget_per_hour": 4000}, 5000, 3600, 4000),
        ({"budget_per_hour": 3600}, 100, 10, 10),  # scaled to a 10 s window
        ({"budget_per_hour": 9000}, 5000, 3600, 5000),  # never more than the vendor allows
        ({"budget_share": 0.5}, 5000, 3600, 2500),
        ({}, 5000, 3600, 4000),  # the default share is 80%
        ({}, None, 3600, None),  # unknown until the vendor's limit is seen
    ],
)
def test_the_budget_per_window(
    budget: dict, vendor_limit: int | None, window_seconds: int, expected: int | None
) -> None:
    tenant = Tenant.model_validate({**GOOD, **budget})
    assert tenant.calls_per_window(vendor_limit, window_seconds) == expected


def test_a_token_in_a_secret_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "acme"
    secret.write_text("  s3cret\n")
    tenant = Tenant(id="acme", tier="daily", token_file=secret)
    assert tenant.read_token() == "s3cret"
    assert tenant.missing_token() is None
    secret.write_text("")
    with pytest.raises(TenantConfigError, match=f"tenant 'acme'.*secret file {secret}"):
        tenant.read_token()
    assert f"secret file {secret}" in (tenant.missing_token() or "")


def test_a_missing_token_is_named_by_its_variable_never_by_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = Tenant.model_validate(GOOD)
    monkeypatch.delenv("TASKLANE_TOKEN_ACME", raising=False)
    assert "set the environment variable TASKLANE_TOKEN_ACME" in (tenant.missing_token() or "")
    monkeypatch.setenv("TASKLANE_TOKEN_ACME", "s3cret-value")
    assert tenant.missing_token() is None


def test_yaml_dates_become_dates(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"tenants": [{**GOOD, "history_since": "2024-01-01"}]}))
    assert str(load_tenants(path).tenants["acme"].history_since) == "2024-01-01"


def test_a_run_of_a_skipped_tenant_fails_naming_its_entry(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": [{**GOOD, "tier": "weekly"}, GLOBEX]}))
    api = make_api(base_url="http://unused", tenants_file=str(path), state=str(tmp_path / "control.sqlite3"))
    with pytest.raises(TenantConfigError, match=r"skips tenant 'acme': entry 1 \(id 'acme'\): tier: Input should be"):
        api.client("acme")
    with pytest.raises(TenantConfigError, match=r"tenant 'hooli' is not in .*; add it there first"):
        api.client("hooli")


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory of the processes this test starts, which holds their cache."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    return directory


VARIED = [  # every field, in each of its kinds
    {"history_since": "2024-01-01", "sync_at": "03:17", "budget_share": 0.5},
    {"budget_per_hour": 100, "reconcile_every_days": 0, "sync_at": 197},  # YAML's 03:17 unquoted
    {"tier": "daily", "enabled": False, "token_env": None, "token_file": "/run/secrets/t"},
]
MANY = [{"id": f"t{n:04d}", "tier": "hourly", "token_env": f"TOKEN_{n}", **VARIED[n % 3]} for n in range(300)]
SKIPPED = [{**GOOD, "tier": "weekly"}, {**GLOBEX, "token_env": "not a name"}]


def test_a_new_process_reads_tenants_yaml_as_the_first_parsed_it_without_parsing_it_again(
    tmp_path: Path, private_tmp: Path
) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": [*MANY, *SKIPPED]}))
    first = load_in_a_new_process(path)
    assert load_in_a_new_process(path, may_parse_yaml=False) == first
    assert len(first[0]) == 300 and [entry.position for entry in first[1]] == [301, 302]


def test_a_changed_tenants_yaml_is_parsed_again(tmp_path: Path, private_tmp: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": [GOOD]}))
    load_in_a_new_process(path)
    path.write_text(yaml.safe_dump({"tenants": [{**GOOD, "tier": "daily"}]}))
    with pytest.raises(AssertionError, match="parsed the YAML"):
        load_in_a_new_process(path, may_parse_yaml=False)
    assert load_in_a_new_process(path)[0]["acme"]["tier"] == "daily"


@pytest.mark.parametrize("mode", [0o777, 0o770], ids=["open-to-all", "open-to-the-group"])
def test_a_cache_that_others_can_write_is_never_read(tmp_path: Path, private_tmp: Path, mode: int) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": [GOOD]}))
    load_in_a_new_process(path)
    (cached,) = private_tmp.glob("dripfeed-tenants-*/*.json")
    forged = {**GOOD, "token_env": None, "token_file": "/home/someone/else"}
    cached.write_text(json.dumps({"tenants": [forged], "skipped": []}))
    cached.parent.chmod(mode)
    assert load_in_a_new_process(path)[0]["acme"]["token_env"] == "TASKLANE_TOKEN_ACME"
    cached.parent.chmod(0o700)
    assert load_in_a_new_process(path)[0]["acme"]["token_file"] == Path("/home/someone/else"), "the check can fail"


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"tenants": [{"id": 1}], "skipped": []}'])
def test_an_unreadable_cache_entry_is_parsed_from_tenants_yaml(
    tmp_path: Path, private_tmp: Path, content: bytes
) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": [GOOD]}))
    expected = load_in_a_new_process(path)
    (cached,) = private_tmp.glob("dripfeed-tenants-*/*.json")
    cached.write_bytes(content)
    assert load_in_a_new_process(path) == expected
