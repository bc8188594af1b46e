"""What cannot run here (Docker, Kubernetes) is config that dagster validates: every instance
file under deploy/ passes Dagster's instance schema, and its run launcher's own schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster_docker import DockerRunLauncher
from dagster_k8s import K8sRunLauncher

from tests.support.dagster_daemon import ROOT

DEPLOY = ROOT / "deploy"
VARIABLES = {
    "DAGSTER_PG_HOST": "postgres.example.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "not-a-real-password",
    "DAGSTER_PG_DB": "dagster",
    "DRIPFEED_IMAGE": "dripfeed:latest",
    "DRIPFEED_DOCKER_NETWORK": "dripfeed",
}


ONE_MACHINE = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())


@pytest.fixture(autouse=True)
def deployment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in VARIABLES.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("instance_file", "launcher"),
    [("dagster.yaml", None), ("docker/dagster.yaml", DockerRunLauncher), ("kubernetes/dagster.yaml", K8sRunLauncher)],
)
def test_each_deploy_instance_passes_dagsters_schema(instance_file: str, launcher: type | None) -> None:
    path = DEPLOY / instance_file
    config, _ = dagster_instance_config(str(path.parent), path.name)
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}  # by name
    assert config["concurrency"]["runs"]["tag_concurrency_limits"][0]["key"] == "dagster/partition"
    assert config["compute_logs"] == {"module": "dripfeed.compute_logs", "class": "ThreadedComputeLogManager"}
    assert config["run_retries"] == {"enabled": True, "max_retries": 0}  # sync_tenant's tags set its own
    assert config["retention"]["schedule"] == {"purge_after_days": 7}, "tick history is not kept for ever"
    assert config["retention"]["sensor"]["purge_after_days"]["skipped"] == 1
    assert config["schedules"] == ONE_MACHINE["schedules"], "a tick's run requests are submitted side by side"
    assert config["sensors"] == ONE_MACHINE["sensors"]
    if launcher is not None:
        launched = process_config(launcher.config_type(), config["run_launcher"]["config"])
        assert launched.success, launched.errors


def test_a_misspelled_key_fails_validation(tmp_path: Path) -> None:
    broken = (DEPLOY / "dagster.yaml").read_text().replace("max_concurrent_runs", "max_concurent_runs")
    (tmp_path / "dagster.yaml").write_text(broken)
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))


def test_helm_values_queue_the_runs_like_the_instance_files() -> None:
    values = yaml.safe_load((DEPLOY / "kubernetes" / "values.yaml").read_text())
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    retries = values["dagsterDaemon"]["runRetries"]
    assert (retries["enabled"], retries["maxRetries"]) == tuple(instance["run_retries"].values())
    custom = values["computeLogManager"]["config"]["customComputeLogManager"]
    assert {k: custom[k] for k in ("module", "class")} == instance["compute_logs"]
    assert values["dagster-user-deployments"]["deployments"][0]["dagsterApiGrpcArgs"] == ["-m", "dripfeed.definitions"]
    ticks = values["retention"]
    assert (
        ticks["enabled"]
        and ticks["schedule"]["purgeAfterDays"] == instance["retention"]["schedule"]["purge_after_days"]
    )
    assert ticks["sensor"]["purgeAfterDays"] == instance["retention"]["sensor"]["purge_after_days"]
    for daemon in ("schedules", "sensors"):
        threads = values["dagsterDaemon"][daemon]
        assert (threads["useThreads"], threads["numWorkers"], threads["numSubmitWorkers"]) == tuple(
            instance[daemon][key] for key in ("use_threads", "num_workers", "num_submit_workers")
        )
