"""Settings read from the environment by more than one of dripfeed's processes: the code location
(definitions.py) and the metrics endpoint (metrics/) must agree on the tiers' periods."""

import os

from resources.tiers import TIERS, Tier, make_tier


def number(name: str, default: float) -> float:
    raw = os.environ.get(name, str(default))
    try:
        return float(raw)
    except ValueError:
        raise RuntimeError(f"{name}={raw!r} is not a number (docs/configuration.md)") from None


def tier_setting(default: Tier) -> Tier:
    """A tier's period and tick, shortened for tests, demos and benchmarks by
    DRIPFEED_<TIER>_PERIOD_MINUTES and DRIPFEED_<TIER>_TICK_MINUTES (the longest tick wanted)."""
    period_name = f"DRIPFEED_{default.name.upper()}_PERIOD_MINUTES"
    tick_name = f"DRIPFEED_{default.name.upper()}_TICK_MINUTES"
    period = os.environ.get(period_name, str(default.period_minutes))
    tick = os.environ.get(tick_name, str(default.tick_minutes))
    try:
        return make_tier(default.name, int(period), int(tick), default.grace)
    except ValueError:  # not a whole number, or a period that does not divide a day
        raise RuntimeError(
            f"{period_name}={period!r}, {tick_name}={tick!r}: give whole minutes, a period that divides a day "
            "(1440) and a tick of at least a minute, e.g. 60 and 5"
        ) from None


def configured_tiers() -> dict[str, Tier]:
    """Every tier, with the periods and ticks the environment sets."""
    return {name: tier_setting(default) for name, default in TIERS.items()}
