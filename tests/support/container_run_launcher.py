"""What dagster-docker's DockerRunLauncher and dagster-k8s's K8sRunLauncher do to start a run,
without a container: the run is `dagster api execute_run` with the same ExecuteRunArgs, in a process
whose environment is its own (the launcher's `env_vars`, as a container's would be), not the code
server's. tests/test_run_environment.py asks where such a run's settings come from."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData


class ContainerLikeRunLauncher(RunLauncher, ConfigurableClass):
    def __init__(self, env_vars: Mapping[str, str], inst_data: ConfigurableClassData | None = None) -> None:
        self.env_vars, self._inst_data = dict(env_vars), inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"env_vars": dg.Field(dg.Permissive(), is_required=True)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Any:
        return cls(env_vars=config_value["env_vars"], inst_data=inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        command = ExecuteRunArgs(
            job_origin=context.job_code_origin, run_id=run.run_id, instance_ref=self._instance.get_ref()
        ).get_command_args()
        environment = {name: value for name, value in os.environ.items() if not name.startswith("DRIPFEED_")}
        subprocess.Popen(command, env={**environment, **self.env_vars}, start_new_session=True)

    def terminate(self, run_id: str) -> bool:
        return False
