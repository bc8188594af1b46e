"""The demo instance's run queue: one in-flight run per tenant, and room kept for the live tiers; and
its run retries, which retry a tenant run whose process died, from every step, and no other."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef  # how `dagster dev` reads $DAGSTER_HOME/dagster.yaml
from dagster._core.scheduler.instigation import InstigatorType

from pipeline_assets.jobs import sync_tenant

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_instance_limits_runs_per_tenant_and_for_onboarding(tmp_path: Path) -> None:
    shutil.copy(ROOT / "demo" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        config = instance.get_concurrency_config()
    limits = {limit["key"]: limit for limit in config.run_queue_config.tag_concurrency_limits}
    assert limits["dagster/partition"] == {
        "key": "dagster/partition",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    }
    onboarding = limits["dripfeed/tier"]
    assert onboarding["value"] == "onboarding"
    assert onboarding["limit"] < config.run_queue_config.max_concurrent_runs, "the live tiers keep free slots"


def test_a_tenant_run_whose_process_died_is_retried_once_from_every_step(tmp_path: Path) -> None:
    shutil.copy(ROOT / "demo" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 0  # only runs that ask
    tags = sync_tenant.tags
    assert tags["dagster/max_retries"] == "1"
    assert tags["dagster/retry_on_asset_or_op_failure"] == "false", "a failed step (a revoked token) is not retried"
    # From failure, Dagster cannot retry a run whose process died after its last step succeeded.
    assert tags["dagster/retry_strategy"] == "ALL_STEPS"


def test_the_demo_instance_keeps_a_week_of_ticks_and_a_day_of_skipped_ones(tmp_path: Path) -> None:
    shutil.copy(ROOT / "demo" / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path))) as instance:
        schedule = instance.get_tick_retention_settings(InstigatorType.SCHEDULE)
        sensor = instance.get_tick_retention_settings(InstigatorType.SENSOR)
    assert set(schedule.values()) == {7}
    assert {status.value: days for status, days in sensor.items()} == {
        "STARTED": 7,
        "SKIPPED": 1,
        "SUCCESS": 7,
        "FAILURE": 7,
    }


def test_an_instance_opened_from_its_directory_keeps_run_logs_there_not_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    shutil.copy(ROOT / "demo" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.chdir(elsewhere)
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        path = instance.compute_log_manager.get_captured_local_path(["a-run", "compute_logs", "step"], "out")
    assert Path(path).is_relative_to(home / "storage"), path
