"""tenants.yaml as a new process reads it, as each run does. In a module of its own, which imports
no Dagster, so that a test's new process starts in a fraction of a second."""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue
from pathlib import Path

from resources import tenants
from resources.tenants import load_tenants


def _load_in_a_new_process(path: Path, may_parse_yaml: bool, found: Queue) -> None:
    """What a run's process makes of tenants.yaml; `may_parse_yaml` False: its YAML parser fails."""
    if not may_parse_yaml:
        tenants.yaml.load = lambda *args, **kwargs: (_ for _ in ()).throw(AssertionError("parsed the YAML"))
    try:
        loaded = load_tenants(path)
        found.put(({key: tenant.model_dump() for key, tenant in loaded.tenants.items()}, loaded.skipped))
    except Exception as error:
        found.put(error)


def load_in_a_new_process(path: Path, may_parse_yaml: bool = True) -> tuple[dict, tuple]:
    context = multiprocessing.get_context("spawn")
    found: Queue = context.Queue()
    process = context.Process(target=_load_in_a_new_process, args=(path, may_parse_yaml, found))
    process.start()
    result = found.get(timeout=60)
    process.join(timeout=60)
    if isinstance(result, Exception):
        raise result
    return result
