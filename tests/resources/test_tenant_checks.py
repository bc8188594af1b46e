"""A tenant's failure episode ends only when the tenant is shown to work again: a probe that Tasklane
answered (current) or a completed sync, not a run requested (changed, onboarding) or a probe that
did not reach it."""

from __future__ import annotations

import pytest

from resources.control.tenant_checks import Outcome, TenantCheck

FAILED_AT = 1000.0


@pytest.mark.parametrize(
    ("outcome", "still_failing"),
    [
        (Outcome.CURRENT, False),
        (Outcome.SYNCED, False),
        (Outcome.CHANGED, True),  # e.g. a revoked tenant never synced: its probe asks nothing, its run fails
        (Outcome.ONBOARDING, True),
        (Outcome.UNREACHED, True),
    ],
)
def test_a_failure_ends_only_when_the_tenant_is_shown_to_work(outcome: Outcome, still_failing: bool) -> None:
    failing = TenantCheck("acme", known_since=0.0).after(Outcome.FAILED, "401", FAILED_AT, "auth", alerted=True)
    later = failing.after(outcome, "what the next check found", FAILED_AT + 60)
    assert (later.failing_since, later.error_class, later.failure_alerted) == (
        (FAILED_AT, "auth", True) if still_failing else (None, None, False)
    )
    assert later.outcome is outcome and later.checked_at == FAILED_AT + 60
