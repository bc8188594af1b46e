"""Bad input gets the contract's error codes, never a stack trace or a 500."""

from __future__ import annotations

import random
import string
import subprocess
import sys

import pytest
import yaml

from tasklane_sim import ConfigError, SimServer, parse_config
from tests.support.simulator import workspace_config
from tests.support.tasklane_client import TasklaneClient


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("GET", "comments", {}, 404, "not_found"),
        ("GET", "tasks/extra/segments", {}, 404, "not_found"),
        ("PUT", "tasks", {}, 405, "method_not_allowed"),
        ("POST", "exports", {"data": b"\xff\xfe not json", "headers": {"Idempotency-Key": "k"}}, 400, "bad_request"),
        ("POST", "exports", {"data": b"[1, 2", "headers": {"Idempotency-Key": "k"}}, 400, "bad_request"),
        ("POST", "webhooks", {"data": b"null"}, 400, "bad_request"),
        ("GET", "exports/../../etc/passwd", {}, 404, "not_found"),
        ("GET", "tasks?include_deleted=yes", {}, 400, "bad_request"),
        ("GET", "tasks?limit=99999999999999999999", {}, 400, "bad_request"),
        ("GET", "tasks?updated_since=%00", {}, 400, "bad_request"),
    ],
)
def test_bad_requests_get_the_contract_error_body(
    acme: TasklaneClient, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:
    response = acme.session.request(method, acme.url(path), timeout=10, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert "Traceback" not in response.text


def test_random_query_strings_never_cause_a_500(acme: TasklaneClient) -> None:
    rng = random.Random(3)
    alphabet = string.printable + "é🚀\u0000"
    for _ in range(300):
        params = {
            rng.choice(["limit", "cursor", "updated_since", "include_deleted", "status", "x"]): "".join(
                rng.choice(alphabet) for _ in range(rng.randint(0, 40))
            )
            for _ in range(rng.randint(1, 3))
        }
        for path in ("tasks", "exports"):
            response = acme.get(path, params=params)
            assert response.status_code < 500, (params, response.text)
            if response.status_code >= 400:
                assert "error" in response.json()


@pytest.mark.parametrize(
    ("knobs", "problem"),
    [
        ({"rate_limit": -1}, "rate_limit"),
        ({"no_such_knob": 1}, "no_such_knob"),
        ({"faults": {"error_rate": 2}}, "error_rate"),
    ],
)
def test_bad_admin_knobs_are_400_and_change_nothing(sim: SimServer, knobs: dict, problem: str) -> None:
    before = sim.admin.knobs("acme")
    response = sim.admin.session.patch(f"{sim.base_url}/_sim/workspaces/acme/knobs", json=knobs)
    assert response.status_code == 400 and problem in response.json()["error"]["message"]
    assert sim.admin.knobs("acme") == before


def test_the_admin_api_needs_the_admin_token(sim: SimServer, acme: TasklaneClient) -> None:
    response = acme.session.get(f"{sim.base_url}/_sim/workspaces/acme/counters")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("workspaces", "message"),
    [
        ([workspace_config("acme"), workspace_config("acme")], "listed twice"),
        ([workspace_config("Bad Id!")], "is not a workspace id"),
        ([workspace_config("acme", tokens=[{"env": "NO_SUCH_TOKEN_VAR_X"}])], "NO_SUCH_TOKEN_VAR_X"),
        ([workspace_config("acme", records={"tasks": -5})], "records.tasks"),
        ([workspace_config("acme", surprise=True)], "surprise"),
    ],
)
def test_a_bad_config_is_a_clear_error_naming_the_entry(workspaces: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimServer({"admin_token": "a", "workspaces": workspaces}).start()


def test_two_workspaces_cannot_share_a_token() -> None:
    config = parse_config(
        {"admin_token": "a", "workspaces": [workspace_config("a", tokens=["t"]), workspace_config("b", tokens=["t"])]}
    )
    with pytest.raises(ConfigError, match="already used by workspace 'a'"):
        SimServer(config).start()


def test_the_cli_reports_a_bad_config_without_a_traceback(tmp_path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump({"admin_token": "a", "workspaces": [{"id": "UPPER", "tokens": ["t"]}]}))
    result = subprocess.run(
        [sys.executable, "-m", "tasklane_sim", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "is not a workspace id" in result.stderr and "Traceback" not in result.stderr
