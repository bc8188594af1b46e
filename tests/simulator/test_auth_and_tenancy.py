"""Contract: Tenancy and auth."""

from __future__ import annotations

import pytest

from tasklane_sim import SimServer
from tests.support.simulator import workspace_config
from tests.support.tasklane_client import TasklaneClient


@pytest.mark.parametrize(
    ("authorization", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("Basic dXNlcjpwYXNz", 401, "unauthorized"),
        ("Bearer", 401, "unauthorized"),
        ("Bearer not-a-token", 401, "unauthorized"),
        ("Bearer token-globex", 403, "forbidden"),
        ("Bearer token-acme", 200, None),
        ("bearer token-acme", 200, None),
    ],
)
def test_authorization_header_decides_401_403_or_200(
    sim: SimServer, authorization: str | None, status: int, code: str | None
) -> None:
    client = TasklaneClient(sim.base_url, "acme", None)
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("tasks", headers=headers)
    assert response.status_code == status
    if code:
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["message"]


def test_unknown_workspace_is_404(sim: SimServer) -> None:
    response = TasklaneClient(sim.base_url, "nobody", "token-acme").get("tasks")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_revoked_token_is_401_on_the_next_request_and_counts_one_call(sim: SimServer, acme: TasklaneClient) -> None:
    assert acme.get("users").status_code == 200
    sim.admin.revoke_token("acme", "token-acme")
    sim.admin.reset_counters("acme")
    response = acme.get("users")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]
    assert "token-acme" not in response.text
    totals = sim.admin.counters("acme")["totals"]
    assert totals["requests"] == 1
    assert totals["counted"] == 1


def test_a_second_token_of_the_workspace_shares_its_data(sim: SimServer, acme: TasklaneClient) -> None:
    sim.admin.add_token("acme", "rotated-token")
    rotated = TasklaneClient(sim.base_url, "acme", "rotated-token")
    assert rotated.get("projects").json() == acme.get("projects").json()


def test_expired_token_is_401(make_sim) -> None:
    sim = make_sim(workspace_config("acme", tokens=[{"value": "old", "expires_at": "2020-01-01T00:00:00Z"}]))
    response = TasklaneClient(sim.base_url, "acme", "old").get("tasks")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


@pytest.mark.parametrize("invalid", ["revoked", "expired"])
def test_a_token_that_is_not_valid_is_401_on_any_workspace_even_another_ones(make_sim, invalid: str) -> None:
    globex_tokens = (
        ["token-globex"] if invalid == "revoked" else [{"value": "token-globex", "expires_at": "2020-01-01T00:00:00Z"}]
    )
    sim = make_sim(workspace_config("acme"), workspace_config("globex", tokens=globex_tokens))
    if invalid == "revoked":
        sim.admin.revoke_token("globex", "token-globex")
    for workspace in ("acme", "globex"):  # its own workspace, and another one's
        response = TasklaneClient(sim.base_url, workspace, "token-globex").get("tasks")
        assert response.status_code == 401, (workspace, response.text)
        assert invalid in response.json()["error"]["message"]
