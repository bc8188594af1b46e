"""The shared budget's window logic, driven with explicit clock values on a real control store."""

from __future__ import annotations

from pathlib import Path

import pytest

from resources.control.rate_budget import PROBE_WAIT_SECONDS, Grant, RateBudget, Settlement, Wait
from resources.control.store import ControlStore
from resources.tenants import Tenant

TENANT = Tenant(id="acme", tier="hourly", token_env="TASKLANE_TOKEN_ACME", budget_share=0.5)
R1 = 1_800_000_000  # a vendor reset, aligned to a 10 s window


def headers(remaining: int, reset: int, limit: int = 20) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset)}


@pytest.fixture
def budget(tmp_path: Path) -> RateBudget:
    return RateBudget(ControlStore(str(tmp_path / "control.sqlite3")))


def test_until_the_window_is_known_one_probe_asks_and_others_wait_briefly(budget: RateBudget) -> None:
    probe = budget.exchange(TENANT, None, now=R1 - 5)
    assert isinstance(probe, Grant) and probe.calls == 1
    other = budget.exchange(TENANT, None, now=R1 - 5)
    assert isinstance(other, Wait) and other.seconds == PROBE_WAIT_SECONDS
    block = budget.exchange(TENANT, Settlement(probe, 1, 0, headers(19, R1)), now=R1 - 4.9)
    assert isinstance(block, Grant) and block.window_reset == R1 and block.calls == 4  # half of the 9 left of 10


def test_a_new_window_of_unknown_length_never_waits_for_a_guessed_reset(budget: RateBudget) -> None:
    probe = budget.exchange(TENANT, None, now=R1 - 5)
    spent = budget.exchange(TENANT, Settlement(probe, 1, 0, headers(19, R1)), now=R1 - 4)
    budget.settle(TENANT, Settlement(spent, spent.calls, 0, headers(19 - spent.calls, R1)))
    # The window rolled, and with one reset seen its length is still unknown:
    first = budget.exchange(TENANT, None, now=R1 + 1)
    second = budget.exchange(TENANT, None, now=R1 + 1)
    assert isinstance(first, Grant) and first.calls == 1
    assert isinstance(second, Wait) and second.seconds < 1, "no hour-long wait on a guessed reset"
    after = budget.exchange(TENANT, Settlement(first, 1, 0, headers(19, R1 + 10)), now=R1 + 1.1)
    assert isinstance(after, Grant) and after.window_reset == R1 + 10
    assert budget.window("acme")["window_seconds"] == 10
    budget.settle(TENANT, Settlement(after, after.calls, 0, headers(19 - after.calls, R1 + 10)))
    learned = budget.exchange(TENANT, None, now=R1 + 10.6)  # the length is known: the reset is arithmetic
    assert isinstance(learned, Grant) and learned.window_reset == R1 + 20 and learned.calls > 1


def test_a_spent_window_waits_for_its_reset(budget: RateBudget) -> None:
    grant = budget.exchange(TENANT, None, now=R1 - 5)
    while isinstance(grant, Grant):
        grant = budget.exchange(TENANT, Settlement(grant, grant.calls, 0, headers(10, R1)), now=R1 - 5)
    assert isinstance(grant, Wait) and 5 <= grant.seconds <= 5.6
    assert budget.window("acme")["spent"] == 10


def test_uncounted_calls_are_refunded_and_other_clients_shrink_the_cap(budget: RateBudget) -> None:
    probe = budget.exchange(TENANT, None, now=R1 - 5)
    block = budget.exchange(TENANT, Settlement(probe, 0, 1, headers(20, R1)), now=R1 - 5)  # a 304: refunded
    assert budget.window("acme")["spent"] == block.calls
    budget.settle(TENANT, Settlement(block, 1, 0, headers(2, R1)))  # someone else spent 17 of 20
    assert budget.window("acme")["vendor_cap"] == 1 + 2
