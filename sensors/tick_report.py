"""What a tick says about the tenants it could not serve, where an operator sees it in the UI.

A tick's history row (Overview → a schedule or sensor → its ticks) shows the runs it requested, or
its skip reason, or its error; its "logs" show every line the tick wrote through `context.log`.
Dagster allows a skip reason only on a tick that requests nothing, so each tenant left out is a
line in the tick's log, always, and the skip reason of a tick that requests nothing repeats the
first few. A tick fails (its error in the history row) only when tenants.yaml cannot be read at
all: then there is nothing to run.

One tenant's trouble never ends the tick for the others: each tenant's part runs `on_its_own`,
where an unexpected error is reported by the tenant's name instead of raised.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from resources.tenant_registry import TenantRegistry
from resources.tenants import TenantsFile, printable, shown_id

SHOWN_IN_SKIP_REASON = 3  # the rest are in the tick's log


class TickReport:
    """The tenants one tick left out, and why: logged as they happen, summed up for a skip reason."""

    def __init__(self, context: dg.SensorEvaluationContext | dg.ScheduleEvaluationContext) -> None:
        self.log: logging.Logger = context.log
        self.left_out: list[str] = []

    def read_tenants(self, registry: TenantRegistry) -> TenantsFile:
        """tenants.yaml, each of its skipped entries reported (a TenantConfigError, when the file
        cannot be read at all, fails the tick with a message naming the file)."""
        loaded = registry.read()
        for entry in loaded.skipped:
            self.leave_out(f"{Path(loaded.path).name} {entry.name} is skipped: {entry.reason}")
        return loaded

    def leave_out(self, line: str, level: int = logging.WARNING) -> None:
        """A tenant (or an entry) this tick does not serve, and why."""
        self.left_out.append(line)
        self.log.log(level, line)

    def skip_reason(self, headline: str) -> str:
        """`headline`, then the first tenants left out (the tick's log has them all)."""
        if not self.left_out:
            return headline
        shown = " | ".join(self.left_out[:SHOWN_IN_SKIP_REASON])
        more = len(self.left_out) - SHOWN_IN_SKIP_REASON
        return f"{headline}. Left out: {shown}" + (f" | and {more} more (see the tick's log)" if more > 0 else "")

    @contextmanager
    def on_its_own(self, tenant_id: str) -> Iterator[None]:
        """One tenant's part of the tick: an unexpected error in it (a malformed answer, a bug, a bad
        row in the control store) is reported with the tenant's name, and the tick goes on."""
        try:
            yield
        except Exception as error:  # one tenant's failure must not end the tick for all
            self.unexpected(tenant_id, error)

    def unexpected(self, tenant_id: str, error: Exception) -> None:
        self.leave_out(
            f"tenant {shown_id(tenant_id)}: {type(error).__name__}: {printable(str(error), 300)}; the other "
            "tenants are served (a malformed answer or a dripfeed bug: report it if it repeats)",
            logging.ERROR,
        )
