"""Compute logs without helper processes, for the instances dripfeed ships (`demo/`, `deploy/`).

Dagster's LocalComputeLogManager mirrors a run's stdout and stderr to files through a `tail -F`
per stream, each watched by a Python process of its own: four processes for every run, more than
the run itself. This manager captures the same two streams into the same files (so the UI shows
them as before) and copies them on to where they went before (the terminal of `dg launch`, the
daemon's log) from a thread in the run's own process. Sensor and schedule logs are written as
Dagster always writes them.

Enable it in dagster.yaml:

    compute_logs:
      module: dripfeed.compute_logs
      class: ThreadedComputeLogManager
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, TextIO

import dagster as dg
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file

CHUNK = 65536
STOP_WAIT_SECONDS = 5.0  # a process the run started may keep the stream open after the run: do not wait for it


class ThreadedComputeLogManager(LocalComputeLogManager):
    """LocalComputeLogManager whose capture is a pipe and a thread instead of `tail` processes."""

    def __init__(
        self,
        base_dir: str | None = None,
        polling_timeout: float | None = None,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        super().__init__(base_dir or "", polling_timeout, inst_data)
        self._base_dir_configured = base_dir is not None

    def register_instance(self, instance: dg.DagsterInstance) -> None:
        """Without a base_dir, keep the logs where Dagster's default does: the instance's `storage/`.

        (The instance's own directory, not DAGSTER_HOME's: an instance opened from another
        directory would otherwise write its logs under the working directory.)
        """
        super().register_instance(instance)
        if not self._base_dir_configured:
            self._base_dir = os.path.join(instance.root_directory, "storage")

    @classmethod
    def config_type(cls) -> dict[str, dg.Field]:
        return {
            "base_dir": dg.Field(dg.StringSource, is_required=False),
            "polling_timeout": dg.Field(dg.Float, is_required=False),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> ThreadedComputeLogManager:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        with ExitStack() as captures:
            for stream, io_type in ((sys.stdout, ComputeIOType.STDOUT), (sys.stderr, ComputeIOType.STDERR)):
                path = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[io_type])
                captures.enter_context(_copied_to_file(stream, path))
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # what tells the UI that the capture is complete


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # a test runner's stand-in for stdout
        return None


@contextmanager
def _copied_to_file(stream: TextIO, path: str) -> Iterator[None]:
    """Point the stream's file descriptor at a pipe; a thread appends what arrives to `path` and
    writes it on to where the descriptor pointed before."""
    ensure_file(path)
    fd = _fileno(stream)
    if fd is None:
        yield
        return
    stream.flush()
    original = os.dup(fd)
    read_end, write_end = os.pipe()
    os.dup2(write_end, fd)
    os.close(write_end)
    copier = threading.Thread(
        target=_copy, args=(read_end, path, original), name=f"dripfeed-log-copy-{fd}", daemon=True
    )
    copier.start()
    try:
        yield
    finally:
        stream.flush()
        os.dup2(original, fd)  # the pipe's write end is closed with it: the copier reads to the end, then stops
        copier.join(STOP_WAIT_SECONDS)
        if not copier.is_alive():
            os.close(read_end)
            os.close(original)


def _copy(source: int, path: str, echo: int) -> None:
    with open(path, "ab", buffering=0) as log:
        while chunk := os.read(source, CHUNK):
            log.write(chunk)
            with suppress(OSError):  # the terminal or log it went to is gone; the file still gets everything
                _write_all(echo, chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
