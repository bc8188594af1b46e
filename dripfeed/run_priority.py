"""Runs yield the CPU to the ticks that decide them.

On one machine the tier's ticks, the sensors and the runs they launch share the cores. When a tick
requests dozens of runs at once, eight run processes can fill two cores for minutes, and the next
tick, which must probe hundreds of tenants within its time, then gets a fraction of a core: its
tenants are not reached and wait for the tick after. A run's work can wait a few seconds; a tick's
cannot. So a run's process lowers its own scheduling priority (`nice`) as its code is loaded.

Under Dagster's default run launcher a run is a child process that the code server starts with
`multiprocessing` (dagster/_grpc/server.py, StartRun); that is how a run's process is told apart
from the code server, the daemon and the webserver, which load the code too and keep their
priority. A run launched elsewhere (a container per run, `dagster asset materialize` in a shell)
has the machine or its container to itself and is left as it is.
"""

from __future__ import annotations

import multiprocessing
import os

DEFAULT_NICENESS = 10


def yield_cpu_if_a_run(niceness: int) -> int | None:
    """Lower this process's priority to `niceness` if it is a run's process under the default run
    launcher (never raise it); the niceness it runs at then, or None when it was left alone."""
    if niceness <= 0 or multiprocessing.parent_process() is None:
        return None
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < niceness:
        os.setpriority(os.PRIO_PROCESS, 0, min(niceness, 19))
    return os.getpriority(os.PRIO_PROCESS, 0)
