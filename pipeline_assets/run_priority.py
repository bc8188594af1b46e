"""Runs yield the CPU to the ticks that decide them, and new tenants' runs to the tiers' runs.

On one machine the tier's ticks, the sensors and the runs they launch share the cores. When a tick
requests dozens of runs at once, eight run processes can fill two cores for minutes, and the next
tick, which must probe hundreds of tenants within its time, then gets a fraction of a core: its
tenants are not reached and wait for the tick after. A run's work can wait a few seconds; a tick's
cannot. So a run's process lowers its own scheduling priority (`nice`) as its code is loaded.

Onboarding runs (ten thousand new tenants' first syncs, history loads) can wait longest of all: a
tier's tenant must be synced within its period, a new tenant only eventually. When its first step
starts, such a run drops to the lowest priority, so its first syncs take the CPU the tiers leave and
onboarding slows down, instead of the tiers, on a machine it would fill.

Under Dagster's default run launcher a run is a child process that the code server starts with
`multiprocessing` (dagster/_grpc/server.py, StartRun); that is how a run's process is told apart
from the code server, the daemon and the webserver, which load the code too and keep their
priority. A run launched elsewhere (a container per run, `dg launch` in a shell)
has the machine or its container to itself and is left as it is.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping

from .run_tags import ONBOARDING, TIER_TAG

DEFAULT_NICENESS = 10
LOWEST = 19  # an onboarding run's niceness

_yielded = False  # this process is a run's, and lowered its priority


def yield_cpu_if_a_run(niceness: int) -> int | None:
    """Lower this process's priority to `niceness` if it is a run's process under the default run
    launcher (never raise it); the niceness it runs at then, or None when it was left alone."""
    global _yielded
    if niceness <= 0 or multiprocessing.parent_process() is None:
        return None
    _lower_to(niceness)
    _yielded = True
    return os.getpriority(os.PRIO_PROCESS, 0)


def yield_cpu_to_the_tiers(run_tags: Mapping[str, str]) -> int | None:
    """In an onboarding run whose process yielded its CPU, yield all of it that others want; the
    niceness it runs at then, or None when it was left alone."""
    if not _yielded or run_tags.get(TIER_TAG) != ONBOARDING:
        return None
    _lower_to(LOWEST)
    return os.getpriority(os.PRIO_PROCESS, 0)


def _lower_to(niceness: int) -> None:
    if os.getpriority(os.PRIO_PROCESS, 0) < niceness:
        os.setpriority(os.PRIO_PROCESS, 0, min(niceness, LOWEST))
