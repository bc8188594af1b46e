"""A run's process yields the CPU to the ticks: under Dagster's default run launcher the code server
starts each run with multiprocessing's spawn context (dagster/_grpc/server.py, StartRun), and the
process that loads dripfeed's definitions there lowers its priority; the code server does not. An
onboarding run yields to the tiers' runs too, from its first step."""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.queues import Queue

import pytest

from pipeline_assets.run_priority import yield_cpu_if_a_run, yield_cpu_to_the_tiers
from pipeline_assets.run_tags import TIER_TAG


def _load_as_a_run(niceness: int, found: Queue) -> None:
    found.put((yield_cpu_if_a_run(niceness), os.getpriority(os.PRIO_PROCESS, 0)))


@pytest.mark.parametrize(
    ("setting", "expected"),
    [(10, 10), (19, 19), (40, 19), (0, None)],
    ids=["default", "lowest", "past-the-lowest", "off"],
)
def test_a_run_started_as_the_code_server_starts_runs_runs_at_the_set_niceness(
    setting: int, expected: int | None
) -> None:
    context = multiprocessing.get_context("spawn")
    found: Queue = context.Queue()
    process = context.Process(target=_load_as_a_run, args=(setting, found))
    process.start()
    returned, niceness = found.get(timeout=60)
    process.join(timeout=60)
    assert returned == expected
    assert niceness == (expected if expected is not None else os.getpriority(os.PRIO_PROCESS, 0))


def test_the_code_server_daemon_and_webserver_keep_their_priority() -> None:
    before = os.getpriority(os.PRIO_PROCESS, 0)
    assert yield_cpu_if_a_run(10) is None
    assert os.getpriority(os.PRIO_PROCESS, 0) == before


def _step_of_a_run(niceness: int, tier: str, found: Queue) -> None:
    yield_cpu_if_a_run(niceness)
    found.put((yield_cpu_to_the_tiers({TIER_TAG: tier}), os.getpriority(os.PRIO_PROCESS, 0)))


@pytest.mark.parametrize(
    ("setting", "tier", "expected"),
    [(10, "onboarding", 19), (10, "hourly", None), (10, "daily", None), (0, "onboarding", None)],
    ids=["onboarding", "hourly", "daily", "runs-left-alone"],
)
def test_an_onboarding_run_takes_the_lowest_priority_when_its_step_starts(
    setting: int, tier: str, expected: int | None
) -> None:
    context = multiprocessing.get_context("spawn")
    found: Queue = context.Queue()
    process = context.Process(target=_step_of_a_run, args=(setting, tier, found))
    process.start()
    returned, niceness = found.get(timeout=60)
    process.join(timeout=60)
    assert returned == expected
    left = setting or os.getpriority(os.PRIO_PROCESS, 0)  # a tier's run keeps the runs' niceness
    assert niceness == (expected if expected is not None else left)
