"""Tests that spend a tenant's hourly budget must not straddle the clock hour, where it renews."""

from __future__ import annotations

import time

HOUR = 3600


def clear_of_the_hours_end(margin_seconds: float = 120) -> None:
    """Wait for the next hour if this one ends within `margin_seconds`: the vendor's windows and
    dripfeed's budget are aligned to the clock hour, and a renewed budget mid-test changes its counts;
    so is the hourly tier's period, whose ticks count a tenant served by the runs created since it
    began, by the real clock (a test's runs created after the hour would count for the next one)."""
    left = HOUR - time.time() % HOUR
    if left < margin_seconds:
        time.sleep(left + 1)


def window_resetting_in(low: float, high: float) -> int:
    """A window length (the simulator's windows are clock-aligned) whose reset is low..high s away."""
    now = time.time()
    return next(w for w in range(int(low) + 1, 7200) if low <= w - now % w <= high)
