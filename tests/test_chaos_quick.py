"""The quick reliability campaign (`python -m chaos --quick`, RELIABILITY.md) holds issue 14's goals:
no record differs from the ground truth after faults, crashes or a token rotation, no secret is found
anywhere, nobody triggers a lockout, and no tick fails because of another tenant."""

from __future__ import annotations

import pytest

from chaos.__main__ import run_campaign
from chaos.report import Row, table


def values(rows: list[Row], *words: str) -> dict[str, str]:
    """The figures whose name holds all of `words`, by segment and name."""
    return {f"{r.segment}: {r.figure}": r.value for r in rows if all(w in r.figure for w in words)}


@pytest.mark.e2e  # dagster CLI runs, a real simulator, SIGKILLed process trees
@pytest.mark.timeout(600)
def test_the_quick_campaign_meets_the_goals() -> None:
    campaign = run_campaign(quick=True)
    shown = table(campaign.rows)
    assert not values(campaign.rows, "segment ran to its end"), shown
    mismatches = values(campaign.rows, "mismatches") | values(campaign.rows, "not equal to the ground truth")
    assert mismatches and set(mismatches.values()) == {"0"}, shown
    assert values(campaign.rows, "leaked secrets") == {"secrets: leaked secrets": "0"}, shown
    assert values(campaign.rows, "lockouts dripfeed triggered") == {"throttling: lockouts dripfeed triggered": "0"}
    ticks = values(campaign.rows, "tick failures caused by another tenant")
    assert ticks == {"throttling: tick failures caused by another tenant": "0"}, shown
    # Goal ≤ 120 s alone; `make test` runs another test file beside it, on the same two cores.
    assert campaign.seconds <= 360, f"the quick campaign took {campaign.seconds:.0f} s (goal ≤ 120 s)"
