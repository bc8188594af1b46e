"""Doing something every few milliseconds or seconds in a thread while a block runs: sampling a
process tree's memory, recording the processes a run starts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def every(seconds: float, action: Callable[[], object]) -> Iterator[None]:
    """Call `action` every `seconds` until the block ends, or until it returns False (what it watches
    is gone); the block's end waits for the current call."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            if action() is False:
                return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
