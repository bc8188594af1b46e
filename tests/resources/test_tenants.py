"""tenants.yaml: every bad entry is one clear error naming the entry and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from resources.tenants import Tenant, TenantConfigError, load_tenants, parse_tenants

GOOD = {"id": "acme", "tier": "hourly", "token_env": "TASKLANE_TOKEN_ACME"}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{**GOOD, "colour": "blue"}], "entry 1 ('acme'): colour: Extra inputs are not permitted"),
        ([{**GOOD, "id": "Acme Corp"}], "entry 1 ('Acme Corp'): id: String should match pattern"),
        ([{"id": "acme", "tier": "hourly"}], "give exactly one of token_env (a variable name) or token_file"),
        ([{**GOOD, "token_file": "/run/secrets/acme"}], "give exactly one of token_env"),
        ([GOOD, {**GOOD, "tier": "daily"}], "entry 2 ('acme'): tenant id 'acme' is listed twice"),
        ([{**GOOD, "tier": "weekly"}], "tier: Input should be 'hourly' or 'daily'"),
        ([{**GOOD, "budget_per_hour": 100, "budget_share": 0.5}], "budget_per_hour or budget_share, not both"),
        ([{**GOOD, "budget_share": 1.5}], "budget_share: Input should be less than or equal to 1"),
        (["acme"], "entry 1 must be a mapping"),
    ],
)
def test_a_bad_entry_is_one_clear_error_naming_it(entries: list, message: str) -> None:
    with pytest.raises(TenantConfigError) as error:
        parse_tenants({"tenants": entries})
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "expected a top-level `tenants:` list"),
        ({"tenant": []}, "expected a top-level"),
        ({"tenants": [], "x": 1}, "unknown top-level"),
    ],
)
def test_a_malformed_file_says_what_shape_is_expected(raw: object, message: str) -> None:
    with pytest.raises(TenantConfigError, match=message):
        parse_tenants(raw)


def test_a_missing_file_names_the_variable_to_set(tmp_path: Path) -> None:
    with pytest.raises(TenantConfigError, match="DRIPFEED_TENANTS_FILE"):
        load_tenants(tmp_path / "nope.yaml")


def test_the_demo_tenants_file_is_valid() -> None:
    tenants = load_tenants("demo/tenants.yaml")
    assert {t.tier for t in tenants.values()} == {"hourly", "daily"}


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
    secret.write_text("")
    with pytest.raises(TenantConfigError, match=f"tenant 'acme'.*secret file {secret}"):
        tenant.read_token()


def test_yaml_dates_become_dates(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"tenants": [{**GOOD, "history_since": "2024-01-01"}]}))
    assert str(load_tenants(path)["acme"].history_since) == "2024-01-01"
