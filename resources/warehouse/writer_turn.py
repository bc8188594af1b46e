"""A process's turn at a DuckDB file, held from before its first connection opens until after its
last one has closed.

DuckDB lets one process at a time open a file (its own fcntl lock), yet processes handing one file
to each other lost a committed batch now and then: 3 runs of 14 with eight processes writing 30
batches each on two busy cores (tests/resources/test_warehouse.py has the small version), every
process exiting as if all was well. Why DuckDB's lock lets that happen is not pinned down. So
dripfeed's processes also take turns with flock on `<file>.lock`, a turn ending only once the
process's last `close()` has returned (its checkpoint written, the file closed): with it, no batch
was lost in 35 such runs. DuckDB's own lock still shuts out any other program (the DuckDB CLI, a
notebook). The lock file must be on a local disk: flock over NFS needs write access.
"""

from __future__ import annotations

import fcntl
import os
import threading
from typing import ClassVar


class TurnTaken(Exception):
    """Another process has its turn at the file."""


class WriterTurn:
    """This process's turn at one DuckDB file, shared by all of its connections to it (DuckDB hands
    a second connection in one process the same open database)."""

    _turns: ClassVar[dict[str, WriterTurn]] = {}
    _turns_mutex: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, lock_path: str) -> None:
        self.lock_path = lock_path
        self._fd: int | None = None
        self._holders = 0
        self._mutex = threading.Lock()

    @classmethod
    def of(cls, database: str) -> WriterTurn:
        """The turn of this process at `database`, one per file however it is named."""
        key = os.path.realpath(database)
        with cls._turns_mutex:
            if key not in cls._turns:
                cls._turns[key] = cls(key + ".lock")
            return cls._turns[key]

    def take(self) -> None:
        """Take the turn (again, for another connection), or raise TurnTaken at once."""
        with self._mutex:
            if self._holders == 0:
                # read-only: flock needs no write access, so another user running runs can lock it too
                fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise TurnTaken(self.lock_path) from None
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._holders += 1

    def give_back(self) -> None:
        """One connection closed: the last one gives the turn back."""
        with self._mutex:
            if self._holders <= 0:
                raise RuntimeError(f"the turn at {self.lock_path} was given back more often than it was taken")
            self._holders -= 1
            if self._holders == 0 and self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)  # closing the file releases the flock

    def _forget_in_child(self) -> None:
        """A forked child holds no connection: it drops its copy of the file, which leaves the
        parent's flock in place (the lock belongs to the open file, which the parent keeps)."""
        self._mutex = threading.Lock()
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._holders = None, 0


def _forget_turns_in_child() -> None:
    WriterTurn._turns_mutex = threading.Lock()
    for turn in WriterTurn._turns.values():
        turn._forget_in_child()


os.register_at_fork(after_in_child=_forget_turns_in_child)
