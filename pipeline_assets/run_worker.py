"""Which process runs a run, recorded on the run so that a run whose process died can be told apart
from one still working.

Under Dagster's default run launcher, the code server that launched a run fails it when the run's
process dies, but only while that code server lives: a run whose process died together with it
(the daemon's process group killed, the machine restarted), or ran outside one (`dg launch`),
stays STARTED for ever, and the run queue's one-run-per-tenant limit then holds the tenant's
every next run QUEUED. Each step of a tenant's sync records its process here as the
run tag `dripfeed/run_worker`, and the `dead_run_workers` sensor (sensors/dead_run_workers.py)
fails the STARTED runs whose recorded process is gone from its host.

A process is named by its host, its boot, its pid and its start time (in clock ticks since boot,
from /proc): a pid reused by another process after the worker died does not pass for it, and a
machine restarted since does not either. Linux only, where /proc is; elsewhere nothing is
recorded and nothing is checked. Only a run whose steps execute in its own process records one
(dripfeed's definitions use the in-process executor): under a multiprocess executor a step's
process ends with the step while the run goes on, and recording it would get a healthy run failed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import dagster as dg

WORKER_TAG = "dripfeed/run_worker"
PROC = Path("/proc")
# Executors that run every step in the run's own process: `in_process`, and the one behind
# `dg.materialize` and `execute_in_process`.
IN_PROCESS_EXECUTORS = frozenset({"in_process", "execute_in_process_executor"})


@dataclass(frozen=True)
class Worker:
    host: str
    boot: str
    pid: int
    started: str  # clock ticks since boot, /proc/<pid>/stat's 22nd field

    def tag(self) -> str:
        return f"{self.host}/{self.boot}/{self.pid}/{self.started}"

    @classmethod
    def from_tag(cls, value: str) -> Worker | None:
        parts = value.split("/")  # a host name holds no slash
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(host=parts[0], boot=parts[1], pid=int(parts[2]), started=parts[3])


class Liveness(StrEnum):
    ALIVE = "alive"
    GONE = "gone"  # no process with that pid and start time on this host since its boot
    ELSEWHERE = "elsewhere"  # recorded on another host: this one cannot tell


def _boot_id() -> str | None:
    try:
        return (PROC / "sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """The process's start time, or None when there is no such process or it is a zombie (dead,
    not yet reaped by its parent)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": comm may hold spaces
    state, started = fields[0], fields[19]
    return None if state in ("Z", "X") else started


def this_process() -> Worker | None:
    """This process, as a run records it; None where /proc is not."""
    boot, pid = _boot_id(), os.getpid()
    started = _start_ticks(pid)
    if boot is None or started is None:
        return None
    return Worker(host=socket.gethostname(), boot=boot, pid=pid, started=started)


def liveness(worker: Worker) -> Liveness:
    """Whether the recorded process still runs, judged from this host."""
    if worker.host != socket.gethostname():
        return Liveness.ELSEWHERE
    boot = _boot_id()
    if boot is None:
        return Liveness.ELSEWHERE
    if boot != worker.boot:  # this host was restarted since: every process of that boot is gone
        return Liveness.GONE
    return Liveness.ALIVE if _start_ticks(worker.pid) == worker.started else Liveness.GONE


_recorded: set[str] = set()  # the runs this process has tagged: its later steps write nothing


def steps_run_in_the_runs_process(executor: dg.ExecutorDefinition) -> bool:
    """Whether a step's process is its run's, so that its death is the run's."""
    return executor.name in IN_PROCESS_EXECUTORS


def record_run_worker(context: dg.AssetExecutionContext) -> None:
    """Tag the run with its process, in its first step."""
    if not steps_run_in_the_runs_process(context.job_def.executor_def):
        return
    run_id = context.run.run_id
    worker = this_process()
    if worker is not None and run_id not in _recorded and context.run.tags.get(WORKER_TAG) != worker.tag():
        context.instance.add_run_tags(run_id, {WORKER_TAG: worker.tag()})
        _recorded.add(run_id)
